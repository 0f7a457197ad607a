package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// lycorisFields are fastPathFields for a LyCORIS LoRA over the active environment: the
// environment says lora_type=lycoris and where its LyCORIS config is.
func lycorisFields(t *testing.T, home string) [][2]string {
	fields := fastPathFields(t, home)
	for i, f := range fields {
		if f[0] == "--model_type" {
			fields[i][1] = "lora"
		}
	}
	return fields
}

// lycorisReport is the JSON answer of /api/training/validate.
type lycorisReport struct {
	Valid  bool `json:"valid"`
	Errors []struct {
		Option, Message string
	} `json:"errors"`
	Warnings []struct {
		Option, Message string
	} `json:"warnings"`
}

func lycorisValidate(t *testing.T, c *http.Client, base string, fields [][2]string) lycorisReport {
	t.Helper()
	code, body := form(t, c, base+"/api/training/validate", fields, "application/json")
	var v lycorisReport
	if err := json.Unmarshal([]byte(body), &v); code != 200 || err != nil {
		t.Fatalf("validate: %d %s", code, body)
	}
	return v
}

// TestTutorialLycorisEnvironment walks the tutorial's Flux Kontext LyCORIS example with
// this trainer's family: creating the environment writes SimpleTuner's default LoKr
// config, the LyCORIS routes read, check and replace it, and validate and start read the
// file the job trains with.
func TestTutorialLycorisEnvironment(t *testing.T) {
	home := t.TempDir()
	d := start(t, home, fakeTrainerArgs(20, 5)...)
	c := adminClient(t, d)
	code, created := call(t, c, "POST", d.base+"/api/configs/environments", map[string]any{
		"name": "kontext-api-demo", "model_family": "dit", "model_flavour": "tiny", "model_type": "lora", "lora_type": "lycoris",
		"description": "Flux Kontext LoRA via API"}, nil)
	if code != 200 {
		t.Fatalf("create: %d %v", code, created)
	}
	file := filepath.Join(home, "config", "kontext-api-demo", "lycoris_config.json")
	if _, err := os.Stat(file); err != nil {
		t.Fatalf("no LyCORIS config written: %v (%v)", err, created["config"])
	}
	code, got := call(t, c, "GET", d.base+"/api/configs/environments/kontext-api-demo/lycoris", nil, nil)
	cfg, _ := got["config"].(map[string]any)
	preset, _ := cfg["apply_preset"].(map[string]any)
	if code != 200 || got["environment_id"] != "kontext-api-demo" || cfg["algo"] != "lokr" || cfg["linear_dim"] != 10000.0 ||
		cfg["factor"] != 16.0 || cfg["multiplier"] != 1.0 || cfg["linear_alpha"] != 1.0 || preset["module_algo_map"] == nil {
		t.Fatalf("GET lycoris: %d %v", code, got)
	}

	// Validate without saving.
	code, rep := call(t, c, "POST", d.base+"/api/configs/lycoris/validate", map[string]any{"config": map[string]any{"algo": "loha", "linear_dim": 4}}, nil)
	errs := strings.Join(lycorisStrings(rep["errors"]), "\n")
	if code != 200 || rep["valid"] != false || !strings.Contains(errs, "algo 'loha' is not one this trainer applies") || !strings.Contains(errs, "Missing required field: 'multiplier'") {
		t.Fatalf("validate loha: %d %v", code, rep)
	}
	if code, rep := call(t, c, "POST", d.base+"/api/configs/lycoris/validate", map[string]any{"config": cfg}, nil); code != 200 || rep["valid"] != true {
		t.Fatalf("validate the default: %d %v", code, rep)
	}
	// Replace it: a bad config is refused with every message, a good one is stored.
	code, bad := call(t, c, "PUT", d.base+"/api/configs/environments/kontext-api-demo/lycoris", map[string]any{"config": map[string]any{"algo": "lokr", "multiplier": 1, "linear_dim": 0, "linear_alpha": 1}}, nil)
	if code != 422 || !strings.Contains(lycorisJSON(bad), "Field 'linear_dim' must be positive, got 0") {
		t.Fatalf("PUT bad lycoris: %d %v", code, bad)
	}
	lokr := map[string]any{"algo": "lokr", "multiplier": 1.0, "linear_dim": 8, "linear_alpha": 4, "factor": 4}
	code, saved := call(t, c, "PUT", d.base+"/api/configs/environments/kontext-api-demo/lycoris", map[string]any{"config": lokr}, nil)
	if code != 200 || saved["path"] != "kontext-api-demo/lycoris_config.json" || saved["success"] != true {
		t.Fatalf("PUT lycoris: %d %v", code, saved)
	}
	if _, got := call(t, c, "GET", d.base+"/api/configs/environments/kontext-api-demo/lycoris", nil, nil); got["config"].(map[string]any)["factor"] != 4.0 {
		t.Fatalf("GET after PUT: %v", got)
	}

	// Activate, validate, start: the job trains with the environment's file.
	if code, r := call(t, c, "POST", d.base+"/api/configs/kontext-api-demo/activate", nil, nil); code != 200 {
		t.Fatalf("activate: %d %v", code, r)
	}
	fields := lycorisFields(t, home)
	if v := lycorisValidate(t, c, d.base, fields); !v.Valid {
		t.Fatalf("validate: %+v", v)
	}
	id := startJob(t, d, c, fields)
	job := waitJob(t, c, d.base, id, 30*time.Second, "completed")
	jobCfg, _ := job["config"].(map[string]any)
	if jobCfg["--lora_type"] != "lycoris" || jobCfg["--lycoris_config"] != file {
		t.Fatalf("job config: %v", jobCfg)
	}

	// A LyCORIS config the trainer cannot apply, or none at all, is refused by validate
	// and start, not by a trainer that has already been launched.
	os.WriteFile(file, []byte(`{"algo":"locon","multiplier":1,"linear_dim":4,"linear_alpha":1}`), 0o644)
	v := lycorisValidate(t, c, d.base, fields)
	if v.Valid || len(v.Errors) != 1 || v.Errors[0].Option != "--lycoris_config" ||
		v.Errors[0].Message != `LyCORIS config kontext-api-demo/lycoris_config.json: algo 'locon' is not one this trainer applies: it trains LyCORIS LoKr only; set "algo": "lokr"` {
		t.Fatalf("validate locon: %+v", v)
	}
	os.Remove(file)
	v = lycorisValidate(t, c, d.base, fields)
	if v.Valid || len(v.Errors) != 1 || !strings.HasPrefix(v.Errors[0].Message, "LyCORIS config not found at '") {
		t.Fatalf("validate without the file: %+v", v)
	}
	if code, body := form(t, c, d.base+"/api/training/start", fields, "application/json"); code != 422 || !strings.Contains(body, "LyCORIS config not found") {
		t.Fatalf("start without the file: %d %s", code, body)
	}
}

