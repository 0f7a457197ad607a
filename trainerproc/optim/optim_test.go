package optim

import (
	"errors"
	"math"
	"strings"
	"testing"

	"simpletuner/trainerproc/engine"
	"simpletuner/trainerproc/engine/blas"
	"simpletuner/trainerproc/engine/cpu"
	"simpletuner/trainerproc/engine/philox"
	"simpletuner/trainerproc/safetensors"
)

func newEngine(t *testing.T) *engine.Engine {
	t.Helper()
	be, err := cpu.New(cpu.Options{Threads: 2, BLAS: blas.ChoiceGonum})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = be.Close() })
	return engine.New(be)
}

// setGrad gives p the gradient g (via a backward pass of Σ p·g).
func setGrad(t *testing.T, e *engine.Engine, p *engine.Parameter, g []float32) {
	t.Helper()
	p.ZeroGrad()
	s := e.Scope()
	defer s.Close()
	if err := e.Backward(e.SumAll(e.Mul(p.Tensor, e.FromHost(g, p.Shape()...)))); err != nil {
		t.Fatal(err)
	}
}

func values(t *testing.T, x *engine.Tensor) []float32 {
	v, err := x.ToHost()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// savedState returns o's State after a round trip through a safetensors file.
func savedState(t *testing.T, o Optimizer) ([]safetensors.Tensor, map[string]string) {
	t.Helper()
	ts, meta, err := o.State()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := safetensors.Marshal(ts, meta)
	if err != nil {
		t.Fatal(err)
	}
	ts2, meta2, err := safetensors.Unmarshal(raw)
	if err != nil {
		t.Fatal(err)
	}
	return ts2, meta2
}

// TestSingleStep checks one update of each optimizer against the closed form.
func TestSingleStep(t *testing.T) {
	const lr = 0.1
	for _, tc := range []struct {
		name string
		over map[string]float64
		p, g float32
		want float64
	}{
		// AdamW: bias-corrected first step moves by lr·g/(|g|+eps) after decay.
		{"adamw", nil, 1, 0.5, 1*(1-lr*0.01) - lr*0.5/(0.5+1e-8)},
		{"optimi-adamw", nil, 1, 0.5, 1*(1-lr*0.01) - lr*0.5/(0.5+1e-6)},
		{"optimi-lion", nil, 1, -0.5, 1 + lr},
		{"optimi-lion", map[string]float64{"weight_decay": 0.5}, 2, 0.5, 2*(1-lr*0.5) - lr},
		{"optimi-sgd", nil, 1, 0.5, 1 - lr*0.5},
		{"optimi-sgd", map[string]float64{"momentum": 0.9, "weight_decay": 0.1}, 1, 0.5, 1*(1-lr*0.1) - lr*0.5},
	} {
		e := newEngine(t)
		p := e.NewParameter("w", e.FromHost([]float32{tc.p}, 1))
		o, err := New(tc.name, []*engine.Parameter{p}, tc.over, 0)
		if err != nil {
			t.Fatal(err)
		}
		setGrad(t, e, p, []float32{tc.g})
		if err := o.Step(lr); err != nil {
			t.Fatal(err)
		}
		if got := values(t, p.Tensor)[0]; math.Abs(float64(got)-tc.want) > 1e-6 {
			t.Errorf("%s %v: got %.8g want %.8g", tc.name, tc.over, got, tc.want)
		}
		p.Free()
	}
}

// TestSGDMomentum checks the momentum buffer across two steps (no dampening).
func TestSGDMomentum(t *testing.T) {
	e := newEngine(t)
	p := e.NewParameter("w", e.FromHost([]float32{0}, 1))
	defer p.Free()
	o, _ := New("optimi-sgd", []*engine.Parameter{p}, map[string]float64{"momentum": 0.5}, 0)
	for range 2 {
		setGrad(t, e, p, []float32{1})
		_ = o.Step(1)
	}
	// buf: 1 then 1.5; p = -1 - 1.5.
	if got := values(t, p.Tensor)[0]; got != -2.5 {
		t.Fatalf("got %v want -2.5", got)
	}
}

func TestUnsupported(t *testing.T) {
	e := newEngine(t)
	_, err := New("prodigy", nil, nil, 0)
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "optimi-lion") {
		t.Fatalf("got %v", err)
	}
	p := e.NewParameter("w", e.Zeros(1))
	defer p.Free()
	if _, err := New("adamw", []*engine.Parameter{p}, map[string]float64{"beta3": 1}, 0); !errors.Is(err, ErrConfig) {
		t.Fatalf("unknown option: %v", err)
	}
	if _, err := New("adamw", []*engine.Parameter{p}, map[string]float64{"beta1": 1}, 0); !errors.Is(err, ErrConfig) {
		t.Fatalf("beta1=1: %v", err)
	}
}

