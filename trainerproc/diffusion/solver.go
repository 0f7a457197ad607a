package diffusion

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// Solver integrates a model's predictions on host latents for validation images. The model
// output it takes is what the config's prediction_type says (ε for PixArt-Σ; v or x₀
// otherwise). A Solver runs one sampling loop: call ScaleInput, the model, then Step for
// i = 0, 1, … len(Timesteps())−1 in order; build a new one for the next loop. It is not safe
// for concurrent use (the multistep solvers keep their previous outputs).
type Solver interface {
	// Name is the --validation_noise_scheduler spelling that built the solver.
	Name() string
	// Timesteps are the model timesteps, in the order they are visited.
	Timesteps() []float64
	// ScaleInput scales x in place into the model's input at step i (Euler divides by
	// √(σ²+1); DDIM and DPM-Solver leave it as is).
	ScaleInput(x []float32, i int)
	// Step replaces x, the sample at step i, with the sample at step i+1, given the model
	// output for step i.
	Step(eps []float32, i int, x []float32) error
	// PredictX0 is the predicted clean sample at step i (for previews); it changes no state.
	PredictX0(eps []float32, i int, x []float32) []float32
	// InitNoiseSigma is the initial noise's scale: the first sample is N(0,1)·InitNoiseSigma.
	InitNoiseSigma() float64
}

// solverNames are the --validation_noise_scheduler values NewSolver accepts, spelled as
// SimpleTuner spells them (the keys of its validation scheduler map).
var solverNames = []string{"ddim", "euler", "dpm++"}

// SolverNames returns the --validation_noise_scheduler values NewSolver accepts.
func SolverNames() []string { return slices.Clone(solverNames) }

// DefaultSolver is PixArt-Σ's validation scheduler when --validation_noise_scheduler is unset
// (SimpleTuner's PixArt model default).
const DefaultSolver = "ddim"

// DefaultInferenceTimestepSpacing is SimpleTuner's --inference_scheduler_timestep_spacing
// default, which its validation passes as timestep_spacing to every scheduler it builds.
const DefaultInferenceTimestepSpacing = "trailing"

// ValidationConfig is c with the overrides SimpleTuner's validation applies when it builds
// its scheduler with from_config(<pipeline scheduler>.config, ...): timestep_spacing from
// --inference_scheduler_timestep_spacing (spacing; "" means DefaultInferenceTimestepSpacing),
// rescale_betas_zero_snr from --rescale_betas_zero_snr, and prediction_type when the job
// sets --prediction_type (predictionType; "" keeps the file's).
func ValidationConfig(c SchedulerConfig, spacing string, rescaleZeroSNR bool, predictionType string) SchedulerConfig {
	if spacing == "" {
		spacing = DefaultInferenceTimestepSpacing
	}
	c.TimestepSpacing = spacing
	c.RescaleBetasZeroSNR = rescaleZeroSNR
	if predictionType != "" {
		c.PredictionType = predictionType
	}
	return c
}

// NewSolver builds the validation sampler name (a --validation_noise_scheduler value: "ddim",
// "euler" or "dpm++") for steps inference steps, as diffusers' DDIMScheduler,
// EulerDiscreteScheduler or DPMSolverMultistepScheduler does when built from c and given
// set_timesteps(steps). c is the pipeline's scheduler config with SimpleTuner's overrides
// applied (see ValidationConfig); fields the file did not set take the built class's own
// diffusers defaults, as from_config does: DDIM clip_sample true, set_alpha_to_one true and
// timestep_spacing "leading"; Euler and DPM-Solver timestep_spacing "linspace". The ᾱ table
// is s's (s must be NewSchedule(c)'s: same β and zero-SNR rescale). η is 0 (the pipelines'
// default), so every solver is deterministic.
func NewSolver(name string, s *Schedule, c SchedulerConfig, steps int) (Solver, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	if s == nil || s.NumTimesteps() != c.NumTrainTimesteps {
		return nil, fmt.Errorf("%w: the schedule does not match the scheduler config", ErrConfig)
	}
	if steps < 1 || steps > c.NumTrainTimesteps {
		return nil, fmt.Errorf("%w: %d inference steps (must be 1..%d, the training timesteps)",
			ErrUnsupported, steps, c.NumTrainTimesteps)
	}
	if c.Thresholding {
		return nil, fmt.Errorf("%w: thresholding (dynamic thresholding is not implemented)", ErrUnsupported)
	}
	switch name {
	case "ddim":
		return newDDIM(s, c, steps)
	case "euler":
		return newEuler(s, c, steps)
	case "dpm++":
		return newDPM(s, c, steps)
	}
	return nil, fmt.Errorf("%w: validation noise scheduler %q (supported: %s)",
		ErrUnsupported, name, strings.Join(solverNames, ", "))
}

