package options

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

func TestCoerce(t *testing.T) {
	r := Default()
	tests := []struct {
		name    string
		raw     any
		want    any
		wantErr error
		wantMsg string
	}{
		// ints
		{"--train_batch_size", "2", 2, nil, ""},
		{"train_batch_size", " 2 ", 2, nil, ""},
		{"--train_batch_size", 2.0, 2, nil, ""},
		{"--train_batch_size", json.Number("3"), 3, nil, ""},
		{"--max_train_steps", "2e3", 2000, nil, ""},
		{"--max_train_steps", "200.0", 200, nil, ""},
		{"--max_train_steps", "", 0, nil, ""}, // zero on empty
		{"--max_train_steps", "abc", nil, ErrInvalidValue, "Invalid value for num_train_epochs or max_train_steps. Must be numeric."},
		{"--num_train_epochs", true, nil, ErrInvalidValue, "Invalid value for num_train_epochs or max_train_steps. Must be numeric."},
		{"--lr_warmup_steps", "10.5", nil, ErrInvalidValue, "Warmup steps must be a whole number."},
		{"--train_batch_size", 1.5, nil, ErrInvalidValue, `invalid value "1.5" for --train_batch_size: want a whole number`},
		{"--seed", "NaN", nil, ErrInvalidValue, `invalid value "NaN" for --seed: want a whole number`},
		{"--seed", nil, nil, nil, ""},
		// floats
		{"--learning_rate", "1e-4", 1e-4, nil, ""},
		{"--learning_rate", 0.0001, 0.0001, nil, ""},
		{"--learning_rate", 1, 1.0, nil, ""},
		{"--learning_rate", json.Number("1e-5"), 1e-5, nil, ""},
		{"--learning_rate", "fast", nil, ErrInvalidValue, `invalid value "fast" for --learning_rate: want a number`},
		{"--learning_rate", "Inf", nil, ErrInvalidValue, `invalid value "Inf" for --learning_rate: want a finite number`},
		// bools
		{"--use_ema", "true", true, nil, ""},
		{"--use_ema", "On", true, nil, ""},
		{"--use_ema", "yes", true, nil, ""},
		{"--use_ema", "1", true, nil, ""},
		{"--use_ema", "off", false, nil, ""},
		{"--use_ema", "NO", false, nil, ""},
		{"--use_ema", "0", false, nil, ""},
		{"--use_ema", false, false, nil, ""},
		{"--use_ema", 1.0, true, nil, ""},
		{"--use_ema", "maybe", nil, ErrInvalidValue, `invalid value "maybe" for --use_ema: want true or false (also 1/0, yes/no, on/off)`},
		// enums: exact, loose spelling, value alias; unknown values pass to Validate
		{"--validation_method", "external_script", "external-script", nil, ""},
		{"--validation_method", "SimpleTuner_Local", "simpletuner-local", nil, ""},
		{"--lr_scheduler", "cosine_with_warmup", "cosine", nil, ""},
		{"--optimizer", "prodigy", "prodigy", nil, ""},
		{"--optimizer", []any{"adamw"}, nil, ErrInvalidValue, `invalid value "[\"adamw\"]" for --optimizer: want one of adamw, adamw_bf16, optimi-adamw, optimi-lion, optimi-sgd`},
		// strings: numbers become text, "" is unset unless kept
		{"--validation_resolution", 1024.0, "1024", nil, ""},
		{"--validation_prompt", "", nil, nil, ""},
		{"--validation_negative_prompt", "", "", nil, ""},
		{"--output_dir", "", "", nil, ""}, // kept so Validate can say it cannot be empty
		{"--validation_prompt", map[string]any{"a": 1.0}, nil, ErrInvalidValue, `invalid value "{\"a\":1}" for --validation_prompt: want text`},
		// lists
		{"--report_to", "wandb, tensorboard", []string{"wandb", "tensorboard"}, nil, ""},
		{"--report_to", []any{"wandb", "none"}, []string{"wandb", "none"}, nil, ""},
		{"--report_to", ",", nil, nil, ""},
		{"--accelerate_visible_devices", "0,1", []string{"0", "1"}, nil, ""},
		// JSON: inline documents from a JSON body become compact text
		{"--webhook_config", []any{map[string]any{"webhook_type": "raw"}}, `[{"webhook_type":"raw"}]`, nil, ""},
		{"--webhook_config", "config/webhooks.json", "config/webhooks.json", nil, ""},
		// unknown names
		{"--learning_rat", "1", nil, ErrUnknownOption, "unknown option --learning_rat; did you mean --learning_rate?"},
	}
	for _, tt := range tests {
		_, got, err := r.Coerce(tt.name, tt.raw)
		if tt.wantErr != nil {
			if !errors.Is(err, tt.wantErr) || err.Error() != tt.wantMsg {
				t.Errorf("Coerce(%s, %#v) error = %v, want %v %q", tt.name, tt.raw, err, tt.wantErr, tt.wantMsg)
			}
			continue
		}
		if err != nil {
			t.Errorf("Coerce(%s, %#v): %v", tt.name, tt.raw, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Coerce(%s, %#v) = %#v, want %#v", tt.name, tt.raw, got, tt.want)
		}
	}
}

func TestParseBool(t *testing.T) {
	for _, s := range []string{"true", "TRUE", "1", "yes", "on", " On "} {
		if b, err := ParseBool(s); err != nil || !b {
			t.Errorf("ParseBool(%q) = %v, %v; want true", s, b, err)
		}
	}
	for _, s := range []string{"false", "0", "no", "off", "OFF"} {
		if b, err := ParseBool(s); err != nil || b {
			t.Errorf("ParseBool(%q) = %v, %v; want false", s, b, err)
		}
	}
	for _, s := range []string{"", "2", "enabled"} {
		if _, err := ParseBool(s); !errors.Is(err, ErrInvalidValue) {
			t.Errorf("ParseBool(%q) error = %v, want ErrInvalidValue", s, err)
		}
	}
}

func TestFormatValue(t *testing.T) {
	tests := []struct {
		in   any
		want string
	}{
		{nil, ""},
		{1e-4, "0.0001"},
		{1e-5, "1e-05"},
		{1024.0, "1024"},
		{2147483647.0, "2147483647"},
		{3, "3"},
		{true, "true"},
		{[]string{"wandb", "tensorboard"}, "wandb,tensorboard"},
		{"x y", "x y"},
	}
	for _, tt := range tests {
		if got := FormatValue(tt.in); got != tt.want {
			t.Errorf("FormatValue(%#v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
