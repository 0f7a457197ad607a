package runner

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"simpletuner/options"
	"simpletuner/plugins"
	"simpletuner/trainerproc/family"
	"simpletuner/trainerproc/optim"
	"simpletuner/trainerproc/validation"
)

// ErrConfig wraps every configuration problem Run reports; it also wraps
// plugins.ErrInvalidConfig so the daemon classifies it as the user's error.
var ErrConfig = fmt.Errorf("runner: %w", plugins.ErrInvalidConfig)

// DefaultSeed is used when --seed is unset.
const DefaultSeed = 42

// Settings is the typed subset of a resolved configuration the trainer acts on.
type Settings struct {
	Cfg *options.Config // the whole resolved configuration
	// Components are the directories of per-component weight overrides, by component
	// ("vae", "transformer"), once the run has resolved its weights.
	Components map[string]string

	ModelFamily, Flavour, Pretrained, ModelType string
	Adapters                                    family.AdapterConfig
	OutputDir                                   string
	DataConfig                                  []byte
	Resolution                                  float64
	ResolutionType, CacheDirVAE                 string
	CaptionDropout                              float64
	TokenizerMaxLength                          int
	// SNRGamma is --snr_gamma (0: no min-SNR weighting).
	SNRGamma float64
	// GradientCheckpointing is --gradient_checkpointing; IKnowWhatIAmDoing lifts the
	// settings a family forces (family.SettingsForcer).
	GradientCheckpointing, IKnowWhatIAmDoing bool
	// Forced are the settings the job's family overrode (already applied to the fields
	// above), reported as warnings by Validate and when the run starts.
	Forced []family.Forced

	BatchSize, Accum, MaxSteps, Epochs int
	Seed                               uint64
	SeedSet                            bool
	MaxGradNorm                        float64
	Resume                             string

	Optimizer                              string
	OptimizerOverrides                     map[string]float64
	LearningRate                           float64
	Scheduler                              string
	Warmup, NumCycles                      int
	Power                                  float64
	CheckpointSteps, CheckpointEpochs      int
	TotalLimit, RollingSteps, RollingLimit int

	ValidationPrompt, ValidationNegative string
	PromptLibrary                        map[string]string
	ValidationGuidance                   float64
	ValidationSteps, ValidationInterval  int
	ValidationResolution                 string
	ValidationSeed                       uint64
	ValidationPreview                    bool
	ValidationPreviewSteps               int
	// ValidationSampler is --validation_noise_scheduler ("" for the family's default).
	ValidationSampler                string
	ValidationMethod, ExternalScript string
	ExternalBackground               bool
}

// HasValidation reports whether any validation is configured.
func (s *Settings) HasValidation() bool {
	if s.ValidationMethod == "external-script" {
		return strings.TrimSpace(s.ExternalScript) != ""
	}
	return len(validation.Prompts(s.ValidationPrompt, s.PromptLibrary)) > 0
}

// resolveConfig parses the daemon's JSON object ("--flag" keys) over the defaults of reg.
func resolveConfig(reg *options.Registry, raw json.RawMessage) (*options.Config, options.Issues, error) {
	sub, issues := reg.ParseJSON(raw)
	if issues.HasErrors() {
		return nil, issues, fmt.Errorf("%w: %w", ErrConfig, issues.Err())
	}
	cfg, more := reg.Merge(nil, sub.Values)
	issues = append(issues, more...)
	// The daemon checked permissions when the job was submitted; the trainer only checks
	// that the values make sense.
	issues = append(issues, reg.Validate(cfg, options.ValidateOptions{Permissions: []string{options.PermHooks}})...)
	if issues.HasErrors() {
		return cfg, issues, fmt.Errorf("%w: %w", ErrConfig, issues.Err())
	}
	return cfg, issues, nil
}

// readJSONOption returns an option that is either inline JSON (starting with { or [) or a
// path to a JSON file. The error is the bare read error: callers report it through bad,
// which names the option, and ParseSettings wraps ErrConfig once for all of them.
func readJSONOption(v string) ([]byte, error) {
	v = strings.TrimSpace(v)
	if strings.HasPrefix(v, "{") || strings.HasPrefix(v, "[") {
		return []byte(v), nil
	}
	return os.ReadFile(v)
}

// ParseSettings resolves and checks a job's configuration for a trainer of the bundled
// families (DefaultFamilies); Runner.ParseSettings checks it for the runner's own.
func ParseSettings(raw json.RawMessage) (*Settings, options.Issues, error) {
	return New(Options{}).ParseSettings(raw)
}

