package pixart_test

import (
	"context"
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"log/slog"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"simpletuner/plugins"
	"simpletuner/plugins/kit"
	"simpletuner/trainerproc/engine/blas"
	"simpletuner/trainerproc/family"
	"simpletuner/trainerproc/family/pixart"
	"simpletuner/trainerproc/family/pixart/pixarttest"
	"simpletuner/trainerproc/runner"
)

// writeDataset writes n solid-colour 64×64 PNGs with their captions (textfile strategy).
func writeDataset(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		rgb  color.RGBA
	}{{"red", color.RGBA{220, 20, 20, 255}}, {"blue", color.RGBA{20, 20, 220, 255}}, {"green", color.RGBA{20, 200, 20, 255}}, {"yellow", color.RGBA{230, 220, 20, 255}}} {
		img := image.NewRGBA(image.Rect(0, 0, 64, 64))
		for y := range 64 {
			for x := range 64 {
				img.SetRGBA(x, y, c.rgb)
			}
		}
		f, err := os.Create(filepath.Join(dir, c.name+".png"))
		if err != nil {
			t.Fatal(err)
		}
		if err := png.Encode(f, img); err != nil {
			t.Fatal(err)
		}
		f.Close()
		caption := "a " + c.name + " square"
		if err := os.WriteFile(filepath.Join(dir, c.name+".txt"), []byte(caption), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// newRunner is a runner training pixart_sigma.
func newRunner(t *testing.T) *runner.Runner {
	t.Helper()
	reg, err := family.NewRegistry(pixart.Family{})
	if err != nil {
		t.Fatal(err)
	}
	return runner.New(runner.Options{Threads: 2, BLAS: blas.ChoiceAuto, Families: reg})
}

// runJob runs cfg on a runner training pixart_sigma and returns its events and final status.
func runJob(t *testing.T, cfg map[string]any) ([]plugins.Event, plugins.Status) {
	t.Helper()
	r := newRunner(t)
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h := kit.NewHost(r, slog.New(slog.DiscardHandler), kit.Options{Linger: time.Millisecond})
	if _, err := h.Start(context.Background(), plugins.StartRequest{JobID: "pixart", Config: raw, JobDir: t.TempDir(), Nonce: "n"}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var evs []plugins.Event
	if err := h.Events(ctx, 0, plugins.EachEvent(func(e plugins.Event) error { evs = append(evs, e); return nil })); err != nil {
		t.Fatal(err)
	}
	st, _ := h.Status(ctx)
	return evs, st
}

// TestJobTrainsSamplesAndSaves: a pixart_sigma job on the tiny pipeline through the runner
// caches latents and caption states, trains with gradient checkpointing, renders its
// validation prompt, checkpoints, saves the pipeline layout, and a second job resumes from
// the latest checkpoint.
func TestJobTrainsSamplesAndSaves(t *testing.T) {
	root := t.TempDir()
	pipe := pixarttest.PipelineDir(t)
	data := filepath.Join(root, "data")
	writeDataset(t, data)
	dl, err := json.Marshal([]map[string]any{
		{"id": "squares", "type": "local", "dataset_type": "image", "instance_data_dir": data, "caption_strategy": "textfile",
			"resolution": 64, "resolution_type": "pixel", "crop": false, "cache_dir_vae": filepath.Join(root, "vae")},
		{"id": "text", "type": "local", "dataset_type": "text_embeds", "default": true, "cache_dir": filepath.Join(root, "text"), "write_batch_size": 8},
	})
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(root, "out")
	cfg := map[string]any{
		"--model_family": "pixart_sigma", "--model_type": "full", "--pretrained_model_name_or_path": pipe, "--output_dir": out,
		"--data_backend_config": string(dl), "--train_batch_size": 2, "--max_train_steps": 2, "--gradient_checkpointing": true,
		"--learning_rate": 1e-4, "--optimizer": "adamw", "--lr_scheduler": "constant", "--seed": 3, "--mixed_precision": "no",
		"--checkpoint_step_interval": 1, "--resume_from_checkpoint": "latest", "--validation_prompt": "a red square",
		"--validation_step_interval": 100, "--validation_num_inference_steps": 2, "--validation_resolution": "64",
		"--validation_guidance": 3.8, "--snr_gamma": 5,
	}
	// Validate names the settings PixArt forces, as the trainer's warnings.
	withLen := maps.Clone(cfg)
	withLen["--tokenizer_max_length"] = 77
	raw, err := json.Marshal(withLen)
	if err != nil {
		t.Fatal(err)
	}
	is, err := newRunner(t).Validate(context.Background(), raw)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"--max_grad_norm", "--tokenizer_max_length"} {
		if !slices.ContainsFunc(is, func(i plugins.Issue) bool {
			return i.Option == want && i.Severity == "warning" && i.Origin == plugins.IssueOriginTrainer
		}) {
			t.Errorf("Validate did not report the forced %s: %+v", want, is)
		}
	}
	for _, i := range is {
		if i.Severity == "error" {
			t.Errorf("Validate: %+v", i)
		}
	}

	evs, st := runJob(t, cfg)
	if st.State != plugins.StateCompleted {
		t.Fatalf("job ended %q: %s\n%s", st.State, st.Error, lastEvents(evs, 8))
	}
	n := 0
	for _, e := range evs {
		if e.Type == "training.progress" {
			var d map[string]any
			if err := json.Unmarshal(e.Data, &d); err != nil {
				t.Fatal(err)
			}
			if l, _ := d["loss"].(float64); math.IsNaN(l) || l <= 0 {
				t.Errorf("loss %v", d["loss"])
			}
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d progress events, want 2", n)
	}
	if !hasWarning(evs, "--max_grad_norm") {
		t.Error("the forced --max_grad_norm was not reported")
	}
	pngs, _ := filepath.Glob(filepath.Join(out, "validation_images", "*.png"))
	if len(pngs) == 0 {
		t.Error("no validation image")
	}
	for _, rel := range []string{"model_index.json", "transformer/config.json", "transformer/diffusion_pytorch_model.safetensors",
		"vae/config.json", "scheduler/scheduler_config.json", "text_encoder/config.json"} {
		if _, err := os.Stat(filepath.Join(out, rel)); err != nil {
			t.Errorf("saved model: %v", err)
		}
	}
	ckpts, _ := filepath.Glob(filepath.Join(out, "checkpoint-*"))
	if len(ckpts) == 0 {
		t.Fatal("no checkpoint")
	}

	cfg["--max_train_steps"] = 3
	evs, st = runJob(t, cfg)
	if st.State != plugins.StateCompleted {
		t.Fatalf("resumed job ended %q: %s\n%s", st.State, st.Error, lastEvents(evs, 8))
	}
	resumed := false
	for _, e := range evs {
		if e.Type == plugins.EventLifecycleStage && strings.Contains(string(e.Data), "init_resume_checkpoint") && strings.Contains(string(e.Data), "completed") {
			resumed = true
		}
	}
	if !resumed {
		t.Errorf("the second job did not resume:\n%s", lastEvents(evs, 8))
	}
}

func hasWarning(evs []plugins.Event, what string) bool {
	for _, e := range evs {
		if e.Type == plugins.EventNotification && e.Severity == "warning" && strings.Contains(e.Message, what) {
			return true
		}
	}
	return false
}

func lastEvents(evs []plugins.Event, n int) string {
	var b strings.Builder
	for _, e := range evs[max(0, len(evs)-n):] {
		line, _ := json.Marshal(e)
		if len(line) > 400 {
			line = line[:400]
		}
		b.Write(line)
		b.WriteByte('\n')
	}
	return b.String()
}
