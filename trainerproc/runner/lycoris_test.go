package runner

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"simpletuner/options"
	"simpletuner/plugins"
	"simpletuner/trainerproc/model"
)

// TestConfigErrorsReadOnce: a file option that cannot be read fails the job with one
// "runner: invalid training configuration:" and the option named once, the message a
// job's error shows.
func TestConfigErrorsReadOnce(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	makeDataset(t, dataDir, 2, 16)
	missing := filepath.Join(t.TempDir(), "config", "lycoris_config.json")
	for _, tc := range []struct {
		name, option string
		set          map[string]any
	}{
		{"lycoris", "--lycoris_config", map[string]any{"--model_type": "lora", "--lora_type": "lycoris", "--lycoris_config": missing}},
		{"dataloader", "--data_backend_config", map[string]any{"--data_backend_config": missing}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := baseConfig(t.TempDir(), dataDir)
			for k, v := range tc.set {
				cfg[k] = v
			}
			raw, _ := json.Marshal(cfg)
			_, _, err := ParseSettings(raw)
			want := "runner: invalid training configuration: " + tc.option + ": open " + missing + ": no such file or directory"
			if err == nil || err.Error() != want {
				t.Fatalf("error\n got %v\nwant %s", err, want)
			}
			if !errors.Is(err, plugins.ErrInvalidConfig) {
				t.Errorf("%v does not wrap plugins.ErrInvalidConfig", err)
			}
			_, st := startJob(t, testRunner(), cfg).wait(t, nil)
			if st.State != plugins.StateFailed || strings.Count(st.Error, "invalid training configuration") != 1 || strings.Count(st.Error, tc.option) != 1 {
				t.Fatalf("job ended %q with error %q", st.State, st.Error)
			}
		})
	}
}

// TestLycorisConfigIsCheckedAndApplied: the default config a LyCORIS environment gets
// trains LoKr adapters; a config the trainer cannot apply is refused by Validate with the
// same messages the daemon shows, each option named once.
func TestLycorisConfigIsCheckedAndApplied(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	makeDataset(t, dataDir, 2, 16)
	lyFile := filepath.Join(t.TempDir(), "lycoris_config.json")
	b, _ := json.Marshal(options.DefaultLycorisConfig())
	if err := os.WriteFile(lyFile, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out")
	cfg := baseConfig(out, dataDir)
	cfg["--model_type"], cfg["--lora_type"], cfg["--lycoris_config"] = "lora", "lycoris", lyFile
	cfg["--max_train_steps"] = 1
	cfg["--resume_from_checkpoint"] = ""
	runJob(t, cfg, plugins.StateCompleted)
	if _, err := os.Stat(filepath.Join(out, model.LoRAWeightsFile)); err != nil {
		t.Fatalf("no LoKr weights: %v", err)
	}
	raw, _ := json.Marshal(cfg)
	s, _, err := ParseSettings(raw)
	if err != nil || s.Adapters.Lycoris.Factor != 16 || s.Adapters.Lycoris.ApplyPreset.ModuleAlgoMap["FeedForward"].Factor != 8 {
		t.Fatalf("settings %+v, %v", s.Adapters.Lycoris, err)
	}

	cfg["--lycoris_config"] = `{"algo": "loha", "multiplier": 1, "linear_dim": 4, "linear_alpha": 1, "dropout": 0.1}`
	raw, _ = json.Marshal(cfg)
	is, err := testRunner().Validate(t.Context(), raw)
	if err != nil {
		t.Fatal(err)
	}
	var errs, warns []string
	for _, i := range is {
		if i.Option != "--lycoris_config" {
			continue
		}
		if i.Severity == "error" {
			errs = append(errs, i.Message)
		} else {
			warns = append(warns, i.Message)
		}
	}
	if len(errs) != 1 || !strings.Contains(errs[0], "algo 'loha' is not one this trainer applies") {
		t.Fatalf("errors %q", errs)
	}
	if len(warns) != 1 || !strings.Contains(warns[0], "'dropout' is not applied") {
		t.Fatalf("warnings %q", warns)
	}
	_, _, err = ParseSettings(raw)
	if err == nil || strings.Count(err.Error(), "--lycoris_config") != 1 {
		t.Fatalf("ParseSettings: %v", err)
	}
}
