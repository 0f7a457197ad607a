package slurm

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"simpletuner/plugins"
	"simpletuner/store"
	"simpletuner/supervisor/jobs"
	"simpletuner/supervisor/slurm/slurmtest"
)

// waitState asks Slurm about job id until ok says yes.
func waitState(t *testing.T, d *Driver, id string, ok func(JobInfo) bool) JobInfo {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last JobInfo
	for time.Now().Before(deadline) {
		jobs, err := d.Query(context.Background(), []string{id})
		if err != nil {
			t.Fatal(err)
		}
		if last = jobs[id]; ok(last) {
			return last
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("Slurm job %s never got there; last %+v", id, last)
	return last
}

func state(s string) func(JobInfo) bool { return func(i JobInfo) bool { return i.State == s } }

// TestRealSlurm brings up a real one-node Slurm with two fake GPUs and runs the driver
// and the executor against it.
func TestRealSlurm(t *testing.T) {
	dir, env := slurmtest.Up(t)
	env = CommandEnv(os.Environ(), env...)
	t.Run("driver", func(t *testing.T) { testRealDriver(t, dir, env) })
	t.Run("executor", func(t *testing.T) { testRealExecutor(t, dir, env) })
}

// testRealDriver: a GPU job runs with CUDA_VISIBLE_DEVICES and completes, one waiting for
// GPUs is PENDING (Resources) and later fails with its exit code, one is found by name
// signalled (scancel --full reaches the batch script) and cancelled. The jobs that need no login environment skip it (--export=ALL, fast);
// the failing one starts as production jobs do (--export=NONE).
func testRealDriver(t *testing.T, dir string, env []string) {
	d := NewDriver(ExecRunner{Env: env})
	fast := []string{"--export=ALL"}
	ctx := context.Background()
	release := filepath.Join(dir, "release-a")

	a, err := d.Submit(ctx, SubmitSpec{JobName: "simpletuner-a", GPUs: 2, Output: filepath.Join(dir, "out", "slurm-%j.out"), ExtraArgs: fast,
		Script: "#!/bin/sh\necho cvd=$CUDA_VISIBLE_DEVICES\nwhile [ ! -e " + release + " ]; do sleep 0.05; done\n"})
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, d, a, state("RUNNING"))
	outA := filepath.Join(dir, "out", "slurm-"+a+".out")
	waitFile(t, outA, "cvd=0,1\n")

	// A CPU job runs beside job a, is found by its name, signalled (scancel --full reaches
	// the batch script) and cancelled.
	outC := filepath.Join(dir, "out", "c.out")
	c, err := d.Submit(ctx, SubmitSpec{JobName: "simpletuner-c", Output: outC, ExtraArgs: fast,
		Script: "#!/bin/sh\ntrap 'echo got USR1' USR1\necho ready\nwhile :; do sleep 0.05; done\n"})
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, d, c, state("RUNNING"))
	if ids, err := d.FindByName(ctx, "simpletuner-c"); err != nil || len(ids) != 1 || ids[0] != c {
		t.Fatalf("FindByName = %v, %v; want [%s]", ids, err, c)
	}
	waitFile(t, outC, "ready\n") // the trap is set
	if err := d.Signal(ctx, c, "USR1"); err != nil {
		t.Fatal(err)
	}
	waitFile(t, outC, "got USR1")
	if err := d.Cancel(ctx, c); err != nil {
		t.Fatal(err)
	}
	waitState(t, d, c, state("CANCELLED"))

	// Both GPUs are taken: a one-GPU job waits for resources.
	b, err := d.Submit(ctx, SubmitSpec{JobName: "simpletuner-b", GPUs: 1, Output: filepath.Join(dir, "out", "slurm-%j.out"),
		Script: "#!/bin/sh\necho cvd=$CUDA_VISIBLE_DEVICES\nexit 3\n"})
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, d, b, func(i JobInfo) bool { return i.State == "PENDING" && i.Reason == "Resources" })

	if err := os.WriteFile(release, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := waitState(t, d, a, state("COMPLETED")); got.ExitCode != "0:0" {
		t.Fatalf("job a: %+v", got)
	}
	got := waitState(t, d, b, func(i JobInfo) bool { return i.Ended() })
	if got.State != "FAILED" || got.Reason != "NonZeroExitCode" || got.ExitCode != "3:0" {
		t.Fatalf("job b: %+v, want FAILED (NonZeroExitCode) exit 3:0", got)
	}
	waitFile(t, filepath.Join(dir, "out", "slurm-"+b+".out"), "cvd=")

	// One squeue answers for all three, ended or not.
	all, err := d.Query(ctx, []string{a, b, c})
	if err != nil || len(all) != 3 || all[c].State != "CANCELLED" {
		t.Fatalf("Query(all) = %+v, %v", all, err)
	}
	if _, err := d.Submit(ctx, SubmitSpec{JobName: "x", Partition: "nosuch", Script: "#!/bin/sh\n"}); err == nil ||
		!strings.Contains(err.Error(), "Invalid partition name specified") {
		t.Fatalf("sbatch into a missing partition: %v; want Slurm's message", err)
	}
}

