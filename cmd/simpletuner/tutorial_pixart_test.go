package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"simpletuner/trainerproc/family/pixart/pixarttest"
	"simpletuner/trainerproc/safetensors"
)

// The tutorial's section "例: PixArt Sigma 900Mフルファインチューン", steps 1 to 7, as its
// shell commands stand (step 1's body, which the tutorial prints as a separate JSON block
// after `-d`, is given to -d in single quotes). pixartSteps runs them through bash, curl
// and jq after pixartReplacements.
const (
	pixartStep1 = `curl -s -X POST http://localhost:8001/api/configs/environments \
  -H 'Content-Type: application/json' \
  -d '{
        "name": "pixart-api-demo",
        "model_family": "pixart_sigma",
        "model_flavour": "900M-1024-v0.6",
        "model_type": "full",
        "description": "PixArt 900M API-driven training"
      }'
`
	pixartStep2 = `cat <<'JSON' > config/pixart-api-demo/multidatabackend.json
[
  {
    "id": "pixart-camera",
    "type": "local",
    "dataset_type": "image",
    "instance_data_dir": "/data/datasets/pseudo-camera-10k",
    "caption_strategy": "filename",
    "resolution": 1.0,
    "resolution_type": "area",
    "minimum_image_size": 0.25,
    "maximum_image_size": 1.0,
    "target_downsample_size": 1.0,
    "cache_dir_vae": "/data/cache/vae/pixart/pseudo-camera-10k",
    "crop": true,
    "crop_style": "random",
    "crop_aspect": "square",
    "metadata_backend": "discovery"
  },
  {
    "id": "pixart-text-embeds",
    "type": "local",
    "dataset_type": "text_embeds",
    "default": true,
    "cache_dir": "/data/cache/text/pixart/pseudo-camera-10k",
    "write_batch_size": 128
  }
]
JSON
`
	pixartStep3 = `curl -s http://localhost:8001/api/configs/pixart-api-demo \
  | jq '.config + {
      "--output_dir": "/workspace/output/pixart900m",
      "--train_batch_size": 2,
      "--gradient_accumulation_steps": 2,
      "--learning_rate": 0.0001,
      "--optimizer": "adamw_bf16",
      "--lr_scheduler": "cosine",
      "--lr_warmup_steps": 500,
      "--max_train_steps": 1800,
      "--num_train_epochs": 0,
      "--validation_prompt": "a studio portrait of <token> wearing a leather jacket",
      "--validation_guidance": 3.8,
      "--validation_resolution": "1024x1024",
      "--validation_num_inference_steps": 28,
      "--cache_dir_vae": "/data/cache/vae/pixart",
      "--seed": 1337,
      "--resume_from_checkpoint": "latest",
      "--base_model_precision": "bf16",
      "--dataloader_prefetch": true,
      "--report_to": "none",
      "--checkpoints_total_limit": 4,
      "--validation_seed": 12345,
      "--data_backend_config": "pixart-api-demo/multidatabackend.json"
    }' > /tmp/pixart-config.json

jq '{
      "name": "pixart-api-demo",
      "description": "PixArt 900M full tune (API)",
      "tags": ["pixart", "api"],
      "config": .
    }' /tmp/pixart-config.json > /tmp/pixart-update.json

curl -s -X PUT http://localhost:8001/api/configs/pixart-api-demo \
  -H 'Content-Type: application/json' \
  --data-binary @/tmp/pixart-update.json
`
	pixartStep4 = `curl -s -X POST http://localhost:8001/api/configs/pixart-api-demo/activate
`
	pixartStep5 = `curl -s -X POST http://localhost:8001/api/training/validate \
  -F __active_tab__=model \
  -F --num_train_epochs=0
`
	pixartStep6 = `curl -s -X POST http://localhost:8001/api/training/start \
  -F __active_tab__=model \
  -F --num_train_epochs=0
`
	pixartStatus = `curl -s http://localhost:8001/api/training/status | jq
`
	pixartEvents = `curl -s 'http://localhost:8001/api/training/events?since_index=0' | jq
`
	pixartStop = `curl -s -X POST http://localhost:8001/api/training/stop
`
)

