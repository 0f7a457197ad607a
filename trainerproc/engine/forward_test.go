package engine_test

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"simpletuner/trainerproc/engine"
	"simpletuner/trainerproc/engine/blas"
	"simpletuner/trainerproc/engine/cpu"
)

// backendCase is one backend configuration the forward tests run on.
type backendCase struct {
	name string
	new  func() (engine.Backend, error)
}

// forwardBackends lists the float32 backends with each available BLAS plus the float64 one.
func forwardBackends(t *testing.T) []backendCase {
	t.Helper()
	cases := []backendCase{
		{"gonum", func() (engine.Backend, error) { return cpu.New(cpu.Options{Threads: 2, BLAS: blas.ChoiceGonum}) }},
		{"float64", func() (engine.Backend, error) { return cpu.NewFloat64(cpu.Options{Threads: 2}) }},
	}
	if _, err := blas.Open(blas.ChoiceOpenBLAS, 2); err == nil {
		cases = append(cases, backendCase{"openblas", func() (engine.Backend, error) {
			return cpu.New(cpu.Options{Threads: 2, BLAS: blas.ChoiceOpenBLAS})
		}})
	} else {
		t.Logf("OpenBLAS not available; skipping that path: %v", err)
	}
	return cases
}

func randHost(r *rand.Rand, n int) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = float32(r.NormFloat64())
	}
	return out
}

func toHost(t *testing.T, x *engine.Tensor) []float32 {
	t.Helper()
	v, err := x.ToHost()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func assertClose[T float32 | float64](t *testing.T, what string, got []T, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range got {
		if d := math.Abs(float64(got[i]) - want[i]); d > tol*(1+math.Abs(want[i])) || math.IsNaN(float64(got[i])) {
			t.Fatalf("%s: element %d = %.12g, want %.12g", what, i, got[i], want[i])
		}
	}
}

// eachBackend runs fn on every forward backend inside a scope and checks nothing leaks.
func eachBackend(t *testing.T, fn func(t *testing.T, e *engine.Engine, r *rand.Rand)) {
	for _, bc := range forwardBackends(t) {
		t.Run(bc.name, func(t *testing.T) {
			be, err := bc.new()
			if err != nil {
				t.Fatal(err)
			}
			defer be.Close()
			e := engine.New(be)
			s := e.Scope()
			fn(t, e, rand.New(rand.NewPCG(7, 9)))
			s.Close()
			type stats interface{ Stats() (int64, int64) }
			if n, _ := be.(stats).Stats(); n != 0 {
				t.Errorf("%d buffers leaked", n)
			}
		})
	}
}

func TestForwardLinear(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *engine.Engine, r *rand.Rand) {
		rows, in, out := 37, 19, 23
		x, w, b := randHost(r, rows*in), randHost(r, out*in), randHost(r, out)
		for _, act := range []engine.Activation{engine.ActNone, engine.ActGELUTanh, engine.ActSiLU} {
			y := e.LinearAct(e.FromHost(x, rows, in), e.FromHost(w, out, in), e.FromHost(b, out), act)
			want := make([]float64, rows*out)
			for i := 0; i < rows; i++ {
				for o := 0; o < out; o++ {
					s := float64(b[o])
					for k := 0; k < in; k++ {
						s += float64(x[i*in+k]) * float64(w[o*in+k])
					}
					switch act {
					case engine.ActGELUTanh:
						s = 0.5 * s * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(s+0.044715*s*s*s)))
					case engine.ActSiLU:
						s = s / (1 + math.Exp(-s))
					}
					want[i*out+o] = s
				}
			}
			assertClose(t, fmt.Sprintf("linear act %d", act), toHost(t, y), want, 1e-4)
		}
	})
}

