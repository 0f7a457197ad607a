package model

import (
	"errors"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"

	"simpletuner/options"
	"simpletuner/trainerproc/engine"
	"simpletuner/trainerproc/engine/blas"
	"simpletuner/trainerproc/engine/cpu"
	"simpletuner/trainerproc/safetensors"
)

func newF64(t *testing.T) (*engine.Engine, *cpu.Backend[float64]) {
	t.Helper()
	be, err := cpu.NewFloat64(cpu.Options{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = be.Close() })
	return engine.New(be), be
}

func f64(t *engine.Tensor) []float64 { return cpu.Data[float64](t.Buffer()) }

// testBatch is a fixed batch: x0, eps, t and captions with padding and one null caption.
type testBatch struct {
	x0, eps []float32
	t       []float32
	c       Captions
	shape   []int
}

func makeBatch(cfg Config, bsz, res, l int, seed uint64) testBatch {
	r := rand.New(rand.NewPCG(seed, 1))
	n := bsz * cfg.InChannels * res * res
	b := testBatch{x0: make([]float32, n), eps: make([]float32, n), t: make([]float32, bsz),
		shape: []int{bsz, cfg.InChannels, res, res}}
	for i := range b.x0 {
		b.x0[i] = float32(r.NormFloat64())
		b.eps[i] = float32(r.NormFloat64())
	}
	for i := range b.t {
		b.t[i] = float32(0.05 + 0.9*r.Float64())
	}
	b.c = Captions{Tokens: make([]int32, bsz*l), Mask: make([]float32, bsz*l), Len: l}
	for s := 0; s < bsz; s++ {
		valid := l - s // sample s has s padding tokens
		if s == bsz-1 && bsz > 2 {
			valid = 0 // a dropped caption
		}
		for j := 0; j < l; j++ {
			b.c.Tokens[s*l+j] = int32(r.IntN(cfg.VocabSize))
			if j < valid {
				b.c.Mask[s*l+j] = 1
			}
		}
	}
	return b
}

// perturb adds noise to every float64 parameter so that zero-initialised projections carry
// gradient to everything before them.
func perturb(ps []*engine.Parameter, seed uint64, std float64) {
	r := rand.New(rand.NewPCG(seed, 2))
	for _, p := range ps {
		for i, d := 0, f64(p.Tensor); i < len(d); i++ {
			d[i] += std * r.NormFloat64()
		}
	}
}

