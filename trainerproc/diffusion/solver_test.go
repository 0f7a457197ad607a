package diffusion

import (
	"errors"
	"math"
	"strings"
	"testing"
)

func TestNewSolverRejects(t *testing.T) {
	base := ValidationConfig(DefaultSchedulerConfig(), "", false, "")
	s, err := NewSchedule(base)
	if err != nil {
		t.Fatal(err)
	}
	short, err := NewSchedule(SchedulerConfig{NumTrainTimesteps: 10, BetaStart: 1e-4, BetaEnd: 0.02,
		BetaSchedule: "linear", PredictionType: "epsilon"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		solver string
		sched  *Schedule
		edit   func(*SchedulerConfig)
		steps  int
		want   string
	}{
		{"unknown name", "unipc", s, nil, 10, "supported: ddim, euler, dpm++"},
		{"simpletuner spelling only", "dpmsolver++", s, nil, 10, "supported: ddim, euler, dpm++"},
		{"zero steps", "ddim", s, nil, 0, "inference steps"},
		{"too many steps", "euler", s, nil, 1001, "inference steps"},
		{"mismatched schedule", "ddim", short, nil, 5, "does not match"},
		{"nil schedule", "ddim", nil, nil, 5, "does not match"},
		{"thresholding", "ddim", s, func(c *SchedulerConfig) { c.Thresholding = true }, 10, "thresholding"},
		{"karras", "euler", s, func(c *SchedulerConfig) { c.UseKarrasSigmas = true }, 10, "use_karras_sigmas"},
		{"lu lambdas", "dpm++", s, func(c *SchedulerConfig) { c.UseLuLambdas = true }, 10, "use_lu_lambdas"},
		{"final sigmas", "dpm++", s, func(c *SchedulerConfig) { c.FinalSigmasType = "max" }, 10, "final_sigmas_type"},
		{"sde algorithm", "dpm++", s, func(c *SchedulerConfig) { c.AlgorithmType = "sde-dpmsolver++" }, 10, "algorithm_type"},
		{"third order", "dpm++", s, func(c *SchedulerConfig) { c.SolverOrder = 3 }, 10, "solver_order"},
		{"solver type", "dpm++", s, func(c *SchedulerConfig) { c.SolverType = "bh2" }, 10, "solver_type"},
		{"log_linear", "euler", s, func(c *SchedulerConfig) { c.InterpolationType = "log_linear" }, 10, "interpolation_type"},
		{"continuous", "euler", s, func(c *SchedulerConfig) { c.TimestepType = "continuous" }, 10, "timestep_type"},
		{"spacing", "ddim", s, func(c *SchedulerConfig) { c.TimestepSpacing = "karras" }, 10, "timestep_spacing"},
		{"offset past T", "ddim", s, func(c *SchedulerConfig) { c.TimestepSpacing, c.StepsOffset = "leading", 1000 }, 1, "outside"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			if tc.edit != nil {
				tc.edit(&c)
			}
			_, err := NewSolver(tc.solver, tc.sched, c, tc.steps)
			if !errors.Is(err, ErrUnsupported) && !errors.Is(err, ErrConfig) {
				t.Fatalf("err = %v, want ErrUnsupported or ErrConfig", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestSolverStepErrors(t *testing.T) {
	c := ValidationConfig(DefaultSchedulerConfig(), "", false, "")
	s, err := NewSchedule(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range SolverNames() {
		t.Run(name, func(t *testing.T) {
			sol, err := NewSolver(name, s, c, 4)
			if err != nil {
				t.Fatal(err)
			}
			if sol.Name() != name || len(sol.Timesteps()) != 4 {
				t.Fatalf("name %q, timesteps %v", sol.Name(), sol.Timesteps())
			}
			x := []float32{0.1, -0.2, 0.3}
			if err := sol.Step([]float32{1, 2}, 0, x); err == nil {
				t.Fatal("length mismatch accepted")
			}
			if err := sol.Step([]float32{1, 2, 3}, 4, x); err == nil {
				t.Fatal("step past the schedule accepted")
			}
			if name == "dpm++" {
				if err := sol.Step([]float32{1, 2, 3}, 1, x); err == nil || !strings.Contains(err.Error(), "out of order") {
					t.Fatalf("out-of-order step: err = %v", err)
				}
			}
			for i := range 4 {
				if err := sol.Step([]float32{0.1, 0.1, 0.1}, i, x); err != nil {
					t.Fatal(err)
				}
			}
			for _, v := range x {
				if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
					t.Fatalf("non-finite sample %v", x)
				}
			}
		})
	}
}

func TestValidationConfig(t *testing.T) {
	c := DefaultSchedulerConfig()
	v := ValidationConfig(c, "", true, "v_prediction")
	if v.TimestepSpacing != "trailing" || !v.RescaleBetasZeroSNR || v.PredictionType != "v_prediction" {
		t.Fatalf("%+v", v)
	}
	v = ValidationConfig(c, "leading", false, "")
	if v.TimestepSpacing != "leading" || v.RescaleBetasZeroSNR || v.PredictionType != "epsilon" {
		t.Fatalf("%+v", v)
	}
}

func TestPythonConstants(t *testing.T) {
	c, err := ParseSchedulerConfig([]byte(`{"lambda_min_clipped": -Infinity, "_class_name": "NaN -Infinity \"x"}`), "t")
	if err != nil {
		t.Fatal(err)
	}
	if !math.IsInf(float64(c.LambdaMinClipped), -1) || c.ClassName != `NaN -Infinity "x` {
		t.Fatalf("%+v", c)
	}
	c, err = ParseSchedulerConfig([]byte(`{"lambda_min_clipped": -5.5}`), "t")
	if err != nil || c.LambdaMinClipped != -5.5 {
		t.Fatalf("%v %v", c.LambdaMinClipped, err)
	}
	if c, err = ParseSchedulerConfig([]byte(`{}`), "t"); err != nil || !math.IsInf(float64(c.LambdaMinClipped), -1) {
		t.Fatalf("default lambda_min_clipped %v, %v", c.LambdaMinClipped, err)
	}
}
