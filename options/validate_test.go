package options

import (
	"errors"
	"io/fs"
	"slices"
	"strings"
	"testing"
)

// validBase is a minimal valid submission for the built-in dit family.
func validBase() Values {
	return Values{
		"--model_family": "dit", "--model_type": "full", "--data_backend_config": "/configs/db.json",
		"--max_train_steps": 10, "--num_train_epochs": 0, "--resolution": 32,
	}
}

func TestValidateBaseIsClean(t *testing.T) {
	c, issues := Default().Merge(nil, validBase())
	if len(issues) > 0 {
		t.Fatal(issues.Messages())
	}
	if issues := Default().Validate(c, ValidateOptions{StrictEpochs: true}); len(issues) > 0 {
		t.Fatalf("base config: %q", issues.Messages())
	}
}

func TestValidateMessages(t *testing.T) {
	pixart := Capabilities{Families: append(DefaultFamilies(), SimpleTunerFamilies()...), Trackers: []string{"tensorboard"}}
	files := map[string]bool{"/configs/db.json": true, "/configs/prompts.json": true}
	checkFile := func(p string) error {
		switch {
		case files[p]:
			return nil
		case strings.HasPrefix(p, "/configs/"), p == "config/lycoris_config.json":
			return fs.ErrNotExist
		}
		return errors.New("the file is outside the allowed folders")
	}
	tests := []struct {
		name  string
		caps  *Capabilities
		env   Values // layered under the submission; nil for none
		set   Values // applied over validBase; nil values unset
		vo    ValidateOptions
		sev   Severity
		err   error // sentinel for errors
		msg   string
		extra bool // other issues may come too
	}{
		// Required arguments (docs/compatibility.md §5)
		{name: "family required", set: Values{"--model_family": nil}, err: ErrRequired, msg: "Model family is required"},
		{name: "type required", set: Values{"--model_type": nil}, err: ErrRequired, msg: "Model type is required"},
		{name: "output required", set: Values{"--output_dir": nil}, err: ErrRequired, msg: "Output directory is required"},
		{name: "optimizer required", set: Values{"--optimizer": nil}, err: ErrRequired, msg: "Optimizer is required"},
		{name: "dataloader required", set: Values{"--data_backend_config": nil}, err: ErrRequired, msg: "Select a data backend configuration"},
		// Errors, in SimpleTuner's words (docs/compatibility.md §5)
		{name: "both zero", set: Values{"--max_train_steps": 0}, err: ErrInvalidValue, msg: "Either num_train_epochs or max_train_steps must be greater than 0. You cannot set both to 0."},
		{name: "both zero, steps unset", set: Values{"--max_train_steps": nil}, err: ErrInvalidValue, msg: "Either num_train_epochs or max_train_steps must be greater than 0. You cannot set both to 0."},
		{name: "both set (validate)", set: Values{"--num_train_epochs": 2}, vo: ValidateOptions{StrictEpochs: true}, err: ErrConflict, msg: "num_train_epochs and max_train_steps cannot both be set. Set one of them to 0."},
		{name: "project name", set: Values{"--tracker_project_name": nil}, err: ErrRequired, msg: "Project name is required."},
		{name: "prompt library missing", set: Values{"--user_prompt_library": "/configs/nope.json"}, vo: ValidateOptions{CheckFile: checkFile}, err: ErrNotFound, msg: "User prompt library not found at '/configs/nope.json'. Please provide a valid JSON file path."},
		{name: "pretrained empty", env: Values{"--pretrained_model_name_or_path": ""}, err: ErrInvalidValue, msg: "Field '--pretrained_model_name_or_path' cannot be empty"},
		{name: "output empty", env: Values{"--output_dir": ""}, err: ErrInvalidValue, msg: "Field '--output_dir' cannot be empty"},
		{name: "full with quantisation", set: Values{"--base_model_precision": "int8-quanto"}, err: ErrConflict, msg: "Full model training is incompatible with base model quantisation. Set base_model_precision to 'no_change' or switch to LoRA."},
		{name: "resolution minimum", caps: &pixart, set: Values{"--model_family": "pixart_sigma", "--resolution": 128}, err: ErrInvalidValue, msg: "Resolution must be at least 256"},
		{name: "external script required", set: Values{"--validation_method": "external-script"}, err: ErrRequired, msg: "--validation_external_script is required when --validation_method=external-script."},
		// Warnings and suggestions
		{name: "resolution large", set: Values{"--resolution": 8192}, sev: SevWarning, msg: "Resolution above 4096 may cause memory issues"},
		{name: "lora rank suggestion", set: Values{"--model_type": "lora"}, sev: SevSuggestion, msg: "Consider setting '--lora_rank' for LoRA training"},
		// families, flavours, enums
		{name: "unknown family", set: Values{"--model_family": "sdxl"}, err: ErrInvalidValue, msg: "Unknown model family: sdxl (known: dit)"},
		{name: "unknown type", set: Values{"--model_type": "dora"}, err: ErrInvalidValue, msg: "Unknown model type: dora (want full or lora)"},
		{name: "unknown flavour", set: Values{"--model_flavour": "huge"}, err: ErrInvalidValue, msg: "Unknown model flavour 'huge' for family 'dit' (known: tiny, small, base, xl)"},
		{name: "unsupported optimizer", set: Values{"--optimizer": "prodigy"}, err: ErrInvalidValue, msg: `unsupported optimizer "prodigy"; supported: adamw, adamw_bf16, optimi-adamw, optimi-lion, optimi-sgd`},
		{name: "bad scheduler", set: Values{"--lr_scheduler": "step"}, err: ErrInvalidValue, msg: `invalid value "step" for --lr_scheduler; allowed: constant, constant_with_warmup, linear, cosine, cosine_with_restarts, polynomial, sine`},
		{name: "bad tracker", set: Values{"--report_to": "mlflow"}, err: ErrInvalidValue, msg: `invalid value "mlflow" in --report_to; allowed: all, comet_ml, custom-tracker, none, simpletuner, swanlab, tensorboard, wandb`},
		{name: "unavailable tracker", set: Values{"--report_to": "wandb"}, sev: SevWarning, msg: `tracker "wandb" is not available in this trainer; metrics stay in the event stream`},
		{name: "family does not apply", set: Values{"--clip_skip": 2}, sev: SevWarning, msg: "--clip_skip does not apply to model family 'dit' and is ignored"},
		{name: "model type does not apply", set: Values{"--lora_rank": 8}, sev: SevWarning, msg: "--lora_rank only applies when --model_type is lora; it is ignored for 'full'"},
		// ranges and formats
		{name: "range both ends", set: Values{"--learning_rate": 2}, err: ErrInvalidValue, msg: "--learning_rate must be between 0 and 1; got 2"},
		{name: "range min", set: Values{"--train_batch_size": 0}, err: ErrInvalidValue, msg: "--train_batch_size must be between 1 and 128; got 0"},
		{name: "range open max", set: Values{"--gradient_accumulation_steps": 0}, err: ErrInvalidValue, msg: "--gradient_accumulation_steps must be at least 1; got 0"},
		{name: "negative steps", set: Values{"--max_train_steps": -5, "--num_train_epochs": 1}, err: ErrInvalidValue, msg: "--max_train_steps must be at least 0; got -5"},
		{name: "validation resolution", set: Values{"--validation_resolution": "1024x"}, err: ErrInvalidValue, msg: `invalid value for --validation_resolution: want a size like 1024 or 1024x768, or a comma-separated list of them; got "1024x"`},
		{name: "validation resolution zero", set: Values{"--validation_resolution": "32,0x8"}, err: ErrInvalidValue, msg: `invalid value for --validation_resolution: sizes must be greater than 0; got "32,0x8"`},
		{name: "device list", set: Values{"--accelerate_visible_devices": "0,cuda:1"}, err: ErrInvalidValue, msg: `invalid value for --accelerate_visible_devices: want GPU indices (0,1) or UUIDs (GPU-…); got "cuda:1"`},
		// webhooks
		{name: "webhook type", set: Values{"--webhook_config": `[{"webhook_type":"slack"}]`}, err: ErrInvalidValue, msg: `invalid value for --webhook_config: webhook 1: webhook_type: must be "raw" or "discord", not "slack"`},
		{name: "webhook url", set: Values{"--webhook_config": `{"webhook_type":"raw"}`}, err: ErrInvalidValue, msg: "invalid value for --webhook_config: webhook 1: callback_url: is required for a raw webhook"},
		{name: "webhook scheme", set: Values{"--webhook_config": `[{"webhook_type":"raw","callback_url":"file:///etc/passwd"}]`}, err: ErrInvalidValue, msg: `invalid value for --webhook_config: webhook 1: callback_url: must be an http or https URL`},
		{name: "webhook token with a line break", set: Values{"--webhook_config": `[{"webhook_type":"raw","callback_url":"https://h.example/x","auth_token":"a\r\nX-Injected: 1"}]`}, err: ErrInvalidValue,
			msg: `invalid value for --webhook_config: webhook 1: auth_token: must not contain line breaks or other control characters (it is sent as an HTTP header)`},
		{name: "webhook discord", set: Values{"--webhook_config": `[{"webhook_type":"discord"}]`}, err: ErrInvalidValue, msg: "invalid value for --webhook_config: webhook 1: webhook_url: is required for a discord webhook"},
		{name: "webhook level", set: Values{"--webhook_config": `[{"webhook_type":"raw","callback_url":"http://h/cb","log_level":"loud"}]`}, err: ErrInvalidValue, msg: `invalid value for --webhook_config: webhook 1: log_level: must be one of critical, error, warning, info, debug, not "loud"`},
		{name: "webhook json", set: Values{"--webhook_config": `[{`}, err: ErrInvalidValue, msg: "invalid value for --webhook_config: not a JSON list of webhook objects: unexpected end of JSON input"},
		{name: "webhook not json", set: Values{"--webhook_config": `hooks.yaml`}, err: ErrInvalidValue, msg: `invalid value for --webhook_config: want inline JSON ([{"webhook_type":"raw","callback_url":"https://…"}]) or a path to a .json file`},
		{name: "webhook tls off", set: Values{"--webhook_config": `[{"webhook_type":"raw","callback_url":"https://h/cb","ssl_no_verify":true}]`}, err: ErrPermission, msg: "a webhook with ssl_no_verify=true needs the job.hooks permission; remove ssl_no_verify or ask an admin"},
		// permissions and hook-safe values
		{name: "hook permission", set: Values{"--post_checkpoint_script": "/opt/h.sh {global_step}"}, err: ErrPermission, msg: "setting --post_checkpoint_script needs the job.hooks permission; ask an admin, or leave it unset"},
		{name: "hook-safe run name", set: Values{"--post_checkpoint_script": "/opt/h.sh {tracker_run_name}", "--tracker_run_name": "-rf x"}, vo: ValidateOptions{Permissions: []string{PermHooks}}, err: ErrInvalidValue, msg: `--tracker_run_name is passed to hook scripts, so it may only use letters, digits, '.', '_' and '-' (at most 128, not starting with '-'); got "-rf x"`},
		// other cross-option checks
		{name: "hub id", set: Values{"--push_to_hub": true}, err: ErrRequired, msg: "--push_to_hub needs --hub_model_id: name the hub repository to upload to"},
		{name: "hub checkpoints", set: Values{"--push_checkpoints_to_hub": true}, sev: SevWarning, msg: "--push_checkpoints_to_hub has no effect without --push_to_hub"},
		{name: "warmup longer than run", set: Values{"--lr_warmup_steps": 50}, sev: SevWarning, msg: "--lr_warmup_steps (50) is more than --max_train_steps (10); the learning rate never reaches its peak"},
		{name: "dataloader missing", set: Values{"--data_backend_config": "/configs/missing.json"}, vo: ValidateOptions{CheckFile: checkFile}, err: ErrNotFound, msg: "Data backend config not found at '/configs/missing.json'. Create the dataloader JSON there or point --data_backend_config at an existing file."},
		{name: "webhook file missing", set: Values{"--webhook_config": "/configs/hooks.json"}, vo: ValidateOptions{CheckFile: checkFile}, err: ErrNotFound, msg: "--webhook_config file not found at '/configs/hooks.json'"},
		{name: "dataloader refused", set: Values{"--data_backend_config": "/etc/passwd"}, vo: ValidateOptions{CheckFile: checkFile}, err: ErrInvalidValue, msg: "--data_backend_config: the file is outside the allowed folders"},
		{name: "prompt library refused", set: Values{"--user_prompt_library": "/dev/zero"}, vo: ValidateOptions{CheckFile: checkFile}, err: ErrInvalidValue, msg: "--user_prompt_library: the file is outside the allowed folders"},
		{name: "publishing refused", set: Values{"--publishing_config": "/srv/p.json"}, vo: ValidateOptions{CheckFile: checkFile}, err: ErrInvalidValue, msg: "--publishing_config: the file is outside the allowed folders"},
		{name: "lycoris default missing", set: Values{"--model_type": "lora", "--lora_type": "lycoris"}, vo: ValidateOptions{CheckFile: checkFile}, err: ErrNotFound, msg: "LyCORIS config not found at 'config/lycoris_config.json'. Create it or point --lycoris_config at an existing file."},
		{name: "post-upload hook with nothing to upload", set: Values{"--post_upload_script": "/opt/h.sh {remote_checkpoint_path}"}, vo: ValidateOptions{Permissions: []string{PermHooks}}, sev: SevWarning,
			msg: "--post_upload_script runs after an upload, and nothing is uploaded without --push_to_hub or --publishing_config: it will not run (use --post_checkpoint_script to act on each local checkpoint)"},
		{name: "lycoris missing", set: Values{"--model_type": "lora", "--lora_type": "lycoris", "--lycoris_config": "/configs/ly.json"}, vo: ValidateOptions{CheckFile: checkFile}, err: ErrNotFound, msg: "LyCORIS config not found at '/configs/ly.json'. Create it or point --lycoris_config at an existing file."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Default()
			if tt.caps != nil {
				var err error
				if r, err = New(*tt.caps); err != nil {
					t.Fatal(err)
				}
			}
			sub := validBase()
			for k, v := range tt.set {
				sub[k] = v
			}
			c, issues := r.Merge(tt.env, sub)
			if len(issues) > 0 {
				t.Fatal(issues.Messages())
			}
			issues = r.Validate(c, tt.vo)
			var found *Issue
			for i := range issues {
				if issues[i].Message == tt.msg {
					found = &issues[i]
				}
			}
			if found == nil {
				t.Fatalf("no issue %q; got %q", tt.msg, issues.Messages())
			}
			if found.Severity != tt.sev {
				t.Errorf("severity = %v, want %v", found.Severity, tt.sev)
			}
			if tt.sev == SevError && !errors.Is(found, tt.err) {
				t.Errorf("issue wraps %v, want %v", found.Err, tt.err)
			}
			if tt.sev == SevError && !errors.Is(issues.Err(), tt.err) {
				t.Errorf("Issues.Err() does not wrap %v", tt.err)
			}
			if !tt.extra && len(issues) != 1 {
				t.Errorf("want exactly this issue, got %q", issues.Messages())
			}
			if found.Option == "" {
				t.Error("issue names no option")
			}
		})
	}
}

