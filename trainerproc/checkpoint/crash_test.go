package checkpoint

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"simpletuner/trainerproc/safetensors"
)

var errCrash = errors.New("simulated crash")

// C1, C4, C5: crash a save (including its retention) at every single file-system operation
// in turn: that operation and every later one fail, as if the process had died there, and
// whatever was already done stays on disk. A fresh Manager then runs Cleanup and resume.
// Invariants: no temp or trash dir survives Cleanup, latest always loads without any
// checkpoint being found invalid, it is the old or the new step (never older), and for a
// same-step save the checkpoint is the old content or the new one.
func TestC1CrashAtEveryOperation(t *testing.T) {
	scenarios := []struct {
		name      string
		setup     []int
		save      int
		okSteps   []int
		retention Retention
	}{
		{"new step, keep 1 (crash between deletions)", []int{100, 200}, 300, []int{200, 300}, Retention{TotalLimit: 1}},
		{"same step replaced (C5)", []int{200}, 200, []int{200}, Retention{TotalLimit: 1}},
		{"same step beside an older one", []int{100, 200}, 200, []int{200}, Retention{}},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			root := t.TempDir()
			run := func(dir string, fault func(Op) error) (int, error) {
				setup := New(dir, Options{FS: noSyncFS{}})
				for _, s := range sc.setup {
					mustSave(t, setup, sample(t, s, false, 1))
				}
				ffs := NewFaultFS(noSyncFS{}, fault)
				m := New(dir, Options{FS: ffs, Retention: sc.retention})
				_, err := m.Save(context.Background(), sample(t, sc.save, false, 2))
				return len(ffs.Ops()), err
			}
			total := 0
			if _, err := run(filepath.Join(root, "clean"), func(o Op) error {
				if o.Mutating() {
					total++
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			// Crashing at a read is the same as crashing at the next write, so only the
			// mutating operations are enumerated (in -short mode, every third one).
			stride := 1
			if testing.Short() {
				stride = 3
			}
			var leftovers, landed int
			for k := 0; k <= total; k += stride {
				dir := filepath.Join(root, strconv.Itoa(k))
				n := 0
				_, _ = run(dir, func(o Op) error {
					if !o.Mutating() {
						if n >= k {
							return errCrash
						}
						return nil
					}
					if n >= k {
						return errCrash
					}
					n++
					return nil
				})
				before := entries(t, dir)
				if len(withPrefix(before, tmpPrefix, trashPrefix)) > 0 {
					leftovers++
				}

				var w warnings
				r := New(dir, Options{FS: noSyncFS{}, OnWarning: w.add})
				if _, err := r.Cleanup(); err != nil {
					t.Fatalf("crash at op %d: cleanup: %v", k, err)
				}
				after := entries(t, dir)
				if left := withPrefix(after, tmpPrefix, trashPrefix, "checkpoint-200.corrupt"); len(left) > 0 {
					t.Fatalf("crash at op %d: left after Cleanup: %v", k, after)
				}
				l, err := r.Resume("latest")
				if err != nil {
					t.Fatalf("crash at op %d (entries before cleanup %v): %v", k, before, err)
				}
				if bad := w.of(WarnInvalidCheckpoint); len(bad) > 0 {
					t.Fatalf("crash at op %d: an invalid checkpoint was visible: %v", k, bad)
				}
				if !slices.Contains(sc.okSteps, l.Ref.Step) {
					t.Fatalf("crash at op %d: resumed from %s, want one of %v", k, l.Ref.Name, sc.okSteps)
				}
				if l.Ref.Step == sc.save && l.State.Epoch == 2 {
					landed++
				}
				if l.State.Epoch != 1 && l.State.Epoch != 2 {
					t.Fatalf("crash at op %d: content marker %d", k, l.State.Epoch)
				}
			}
			// The enumeration really did crash mid-save and really did complete saves.
			if leftovers == 0 || landed == 0 {
				t.Fatalf("over %d mutating operations: %d left temp/trash dirs, %d landed the new save", total+1, leftovers, landed)
			}
		})
	}
}

const crashChildEnv = "CHECKPOINT_TEST_CRASH_CHILD_DIR"

// bigSample is a checkpoint of about 2 MB whose first weight equals the step, so that a kill
// lands inside file writes often.
func bigSample(t testing.TB, step int) Checkpoint {
	ck := sample(t, step, false, 0)
	v := make([]float32, 1<<19)
	for i := range v {
		v[i] = float32(step) + float32(i)
	}
	w, err := safetensors.FromFloat32("big", safetensors.F32, []int{len(v)}, v)
	if err != nil {
		t.Fatal(err)
	}
	ck.Tensors = append(ck.Tensors, TensorFile{Path: "big.safetensors", Tensors: []safetensors.Tensor{w}})
	return ck
}

// TestCrashChild is the child half of TestC1Kill9DuringSaves: it resumes from the output
// dir like a restarted trainer and then saves checkpoints (real fsyncs, keep 2) in a loop
// until it is killed, printing each step once its save has returned.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashChildEnv)
	if dir == "" {
		t.Skip("helper process for TestC1Kill9DuringSaves")
	}
	m := New(dir, Options{Retention: Retention{TotalLimit: 2}})
	if _, err := m.Cleanup(); err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	step := 0
	if l, err := m.Resume("latest"); err == nil {
		step = l.Ref.Step
	} else if !errors.Is(err, ErrNotFound) {
		fmt.Println("error", err)
		os.Exit(2)
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		step++
		if _, err := m.Save(context.Background(), bigSample(t, step)); err != nil {
			fmt.Println("error", err)
			os.Exit(3)
		}
		fmt.Printf("saved %d\n", step)
	}
}