// testRealExecutor launches through the executor with a stand-in worker command: its
// script really runs with the token, a job whose worker dies ends failed with Slurm's
// reason and the end of its output, and a cancelled one is CANCELLED.
func testRealExecutor(t *testing.T, dir string, env []string) {
	worker := filepath.Join(dir, "fake-worker")
	// The stand-in worker prints what it was given and fails, unless its job is "job-wait".
	if err := os.WriteFile(worker, []byte(`#!/bin/sh
echo "args: $*"
echo "token set: ${SIMPLETUNER_WORKER_TOKEN:+yes}"
echo "extra: $EXTRA"
case "$*" in *"--job job-wait "*) exec sleep 300;; esac
echo "trainer crashed" >&2
exit 7
`), 0o755); err != nil {
		t.Fatal(err)
	}
	w, r := newFakeWorkers(), newFakeReporter()
	e, err := New(Config{WorkerURL: "http://127.0.0.1:1", WorkerCommand: worker, Env: []string{"EXTRA=v 1"},
		Poll: 50 * time.Millisecond, JobsDir: filepath.Join(dir, "jobs"), EndGrace: 100 * time.Millisecond, CancelGrace: time.Hour},
		w, ExecRunner{Env: env}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ctx := context.Background()

	task, err := e.Launch(ctx, &store.Job{ID: "job-fail", NumGPUs: 1}, jobs.Placement{Outcome: jobs.PlaceStart}, r)
	if err != nil {
		t.Fatal(err)
	}
	x, err := task.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if x.State != plugins.StateFailed || !strings.Contains(x.Error, "ended FAILED (NonZeroExitCode, exit 7:0) without a final status; see "+filepath.Join(dir, "jobs", "job-fail", "slurm-")) ||
		!strings.Contains(x.Error, "args: worker --orchestrator-url http://127.0.0.1:1 --job job-fail --name slurm-job-fail --state-dir /tmp/simpletuner-worker-job-fail-") ||
		!strings.Contains(x.Error, "token set: yes\nextra: v 1\ntrainer crashed") {
		t.Fatalf("exit %+v", x)
	}

	task, err = e.Launch(ctx, &store.Job{ID: "job-wait"}, jobs.Placement{Outcome: jobs.PlaceStart}, r)
	if err != nil {
		t.Fatal(err)
	}
	r.waitNote(t, "job-wait: Slurm: RUNNING on n1")
	w.cmdErr = jobs.ErrUnreachable // the stand-in does not register: scancel at once
	if err := task.Command(ctx, plugins.CommandCancel); err != nil {
		t.Fatal(err)
	}
	if x, err := task.Wait(ctx); err != nil || x != (jobs.Exit{State: plugins.StateCancelled}) {
		t.Fatalf("exit %+v, %v", x, err)
	}
	r.waitNote(t, "job-wait: Slurm: CANCELLED")
}

// waitFile waits until the file at path contains want.
func waitFile(t *testing.T, path, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(path); err == nil && strings.Contains(string(b), want) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	b, _ := os.ReadFile(path)
	t.Fatalf("%s never contained %q; it has %q", path, want, b)
}
