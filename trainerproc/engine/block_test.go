package engine_test

import (
	"fmt"
	"math"
	"testing"

	"simpletuner/trainerproc/engine"
	"simpletuner/trainerproc/engine/blas"
	"simpletuner/trainerproc/engine/cpu"
)

// ditBlock is a PixArt-style block (adaLN-single, self-attention, cross-attention with a
// padding mask, GELU-tanh MLP) on parameters owned by the test.
type ditBlock struct {
	bsz, n, nk, d, heads int
	params               []*engine.Parameter
}

func newDiTBlock(e *engine.Engine, seed uint64, bsz, n, nk, d, heads int) *ditBlock {
	rng := engine.NewRNG(seed)
	blk := &ditBlock{bsz: bsz, n: n, nk: nk, d: d, heads: heads}
	shapes := []struct {
		name  string
		shape []int
	}{
		{"attn1.qkv.weight", []int{3 * d, d}}, {"attn1.out.weight", []int{d, d}}, {"attn1.out.bias", []int{d}},
		{"attn2.q.weight", []int{d, d}}, {"attn2.kv.weight", []int{2 * d, d}}, {"attn2.out.weight", []int{d, d}},
		{"mlp.fc1.weight", []int{4 * d, d}}, {"mlp.fc1.bias", []int{4 * d}}, {"mlp.fc2.weight", []int{d, 4 * d}},
		{"scale_shift_table", []int{6, d}},
	}
	for _, s := range shapes {
		std := float32(1 / math.Sqrt(float64(s.shape[len(s.shape)-1])))
		blk.params = append(blk.params, e.NewParameter(s.name, e.RandN(rng, 0, std, s.shape...)))
	}
	return blk
}

func (b *ditBlock) forward(e *engine.Engine, x, t, y, mask *engine.Tensor) *engine.Tensor {
	p := func(i int) *engine.Tensor { return b.params[i].Tensor }
	dh := b.d / b.heads
	split := func(x *engine.Tensor, tokens int) *engine.Tensor {
		return e.Permute(e.Reshape(x, b.bsz, tokens, b.heads, dh), 0, 2, 1, 3)
	}
	merge := func(x *engine.Tensor, tokens int) *engine.Tensor {
		return e.Reshape(e.Permute(x, 0, 2, 1, 3), b.bsz, tokens, b.d)
	}
	// adaLN-single: t [B, 6D] plus the block's table [6, D].
	mod := e.Chunk(e.Add(e.Reshape(t, b.bsz, 6, b.d), p(9)), 6, 1)
	for i := range mod {
		mod[i] = e.Reshape(mod[i], b.bsz, b.d)
	}
	gate := func(g *engine.Tensor) *engine.Tensor { return e.Reshape(g, b.bsz, 1, b.d) }
	h := e.LayerNormModulate(x, mod[1], mod[0], 1e-6)
	qkv := e.Chunk(e.Linear(h, p(0), nil), 3, 2)
	a := e.Attention(split(qkv[0], b.n), split(qkv[1], b.n), split(qkv[2], b.n), nil, 0)
	x = e.Add(x, e.Mul(gate(mod[2]), e.Linear(merge(a, b.n), p(1), p(2))))
	kv := e.Chunk(e.Linear(y, p(4), nil), 2, 2)
	c := e.Attention(split(e.Linear(x, p(3), nil), b.n), split(kv[0], b.nk), split(kv[1], b.nk), mask, 0)
	x = e.Add(x, e.Linear(merge(c, b.n), p(5), nil))
	h = e.LayerNormModulate(x, mod[4], mod[3], 1e-6)
	m := e.Linear(e.LinearAct(h, p(6), p(7), engine.ActGELUTanh), p(8), nil)
	return e.Add(x, e.Mul(gate(mod[5]), m))
}

// blockRun is the loss and every parameter gradient of one forward/backward.
type blockRun struct {
	out   []float32
	grads map[string][]float32
}

