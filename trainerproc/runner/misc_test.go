package runner

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"simpletuner/plugins"
	"simpletuner/trainerproc/checkpoint"
	"simpletuner/trainerproc/model"
)

func TestExternalValidationScript(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	makeDataset(t, dataDir, 4, 16)
	out := filepath.Join(t.TempDir(), "out dir")
	record := filepath.Join(t.TempDir(), "calls.txt")
	script := filepath.Join(t.TempDir(), "validate.sh")
	os.WriteFile(script, []byte("#!/bin/sh\n{ echo CALL; for a in \"$@\"; do echo \"[$a]\"; done; echo \"env=$ST_GLOBAL_STEP\"; } >> '"+record+"'\n"), 0o755)
	cfg := baseConfig(out, dataDir)
	cfg["--max_train_steps"] = 4
	cfg["--checkpoint_step_interval"] = 2
	cfg["--validation_step_interval"] = 2
	cfg["--validation_method"] = "external-script"
	cfg["--tracker_run_name"] = "run-1"
	cfg["--validation_prompt"] = "a red thing; $(touch /tmp/pwned) `id` $HOME"
	cfg["--validation_external_script"] = script + " {local_checkpoint_path} --step={global_step} {remote_checkpoint_path} {validation_prompt} {tracker_run_name} {model_family}"
	evs := runJob(t, cfg, plugins.StateCompleted)
	got := strings.Split(strings.TrimSpace(string(readFile(t, record))), "CALL\n")
	got = slices.DeleteFunc(got, func(s string) bool { return s == "" })
	want := func(step int) string {
		return strings.Join([]string{"[" + filepath.Join(out, plugins.CheckpointName(step, false)) + "]", "[--step=" + itoa(step) + "]", "[]",
			"[a red thing; $(touch /tmp/pwned) `id` $HOME]", "[run-1]", "[dit]", "env=" + itoa(step)}, "\n")
	}
	if len(got) != 2 || strings.TrimSpace(got[0]) != want(2) || strings.TrimSpace(got[1]) != want(4) {
		t.Fatalf("script calls:\n%q\nwant\n%q\n%q", got, want(2), want(4))
	}
	vals := eventsOf(evs, "training.validation")
	if len(vals) != 2 || vals[0].Severity != "info" {
		t.Fatalf("validation events: %s", tail(vals, 2))
	}
	// No built-in images in external mode.
	if _, err := os.Stat(filepath.Join(out, ValidationDir)); err == nil {
		t.Fatal("external-script validation also wrote built-in images")
	}
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

// TestEpochsRetentionAndLoRALayout: an epoch-limited LyCORIS run with epoch-interval and
// rolling checkpoints under a total limit, and the LoRA output layout.
func TestEpochsRetentionAndLoRALayout(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	makeDataset(t, dataDir, 4, 16) // 8 images, batch 4: 2 batches per epoch
	out := filepath.Join(t.TempDir(), "out")
	cfg := baseConfig(out, dataDir)
	delete(cfg, "--max_train_steps")
	cfg["--num_train_epochs"] = 4
	cfg["--model_type"] = "lora"
	cfg["--lora_type"] = "lycoris"
	cfg["--lycoris_config"] = `{"algo": "lokr", "multiplier": 1.0, "linear_dim": 10000, "linear_alpha": 1, "factor": 4}`
	cfg["--checkpoint_epoch_interval"] = 1
	cfg["--checkpoint_step_interval"] = 1000
	cfg["--checkpoints_total_limit"] = 2
	cfg["--checkpointing_rolling_steps"] = 3
	evs := runJob(t, cfg, plugins.StateCompleted)
	if n := len(eventsOf(evs, "training.progress")); n != 8 {
		t.Fatalf("%d steps, want 8 (4 epochs × 2)", n)
	}
	last := dataOf(t, eventsOf(evs, "training.progress")[7])
	if last["epoch"].(float64) != 4 || last["total_epochs"].(float64) != 4 || last["total_steps"].(float64) != 8 {
		t.Fatalf("last progress %v", last)
	}
	refs, err := checkpoint.New(out, checkpoint.Options{}).List()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range refs {
		names = append(names, r.Name)
	}
	// Epoch checkpoints at steps 2,4,6,8 (limit 2 keeps 6 and 8); rolling at 3 (6 is an epoch
	// checkpoint already).
	if !slices.Equal(names, []string{"checkpoint-3-rolling", "checkpoint-6", "checkpoint-8"}) {
		t.Fatalf("checkpoints %v", names)
	}
	if _, err := os.Stat(filepath.Join(out, "checkpoint-8", checkpoint.LoRAWeightsFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(out, model.LoRAWeightsFile)); err != nil {
		t.Fatalf("final LoRA weights: %v", err)
	}
	if _, err := os.Stat(filepath.Join(out, model.TransformerDir)); err == nil {
		t.Fatal("a LoRA run wrote a full model")
	}
	for _, e := range evs {
		if e.Type == "training.checkpoint" {
			d := dataOf(t, e)
			ck := d["checkpoint"].(map[string]any)
			if ck["path"] != d["path"] || !strings.HasPrefix(e.Title, "Checkpoint saved to ") {
				t.Fatalf("checkpoint event shape: %s", e.Data)
			}
		}
	}
}

func TestEventShapes(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	makeDataset(t, dataDir, 4, 16)
	out := filepath.Join(t.TempDir(), "out")
	cfg := baseConfig(out, dataDir)
	cfg["--max_train_steps"] = 2
	evs := runJob(t, cfg, plugins.StateCompleted)
	var stages []string
	for _, e := range eventsOf(evs, "lifecycle.stage") {
		st := dataOf(t, e)["stage"].(map[string]any)
		if st["label"] == "" || st["status"] == "" {
			t.Fatalf("stage without label or status: %s", e.Data)
		}
		stages = append(stages, st["key"].(string)+":"+st["status"].(string))
	}
	want := []string{"init_data_backend:running", "init_data_backend:completed", "init_load_base_model:running",
		"init_load_base_model:completed", "init_prepare_models:running", "init_prepare_models:completed",
		"init_resume_checkpoint:running", "init_resume_checkpoint:completed", "model_save:running", "model_save:completed",
		"training_complete:completed"}
	if !slices.Equal(stages, want) {
		t.Fatalf("stages\n%v\nwant\n%v", stages, want)
	}
	st := eventsOf(evs, "training.status")
	if len(st) != 3 || !strings.HasPrefix(st[0].Message, "***** Running training *****") {
		t.Fatalf("training.status events: %s", tail(st, 3))
	}
	d := dataOf(t, st[2])
	p := d["progress"].(map[string]any)
	m := p["metrics"].(map[string]any)
	if d["global_step"].(float64) != 2 || p["current"].(float64) != 2 || p["total"].(float64) != 2 || p["percent"].(float64) != 100 {
		t.Fatalf("status data %s", st[2].Data)
	}
	for _, k := range []string{"loss", "learning_rate", "epoch", "iteration_speed", "grad_norm"} {
		if _, ok := m[k]; !ok {
			t.Fatalf("metric %s missing: %s", k, st[2].Data)
		}
	}
	pr := dataOf(t, eventsOf(evs, "training.progress")[1])
	for _, k := range []string{"step", "total_steps", "epoch", "total_epochs", "loss", "learning_rate", "percent", "eta_seconds"} {
		if _, ok := pr[k]; !ok {
			t.Fatalf("progress field %s missing: %v", k, pr)
		}
	}
	if _, err := os.Stat(filepath.Join(out, model.TransformerDir, model.ConfigFile)); err != nil {
		t.Fatal(err)
	}
}

func TestValidateAndBadConfigs(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	makeDataset(t, dataDir, 2, 16)
	r := testRunner()
	good := baseConfig(t.TempDir(), dataDir)
	raw, _ := json.Marshal(good)
	if is, err := r.Validate(context.Background(), raw); err != nil || len(errorsOf(is)) != 0 {
		t.Fatalf("good config: %v %v", is, err)
	}
	cases := map[string]struct {
		key string
		val any
	}{
		"flavour":     {"--model_flavour", "huge"},
		"dataloader":  {"--data_backend_config", `[{"id": "x", "type": "local", "dataset_type": "image"}]`},
		"lr":          {"--learning_rate", -1},
		"external":    {"--validation_method", "external-script"},
		"resolution":  {"--validation_resolution", "15"},
		"lycoris":     {"--lycoris_config", `{"algo": "loha"}`},
		"unknown key": {"--no_such_option", 1},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			cfg := clone(good)
			cfg[c.key] = c.val
			if name == "resolution" {
				cfg["--validation_prompt"] = "x"
			}
			if name == "lycoris" {
				cfg["--model_type"], cfg["--lora_type"] = "lora", "lycoris"
			}
			raw, _ := json.Marshal(cfg)
			is, err := r.Validate(context.Background(), raw)
			if err != nil {
				t.Fatal(err)
			}
			if len(errorsOf(is)) == 0 {
				t.Fatalf("no error issue for %s=%v: %v", c.key, c.val, is)
			}
			// Run fails the same configuration with a failed job, not a panic.
			if name != "dataloader" {
				_, st := startJob(t, r, cfg).wait(t, nil)
				if st.State != plugins.StateFailed {
					t.Fatalf("run ended %q", st.State)
				}
			}
		})
	}
}

func errorsOf(is []plugins.Issue) []plugins.Issue {
	return slices.DeleteFunc(slices.Clone(is), func(i plugins.Issue) bool { return i.Severity != "error" })
}