// Test-time sizes. The tiny pipeline's transformer works at 64 px (sample_size 16 latent
// pixels × the tiny VAE's factor 4), the size SimpleTuner's forced bucket alignment of 64
// allows as the smallest, so the tutorial's 1 megapixel becomes 64² = 0.004096 megapixels;
// its minimum, maximum and downsample sizes (0.25, 1.0, 1.0 of the resolution) keep their
// ratios to it. The dataset's images are 96 px (0.0092 MP), so they are downsampled to the
// target and cropped, as the tutorial's camera photos are.
const (
	pixartArea      = "0.004096"
	pixartMinArea   = "0.001024"
	pixartImagePx   = 96
	pixartMaxSteps  = 160 // the tutorial's 1800
	pixartWarmup    = 44  // the tutorial's 500, in the same proportion to the steps
	pixartStopAfter = 110 // past the validation at step 100 (the default interval)
)

// pixartReplacements turns the tutorial's commands into this test's: the daemon's address,
// the host paths under root, and the sizes above. Nothing else changes.
func pixartReplacements(base, root string) *strings.Replacer {
	return strings.NewReplacer(
		"http://localhost:8001", base,
		`"/data/`, `"`+root+`/data/`,
		`"/workspace/`, `"`+root+`/workspace/`,
		"/tmp/pixart-", root+"/tmp/pixart-",
		`"resolution": 1.0,`, `"resolution": `+pixartArea+`,`,
		`"minimum_image_size": 0.25,`, `"minimum_image_size": `+pixartMinArea+`,`,
		`"maximum_image_size": 1.0,`, `"maximum_image_size": `+pixartArea+`,`,
		`"target_downsample_size": 1.0,`, `"target_downsample_size": `+pixartArea+`,`,
		`"--lr_warmup_steps": 500,`, fmt.Sprintf(`"--lr_warmup_steps": %d,`, pixartWarmup),
		`"--max_train_steps": 1800,`, fmt.Sprintf(`"--max_train_steps": %d,`, pixartMaxSteps),
		`"--validation_resolution": "1024x1024",`, fmt.Sprintf(`"--validation_resolution": "%dx%d",`, pixarttest.SampleSize, pixarttest.SampleSize),
	)
}

// pixartShell runs the tutorial's commands with bash in dir (the daemon's working directory:
// config/ is its configs folder) and returns what they print; a failing command fails the
// test with its stderr.
func pixartShell(t *testing.T, dir, script string) string {
	t.Helper()
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
	cmd.Dir = dir
	// HOME is the test's own, so no ~/.curlrc or ~/.jq changes what the commands do.
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "LC_ALL=C.UTF-8"}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s\n%v: %s%s", script, err, stderr.String(), stdout.String())
	}
	return stdout.String()
}

// needTools fails the test when bash, curl or jq is missing: the tutorial is shell commands,
// and `make test` installs the tools (make tutorial-deps).
func needTools(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"bash", "curl", "jq"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the tutorial test runs the tutorial's commands and needs %s: run `make tutorial-deps` (%v)", tool, err)
		}
	}
}

