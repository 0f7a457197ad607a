package options

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestParseForm(t *testing.T) {
	tests := []struct {
		name        string
		form        map[string][]string
		want        Values
		wantControl map[string]string
		wantIssues  []string
	}{
		{
			name: "dashed and bare keys",
			form: map[string][]string{"--learning_rate": {"1e-4"}, "train_batch_size": {"2"}},
			want: Values{"--learning_rate": 1e-4, "--train_batch_size": 2},
		},
		{
			name: "aliases map to canonical names",
			form: map[string][]string{"--checkpointing_steps": {"50"}, "validation_steps": {"25"}, "project_name": {"p"}, "maximum_caption_length": {"77"}},
			want: Values{"--checkpoint_step_interval": 50, "--validation_step_interval": 25, "--tracker_project_name": "p", "--tokenizer_max_length": 77},
		},
		{
			name: "repeated key: last non-empty value wins",
			form: map[string][]string{"--seed": {"1", "2", ""}},
			want: Values{"--seed": 2},
		},
		{
			name: "repeated list key collects every value",
			form: map[string][]string{"--report_to": {"wandb", "tensorboard,none"}},
			want: Values{"--report_to": []string{"wandb", "tensorboard", "none"}},
		},
		{
			name: "empty fields: dropped, kept, or zero",
			form: map[string][]string{"--validation_prompt": {""}, "--validation_negative_prompt": {""}, "--max_train_steps": {""}, "--output_dir": {""}, "--report_to": {"", " "}},
			want: Values{"--validation_negative_prompt": "", "--max_train_steps": 0},
		},
		{
			name:        "control keys are consumed, not options",
			form:        map[string][]string{"__active_tab__": {"model"}, "merge_environment_config": {"true"}, "__replace_active_config__": {"true"}, "--seed": {"7"}},
			want:        Values{"--seed": 7},
			wantControl: map[string]string{"__active_tab__": "model", "merge_environment_config": "true", "__replace_active_config__": "true"},
		},
		{
			name:        "disabled fields are dropped unless required",
			form:        map[string][]string{"__disabled_fields__": {"--seed,model_family"}, "--seed": {"7"}, "--model_family": {"dit"}},
			want:        Values{"--model_family": "dit"},
			wantControl: map[string]string{"__disabled_fields__": "--seed,model_family"},
		},
		{
			name:       "unknown keys and bad values are reported and skipped",
			form:       map[string][]string{"--learning_rat": {"1"}, "--seed": {"x"}, "--totally_unrelated_thing": {"1"}, "--use_ema": {"true"}},
			want:       Values{"--use_ema": true},
			wantIssues: []string{"unknown option --learning_rat; did you mean --learning_rate?", `invalid value "x" for --seed: want a whole number`, "unknown option --totally_unrelated_thing; run 'simpletuner train --help' for the list"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sub, issues := Default().ParseForm(tt.form)
			if !reflect.DeepEqual(sub.Values, tt.want) {
				t.Errorf("values = %#v, want %#v", sub.Values, tt.want)
			}
			if tt.wantControl == nil {
				tt.wantControl = map[string]string{}
			}
			if !reflect.DeepEqual(sub.Control, tt.wantControl) {
				t.Errorf("control = %#v, want %#v", sub.Control, tt.wantControl)
			}
			if got := issues.Messages(); !slices.Equal(got, tt.wantIssues) {
				t.Errorf("issues = %q, want %q", got, tt.wantIssues)
			}
		})
	}
}

