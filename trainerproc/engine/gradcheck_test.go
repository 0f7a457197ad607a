package engine_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"simpletuner/trainerproc/engine"
	"simpletuner/trainerproc/engine/cpu"
)

// gradCase is one finite-difference gradient check. The loss is Σ f(inputs)·R for a fixed
// random R, so every output element contributes with a distinct weight.
type gradCase struct {
	name   string
	shapes [][]int
	// constant lists inputs that get no gradient (masks); they are not perturbed.
	constant map[int]bool
	// init overrides the random initialisation of input i (e.g. keep divisors away from 0).
	init func(i int, r *rand.Rand) float64
	f    func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor
}

func newF64(t *testing.T, threads int) (*engine.Engine, *cpu.Backend[float64]) {
	t.Helper()
	be, err := cpu.NewFloat64(cpu.Options{Threads: threads})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = be.Close() })
	return engine.New(be), be
}

func f64(t *engine.Tensor) []float64 { return cpu.Data[float64](t.Buffer()) }

// runGradCheck compares Backward's gradients with central differences in float64.
func runGradCheck(t *testing.T, c gradCase) {
	t.Helper()
	e, be := newF64(t, 2)
	r := rand.New(rand.NewPCG(11, uint64(len(c.name))))
	var inputs []*engine.Tensor
	for i, sh := range c.shapes {
		x := e.Zeros(sh...)
		d := f64(x)
		for j := range d {
			if c.init != nil {
				d[j] = c.init(i, r)
			} else {
				d[j] = r.NormFloat64()
			}
		}
		if !c.constant[i] {
			x.SetRequiresGrad(true)
		}
		inputs = append(inputs, x)
	}
	var weights *engine.Tensor
	loss := func(s *engine.Scope) *engine.Tensor {
		y := c.f(e, inputs)
		if weights == nil {
			weights = s.Keep(e.Zeros(y.Shape()...)) // outlives the scope
			for j, d := 0, f64(weights); j < len(d); j++ {
				d[j] = r.NormFloat64()
			}
		}
		return e.SumAll(e.Mul(y, weights))
	}
	s := e.Scope()
	l := loss(s)
	if err := e.Backward(l); err != nil {
		t.Fatalf("Backward: %v", err)
	}
	s.Close()
	const h = 1e-5
	eval := func() float64 {
		defer e.NoGrad()()
		s := e.Scope()
		defer s.Close()
		return f64(loss(s))[0]
	}
	checked := 0
	for i, x := range inputs {
		if c.constant[i] {
			if x.Grad() != nil {
				t.Errorf("input %d is constant but got a gradient", i)
			}
			continue
		}
		if x.Grad() == nil {
			t.Fatalf("input %d got no gradient", i)
		}
		ga := f64(x.Grad())
		d := f64(x)
		for j := range d {
			orig := d[j]
			d[j] = orig + h
			lp := eval()
			d[j] = orig - h
			lm := eval()
			d[j] = orig
			num := (lp - lm) / (2 * h)
			den := math.Max(math.Max(math.Abs(num), math.Abs(ga[j])), 1e-2)
			if rel := math.Abs(num-ga[j]) / den; rel > 1e-6 || math.IsNaN(rel) {
				t.Errorf("%s: input %d %v element %d: analytic %.10g numeric %.10g (rel %.2g)", c.name, i, x.Shape(), j, ga[j], num, rel)
				return
			}
			checked++
		}
	}
	if checked == 0 {
		t.Fatal("nothing checked")
	}
	// Everything the check allocated must be freed again.
	for _, x := range inputs {
		x.Free()
	}
	weights.Free()
	l.Free()
	if n, bytes := be.Stats(); n != 0 {
		t.Errorf("%d buffers (%d bytes) leaked", n, bytes)
	}
}

func positive(_ int, r *rand.Rand) float64 { return 0.5 + r.Float64() }

