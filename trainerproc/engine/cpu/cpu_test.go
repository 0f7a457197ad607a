package cpu

import (
	"math"
	"math/rand/v2"
	"testing"

	"simpletuner/trainerproc/engine"
	"simpletuner/trainerproc/engine/blas"
)

func newGonum(t *testing.T, threads int) *Backend[float32] {
	t.Helper()
	b, err := New(Options{Threads: threads, BLAS: blas.ChoiceGonum})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func fill(b *Backend[float32], r *rand.Rand, n int) engine.Buffer {
	buf, _ := b.Alloc(n)
	for i, d := 0, Data[float32](buf); i < len(d); i++ {
		d[i] = float32(r.NormFloat64())
	}
	return buf
}

// TestReduceDeterministicAcrossThreads uses sizes with many row blocks and column chunks and
// checks bit-identical results for 1, 2 and 5 threads, plus agreement with a float64 sum.
func TestReduceDeterministicAcrossThreads(t *testing.T) {
	s := engine.Shape3{Outer: 3, Mid: 700, Inner: 5000}
	spans := []engine.Span{engine.SpanNone, engine.SpanInner, engine.SpanOuter | engine.SpanInner,
		engine.SpanMid | engine.SpanInner, engine.SpanOuter, engine.SpanMid, engine.SpanOuter | engine.SpanMid}
	var ref [][]float32
	for ti, threads := range []int{1, 2, 5} {
		b := newGonum(t, threads)
		src := fill(b, rand.New(rand.NewPCG(1, 1)), s.Size())
		for si, sp := range spans {
			dst, _ := b.Alloc(s.SpanSize(sp))
			b.Reduce(dst, src, s, sp, 0.5)
			got := append([]float32(nil), Data[float32](dst)...)
			if ti == 0 {
				ref = append(ref, got)
				// Check against a naive float64 sum.
				sv := Data[float32](src)
				want := make([]float64, len(got))
				for o := 0; o < s.Outer; o++ {
					for m := 0; m < s.Mid; m++ {
						for i := 0; i < s.Inner; i++ {
							off, _ := spanIndex(s, sp, o, m)
							if sp&engine.SpanInner != 0 {
								off += i
							}
							want[off] += 0.5 * float64(sv[(o*s.Mid+m)*s.Inner+i])
						}
					}
				}
				for i := range want {
					if math.Abs(float64(got[i])-want[i]) > 1e-3*(1+math.Abs(want[i])) {
						t.Fatalf("span %b: element %d = %g, want %g", sp, i, got[i], want[i])
					}
				}
				continue
			}
			for i := range got {
				if math.Float32bits(got[i]) != math.Float32bits(ref[si][i]) {
					t.Fatalf("span %b with %d threads differs at %d", sp, threads, i)
				}
			}
		}
	}
}

// TestAttentionChunking forces several head chunks and checks the result matches one chunk.
func TestAttentionChunking(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 3))
	run := func(scratch int) ([]float32, []float32) {
		b := newGonum(t, 2)
		b.attnScratch = scratch
		bsz, h, nq, nk, dh := 2, 3, 5, 4, 6
		r = rand.New(rand.NewPCG(2, 3))
		q, k, v := fill(b, r, bsz*h*nq*dh), fill(b, r, bsz*h*nk*dh), fill(b, r, bsz*h*nk*dh)
		do := fill(b, r, bsz*h*nq*dh)
		o, _ := b.Alloc(bsz * h * nq * dh)
		lse, _ := b.Alloc(bsz * h * nq)
		dq, _ := b.Alloc(bsz * h * nq * dh)
		dk, _ := b.Alloc(bsz * h * nk * dh)
		dv, _ := b.Alloc(bsz * h * nk * dh)
		p := engine.AttentionParams{Q: q, K: k, V: v, O: o, LSE: lse, B: bsz, H: h, Nq: nq, Nk: nk, Dh: dh, Scale: 0.3}
		b.Attention(p)
		b.AttentionBackward(engine.AttentionGradParams{AttentionParams: p, DO: do, DQ: dq, DK: dk, DV: dv})
		return append([]float32(nil), Data[float32](o)...), append(append([]float32(nil), Data[float32](dq)...), Data[float32](dk)...)
	}
	o1, g1 := run(1 << 20)
	o2, g2 := run(25) // one (b,h) pair per chunk
	for i := range o1 {
		if o1[i] != o2[i] {
			t.Fatalf("output differs at %d", i)
		}
	}
	for i := range g1 {
		if g1[i] != g2[i] {
			t.Fatalf("gradient differs at %d", i)
		}
	}
}

func TestPoolNestedAndCoverage(t *testing.T) {
	p := newPool(3)
	defer p.close()
	hits := make([]int, 1000)
	p.chunks(10, func(c int) {
		p.rangeFor(100, 7, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				hits[c*100+i]++
			}
		})
	})
	for i, h := range hits {
		if h != 1 {
			t.Fatalf("index %d visited %d times", i, h)
		}
	}
}

func TestBufferMisuse(t *testing.T) {
	b := newGonum(t, 1)
	buf, _ := b.Alloc(4)
	b.Free(buf)
	mustPanic(t, "double free", func() { b.Free(buf) })
	mustPanic(t, "use after free", func() { Data[float32](buf) })
	b64, _ := NewFloat64(Options{Threads: 1})
	defer b64.Close()
	other, _ := b64.Alloc(2)
	mustPanic(t, "foreign buffer", func() { Data[float32](other) })
	if n, _ := b.Stats(); n != 0 {
		t.Fatalf("%d live buffers", n)
	}
	if _, err := New(Options{BLAS: "mkl"}); err == nil {
		t.Fatal("unknown BLAS accepted")
	}
	if d := b.Describe(); d != "cpu (gonum, 1 thread)" {
		t.Fatalf("Describe = %q", d)
	}
}

func mustPanic(t *testing.T, what string, fn func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Errorf("%s did not panic", what)
		}
	}()
	fn()
}

func TestCopyAndPermute(t *testing.T) {
	b := newGonum(t, 2)
	src, _ := b.Alloc(24)
	for i, d := 0, Data[float32](src); i < 24; i++ {
		d[i] = float32(i)
	}
	dst, _ := b.Alloc(24)
	b.Permute(dst, src, []int{2, 3, 4}, []int{2, 0, 1}) // → [4,2,3]
	d := Data[float32](dst)
	for k := 0; k < 4; k++ {
		for i := 0; i < 2; i++ {
			for j := 0; j < 3; j++ {
				if got, want := d[(k*2+i)*3+j], float32((i*3+j)*4+k); got != want {
					t.Fatalf("permute [%d,%d,%d] = %g want %g", k, i, j, got, want)
				}
			}
		}
	}
	out, _ := b.Alloc(10)
	b.Copy2D(out, 1, 5, src, 2, 12, 2, 3)
	want := []float32{0, 2, 3, 4, 0, 0, 14, 15, 16, 0}
	for i, v := range Data[float32](out) {
		if v != want[i] {
			t.Fatalf("Copy2D = %v, want %v", Data[float32](out), want)
		}
	}
}