func TestParseJSON(t *testing.T) {
	tests := []struct {
		name       string
		in         string
		want       Values
		wantIssues []string
		prefix     bool
	}{
		{
			name: "types and null",
			in:   `{"--learning_rate": 0.0001, "--seed": 42, "--use_ema": false, "--checkpoint_epoch_interval": null, "--report_to": "wandb"}`,
			want: Values{"--learning_rate": 0.0001, "--seed": 42, "--use_ema": false, "--checkpoint_epoch_interval": nil, "--report_to": []string{"wandb"}},
		},
		{
			name: "bare data_backend_config wins over the dashed one",
			in:   `{"--data_backend_config": "old.json", "data_backend_config": "new.json"}`,
			want: Values{"--data_backend_config": "new.json"},
		},
		{
			name: "strings for numbers and inline webhook lists",
			in:   `{"--train_batch_size": "2", "--webhook_config": [{"webhook_type": "raw", "callback_url": "https://x.test/cb"}]}`,
			want: Values{"--train_batch_size": 2, "--webhook_config": `[{"callback_url":"https://x.test/cb","webhook_type":"raw"}]`},
		},
		{
			name: "empty strings: unset, or kept for the cannot-be-empty check",
			in:   `{"--validation_prompt": "", "--pretrained_model_name_or_path": ""}`,
			want: Values{"--validation_prompt": nil, "--pretrained_model_name_or_path": ""},
		},
		{
			name: "WebUI-only keys are dropped",
			in:   `{"configs_dir": "/x", "num_validation_images": 2, "_metadata": {"a": 1}, "--seed": 1}`,
			want: Values{"--seed": 1},
		},
		{
			name:       "issues",
			in:         `{"--sed": 1, "--seed": "one"}`,
			want:       Values{},
			wantIssues: []string{"unknown option --sed; did you mean --seed?", `invalid value "one" for --seed: want a whole number`},
		},
		{
			name:       "not an object",
			in:         `[1, 2]`,
			want:       Values{},
			wantIssues: []string{"configuration is not a JSON object: "}, // then the decoder's words
			prefix:     true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sub, issues := Default().ParseJSON([]byte(tt.in))
			if !reflect.DeepEqual(sub.Values, tt.want) {
				t.Errorf("values = %#v, want %#v", sub.Values, tt.want)
			}
			got := issues.Messages()
			if tt.prefix && len(got) == len(tt.wantIssues) {
				for i := range got {
					if strings.HasPrefix(got[i], tt.wantIssues[i]) {
						got[i] = tt.wantIssues[i]
					}
				}
			}
			if !slices.Equal(got, tt.wantIssues) {
				t.Errorf("issues = %q, want %q", got, tt.wantIssues)
			}
		})
	}
}

func TestParseArgs(t *testing.T) {
	vals, issues := Default().ParseArgs([]string{"--learning_rate=1e-4", "seed=3", "--use_ema", "--validation_prompt=a=b", "--lora_rank", "--nope=1"})
	want := Values{"--learning_rate": 1e-4, "--seed": 3, "--use_ema": true, "--validation_prompt": "a=b"}
	if !reflect.DeepEqual(vals, want) {
		t.Errorf("values = %#v, want %#v", vals, want)
	}
	wantIssues := []string{"--lora_rank needs a value: write --lora_rank=VALUE", "unknown option --nope; run 'simpletuner train --help' for the list"}
	if got := issues.Messages(); !slices.Equal(got, wantIssues) {
		t.Errorf("issues = %q, want %q", got, wantIssues)
	}
	for _, i := range issues {
		if i.Severity != SevError || i.Err == nil {
			t.Errorf("issue %q: severity %v err %v", i.Message, i.Severity, i.Err)
		}
	}
	if !errors.Is(issues.Err(), ErrUnknownOption) || !errors.Is(issues.Err(), ErrInvalidValue) {
		t.Errorf("Issues.Err() = %v, want both sentinels", issues.Err())
	}
}

func TestIsControlKey(t *testing.T) {
	for k, want := range map[string]bool{"__active_tab__": true, "--__active_tab__": true, "merge_environment_config": true, "--seed": false, "webhook_reporting_interval": false} {
		if got := IsControlKey(k); got != want {
			t.Errorf("IsControlKey(%q) = %v, want %v", k, got, want)
		}
	}
}

func TestParseFormHostileKey(t *testing.T) {
	long := strings.Repeat("x", 1<<20)
	_, issues := Default().ParseForm(map[string][]string{long: {"1"}, "--report_to": {"", ""}})
	if len(issues) != 1 || len(issues[0].Message) > 200 || !errors.Is(issues[0], ErrUnknownOption) {
		t.Errorf("issues = %d, first message %d bytes", len(issues), len(issues[0].Message))
	}
}
