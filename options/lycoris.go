package options

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"

	"simpletuner/internal/jsondoc"
)

// A LyCORIS config is the JSON document --lycoris_config names (inline or as a file):
// SimpleTuner's format, handed to the LyCORIS library. CheckLycoris is the one set of
// rules for it: the daemon applies them when the document is saved, validated or
// submitted, and the trainer when it reads it (ParseLycoris), so a config that validates
// is one the trainer applies.

// lycorisOption is the option the issues of a LyCORIS config are about.
const lycorisOption = "--lycoris_config"

// knownLycorisAlgos are the algorithm names the LyCORIS library (and so SimpleTuner)
// accepts.
var knownLycorisAlgos = []string{"boft", "diag-oft", "dylora", "full", "glora", "ia3", "lokr", "locon", "loha", "lora", "oft", "tlora"}

// TrainedLycorisAlgo is the one LyCORIS algorithm the trainer applies: LoKr.
const TrainedLycorisAlgo = "lokr"

// LycorisModules are the module classes the trainer's model can adapt with LyCORIS, the
// names apply_preset.target_module and module_algo_map use.
func LycorisModules() []string { return []string{"Attention", "FeedForward"} }

// LycorisConfig is what the trainer applies of a checked LyCORIS config.
type LycorisConfig struct {
	// Algo is the algorithm, lower case (always TrainedLycorisAlgo once checked).
	Algo string `json:"algo"`
	// Multiplier scales the adapter's update.
	Multiplier float64 `json:"multiplier"`
	// LinearDim is the rank of the decomposed Kronecker factor; a dimension at least half
	// the factor's size keeps the factor whole.
	LinearDim int `json:"linear_dim"`
	// LinearAlpha scales a decomposed factor by LinearAlpha/LinearDim.
	LinearAlpha float64 `json:"linear_alpha"`
	// Factor splits each dimension as LyCORIS' factorization does; -1 picks the most
	// balanced split.
	Factor int `json:"factor"`
	// FullMatrix keeps both Kronecker factors whole whatever LinearDim says.
	FullMatrix bool `json:"full_matrix"`
	// ApplyPreset says which modules get an adapter.
	ApplyPreset LycorisPreset `json:"apply_preset"`
}

// LycorisPreset is the part of apply_preset the trainer applies.
type LycorisPreset struct {
	// TargetModule lists module classes (LycorisModules) to adapt; empty adapts all.
	TargetModule []string `json:"target_module"`
	// ModuleAlgoMap overrides settings per module class.
	ModuleAlgoMap map[string]LycorisOverride `json:"module_algo_map"`
}

// LycorisOverride is a per-module-class override of module_algo_map.
type LycorisOverride struct {
	// Factor replaces LycorisConfig.Factor for the class (0: not overridden).
	Factor int `json:"factor"`
}

// DefaultLycorisConfig is SimpleTuner's default LoKr config, the one a new LyCORIS
// environment starts with: full-size Kronecker factors (linear_dim 10000), factor 16 for
// attention and 8 for feed-forward layers.
func DefaultLycorisConfig() map[string]any {
	return map[string]any{
		"algo":         "lokr",
		"multiplier":   1.0,
		"linear_dim":   10000,
		"linear_alpha": 1,
		"factor":       16,
		"apply_preset": map[string]any{
			"target_module": []any{"Attention", "FeedForward"},
			"module_algo_map": map[string]any{
				"Attention":   map[string]any{"factor": 16},
				"FeedForward": map[string]any{"factor": 8},
			},
		},
	}
}

