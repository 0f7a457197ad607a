package runner

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"simpletuner/plugins"
	"simpletuner/trainerproc/checkpoint"
	"simpletuner/trainerproc/engine/blas"
)

// Environment of the child trainer process the crash test re-executes this binary as.
const (
	envChild    = "RUNNER_TEST_CHILD"
	envChildCfg = "RUNNER_TEST_CONFIG"
	envChildJob = "RUNNER_TEST_JOB_DIR"
)

func TestMain(m *testing.M) {
	if os.Getenv(envChild) == "1" {
		os.Exit(childTrainer())
	}
	os.Exit(m.Run())
}

// childTrainer runs a standalone job whose checkpoint writes are slowed down, so that a
// SIGKILL from the parent lands in the middle of a save.
func childTrainer() int {
	cfg, err := os.ReadFile(os.Getenv(envChildCfg))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	slow := checkpoint.NewFaultFS(nil, func(op checkpoint.Op) error {
		if op.Kind == checkpoint.OpWrite || op.Kind == checkpoint.OpSync {
			time.Sleep(5 * time.Millisecond)
		}
		return nil
	})
	r := New(Options{Threads: 2, BLAS: blas.ChoiceAuto, CheckpointFS: slow})
	st, err := Standalone(context.Background(), r, cfg, os.Getenv(envChildJob), os.Stdout, nil)
	if err != nil || st.State != plugins.StateCompleted {
		fmt.Fprintln(os.Stderr, st.State, st.Error, err)
		return 1
	}
	return 0
}

// TestKill9DuringCheckpointThenResume kills the trainer process (SIGKILL) while it writes its
// second checkpoint, at several points of the save, then resumes: the previous checkpoint (or
// the new one, if it completed) must load, the temp dir of the interrupted save must be
// garbage-collected, and the finished run must equal a run that was never interrupted.
func TestKill9DuringCheckpointThenResume(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns trainer processes")
	}
	dataDir := filepath.Join(t.TempDir(), "data")
	makeDataset(t, dataDir, 8, 16)
	cfg := resumeCases("", dataDir)["full"]
	straight := filepath.Join(t.TempDir(), "straight")
	cfg["--output_dir"] = straight
	runJob(t, cfg, plugins.StateCompleted)
	want := finalWeights(t, straight, false)

	midSave := 0
	t.Cleanup(func() {
		if !t.Failed() && midSave == 0 {
			t.Error("no kill landed inside a save (no temp dir was ever left behind)")
		}
	})
	for _, delay := range []time.Duration{0, 15 * time.Millisecond, 40 * time.Millisecond} {
		t.Run(delay.String(), func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			cfg := clone(cfg)
			cfg["--output_dir"] = out
			raw, _ := json.Marshal(cfg)
			cfgPath := filepath.Join(t.TempDir(), "cfg.json")
			os.WriteFile(cfgPath, raw, 0o644)
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), envChild+"=1", envChildCfg+"="+cfgPath, envChildJob+"="+t.TempDir())
			stdout, _ := cmd.StdoutPipe()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			killed := false
			sc := bufio.NewScanner(stdout)
			sc.Buffer(make([]byte, 1<<20), 1<<24)
			for sc.Scan() {
				var e plugins.Event
				if json.Unmarshal(sc.Bytes(), &e) != nil {
					continue
				}
				if e.Type == "lifecycle.stage" && strings.Contains(e.Message, "Saving checkpoint to") && strings.HasSuffix(e.Message, "checkpoint-6") {
					time.Sleep(delay)
					cmd.Process.Signal(syscall.SIGKILL)
					killed = true
					break
				}
			}
			go func() {
				for sc.Scan() {
				}
			}()
			cmd.Wait()
			if !killed {
				t.Fatal("the child never reached the second checkpoint")
			}
			if _, err := os.Stat(filepath.Join(out, "checkpoint-3", checkpoint.GuardFile)); err != nil {
				t.Fatalf("first checkpoint missing after the kill: %v", err)
			}
			if entries, _ := os.ReadDir(out); true {
				for _, e := range entries {
					if strings.HasPrefix(e.Name(), ".tmp-") {
						midSave++
						t.Logf("killed mid-save: %s left behind", e.Name())
					}
				}
			}
			evs := runJob(t, cfg, plugins.StateCompleted)
			if !hasStage(t, evs, "init_resume_checkpoint", "Resumed from global_step") {
				t.Fatal("the run after the kill did not resume")
			}
			entries, _ := os.ReadDir(out)
			for _, e := range entries {
				if strings.HasPrefix(e.Name(), ".tmp-") || strings.HasPrefix(e.Name(), ".trash-") {
					t.Fatalf("leftover %s after resume", e.Name())
				}
			}
			if !sameWeights(want, finalWeights(t, out, false)) {
				t.Fatal("kill -9 + resume differs from the uninterrupted run")
			}
		})
	}
}