// pixartShapes writes the captioned dataset: coloured shapes on grey, named by their caption
// (caption_strategy filename).
func pixartShapes(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	colours := map[string]color.RGBA{"red": {220, 30, 30, 255}, "blue": {30, 40, 220, 255},
		"green": {30, 200, 40, 255}, "yellow": {230, 220, 30, 255}}
	for name, c := range colours {
		for _, shape := range []string{"square", "circle"} {
			img := image.NewRGBA(image.Rect(0, 0, pixartImagePx, pixartImagePx))
			for y := 0; y < pixartImagePx; y++ {
				for x := 0; x < pixartImagePx; x++ {
					dx, dy := float64(x-pixartImagePx/2), float64(y-pixartImagePx/2)
					in := math.Abs(dx) < 30 && math.Abs(dy) < 30
					if shape == "circle" {
						in = dx*dx+dy*dy < 32*32
					}
					if in {
						img.SetRGBA(x, y, c)
					} else {
						img.SetRGBA(x, y, color.RGBA{128, 128, 128, 255})
					}
				}
			}
			var buf bytes.Buffer
			if err := png.Encode(&buf, img); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "a "+name+" "+shape+".png"), buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// pixartEvent is the part of a training event this test reads.
type pixartEvent struct {
	Index    uint64 `json:"index"`
	JobID    string `json:"job_id"`
	Type     string `json:"type"`
	Title    string `json:"title"`
	Message  string `json:"message"`
	Progress *struct {
		Current int64    `json:"current"`
		Loss    *float64 `json:"loss"`
	} `json:"progress"`
	Stage *struct {
		Key    string `json:"key"`
		Status string `json:"status"`
	} `json:"stage"`
	Checkpoint *struct {
		Path string `json:"path"`
		Step int64  `json:"step"`
	} `json:"checkpoint"`
	Images []struct {
		Src      string `json:"src"`
		MimeType string `json:"mime_type"`
	} `json:"images"`
}

// pixartJobEvents reads every event of job id through the tutorial's events endpoint, page by
// page (the tutorial's since_index=0 call is the first page).
func pixartJobEvents(t *testing.T, c *http.Client, base, id string) []pixartEvent {
	t.Helper()
	var out []pixartEvent
	for since := uint64(0); ; {
		code, raw := rawCall(t, c, "GET", fmt.Sprintf("%s/api/training/events?since_index=%d&job_id=%s", base, since, id), nil, nil)
		var page struct {
			Events    []pixartEvent `json:"events"`
			NextIndex uint64        `json:"next_index"`
		}
		if code != 200 || json.Unmarshal([]byte(raw), &page) != nil {
			t.Fatalf("events: %d %s", code, raw)
		}
		out = append(out, page.Events...)
		if len(page.Events) == 0 || page.NextIndex <= since {
			return out
		}
		since = page.NextIndex
	}
}

// pixartStatusOf reads the tutorial's status call (through jq).
func pixartStatusOf(t *testing.T, home, script string) (status, jobID string, step int64) {
	t.Helper()
	var st struct {
		Status   string  `json:"status"`
		JobID    *string `json:"job_id"`
		Progress *struct {
			Step int64 `json:"step"`
		} `json:"progress"`
	}
	out := pixartShell(t, home, script)
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status through jq: %v\n%s", err, out)
	}
	if st.JobID != nil {
		jobID = *st.JobID
	}
	if st.Progress != nil {
		step = st.Progress.Step
	}
	return st.Status, jobID, step
}

// TestTutorialPixArtSigma is issue 14's acceptance on the real daemon and trainer: the
// tutorial's PixArt-Σ section, its curl and jq commands changed only in host paths, test-time
// sizes (pixartReplacements) and the Hub endpoint, trains the tiny PixArt-Σ pipeline served
// by a fake Hub under the tutorial's repo id. The environment is created with
// model_family=pixart_sigma, the dataloader written, the hyperparameters merged with jq and
// PUT, the environment activated, validated and started; the events show the text-embedding
// and VAE caches filled before training; the loss falls; validation images land under
// validation_images/ and on the event stream; stop saves a checkpoint, and a second start
// (the merged config carries --resume_from_checkpoint latest) continues from its step to the
// end, which saves the model in the diffusers layout.
func TestTutorialPixArtSigma(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the trainer and trains for 160 steps")
	}
	needTools(t)
	trainer := buildRealTrainer(t)
	hub, _ := pixarttest.Serve(t)
	home := t.TempDir()
	root := t.TempDir()
	pixartShapes(t, filepath.Join(root, "data", "datasets", "pseudo-camera-10k"))
	if err := os.MkdirAll(filepath.Join(root, "tmp"), 0o755); err != nil {
		t.Fatal(err)
	}
	d := start(t, home, "--trainer", trainer, "--allow-data-root", filepath.Join(root, "data"),
		"--trainer-env", "HF_ENDPOINT="+hub.URL, "--trainer-env", "HF_HOME="+filepath.Join(root, "hf"),
		"--trainer-env", "SIMPLETUNER_TRAINER_THREADS=2")
	c := &http.Client{Timeout: 30 * time.Second}
	d.waitReady(c)
	rep := pixartReplacements(d.base, root)
	sh := func(script string) string { t.Helper(); return pixartShell(t, home, rep.Replace(script)) }

	// 1. The environment, with its starter dataloader.
	out := sh(pixartStep1)
	if _, err := os.Stat(filepath.Join(home, "config", "pixart-api-demo", "multidatabackend.json")); err != nil {
		t.Fatalf("step 1 made no starter dataloader (%v): %s", err, out)
	}
	// 2. The dataloader as the tutorial writes it.
	sh(pixartStep2)
	// 3. The hyperparameters, merged by jq and PUT.
	out = sh(pixartStep3)
	var put map[string]any
	if err := json.Unmarshal([]byte(out), &put); err != nil || put["detail"] != nil {
		t.Fatalf("step 3 PUT: %v %s", err, out)
	}
	// 4, 5. Activate and validate.
	sh(pixartStep4)
	// Valid, with SimpleTuner's forced PixArt settings reported as warnings (the tutorial
	// leaves --max_grad_norm at its default, which the family overrides).
	out = sh(pixartStep5)
	if strings.Contains(out, "Validation Failed") || !strings.Contains(out, "You can proceed") ||
		!strings.Contains(out, "--max_grad_norm=0.01") {
		t.Fatalf("step 5 validate: %s", out)
	}
	// 6. Start.
	sh(pixartStep6)
	status, id, _ := pixartStatusOf(t, home, rep.Replace(pixartStatus))
	if id == "" {
		t.Fatalf("no job after start (status %q)", status)
	}
	out1 := filepath.Join(root, "workspace", "output", "pixart900m")

	// 7. Monitor: train past the validation at step 100, then stop.
	waitStep(t, c, d.base, id, pixartStopAfter)
	if status, _, step := pixartStatusOf(t, home, rep.Replace(pixartStatus)); status != "running" || step < pixartStopAfter {
		t.Fatalf("status while training: %q at step %d", status, step)
	}
	if out = sh(pixartEvents); !strings.Contains(out, `"init_vae_cache"`) || !strings.Contains(out, `"training.progress"`) {
		t.Fatalf("the tutorial's events call shows no caching or training:\n%.2000s", out)
	}
	sh(pixartStop)
	waitJob(t, c, d.base, id, 2*time.Minute, "stopped", "completed")
	evs := pixartJobEvents(t, c, d.base, id)
	stopStep := pixartCheckFirstRun(t, evs, out1)
	// The weights came from the (fake) Hub under the tutorial's repo id.
	fetched := false
	for _, r := range hub.Requests() {
		if strings.Contains(r.Path, pixarttest.RepoID) && strings.Contains(r.Path, "transformer") {
			fetched = true
		}
	}
	if !fetched {
		t.Errorf("the trainer never asked the Hub for %s's transformer: %v", pixarttest.RepoID, hub.Requests())
	}

	// Restart: the same start resumes from the latest checkpoint and finishes.
	sh(pixartStep6)
	_, id2, _ := pixartStatusOf(t, home, rep.Replace(pixartStatus))
	if id2 == "" || id2 == id {
		t.Fatalf("the second start made no new job (%q after %q)", id2, id)
	}
	waitJob(t, c, d.base, id2, 3*time.Minute, "completed")
	evs2 := pixartJobEvents(t, c, d.base, id2)
	var steps []int64
	for _, e := range evs2 {
		if e.Type == "training.progress" && e.Progress != nil && e.Progress.Current > 0 {
			steps = append(steps, e.Progress.Current)
		}
	}
	if len(steps) == 0 || steps[0] != stopStep+1 || steps[len(steps)-1] != pixartMaxSteps {
		t.Fatalf("resumed run's steps go from %v to %v, want %d to %d", first(steps), last(steps), stopStep+1, pixartMaxSteps)
	}
	for _, f := range []string{"model_index.json", "transformer/config.json", "transformer/diffusion_pytorch_model.safetensors",
		"scheduler/scheduler_config.json", "vae/config.json", "text_encoder/config.json"} {
		if _, err := os.Stat(filepath.Join(out1, f)); err != nil {
			t.Errorf("the finished run saved no %s: %v", f, err)
		}
	}
	pixartSameTensors(t, filepath.Join(out1, "transformer", "diffusion_pytorch_model.safetensors"))
	if pngs := pixartPNGs(t, out1); len(pngs) < 2 {
		t.Errorf("validation images after the resumed run: %v", pngs)
	}
}

