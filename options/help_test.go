package options

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

func TestWriteHelp(t *testing.T) {
	var buf bytes.Buffer
	if err := Default().WriteHelp(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	flat := strings.Join(strings.Fields(out), " ")
	if !strings.HasPrefix(out, "Training options.") {
		t.Errorf("help starts %q", out[:40])
	}
	for _, o := range Default().Options() {
		if !strings.Contains(out, "\n  "+o.Name+"=") {
			t.Errorf("help lacks %s", o.Name)
		}
	}
	for _, want := range []string{
		"\nModel:\n", "\nHook scripts:\n", "\nLoRA / LyCORIS:\n",
		"  --model_type=full|lora\n",
		"  --model_family=dit\n",
		"Also: --checkpointing_steps.",
		"Needs permission job.hooks.",
		"Used by the server, not passed to the trainer.",
		"Range: 0..2147483647.",
		"Default: 4e-07.",
		"One of: adamw, adamw_bf16, optimi-adamw, optimi-lion, optimi-sgd.",
		"Families: sd1x, sd2x, sdxl, sd3, flux, hidream.",
	} {
		// Help text is wrapped, so compare with whitespace runs folded.
		if !strings.Contains(out, want) && !strings.Contains(flat, want) {
			t.Errorf("help lacks %q", want)
		}
	}
	// Categories print in order, each option once.
	if strings.Index(out, "\nModel:") > strings.Index(out, "\nHook scripts:") {
		t.Error("categories out of order")
	}
	for _, line := range strings.Split(out, "\n") {
		if len(line) > 88 {
			t.Errorf("line too long (%d): %q", len(line), line)
		}
	}
}

func TestMetavar(t *testing.T) {
	tests := []struct {
		name, want string
	}{
		{"--seed", "N"}, {"--learning_rate", "FLOAT"}, {"--use_ema", "BOOL"}, {"--model_type", "full|lora"},
		{"--optimizer", "VALUE"}, {"--output_dir", "PATH"}, {"--webhook_config", "JSON|PATH"}, {"--report_to", "LIST"},
		{"--validation_prompt", "TEXT"},
	}
	for _, tt := range tests {
		o, _ := Default().Lookup(tt.name)
		if got := o.Metavar(); got != tt.want {
			t.Errorf("%s metavar = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestSchema(t *testing.T) {
	tests := []struct {
		name string
		key  string
		want any
	}{
		{"--learning_rate", "type", "number"},
		{"--learning_rate", "maximum", 1.0},
		{"--learning_rate", "default", 4e-7},
		{"--train_batch_size", "type", "integer"},
		{"--train_batch_size", "minimum", 1.0},
		{"--model_type", "enum", []string{"full", "lora"}},
		{"--model_family", "nullable", nil},
		{"--seed", "nullable", true},
		{"--checkpoint_step_interval", "x-aliases", []string{"--checkpointing_steps"}},
		{"--post_checkpoint_script", "x-permission", "job.hooks"},
		{"--webhook_reporting_interval", "x-server-only", true},
		{"--report_to", "items", map[string]any{"type": "string", "enum": knownTrackers}},
	}
	for _, tt := range tests {
		o, _ := Default().Lookup(tt.name)
		got := o.Schema()[tt.key]
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s schema[%s] = %#v, want %#v", tt.name, tt.key, got, tt.want)
		}
	}
}