// ParseSettings resolves and checks a job's configuration against this runner's families.
// Option-level problems come back as issues too, so Validate can report each of them.
func (r *Runner) ParseSettings(raw json.RawMessage) (*Settings, options.Issues, error) {
	if r.err != nil {
		return nil, nil, r.err
	}
	cfg, issues, err := resolveConfig(r.reg, raw)
	if err != nil {
		return nil, issues, err
	}
	s := &Settings{Cfg: cfg}
	geti := func(name string, def int) int {
		if v, ok := cfg.Int(name); ok {
			return v
		}
		return def
	}
	getf := func(name string, def float64) float64 {
		if v, ok := cfg.Float(name); ok {
			return v
		}
		return def
	}
	var errs []error
	bad := func(opt, format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		issues = append(issues, options.Issue{Option: opt, Severity: options.SevError, Message: msg, Err: options.ErrInvalidValue})
		errs = append(errs, fmt.Errorf("%s: %s", opt, msg))
	}

	s.ModelFamily = cfg.String("--model_family")
	s.Flavour = cfg.String("--model_flavour")
	s.Pretrained = cfg.String(optPretrained)
	if fam, err := r.opts.Families.Get(s.ModelFamily); err == nil && s.Pretrained == "" {
		if d, ok := fam.(family.PretrainedDefaulter); ok {
			if repo := d.DefaultPretrained(s.Flavour); repo != "" {
				// As SimpleTuner does: the flavour names the model. Set in the configuration
				// too, so that every reader of the option (weights, encoders) sees it.
				if err := cfg.Set(optPretrained, repo, options.FromDefault); err == nil {
					s.Pretrained = repo
				}
			}
		}
	}
	s.ModelType = cfg.String("--model_type")
	s.OutputDir = cfg.String("--output_dir")
	if s.OutputDir == "" {
		bad("--output_dir", "an output directory is required")
	}
	if dc := cfg.String("--data_backend_config"); dc == "" {
		bad("--data_backend_config", "a dataloader configuration is required")
	} else if b, err := readJSONOption(dc); err != nil {
		bad("--data_backend_config", "%v", err)
	} else {
		s.DataConfig = b
	}
	s.Resolution = getf("--resolution", 1024)
	s.ResolutionType = cfg.String("--resolution_type")
	s.CacheDirVAE = cfg.String("--cache_dir_vae")
	s.CaptionDropout = getf("--caption_dropout_probability", 0.1)
	s.TokenizerMaxLength = geti("--tokenizer_max_length", 0)
	s.SNRGamma = getf("--snr_gamma", 0)
	s.GradientCheckpointing = cfg.Bool("--gradient_checkpointing")
	s.IKnowWhatIAmDoing = cfg.Bool("--i_know_what_i_am_doing")
	if cfg.Bool("--use_ema") {
		// Refused rather than ignored: a run the user expects to average its weights
		// would save different weights without saying so.
		bad("--use_ema", "EMA is not implemented by this trainer: unset --use_ema")
	}

	s.BatchSize = geti("--train_batch_size", 4)
	s.Accum = max(1, geti("--gradient_accumulation_steps", 1))
	s.MaxSteps = geti("--max_train_steps", 0)
	s.Epochs = geti("--num_train_epochs", 1)
	if s.MaxSteps <= 0 && s.Epochs <= 0 {
		bad("--max_train_steps", "either --max_train_steps or --num_train_epochs must be above 0")
	}
	if v, ok := cfg.Int("--seed"); ok {
		s.Seed, s.SeedSet = uint64(v), true
	} else {
		// SimpleTuner draws a random seed when none is set; a fixed one (its WebUI default)
		// keeps an unseeded LoRA run resumable: its frozen base is rebuilt from the seed.
		s.Seed = DefaultSeed
	}
	s.MaxGradNorm = getf("--max_grad_norm", 2)
	s.Resume = cfg.String("--resume_from_checkpoint")

	s.Optimizer = cfg.String("--optimizer")
	s.OptimizerOverrides = map[string]float64{}
	switch s.Optimizer {
	case "adamw", "adamw_bf16", "optimi-adamw":
		s.OptimizerOverrides["beta1"] = getf("--adam_beta1", 0.9)
		s.OptimizerOverrides["beta2"] = getf("--adam_beta2", 0.999)
		s.OptimizerOverrides["eps"] = getf("--adam_epsilon", 1e-8)
		s.OptimizerOverrides["weight_decay"] = getf("--adam_weight_decay", 1e-2)
	default:
		if cfg.Source("--adam_weight_decay") != options.FromDefault {
			s.OptimizerOverrides["weight_decay"] = getf("--adam_weight_decay", 0)
		}
	}
	s.LearningRate = getf("--learning_rate", 4e-7)
	s.Scheduler = cfg.String("--lr_scheduler")
	s.Warmup = geti("--lr_warmup_steps", 0)
	s.NumCycles = geti("--lr_num_cycles", 1)
	s.Power = getf("--lr_power", 0.8)
	if _, err := optim.NewSchedule(s.Scheduler, s.LearningRate, s.Warmup, max(1, s.MaxSteps)); err != nil {
		bad("--lr_scheduler", "%v", err)
	}

	s.CheckpointSteps = geti("--checkpoint_step_interval", 0)
	s.CheckpointEpochs = geti("--checkpoint_epoch_interval", 0)
	s.TotalLimit = geti("--checkpoints_total_limit", 0)
	s.RollingSteps = geti("--checkpointing_rolling_steps", 0)
	s.RollingLimit = geti("--checkpoints_rolling_total_limit", 1)

	if s.ModelType == "lora" {
		s.Adapters = family.AdapterConfig{Type: cfg.String("--lora_type"), Rank: geti("--lora_rank", 16),
			Alpha: getf("--lora_alpha", 0), Dropout: getf("--lora_dropout", 0)}
		if s.Adapters.Type == "lycoris" {
			if b, err := readJSONOption(cfg.String("--lycoris_config")); err != nil {
				bad("--lycoris_config", "%v", err)
			} else {
				lc, lis := options.ParseLycoris(b)
				for _, i := range lis {
					if i.Severity == options.SevError {
						bad(i.Option, "%s", i.Message)
					} else {
						issues = append(issues, i)
					}
				}
				s.Adapters.Lycoris = lc
			}
		}
	}

	s.ValidationPrompt = cfg.String("--validation_prompt")
	s.ValidationNegative = cfg.String("--validation_negative_prompt")
	if lib := cfg.String("--user_prompt_library"); lib != "" {
		l, err := validation.LoadPromptLibrary(lib)
		if err != nil {
			bad("--user_prompt_library", "%v", err)
		}
		s.PromptLibrary = l
	}
	s.ValidationGuidance = getf("--validation_guidance", 7.5)
	s.ValidationSteps = geti("--validation_num_inference_steps", 30)
	s.ValidationInterval = geti("--validation_step_interval", 100)
	s.ValidationResolution = cfg.String("--validation_resolution")
	s.ValidationSeed = s.Seed
	if v, ok := cfg.Int("--validation_seed"); ok {
		s.ValidationSeed = uint64(v)
	}
	s.ValidationPreview = cfg.Bool("--validation_preview")
	s.ValidationPreviewSteps = geti("--validation_preview_steps", 1)
	s.ValidationSampler = cfg.String("--validation_noise_scheduler")
	s.ValidationMethod = cfg.String("--validation_method")
	s.ExternalScript = cfg.String("--validation_external_script")
	s.ExternalBackground = cfg.Bool("--validation_external_background")
	if s.ValidationMethod == "external-script" && strings.TrimSpace(s.ExternalScript) == "" {
		bad("--validation_external_script", "--validation_external_script is required when --validation_method=external-script.")
	}
	r.checkModel(s, bad)
	if len(errs) > 0 {
		return s, issues, fmt.Errorf("%w: %w", ErrConfig, errors.Join(errs...))
	}
	return s, issues, nil
}

