package main

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"simpletuner/internal/procenv"
	"simpletuner/plugins/kit/kittest"
	"simpletuner/plugins/workerproto"
	"simpletuner/supervisor/workeragent/agenttest"
)

func TestWorkerHelpAndBadInput(t *testing.T) {
	home := t.TempDir()
	for _, help := range []string{"--help", "-h"} {
		stdout, stderr, code := runCLI(t, home, "", "worker", help)
		if code != 0 || stderr != "" {
			t.Fatalf("worker %s: exit %d, stderr %q", help, code, stderr)
		}
		for _, w := range []string{"Usage: simpletuner worker --orchestrator-url URL --worker-token TOKEN", "--orchestrator-url", "--worker-token",
			"--name", "--persistent", "--labels", "--state-dir", "--trainer", "--trainer-env", "--job ID", "--nvml-library",
			"SIMPLETUNER_ORCHESTRATOR_URL", "SIMPLETUNER_WORKER_TOKEN", "SIMPLETUNER_WORKER_NAME", "SIMPLETUNER_WORKER_PERSISTENT=true",
			"SIMPLETUNER_WORKER_LABELS", "SIMPLETUNER_WORKER_HEARTBEAT"} {
			if !strings.Contains(stdout, w) {
				t.Errorf("worker %s: usage lacks %q", help, w)
			}
		}
	}
	if stdout, _, _ := runCLI(t, home, "", "help"); !strings.Contains(stdout, "simpletuner worker") {
		t.Error("the top-level usage does not list the worker command")
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"worker"}, "--orchestrator-url (or SIMPLETUNER_ORCHESTRATOR_URL) is required"},
		{[]string{"worker", "--orchestrator-url", "http://127.0.0.1:1"}, "--worker-token (or SIMPLETUNER_WORKER_TOKEN) is required"},
		{[]string{"worker", "--orchestrator-url", "http://127.0.0.1:1", "--worker-token", "t", "--labels", "nokey"}, "--labels"},
		{[]string{"worker", "--bogus"}, "-bogus"},
	} {
		_, stderr, code := runCLI(t, home, "", c.args...)
		if code != 2 || !strings.Contains(stderr, c.want) {
			t.Errorf("simpletuner %s: exit %d, stderr %q; want 2 and %q", strings.Join(c.args, " "), code, stderr, c.want)
		}
	}
}

// workerProc is a running `simpletuner worker`.
type workerProc struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan error
}

// startWorker runs `simpletuner worker` against url with the fake trainer; the token
// travels in the environment, as the usage recommends.
func startWorker(t *testing.T, home, url, token string, extra ...string) *workerProc {
	t.Helper()
	args := append([]string{"worker", "--orchestrator-url", url, "--state-dir", filepath.Join(home, "worker"), "--name", "box-7",
		"--labels", "gpu_type=cpu,zone=test", "--trainer", os.Args[0], "--trainer-env", asTrainer + "=1",
		// Never the host's GPUs: the fake trainer is the CPU trainer.
		"--nvml-library", filepath.Join(home, "no-libnvidia-ml.so.1")}, extra...)
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), asDaemon+"=1", "SIMPLETUNER_HOME="+home, "SIMPLETUNER_WORKER_TOKEN="+token,
		"SIMPLETUNER_WORKER_HEARTBEAT=100ms")
	w := &workerProc{cmd: cmd, stderr: &syncBuffer{}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = w.stderr, w.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { w.done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		killTrainersUnder(home)
	})
	return w
}

// waitOrch waits until cond holds, checked at each change of the fake orchestrator.
func waitOrch(t *testing.T, o *agenttest.Orchestrator, w *workerProc, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		ch := o.Changed()
		if cond() {
			return
		}
		select {
		case <-ch:
		case err := <-w.done:
			w.done <- err
			if cond() {
				return
			}
			t.Fatalf("the worker exited (%v) before %s\n%s", err, what, w.stderr)
		case <-deadline:
			t.Fatalf("timed out waiting for %s\n%s", what, w.stderr)
		}
	}
}

// TestWorkerKill9ReattachesAndLosesNoEvents: a worker killed with SIGKILL mid-job leaves
// its trainer running; the restarted worker reattaches it, resumes the upload from the
// orchestrator's seq, and exits (ephemeral) once the final status is accepted. The
// orchestrator ends up with seqs 1..N exactly, and the token is nowhere on disk or in
// the logs.
func TestWorkerKill9ReattachesAndLosesNoEvents(t *testing.T) {
	home := t.TempDir()
	const token = "wt-secret-0a1b2c3d4e5f60718293a4b5c6d7e8f9"
	o := agenttest.New(token)
	defer o.Close()
	steps := []string{"--trainer-env", kittest.EnvSteps + "=120", "--trainer-env", kittest.EnvStepMS + "=25"}
	w := startWorker(t, home, o.URL(), token, steps...)
	waitOrch(t, o, w, "the worker's dispatch stream", func() bool { return o.Streams() > 0 })
	reg := o.Registrations()[0]
	if reg.Name != "box-7" || reg.Labels["zone"] != "test" || reg.GPUInfo.Accelerator != "cpu" || reg.GPUInfo.Count != 0 || reg.Persistent {
		t.Fatalf("registration %+v", reg)
	}
	cfg, _ := json.Marshal(map[string]any{"--output_dir": filepath.Join(home, "out"), "--model_family": "dit"})
	o.Dispatch(workerproto.EventJobSubmit, workerproto.JobSubmit{Type: workerproto.EventJobSubmit, JobID: "job-k9", Config: cfg, ConfigName: "env1"})
	waitOrch(t, o, w, "some events", func() bool { j := o.Job("job-k9"); return j != nil && len(j.Events) >= 10 })
	w.cmd.Process.Signal(syscall.SIGKILL)
	<-w.done
	trainers := procenv.Find("SIMPLETUNER_JOB_DIR=" + home)
	if len(trainers) == 0 {
		t.Fatal("killing the worker killed its trainer")
	}
	before := len(o.Job("job-k9").Events)

	w2 := startWorker(t, home, o.URL(), token, steps...)
	var err error
	select {
	case err = <-w2.done:
	case <-time.After(90 * time.Second):
		t.Fatalf("the restarted worker did not finish the job\n%s", w2.stderr)
	}
	if err != nil {
		t.Fatalf("restarted worker: %v\n%s", err, w2.stderr)
	}
	regs := o.Registrations()
	if last := regs[len(regs)-1]; last.CurrentJobID == nil || *last.CurrentJobID != "job-k9" {
		t.Fatalf("the restarted worker did not name its running job: %+v", last)
	}
	if !strings.Contains(w2.stderr.String(), "reattached") {
		t.Fatalf("the restarted worker did not reattach the trainer:\n%s", w2.stderr)
	}
	j := o.Job("job-k9")
	for i, e := range j.Events {
		if e.Seq != uint64(i+1) {
			t.Fatalf("stored seqs are not 1..N: %s", j.Summary())
		}
	}
	if j.Final == nil || j.Final.Status != "completed" || j.Final.LastSeq != uint64(len(j.Events)) || len(j.Events) <= before {
		t.Fatalf("final %+v; %s", j.Final, j.Summary())
	}
	for _, out := range []string{w.stderr.String(), w2.stderr.String()} {
		if strings.Contains(out, token) {
			t.Fatal("the worker token appears in the worker's log")
		}
	}
	filepath.WalkDir(home, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, []byte(token)) {
			t.Errorf("the worker token is stored in clear in %s", p)
		}
		return nil
	})
}