func runBlock(t *testing.T, be engine.Backend, bsz, n, nk, d, heads int) blockRun {
	t.Helper()
	e := engine.New(be)
	blk := newDiTBlock(e, 99, bsz, n, nk, d, heads)
	s := e.Scope()
	rng := engine.NewRNG(7)
	x := e.RandN(rng, 0, 1, bsz, n, d)
	tv := e.RandN(rng, 0, 1, bsz, 6*d)
	y := e.RandN(rng, 0, 1, bsz, nk, d)
	mask := make([]float32, bsz*nk)
	for i := range mask {
		if i%nk < nk-i/nk-1 || i%nk == 0 {
			mask[i] = 1
		}
	}
	target := e.RandN(rng, 0, 1, bsz, n, d)
	out := blk.forward(e, x, tv, y, e.FromHost(mask, bsz, nk))
	loss := e.MSELoss(out, target)
	if err := e.Backward(loss); err != nil {
		t.Fatal(err)
	}
	run := blockRun{out: toHost(t, out), grads: map[string][]float32{}}
	for _, p := range blk.params {
		run.grads[p.Name] = toHost(t, p.Grad())
	}
	s.Close()
	for _, p := range blk.params {
		p.Free()
	}
	type stats interface{ Stats() (int64, int64) }
	if st, ok := be.(stats); ok {
		if nb, bytes := st.Stats(); nb != 0 {
			t.Errorf("%d buffers (%d bytes) leaked by a block forward/backward", nb, bytes)
		}
	}
	return run
}

// TestDeterminismAcrossThreads checks the determinism contract: the same block gives
// bit-identical outputs and gradients with 1 and 3 threads (gonum BLAS), and twice in a row.
func TestDeterminismAcrossThreads(t *testing.T) {
	var runs []blockRun
	for _, threads := range []int{1, 3, 3} {
		be, err := cpu.New(cpu.Options{Threads: threads, BLAS: blas.ChoiceGonum})
		if err != nil {
			t.Fatal(err)
		}
		runs = append(runs, runBlock(t, be, 2, 70, 9, 32, 4))
		_ = be.Close()
	}
	for i := 1; i < len(runs); i++ {
		for j := range runs[0].out {
			if math.Float32bits(runs[0].out[j]) != math.Float32bits(runs[i].out[j]) {
				t.Fatalf("run %d output differs at %d", i, j)
			}
		}
		for name, g := range runs[0].grads {
			for j := range g {
				if math.Float32bits(g[j]) != math.Float32bits(runs[i].grads[name][j]) {
					t.Fatalf("run %d gradient %s differs at %d: %g vs %g", i, name, j, g[j], runs[i].grads[name][j])
				}
			}
		}
	}
}

