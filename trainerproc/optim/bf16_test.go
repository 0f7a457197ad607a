package optim

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"simpletuner/trainerproc/engine"
	"simpletuner/trainerproc/engine/blas"
	"simpletuner/trainerproc/engine/cpu"
	"simpletuner/trainerproc/safetensors"
)

// bf16Bits reads a BF16 tensor's raw bits.
func bf16Bits(t *testing.T, ts map[string]safetensors.Tensor, name string) []uint16 {
	t.Helper()
	x, ok := ts[name]
	if !ok || x.DType != safetensors.BF16 {
		t.Fatalf("fixture tensor %s missing or not BF16", name)
	}
	out := make([]uint16, len(x.Data)/2)
	for i := range out {
		out[i] = binary.LittleEndian.Uint16(x.Data[2*i:])
	}
	return out
}

func widen(h []uint16) []float32 {
	out := make([]float32, len(h))
	for i, x := range h {
		out[i] = bf(x)
	}
	return out
}

// TestAdamWBF16MatchesReference replays SimpleTuner's AdamWBF16 run in
// testdata/adamw_bf16_ref.safetensors (see gen_adamw_bf16.py: nearest rounding, CUDA-style
// float32 scalars): the parameters and the three state buffers must match bit for bit after
// each of 10 steps, through a changing learning rate, a parameter without a gradient on
// every other step and the delayed weight decay crossing its threshold.
func TestAdamWBF16MatchesReference(t *testing.T) {
	raw, err := os.ReadFile("testdata/adamw_bf16_ref.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	list, meta, err := safetensors.Unmarshal(raw)
	if err != nil {
		t.Fatal(err)
	}
	ts := map[string]safetensors.Tensor{}
	for _, x := range list {
		ts[x.Name] = x
	}
	num := func(k string) float64 {
		v, err := strconv.ParseFloat(meta[k], 64)
		if err != nil {
			t.Fatalf("fixture metadata %s: %v", k, err)
		}
		return v
	}
	e := newEngine(t)
	names := []string{"a", "b", "c"}
	var params []*engine.Parameter
	for _, n := range names {
		init := ts["init."+n]
		p := e.NewParameter(n, e.FromHost(widen(bf16Bits(t, ts, "init."+n)), init.Shape...))
		defer p.Free()
		params = append(params, p)
	}
	over := map[string]float64{"beta1": num("beta1"), "beta2": num("beta2"), "eps": num("eps"), "weight_decay": num("weight_decay")}
	o, err := New("adamw_bf16", params, over, 0)
	if err != nil {
		t.Fatal(err)
	}
	ob := o.(*adamwBF16)
	ob.nearest = true
	for pi, p := range params {
		// The reference drew each parameter's starting decay from torch.rand.
		st := ob.newState(pi, p.Numel())
		st.decay = num("decay0." + p.Name)
		ob.state[p.Name] = st
	}
	decays := 0
	for step := 1; step <= int(num("steps")); step++ {
		for _, p := range params {
			p.ZeroGrad()
			if _, ok := ts[fmt.Sprintf("grad.%d.%s", step, p.Name)]; ok {
				setGrad(t, e, p, widen(bf16Bits(t, ts, fmt.Sprintf("grad.%d.%s", step, p.Name))))
			}
		}
		owed := map[string]float64{}
		for _, n := range names {
			owed[n] = ob.state[n].decay
		}
		if err := o.Step(num(fmt.Sprintf("lr.%d", step))); err != nil {
			t.Fatal(err)
		}
		for _, p := range params {
			st := ob.state[p.Name]
			if st.decay < owed[p.Name] {
				decays++
			}
			w := values(t, p.Tensor)
			got := map[string][]uint16{"exp_avg": st.m, "exp_avg_sq": st.v, "shift": st.shift, "param": make([]uint16, len(w))}
			for i, x := range w {
				got["param"][i] = uint16(math.Float32bits(x) >> 16)
				if math.Float32bits(x)&0xffff != 0 {
					t.Fatalf("step %d %s[%d] = %v is not a bfloat16", step, p.Name, i, x)
				}
			}
			for _, slot := range []string{"param", "exp_avg", "exp_avg_sq", "shift"} {
				want := bf16Bits(t, ts, fmt.Sprintf("step.%d.%s.%s", step, p.Name, slot))
				for i := range want {
					if got[slot][i] != want[i] {
						t.Fatalf("step %d %s.%s[%d]: got %v (%#04x), reference %v (%#04x)", step, p.Name, slot, i,
							bf(got[slot][i]), got[slot][i], bf(want[i]), want[i])
					}
				}
			}
		}
	}
	if decays < len(names) {
		t.Fatalf("the delayed weight decay fired %d times, want every parameter to cross the threshold", decays)
	}
	if ob.state["c"].count != 5 {
		t.Fatalf("c was updated %d times, want 5 (it has a gradient on odd steps only)", ob.state["c"].count)
	}
}

// runBF16 runs o's steps from..to-1 on ps with deterministic gradients.
func runBF16(t *testing.T, e *engine.Engine, o Optimizer, ps []*engine.Parameter, from, to int) {
	t.Helper()
	for s := from; s < to; s++ {
		for j, p := range ps {
			g := make([]float32, p.Numel())
			for i := range g {
				g[i] = float32(math.Sin(float64(7*s+13*i+j))) * 0.01
			}
			setGrad(t, e, p, g)
		}
		if err := o.Step(1e-3); err != nil {
			t.Fatal(err)
		}
	}
}

// newBF16 builds adamw_bf16 (weight decay 2, so the delayed decay fires) over two
// parameters of n weights.
func newBF16(t *testing.T, e *engine.Engine, seed uint64, n int) (Optimizer, []*engine.Parameter) {
	t.Helper()
	var ps []*engine.Parameter
	for j, name := range []string{"x", "y"} {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(math.Cos(float64(i+j))) * 0.3
		}
		p := e.NewParameter(name, e.FromHost(v, n))
		t.Cleanup(p.Free)
		ps = append(ps, p)
	}
	o, err := New("adamw_bf16", ps, map[string]float64{"weight_decay": 2}, seed)
	if err != nil {
		t.Fatal(err)
	}
	return o, ps
}