func TestGradCheck(t *testing.T) {
	cases := []gradCase{
		{name: "add", shapes: [][]int{{3, 4}, {3, 4}}, f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor { return e.Add(in[0], in[1]) }},
		{name: "add_bias", shapes: [][]int{{2, 3, 5}, {5}}, f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor { return e.Add(in[0], in[1]) }},
		{name: "add_per_sample", shapes: [][]int{{2, 3, 4}, {2, 1, 4}}, f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor { return e.Add(in[0], in[1]) }},
		{name: "add_per_row", shapes: [][]int{{3, 4}, {3, 1}}, f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor { return e.Add(in[1], in[0]) }},
		{name: "sub_broadcast_left", shapes: [][]int{{5}, {4, 5}}, f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor { return e.Sub(in[0], in[1]) }},
		{name: "sub_scalar_like", shapes: [][]int{{3, 4}, {1}}, f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor { return e.Sub(in[0], in[1]) }},
		{name: "mul", shapes: [][]int{{2, 3, 4}, {2, 3, 4}}, f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor { return e.Mul(in[0], in[1]) }},
		{name: "mul_per_sample", shapes: [][]int{{2, 3, 4}, {2, 1, 4}}, f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor { return e.Mul(in[0], in[1]) }},
		{name: "mul_mid_broadcast", shapes: [][]int{{1, 3, 1}, {2, 3, 4}}, f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor { return e.Mul(in[0], in[1]) }},
		{name: "mul_self", shapes: [][]int{{3, 4}}, f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor { return e.Mul(in[0], in[0]) }},
		{name: "div", shapes: [][]int{{3, 4}, {3, 4}}, init: positive, f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor { return e.Div(in[0], in[1]) }},
		{name: "div_broadcast", shapes: [][]int{{4}, {3, 4}}, init: positive, f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor { return e.Div(in[0], in[1]) }},
		{name: "add_irregular_broadcast", shapes: [][]int{{2, 3, 4, 5}, {3, 1, 5}}, f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor { return e.Mul(in[0], in[1]) }},
		{name: "broadcast_to", shapes: [][]int{{3, 1, 2}}, f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor { return e.BroadcastTo(in[0], 2, 3, 4, 2) }},
		{name: "sum_interleaved", shapes: [][]int{{2, 3, 4, 2}}, f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor { return e.Sum(in[0], false, 1, 3) }},
		{name: "affine", shapes: [][]int{{3, 4}}, f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor {
			return e.Neg(e.AddScalar(e.Scale(in[0], 0.7), 1.5))
		}},
		{name: "sum_all", shapes: [][]int{{3, 4}}, f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor { return e.SumAll(in[0]) }},
		{name: "mean_all", shapes: [][]int{{3, 4}}, f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor { return e.MeanAll(in[0]) }},
		{name: "sum_last", shapes: [][]int{{2, 3, 4}}, f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor { return e.Sum(in[0], false, -1) }},
		{name: "sum_mid_keep", shapes: [][]int{{2, 3, 4}}, f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor { return e.Sum(in[0], true, 1) }},
		{name: "mean_outer", shapes: [][]int{{2, 3, 4}}, f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor { return e.Mean(in[0], false, 0, 1) }},
		{name: "mean_outer_inner", shapes: [][]int{{2, 3, 4}}, f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor { return e.Mean(in[0], false, 0, 2) }},
		{name: "matmul", shapes: [][]int{{3, 4}, {4, 5}}, f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor {
			return e.MatMul(in[0], in[1], false, false)
		}},
		{name: "matmul_tA", shapes: [][]int{{4, 3}, {4, 5}}, f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor { return e.MatMul(in[0], in[1], true, false) }},
		{name: "matmul_tB", shapes: [][]int{{3, 4}, {5, 4}}, f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor { return e.MatMul(in[0], in[1], false, true) }},
		{name: "matmul_tAtB", shapes: [][]int{{4, 3}, {5, 4}}, f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor { return e.MatMul(in[0], in[1], true, true) }},
		{name: "matmul_batched", shapes: [][]int{{2, 3, 4}, {2, 4, 2}}, f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor {
			return e.MatMul(in[0], in[1], false, false)
		}},
		{name: "matmul_batched_tAtB", shapes: [][]int{{2, 4, 3}, {2, 2, 4}}, f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor { return e.MatMul(in[0], in[1], true, true) }},
		{name: "matmul_shared", shapes: [][]int{{2, 3, 4}, {4, 2}}, f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor {
			return e.MatMul(in[0], in[1], false, false)
		}},
		{name: "matmul_shared_tB", shapes: [][]int{{2, 3, 4}, {2, 4}}, f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor { return e.MatMul(in[0], in[1], false, true) }},
		{name: "matmul_shared_tA", shapes: [][]int{{2, 4, 3}, {4, 2}}, f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor { return e.MatMul(in[0], in[1], true, false) }},
		{name: "matmul_shared_tAtB", shapes: [][]int{{2, 4, 3}, {2, 4}}, f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor { return e.MatMul(in[0], in[1], true, true) }},
		{name: "linear", shapes: [][]int{{2, 3, 4}, {5, 4}, {5}}, f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor { return e.Linear(in[0], in[1], in[2]) }},
		{name: "linear_nobias", shapes: [][]int{{3, 4}, {5, 4}}, f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor { return e.Linear(in[0], in[1], nil) }},
		{name: "linear_gelu", shapes: [][]int{{2, 3, 4}, {5, 4}, {5}}, f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor {
			return e.LinearAct(in[0], in[1], in[2], engine.ActGELUTanh)
		}},
		{name: "linear_silu_nobias", shapes: [][]int{{3, 4}, {5, 4}}, f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor {
			return e.LinearAct(in[0], in[1], nil, engine.ActSiLU)
		}},
		{name: "gelu", shapes: [][]int{{3, 7}}, f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor { return e.GELU(e.Scale(in[0], 2)) }},
		{name: "silu", shapes: [][]int{{3, 7}}, f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor { return e.SiLU(e.Scale(in[0], 2)) }},
		{name: "softmax", shapes: [][]int{{3, 6}}, f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor { return e.Softmax(in[0]) }},
		{name: "layernorm_affine", shapes: [][]int{{2, 3, 6}, {6}, {6}}, f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor {
			return e.LayerNorm(in[0], in[1], in[2], 1e-6)
		}},
		{name: "layernorm_plain", shapes: [][]int{{4, 6}}, f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor { return e.LayerNorm(in[0], nil, nil, 1e-6) }},
		{name: "layernorm_weight_only", shapes: [][]int{{4, 6}, {6}}, f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor {
			return e.LayerNorm(in[0], in[1], nil, 1e-5)
		}},
		{name: "layernorm_modulate", shapes: [][]int{{2, 3, 5}, {2, 5}, {2, 5}}, f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor {
			return e.LayerNormModulate(in[0], in[1], in[2], 1e-6)
		}},
		{name: "modulate", shapes: [][]int{{2, 3, 5}, {2, 5}, {2, 5}}, f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor {
			return e.Modulate(in[0], in[1], in[2])
		}},
		{name: "attention_self", shapes: [][]int{{2, 2, 3, 4}, {2, 2, 3, 4}, {2, 2, 3, 4}}, f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor {
			return e.Attention(in[0], in[1], in[2], nil, 0)
		}},
		{name: "attention_cross", shapes: [][]int{{2, 2, 3, 4}, {2, 2, 5, 4}, {2, 2, 5, 4}}, f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor {
			return e.Attention(in[0], in[1], in[2], nil, 0.4)
		}},
		{name: "attention_masked", shapes: [][]int{{2, 2, 3, 4}, {2, 2, 5, 4}, {2, 2, 5, 4}, {2, 5}}, constant: map[int]bool{3: true},
			init: func(i int, r *rand.Rand) float64 {
				if i == 3 {
					// Pad some keys; sample 0 keeps at least one.
					if r.IntN(3) == 0 {
						return 0
					}
					return 1
				}
				return r.NormFloat64()
			},
			f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor {
				m := f64(in[3])
				m[0] = 1 // never a fully padded sample
				m[5] = 1
				return e.Attention(in[0], in[1], in[2], in[3], 0)
			}},
		{name: "embedding", shapes: [][]int{{5, 3}}, f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor {
			return e.Embedding(in[0], []int32{4, 0, 4, 2, 4})
		}},
		{name: "reshape", shapes: [][]int{{2, 6}}, f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor {
			return e.Mul(e.Reshape(in[0], 3, -1), e.Reshape(in[0], 3, 4))
		}},
		{name: "permute", shapes: [][]int{{2, 3, 4, 5}}, f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor { return e.Permute(in[0], 0, 2, 3, 1) }},
		{name: "transpose", shapes: [][]int{{3, 4}}, f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor { return e.Transpose(in[0], 0, 1) }},
		{name: "concat_mid", shapes: [][]int{{2, 3, 4}, {2, 1, 4}}, f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor { return e.Concat(1, in[0], in[1]) }},
		{name: "concat_last", shapes: [][]int{{2, 3}, {2, 2}, {2, 1}}, f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor { return e.Concat(-1, in...) }},
		{name: "slice", shapes: [][]int{{2, 5, 3}}, f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor { return e.Slice(in[0], 1, 1, 3) }},
		{name: "chunk", shapes: [][]int{{2, 6}}, f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor {
			p := e.Chunk(in[0], 3, 1)
			return e.Add(e.Mul(p[0], p[1]), p[2])
		}},
		{name: "mse", shapes: [][]int{{2, 3, 4}, {2, 3, 4}}, f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor { return e.MSELoss(in[0], in[1]) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { runGradCheck(t, c) })
	}
}

// TestGradCheckDiTBlock checks a small PixArt-style block end to end: adaLN-single modulation,
// self-attention, cross-attention with a padding mask, and a GELU MLP with gated residuals.
func TestGradCheckDiTBlock(t *testing.T) {
	const bsz, n, d, heads, nk = 2, 3, 4, 2, 2
	dh := d / heads
	split := func(e *engine.Engine, x *engine.Tensor, tokens int) *engine.Tensor {
		return e.Permute(e.Reshape(x, bsz, tokens, heads, dh), 0, 2, 1, 3)
	}
	merge := func(e *engine.Engine, x *engine.Tensor, tokens int) *engine.Tensor {
		return e.Reshape(e.Permute(x, 0, 2, 1, 3), bsz, tokens, d)
	}
	runGradCheck(t, gradCase{
		name: "dit_block",
		shapes: [][]int{
			{bsz, n, d},  // 0 x
			{bsz, 6 * d}, // 1 adaLN-single timestep vector
			{3 * d, d},   // 2 qkv weight
			{d, d}, {d},  // 3,4 self-attn out proj
			{bsz, nk, d},       // 5 caption tokens
			{d, d}, {2 * d, d}, // 6 cross q, 7 cross kv
			{2 * d, d}, {2 * d}, // 8,9 mlp fc1
			{d, 2 * d}, // 10 mlp fc2
			{bsz, nk},  // 11 mask (constant)
		},
		constant: map[int]bool{11: true},
		init: func(i int, r *rand.Rand) float64 {
			if i == 11 {
				return 1
			}
			return 0.5 * r.NormFloat64()
		},
		f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor {
			f64(in[11])[3] = 0 // pad the last caption token of sample 1
			x, tvec := in[0], in[1]
			mod := e.Chunk(tvec, 6, 1) // shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp
			gate := func(g *engine.Tensor) *engine.Tensor { return e.Reshape(g, bsz, 1, d) }
			h := e.LayerNormModulate(x, mod[1], mod[0], 1e-6)
			qkv := e.Linear(h, in[2], nil)
			parts := e.Chunk(qkv, 3, 2)
			a := e.Attention(split(e, parts[0], n), split(e, parts[1], n), split(e, parts[2], n), nil, 0)
			a = e.Linear(merge(e, a, n), in[3], in[4])
			x = e.Add(x, e.Mul(gate(mod[2]), a))
			q := e.Linear(x, in[6], nil)
			kv := e.Chunk(e.Linear(in[5], in[7], nil), 2, 2)
			c := e.Attention(split(e, q, n), split(e, kv[0], nk), split(e, kv[1], nk), in[11], 0)
			x = e.Add(x, merge(e, c, n))
			h = e.LayerNormModulate(x, mod[4], mod[3], 1e-6)
			m := e.Linear(e.LinearAct(h, in[8], in[9], engine.ActGELUTanh), in[10], nil)
			return e.Add(x, e.Mul(gate(mod[5]), m))
		},
	})
}