// TestBackendsAgree runs the block on the float64 reference and on the float32 backend with
// each BLAS path; outputs and gradients must agree to float32 accuracy.
func TestBackendsAgree(t *testing.T) {
	ref64, err := cpu.NewFloat64(cpu.Options{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	ref := runBlock(t, ref64, 2, 20, 7, 32, 4)
	_ = ref64.Close()
	for _, choice := range []blas.Choice{blas.ChoiceGonum, blas.ChoiceOpenBLAS} {
		t.Run(string(choice), func(t *testing.T) {
			be, err := cpu.New(cpu.Options{Threads: 2, BLAS: choice})
			if err != nil {
				t.Skipf("%s unavailable: %v", choice, err)
			}
			defer be.Close()
			t.Log(be.Describe())
			got := runBlock(t, be, 2, 20, 7, 32, 4)
			cmp := func(what string, a, b []float32) {
				var num, den float64
				for i := range a {
					num += (float64(a[i]) - float64(b[i])) * (float64(a[i]) - float64(b[i]))
					den += float64(b[i]) * float64(b[i])
				}
				if rel := math.Sqrt(num / math.Max(den, 1e-30)); rel > 1e-5 || math.IsNaN(rel) {
					t.Errorf("%s: relative L2 error %.3g vs float64 reference", what, rel)
				}
			}
			cmp("output", got.out, ref.out)
			for name := range ref.grads {
				cmp(fmt.Sprintf("grad %s", name), got.grads[name], ref.grads[name])
			}
		})
	}
}

// TestGradientAccumulation checks that two Backward calls add into parameter gradients and
// that ZeroGrads resets them.
func TestGradientAccumulation(t *testing.T) {
	e, be := newF64(t, 2)
	w := e.NewParameter("w", e.FromHost([]float32{1, 2, 3}, 3))
	step := func() {
		s := e.Scope()
		defer s.Close()
		x := e.FromHost([]float32{4, 5, 6}, 3)
		if err := e.Backward(e.SumAll(e.Mul(w.Tensor, x))); err != nil {
			t.Fatal(err)
		}
	}
	step()
	step()
	if g := f64(w.Grad()); g[0] != 8 || g[1] != 10 || g[2] != 12 {
		t.Fatalf("accumulated grad %v, want [8 10 12]", g)
	}
	engine.ZeroGrads([]*engine.Parameter{w})
	if w.Grad() != nil {
		t.Fatal("ZeroGrads left a gradient")
	}
	step()
	if g := f64(w.Grad()); g[0] != 4 {
		t.Fatalf("grad after ZeroGrads %v", g)
	}
	w.Free()
	if n, _ := be.Stats(); n != 0 {
		t.Fatalf("%d buffers leaked", n)
	}
}

// TestGraphFreedWithoutBackward checks that dropping a forward pass without Backward releases
// every buffer the graph retained.
func TestGraphFreedWithoutBackward(t *testing.T) {
	e, be := newF64(t, 1)
	w := e.NewParameter("w", e.FromHost([]float32{1, 2, 3, 4}, 2, 2))
	s := e.Scope()
	x := e.FromHost([]float32{1, 0, 0, 1}, 1, 2, 2)
	h := e.LayerNormModulate(e.Linear(x, w.Tensor, nil), nil, nil, 1e-5)
	_ = e.MSELoss(e.Attention(e.Reshape(h, 1, 1, 2, 2), e.Reshape(h, 1, 1, 2, 2), e.Reshape(h, 1, 1, 2, 2), nil, 0), e.Zeros(1, 1, 2, 2))
	s.Close()
	w.Free()
	if n, _ := be.Stats(); n != 0 {
		t.Fatalf("%d buffers leaked", n)
	}
}

// BenchmarkAttention measures a fused attention forward+backward at a PixArt-like per-block
// shape (B=2, H=16, N=256, Dh=72) on the float32 CPU backend with the default BLAS.
func BenchmarkAttention(b *testing.B) {
	for _, choice := range []blas.Choice{blas.ChoiceGonum, blas.ChoiceOpenBLAS} {
		b.Run(string(choice), func(b *testing.B) {
			be, err := cpu.New(cpu.Options{BLAS: choice})
			if err != nil {
				b.Skip(err)
			}
			defer be.Close()
			e := engine.New(be)
			const bsz, h, n, dh = 2, 16, 256, 72
			rng := engine.NewRNG(1)
			q := e.RandN(rng, 0, 1, bsz, h, n, dh).SetRequiresGrad(true)
			k := e.RandN(rng, 0, 1, bsz, h, n, dh).SetRequiresGrad(true)
			v := e.RandN(rng, 0, 1, bsz, h, n, dh).SetRequiresGrad(true)
			b.ResetTimer()
			for b.Loop() {
				s := e.Scope()
				if err := e.Backward(e.SumAll(e.Attention(q, k, v, nil, 0))); err != nil {
					b.Fatal(err)
				}
				s.Close()
				q.ZeroGrad()
				k.ZeroGrad()
				v.ZeroGrad()
			}
			// QKᵀ, PV forward; recomputed QKᵀ, dV, dP, dQ, dK backward: 7 GEMMs of 2·N²·Dh.
			flops := 7 * 2 * float64(bsz*h) * n * n * dh * float64(b.N)
			b.ReportMetric(flops/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}
