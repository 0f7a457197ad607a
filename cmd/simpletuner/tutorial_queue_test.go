package main

import (
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// The tutorial's queue section and its list of useful endpoints, walked with the real
// daemon and a fake trainer.

// TestTutorialQueueSubmitAnswersRunningAndQueued: /api/queue/submit answers in the
// tutorial's words: running when the job starts at once, queued when the only job slot
// is busy.
func TestTutorialQueueSubmitAnswersRunningAndQueued(t *testing.T) {
	home := t.TempDir()
	writeEnv(t, home, "demo")
	d := start(t, home, fakeTrainerArgs(1000000, 20)...)
	c := adminClient(t, d)
	body := map[string]any{"config_name": "demo", "no_wait": false, "any_gpu": false}
	code, first := call(t, c, "POST", d.base+"/api/queue/submit", body, nil)
	if code != 200 || first["success"] != true || first["status"] != "running" || first["queue_position"] != nil {
		t.Fatalf("first submit: %d %v, want status running", code, first)
	}
	code, second := call(t, c, "POST", d.base+"/api/queue/submit", body, nil)
	if code != 200 || second["success"] != true || second["status"] != "queued" || second["queue_position"] != float64(1) {
		t.Fatalf("submit with the slot busy: %d %v, want status queued at position 1", code, second)
	}
}

// TestTutorialQueueSubmitKeepsWorkerLabels: the tutorial's worker_labels object (label
// name → glob) is accepted and kept on the job, where the job and queue listings show it;
// a pattern that is no glob, or another shape, is refused with what to send.
func TestTutorialQueueSubmitKeepsWorkerLabels(t *testing.T) {
	home := t.TempDir()
	writeEnv(t, home, "demo")
	d := start(t, home, fakeTrainerArgs(1000000, 20)...)
	c := adminClient(t, d)
	labels := map[string]any{"gpu_type": "a100*", "team": "nlp"}
	var ids []string
	for _, target := range []string{"auto", "local"} {
		code, r := call(t, c, "POST", d.base+"/api/queue/submit", map[string]any{"config_name": "demo", "target": target, "worker_labels": labels}, nil)
		id, _ := r["job_id"].(string)
		if code != 200 || r["success"] != true || id == "" {
			t.Fatalf("submit with worker_labels, target %s: %d %v", target, code, r)
		}
		ids = append(ids, id)
		if got := jobState(t, c, d.base, id)["worker_labels"]; !reflect.DeepEqual(got, labels) {
			t.Errorf("GET /api/jobs/%s worker_labels = %v, want %v", id, got, labels)
		}
	}
	_, q := call(t, c, "GET", d.base+"/api/queue", nil, nil)
	entries, _ := q["entries"].([]any)
	if len(entries) != 2 {
		t.Fatalf("GET /api/queue: %v, want the 2 jobs", q)
	}
	for _, e := range entries {
		if e := e.(map[string]any); !reflect.DeepEqual(e["worker_labels"], labels) {
			t.Errorf("GET /api/queue: %s has worker_labels %v, want %v", e["job_id"], e["worker_labels"], labels)
		}
	}
	for _, tc := range []struct {
		labels any
		want   string
	}{
		{map[string]any{"gpu_type": "[a100"}, "not a valid glob"},
		{[]string{"gpu_type=a100"}, `e.g. {\"gpu_type\":\"a100*\"`},
	} {
		code, text, err := doJSON(c, "POST", d.base+"/api/queue/submit", map[string]any{"config_name": "demo", "worker_labels": tc.labels}, nil)
		if err != nil || code != 422 || !strings.Contains(text, tc.want) || !strings.Contains(text, "worker_labels") {
			t.Errorf("worker_labels %v: %d %s %v, want 422 with %q", tc.labels, code, text, err, tc.want)
		}
	}
	if _, list := call(t, c, "GET", d.base+"/api/jobs", nil, nil); list["total"] != float64(len(ids)) {
		t.Errorf("jobs after refused submissions: %v, want the %d accepted", list["total"], len(ids))
	}
}

// TestTutorialCancelledQueuedJobIsNotAnError: a job cancelled while it waited in the
// queue is reported by /api/training/status as cancelled, not as an error with details.
func TestTutorialCancelledQueuedJobIsNotAnError(t *testing.T) {
	home := t.TempDir()
	writeEnv(t, home, "demo")
	d := start(t, home, fakeTrainerArgs(1000000, 20)...)
	c := adminClient(t, d)
	submit := func() string {
		t.Helper()
		code, r := call(t, c, "POST", d.base+"/api/queue/submit", map[string]any{"config_name": "demo"}, nil)
		id, _ := r["job_id"].(string)
		if code != 200 || id == "" {
			t.Fatalf("submit: %d %v", code, r)
		}
		return id
	}
	running := submit()
	waitJob(t, c, d.base, running, 20*time.Second, "running")
	queued := submit()
	if st := jobState(t, c, d.base, queued)["status"]; st != "queued" {
		t.Fatalf("second job is %v, want queued", st)
	}
	if code, r := call(t, c, "POST", d.base+"/api/queue/"+queued+"/cancel", nil, nil); code != 200 {
		t.Fatalf("cancel the queued job: %d %v", code, r)
	}
	if code, r := call(t, c, "POST", d.base+"/api/training/stop", nil, nil); code != 200 {
		t.Fatalf("stop the running job: %d %v", code, r)
	}
	waitJob(t, c, d.base, running, 20*time.Second, "stopped")

	code, st := call(t, c, "GET", d.base+"/api/training/status", nil, nil)
	info, _ := st["job_info"].(map[string]any)
	if code != 200 || st["job_id"] != queued || st["status"] != "cancelled" || info == nil {
		t.Fatalf("status after cancelling the queued job: %d %v, want %s cancelled", code, st, queued)
	}
	if detail, ok := info["status_detail"]; ok {
		t.Fatalf("a cancelled job reports status_detail %v: a cancellation is not an error (%v)", detail, info)
	}
}

// TestTutorialCheckpointsAfterTheJobEnded: POST /api/training/checkpoints with no
// arguments still lists the caller's job's checkpoints once the job has ended, and
// never falls back to another user's job.
func TestTutorialCheckpointsAfterTheJobEnded(t *testing.T) {
	home := t.TempDir()
	d := start(t, home, fakeTrainerArgs(5, 5)...)
	admin := adminClient(t, d)
	if code, r := call(t, admin, "POST", d.base+"/api/users", map[string]any{"email": "research1@example.com", "username": "research1",
		"password": teamPassword, "level_names": []string{"researcher"}}, nil); code != 201 {
		t.Fatalf("create researcher: %d %v", code, r)
	}
	jar, _ := cookiejar.New(nil)
	rs := loginMember(t, d, "research1", &http.Client{Jar: jar, Timeout: 30 * time.Second})

	fields := fastPathFields(t, home)
	id := startJob(t, d, rs.cookie, fields)
	waitJob(t, rs.cookie, d.base, id, 30*time.Second, "completed")
	out := filepath.Join(home, "out", "inline-demo")
	ckpt := filepath.Join(out, "checkpoint-5")
	if err := os.MkdirAll(ckpt, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(ckpt, ".guard"), nil, 0o644)
	os.WriteFile(filepath.Join(ckpt, "training_state.json"), []byte(`{"global_step":5,"epoch":1}`), 0o644)

	code, list := call(t, rs.cookie, "POST", d.base+"/api/training/checkpoints", nil, nil)
	cps, _ := list["checkpoints"].([]any)
	if code != 200 || list["error"] != nil || list["total"] != float64(1) || len(cps) != 1 || fmt.Sprint(cps[0].(map[string]any)["name"]) != "checkpoint-5" {
		t.Fatalf("checkpoints after the job ended: %d %v, want checkpoint-5 of %s", code, list, out)
	}
	if got, _ := filepath.EvalSymlinks(fmt.Sprint(list["output_dir"])); got != mustEval(t, out) {
		t.Errorf("output_dir %v, want %s", list["output_dir"], out)
	}
	// The administrator may see the researcher's job, but a listing without arguments
	// defaults only to the caller's own jobs, and the administrator has none.
	code, list = call(t, admin, "POST", d.base+"/api/training/checkpoints", nil, nil)
	if code != 200 || list["error"] != "No output directory specified" || list["output_dir"] != "" {
		t.Fatalf("admin without jobs: %d %v, want no output directory", code, list)
	}
}

func mustEval(t *testing.T, p string) string {
	t.Helper()
	r, err := filepath.EvalSymlinks(p)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestTutorialDataloaderRegenerates: POST /api/configs/{name}/dataloader with the
// contract's body regenerates an existing dataloader when asked with overwrite, and
// otherwise answers 409 saying how to ask.
func TestTutorialDataloaderRegenerates(t *testing.T) {
	home := t.TempDir()
	d := start(t, home)
	c := adminClient(t, d)
	if code, r := call(t, c, "POST", d.base+"/api/configs/environments", map[string]any{"name": "env1", "model_family": "dit"}, nil); code != 200 {
		t.Fatalf("create environment: %d %v", code, r)
	}
	dl := filepath.Join(home, "config", "env1", "multidatabackend.json")
	if err := os.WriteFile(dl, []byte(`[{"id":"edited-by-hand","type":"local","dataset_type":"image"}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	url := d.base + "/api/configs/env1/dataloader"
	code, r := call(t, c, "POST", url, map[string]any{"path": nil, "include_defaults": true, "overwrite": true}, nil)
	if code != 200 {
		t.Fatalf("regenerate with overwrite: %d %v", code, r)
	}
	b, _ := os.ReadFile(dl)
	if strings.Contains(string(b), "edited-by-hand") || !strings.Contains(string(b), `"env1-images"`) {
		t.Fatalf("dataloader after regenerating: %s", b)
	}
	code, r = call(t, c, "POST", url, map[string]any{"path": nil, "include_defaults": true}, nil)
	if code != 409 || !strings.Contains(fmt.Sprint(r["detail"]), `"overwrite": true`) {
		t.Fatalf("regenerate without asking: %d %v, want 409 that says how to ask", code, r)
	}
}
