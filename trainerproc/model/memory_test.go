package model

import (
	"strings"
	"testing"

	"simpletuner/options"
	"simpletuner/trainerproc/engine"
	"simpletuner/trainerproc/engine/cpu"
)

// Memory estimates are checked against the CPU engine's high-water mark of live bytes
// (buffers and kernel scratch). The estimate may be above the measured peak by at most
// overTolerance (it takes the largest of a few moments of the step, each counted with
// everything that may be alive then) and below it by at most underTolerance (rounding of
// small terms), so a configuration it accepts fits.
const (
	overTolerance  = 0.25
	underTolerance = 0.02
)

// newMeasuredModel builds cfg's model on a 2-thread CPU backend whose peak the memory
// tests read; free releases both.
func newMeasuredModel(t *testing.T, cfg Config) (be *cpu.Backend[float32], e *engine.Engine, m *Model, free func()) {
	t.Helper()
	be, err := cpu.New(cpu.Options{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	e = engine.New(be)
	if m, err = New(e, cfg, 1); err != nil {
		_ = be.Close()
		t.Fatal(err)
	}
	return be, e, m, func() { m.Free(); _ = be.Close() }
}

// trainStepPeak runs micro-batches of one optimizer step the way the runner does (a scope
// per micro-batch, x0 from the host, Loss, Item, Backward of the scaled loss, gradients
// accumulated) and returns the backend's peak of live bytes.
func trainStepPeak(t *testing.T, cfg Config, ac *AdapterConfig, s TrainShape) int64 {
	t.Helper()
	be, e, m, free := newMeasuredModel(t, cfg)
	defer free()
	var err error
	if ac != nil {
		if err := m.AttachAdapters(*ac); err != nil {
			t.Fatal(err)
		}
	}
	l := s.CaptionLen
	if l == 0 {
		l = cfg.MaxTokens
	}
	b := makeBatch(cfg, s.Batch, 1, l, 3)
	rng := engine.NewRNG(5)
	be.ResetPeak()
	for range max(1, s.Accumulation) {
		err = engine.Catch(func() {
			sc := e.Scope()
			defer sc.Close()
			x0 := e.FromHost(make([]float32, s.Batch*3*s.Height*s.Width), s.Batch, 3, s.Height, s.Width)
			o := LossOptions{CaptionDropout: 0.1}
			for _, wh := range s.Cond {
				o.Cond = append(o.Cond, e.FromHost(make([]float32, s.Batch*3*wh[0]*wh[1]), s.Batch, 3, wh[1], wh[0]))
			}
			loss, _, err := m.Loss(x0, b.c, rng, o)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := loss.Item(); err != nil {
				t.Fatal(err)
			}
			if err := e.Backward(e.Scale(loss, 1/float32(max(1, s.Accumulation)))); err != nil {
				t.Fatal(err)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	engine.ZeroGrads(m.Trainable())
	return be.Peak()
}

func checkEstimate(t *testing.T, what string, est, measured int64) {
	t.Helper()
	ratio := float64(est) / float64(measured)
	t.Logf("%s: estimate %d, measured %d (%.3f)", what, est, measured, ratio)
	if ratio > 1+overTolerance || ratio < 1-underTolerance {
		t.Errorf("%s: estimate %s is %.3f× the measured peak %s (allowed %.2f–%.2f)", what, FormatBytes(est), ratio,
			FormatBytes(measured), 1-underTolerance, 1+overTolerance)
	}
}

// TestTrainingMemoryMatchesTheEngine: for full fine-tunes, LoRA (with and without
// dropout), LoKr, conditioning, batches, accumulation and resolutions where the attention
// scratch dominates, the estimate's device part is within the tolerance of what the CPU
// engine really allocates for one step.
func TestTrainingMemoryMatchesTheEngine(t *testing.T) {
	tiny, err := Flavour("tiny")
	if err != nil {
		t.Fatal(err)
	}
	cond := tiny
	cond.Conditioning = true
	lora := &AdapterConfig{Type: "standard", Rank: 4, Seed: 1}
	cases := []struct {
		name string
		cfg  Config
		s    TrainShape
		ac   *AdapterConfig
	}{
		{"full 16px", tiny, TrainShape{Batch: 1, Width: 16, Height: 16}, nil},
		{"full 32x16 batch 2, short captions", tiny, TrainShape{Batch: 2, Width: 32, Height: 16, CaptionLen: 8}, nil},
		{"full 64px (scratch dominates)", tiny, TrainShape{Batch: 1, Width: 64, Height: 64}, nil},
		{"full 16px, accumulation 2", tiny, TrainShape{Batch: 1, Width: 16, Height: 16, Accumulation: 2}, nil},
		{"lora 32px batch 2", tiny, TrainShape{Batch: 2, Width: 32, Height: 32}, lora},
		{"lora with dropout 32px", tiny, TrainShape{Batch: 1, Width: 32, Height: 32}, &AdapterConfig{Type: "standard", Rank: 4, Dropout: 0.1, Seed: 1}},
		{"lokr 16px", tiny, TrainShape{Batch: 1, Width: 16, Height: 16},
			&AdapterConfig{Type: "lycoris", Seed: 4, Lycoris: options.LycorisConfig{Algo: "lokr", Multiplier: 1, LinearDim: 10000, LinearAlpha: 1, Factor: 4}}},
		{"conditioning 16px + 16x8 reference", cond, TrainShape{Batch: 1, Width: 16, Height: 16, Cond: [][2]int{{16, 8}}}, nil},
	}
	ws, err := cpu.New(cpu.Options{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.s
			s.Adapters = tc.ac
			est, err := tc.cfg.TrainingMemory(s, ws)
			if err != nil {
				t.Fatal(err)
			}
			checkEstimate(t, tc.name, est.Device(), trainStepPeak(t, tc.cfg, tc.ac, tc.s))
		})
	}
}

// TestSamplingMemoryMatchesTheEngine: one validation forward pass (no graph, guidance's
// batch of 2) against the engine's peak.
func TestSamplingMemoryMatchesTheEngine(t *testing.T) {
	cfg, err := Flavour("tiny")
	if err != nil {
		t.Fatal(err)
	}
	be, e, m, free := newMeasuredModel(t, cfg)
	defer free()
	const w, h, bsz = 48, 32, 2
	b := makeBatch(cfg, bsz, 1, cfg.MaxTokens, 3)
	be.ResetPeak()
	err = engine.Catch(func() {
		defer e.NoGrad()()
		sc := e.Scope()
		defer sc.Close()
		out, err := m.Forward(e.FromHost(make([]float32, bsz*3*w*h), bsz, 3, h, w), []float32{0.5, 0.5}, b.c)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := out.ToHost(); err != nil {
			t.Fatal(err)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	est, err := cfg.SamplingMemory(SampleShape{Width: w, Height: h, Batch: bsz}, nil, be)
	if err != nil {
		t.Fatal(err)
	}
	checkEstimate(t, "sampling 48x32", est.Device(), be.Peak())
}

// TestTrainingMemoryAtTheTutorialResolution: the tutorial's dataloader (1024 px,
// pixel_area) on tiny is 512×512 tokens; the CPU engine holds one head's scores and their
// gradient in the backward pass, 2·262144² floats: 512 GiB, far beyond any host.
func TestTrainingMemoryAtTheTutorialResolution(t *testing.T) {
	cfg, err := Flavour("tiny")
	if err != nil {
		t.Fatal(err)
	}
	be, err := cpu.New(cpu.Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	m, err := cfg.TrainingMemory(TrainShape{Batch: 1, Width: 1024, Height: 1024, OptimizerBytes: 8}, be)
	if err != nil {
		t.Fatal(err)
	}
	if m.Workspace != 512<<30 {
		t.Errorf("attention scratch %s, want 512 GiB", FormatBytes(m.Workspace))
	}
	if m.Total() < 512<<30 || m.Total() > 520<<30 {
		t.Errorf("total %s, want just above 512 GiB (%s)", FormatBytes(m.Total()), m)
	}
	if m.Optimizer != 2*m.Weights {
		t.Errorf("AdamW state %d, want twice the weights %d", m.Optimizer, m.Weights)
	}
	// At its own sample size the same model needs a few MiB.
	small, err := cfg.TrainingMemory(TrainShape{Batch: 1, Width: cfg.SampleSize, Height: cfg.SampleSize, OptimizerBytes: 8}, be)
	if err != nil {
		t.Fatal(err)
	}
	if small.Total() > 16<<20 {
		t.Errorf("tiny at %d px needs %s", cfg.SampleSize, small)
	}
	if !strings.Contains(m.String(), "attention scratch 512 GiB") {
		t.Errorf("breakdown %q does not name the scratch", m.String())
	}
}

func TestMemoryEstimateRefusesNonsense(t *testing.T) {
	cfg, _ := Flavour("tiny")
	if _, err := cfg.TrainingMemory(TrainShape{Batch: 0, Width: 16, Height: 16}, nil); err == nil {
		t.Error("batch 0 accepted")
	}
	if _, err := cfg.TrainingMemory(TrainShape{Batch: 1, Width: 16, Height: 16, Adapters: &AdapterConfig{Type: "standard"}}, nil); err == nil {
		t.Error("rank 0 accepted")
	}
}

func TestFormatBytes(t *testing.T) {
	for _, tc := range []struct {
		n    int64
		want string
	}{{512, "512 B"}, {1536, "1.5 KiB"}, {3 << 20, "3.0 MiB"}, {512 << 30, "512 GiB"}, {5 << 40, "5.0 TiB"}} {
		if got := FormatBytes(tc.n); got != tc.want {
			t.Errorf("FormatBytes(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}
