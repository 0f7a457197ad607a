package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeEnv creates config/<name>/ with a dit config and a dataloader over real files.
func writeEnv(t *testing.T, home, name string) string {
	t.Helper()
	cdir := filepath.Join(home, "config")
	data := filepath.Join(home, "datasets", name)
	os.MkdirAll(filepath.Join(cdir, name), 0o755)
	os.MkdirAll(data, 0o755)
	os.WriteFile(filepath.Join(data, "x.txt"), []byte("caption"), 0o644)
	dl := fmt.Sprintf(`[{"id":"img","type":"local","dataset_type":"image","instance_data_dir":%q,"caption_strategy":"textfile","resolution":32,"resolution_type":"pixel"},{"id":"txt","type":"local","dataset_type":"text_embeds","default":true,"cache_dir":%q}]`, data, filepath.Join(home, "cache", "text"))
	os.WriteFile(filepath.Join(cdir, name, "multidatabackend.json"), []byte(dl), 0o644)
	cfg := fmt.Sprintf(`{"--model_family":"dit","--model_flavour":"tiny","--model_type":"full","--output_dir":%q,"--data_backend_config":%q,"--max_train_steps":100,"--num_train_epochs":0}`,
		filepath.Join(home, "out"), filepath.Join(cdir, name, "multidatabackend.json"))
	os.WriteFile(filepath.Join(cdir, name, "config.json"), []byte(cfg), 0o644)
	return cdir
}

// homeEnv is the environment of a CLI run with SIMPLETUNER_HOME=home and
// SIMPLETUNER_CONFIG_DIR=cdir, and nothing else set.
func homeEnv(home, cdir string) func(string) string {
	return func(k string) string {
		switch k {
		case "SIMPLETUNER_HOME":
			return home
		case "SIMPLETUNER_CONFIG_DIR":
			return cdir
		}
		return ""
	}
}

func TestTrainRunsAnEnvironmentInTheForeground(t *testing.T) {
	home := t.TempDir()
	cdir := writeEnv(t, home, "demo")
	var out, errb bytes.Buffer
	env := homeEnv(home, cdir)
	code := run([]string{"train", "--env", "demo", "--trainer", os.Args[0], "--trainer-env", asTrainer + "=1",
		"--trainer-env", "FAKE_TRAINER_STEPS=7", "--trainer-env", "FAKE_TRAINER_STEP_MS=2", "--learning_rate=0.0002", "seed=3"}, &out, &errb, env)
	if code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out.String(), errb.String())
	}
	for _, want := range []string{"step 7/7", "it/s", "completed"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	// The overrides reached the resolved config the trainer got.
	matches, _ := filepath.Glob(filepath.Join(home, "jobs", "train-*", "config.json"))
	if len(matches) != 1 {
		t.Fatalf("job dirs: %v", matches)
	}
	b, _ := os.ReadFile(matches[0])
	if !strings.Contains(string(b), `"--learning_rate":0.0002`) || !strings.Contains(string(b), `"--seed":3`) {
		t.Fatalf("overrides missing from %s", b)
	}
	out.Reset()
	errb.Reset()
	if code := run([]string{"train", "--env", "nope"}, &out, &errb, env); code != 1 || !strings.Contains(errb.String(), "not found") {
		t.Fatalf("unknown env: %d %s", code, errb.String())
	}
	if code := run([]string{"train", "--env", "demo", "--learning_rat=1"}, &out, &errb, env); code != 2 || !strings.Contains(errb.String(), "--learning_rate") {
		t.Fatalf("misspelt option: %d %s", code, errb.String())
	}
}
