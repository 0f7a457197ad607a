package runner

import (
	"context"
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"simpletuner/plugins"
	"simpletuner/plugins/kit"
	"simpletuner/trainerproc/engine/blas"
)

// Test colours: two classes that differ in colour and shape on a shared grey background.
var (
	red  = color.RGBA{230, 20, 20, 255}
	blue = color.RGBA{20, 20, 230, 255}
	grey = color.RGBA{128, 128, 128, 255}
)

// writeClassImage draws class "red" (a filled square) or "blue" (a filled circle) of size
// res with a little per-image jitter of position, so the classes are visual, not one image.
func writeClassImage(t testing.TB, path string, res int, class string, jitter int) {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, res, res))
	c := float64(res)/2 + float64(jitter%3-1)
	for y := range res {
		for x := range res {
			col := grey
			dx, dy := float64(x)+0.5-c, float64(y)+0.5-c
			switch class {
			case "red":
				if dx*dx < float64(res*res)/9 && dy*dy < float64(res*res)/9 {
					col = red
				}
			case "blue":
				if dx*dx+dy*dy < float64(res*res)/7 {
					col = blue
				}
			}
			img.SetRGBA(x, y, col)
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := png.Encode(f, img); err != nil {
		t.Fatal(err)
	}
}

// makeDataset writes n images of each class with textfile captions "red" and "blue".
func makeDataset(t testing.TB, dir string, n, res int) {
	t.Helper()
	for i := range n {
		for _, class := range []string{"red", "blue"} {
			name := filepath.Join(dir, class+"_"+string(rune('a'+i)))
			writeClassImage(t, name+".png", res, class, i)
			if err := os.WriteFile(name+".txt", []byte(class), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func dataloader(dataDir string, res int) string {
	b, _ := json.Marshal([]map[string]any{
		{"id": "shapes", "type": "local", "dataset_type": "image", "instance_data_dir": dataDir, "caption_strategy": "textfile",
			"resolution": res, "resolution_type": "pixel", "crop": false},
		{"id": "text", "type": "memory", "dataset_type": "text_embeds", "default": true},
	})
	return string(b)
}

// baseConfig is a small tiny-flavour run: 16 images, batch 4, 8 steps.
func baseConfig(out, dataDir string) map[string]any {
	return map[string]any{
		"--model_family": "dit", "--model_flavour": "tiny", "--model_type": "full", "--output_dir": out,
		"--data_backend_config": dataloader(dataDir, 16), "--train_batch_size": 4, "--max_train_steps": 8,
		"--learning_rate": 1e-3, "--optimizer": "adamw", "--lr_scheduler": "constant", "--seed": 7,
		"--checkpoint_step_interval": 1000, "--mixed_precision": "no", "--resume_from_checkpoint": "latest",
	}
}

func testRunner() *Runner { return New(Options{Threads: 2, BLAS: blas.ChoiceAuto}) }

// job is an in-process run on the real kit Host.
type job struct {
	host *kit.Host
	dir  string
}

func startJob(t testing.TB, r kit.Runner, cfg map[string]any) *job {
	t.Helper()
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	h := kit.NewHost(r, slog.New(slog.DiscardHandler), kit.Options{Linger: time.Millisecond})
	if _, err := h.Start(context.Background(), plugins.StartRequest{JobID: "test", Config: raw, JobDir: dir, Nonce: "n"}); err != nil {
		t.Fatal(err)
	}
	return &job{host: h, dir: dir}
}

// wait collects every event until the job ends; onEvent may send commands.
func (j *job) wait(t testing.TB, onEvent func(plugins.Event)) ([]plugins.Event, plugins.Status) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var evs []plugins.Event
	err := j.host.Events(ctx, 0, plugins.EachEvent(func(e plugins.Event) error {
		evs = append(evs, e)
		if onEvent != nil {
			onEvent(e)
		}
		return nil
	}))
	if err != nil {
		t.Fatalf("events: %v", err)
	}
	st, _ := j.host.Status(ctx)
	return evs, st
}

// runJob runs cfg to its end and fails the test unless the job reaches want.
func runJob(t testing.TB, cfg map[string]any, want string) []plugins.Event {
	t.Helper()
	evs, st := startJob(t, testRunner(), cfg).wait(t, nil)
	if st.State != want {
		t.Fatalf("job ended %q (%s), want %q; last events:\n%s", st.State, st.Error, want, tail(evs, 6))
	}
	return evs
}

func tail(evs []plugins.Event, n int) string {
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

func eventsOf(evs []plugins.Event, typ string) []plugins.Event {
	var out []plugins.Event
	for _, e := range evs {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

func dataOf(t testing.TB, e plugins.Event) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(e.Data, &m); err != nil {
		t.Fatalf("event %s data: %v", e.Type, err)
	}
	return m
}

func losses(t testing.TB, evs []plugins.Event) []float64 {
	var out []float64
	for _, e := range eventsOf(evs, "training.progress") {
		out = append(out, dataOf(t, e)["loss"].(float64))
	}
	return out
}

func clone(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// copyDir copies a checkpoint directory tree.
func copyDir(t testing.TB, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if info.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, info.Mode())
	})
	if err != nil {
		t.Fatal(err)
	}
}