// CheckLycoris checks a decoded LyCORIS config (numbers as float64, json.Number or int)
// against SimpleTuner's rules and what the trainer applies. Errors are what would make
// SimpleTuner or this trainer refuse the config; warnings name settings the trainer
// ignores. Every issue is about --lycoris_config.
func CheckLycoris(doc any) Issues {
	m, ok := doc.(map[string]any)
	if !ok {
		return Issues{lycorisErr(`A LyCORIS config must be a JSON object, like {"algo": "lokr", "multiplier": 1.0, "linear_dim": 10000, "linear_alpha": 1, "factor": 16}`)}
	}
	var out Issues
	add := func(i Issue) { out = append(out, i) }
	switch raw, present := m["algo"]; {
	case !present || raw == nil || raw == "":
		add(lycorisErr("Missing required field: 'algo'"))
	default:
		algo, isStr := raw.(string)
		name := strings.ToLower(strings.TrimSpace(algo))
		switch {
		case !isStr:
			add(lycorisErr("Field 'algo' must be a string"))
		case !slices.Contains(knownLycorisAlgos, name):
			add(lycorisErr("Unknown algo '%s'. Known algorithms: %s", clip(algo), strings.Join(knownLycorisAlgos, ", ")))
		case name != TrainedLycorisAlgo:
			add(lycorisErr("algo '%s' is not one this trainer applies: it trains LyCORIS LoKr only; set \"algo\": \"lokr\"", clip(algo)))
		}
	}
	full := false
	if v, present := m["full_matrix"]; present && v != nil {
		b, isBool := v.(bool)
		if !isBool {
			add(lycorisErr("Field 'full_matrix' must be true or false"))
		}
		full = b
	}
	for _, f := range []struct {
		key      string
		integer  bool
		required bool
		auto     bool // -1 is allowed ("balanced")
	}{
		{"multiplier", false, true, false},
		{"linear_dim", true, !full, false},
		{"linear_alpha", false, true, false},
		{"factor", true, false, true},
	} {
		if msg := lycorisNumber(m, f.key, f.integer, f.required, f.auto); msg != "" {
			add(lycorisErr("%s", msg))
		}
	}
	if v, present := m["apply_preset"]; present && v != nil {
		out = append(out, checkLycorisPreset(v)...)
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		switch k {
		case "algo", "multiplier", "linear_dim", "linear_alpha", "factor", "full_matrix", "apply_preset":
		default:
			add(warnIssue(lycorisOption, "LyCORIS setting '%s' is not applied by this trainer's LoKr and is ignored", clip(k)))
		}
	}
	slices.SortStableFunc(out, func(a, b Issue) int { return int(a.Severity) - int(b.Severity) })
	return out
}

// lycorisNumber checks one numeric field: present when required, a number (an integer
// when integer), and at least 1 for integers or above 0 for other numbers, -1 allowed
// when auto. It returns "" or SimpleTuner's message for the problem.
func lycorisNumber(m map[string]any, key string, integer, required, auto bool) string {
	v, present := m[key]
	if !present || v == nil {
		if required {
			if key == "linear_dim" {
				return "Missing required field: 'linear_dim' (needed unless \"full_matrix\": true)"
			}
			return fmt.Sprintf("Missing required field: '%s'", key)
		}
		return ""
	}
	f, isInt, ok := jsonNumber(v)
	switch {
	case !ok && integer:
		return fmt.Sprintf("Field '%s' must be an integer", key)
	case !ok:
		return fmt.Sprintf("Field '%s' must be a number", key)
	case integer && !isInt:
		return fmt.Sprintf("Field '%s' must be an integer, got %s", key, FormatValue(v))
	case auto && f == -1:
		return ""
	case integer && f < 1 && auto:
		return fmt.Sprintf("Field '%s' must be a positive integer or -1 (the most balanced split), got %s", key, FormatValue(v))
	case integer && f < 1:
		return fmt.Sprintf("Field '%s' must be positive, got %s", key, FormatValue(v))
	case !integer && f <= 0:
		return fmt.Sprintf("Field '%s' must be greater than 0, got %s", key, FormatValue(v))
	}
	return ""
}