// TestAdamWBF16DeterministicPerSeed: the stochastic roundings come from the seed alone.
func TestAdamWBF16DeterministicPerSeed(t *testing.T) {
	e := newEngine(t)
	final := func(seed uint64) []float32 {
		o, ps := newBF16(t, e, seed, 1000)
		runBF16(t, e, o, ps, 0, 6)
		return append(values(t, ps[0].Tensor), values(t, ps[1].Tensor)...)
	}
	a, b, c := final(3), final(3), final(4)
	differ := 0
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			t.Fatalf("seed 3 twice: element %d %v vs %v", i, a[i], b[i])
		}
		if a[i] != c[i] {
			differ++
		}
	}
	if differ == 0 {
		t.Fatal("seeds 3 and 4 rounded identically")
	}
}

// TestAdamWBF16ResumeEqualsUninterrupted: State/LoadState mid-run (through a safetensors
// round trip) continues bit-identically, owed decay and step counts included.
func TestAdamWBF16ResumeEqualsUninterrupted(t *testing.T) {
	e := newEngine(t)
	oa, pa := newBF16(t, e, 9, 300)
	runBF16(t, e, oa, pa, 0, 8)

	ob, pb := newBF16(t, e, 9, 300)
	runBF16(t, e, ob, pb, 0, 3)
	ts2, meta2 := savedState(t, ob)
	for _, x := range ts2 {
		if x.DType != safetensors.BF16 {
			t.Fatalf("state tensor %s is %s, want BF16", x.Name, x.DType)
		}
	}
	oc, pc := newBF16(t, e, 9, 300)
	for i := range pc { // the weights come back from the model checkpoint
		if err := e.Backend().Upload(pc[i].Tensor.Buffer(), values(t, pb[i].Tensor)); err != nil {
			t.Fatal(err)
		}
	}
	if err := oc.LoadState(ts2, meta2); err != nil {
		t.Fatal(err)
	}
	runBF16(t, e, oc, pc, 3, 8)
	if oc.Steps() != 8 {
		t.Fatalf("steps %d", oc.Steps())
	}
	sa, sc := oa.(*adamwBF16).state, oc.(*adamwBF16).state
	for i := range pa {
		va, vc := values(t, pa[i].Tensor), values(t, pc[i].Tensor)
		for k := range va {
			if math.Float32bits(va[k]) != math.Float32bits(vc[k]) {
				t.Fatalf("%s[%d]: straight %v, resumed %v", pa[i].Name, k, va[k], vc[k])
			}
		}
		a, c := sa[pa[i].Name], sc[pa[i].Name]
		if a.decay != c.decay || a.count != c.count || fmt.Sprint(a.shift) != fmt.Sprint(c.shift) {
			t.Fatalf("%s: state differs after resume (decay %v/%v count %d/%d)", pa[i].Name, a.decay, c.decay, a.count, c.count)
		}
	}
}