// pixartCheckFirstRun checks the stopped first run's events and files and returns the step
// its stop checkpoint saved.
func pixartCheckFirstRun(t *testing.T, evs []pixartEvent, out string) int64 {
	t.Helper()
	firstTrain, textCache, vaeCache := -1, -1, -1
	var losses []float64
	var ckptStep int64
	var pngEvents int
	for i, e := range evs {
		switch {
		case e.Type == "lifecycle.stage" && e.Stage != nil && e.Stage.Key == "init_text_embed_cache" && textCache < 0:
			textCache = i
		case e.Type == "lifecycle.stage" && e.Stage != nil && e.Stage.Key == "init_vae_cache" && vaeCache < 0:
			vaeCache = i
		case e.Type == "training.progress" && e.Progress != nil && e.Progress.Loss != nil && e.Progress.Current > 0:
			if firstTrain < 0 {
				firstTrain = i
			}
			losses = append(losses, *e.Progress.Loss)
		case e.Type == "training.checkpoint" && e.Checkpoint != nil:
			ckptStep = e.Checkpoint.Step
		}
		for _, im := range e.Images {
			if im.MimeType == "image/png" && strings.HasPrefix(im.Src, "data:image/png;base64,") {
				pngEvents++
			}
		}
	}
	if textCache < 0 || vaeCache < 0 || firstTrain < 0 || textCache > firstTrain || vaeCache > firstTrain {
		t.Fatalf("events: text cache at %d, VAE cache at %d, first training step at %d; want both caches before training", textCache, vaeCache, firstTrain)
	}
	if len(losses) < pixartStopAfter {
		t.Fatalf("%d losses on the event stream, want %d", len(losses), pixartStopAfter)
	}
	// The loss is noisy from step to step (random timesteps and noise): compare the means
	// of the first and the last 30 steps.
	early, late := mean(losses[:30]), mean(losses[len(losses)-30:])
	t.Logf("loss: first 30 steps %.4f, last 30 steps %.4f", early, late)
	if !(late < 0.9*early) {
		t.Errorf("the loss did not fall: first 30 steps %.4f, last 30 %.4f", early, late)
	}
	if pngEvents == 0 {
		t.Errorf("no validation image on the event stream")
	}
	if pngs := pixartPNGs(t, out); len(pngs) == 0 {
		t.Errorf("no PNG under %s/validation_images", out)
	}
	if ckptStep < pixartStopAfter {
		t.Fatalf("stop saved no checkpoint past step %d (last checkpoint event at %d)", pixartStopAfter, ckptStep)
	}
	if _, err := os.Stat(filepath.Join(out, fmt.Sprintf("checkpoint-%d", ckptStep))); err != nil {
		t.Fatalf("stop checkpoint: %v", err)
	}
	return ckptStep
}

