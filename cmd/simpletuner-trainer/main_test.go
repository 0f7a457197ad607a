package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"simpletuner/internal/buildtest"
	"simpletuner/plugins"
)

// buildTrainer builds this command, so the tests drive the real binary.
func buildTrainer(t *testing.T) string {
	t.Helper()
	return buildtest.Binary(t, "simpletuner/cmd/simpletuner-trainer")
}

func writeImages(t *testing.T, dir string) {
	t.Helper()
	os.MkdirAll(dir, 0o755)
	for i, c := range []color.RGBA{{255, 0, 0, 255}, {0, 0, 255, 255}, {0, 255, 0, 255}, {255, 255, 0, 255}} {
		img := image.NewRGBA(image.Rect(0, 0, 16, 16))
		for p := 0; p < len(img.Pix); p += 4 {
			img.Pix[p], img.Pix[p+1], img.Pix[p+2], img.Pix[p+3] = c.R, c.G, c.B, c.A
		}
		var buf bytes.Buffer
		png.Encode(&buf, img)
		name := filepath.Join(dir, string(rune('a'+i)))
		os.WriteFile(name+".png", buf.Bytes(), 0o644)
		os.WriteFile(name+".txt", []byte("colour "+string(rune('a'+i))), 0o644)
	}
}

func config(t *testing.T, out, data string) []byte {
	dl, _ := json.Marshal([]map[string]any{
		{"id": "d", "type": "local", "dataset_type": "image", "instance_data_dir": data, "caption_strategy": "textfile",
			"resolution": 16, "resolution_type": "pixel"},
		{"id": "text", "type": "memory", "dataset_type": "text_embeds", "default": true},
	})
	b, _ := json.Marshal(map[string]any{"--model_family": "dit", "--model_flavour": "tiny", "--output_dir": out,
		"--data_backend_config": string(dl), "--train_batch_size": 2, "--max_train_steps": 4, "--learning_rate": 1e-3,
		"--optimizer": "adamw", "--seed": 3, "--checkpoint_step_interval": 2, "--validation_prompt": "colour a",
		"--validation_resolution": "16,16x8", "--validation_num_inference_steps": 3, "--validation_step_interval": 100})
	return b
}

// scanEvents reads the events a standalone run prints, one JSON object a line.
func scanEvents(t *testing.T, stdout []byte) []plugins.Event {
	t.Helper()
	var evs []plugins.Event
	sc := bufio.NewScanner(bytes.NewReader(stdout))
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		var e plugins.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("stdout line is not an event: %q", sc.Text())
		}
		evs = append(evs, e)
	}
	return evs
}

func TestPluginEndToEnd(t *testing.T) {
	bin := buildTrainer(t)
	root := t.TempDir()
	writeImages(t, filepath.Join(root, "data"))
	jobDir, out := filepath.Join(root, "job"), filepath.Join(root, "out")
	os.MkdirAll(jobDir, 0o755)
	c, err := plugins.Launch(plugins.LaunchConfig{Path: bin, SocketDir: t.TempDir(),
		Env: []string{plugins.EnvJobDir + "=" + jobDir, envThreads + "=2", "PATH=" + os.Getenv("PATH")}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Backend != "cpu" || len(info.Devices) != 1 || !strings.HasPrefix(info.Devices[0], "cpu (") ||
		len(info.Families) != 2 || info.Families[0].Name != "dit" || info.Families[0].DefaultFlavour != "tiny" ||
		info.Families[1].Name != "pixart_sigma" || info.Families[1].DefaultFlavour != "900M-1024-v0.6" ||
		!slices.Equal(info.Families[0].Flavours, []string{"tiny", "small", "base", "xl"}) || info.ProtocolVersion != plugins.ProtocolVersion {
		t.Fatalf("info %+v", info)
	}
	t.Logf("trainer backend: %s", info.Devices[0])
	issues, err := c.Validate(ctx, json.RawMessage(`{"--model_family": "dit", "--model_flavour": "nope", "--output_dir": "/tmp/x", "--data_backend_config": "[]"}`))
	if err != nil || len(issues) == 0 {
		t.Fatalf("validate bad config: %v %v", issues, err)
	}
	if _, err := c.Start(ctx, plugins.StartRequest{JobID: "e2e", Config: config(t, out, filepath.Join(root, "data")), JobDir: jobDir, Nonce: "n1"}); err != nil {
		t.Fatal(err)
	}
	var types []string
	if err := c.Events(ctx, 0, plugins.EachEvent(func(e plugins.Event) error { types = append(types, e.Type); return nil })); err != nil {
		t.Fatal(err)
	}
	rec, err := plugins.ReadExitRecord(jobDir)
	if err != nil || rec.State != plugins.StateCompleted || rec.Progress.Step != 4 {
		t.Fatalf("exit record %+v %v (events %v)", rec, err, types)
	}
	for _, want := range []string{"lifecycle.stage", "training.status", "training.progress", "training.checkpoint", "training.validation"} {
		if !slices.Contains(types, want) {
			t.Fatalf("no %s event: %v", want, types)
		}
	}
	for _, p := range []string{"transformer/diffusion_pytorch_model.safetensors", "transformer/config.json", "checkpoint-4/.guard",
		"validation_images/step_4_validation_16x16.png", "validation_images/step_4_validation_16x8.png"} {
		if _, err := os.Stat(filepath.Join(out, p)); err != nil {
			t.Fatalf("missing output: %v", err)
		}
	}
	if st, err := os.Stat(filepath.Join(jobDir, plugins.LogFile)); err != nil || st.Size() == 0 {
		t.Fatalf("trainer log: %v", err)
	}
}

func TestStandaloneRun(t *testing.T) {
	bin := buildTrainer(t)
	root := t.TempDir()
	writeImages(t, filepath.Join(root, "data"))
	cfgPath := filepath.Join(root, "resolved.json")
	os.WriteFile(cfgPath, config(t, filepath.Join(root, "out"), filepath.Join(root, "data")), 0o644)
	cmd := exec.Command(bin, "run", "--config", cfgPath, "--job-dir", filepath.Join(root, "job"))
	cmd.Env = []string{envThreads + "=2", "PATH=" + os.Getenv("PATH")}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	if err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	evs := scanEvents(t, stdout)
	if len(evs) < 10 || evs[len(evs)-1].Type != "job.status" || !strings.Contains(string(evs[len(evs)-1].Data), `"completed"`) {
		t.Fatalf("%d events, last %+v", len(evs), evs[len(evs)-1])
	}
	for i, e := range evs {
		if e.Seq != uint64(i+1) {
			t.Fatalf("event %d has seq %d", i, e.Seq)
		}
	}
	// A config that cannot train exits 1 with the reason on stderr.
	os.WriteFile(cfgPath, []byte(`{"--model_family": "dit", "--output_dir": "`+filepath.Join(root, "out2")+`", "--model_flavour": "huge"}`), 0o644)
	cmd = exec.Command(bin, "run", "--config", cfgPath, "--job-dir", filepath.Join(root, "job2"))
	stderr.Reset()
	cmd.Stderr = &stderr
	if err := cmd.Run(); err == nil || cmd.ProcessState.ExitCode() != 1 || !strings.Contains(stderr.String(), "flavour") {
		t.Fatalf("bad config: %v, stderr %q", err, stderr.String())
	}
}