// TestAdamWBF16RefusesOldState: a checkpoint of the earlier adamw_bf16 (float32 exp_avg and
// exp_avg_sq, no shift, no format) and malformed states fail with ErrState and say why.
func TestAdamWBF16RefusesOldState(t *testing.T) {
	e := newEngine(t)
	o, ps := newBF16(t, e, 1, 4)
	runBF16(t, e, o, ps, 0, 1)
	good, goodMeta, err := o.State()
	if err != nil {
		t.Fatal(err)
	}
	f32 := func(name string) safetensors.Tensor {
		x, err := safetensors.FromFloat32(name, safetensors.F32, []int{4}, make([]float32, 4))
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	with := func(k, v string) map[string]string {
		m := map[string]string{}
		for a, b := range goodMeta {
			m[a] = b
		}
		if v == "" {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	old := []safetensors.Tensor{f32("x.exp_avg"), f32("x.exp_avg_sq"), f32("y.exp_avg"), f32("y.exp_avg_sq")}
	for _, tc := range []struct {
		name string
		ts   []safetensors.Tensor
		meta map[string]string
		msg  string
	}{
		{"older trainer", old, map[string]string{"optimizer": "adamw_bf16", "steps": "1", "count.x": "1", "count.y": "1"}, "older trainer"},
		{"unknown format", good, with("format", "adamw_bf16/9"), `format "adamw_bf16/9"`},
		{"other optimizer", good, with("optimizer", "adamw"), `optimizer "adamw"`},
		{"float32 slot", append([]safetensors.Tensor{f32("x.exp_avg")}, good[1:]...), goodMeta, "want BF16"},
		{"missing shift", good[:len(good)-1], goodMeta, "y.shift missing"},
		{"no owed decay", good, with("decay.x", ""), "owed decay of x"},
		{"foreign tensor", append(good[:len(good):len(good)], f32("z.shift")), goodMeta, "1 state tensors"},
	} {
		err := o.LoadState(tc.ts, tc.meta)
		if !errors.Is(err, ErrState) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v, want ErrState mentioning %q", tc.name, err, tc.msg)
		}
	}
	if err := o.LoadState(good, goodMeta); err != nil {
		t.Fatalf("own state: %v", err)
	}
}

// TestAdamWBF16StochasticUnbiased: an update of a quarter of a bfloat16 step is not lost.
// With nearest rounding every weight stays at 1 and the update waits in shift; with the
// stochastic roundings a quarter of the weights move up one step, so the mean weight is the
// exact value 1+Δ (Δ: the nearest run's shift) within 4 standard errors of the fixed-seed
// sample of 2^16 weights.
func TestAdamWBF16StochasticUnbiased(t *testing.T) {
	const n = 1 << 16
	const ulp = 1.0 / 128 // bfloat16 spacing in [1, 2)
	e := newEngine(t)
	run := func(nearest bool) ([]float32, *bf16State) {
		ones := make([]float32, n)
		for i := range ones {
			ones[i] = 1
		}
		p := e.NewParameter("w", e.FromHost(ones, n))
		t.Cleanup(p.Free)
		o, err := New("adamw_bf16", []*engine.Parameter{p}, map[string]float64{"weight_decay": 0}, 5)
		if err != nil {
			t.Fatal(err)
		}
		o.(*adamwBF16).nearest = nearest
		g := make([]float32, n)
		for i := range g {
			g[i] = -0.5 // exact in bfloat16: exp_avg = g with no rounding at all
		}
		setGrad(t, e, p, g)
		if err := o.Step(ulp / 4); err != nil {
			t.Fatal(err)
		}
		return values(t, p.Tensor), o.(*adamwBF16).state["w"]
	}
	w, st := run(true)
	delta := float64(bf(st.shift[0]))
	if w[0] != 1 || math.Abs(delta-ulp/4) > ulp/64 {
		t.Fatalf("nearest: weight %v shift %v, want 1 and about %v", w[0], delta, ulp/4)
	}
	w, _ = run(false)
	var sum float64
	for _, x := range w {
		if x != 1 && x != 1+ulp {
			t.Fatalf("weight %v is not 1 or the next bfloat16", x)
		}
		sum += float64(x)
	}
	mean := sum / n
	q := delta / ulp
	if bound := 4 * ulp * math.Sqrt(q*(1-q)/n); math.Abs(mean-(1+delta)) > bound {
		t.Fatalf("mean weight %v, exact %v (bound %v)", mean, 1+delta, bound)
	}
}

// stepAlloc is the bytes the heap hands out during one step of o at lr 1e-3.
func stepAlloc(t *testing.T, o Optimizer) uint64 {
	t.Helper()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	if err := o.Step(1e-3); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestAdamWBF16StateBytes: the optimizer's own allocations for its state are 6 bytes per
// weight (three bfloat16 buffers), and StateBytesWith says so.
func TestAdamWBF16StateBytes(t *testing.T) {
	e := newEngine(t)
	const n = 1 << 20
	p := e.NewParameter("w", e.Zeros(n))
	defer p.Free()
	o, err := New("adamw_bf16", []*engine.Parameter{p}, nil, 1)
	if err != nil {
		t.Fatal(err)
	}
	setGrad(t, e, p, make([]float32, n))
	got := int64(stepAlloc(t, o))
	if want := int64(6 * n); got < want || got > want+64<<10 {
		t.Fatalf("first step allocated %d bytes for %d weights, want 6·n = %d (+ < 64 KiB)", got, n, want)
	}
	if b, _ := StateBytesWith("adamw_bf16", nil); b != 6 {
		t.Fatalf("StateBytesWith = %d", b)
	}
	if got := stepAlloc(t, o); got > 64<<10 {
		t.Fatalf("a later step allocated %d bytes", got)
	}
}

// BenchmarkAdamWBF16Step measures one stochastic step over 16 Mi weights (host, parallel).
func BenchmarkAdamWBF16Step(b *testing.B) {
	be, err := cpu.New(cpu.Options{BLAS: blas.ChoiceGonum})
	if err != nil {
		b.Fatal(err)
	}
	defer be.Close()
	e := engine.New(be)
	const n = 1 << 24
	p := e.NewParameter("w", e.Zeros(n))
	defer p.Free()
	o, err := New("adamw_bf16", []*engine.Parameter{p}, nil, 1)
	if err != nil {
		b.Fatal(err)
	}
	s := e.Scope()
	if err := e.Backward(e.SumAll(e.Mul(p.Tensor, e.Full(0.01, n)))); err != nil {
		b.Fatal(err)
	}
	s.Close()
	b.SetBytes(n * 4)
	b.ResetTimer()
	for range b.N {
		if err := o.Step(1e-4); err != nil {
			b.Fatal(err)
		}
	}
}

// TestStepAllocatesNothing: on a backend the host cannot address (the float64 reference
// backend stands in for a GPU), a step after the first copies through reusable buffers.
func TestStepAllocatesNothing(t *testing.T) {
	be, err := cpu.NewFloat64(cpu.Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = be.Close() })
	e := engine.New(be)
	const n = 1 << 16
	for _, name := range []string{"adamw", "adamw_bf16"} {
		p := e.NewParameter("w", e.Zeros(n))
		o, err := New(name, []*engine.Parameter{p}, nil, 1)
		if err != nil {
			t.Fatal(err)
		}
		setGrad(t, e, p, make([]float32, n))
		if err := o.Step(1e-3); err != nil {
			t.Fatal(err)
		}
		if got := stepAlloc(t, o); got > 16<<10 {
			t.Errorf("%s: a step over %d weights allocated %d bytes", name, n, got)
		}
		p.Free()
	}
}

// TestAdamWBF16Converges: on Σ(p−target)² the optimizer (stochastic rounding, default
// hyper-parameters but no decay, learning rate decaying linearly from 1e-2) brings every
// weight to within 0.005 (a few bfloat16 steps at 0.5) of its target, from errors of 0.5.
func TestAdamWBF16Converges(t *testing.T) {
	e := newEngine(t)
	const n = 512
	target := make([]float32, n)
	for i := range target {
		target[i] = float32(math.Sin(float64(i))) * 0.5
	}
	p := e.NewParameter("w", e.Zeros(n))
	defer p.Free()
	o, err := New("adamw_bf16", []*engine.Parameter{p}, map[string]float64{"weight_decay": 0}, 3)
	if err != nil {
		t.Fatal(err)
	}
	g := make([]float32, n)
	const steps = 400
	for s := range steps {
		w := values(t, p.Tensor)
		for i := range g {
			g[i] = 2 * (w[i] - target[i])
		}
		setGrad(t, e, p, g)
		if err := o.Step(1e-2 * float64(steps-s) / steps); err != nil { // linear decay
			t.Fatal(err)
		}
	}
	worst := 0.0
	for i, x := range values(t, p.Tensor) {
		worst = max(worst, math.Abs(float64(x-target[i])))
	}
	if worst > 0.005 {
		t.Fatalf("largest error after %d steps %v, want ≤ 0.005 (start: 0.5)", steps, worst)
	}
}
