package runner

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"simpletuner/plugins"
	"simpletuner/trainerproc/checkpoint"
	"simpletuner/trainerproc/model"
)

// finalWeights returns the bytes of the final model files of a run.
func finalWeights(t testing.TB, out string, lora bool) [][]byte {
	t.Helper()
	if lora {
		return [][]byte{readFile(t, filepath.Join(out, model.LoRAWeightsFile))}
	}
	return [][]byte{
		readFile(t, filepath.Join(out, model.TransformerDir, model.TransformerWeights)),
		readFile(t, filepath.Join(out, model.TextEncoderDir, model.TextEncoderWeights)),
	}
}

func sameWeights(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// resumeCases are the configurations whose continuation must be bit-identical: a full
// fine-tune with gradient accumulation across epoch boundaries, warm-up and cosine decay, and
// LoRA with dropout (which draws from the noise stream) on adamw_bf16 (stochastic rounding).
func resumeCases(out, dataDir string) map[string]map[string]any {
	full := baseConfig(out, dataDir)
	full["--gradient_accumulation_steps"] = 3 // 4 batches per epoch: steps of 3 and 1 micro-batches
	full["--lr_scheduler"] = "cosine"
	full["--lr_warmup_steps"] = 2
	full["--checkpoint_step_interval"] = 3
	full["--max_grad_norm"] = 0.5
	lora := baseConfig(out, dataDir)
	lora["--model_type"] = "lora"
	lora["--lora_rank"] = 4
	lora["--lora_dropout"] = 0.1
	lora["--optimizer"] = "adamw_bf16"
	lora["--learning_rate"] = 1e-2
	lora["--checkpoint_step_interval"] = 3
	return map[string]map[string]any{"full": full, "lora": lora}
}

// TestResumeBitIdentical: N steps straight equal K steps + resume + N−K steps, bit for bit,
// comparing the final weights files.
func TestResumeBitIdentical(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	makeDataset(t, dataDir, 8, 16)
	for name, cfgTmpl := range resumeCases("", dataDir) {
		t.Run(name, func(t *testing.T) {
			lora := name == "lora"
			straight := filepath.Join(t.TempDir(), "straight")
			cfg := clone(cfgTmpl)
			cfg["--output_dir"] = straight
			evs := runJob(t, cfg, plugins.StateCompleted)
			want := finalWeights(t, straight, lora)
			if cks := eventsOf(evs, "training.checkpoint"); len(cks) != 2 {
				t.Fatalf("%d checkpoint events, want 2 (steps 3 and 6)", len(cks))
			}
			// A second straight run is identical too (determinism).
			again := filepath.Join(t.TempDir(), "again")
			cfg["--output_dir"] = again
			runJob(t, cfg, plugins.StateCompleted)
			if !sameWeights(want, finalWeights(t, again, lora)) {
				t.Fatal("two straight runs with the same seed differ")
			}
			for _, k := range []int{3, 6} {
				resumed := filepath.Join(t.TempDir(), "resumed")
				name := plugins.CheckpointName(k, false)
				copyDir(t, filepath.Join(straight, name), filepath.Join(resumed, name))
				cfg["--output_dir"] = resumed
				evs := runJob(t, cfg, plugins.StateCompleted)
				if !hasStage(t, evs, "init_resume_checkpoint", "Resumed from global_step") {
					t.Fatalf("K=%d: no resume stage event", k)
				}
				if got := len(eventsOf(evs, "training.progress")); got != 8-k {
					t.Fatalf("K=%d: %d steps after resume, want %d", k, got, 8-k)
				}
				if !sameWeights(want, finalWeights(t, resumed, lora)) {
					t.Fatalf("K=%d: resumed run's final weights differ from the straight run", k)
				}
			}
		})
	}
}

func hasStage(t testing.TB, evs []plugins.Event, key, msgPrefix string) bool {
	for _, e := range eventsOf(evs, "lifecycle.stage") {
		st, _ := dataOf(t, e)["stage"].(map[string]any)
		if st["key"] == key && strings.HasPrefix(e.Message, msgPrefix) {
			return true
		}
	}
	return false
}

// TestStopCancelAndCorruptResume: a stop saves a checkpoint at the step it lands on and the
// resumed run still ends bit-identical; a cancel saves nothing; a corrupt newest checkpoint
// is skipped with a warning event and the run resumes from the previous one.
func TestStopCancelAndCorruptResume(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	makeDataset(t, dataDir, 8, 16)
	cfg := resumeCases("", dataDir)["full"]
	straight := filepath.Join(t.TempDir(), "straight")
	cfg["--output_dir"] = straight
	runJob(t, cfg, plugins.StateCompleted)
	want := finalWeights(t, straight, false)

	t.Run("stop", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "out")
		cfg := clone(cfg)
		cfg["--output_dir"] = out
		cfg["--checkpoint_step_interval"] = 1000
		j := startJob(t, testRunner(), cfg)
		var once sync.Once
		evs, st := j.wait(t, func(e plugins.Event) {
			if e.Type == "training.progress" {
				once.Do(func() { j.host.Command(t.Context(), plugins.CommandStop) })
			}
		})
		if st.State != plugins.StateStopped {
			t.Fatalf("state %q (%s)", st.State, st.Error)
		}
		cks := eventsOf(evs, "training.checkpoint")
		if len(cks) != 1 {
			t.Fatalf("%d checkpoint events after stop", len(cks))
		}
		step := int(dataOf(t, cks[0])["step"].(float64))
		if step < 1 || step >= 8 {
			t.Fatalf("stopped at step %d", step)
		}
		if _, err := os.Stat(filepath.Join(out, model.TransformerDir)); err == nil {
			t.Fatal("a stopped run wrote the final model")
		}
		runJob(t, cfg, plugins.StateCompleted)
		if !sameWeights(want, finalWeights(t, out, false)) {
			t.Fatalf("stop at step %d + resume differs from the straight run", step)
		}
	})

	t.Run("cancel", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "out")
		cfg := clone(cfg)
		cfg["--output_dir"] = out
		cfg["--checkpoint_step_interval"] = 1000
		j := startJob(t, testRunner(), cfg)
		var once sync.Once
		evs, st := j.wait(t, func(e plugins.Event) {
			if e.Type == "training.progress" {
				once.Do(func() { j.host.Command(t.Context(), plugins.CommandCancel) })
			}
		})
		if st.State != plugins.StateCancelled || len(eventsOf(evs, "training.checkpoint")) != 0 {
			t.Fatalf("state %q, %d checkpoints", st.State, len(eventsOf(evs, "training.checkpoint")))
		}
		if refs, _ := checkpoint.New(out, checkpoint.Options{}).List(); len(refs) != 0 {
			t.Fatalf("cancel left checkpoints %v", refs)
		}
	})

	t.Run("corrupt newest", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "out")
		for _, k := range []int{3, 6} {
			n := plugins.CheckpointName(k, false)
			copyDir(t, filepath.Join(straight, n), filepath.Join(out, n))
		}
		// Truncate the newest checkpoint's weights: its manifest no longer matches.
		w := filepath.Join(out, "checkpoint-6", checkpoint.TransformerWeightsFile)
		if err := os.Truncate(w, 100); err != nil {
			t.Fatal(err)
		}
		cfg := clone(cfg)
		cfg["--output_dir"] = out
		evs := runJob(t, cfg, plugins.StateCompleted)
		warned := false
		for _, e := range eventsOf(evs, "notification") {
			if e.Severity == "warning" && strings.Contains(e.Title, string(checkpoint.WarnInvalidCheckpoint)) {
				warned = true
			}
		}
		if !warned {
			t.Fatalf("no warning event for the corrupt checkpoint:\n%s", tail(eventsOf(evs, "notification"), 5))
		}
		if !hasStage(t, evs, "init_resume_checkpoint", "Resumed from global_step 3") {
			t.Fatal("did not resume from checkpoint-3")
		}
		if _, err := os.Stat(filepath.Join(out, "checkpoint-6.corrupt")); err != nil {
			t.Fatalf("corrupt checkpoint not quarantined: %v", err)
		}
		if !sameWeights(want, finalWeights(t, out, false)) {
			t.Fatal("resume after skipping the corrupt checkpoint differs from the straight run")
		}
	})

	t.Run("by name and path", func(t *testing.T) {
		for _, spec := range []string{"checkpoint-3", "path"} {
			out := filepath.Join(t.TempDir(), "out")
			for _, k := range []int{3, 6} {
				n := plugins.CheckpointName(k, false)
				copyDir(t, filepath.Join(straight, n), filepath.Join(out, n))
			}
			cfg := clone(cfg)
			cfg["--output_dir"] = out
			cfg["--resume_from_checkpoint"] = spec
			if spec == "path" {
				cfg["--resume_from_checkpoint"] = filepath.Join(out, "checkpoint-3")
			}
			evs := runJob(t, cfg, plugins.StateCompleted)
			if !hasStage(t, evs, "init_resume_checkpoint", "Resumed from global_step 3") {
				t.Fatalf("%s: did not resume from checkpoint-3", spec)
			}
			if !sameWeights(want, finalWeights(t, out, false)) {
				t.Fatalf("%s: resumed run differs from the straight run", spec)
			}
		}
		// A named checkpoint that is damaged is an error, not a silent fallback.
		out := filepath.Join(t.TempDir(), "out")
		copyDir(t, filepath.Join(straight, "checkpoint-3"), filepath.Join(out, "checkpoint-3"))
		os.Remove(filepath.Join(out, "checkpoint-3", checkpoint.GuardFile))
		cfg := clone(cfg)
		cfg["--output_dir"] = out
		cfg["--resume_from_checkpoint"] = "checkpoint-3"
		runJob(t, cfg, plugins.StateFailed)
	})

	t.Run("disk full during a checkpoint", func(t *testing.T) {
		// C2: the save fails cleanly, the event says so, training goes on, the next
		// checkpoint works, and the run still ends bit-identical.
		out := filepath.Join(t.TempDir(), "out")
		failing := checkpoint.NewFaultFS(nil, func(op checkpoint.Op) error {
			if op.Kind == checkpoint.OpWrite && strings.Contains(op.Path, "tmp-checkpoint-3") {
				return syscall.ENOSPC
			}
			return nil
		})
		cfg := clone(cfg)
		cfg["--output_dir"] = out
		r := New(Options{Threads: 2, CheckpointFS: failing})
		evs, st := startJob(t, r, cfg).wait(t, nil)
		if st.State != plugins.StateCompleted {
			t.Fatalf("state %q (%s)", st.State, st.Error)
		}
		failed := false
		for _, e := range eventsOf(evs, "notification") {
			if e.Title == "checkpoint_failed" && e.Severity == "error" && strings.Contains(e.Message, "no space") {
				failed = true
			}
		}
		if !failed || !hasStage(t, evs, "checkpoint_save", "Saving checkpoint failed") {
			t.Fatalf("no checkpoint_failed event:\n%s", tail(evs, 10))
		}
		refs, _ := checkpoint.New(out, checkpoint.Options{}).List()
		if len(refs) != 1 || refs[0].Step != 6 {
			t.Fatalf("checkpoints after a failed save: %v", refs)
		}
		entries, _ := os.ReadDir(out)
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), ".tmp-") {
				t.Fatalf("failed save left %s", e.Name())
			}
		}
		if !sameWeights(want, finalWeights(t, out, false)) {
			t.Fatal("a failed checkpoint changed the training result")
		}
	})
}