// C1: kill -9 the saving process at random moments, several times; every time, resume
// selection finds a complete checkpoint at least as new as the last one reported saved,
// its content is right, and Cleanup removes the temp and trash dirs.
func TestC1Kill9DuringSaves(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	dir := t.TempDir()
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 7))
	t.Logf("seed %d", seed)
	var tmpSeen int
	for round := range 10 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var lastSaved atomic.Int64
		first := make(chan struct{})
		done := make(chan []string)
		go func() {
			var other []string
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				line := sc.Text()
				if s, ok := strings.CutPrefix(line, "saved "); ok {
					n, _ := strconv.Atoi(s)
					if lastSaved.Swap(int64(n)) == 0 {
						close(first)
					}
				} else if strings.HasPrefix(line, "error") {
					other = append(other, line)
				}
			}
			done <- other
		}()
		select {
		case <-first:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			t.Fatalf("round %d: child never saved", round)
		}
		time.Sleep(time.Duration(rng.IntN(80)) * time.Millisecond)
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		if errs := <-done; len(errs) > 0 {
			t.Fatalf("round %d: child failed: %v", round, errs)
		}

		tmpSeen += len(withPrefix(entries(t, dir), tmpPrefix, trashPrefix))
		var w warnings
		m := New(dir, Options{OnWarning: w.add})
		l, err := m.Resume("latest")
		if err != nil {
			t.Fatalf("round %d: %v (entries %v)", round, err, entries(t, dir))
		}
		if bad := w.of(WarnInvalidCheckpoint); len(bad) > 0 {
			t.Fatalf("round %d: invalid checkpoints visible after kill -9: %v", round, bad)
		}
		if int64(l.Ref.Step) < lastSaved.Load() {
			t.Fatalf("round %d: resumed from step %d but step %d was reported saved", round, l.Ref.Step, lastSaved.Load())
		}
		ts, _, err := l.ReadTensors("big.safetensors")
		if err != nil {
			t.Fatal(err)
		}
		if v, _ := ts["big"].Float32(); v[0] != float32(l.Ref.Step) || v[len(v)-1] != float32(l.Ref.Step)+float32(len(v)-1) {
			t.Fatalf("round %d: weights of %s hold step %v", round, l.Ref.Name, v[0])
		}
		if _, err := m.Cleanup(); err != nil {
			t.Fatal(err)
		}
		if left := withPrefix(entries(t, dir), tmpPrefix, trashPrefix); len(left) > 0 {
			t.Fatalf("round %d: Cleanup left %v", round, left)
		}
		t.Logf("round %d: killed after step %d reported, resumed from %s", round, lastSaved.Load(), l.Ref.Name)
	}
	t.Logf("temp/trash dirs found after kills: %d", tmpSeen)
}