func TestParseConfig(t *testing.T) {
	got, err := ParseConfig("beta1=0.8, weight_decay=0 ,eps=1e-7")
	if err != nil || got["beta1"] != 0.8 || got["weight_decay"] != 0 || got["eps"] != 1e-7 {
		t.Fatalf("%v %v", got, err)
	}
	if _, err := ParseConfig("beta1"); !errors.Is(err, ErrConfig) {
		t.Fatalf("got %v", err)
	}
}

// TestResumeBitIdentical runs 5 steps straight and 3 + save/load + 2 with a fresh optimizer;
// parameters must match bit for bit, for every optimizer.
func TestResumeBitIdentical(t *testing.T) {
	grads := func(step, n int) []float32 {
		g := make([]float32, n)
		for i := range g {
			g[i] = float32(math.Sin(float64(step*n+i))) * 0.1
		}
		return g
	}
	const n = 70000 // several parallel chunks
	for _, name := range Supported() {
		over := map[string]float64(nil)
		if name == "optimi-sgd" {
			over = map[string]float64{"momentum": 0.9}
		}
		t.Run(name, func(t *testing.T) {
			e := newEngine(t)
			init := make([]float32, n)
			for i := range init {
				init[i] = float32(math.Cos(float64(i)))
			}
			run := func(p *engine.Parameter, o Optimizer, from, to int) {
				for s := from; s < to; s++ {
					setGrad(t, e, p, grads(s, n))
					if err := o.Step(1e-3); err != nil {
						t.Fatal(err)
					}
				}
			}
			a := e.NewParameter("w", e.FromHost(init, n))
			defer a.Free()
			oa, err := New(name, []*engine.Parameter{a}, over, 9)
			if err != nil {
				t.Fatal(err)
			}
			run(a, oa, 0, 5)

			b := e.NewParameter("w", e.FromHost(init, n))
			defer b.Free()
			ob, _ := New(name, []*engine.Parameter{b}, over, 9)
			run(b, ob, 0, 3)
			ts2, meta2 := savedState(t, ob)
			saved := values(t, b.Tensor)
			c := e.NewParameter("w", e.FromHost(saved, n))
			defer c.Free()
			oc, _ := New(name, []*engine.Parameter{c}, over, 9)
			if err := oc.LoadState(ts2, meta2); err != nil {
				t.Fatal(err)
			}
			if oc.Steps() != 3 {
				t.Fatalf("steps %d after load", oc.Steps())
			}
			run(c, oc, 3, 5)
			va, vc := values(t, a.Tensor), values(t, c.Tensor)
			for i := range va {
				if math.Float32bits(va[i]) != math.Float32bits(vc[i]) {
					t.Fatalf("element %d: straight %v, resumed %v", i, va[i], vc[i])
				}
			}
			if name == "adamw_bf16" {
				for i, v := range va {
					if math.Float32bits(v)&0xffff != 0 {
						t.Fatalf("element %d = %v is not a bfloat16", i, v)
					}
				}
			}
			// A state from another optimizer is rejected.
			meta2["optimizer"] = "other"
			if err := oc.LoadState(ts2, meta2); !errors.Is(err, ErrState) {
				t.Fatalf("foreign state: %v", err)
			}
		})
	}
}

