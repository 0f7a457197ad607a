package configs

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"testing"

	"simpletuner/options"
)

func num(s string) json.Number { return json.Number(s) }

func TestCleanName(t *testing.T) {
	tests := []struct {
		in, want, err string
	}{
		{"pixart-api-demo", "pixart-api-demo", ""},
		{"my_env.v2", "my_env.v2", ""},
		{"legacy.json", "legacy", ""},
		{"  spaced  ", "spaced", ""},
		{"", "", "Configuration name is required"},
		{".json", "", "Configuration name is required"},
		{"a/b", "", "Configuration name may only contain letters, numbers, '.', '_' or '-'"},
		{"..", "", "Configuration name may only contain letters, numbers, '.', '_' or '-'"},
		{".", "", "Configuration name may only contain letters, numbers, '.', '_' or '-'"},
		{"a b", "", "Configuration name may only contain letters, numbers, '.', '_' or '-'"},
		{"ü", "", "Configuration name may only contain letters, numbers, '.', '_' or '-'"},
		{"x\x00", "", "Configuration name may only contain letters, numbers, '.', '_' or '-'"},
	}
	for _, tt := range tests {
		got, err := CleanName(tt.in)
		if tt.err != "" {
			if err == nil || err.Error() != tt.err || !errors.Is(err, ErrInvalid) {
				t.Errorf("CleanName(%q) error = %v, want %q (ErrInvalid)", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("CleanName(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestPickSpelling(t *testing.T) {
	a, b, c := "a.json", "b.json", "c.json"
	tests := []struct {
		name      string
		vals      []any
		stored    any
		hasStored bool
		want      any
		conflict  bool
	}{
		{"one spelling", []any{b}, a, true, b, false},
		{"both equal, unchanged", []any{a, a}, a, true, a, false},
		{"both equal, changed", []any{b, b}, a, true, b, false},
		{"dashed edited (SimpleTuner ignored this)", []any{a, b}, a, true, b, false},
		{"bare edited", []any{b, a}, a, true, b, false},
		{"both edited differently", []any{b, c}, a, true, nil, true},
		{"nothing stored, different", []any{a, b}, nil, false, nil, true},
		{"numbers compare by literal", []any{num("1"), num("1")}, num("2"), true, num("1"), false},
		{"null is a value", []any{nil, a}, a, true, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var vals []spelled
			for i, v := range tt.vals {
				vals = append(vals, spelled{key: []string{"data_backend_config", "--data_backend_config"}[i%2], value: v})
			}
			got, err := pickSpelling(vals, tt.stored, tt.hasStored)
			if tt.conflict {
				if !errors.Is(err, errSpellingConflict) {
					t.Fatalf("got %v, %v; want a conflict", got, err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestNormalise(t *testing.T) {
	r := options.Default()
	tests := []struct {
		name      string
		submitted map[string]any
		stored    map[string]any
		want      map[string]any
		errs      []string
	}{
		{
			name:      "bare and dashed keys become canonical; data_backend_config stays bare",
			submitted: map[string]any{"learning_rate": num("1e-4"), "--seed": num("42"), "--data_backend_config": "e/m.json"},
			want:      map[string]any{"--learning_rate": num("1e-4"), "--seed": num("42"), "data_backend_config": "e/m.json"},
		},
		{
			name:      "aliases map to the canonical name",
			submitted: map[string]any{"--validation_steps": num("50"), "checkpointing_steps": num("10"), "project_name": "p", "maximum_caption_length": num("77")},
			want:      map[string]any{"--validation_step_interval": num("50"), "--checkpoint_step_interval": num("10"), "--tracker_project_name": "p", "--tokenizer_max_length": num("77")},
		},
		{
			name:      "GET round trip with the dashed spelling edited",
			submitted: map[string]any{"data_backend_config": "old/m.json", "--data_backend_config": "new/m.json"},
			stored:    map[string]any{"data_backend_config": "old/m.json"},
			want:      map[string]any{"data_backend_config": "new/m.json"},
		},
		{
			name:      "alias and canonical both edited differently conflict",
			submitted: map[string]any{"--validation_steps": num("5"), "--validation_step_interval": num("7")},
			stored:    map[string]any{"--validation_step_interval": num("100")},
			want:      map[string]any{},
			errs:      []string{`Conflicting values for --validation_step_interval: --validation_step_interval=7, --validation_steps=5; send one spelling, or the same value in each`},
		},
		{
			name:      "unknown keys are errors with a suggestion",
			submitted: map[string]any{"--learning_rat": num("1"), "--seed": num("1")},
			want:      map[string]any{"--seed": num("1")},
			errs:      []string{"unknown option --learning_rat; did you mean --learning_rate?"},
		},
		{
			name:      "raw values are kept as sent (coercion happens on read)",
			submitted: map[string]any{"--train_batch_size": "2", "--use_ema": "on", "--checkpoint_epoch_interval": nil},
			want:      map[string]any{"--train_batch_size": "2", "--use_ema": "on", "--checkpoint_epoch_interval": nil},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, issues := normalise(r, tt.submitted, tt.stored)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
			if msgs := issues.Errors().Messages(); !slices.Equal(msgs, tt.errs) {
				t.Errorf("errors = %q, want %q", msgs, tt.errs)
			}
		})
	}
}

func TestFlatten(t *testing.T) {
	got := flatten(map[string]any{
		"config":         map[string]any{"--seed": num("1")},
		"_metadata":      map[string]any{"name": "x"},
		"__active_tab__": "model",
		"configs_dir":    "/x",
		"--use_ema":      true,
	})
	want := map[string]any{"--seed": num("1"), "--use_ema": true}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("flatten = %v, want %v", got, want)
	}
}

func TestWithBothSpellings(t *testing.T) {
	for _, in := range []map[string]any{{"data_backend_config": "a"}, {"--data_backend_config": "a"}} {
		got := withBothSpellings(in)
		if got["data_backend_config"] != "a" || got["--data_backend_config"] != "a" {
			t.Errorf("withBothSpellings(%v) = %v", in, got)
		}
	}
}
