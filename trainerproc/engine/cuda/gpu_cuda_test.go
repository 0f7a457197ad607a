//go:build cuda

package cuda

import (
	"math"
	"testing"

	"simpletuner/trainerproc/engine"
	"simpletuner/trainerproc/engine/cpu"
	"simpletuner/trainerproc/model"
	"simpletuner/trainerproc/optim"
)

// These tests need a GPU; a binary built with -tags cuda cannot even start without one
// (gorgonia.org/cu exits in its init), so they are compiled into a test binary on the build
// machine (go test -c -tags cuda) and run by scripts/gpu-check.sh on the GPU machine.

func newPair(t *testing.T, prec Precision) (*Backend, *cpu.Backend[float32]) {
	t.Helper()
	g, err := New(Options{Precision: prec})
	if err != nil {
		t.Fatalf("cuda backend: %v", err)
	}
	t.Cleanup(func() { _ = g.Close() })
	c, err := cpu.New(cpu.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	t.Logf("gpu: %s; reference: %s", g.Describe(), c.Describe())
	return g, c
}

func TestOpParity(t *testing.T) {
	for _, prec := range []Precision{PrecisionFP32, PrecisionBF16} {
		t.Run(prec.String(), func(t *testing.T) {
			g, c := newPair(t, prec)
			for _, r := range CheckParity(g, c, 1) {
				t.Logf("PARITY\t%s\t%s\t%.3g\t%.0e\t%v\t%s", r.Op, r.Precision, r.RelErr, r.Tol, r.OK(), r.Note)
				if !r.OK() {
					t.Errorf("%s (%s): relative error %.3g (tolerance %g), NaN %v, err %v", r.Op, r.Note, r.RelErr, r.Tol, r.NaN, r.Err)
				}
			}
			if g.LiveBuffers() != 0 {
				t.Errorf("%d GPU buffers leaked", g.LiveBuffers())
			}
		})
	}
}

// LossCurve trains a freshly initialised tiny dit for steps AdamW steps on a fixed batch and
// returns the loss of every step.
func lossCurve(be engine.Backend, steps int) ([]float64, error) {
	e := engine.New(be)
	cfg, err := model.Flavour("tiny")
	if err != nil {
		return nil, err
	}
	m, err := model.New(e, cfg, 3)
	if err != nil {
		return nil, err
	}
	defer m.Free()
	opt, err := optim.New("adamw", m.Trainable(), nil, 0)
	if err != nil {
		return nil, err
	}
	rng := engine.NewRNG(1)
	const batch, tokens = 4, 16
	x0 := e.RandN(rng, 0, 1, batch, cfg.InChannels, cfg.SampleSize, cfg.SampleSize)
	defer x0.Free()
	c := model.Captions{Tokens: make([]int32, batch*tokens), Mask: make([]float32, batch*tokens), Len: tokens}
	for i := range c.Tokens {
		c.Tokens[i] = int32((i * 37) % cfg.VocabSize)
		if i%tokens < tokens*3/4 {
			c.Mask[i] = 1
		}
	}
	var out []float64
	for range steps {
		var lv float32
		var stepErr error
		err := engine.Catch(func() {
			s := e.Scope()
			defer s.Close()
			l, _, err := m.Loss(x0, c, rng, model.LossOptions{})
			if err == nil {
				err = e.Backward(l)
			}
			if err == nil {
				lv, err = l.Item()
			}
			stepErr = err
		})
		if err == nil {
			err = stepErr
		}
		if err != nil {
			return out, err
		}
		if err := opt.Step(1e-3); err != nil {
			return out, err
		}
		engine.ZeroGrads(m.Trainable())
		out = append(out, float64(lv))
	}
	return out, nil
}

// TestTinyTrainingMatchesCPU trains the same tiny model on both backends: the loss curves
// must agree within the precision's tolerance at every step, and fall.
func TestTinyTrainingMatchesCPU(t *testing.T) {
	const steps = 30
	for _, c := range []struct {
		prec Precision
		tol  float64
	}{{PrecisionFP32, 1e-3}, {PrecisionBF16, 5e-2}} {
		t.Run(c.prec.String(), func(t *testing.T) {
			g, ref := newPair(t, c.prec)
			want, err := lossCurve(ref, steps)
			if err != nil {
				t.Fatal(err)
			}
			got, err := lossCurve(g, steps)
			if err != nil {
				t.Fatal(err)
			}
			worst := 0.0
			for i := range want {
				rel := math.Abs(got[i]-want[i]) / math.Abs(want[i])
				worst = max(worst, rel)
				if math.IsNaN(got[i]) || rel > c.tol {
					t.Errorf("step %d: gpu loss %.6f, cpu %.6f (relative %.2g > %g)", i+1, got[i], want[i], rel, c.tol)
				}
			}
			t.Logf("LOSSCURVE\t%s\t%d steps\tcpu %.4f→%.4f\tgpu %.4f→%.4f\tworst rel %.2g\ttol %g",
				c.prec, steps, want[0], want[steps-1], got[0], got[steps-1], worst, c.tol)
			if !(got[steps-1] < got[0]) {
				t.Errorf("gpu loss did not fall: %.4f → %.4f", got[0], got[steps-1])
			}
		})
	}
}
