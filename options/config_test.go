package options

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"testing"
)

func TestMergeOrderAndProvenance(t *testing.T) {
	r := Default()
	env := Values{"--learning_rate": 1e-4, "--seed": 42, "--train_batch_size": 1, "--checkpoint_epoch_interval": nil, "data_backend_config": "env.json"}
	sub := Values{"--learning_rate": "2e-4", "--validation_steps": 10, "--seed": nil}
	c, issues := r.Merge(env, sub)
	if len(issues) > 0 {
		t.Fatal(issues.Messages())
	}
	tests := []struct {
		name string
		want any
		src  Source
	}{
		{"--learning_rate", 2e-4, FromSubmitted},          // submitted beats environment
		{"--train_batch_size", 1, FromEnvironment},        // environment beats default
		{"--optimizer", "adamw_bf16", FromDefault},        // default
		{"--seed", nil, FromSubmitted},                    // an explicit null unsets
		{"--validation_step_interval", 10, FromSubmitted}, // via alias
		{"--data_backend_config", "env.json", FromEnvironment},
		{"--checkpoint_epoch_interval", nil, FromEnvironment},
	}
	for _, tt := range tests {
		got, _ := c.Get(tt.name)
		if !reflect.DeepEqual(got, tt.want) || c.Source(tt.name) != tt.src {
			t.Errorf("%s = %#v from %v, want %#v from %v", tt.name, got, c.Source(tt.name), tt.want, tt.src)
		}
	}
	prov := c.Provenance()
	if prov["--optimizer"] != FromDefault || len(prov) != 6 {
		t.Errorf("provenance = %v", prov)
	}
	// The layers themselves are not modified.
	if env["--learning_rate"] != 1e-4 || sub["--learning_rate"] != "2e-4" {
		t.Error("Merge modified its inputs")
	}
}

func TestMergeRewrites(t *testing.T) {
	tests := []struct {
		sub  Values
		want string
	}{
		{Values{"--lr_scheduler": "constant", "--lr_warmup_steps": 10}, "constant_with_warmup"},
		{Values{"--lr_scheduler": "constant", "--lr_warmup_steps": 0}, "constant"},
		{Values{"--lr_scheduler": "cosine_with_warmup"}, "cosine"},
	}
	for _, tt := range tests {
		c, _ := Default().Merge(nil, tt.sub)
		if got := c.String("--lr_scheduler"); got != tt.want {
			t.Errorf("Merge(%v): lr_scheduler = %q, want %q", tt.sub, got, tt.want)
		}
	}
}

func TestMergeReportsBadLayers(t *testing.T) {
	c, issues := Default().Merge(Values{"--seed": "x"}, Values{"--nope": 1})
	if got := issues.Messages(); !slices.Equal(got, []string{`invalid value "x" for --seed: want a whole number`, "unknown option --nope; run 'simpletuner train --help' for the list"}) {
		t.Errorf("issues = %q", got)
	}
	if _, ok := c.Get("--seed"); ok {
		t.Error("a bad value replaced the default")
	}
}

func TestConfigSetAndAccessors(t *testing.T) {
	c := Default().Defaults()
	if err := c.Set("num_processes", "2", FromServer); err != nil {
		t.Fatal(err)
	}
	if err := c.Set("--accelerate_visible_devices", "0,1", FromServer); err != nil {
		t.Fatal(err)
	}
	if n, ok := c.Int("--num_processes"); !ok || n != 2 || c.Source("--num_processes") != FromServer {
		t.Errorf("num_processes = %d %v from %v", n, ok, c.Source("--num_processes"))
	}
	if err := c.Set("--num_processes", "two", FromServer); !errors.Is(err, ErrInvalidValue) {
		t.Errorf("Set bad value: %v", err)
	}
	if err := c.Set("--nope", 1, FromServer); !errors.Is(err, ErrUnknownOption) {
		t.Errorf("Set unknown: %v", err)
	}
	if err := c.Unset("--output_dir", FromSubmitted); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Get("--output_dir"); ok {
		t.Error("Unset left a value")
	}
	if f, ok := c.Float("--train_batch_size"); !ok || f != 4 {
		t.Errorf("Float of an int option = %v %v", f, ok)
	}
	l := c.List("--accelerate_visible_devices")
	l[0] = "9" // a copy: the config must not change
	if got := c.List("--accelerate_visible_devices"); !slices.Equal(got, []string{"0", "1"}) {
		t.Errorf("List aliasing: %q", got)
	}
	d := c.Clone()
	_ = d.Set("--seed", 5, FromSubmitted)
	if _, ok := c.Get("--seed"); ok {
		t.Error("Clone shares values")
	}
}

func TestMapAndArgs(t *testing.T) {
	r, err := New(Capabilities{Families: append(DefaultFamilies(), SimpleTunerFamilies()...)})
	if err != nil {
		t.Fatal(err)
	}
	c, issues := r.Merge(nil, Values{
		"--model_family": "dit", "--model_type": "full", "--data_backend_config": "/c/x.json",
		"--report_to": "none,tensorboard", "--learning_rate": 1e-4, "--lora_rank": 8, "--clip_skip": 2,
		"--webhook_reporting_interval": 30, "--validation_prompt": "a b=c",
	})
	if len(issues) > 0 {
		t.Fatal(issues.Messages())
	}
	m := c.Map()
	if len(m) != r.Len() {
		t.Errorf("Map has %d keys, registry %d options", len(m), r.Len())
	}
	for k, want := range map[string]any{"--report_to": "none,tensorboard", "--learning_rate": 1e-4, "--seed": nil, "--webhook_reporting_interval": 30} {
		if got, ok := m[k]; !ok || !reflect.DeepEqual(got, want) {
			t.Errorf("Map[%s] = %#v (present %v), want %#v", k, got, ok, want)
		}
	}
	if _, err := json.Marshal(m); err != nil {
		t.Errorf("Map is not JSON-encodable: %v", err)
	}
	args := c.Args()
	for _, want := range []string{"--model_family=dit", "--learning_rate=0.0001", "--report_to=none,tensorboard", "--validation_prompt=a b=c", "--use_ema=false"} {
		if !slices.Contains(args, want) {
			t.Errorf("Args lacks %q", want)
		}
	}
	for _, a := range args {
		for _, banned := range []string{"--lora_rank=", "--clip_skip=", "--webhook_reporting_interval=", "--seed="} {
			if len(a) >= len(banned) && a[:len(banned)] == banned {
				t.Errorf("Args has %q (does not apply, server-only or unset)", a)
			}
		}
	}
	if !slices.IsSorted(args) {
		t.Error("Args not sorted")
	}
	// Args parse back to the same values.
	back, issues := r.ParseArgs(args)
	if len(issues) > 0 {
		t.Fatal(issues.Messages())
	}
	for k, v := range back {
		if got, _ := c.Get(k); !reflect.DeepEqual(got, v) {
			t.Errorf("round trip %s: %#v → %#v", k, got, v)
		}
	}
}
