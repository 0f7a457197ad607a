package engine_test

import (
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"simpletuner/trainerproc/engine"
)

// ckptBlock is a small two-layer residual block: x + mask·W2·gelu(W1·LayerNorm(x) + b1) + b2.
// p holds ln weight, W1, b1, W2, b2; mask may be nil.
func ckptBlock(e *engine.Engine, x, mask *engine.Tensor, p []*engine.Tensor) *engine.Tensor {
	h := e.LayerNorm(x, p[0], nil, 1e-6)
	h = e.LinearAct(h, p[1], p[2], engine.ActGELUTanh)
	h = e.Linear(h, p[3], p[4])
	if mask != nil {
		h = e.Mul(h, mask)
	}
	return e.Add(x, h)
}

// ckptParamShapes are the shapes of ckptBlock's parameters for width d and hidden width hd.
func ckptParamShapes(d, hd int) [][]int {
	return [][]int{{d}, {hd, d}, {hd}, {d, hd}, {d}}
}

// checkpointed runs ckptBlock through Checkpoint, with the mask as a constant input and the
// parameters read from the closure.
func checkpointed(e *engine.Engine, x, mask *engine.Tensor, p []*engine.Tensor) *engine.Tensor {
	return e.Checkpoint(func(in []*engine.Tensor) *engine.Tensor {
		return ckptBlock(e, in[0], in[1], p)
	}, x, mask)
}

// TestCheckpointGradCheck checks a checkpointed two-layer block against central differences:
// the block's input comes from an earlier op (so its gradient flows through the checkpoint
// node into that op's operands), its parameters are leaves read only inside f, and the mask
// is a constant input.
func TestCheckpointGradCheck(t *testing.T) {
	const d, hd = 4, 6
	shapes := append([][]int{{2, 3, d}, {d, d}, {2, 3, 1}}, ckptParamShapes(d, hd)...)
	runGradCheck(t, gradCase{name: "checkpoint_block", shapes: shapes, constant: map[int]bool{2: true},
		f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor {
			x := e.Linear(in[0], in[1], nil)
			return checkpointed(e, x, in[2], in[3:])
		}})
}

// TestCheckpointChainGradCheck checks four checkpointed segments in a row, the second holding
// a nested checkpoint, with one parameter set shared by segments 1 and 3 (its gradient is the
// sum of both uses).
func TestCheckpointChainGradCheck(t *testing.T) {
	const d, hd = 3, 5
	var shapes [][]int
	shapes = append(shapes, []int{2, 2, d})
	for range 3 { // parameter sets A (segments 1 and 3), B (segment 2), C (segment 4)
		shapes = append(shapes, ckptParamShapes(d, hd)...)
	}
	runGradCheck(t, gradCase{name: "checkpoint_chain", shapes: shapes,
		f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor {
			return ckptChain(e, in[0], in[1:6], in[6:11], in[11:16], true)
		}})
}

// ckptChain is four blocks with parameter sets a, b, a, c; the second block nests a
// checkpoint of its own inside its segment.
func ckptChain(e *engine.Engine, x *engine.Tensor, a, b, c []*engine.Tensor, ckpt bool) *engine.Tensor {
	if !ckpt {
		x = ckptBlock(e, x, nil, a)
		x = ckptBlock(e, e.Scale(ckptBlock(e, x, nil, b), 0.5), nil, b)
		x = ckptBlock(e, x, nil, a)
		return ckptBlock(e, x, nil, c)
	}
	x = checkpointed(e, x, nil, a)
	x = e.Checkpoint(func(in []*engine.Tensor) *engine.Tensor {
		y := checkpointed(e, in[0], nil, b)
		return ckptBlock(e, e.Scale(y, 0.5), nil, b)
	}, x)
	x = checkpointed(e, x, nil, a)
	return checkpointed(e, x, nil, c)
}

// TestCheckpointMatchesPlain compares the gradients of a chain run with and without
// Checkpoint on the float64 backend: they must agree to rounding (≤1e-12 relative).
func TestCheckpointMatchesPlain(t *testing.T) {
	const d, hd = 5, 7
	e, be := newF64(t, 2)
	r := rand.New(rand.NewPCG(3, 4))
	randT := func(shape ...int) *engine.Tensor {
		x := e.Zeros(shape...)
		for i, v := 0, f64(x); i < len(v); i++ {
			v[i] = r.NormFloat64()
		}
		return x.SetRequiresGrad(true)
	}
	x0 := randT(2, 3, d)
	sets := make([][]*engine.Tensor, 3)
	var leaves []*engine.Tensor
	leaves = append(leaves, x0)
	for i := range sets {
		for _, sh := range ckptParamShapes(d, hd) {
			sets[i] = append(sets[i], randT(sh...))
		}
		leaves = append(leaves, sets[i]...)
	}
	weights := randT(2, 3, d).SetRequiresGrad(false)
	grads := func(ckpt bool) [][]float64 {
		s := e.Scope()
		defer s.Close()
		loss := e.SumAll(e.Mul(ckptChain(e, x0, sets[0], sets[1], sets[2], ckpt), weights))
		if err := e.Backward(loss); err != nil {
			t.Fatalf("Backward (checkpoint=%v): %v", ckpt, err)
		}
		var out [][]float64
		for _, l := range leaves {
			if l.Grad() == nil {
				t.Fatalf("checkpoint=%v: leaf %v got no gradient", ckpt, l.Shape())
			}
			out = append(out, append([]float64(nil), f64(l.Grad())...))
			l.ZeroGrad()
		}
		return out
	}
	plain, ck := grads(false), grads(true)
	for i := range plain {
		for j := range plain[i] {
			a, b := plain[i][j], ck[i][j]
			if diff := math.Abs(a - b); diff > 1e-12*math.Max(1, math.Abs(a)) {
				t.Fatalf("leaf %d element %d: plain %.17g checkpointed %.17g", i, j, a, b)
			}
		}
	}
	for _, l := range append(leaves, weights) {
		l.Free()
	}
	if n, bytes := be.Stats(); n != 0 {
		t.Errorf("%d buffers (%d bytes) leaked", n, bytes)
	}
}

