package diffusion

import (
	"fmt"
	"math"
	"testing"
)

// goldenSolvers is the "timesteps" and "sampling" parts of testdata/golden.json.
type goldenSolvers struct {
	Timesteps []struct {
		Config         string    `json:"config"`
		Solver         string    `json:"solver"`
		Spacing        string    `json:"spacing"`
		StepsOffset    int       `json:"steps_offset"`
		Steps          int       `json:"steps"`
		Timesteps      []float64 `json:"timesteps"`
		InitNoiseSigma float64   `json:"init_noise_sigma"`
	} `json:"timesteps"`
	Sampling struct {
		Noise string `json:"noise"`
		C     string `json:"c"`
		Runs  []struct {
			Config       string    `json:"config"`
			Solver       string    `json:"solver"`
			Spacing      string    `json:"spacing"`
			Steps        int       `json:"steps"`
			Rescale      bool      `json:"rescale_betas_zero_snr"`
			Timesteps    []float64 `json:"timesteps"`
			ScaledInputs []string  `json:"scaled_inputs"`
			Samples      []string  `json:"samples"`
			PredX0       []string  `json:"pred_x0"`
		} `json:"runs"`
	} `json:"sampling"`
}

// goldenConfig parses the named scheduler config of the golden file.
func goldenConfig(t *testing.T, name string) SchedulerConfig {
	t.Helper()
	s, ok := loadGolden(t).Training.Schedules[name]
	if !ok {
		t.Fatalf("no config %q in the golden file", name)
	}
	c, err := ParseSchedulerConfig(s.Config, name)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func loadGoldenSolvers(t *testing.T) goldenSolvers {
	t.Helper()
	var g goldenSolvers
	readGolden(t, &g)
	return g
}

func TestSolverTimestepsMatchDiffusers(t *testing.T) {
	g := loadGoldenSolvers(t)
	if len(g.Timesteps) == 0 {
		t.Fatal("no timestep cases in the golden file")
	}
	for _, tc := range g.Timesteps {
		name := fmt.Sprintf("%s/%s/%s+%d/%d", tc.Config, tc.Solver, tc.Spacing, tc.StepsOffset, tc.Steps)
		t.Run(name, func(t *testing.T) {
			c := goldenConfig(t, tc.Config)
			c.TimestepSpacing, c.StepsOffset = tc.Spacing, tc.StepsOffset
			s, err := NewSchedule(c)
			if err != nil {
				t.Fatal(err)
			}
			sol, err := NewSolver(tc.Solver, s, c, tc.Steps)
			if err != nil {
				t.Fatal(err)
			}
			got := sol.Timesteps()
			if fmt.Sprint(got) != fmt.Sprint(tc.Timesteps) {
				t.Fatalf("timesteps %v, want %v", got, tc.Timesteps)
			}
			if sol.InitNoiseSigma() != tc.InitNoiseSigma {
				t.Fatalf("init noise sigma %v, want %v", sol.InitNoiseSigma(), tc.InitNoiseSigma)
			}
		})
	}
}

// maxRelErr is max |got−want| / max(|want|, floor·max|want|) over the elements: relative per
// element, except that an element much smaller than the sample's scale (a cancellation
// remainder, where one float32 rounding of its O(1) terms is already a large fraction of it)
// is judged against floor times that scale.
func maxRelErr(got, want []float32, floor float64) float64 {
	scale := 0.0
	for _, w := range want {
		scale = max(scale, math.Abs(float64(w)))
	}
	floor *= scale
	worst := 0.0
	for i := range want {
		d := math.Abs(float64(got[i]) - float64(want[i]))
		worst = max(worst, d/max(math.Abs(float64(want[i])), floor))
	}
	return worst
}

func TestSolverLoopsMatchDiffusers(t *testing.T) {
	g := loadGoldenSolvers(t)
	noise, cst := f32s(t, g.Sampling.Noise), f32s(t, g.Sampling.C)
	if len(g.Sampling.Runs) == 0 {
		t.Fatal("no sampling runs in the golden file")
	}
	for _, run := range g.Sampling.Runs {
		name := fmt.Sprintf("%s/%s/%s/%d", run.Config, run.Solver, run.Spacing, run.Steps)
		t.Run(name, func(t *testing.T) {
			c := ValidationConfig(goldenConfig(t, run.Config), run.Spacing, run.Rescale, "")
			s, err := NewSchedule(c)
			if err != nil {
				t.Fatal(err)
			}
			sol, err := NewSolver(run.Solver, s, c, run.Steps)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(sol.Timesteps()) != fmt.Sprint(run.Timesteps) {
				t.Fatalf("timesteps %v, want %v", sol.Timesteps(), run.Timesteps)
			}
			x := make([]float32, len(noise))
			sigma := float32(sol.InitNoiseSigma())
			for j := range x {
				x[j] = noise[j] * sigma
			}
			worst := 0.0
			for i := range run.Timesteps {
				inp := append([]float32(nil), x...)
				sol.ScaleInput(inp, i)
				worst = max(worst, maxRelErr(inp, f32s(t, run.ScaledInputs[i]), 1e-2))
				eps := make([]float32, len(x))
				for j := range eps {
					eps[j] = 0.3*inp[j] + cst[j]
				}
				if len(run.PredX0) > 0 {
					worst = max(worst, maxRelErr(sol.PredictX0(eps, i, x), f32s(t, run.PredX0[i]), 1e-2))
				}
				if err := sol.Step(eps, i, x); err != nil {
					t.Fatal(err)
				}
				e := maxRelErr(x, f32s(t, run.Samples[i]), 1e-2)
				worst = max(worst, e)
			}
			t.Logf("worst relative error %.3g", worst)
			if worst > 1e-5 {
				t.Fatalf("worst relative error %.3g > 1e-5", worst)
			}
		})
	}
}