// spacingOr is c's timestep_spacing, or the class default def when the file had none.
func spacingOr(c SchedulerConfig, def string) string {
	if c.TimestepSpacing == "" {
		return def
	}
	return c.TimestepSpacing
}

// checkSigmaOptions rejects the σ-spacing switches this package does not implement.
func checkSigmaOptions(c SchedulerConfig) error {
	for _, o := range []struct {
		name string
		on   bool
	}{
		{"use_karras_sigmas", c.UseKarrasSigmas}, {"use_exponential_sigmas", c.UseExponentialSigmas},
		{"use_beta_sigmas", c.UseBetaSigmas}, {"use_lu_lambdas", c.UseLuLambdas}, {"use_flow_sigmas", c.UseFlowSigmas},
	} {
		if o.on {
			return fmt.Errorf("%w: %s (only the default σ spacing is implemented)", ErrUnsupported, o.name)
		}
	}
	switch c.FinalSigmasType {
	case "zero", "sigma_min":
		return nil
	}
	return fmt.Errorf("%w: final_sigmas_type %q (supported: zero, sigma_min)", ErrUnsupported, c.FinalSigmasType)
}

// checkLens reports model output and sample slices of different lengths, and a step index
// outside the schedule.
func checkLens(eps, x []float32, i, n int) error {
	if len(eps) != len(x) {
		return fmt.Errorf("diffusion: model output has %d values for a sample of %d", len(eps), len(x))
	}
	if i < 0 || i >= n {
		return fmt.Errorf("diffusion: step %d outside 0..%d", i, n-1)
	}
	return nil
}

// npLinspace is numpy.linspace(start, stop, num) in double: i·step + start, the last value
// set to stop.
func npLinspace(start, stop float64, num int) []float64 {
	out := make([]float64, num)
	if num == 1 {
		out[0] = start
		return out
	}
	step := (stop - start) / float64(num-1)
	for i := range out {
		out[i] = float64(i)*step + start
	}
	out[num-1] = stop
	return out
}

// npArange is numpy.arange(start, stop, step) for doubles: ⌈(stop−start)/step⌉ values, the
// first two start and start+step, then start + i·((start+step) − start).
func npArange(start, stop, step float64) []float64 {
	n := int(math.Ceil((stop - start) / step))
	if n <= 0 {
		return nil
	}
	out := make([]float64, n)
	out[0] = start
	if n > 1 {
		out[1] = start + step
		delta := out[1] - start
		for i := 2; i < n; i++ {
			out[i] = start + float64(i)*delta
		}
	}
	return out
}

// widen converts timesteps to the float64 the Solver interface hands out.
func widen[T int | float32](v []T) []float64 {
	out := make([]float64, len(v))
	for i, t := range v {
		out[i] = float64(t)
	}
	return out
}

// reversed returns v backwards.
func reversed[T any](v []T) []T {
	out := slices.Clone(v)
	slices.Reverse(out)
	return out
}

// npInterp is numpy.interp(x, 0..len(fp)−1, fp) in double.
func npInterp(x float64, fp []float32) float64 {
	last := len(fp) - 1
	switch {
	case x <= 0:
		return float64(fp[0])
	case x >= float64(last):
		return float64(fp[last])
	}
	j := int(math.Floor(x))
	if float64(j) == x {
		return float64(fp[j])
	}
	// numpy's slope divides by xp[j+1] − xp[j], which is 1 here.
	slope := float64(fp[j+1]) - float64(fp[j])
	return slope*(x-float64(j)) + float64(fp[j])
}

// sigmaTable is σ_t = √((1 − ᾱ_t)/ᾱ_t) in float32 for every training timestep, as the
// σ-based schedulers compute it.
func sigmaTable(ab []float32) []float32 {
	out := make([]float32, len(ab))
	for i, a := range ab {
		out[i] = sqrt32((1 - a) / a)
	}
	return out
}

// zeroSNRAlphaBars is s's ᾱ table for the σ-based schedulers: with the zero-SNR rescale they
// set the last ᾱ to 2⁻²⁴ so that σ stays finite.
func zeroSNRAlphaBars(s *Schedule, c SchedulerConfig) []float32 {
	ab := slices.Clone(s.alphaBars)
	if c.RescaleBetasZeroSNR {
		ab[len(ab)-1] = 1.0 / (1 << 24)
	}
	return ab
}

// finalSigma is the σ after the last step: 0, or σ at t=0 for "sigma_min".
func finalSigma(c SchedulerConfig, ab []float32) float32 {
	if c.FinalSigmasType == "sigma_min" {
		return sqrt32((1 - ab[0]) / ab[0])
	}
	return 0
}

// roundEven is numpy's round (half to even).
func roundEven(x float64) float64 { return math.RoundToEven(x) }

// log32 and exp32 are float32 log and exp.
func log32(x float32) float32 { return float32(math.Log(float64(x))) }
func exp32(x float32) float32 { return float32(math.Exp(float64(x))) }