// TestCheckpointFreesTemporaries: after a checkpointed forward call only its output is a new
// buffer (the inputs are shared, f's temporaries are gone), under grad and under NoGrad.
func TestCheckpointFreesTemporaries(t *testing.T) {
	for _, noGrad := range []bool{false, true} {
		e, be := newF64(t, 1)
		p := ckptLeaves(e, ckptParamShapes(4, 8))
		x := e.Zeros(3, 4).SetRequiresGrad(true)
		before, _ := be.Stats()
		func() {
			if noGrad {
				defer e.NoGrad()()
			}
			y := checkpointed(e, x, nil, p)
			if after, _ := be.Stats(); after != before+1 {
				t.Errorf("noGrad=%v: %d live buffers after Checkpoint, want %d (inputs and the output only)", noGrad, after, before+1)
			}
			if y.RequiresGrad() == noGrad {
				t.Errorf("noGrad=%v: output RequiresGrad = %v", noGrad, y.RequiresGrad())
			}
			y.Free()
		}()
		for _, l := range append(p, x) {
			l.Free()
		}
		if n, _ := be.Stats(); n != 0 {
			t.Errorf("noGrad=%v: %d buffers leaked", noGrad, n)
		}
	}
}

// ckptLeaves makes random parameters (requiring a gradient) with the given shapes.
func ckptLeaves(e *engine.Engine, shapes [][]int) []*engine.Tensor {
	r := rand.New(rand.NewPCG(5, 6))
	var out []*engine.Tensor
	for _, sh := range shapes {
		x := e.Zeros(sh...)
		for i, v := 0, f64(x); i < len(v); i++ {
			v[i] = 0.3 * r.NormFloat64()
		}
		out = append(out, x.SetRequiresGrad(true))
	}
	return out
}

// TestCheckpointPeakMemory measures the backend's high-water mark of a forward and backward
// pass over chains of 4 and 8 blocks. Without Checkpoint each extra block keeps its whole set
// of activations until the backward pass; with it only the block's input, so the peak grows
// several times slower with depth (the constant part, one block's activations and the
// gradients, is the same for both chains and cancels in the difference).
func TestCheckpointPeakMemory(t *testing.T) {
	const rows, d, hd = 64, 16, 64
	peak := func(blocks int, ckpt bool) int64 {
		e, be := newF64(t, 1)
		p := ckptLeaves(e, ckptParamShapes(d, hd)) // shared by every block: constant size
		x := ckptLeaves(e, [][]int{{rows, d}})[0]
		be.ResetPeak()
		s := e.Scope()
		h := x
		for range blocks {
			if ckpt {
				h = checkpointed(e, h, nil, p)
			} else {
				h = ckptBlock(e, h, nil, p)
			}
		}
		if err := e.Backward(e.SumAll(h)); err != nil {
			t.Fatal(err)
		}
		s.Close()
		for _, l := range append(p, x) {
			l.Free()
		}
		if n, _ := be.Stats(); n != 0 {
			t.Errorf("blocks=%d checkpoint=%v: %d buffers leaked", blocks, ckpt, n)
		}
		return be.Peak()
	}
	plain := peak(8, false) - peak(4, false)
	ckpt := peak(8, true) - peak(4, true)
	input := int64(rows * d * 8)
	t.Logf("peak growth over 4 blocks: plain %d bytes, checkpointed %d bytes (one block input: %d bytes)", plain, ckpt, input)
	if ckpt <= 0 || plain < 5*ckpt {
		t.Errorf("peak growth over 4 extra blocks: checkpointed %d bytes, plain %d: want plain ≥ 5× checkpointed", ckpt, plain)
	}
	if ckpt > 4*2*input {
		t.Errorf("checkpointed peak grows by %d bytes over 4 blocks, want ≤ 2 inputs (%d bytes) per block", ckpt, 2*input)
	}
}

