package runner

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"simpletuner/trainerproc/safetensors"
)

// TestConditioningDatasetTrainsReferenceTokens: an image dataset paired with a
// reference_strict conditioning dataset trains a model with conditioning tokens, and the
// saved model carries cond_embed.
func TestConditioningDatasetTrainsReferenceTokens(t *testing.T) {
	dir := t.TempDir()
	imgs, refs := filepath.Join(dir, "edited"), filepath.Join(dir, "reference")
	os.MkdirAll(imgs, 0o755)
	os.MkdirAll(refs, 0o755)
	makeDataset(t, imgs, 4, 16)
	makeDataset(t, refs, 4, 16) // same names: strict pairs
	for _, e := range mustGlob(t, filepath.Join(refs, "*.txt")) {
		os.Remove(e)
	}
	dl, _ := json.Marshal([]map[string]any{
		{"id": "edited", "type": "local", "dataset_type": "image", "instance_data_dir": imgs, "caption_strategy": "textfile",
			"resolution": 16, "resolution_type": "pixel", "crop": false, "conditioning_data": "reference"},
		{"id": "reference", "type": "local", "dataset_type": "conditioning", "conditioning_type": "reference_strict",
			"instance_data_dir": refs, "caption_strategy": "textfile", "resolution": 16, "resolution_type": "pixel", "crop": false},
		{"id": "text", "type": "memory", "dataset_type": "text_embeds", "default": true},
	})
	out := filepath.Join(dir, "out")
	cfg := baseConfig(out, imgs)
	cfg["--data_backend_config"] = string(dl)
	evs := runJob(t, cfg, "completed")
	ls := losses(t, evs)
	if len(ls) == 0 {
		t.Fatal("no losses")
	}
	for _, l := range ls {
		if math.IsNaN(l) || math.IsInf(l, 0) {
			t.Fatalf("loss %v", l)
		}
	}
	f, err := safetensors.Open(filepath.Join(out, "transformer", "diffusion_pytorch_model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, ok := f.Info("cond_embed"); !ok {
		t.Fatal("the saved model has no cond_embed")
	}
}

func mustGlob(t *testing.T, pattern string) []string {
	t.Helper()
	m, err := filepath.Glob(pattern)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