func TestForwardMatMulBatched(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *engine.Engine, r *rand.Rand) {
		bsz, m, k, n := 3, 5, 7, 4
		for _, ta := range []bool{false, true} {
			for _, tb := range []bool{false, true} {
				a, bm := randHost(r, bsz*m*k), randHost(r, bsz*k*n)
				as, bs := []int{bsz, m, k}, []int{bsz, k, n}
				if ta {
					as = []int{bsz, k, m}
				}
				if tb {
					bs = []int{bsz, n, k}
				}
				y := e.MatMul(e.FromHost(a, as...), e.FromHost(bm, bs...), ta, tb)
				want := make([]float64, bsz*m*n)
				for bi := 0; bi < bsz; bi++ {
					for i := 0; i < m; i++ {
						for j := 0; j < n; j++ {
							var s float64
							for p := 0; p < k; p++ {
								ai, bj := bi*m*k+i*k+p, bi*k*n+p*n+j
								if ta {
									ai = bi*m*k + p*m + i
								}
								if tb {
									bj = bi*k*n + j*k + p
								}
								s += float64(a[ai]) * float64(bm[bj])
							}
							want[bi*m*n+i*n+j] = s
						}
					}
				}
				assertClose(t, fmt.Sprintf("matmul ta=%v tb=%v", ta, tb), toHost(t, y), want, 1e-4)
			}
		}
	})
}

// naiveAttention is softmax(scale·QKᵀ masked)·V per (b,h) in float64.
func naiveAttention(q, k, v, mask []float32, bsz, h, nq, nk, dh int, scale float64) []float64 {
	out := make([]float64, bsz*h*nq*dh)
	for b := 0; b < bsz; b++ {
		for hh := 0; hh < h; hh++ {
			base := (b*h + hh)
			for i := 0; i < nq; i++ {
				s := make([]float64, nk)
				mx := math.Inf(-1)
				for j := 0; j < nk; j++ {
					if mask != nil && mask[b*nk+j] == 0 {
						s[j] = math.Inf(-1)
						continue
					}
					for c := 0; c < dh; c++ {
						s[j] += float64(q[(base*nq+i)*dh+c]) * float64(k[(base*nk+j)*dh+c])
					}
					s[j] *= scale
					mx = math.Max(mx, s[j])
				}
				if math.IsInf(mx, -1) {
					continue // fully masked: zero output
				}
				var z float64
				for j := range s {
					s[j] = math.Exp(s[j] - mx)
					z += s[j]
				}
				for j := 0; j < nk; j++ {
					for c := 0; c < dh; c++ {
						out[(base*nq+i)*dh+c] += s[j] / z * float64(v[(base*nk+j)*dh+c])
					}
				}
			}
		}
	}
	return out
}

func TestForwardAttention(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *engine.Engine, r *rand.Rand) {
		bsz, h, nq, nk, dh := 2, 3, 9, 6, 8
		q, k, v := randHost(r, bsz*h*nq*dh), randHost(r, bsz*h*nk*dh), randHost(r, bsz*h*nk*dh)
		mask := []float32{1, 1, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0} // sample 1 fully padded
		for _, m := range [][]float32{nil, mask} {
			var mt *engine.Tensor
			if m != nil {
				mt = e.FromHost(m, bsz, nk)
			}
			y := e.Attention(e.FromHost(q, bsz, h, nq, dh), e.FromHost(k, bsz, h, nk, dh), e.FromHost(v, bsz, h, nk, dh), mt, 0)
			want := naiveAttention(q, k, v, m, bsz, h, nq, nk, dh, 1/math.Sqrt(float64(dh)))
			assertClose(t, fmt.Sprintf("attention mask=%v", m != nil), toHost(t, y), want, 1e-4)
		}
	})
}