func gradCheckConfig(t *testing.T) Config {
	cfg, err := Flavour("tiny")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// lossOf evaluates the flow loss without recording a graph.
func lossOf(t *testing.T, m *Model, b testBatch) float64 {
	e := m.Engine()
	defer e.NoGrad()()
	s := e.Scope()
	defer s.Close()
	l, err := m.FlowLoss(e.FromHost(b.x0, b.shape...), e.FromHost(b.eps, b.shape...), b.t, b.c)
	if err != nil {
		t.Fatal(err)
	}
	return f64(l)[0]
}

// checkGrads compares Backward's gradient of every trainable parameter with central
// differences on a few random elements of each.
func checkGrads(t *testing.T, m *Model, b testBatch, perParam int) {
	t.Helper()
	e := m.Engine()
	s := e.Scope()
	l, err := m.FlowLoss(e.FromHost(b.x0, b.shape...), e.FromHost(b.eps, b.shape...), b.t, b.c)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Backward(l); err != nil {
		t.Fatal(err)
	}
	s.Close()
	r := rand.New(rand.NewPCG(5, 5))
	const h = 1e-5
	checked, worst := 0, 0.0
	for _, p := range m.Trainable() {
		if p.Grad() == nil {
			t.Fatalf("%s got no gradient", p.Name)
		}
		g, d := f64(p.Grad()), f64(p.Tensor)
		for k := 0; k < perParam; k++ {
			j := r.IntN(len(d))
			orig := d[j]
			d[j] = orig + h
			lp := lossOf(t, m, b)
			d[j] = orig - h
			lm := lossOf(t, m, b)
			d[j] = orig
			num := (lp - lm) / (2 * h)
			rel := math.Abs(num-g[j]) / math.Max(math.Max(math.Abs(num), math.Abs(g[j])), 1e-3)
			worst = max(worst, rel)
			if rel > 1e-5 || math.IsNaN(rel) {
				t.Errorf("%s[%d]: analytic %.10g numeric %.10g (rel %.2g)", p.Name, j, g[j], num, rel)
			}
			checked++
		}
	}
	t.Logf("%d elements checked, worst relative error %.2g", checked, worst)
}

// TestModelGradCheck is the model-level finite-difference check of the tiny flavour in
// float64: every parameter tensor, through patchify, adaLN-single, self/cross attention with
// padding and a null caption, the caption encoder and unpatchify.
func TestModelGradCheck(t *testing.T) {
	e, be := newF64(t)
	cfg := gradCheckConfig(t)
	m, err := New(e, cfg, 1)
	if err != nil {
		t.Fatal(err)
	}
	perturb(m.Params(), 3, 0.05)
	// 8×8 pixels (a 4×4 token grid, not the 8×8 base grid: exercises interpolation), B=3.
	checkGrads(t, m, makeBatch(cfg, 3, 8, 5, 9), 3)
	engine.ZeroGrads(m.Trainable())
	m.Free()
	if n, bytes := be.Stats(); n != 0 {
		t.Errorf("%d buffers (%d bytes) leaked", n, bytes)
	}
}

// TestAdapterGradCheck checks LoRA (with dropout off) and LoKr gradients and that the base
// weights are frozen.
func TestAdapterGradCheck(t *testing.T) {
	for _, ac := range []AdapterConfig{
		{Type: "standard", Rank: 4, Alpha: 8, Seed: 3},
		{Type: "lycoris", Seed: 4, Lycoris: options.LycorisConfig{Algo: "lokr", Multiplier: 1, LinearDim: 10000, LinearAlpha: 1, Factor: 4}},
		{Type: "lycoris", Seed: 4, Lycoris: options.LycorisConfig{Algo: "lokr", Multiplier: 1, LinearDim: 2, LinearAlpha: 1, Factor: 4}},
	} {
		t.Run(ac.Type, func(t *testing.T) {
			e, be := newF64(t)
			cfg := gradCheckConfig(t)
			cfg.NumLayers = 1
			m, err := New(e, cfg, 1)
			if err != nil {
				t.Fatal(err)
			}
			perturb(m.Params(), 3, 0.05)
			if err := m.AttachAdapters(ac); err != nil {
				t.Fatal(err)
			}
			tr := m.Trainable()
			for _, p := range tr {
				if m.Param(p.Name) != nil {
					t.Fatalf("base weight %s is trainable", p.Name)
				}
			}
			perturb(tr, 4, 0.1) // zero-initialised B/W2 would hide A/W1's gradient
			checkGrads(t, m, makeBatch(cfg, 2, 8, 4, 2), 2)
			for _, p := range m.Params() {
				if p.Grad() != nil {
					t.Fatalf("frozen %s got a gradient", p.Name)
				}
			}
			engine.ZeroGrads(tr)
			m.Free()
			if n, _ := be.Stats(); n != 0 {
				t.Errorf("%d buffers leaked", n)
			}
		})
	}
}

func TestFlavourParamCounts(t *testing.T) {
	for _, tc := range []struct {
		flavour string
		min     int
		max     int
	}{
		{"tiny", 100_000, 400_000},
		{"small", 5_000_000, 10_000_000},
		{"base", 100_000_000, 200_000_000},
		{"xl", 600_000_000, 700_000_000},
	} {
		cfg, err := Flavour(tc.flavour)
		if err != nil {
			t.Fatal(err)
		}
		n := cfg.ParamCount()
		t.Logf("%s: D=%d depth=%d heads=%d params=%d", tc.flavour, cfg.Width(), cfg.NumLayers, cfg.NumHeads, n)
		if n < tc.min || n > tc.max {
			t.Errorf("%s: %d parameters outside [%d, %d]", tc.flavour, n, tc.min, tc.max)
		}
	}
	if _, err := Flavour("huge"); !errors.Is(err, ErrConfig) {
		t.Errorf("unknown flavour: %v", err)
	}
}

// TestXLTransformerMatchesPixArt checks the xl transformer's block arithmetic against
// PixArt-Σ-XL: 28 blocks of 21,255,552 parameters each.
func TestXLTransformerMatchesPixArt(t *testing.T) {
	cfg, _ := Flavour("xl")
	perBlock := 0
	for _, sp := range cfg.paramShapes() {
		if len(sp.name) > 21 && sp.name[:21] == "transformer_blocks.0." {
			k := 1
			for _, d := range sp.shape {
				k *= d
			}
			perBlock += k
		}
	}
	if perBlock != 21_255_552 {
		t.Errorf("xl block has %d parameters, PixArt-XL's has 21,255,552", perBlock)
	}
}

func TestSaveLoadRoundTrip(t *testing.T) {
	be, err := cpu.New(cpu.Options{Threads: 1, BLAS: blas.ChoiceGonum})
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	e := engine.New(be)
	cfg := gradCheckConfig(t)
	m, err := New(e, cfg, 7)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	dir := filepath.Join(t.TempDir(), "model")
	if err := m.Save(dir); err != nil {
		t.Fatal(err)
	}
	m2, loaded, err := FromPretrained(e, dir, Config{}, 0)
	if err != nil || !loaded {
		t.Fatalf("FromPretrained: loaded=%v err=%v", loaded, err)
	}
	defer m2.Free()
	for i, p := range m.Params() {
		a, _ := p.ToHost()
		b, _ := m2.Params()[i].ToHost()
		for j := range a {
			if math.Float32bits(a[j]) != math.Float32bits(b[j]) {
				t.Fatalf("%s[%d] differs after reload", p.Name, j)
			}
		}
	}
	// A missing directory starts from scratch; a broken one is an error.
	m3, loaded, err := FromPretrained(e, filepath.Join(dir, "absent"), cfg, 1)
	if err != nil || loaded {
		t.Fatalf("absent dir: loaded=%v err=%v", loaded, err)
	}
	m3.Free()
	if _, _, err := FromPretrained(e, t.TempDir(), cfg, 1); !errors.Is(err, ErrWeights) {
		t.Fatalf("empty dir: %v", err)
	}
	f, err := safetensors.Open(filepath.Join(dir, TransformerDir, TransformerWeights))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, ok := f.Info("transformer_blocks.1.attn2.to_out.0.weight"); !ok {
		t.Error("diffusers name missing from the transformer file")
	}
}

// TestForwardShapesAndInputErrors checks the output shape at a non-square resolution and that
// bad inputs are rejected with ErrInput.
func TestForwardShapesAndInputErrors(t *testing.T) {
	be, err := cpu.New(cpu.Options{Threads: 1, BLAS: blas.ChoiceGonum})
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	e := engine.New(be)
	cfg := gradCheckConfig(t)
	m, err := New(e, cfg, 7)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	s := e.Scope()
	defer s.Close()
	x := e.Zeros(2, 3, 8, 12)
	c := Captions{Tokens: []int32{1, 2, 3, 4}, Mask: []float32{1, 1, 1, 0}, Len: 2}
	out, err := m.Forward(x, []float32{0.1, 0.9}, c)
	if err != nil {
		t.Fatal(err)
	}
	if got := out.Shape(); !slices.Equal(got, []int{2, 3, 8, 12}) {
		t.Fatalf("output %v", got)
	}
	bad := []struct {
		name string
		x    *engine.Tensor
		t    []float32
		c    Captions
	}{
		{"odd size", e.Zeros(2, 3, 7, 8), []float32{0, 0}, c},
		{"channels", e.Zeros(2, 4, 8, 8), []float32{0, 0}, c},
		{"timesteps", x, []float32{0}, c},
		{"token id", x, []float32{0, 0}, Captions{Tokens: []int32{1, 2, 3, 999}, Mask: c.Mask, Len: 2}},
		{"too long", x, []float32{0, 0}, Captions{Tokens: make([]int32, 2*40), Mask: make([]float32, 2*40), Len: 40}},
	}
	for _, b := range bad {
		if _, err := m.Forward(b.x, b.t, b.c); !errors.Is(err, ErrInput) {
			t.Errorf("%s: %v, want ErrInput", b.name, err)
		}
	}
}