// TestValidateStartAllowsBoth: the start endpoint does not check epoch exclusivity.
func TestValidateStartAllowsBoth(t *testing.T) {
	sub := validBase()
	sub["--num_train_epochs"] = 2
	c, _ := Default().Merge(nil, sub)
	if issues := Default().Validate(c, ValidateOptions{}); len(issues) > 0 {
		t.Errorf("start: %q", issues.Messages())
	}
}

// TestValidateDefaultsAreValid: every registry default is well-typed and in range.
func TestValidateDefaultsAreValid(t *testing.T) {
	r := Default()
	for _, o := range r.Options() {
		if o.Default == nil {
			continue
		}
		_, v, err := r.Coerce(o.Name, o.Default)
		if err != nil {
			t.Errorf("%s default %#v: %v", o.Name, o.Default, err)
			continue
		}
		if o.Type == Enum && !slices.Contains(o.Values, v.(string)) {
			t.Errorf("%s default %q not among its values", o.Name, v)
		}
		if (o.Type == Int || o.Type == Float) && !o.Range.contains(toFloat(v)) {
			t.Errorf("%s default %v outside %s", o.Name, v, o.Range)
		}
	}
}

func toFloat(v any) float64 {
	switch x := v.(type) {
	case int:
		return float64(x)
	case float64:
		return x
	}
	return 0
}
