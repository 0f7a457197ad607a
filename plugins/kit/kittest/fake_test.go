package kittest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"simpletuner/plugins"
)

// TestCheckpointsAndResume: the checkpoints the fake saves are what it resumes from: the
// newest complete one (guard file present), never a folder without its guard file or a
// name that is no checkpoint.
func TestCheckpointsAndResume(t *testing.T) {
	dir := t.TempDir()
	if got := latestCheckpoint(dir); got != 0 {
		t.Fatalf("empty dir: latest %d", got)
	}
	if got := latestCheckpoint(filepath.Join(dir, "missing")); got != 0 {
		t.Fatalf("missing dir: latest %d", got)
	}
	for _, step := range []int{5, 10} {
		if err := saveCheckpoint(dir, step); err != nil {
			t.Fatal(err)
		}
	}
	// Newer, but incomplete or not a checkpoint: ignored.
	os.MkdirAll(filepath.Join(dir, plugins.CheckpointName(15, false)), 0o755)
	os.MkdirAll(filepath.Join(dir, "checkpoint-020"), 0o755)
	if got := latestCheckpoint(dir); got != 10 {
		t.Fatalf("latest %d, want 10", got)
	}
	b, err := os.ReadFile(filepath.Join(dir, plugins.CheckpointName(10, false), plugins.CheckpointStateFile))
	var st map[string]any
	if err != nil || json.Unmarshal(b, &st) != nil || st["global_step"] != float64(10) {
		t.Fatalf("training state %s: %v", b, err)
	}
	for _, tc := range []struct {
		cfg            string
		outDir, resume string
	}{
		{`{"--output_dir":"/o","--resume_from_checkpoint":"latest"}`, "/o", "latest"},
		{`{"--output_dir":"/o"}`, "/o", ""},
		{`not json`, "", ""},
	} {
		o, r := outputSettings(json.RawMessage(tc.cfg))
		if o != tc.outDir || r != tc.resume {
			t.Errorf("outputSettings(%s) = %q, %q", tc.cfg, o, r)
		}
	}
}
