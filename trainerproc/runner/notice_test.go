package runner

import (
	"path/filepath"
	"strings"
	"testing"

	"simpletuner/plugins"
)

// TestResumeNoticesSayCheckpointOnce: resuming with another seed and learning rate warns
// about both, and a notice read as its title and message together (as `simpletuner
// train` and `jobs logs` show it) names the checkpoint once, not "checkpoint checkpoint".
func TestResumeNoticesSayCheckpointOnce(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	makeDataset(t, dataDir, 4, 16)
	cfg := baseConfig(filepath.Join(t.TempDir(), "out"), dataDir)
	cfg["--max_train_steps"] = 2
	cfg["--checkpoint_step_interval"] = 2
	runJob(t, cfg, plugins.StateCompleted)
	cfg["--max_train_steps"] = 3
	cfg["--learning_rate"] = 2e-3
	cfg["--seed"] = 8
	evs := runJob(t, cfg, plugins.StateCompleted)
	want := map[string]string{
		"Learning-rate schedule changed since the checkpoint": "saved with constant lr=0.001 warmup=0 total=2, now constant lr=0.002 warmup=0 total=3",
		"Seed changed since the checkpoint":                   "saved with seed 7, now 8: the continuation is not identical",
	}
	for _, e := range eventsOf(evs, "notification") {
		if strings.Contains(e.Title+" "+e.Message, "checkpoint checkpoint") || strings.Contains(e.Title+": "+e.Message, "checkpoint: checkpoint") {
			t.Errorf("notice says checkpoint twice: %q %q", e.Title, e.Message)
		}
		if msg, ok := want[e.Title]; ok {
			if e.Message != msg {
				t.Errorf("%s: message %q, want %q", e.Title, e.Message, msg)
			}
			delete(want, e.Title)
		}
	}
	for title := range want {
		t.Errorf("no notice %q:\n%s", title, tail(eventsOf(evs, "notification"), 5))
	}
}