func TestForwardNormsAndSoftmax(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *engine.Engine, r *rand.Rand) {
		bsz, n, d := 2, 5, 16
		x, w, b := randHost(r, bsz*n*d), randHost(r, d), randHost(r, d)
		sc, sh := randHost(r, bsz*d), randHost(r, bsz*d)
		xt := e.FromHost(x, bsz, n, d)
		ln := e.LayerNorm(xt, e.FromHost(w, d), e.FromHost(b, d), 1e-6)
		lm := e.LayerNormModulate(xt, e.FromHost(sc, bsz, d), e.FromHost(sh, bsz, d), 1e-6)
		sm := e.Softmax(xt)
		wantLN, wantLM, wantSM := make([]float64, len(x)), make([]float64, len(x)), make([]float64, len(x))
		for row := 0; row < bsz*n; row++ {
			xr := x[row*d : (row+1)*d]
			var mu, vr, mx float64
			mx = math.Inf(-1)
			for _, v := range xr {
				mu += float64(v) / float64(d)
				mx = math.Max(mx, float64(v))
			}
			var z float64
			for _, v := range xr {
				vr += (float64(v) - mu) * (float64(v) - mu) / float64(d)
				z += math.Exp(float64(v) - mx)
			}
			bi := row / n
			for c, v := range xr {
				nv := (float64(v) - mu) / math.Sqrt(vr+1e-6)
				wantLN[row*d+c] = nv*float64(w[c]) + float64(b[c])
				wantLM[row*d+c] = nv*(1+float64(sc[bi*d+c])) + float64(sh[bi*d+c])
				wantSM[row*d+c] = math.Exp(float64(v)-mx) / z
			}
		}
		assertClose(t, "layernorm", toHost(t, ln), wantLN, 1e-4)
		assertClose(t, "layernorm_modulate", toHost(t, lm), wantLM, 1e-4)
		assertClose(t, "softmax", toHost(t, sm), wantSM, 1e-5)
		// The unfused composition must agree with the fused kernel.
		un := e.Modulate(e.LayerNorm(xt, nil, nil, 1e-6), e.FromHost(sc, bsz, d), e.FromHost(sh, bsz, d))
		assertClose(t, "modulate(layernorm)", toHost(t, un), wantLM, 1e-4)
	})
}

func TestForwardShapeOpsAndReductions(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *engine.Engine, r *rand.Rand) {
		a, b, c, d := 2, 3, 4, 5
		x := randHost(r, a*b*c*d)
		xt := e.FromHost(x, a, b, c, d)
		at := func(i, j, k, l int) float64 { return float64(x[((i*b+j)*c+k)*d+l]) }
		// Permute to [c, a, d, b].
		p := e.Permute(xt, 2, 0, 3, 1)
		var want []float64
		for k := 0; k < c; k++ {
			for i := 0; i < a; i++ {
				for l := 0; l < d; l++ {
					for j := 0; j < b; j++ {
						want = append(want, at(i, j, k, l))
					}
				}
			}
		}
		assertClose(t, "permute", toHost(t, p), want, 0)
		// Sum over axes 1 and 3 → [a, c].
		sum := e.Sum(xt, false, 1, 3)
		want = want[:0]
		for i := 0; i < a; i++ {
			for k := 0; k < c; k++ {
				var s float64
				for j := 0; j < b; j++ {
					for l := 0; l < d; l++ {
						s += at(i, j, k, l)
					}
				}
				want = append(want, s)
			}
		}
		assertClose(t, "sum axes 1,3", toHost(t, sum), want, 1e-5)
		// Slice + concat round trip along axis 2.
		parts := e.Split(xt, 2, 1, 3)
		back := e.Concat(2, parts[0], parts[1])
		want = want[:0]
		for _, v := range x {
			want = append(want, float64(v))
		}
		assertClose(t, "split/concat", toHost(t, back), want, 0)
		// Embedding.
		table := randHost(r, 6*3)
		emb := e.Embedding(e.FromHost(table, 6, 3), []int32{5, 0, 5})
		want = want[:0]
		for _, id := range []int{5, 0, 5} {
			for j := 0; j < 3; j++ {
				want = append(want, float64(table[id*3+j]))
			}
		}
		assertClose(t, "embedding", toHost(t, emb), want, 0)
		// Broadcast add with a [b,1,d]-style operand against the naive rule.
		y := randHost(r, b*d)
		sumBC := e.Add(xt, e.FromHost(y, b, 1, d))
		want = want[:0]
		for i := 0; i < a; i++ {
			for j := 0; j < b; j++ {
				for k := 0; k < c; k++ {
					for l := 0; l < d; l++ {
						want = append(want, at(i, j, k, l)+float64(y[j*d+l]))
					}
				}
			}
		}
		assertClose(t, "broadcast add", toHost(t, sumBC), want, 1e-6)
	})
}