// TestPostUploadScriptWaitsForAnUpload: validate says a post-upload hook has no upload to
// follow, and a job whose checkpoints are only saved locally runs its post-checkpoint hook
// and not its post-upload hook.
func TestPostUploadScriptWaitsForAnUpload(t *testing.T) {
	home := t.TempDir()
	d := start(t, home, fakeTrainerArgs(100000, 10)...)
	c := adminClient(t, d)
	ckMarker, upMarker := filepath.Join(home, "checkpoint.log"), filepath.Join(home, "upload.log")
	ck, up := filepath.Join(home, "on_checkpoint.sh"), filepath.Join(home, "on_upload.sh")
	os.WriteFile(ck, []byte("#!/bin/sh\necho \"$1\" >> "+ckMarker+"\n"), 0o755)
	os.WriteFile(up, []byte("#!/bin/sh\necho \"$1\" >> "+upMarker+"\n"), 0o755)
	fields := append(fastPathFields(t, home), [2]string{"--post_checkpoint_script", ck + " {local_checkpoint_path}"},
		[2]string{"--post_upload_script", up + " {remote_checkpoint_path}"})
	v := lycorisValidate(t, c, d.base, fields)
	if !v.Valid || len(v.Warnings) != 1 || v.Warnings[0].Option != "--post_upload_script" ||
		!strings.Contains(v.Warnings[0].Message, "nothing is uploaded without --push_to_hub") {
		t.Fatalf("validate: %+v", v)
	}
	id := startRunning(t, d, c, fields)
	// A stop saves a checkpoint, locally only.
	if code, r := call(t, c, "POST", d.base+"/api/training/stop", nil, nil); code != 200 {
		t.Fatalf("stop: %d %v", code, r)
	}
	waitJob(t, c, d.base, id, 30*time.Second, "stopped")
	// The checkpoint's post-checkpoint hook ran; the post-upload hook, which the daemon
	// started at the same moment when it ran it, did not.
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, _ := os.ReadFile(ckMarker)
		if strings.Count(string(b), "\n") == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("post_checkpoint_script runs: %q", b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if b, err := os.ReadFile(upMarker); err == nil {
		t.Fatalf("post_upload_script ran %d times with nothing uploaded: %q", strings.Count(string(b), "\n"), b)
	}
}

func lycorisStrings(v any) []string {
	var out []string
	l, _ := v.([]any)
	for _, e := range l {
		if s, ok := e.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func lycorisJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