// jsonNumber reads a decoded JSON number: its value, whether it is written as an integer
// (json.Number) or is integral (float64, int), and whether v is a number at all.
func jsonNumber(v any) (f float64, isInt, ok bool) {
	switch x := v.(type) {
	case int:
		return float64(x), true, true
	case int64:
		return float64(x), true, true
	case float64:
		return x, x == math.Trunc(x) && !math.IsInf(x, 0), !math.IsNaN(x)
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return float64(i), true, true
		}
		f, err := x.Float64()
		return f, false, err == nil
	}
	return 0, false, false
}

// checkLycorisPreset checks apply_preset: target_module names module classes the model
// has, module_algo_map holds objects whose factor is valid. Keys the trainer does not
// apply (target_name, exclude_name, name_algo_map, …) are warnings.
func checkLycorisPreset(v any) Issues {
	p, ok := v.(map[string]any)
	if !ok {
		return Issues{lycorisErr("Field 'apply_preset' must be a dictionary")}
	}
	var out Issues
	modules := LycorisModules()
	for _, k := range slices.Sorted(maps.Keys(p)) {
		val := p[k]
		switch k {
		case "target_module":
			list, ok := val.([]any)
			if !ok {
				out = append(out, lycorisErr("Field 'apply_preset.target_module' must be a list"))
				continue
			}
			matched := 0
			for _, e := range list {
				s, _ := e.(string)
				if slices.Contains(modules, s) {
					matched++
					continue
				}
				out = append(out, warnIssue(lycorisOption, "apply_preset.target_module: '%s' is not a module class of this trainer's model (it has %s) and is ignored", clip(FormatValue(e)), strings.Join(modules, " and ")))
			}
			if len(list) > 0 && matched == 0 {
				out = append(out, lycorisErr("apply_preset.target_module names no module this trainer adapts; list %s", strings.Join(modules, " and/or ")))
			}
		case "module_algo_map":
			mm, ok := val.(map[string]any)
			if !ok {
				out = append(out, lycorisErr("Field 'apply_preset.module_algo_map' must be a dictionary"))
				continue
			}
			for _, name := range slices.Sorted(maps.Keys(mm)) {
				o, ok := mm[name].(map[string]any)
				if !ok {
					out = append(out, lycorisErr("Override '%s' within 'apply_preset.module_algo_map' must be a dictionary", clip(name)))
					continue
				}
				if msg := lycorisNumber(o, "factor", true, false, true); msg != "" {
					out = append(out, lycorisErr("apply_preset.module_algo_map.%s: %s", clip(name), msg))
				}
				for _, key := range slices.Sorted(maps.Keys(o)) {
					if key != "factor" {
						out = append(out, warnIssue(lycorisOption, "apply_preset.module_algo_map.%s: '%s' is not applied by this trainer and is ignored", clip(name), clip(key)))
					}
				}
			}
		default:
			out = append(out, warnIssue(lycorisOption, "apply_preset.%s is not applied by this trainer and is ignored", clip(k)))
		}
	}
	return out
}

func lycorisErr(format string, args ...any) Issue {
	return errIssue(lycorisOption, ErrInvalidValue, format, args...)
}

// ParseLycoris decodes and checks a LyCORIS config document. With error-level issues the
// config is not usable; warnings come back either way. Unset optional fields take
// LyCORIS' defaults (factor -1).
func ParseLycoris(data []byte) (LycorisConfig, Issues) {
	c := LycorisConfig{Multiplier: 1, LinearDim: 1, LinearAlpha: 1, Factor: -1}
	var doc any
	if err := jsondoc.DecodeNumbers(data, &doc); err != nil {
		return c, Issues{lycorisErr("the LyCORIS config is not valid JSON: %v", err)}
	}
	issues := CheckLycoris(doc)
	if issues.HasErrors() {
		return c, issues
	}
	if err := json.Unmarshal(data, &c); err != nil {
		return c, append(issues, lycorisErr("the LyCORIS config cannot be read: %v", err))
	}
	c.Algo = strings.ToLower(strings.TrimSpace(c.Algo))
	return c, issues
}