// pixartSameTensors checks that the saved transformer has exactly the base's tensor names,
// shapes and dtypes (bf16, as the served checkpoint stores them).
func pixartSameTensors(t *testing.T, saved string) {
	t.Helper()
	header := func(path string) map[string]string {
		f, err := safetensors.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		out := map[string]string{}
		for _, n := range f.Names() {
			info, _ := f.Info(n)
			out[n] = fmt.Sprint(info.DType, info.Shape)
		}
		return out
	}
	base := header(filepath.Join(pixarttest.PipelineDir(t), "transformer", "diffusion_pytorch_model.safetensors"))
	got := header(saved)
	if len(got) != len(base) {
		t.Errorf("the saved transformer has %d tensors, the base %d", len(got), len(base))
	}
	for n, want := range base {
		if got[n] != want {
			t.Errorf("saved %s is %q, the base's %q", n, got[n], want)
		}
	}
}

// pixartPNGs lists the valid PNG files under out/validation_images.
func pixartPNGs(t *testing.T, out string) []string {
	t.Helper()
	names, _ := filepath.Glob(filepath.Join(out, "validation_images", "*.png"))
	var ok []string
	for _, n := range names {
		f, err := os.Open(n)
		if err != nil {
			continue
		}
		cfg, err := png.DecodeConfig(f)
		f.Close()
		if err == nil && cfg.Width == pixarttest.SampleSize && cfg.Height == pixarttest.SampleSize {
			ok = append(ok, filepath.Base(n))
		}
	}
	sort.Strings(ok)
	return ok
}

func mean(v []float64) float64 {
	var s float64
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

func first(v []int64) any {
	if len(v) == 0 {
		return "nothing"
	}
	return v[0]
}

func last(v []int64) any {
	if len(v) == 0 {
		return "nothing"
	}
	return v[len(v)-1]
}
