package diffusion

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
)

// ConfigFileName is the name of a diffusers scheduler config inside the pipeline's scheduler/
// folder.
const ConfigFileName = "scheduler_config.json"

// Sentinel errors; each returned error wraps one of them with the offending value.
var (
	// ErrConfig reports a scheduler config that is missing, unreadable or malformed.
	ErrConfig = errors.New("diffusion: bad scheduler config")
	// ErrUnsupported reports a config value this package does not implement (a β schedule,
	// prediction type, spacing or solver option); the message names the supported values.
	ErrUnsupported = errors.New("diffusion: unsupported scheduler setting")
)

// SchedulerConfig is <pipeline>/scheduler/scheduler_config.json. Every diffusers scheduler
// class (DDPM, DDIM, DPMSolverMultistep, UniPC, Euler…) carries the β fields, so any of them
// defines the training schedule.
//
// Fields whose diffusers default is the same in every class hold that default when the file
// omits them. Fields whose default depends on the class that is built from the config
// (TimestepSpacing, SetAlphaToOne, ClipSample) stay empty/nil when absent: diffusers'
// from_config drops the source class's defaults (its _use_default_values), so the target
// class's own default applies, and the solvers resolve it per class.
type SchedulerConfig struct {
	// ClassName is _class_name (e.g. "DPMSolverMultistepScheduler"); informational.
	ClassName string `json:"_class_name"`
	// NumTrainTimesteps is the number of training timesteps T (default 1000).
	NumTrainTimesteps int `json:"num_train_timesteps"`
	// BetaStart and BetaEnd bound the β schedule (defaults 1e-4 and 0.02).
	BetaStart float64 `json:"beta_start"`
	BetaEnd   float64 `json:"beta_end"`
	// BetaSchedule is "linear" (default), "scaled_linear" or "squaredcos_cap_v2".
	BetaSchedule string `json:"beta_schedule"`
	// TrainedBetas, when non-empty, replaces the β schedule.
	TrainedBetas []float64 `json:"trained_betas"`
	// PredictionType is "epsilon" (default), "v_prediction" or "sample".
	PredictionType string `json:"prediction_type"`
	// TimestepSpacing is "linspace", "leading" or "trailing"; empty means the class default.
	TimestepSpacing string `json:"timestep_spacing"`
	// StepsOffset is added to leading-spaced inference timesteps (default 0).
	StepsOffset int `json:"steps_offset"`
	// SetAlphaToOne is DDIM's final ᾱ choice; nil means DDIM's default (true).
	SetAlphaToOne *bool `json:"set_alpha_to_one"`
	// RescaleBetasZeroSNR rescales β to zero terminal SNR (default false).
	RescaleBetasZeroSNR bool `json:"rescale_betas_zero_snr"`
	// ClipSample clips DDIM's predicted x₀ to ±ClipSampleRange; nil means the class default
	// (true for DDPM and DDIM).
	ClipSample *bool `json:"clip_sample"`
	// ClipSampleRange is the clip bound (default 1).
	ClipSampleRange float64 `json:"clip_sample_range"`
	// Thresholding is dynamic thresholding; not implemented, so true is rejected by the solvers.
	Thresholding bool `json:"thresholding"`
	// SolverOrder is DPM-Solver's multistep order (default 2).
	SolverOrder int `json:"solver_order"`
	// AlgorithmType is DPM-Solver's algorithm (default "dpmsolver++").
	AlgorithmType string `json:"algorithm_type"`
	// SolverType is DPM-Solver's second-order form, "midpoint" (default) or "heun".
	SolverType string `json:"solver_type"`
	// LowerOrderFinal makes DPM-Solver use first order on the last steps (default true).
	LowerOrderFinal *bool `json:"lower_order_final"`
	// EulerAtFinal makes DPM-Solver's last step first order (default false).
	EulerAtFinal bool `json:"euler_at_final"`
	// FinalSigmasType is the σ after the last step, "zero" (default) or "sigma_min".
	FinalSigmasType string `json:"final_sigmas_type"`
	// LambdaMinClipped clips DPM-Solver's λ schedule from below (default −∞: no clipping).
	LambdaMinClipped PyFloat `json:"lambda_min_clipped"`
	// UseKarrasSigmas and the other σ-spacing switches are not implemented; true is rejected.
	UseKarrasSigmas      bool `json:"use_karras_sigmas"`
	UseExponentialSigmas bool `json:"use_exponential_sigmas"`
	UseBetaSigmas        bool `json:"use_beta_sigmas"`
	UseLuLambdas         bool `json:"use_lu_lambdas"`
	UseFlowSigmas        bool `json:"use_flow_sigmas"`
	// InterpolationType is Euler's σ interpolation; only "linear" (default) is implemented.
	InterpolationType string `json:"interpolation_type"`
	// TimestepType is Euler's timestep kind; only "discrete" (default) is implemented.
	TimestepType string `json:"timestep_type"`
}

// DefaultSchedulerConfig is what diffusers' scheduler classes assume for an empty config.
func DefaultSchedulerConfig() SchedulerConfig {
	return SchedulerConfig{
		NumTrainTimesteps: 1000,
		BetaStart:         0.0001,
		BetaEnd:           0.02,
		BetaSchedule:      "linear",
		PredictionType:    "epsilon",
		ClipSampleRange:   1,
		SolverOrder:       2,
		AlgorithmType:     "dpmsolver++",
		SolverType:        "midpoint",
		FinalSigmasType:   "zero",
		InterpolationType: "linear",
		TimestepType:      "discrete",
		LambdaMinClipped:  PyFloat(math.Inf(-1)),
	}
}

