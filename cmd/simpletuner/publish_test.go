package main

import (
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"simpletuner/trainerproc/hfhub/hfhubtest"
)

// writeDemoImages puts n small PNGs with captions into the fast path's dataset folder.
func writeDemoImages(t *testing.T, home string, n int) {
	t.Helper()
	dir := filepath.Join(home, "datasets", "demo")
	for i := range n {
		img := image.NewRGBA(image.Rect(0, 0, 32, 32))
		for p := range img.Pix {
			img.Pix[p] = uint8(p*7 + i*31)
		}
		img.SetRGBA(i, i, color.RGBA{255, 0, 0, 255})
		name := filepath.Join(dir, string(rune('a'+i)))
		f, err := os.Create(name + ".png")
		if err != nil {
			t.Fatal(err)
		}
		if err := png.Encode(f, img); err != nil {
			t.Fatal(err)
		}
		f.Close()
		if err := os.WriteFile(name+".txt", []byte("a caption"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPostUploadScriptGetsTheRemotePath runs the daemon with the real trainer against a
// fake Hub: with --push_to_hub and --push_checkpoints_to_hub the trainer uploads each
// checkpoint and the final model, and the daemon runs post_upload_script once for each,
// with {remote_checkpoint_path} the checkpoint's folder in the repo (the repo itself for
// the final model) and {huggingface_path} the repo id.
func TestPostUploadScriptGetsTheRemotePath(t *testing.T) {
	trainer := buildRealTrainer(t)
	hub := hfhubtest.New(t)
	hub.RequireWriteToken("hf_test_write")
	home := t.TempDir()
	d := start(t, home, "--trainer", trainer, "--trainer-env", "HF_ENDPOINT="+hub.URL, "--trainer-env", "HF_TOKEN=hf_test_write",
		"--trainer-env", "HF_HOME="+filepath.Join(home, "hf"))
	c := adminClient(t, d)
	fields := withField(fastPathFields(t, home), "--max_train_steps", "2")
	writeDemoImages(t, home, 2)
	hookOut := filepath.Join(home, "upload.log")
	script := filepath.Join(home, "upload.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho \"$1 $2 $3\" >> "+hookOut+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range [][2]string{{"--checkpoint_step_interval", "1"}, {"--push_to_hub", "true"}, {"--push_checkpoints_to_hub", "true"},
		{"--hub_model_id", "me/tuned"}, {"--post_upload_script", script + " {remote_checkpoint_path} {local_checkpoint_path} {huggingface_path}"}} {
		fields = withField(fields, f[0], f[1])
	}
	_, body := form(t, c, d.base+"/api/training/start", fields, "application/json")
	var st struct {
		JobID string `json:"job_id"`
	}
	if json.Unmarshal([]byte(body), &st); st.JobID == "" {
		t.Fatalf("start: %s", body)
	}
	waitJob(t, c, d.base, st.JobID, 2*time.Minute, "completed")

	repo := hub.URL + "/me/tuned"
	out := filepath.Join(home, "out", "inline-demo")
	want := []string{
		repo + " " + out + " me/tuned",
		repo + "/tree/main/checkpoint-1 " + filepath.Join(out, "checkpoint-1") + " me/tuned",
		repo + "/tree/main/checkpoint-2 " + filepath.Join(out, "checkpoint-2") + " me/tuned",
	}
	var lines []string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		b, _ := os.ReadFile(hookOut)
		lines = strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) >= len(want) || time.Now().After(deadline) {
			break
		}
	}
	sort.Strings(lines)
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Fatalf("post_upload_script ran with:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	files := hub.Files("me/tuned", "main")
	for _, p := range []string{"checkpoint-1/training_state.json", "checkpoint-2/training_state.json", "model_index.json", "README.md"} {
		if _, ok := files[p]; !ok {
			t.Errorf("%s is not in the repo", p)
		}
	}
}