func TestRNG(t *testing.T) {
	mk := func(threads int) []float32 {
		be, err := cpu.New(cpu.Options{Threads: threads, BLAS: blas.ChoiceGonum})
		if err != nil {
			t.Fatal(err)
		}
		defer be.Close()
		e := engine.New(be)
		s := e.Scope()
		defer s.Close()
		rng := engine.NewRNG(1234)
		a := toHost(t, e.RandN(rng, 0, 1, 10001))
		b := toHost(t, e.RandU(rng, -1, 2, 999))
		return append(a, b...)
	}
	one, three := mk(1), mk(3)
	for i := range one {
		if math.Float32bits(one[i]) != math.Float32bits(three[i]) {
			t.Fatalf("RNG differs between 1 and 3 threads at %d", i)
		}
	}
	var sum, sq float64
	for _, v := range one[:10001] {
		sum += float64(v)
		sq += float64(v) * float64(v)
	}
	if mean, vr := sum/10001, sq/10001-(sum/10001)*(sum/10001); math.Abs(mean) > 0.05 || math.Abs(vr-1) > 0.05 {
		t.Fatalf("normal mean %g var %g", mean, vr)
	}
	for _, v := range one[10001:] {
		if v < -1 || v >= 2 {
			t.Fatalf("uniform value %g outside [-1,2)", v)
		}
	}
	// Successive draws must not repeat the stream; restoring the state must.
	rng := engine.NewRNG(5)
	seed, off := rng.State()
	be, _ := cpu.New(cpu.Options{Threads: 1, BLAS: blas.ChoiceGonum})
	defer be.Close()
	e := engine.New(be)
	s := e.Scope()
	defer s.Close()
	a := toHost(t, e.RandN(rng, 0, 1, 8))
	b := toHost(t, e.RandN(rng, 0, 1, 8))
	rng.SetState(seed, off)
	c := toHost(t, e.RandN(rng, 0, 1, 8))
	if a[0] == b[0] || a[0] != c[0] || a[7] != c[7] {
		t.Fatalf("stream state not respected: %v %v %v", a, b, c)
	}
}

func TestErrors(t *testing.T) {
	be, err := cpu.New(cpu.Options{Threads: 1, BLAS: blas.ChoiceGonum, MaxBytes: 1 << 12})
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	e := engine.New(be)
	s := e.Scope()
	defer s.Close()
	err = engine.Catch(func() { e.Add(e.Zeros(2, 3), e.Zeros(4)) })
	if !errors.Is(err, engine.ErrShape) {
		t.Errorf("mismatched add: %v, want ErrShape", err)
	}
	err = engine.Catch(func() { e.Zeros(1 << 20) })
	if !errors.Is(err, engine.ErrOutOfMemory) {
		t.Errorf("huge alloc: %v, want ErrOutOfMemory", err)
	}
	x := e.Zeros(2)
	x.Free()
	if err := engine.Catch(func() { e.Scale(x, 2) }); !errors.Is(err, engine.ErrFreed) {
		t.Errorf("use after free: %v, want ErrFreed", err)
	}
	w := e.Zeros(2).SetRequiresGrad(true)
	nonScalar := e.Scale(w, 2)
	if err := e.Backward(nonScalar); !errors.Is(err, engine.ErrGrad) {
		t.Errorf("Backward of non-scalar: %v", err)
	}
	loss := e.SumAll(e.Mul(w, w))
	if err := e.Backward(loss); err != nil {
		t.Fatal(err)
	}
	if err := e.Backward(loss); !errors.Is(err, engine.ErrGrad) {
		t.Errorf("second Backward: %v, want ErrGrad", err)
	}
	restore := e.NoGrad()
	ng := e.SumAll(e.Mul(w, w))
	restore()
	if ng.RequiresGrad() || !errors.Is(e.Backward(ng), engine.ErrGrad) {
		t.Error("NoGrad recorded a graph")
	}
	// Non-engine panics pass through Catch.
	func() {
		defer func() {
			if recover() == nil {
				t.Error("Catch swallowed a foreign panic")
			}
		}()
		_ = engine.Catch(func() { panic("boom") })
	}()
}
