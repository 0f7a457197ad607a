package main

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"simpletuner/plugins"
	"simpletuner/trainerproc/hfhub/hfhubtest"
	"simpletuner/trainerproc/model/modeltest"
)

// servedDit saves a tiny dit made from seed and returns its directory and its files.
func servedDit(t *testing.T, seed uint64) (string, map[string]hfhubtest.File) {
	t.Helper()
	dir := modeltest.SaveTiny(t, seed)
	files, err := hfhubtest.DirFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	return dir, files
}

// hubJob runs the trainer binary on one job with env added to its environment and returns
// its exit code, events and stderr.
func hubJob(t *testing.T, bin, root, name string, cfg map[string]any, env ...string) (int, []plugins.Event, string) {
	t.Helper()
	raw, _ := json.Marshal(cfg)
	cfgPath := filepath.Join(root, name+".json")
	if err := os.WriteFile(cfgPath, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "--config", cfgPath, "--job-dir", filepath.Join(root, name))
	cmd.Env = append([]string{envThreads + "=2", "PATH=" + os.Getenv("PATH"), "HOME=" + root}, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if _, exited := err.(*exec.ExitError); err != nil && !exited {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), scanEvents(t, stdout.Bytes()), stderr.String()
}

// closedEndpoint is the URL of a port nothing listens on any more: a Hub that is down.
func closedEndpoint(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

// TestHubWeightsEndToEnd is issue 13's acceptance for where weights come from, on the real
// binary: a job naming a Hub repo id downloads it into the HF cache layout through a
// connection cut mid-file and trains from the served weights; a corrupted download fails
// the job saying so; a second job with HF_HUB_OFFLINE=1 and the Hub down trains from the
// cache.
func TestHubWeightsEndToEnd(t *testing.T) {
	bin := buildTrainer(t)
	root := t.TempDir()
	writeImages(t, filepath.Join(root, "data"))
	hub := hfhubtest.New(t)
	served, files := servedDit(t, 99)
	commit := hub.Commit("org/dit", "main", files)
	const weights = "transformer/diffusion_pytorch_model.safetensors"
	size := int64(len(files[weights].Content))
	hub.CutAfter("org/dit", weights, size/2)
	cache := filepath.Join(root, "hf", "hub")

	jobConfig := func(out string) map[string]any {
		var cfg map[string]any
		_ = json.Unmarshal(config(t, filepath.Join(root, out), filepath.Join(root, "data")), &cfg)
		// Learning rate 0: the saved model must be the served one, bit for bit.
		cfg["--pretrained_model_name_or_path"], cfg["--learning_rate"] = "org/dit", 0
		cfg["--validation_prompt"], cfg["--checkpoint_step_interval"] = "", 100
		return cfg
	}

	code, evs, stderr := hubJob(t, bin, root, "job1", jobConfig("out1"), "HF_ENDPOINT="+hub.URL, "HF_HUB_CACHE="+cache)
	if code != 0 {
		t.Fatalf("first job exit %d: %s", code, stderr)
	}
	// The cut transfer was resumed from where it broke.
	var ranges []string
	for _, r := range hub.Requests() {
		if r.CDN && r.Method == "GET" {
			ranges = append(ranges, r.Range)
		}
	}
	if !strings.Contains(strings.Join(ranges, " "), "bytes="+strconv.FormatInt(size/2, 10)+"-") {
		t.Fatalf("no resumed GET of the weights; CDN ranges %q", ranges)
	}
	// Standard cache layout: refs/main holds the commit, the snapshot links into blobs/.
	repoDir := filepath.Join(cache, "models--org--dit")
	if ref, err := os.ReadFile(filepath.Join(repoDir, "refs", "main")); err != nil || string(ref) != commit {
		t.Fatalf("refs/main %q %v", ref, err)
	}
	link, err := os.Readlink(filepath.Join(repoDir, "snapshots", commit, weights))
	if err != nil || !strings.HasPrefix(link, "../../../blobs/") {
		t.Fatalf("snapshot link %q %v", link, err)
	}
	if left, _ := filepath.Glob(filepath.Join(repoDir, "blobs", "*.incomplete")); len(left) != 0 {
		t.Fatalf("partial downloads left: %v", left)
	}
	// Trained from the served weights: with a learning rate of 0 it saves them unchanged.
	if got, want := readAll(t, filepath.Join(root, "out1", weights)), readAll(t, filepath.Join(served, weights)); !bytes.Equal(got, want) {
		t.Fatal("the saved transformer is not the served one")
	}
	var progress int
	for _, e := range evs {
		if e.Type == plugins.EventDownloadProgress {
			progress++
			var d plugins.DownloadProgress
			if err := json.Unmarshal(e.Data, &d); err != nil || d.Repo != "org/dit" || d.Total <= 0 || d.Done > d.Total {
				t.Fatalf("progress event %s: %v", e.Data, err)
			}
		}
	}
	if progress == 0 {
		t.Fatal("no download.progress events")
	}

	// A corrupted file fails the job, saying so, and leaves nothing under its name.
	hub.Corrupt("org/dit", weights, true)
	cache2 := filepath.Join(root, "hf2")
	code, _, stderr = hubJob(t, bin, root, "job2", jobConfig("out2"), "HF_ENDPOINT="+hub.URL, "HF_HUB_CACHE="+cache2)
	if code != 1 || !strings.Contains(stderr, "does not match its hash") || !strings.Contains(stderr, weights) {
		t.Fatalf("corrupt download: exit %d, stderr %q", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(cache2, "models--org--dit", "snapshots", commit, weights)); err == nil {
		t.Fatal("a corrupt file was linked into the snapshot")
	}

	// Offline with the Hub down: the first job's cache is enough, and nothing is asked.
	before := len(hub.Requests())
	code, _, stderr = hubJob(t, bin, root, "job3", jobConfig("out3"), "HF_ENDPOINT="+closedEndpoint(t), "HF_HUB_CACHE="+cache, "HF_HUB_OFFLINE=1")
	if code != 0 {
		t.Fatalf("offline job exit %d: %s", code, stderr)
	}
	if n := len(hub.Requests()) - before; n != 0 {
		t.Fatalf("offline job made %d requests", n)
	}
	if !bytes.Equal(readAll(t, filepath.Join(root, "out3", weights)), readAll(t, filepath.Join(served, weights))) {
		t.Fatal("the offline job did not train from the cached weights")
	}
}

func readAll(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
