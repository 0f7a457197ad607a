package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"simpletuner/internal/procenv"
	"simpletuner/plugins/kit/kittest"
)

// daemonSeqs reads every stored trainer event of a job from the daemon (GET
// /api/jobs/{id}/events, paged by since_seq) and returns their seqs in order.
func daemonSeqs(t *testing.T, c *http.Client, base, id string) []uint64 {
	t.Helper()
	var seqs []uint64
	for since := uint64(0); ; {
		code, r := call(t, c, "GET", fmt.Sprintf("%s/api/jobs/%s/events?since_seq=%d", base, id, since), nil, nil)
		if code != 200 {
			t.Fatalf("job events: %d %v", code, r)
		}
		evs, _ := r["events"].([]any)
		if len(evs) == 0 {
			return seqs
		}
		for _, e := range evs {
			raw, _ := json.Marshal(e)
			var ev struct {
				Seq uint64 `json:"seq"`
			}
			json.Unmarshal(raw, &ev)
			seqs = append(seqs, ev.Seq)
			since = ev.Seq
		}
	}
}

// TestWorkerAgainstRealDaemonKill9 runs a job on a real `simpletuner worker` without GPUs
// (the CPU trainer), dispatched by the real daemon (target auto, which prefers an idle
// worker whose labels match the glob), kills the worker with SIGKILL mid-job and restarts
// it: the trainer is reattached, the job completes on the daemon, and the daemon's
// stored seqs are 1..N with no gap and no double.
func TestWorkerAgainstRealDaemonKill9(t *testing.T) {
	home := t.TempDir()
	writeEnv(t, home, "demo")
	d := start(t, home, fakeTrainerArgs(5, 5)...)
	c := adminClient(t, d)
	code, wr := call(t, c, "POST", d.base+"/api/admin/workers", map[string]any{"name": "box-7", "worker_type": "ephemeral", "labels": map[string]string{"zone": "test"}}, nil)
	token, _ := wr["token"].(string)
	if code != 200 || token == "" {
		t.Fatalf("create worker: %d %v", code, wr)
	}
	whome := filepath.Join(home, "w")
	steps := []string{"--trainer-env", kittest.EnvSteps + "=120", "--trainer-env", kittest.EnvStepMS + "=25"}
	w := startWorker(t, whome, d.base, token, steps...)
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s\nworker:\n%s\ndaemon:\n%s", what, w.stderr, d.stderr)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitFor("the worker idle", func() bool {
		_, r := call(t, c, "GET", d.base+"/api/admin/workers", nil, nil)
		ws, _ := r["workers"].([]any)
		return len(ws) == 1 && ws[0].(map[string]any)["status"] == "idle"
	})
	code, sub := call(t, c, "POST", d.base+"/api/queue/submit", map[string]any{"config_name": "demo", "worker_labels": map[string]string{"zone": "te*"}}, nil)
	id, _ := sub["job_id"].(string)
	if code != 200 || id == "" {
		t.Fatalf("submit: %d %v", code, sub)
	}
	accepted := func() bool { return strings.Contains(w.stderr.String(), `msg="job accepted" job_id=`+id) }
	waitFor("the job on the worker (or ended on the daemon)", func() bool {
		st, _ := jobState(t, c, d.base, id)["status"].(string)
		return accepted() || st == "completed" || st == "failed" || st == "cancelled"
	})
	if !accepted() {
		t.Fatalf("the job did not go to the idle matching worker (it is %v here)\nworker:\n%s", jobState(t, c, d.base, id)["status"], w.stderr)
	}
	waitFor("ten events on the daemon", func() bool { return len(daemonSeqs(t, c, d.base, id)) >= 10 })
	w.cmd.Process.Signal(syscall.SIGKILL)
	<-w.done
	if len(procenv.Find("SIMPLETUNER_JOB_DIR="+whome)) == 0 {
		t.Fatal("killing the worker killed its trainer")
	}
	w2 := startWorker(t, whome, d.base, token, steps...)
	j := waitJob(t, c, d.base, id, 90*time.Second, "completed", "failed", "cancelled")
	if j["status"] != "completed" {
		t.Fatalf("job %v: %v\nworker:\n%s", j["status"], j["error"], w2.stderr)
	}
	if !strings.Contains(w2.stderr.String(), "reattached") {
		t.Fatalf("the restarted worker did not reattach the trainer:\n%s", w2.stderr)
	}
	seqs := daemonSeqs(t, c, d.base, id)
	for i, s := range seqs {
		if s != uint64(i+1) {
			t.Fatalf("daemon seqs are not 1..N: %v", seqs)
		}
	}
	if len(seqs) < 120 {
		t.Fatalf("the daemon stored %d events, want at least one per step (120)", len(seqs))
	}
	select {
	case err := <-w2.done:
		if err != nil {
			t.Fatalf("ephemeral worker exit: %v\n%s", err, w2.stderr)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("the ephemeral worker did not exit after its job\n%s", w2.stderr)
	}
}
