package diffusion

import (
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSampleTimestepsStrata(t *testing.T) {
	tests := []struct {
		name string
		n    int
		u    []float32
		want []int
	}{
		{"bs1 low", 1000, []float32{0}, []int{0}},
		{"bs1 high", 1000, []float32{0.9999999}, []int{999}},
		{"bs1 mid", 1000, []float32{0.5}, []int{500}},
		// bs 2: strata [499, 999] (501 values) and [0, 499] (500 values), as SimpleTuner.
		{"bs2 bottoms", 1000, []float32{0, 0}, []int{499, 0}},
		{"bs2 tops", 1000, []float32{0.9999999, 0.9999999}, []int{999, 499}},
		// bs 3: size 333: [666, 999], [333, 666], [0, 333].
		{"bs3", 1000, []float32{0, 0.5, 0.9999999}, []int{666, 500, 333}},
		// 10 timesteps, size 5: [4, 9] and [0, 4].
		{"bs2 small", 10, []float32{0, 0.9999999}, []int{4, 4}},
		{"clamped draws", 1000, []float32{-0.5, 1.5}, []int{499, 499}},
		{"more samples than timesteps", 2, []float32{0, 0.99, 0.5}, []int{0, 0, 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := segmentedTimesteps(tc.n, tc.u)
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("got %v, want %v", got, tc.want)
				}
			}
		})
	}
}

// TestSampleTimestepsEachInItsStratum draws many batches and checks every sample stays in its
// own stratum and the union covers 0..T−1.
func TestSampleTimestepsEachInItsStratum(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, bs := range []int{2, 3, 4, 7} {
		size := 1000 / bs
		seen := make([]bool, 1000)
		for range 20000 {
			u := make([]float32, bs)
			for i := range u {
				u[i] = rng.Float32()
			}
			for i, ts := range segmentedTimesteps(1000, u) {
				hi := 999 - i*size
				lo := max(hi-size, 0)
				if i == bs-1 {
					lo = 0
				}
				if ts < lo || ts > hi {
					t.Fatalf("bs %d sample %d: t=%d outside [%d, %d]", bs, i, ts, lo, hi)
				}
				seen[ts] = true
			}
		}
		for ts, ok := range seen {
			if !ok {
				t.Fatalf("bs %d: timestep %d never drawn", bs, ts)
			}
		}
	}
}

// TestSampleTimestepsUniform checks a batch of one is uniform over 0..T−1 with a chi-square
// bound on 10 bins (fixed seed, so the statistic is deterministic; the bound is the 0.999
// quantile for 9 degrees of freedom).
func TestSampleTimestepsUniform(t *testing.T) {
	s, err := NewSchedule(DefaultSchedulerConfig())
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	const draws, bins = 100000, 10
	var counts [bins]int
	for range draws {
		ts := s.SampleTimesteps([]float32{rng.Float32()})[0]
		if ts < 0 || ts > 999 {
			t.Fatalf("t=%d out of range", ts)
		}
		counts[ts*bins/1000]++
	}
	exp := float64(draws) / bins
	chi := 0.0
	for _, c := range counts {
		chi += (float64(c) - exp) * (float64(c) - exp) / exp
	}
	if chi > 27.88 {
		t.Fatalf("chi-square %.2f over 10 bins (counts %v): not uniform", chi, counts)
	}
}

func TestMinSNRWeight(t *testing.T) {
	// SimpleTuner: stack([snr, γ]).min / snr, or / (snr+1) for v-prediction.
	tests := []struct {
		snr, gamma float64
		pred       string
		want       float64
	}{
		{10, 5, "epsilon", 0.5},
		{2, 5, "epsilon", 1},
		{0.01, 5, "epsilon", 1},
		{10, 5, "v_prediction", 5.0 / 11},
		{2, 5, "v_prediction", 2.0 / 3},
		{100, 1, "sample", 0.01},
		{10, 0, "epsilon", 1},
		{10, -1, "v_prediction", 1},
	}
	for _, tc := range tests {
		if got := MinSNRWeight(tc.snr, tc.gamma, tc.pred); math.Abs(got-tc.want) > 1e-15 {
			t.Errorf("MinSNRWeight(%v, %v, %s) = %v, want %v", tc.snr, tc.gamma, tc.pred, got, tc.want)
		}
	}
}

func TestSNRAndCoefficients(t *testing.T) {
	s, err := NewSchedule(DefaultSchedulerConfig())
	if err != nil {
		t.Fatal(err)
	}
	for _, ts := range []int{0, 1, 500, 999} {
		a := s.AlphaBar(ts)
		if got, want := s.SNR(ts), a/(1-a); math.Abs(got-want) > 1e-5*want {
			t.Errorf("SNR(%d) = %v, want ≈ %v", ts, got, want)
		}
		sig, noi := s.NoiseCoefficients(ts)
		if d := float64(sig*sig+noi*noi) - 1; math.Abs(d) > 1e-6 {
			t.Errorf("t=%d: signal²+noise² − 1 = %g", ts, d)
		}
	}
	// The default PixArt schedule: ᾱ_999 ≈ 4.04e-5.
	if a := s.AlphaBar(999); math.Abs(a-4.036e-5) > 1e-7 {
		t.Errorf("ᾱ_999 = %g", a)
	}
}

func TestReadSchedulerConfig(t *testing.T) {
	write := func(t *testing.T, body string) string {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, ConfigFileName), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	t.Run("missing file", func(t *testing.T) {
		_, err := ReadSchedulerConfig(t.TempDir())
		if !errors.Is(err, ErrConfig) || !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), ConfigFileName) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("bad json", func(t *testing.T) {
		_, err := ReadSchedulerConfig(write(t, `{"beta_start": `))
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "not a scheduler config") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("unknown beta_schedule", func(t *testing.T) {
		_, err := ReadSchedulerConfig(write(t, `{"beta_schedule": "sigmoid"}`))
		if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), `"sigmoid"`) ||
			!strings.Contains(err.Error(), "scaled_linear") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("unknown prediction_type", func(t *testing.T) {
		_, err := ReadSchedulerConfig(write(t, `{"prediction_type": "flow"}`))
		if !errors.Is(err, ErrUnsupported) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("trained_betas length", func(t *testing.T) {
		_, err := ReadSchedulerConfig(write(t, `{"num_train_timesteps": 3, "trained_betas": [0.1, 0.2]}`))
		if !errors.Is(err, ErrConfig) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("defaults and nulls", func(t *testing.T) {
		c, err := ReadSchedulerConfig(write(t, `{"_class_name": "DPMSolverMultistepScheduler",
			"beta_schedule": "scaled_linear", "beta_end": 0.012, "trained_betas": null,
			"prediction_type": null, "solver_order": 2}`))
		if err != nil {
			t.Fatal(err)
		}
		if c.ClassName != "DPMSolverMultistepScheduler" || c.NumTrainTimesteps != 1000 || c.BetaStart != 0.0001 ||
			c.BetaEnd != 0.012 || c.BetaSchedule != "scaled_linear" || c.PredictionType != "epsilon" ||
			c.TimestepSpacing != "" || c.SetAlphaToOne != nil || c.ClipSample != nil {
			t.Fatalf("config %+v", c)
		}
	})
}