// TestCheckpointUnderNoGrad: a checkpoint under NoGrad records nothing, so Backward gives the
// same no-graph error as a plain forward pass under NoGrad.
func TestCheckpointUnderNoGrad(t *testing.T) {
	e, be := newF64(t, 1)
	p := ckptLeaves(e, ckptParamShapes(4, 8))
	x := ckptLeaves(e, [][]int{{3, 4}})[0]
	backward := func(ckpt bool) error {
		s := e.Scope()
		defer s.Close()
		var y *engine.Tensor
		func() {
			defer e.NoGrad()()
			if ckpt {
				y = checkpointed(e, x, nil, p)
			} else {
				y = ckptBlock(e, x, nil, p)
			}
		}()
		return e.Backward(e.SumAll(y))
	}
	plainErr, ckptErr := backward(false), backward(true)
	if !errors.Is(ckptErr, engine.ErrGrad) || plainErr == nil || ckptErr.Error() != plainErr.Error() {
		t.Errorf("Backward after a checkpoint under NoGrad: %v, want the plain error %v", ckptErr, plainErr)
	}
	for _, l := range append(p, x) {
		l.Free()
	}
	if n, _ := be.Stats(); n != 0 {
		t.Errorf("%d buffers leaked", n)
	}
}

// TestCheckpointRecomputeFailure: a function that fails only when re-run during Backward (an
// op error, a plain panic, another output shape, no graph) makes Backward return an error
// wrapping ErrGrad (and the op's own sentinel), and every buffer of both passes is freed.
func TestCheckpointRecomputeFailure(t *testing.T) {
	cases := []struct {
		name  string
		rerun func(e *engine.Engine, y *engine.Tensor) *engine.Tensor
		want  []error
		msg   string
	}{
		{"op error", func(e *engine.Engine, y *engine.Tensor) *engine.Tensor { return e.Reshape(y, 7, 7) }, []error{engine.ErrGrad, engine.ErrShape}, "reshape"},
		{"panic", func(*engine.Engine, *engine.Tensor) *engine.Tensor { panic("boom") }, []error{engine.ErrGrad}, "boom"},
		{"other shape", func(e *engine.Engine, y *engine.Tensor) *engine.Tensor { return e.Sum(y, false, 0) }, []error{engine.ErrGrad, engine.ErrShape}, "deterministic"},
		{"no graph", func(e *engine.Engine, y *engine.Tensor) *engine.Tensor { return e.Zeros(y.Shape()...) }, []error{engine.ErrGrad}, "no graph"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e, be := newF64(t, 1)
			p := ckptLeaves(e, ckptParamShapes(4, 8))
			x := ckptLeaves(e, [][]int{{3, 4}})[0]
			baseline, _ := be.Stats()
			calls := 0
			s := e.Scope()
			// A healthy segment before and after the failing one, built in a helper scope
			// closed before Backward (only the graph holds the intermediate outputs): the
			// failure must release the outer graph as well.
			hs := e.Scope()
			h := checkpointed(e, x, nil, p)
			h = e.Checkpoint(func(in []*engine.Tensor) *engine.Tensor {
				calls++
				y := ckptBlock(e, in[0], nil, p)
				if calls > 1 {
					return c.rerun(e, y)
				}
				return y
			}, h)
			h = hs.Keep(checkpointed(e, h, nil, p))
			hs.Close()
			err := e.Backward(e.SumAll(h))
			if err == nil {
				t.Fatal("Backward succeeded")
			}
			for _, w := range c.want {
				if !errors.Is(err, w) {
					t.Errorf("error %v does not wrap %v", err, w)
				}
			}
			if !strings.Contains(err.Error(), c.msg) {
				t.Errorf("error %q does not mention %q", err, c.msg)
			}
			if calls != 2 {
				t.Errorf("f ran %d times, want 2", calls)
			}
			s.Close()
			for _, l := range append(p, x) {
				l.ZeroGrad()
			}
			if n, bytes := be.Stats(); n != baseline {
				t.Errorf("%d live buffers (%d bytes) after the failed Backward, want the %d of the parameters", n, bytes, baseline)
			}
			for _, l := range append(p, x) {
				l.Free()
			}
		})
	}
}

// TestCheckpointBackwardUnderNoGrad: an optimizer loop may call Backward with NoGrad on; the
// recompute must still record its graph.
func TestCheckpointBackwardUnderNoGrad(t *testing.T) {
	e, be := newF64(t, 1)
	p := ckptLeaves(e, ckptParamShapes(4, 8))
	x := ckptLeaves(e, [][]int{{3, 4}})[0]
	s := e.Scope()
	loss := e.SumAll(checkpointed(e, x, nil, p))
	restore := e.NoGrad()
	err := e.Backward(loss)
	restore()
	if err != nil {
		t.Fatal(err)
	}
	if e.GradEnabled() != true {
		t.Error("grad mode not restored")
	}
	for _, l := range append(p, x) {
		if l.Grad() == nil {
			t.Errorf("leaf %v got no gradient", l.Shape())
		}
	}
	s.Close()
	for _, l := range append(p, x) {
		l.Free()
	}
	if n, _ := be.Stats(); n != 0 {
		t.Errorf("%d buffers leaked", n)
	}
}