// checkModel reports, through bad, what the job's family says of its model: an unknown
// family (with the list this trainer trains), an unknown flavour, and validation
// resolutions the model cannot render.
func (r *Runner) checkModel(s *Settings, bad func(opt, format string, args ...any)) {
	p, err := r.plan(s, false)
	if err == nil {
		s.applyForced(p)
	}
	switch {
	case errors.Is(err, family.ErrUnknownFamily):
		bad("--model_family", "%v", err)
	case errors.Is(err, family.ErrUnknownFlavour):
		bad("--model_flavour", "%v", err)
	case errors.Is(err, family.ErrUnknownSampler):
		bad("--validation_noise_scheduler", "%v", err)
	case err != nil:
		bad("--pretrained_model_name_or_path", "%v", err)
	case s.HasValidation() && s.ValidationResolution != "":
		if _, err := validation.ParseResolutions(s.ValidationResolution, p.Align()); err != nil {
			bad("--validation_resolution", "%v", err)
		}
	}
}

// applyForced applies the settings the plan forces (family.SettingsForcer) to s and
// records them in s.Forced.
func (s *Settings) applyForced(p family.Plan) {
	f, ok := p.(family.SettingsForcer)
	if !ok {
		return
	}
	var u family.UserSettings
	u, s.Forced = f.Force(family.UserSettings{TokenizerMaxLength: s.TokenizerMaxLength, MaxGradNorm: s.MaxGradNorm,
		IKnowWhatIAmDoing: s.IKnowWhatIAmDoing})
	s.TokenizerMaxLength, s.MaxGradNorm = u.TokenizerMaxLength, u.MaxGradNorm
}

// forcedIssues are the settings a family forced, as Validate's warnings.
func (s *Settings) forcedIssues() []plugins.Issue {
	var out []plugins.Issue
	for _, f := range s.Forced {
		out = append(out, plugins.Issue{Option: f.Option, Severity: "warning", Message: f.Message})
	}
	return out
}

// toPluginIssues converts registry issues for the Validate RPC (suggestions are dropped).
func toPluginIssues(is options.Issues) []plugins.Issue {
	var out []plugins.Issue
	for _, i := range is {
		if i.Severity == options.SevSuggestion {
			continue
		}
		out = append(out, plugins.Issue{Option: i.Option, Severity: i.Severity.String(), Message: i.Message})
	}
	return out
}