// TestStochasticBF16Unbiased checks that stochastic rounding is unbiased and always lands on
// one of the two neighbouring bfloat16 values.
func TestStochasticBF16Unbiased(t *testing.T) {
	x := float32(1.00123)
	lo := math.Float32frombits(math.Float32bits(x) & 0xffff0000)
	hi := math.Float32frombits((math.Float32bits(x) & 0xffff0000) + 0x10000)
	var sum float64
	const n = 200000
	for i := 0; i < n; i++ {
		r := bf(roundBF16(x, philox.Block(1, uint64(i))[0], false))
		if r != lo && r != hi {
			t.Fatalf("rounded to %v, not %v or %v", r, lo, hi)
		}
		sum += float64(r)
	}
	if mean := sum / n; math.Abs(mean-float64(x)) > 2e-5 {
		t.Fatalf("mean %v, want %v", mean, x)
	}
}

func TestClipGradNorm(t *testing.T) {
	e := newEngine(t)
	a := e.NewParameter("a", e.Zeros(1))
	b := e.NewParameter("b", e.Zeros(1))
	defer a.Free()
	defer b.Free()
	setGrad(t, e, a, []float32{3})
	setGrad(t, e, b, []float32{4})
	ps := []*engine.Parameter{a, b}
	norm, err := ClipGradNorm(ps, 10)
	if err != nil || norm != 5 || values(t, a.Grad())[0] != 3 {
		t.Fatalf("no-op clip: norm %v err %v", norm, err)
	}
	norm, _ = ClipGradNorm(ps, 1)
	ga, gb := values(t, a.Grad())[0], values(t, b.Grad())[0]
	if norm != 5 || math.Abs(float64(ga)-0.6) > 1e-6 || math.Abs(float64(gb)-0.8) > 1e-6 {
		t.Fatalf("clip: norm %v grads %v %v", norm, ga, gb)
	}
}

// TestStateBytesMatchesTheState: the figure memory estimates use (StateBytesWith)
// is the bytes per weight the optimizer's state really holds after a step.
func TestStateBytesMatchesTheState(t *testing.T) {
	for _, tc := range []struct {
		name      string
		overrides map[string]float64
	}{{"adamw", nil}, {"adamw_bf16", nil}, {"optimi-adamw", nil}, {"optimi-lion", nil}, {"optimi-sgd", nil}, {"optimi-sgd", map[string]float64{"momentum": 0.9}}} {
		n, err := StateBytesWith(tc.name, tc.overrides)
		if err != nil {
			t.Fatal(err)
		}
		e := newEngine(t)
		p := e.NewParameter("w", e.Zeros(3, 5))
		o, err := New(tc.name, []*engine.Parameter{p}, tc.overrides, 1)
		if err != nil {
			t.Fatal(err)
		}
		setGrad(t, e, p, make([]float32, 15))
		if err := o.Step(1e-3); err != nil {
			t.Fatal(err)
		}
		ts, _, err := o.State()
		if err != nil {
			t.Fatal(err)
		}
		size := 0
		for _, st := range ts {
			if st.Data != nil {
				t.Errorf("%s: state tensor %s holds a copy; it should fill at write time", tc.name, st.Name)
			}
			m, err := st.Materialize()
			if err != nil {
				t.Fatal(err)
			}
			size += len(m.Data)
		}
		if size != n*15 {
			t.Errorf("%s %v: StateBytesWith %d, the state holds %d bytes for 15 weights", tc.name, tc.overrides, n, size)
		}
		p.Free()
	}
	if _, err := StateBytesWith("adafactor", nil); !errors.Is(err, ErrUnsupported) {
		t.Errorf("unknown optimizer: %v", err)
	}
	if b, _ := StateBytesWith("adafactor", nil); b != 0 {
		t.Error("unknown optimizer has state bytes")
	}
}
