//go:build cuda

package cuda

import (
	"math"
	"testing"

	"simpletuner/trainerproc/engine"
)

// TestCheckpointOnGPU runs a chain of checkpointed residual blocks on the GPU (FP32): the
// gradients equal those of the plain chain on the same backend, and the recompute frees every
// buffer it makes. Checkpoint is backend-agnostic; this guards that no kernel keeps state
// between the forward pass and the re-run.
func TestCheckpointOnGPU(t *testing.T) {
	g, _ := newPair(t, PrecisionFP32)
	e := engine.New(g)
	const rows, d, hd, blocks = 64, 32, 128, 4
	rng := engine.NewRNG(7)
	var params []*engine.Tensor
	for _, sh := range [][]int{{d}, {hd, d}, {hd}, {d, hd}, {d}} {
		params = append(params, e.RandN(rng, 0, 0.2, sh...).SetRequiresGrad(true))
	}
	x := e.RandN(rng, 0, 1, rows, d).SetRequiresGrad(true)
	leaves := append(params, x)
	block := func(in []*engine.Tensor) *engine.Tensor {
		h := e.LayerNorm(in[0], params[0], nil, 1e-6)
		h = e.Linear(e.LinearAct(h, params[1], params[2], engine.ActGELUTanh), params[3], params[4])
		return e.Add(in[0], h)
	}
	grads := func(ckpt bool) [][]float32 {
		s := e.Scope()
		defer s.Close()
		h := x
		for range blocks {
			if ckpt {
				h = e.Checkpoint(block, h)
			} else {
				h = block([]*engine.Tensor{h})
			}
		}
		if err := e.Backward(e.SumAll(e.Mul(h, h))); err != nil {
			t.Fatalf("Backward (checkpoint=%v): %v", ckpt, err)
		}
		var out [][]float32
		for _, l := range leaves {
			v, err := l.Grad().ToHost()
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, v)
			l.ZeroGrad()
		}
		return out
	}
	plain, ck := grads(false), grads(true)
	for i := range plain {
		for j := range plain[i] {
			a, b := float64(plain[i][j]), float64(ck[i][j])
			if math.IsNaN(b) || math.Abs(a-b) > 1e-5*math.Max(1, math.Abs(a)) {
				t.Fatalf("leaf %d element %d: plain %g checkpointed %g", i, j, a, b)
			}
		}
	}
	for _, l := range leaves {
		l.Free()
	}
	if n := g.LiveBuffers(); n != 0 {
		t.Errorf("%d GPU buffers leaked", n)
	}
}