// ReadSchedulerConfig reads dir/scheduler_config.json (dir is the pipeline's scheduler/
// folder). Fields the file omits keep DefaultSchedulerConfig's values; a JSON null counts as
// omitted, as it does for diffusers.
func ReadSchedulerConfig(dir string) (SchedulerConfig, error) {
	path := filepath.Join(dir, ConfigFileName)
	raw, err := os.ReadFile(path)
	if err != nil {
		return SchedulerConfig{}, fmt.Errorf("%w: %s: %w", ErrConfig, path, err)
	}
	return ParseSchedulerConfig(raw, path)
}

// ParseSchedulerConfig decodes a scheduler config's JSON; name labels errors.
func ParseSchedulerConfig(raw []byte, name string) (SchedulerConfig, error) {
	c := DefaultSchedulerConfig()
	if err := json.Unmarshal(quotePythonConstants(raw), &c); err != nil {
		return SchedulerConfig{}, fmt.Errorf("%w: %s is not a scheduler config: %w", ErrConfig, name, err)
	}
	// A JSON null already leaves the default in place; an explicit zero or empty string for
	// these fields means nothing else either, so it too gets the default.
	d := DefaultSchedulerConfig()
	if c.NumTrainTimesteps == 0 {
		c.NumTrainTimesteps = d.NumTrainTimesteps
	}
	if c.BetaSchedule == "" {
		c.BetaSchedule = d.BetaSchedule
	}
	if c.PredictionType == "" {
		c.PredictionType = d.PredictionType
	}
	if err := c.validate(); err != nil {
		return SchedulerConfig{}, fmt.Errorf("%s: %w", name, err)
	}
	return c, nil
}

// validate checks the fields that define the training schedule.
func (c SchedulerConfig) validate() error {
	if c.NumTrainTimesteps < 2 {
		return fmt.Errorf("%w: num_train_timesteps %d must be at least 2", ErrConfig, c.NumTrainTimesteps)
	}
	if len(c.TrainedBetas) == 0 {
		switch c.BetaSchedule {
		case "linear", "scaled_linear", "squaredcos_cap_v2":
		default:
			return fmt.Errorf("%w: beta_schedule %q (supported: linear, scaled_linear, squaredcos_cap_v2, or trained_betas)",
				ErrUnsupported, c.BetaSchedule)
		}
	} else if len(c.TrainedBetas) != c.NumTrainTimesteps {
		return fmt.Errorf("%w: trained_betas has %d values for num_train_timesteps %d",
			ErrConfig, len(c.TrainedBetas), c.NumTrainTimesteps)
	}
	switch c.PredictionType {
	case "epsilon", "v_prediction", "sample":
	default:
		return fmt.Errorf("%w: prediction_type %q (supported: epsilon, v_prediction, sample)",
			ErrUnsupported, c.PredictionType)
	}
	switch c.TimestepSpacing {
	case "", "linspace", "leading", "trailing":
	default:
		return fmt.Errorf("%w: timestep_spacing %q (supported: linspace, leading, trailing)",
			ErrUnsupported, c.TimestepSpacing)
	}
	return nil
}

// PyFloat is a float64 that also decodes Python's json spellings of non-finite numbers
// (-Infinity, Infinity, NaN), which diffusers writes for defaults such as
// lambda_min_clipped = −∞.
type PyFloat float64

// UnmarshalJSON accepts a JSON number or one of the strings "-Infinity", "Infinity", "NaN"
// (quotePythonConstants turns the bare Python tokens into those strings).
func (f *PyFloat) UnmarshalJSON(b []byte) error {
	switch string(b) {
	case "null":
		return nil
	case `"-Infinity"`:
		*f = PyFloat(math.Inf(-1))
		return nil
	case `"Infinity"`:
		*f = PyFloat(math.Inf(1))
		return nil
	case `"NaN"`:
		*f = PyFloat(math.NaN())
		return nil
	}
	var v float64
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*f = PyFloat(v)
	return nil
}

// quotePythonConstants rewrites the bare tokens -Infinity, Infinity and NaN that Python's
// json module writes (and Go's rejects) into JSON strings, leaving string literals alone.
func quotePythonConstants(raw []byte) []byte {
	out := make([]byte, 0, len(raw)+16)
	inString, escaped := false, false
	for i := 0; i < len(raw); i++ {
		ch := raw[i]
		if inString {
			out = append(out, ch)
			switch {
			case escaped:
				escaped = false
			case ch == '\\':
				escaped = true
			case ch == '"':
				inString = false
			}
			continue
		}
		if ch == '"' {
			inString = true
			out = append(out, ch)
			continue
		}
		matched := false
		for _, tok := range []string{"-Infinity", "Infinity", "NaN"} {
			if len(raw)-i >= len(tok) && string(raw[i:i+len(tok)]) == tok {
				out = append(out, '"')
				out = append(out, tok...)
				out = append(out, '"')
				i += len(tok) - 1
				matched = true
				break
			}
		}
		if !matched {
			out = append(out, ch)
		}
	}
	return out
}
