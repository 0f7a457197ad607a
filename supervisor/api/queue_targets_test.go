package api

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"simpletuner/store"
	"simpletuner/supervisor/jobs"
)

// TestSubmitTarget: the targets POST /api/queue/submit passes on, the one it refuses in
// SimpleTuner's answer, and the 422 for anything else.
func TestSubmitTarget(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		refused  bool
		invalid  bool
	}{
		{in: "", want: jobs.TargetAuto},
		{in: "auto", want: jobs.TargetAuto},
		{in: "local", want: jobs.TargetLocal},
		{in: "worker", want: jobs.TargetWorker},
		{in: "slurm", want: jobs.TargetSlurm},
		{in: "kubeflow", refused: true},
		{in: "Local", invalid: true},
		{in: "cloud", invalid: true},
	} {
		got, refused, err := submitTarget(tc.in)
		if got != tc.want || (refused != nil) != tc.refused || (err != nil) != tc.invalid {
			t.Errorf("submitTarget(%q) = %q, %+v, %v; want %q refused %v invalid %v", tc.in, got, refused, err, tc.want, tc.refused, tc.invalid)
		}
		if refused != nil && (refused.Success || refused.Status != "rejected" || refused.Error == nil || !strings.Contains(*refused.Error, "kubeflow")) {
			t.Errorf("submitTarget(%q) refusal %+v: want success false, status rejected and an error naming the target", tc.in, refused)
		}
	}
}

// TestSubmitRefusesUnknownTargets: kubeflow is answered in SimpleTuner's refusal shape, an
// unknown target is a 422 naming the accepted ones; neither creates a job.
func TestSubmitRefusesUnknownTargets(t *testing.T) {
	h, adminKey, _, _ := cloudJobsHarness(t)
	res := h.do(req{method: "POST", path: "/api/queue/submit", key: adminKey, body: map[string]any{"config_name": "x", "target": "kubeflow"}})
	var sb submitBody
	res.json(t, &sb)
	if res.code != 200 || sb.Success || sb.Status != "rejected" || sb.Error == nil || !strings.Contains(*sb.Error, "use auto, local, worker or slurm") {
		t.Errorf("target kubeflow: %d %s", res.code, res.body)
	}
	res = h.do(req{method: "POST", path: "/api/queue/submit", key: adminKey, body: map[string]any{"config_name": "x", "target": "moon"}})
	if res.code != 422 || !strings.Contains(string(res.body), "target must be one of auto, local, worker, slurm") {
		t.Errorf("target moon: %d %s", res.code, res.body)
	}
	if all, _ := h.db.Jobs().List(); len(all) != 3 {
		t.Errorf("%d jobs after refused submissions, want the harness's 3", len(all))
	}
}

// TestNoExecutorIsA400: a target nothing here serves answers 400 with the executor's
// message (what to set up), without the sentinel's words.
func TestNoExecutorIsA400(t *testing.T) {
	msg := "target=slurm: no Slurm cluster is configured on this server (start it with --slurm-partition …)"
	for _, err := range []error{
		fmt.Errorf("%w: %s", jobs.ErrNoExecutor, msg),
		fmt.Errorf("submit: %w", fmt.Errorf("%w: %s", jobs.ErrNoExecutor, msg)),
		fmt.Errorf("%s: %w", msg, jobs.ErrNoExecutor),
	} {
		rec := httptest.NewRecorder()
		writeError(rec, slog.New(slog.DiscardHandler), httptest.NewRequest("POST", "/api/queue/submit", nil), err)
		if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), `{"detail":"`+msg+`"}`) {
			t.Errorf("%v: %d %s, want 400 with detail %q", err, rec.Code, rec.Body, msg)
		}
	}
}

// TestJobViewsShowPlacement: /api/jobs, /api/jobs/{id}, /api/queue and
// /api/training/status show where each job runs: target, executor, worker_id and note,
// null where there is none; records older than targets read as auto, and those that
// started as local.
func TestJobViewsShowPlacement(t *testing.T) {
	h, adminKey, _, _ := cloudJobsHarness(t)
	now := time.Now()
	for _, j := range []*store.Job{
		{ID: "on-worker", OwnerID: 99, Owner: "admin", Status: jobs.StatusRunning, CreatedAt: now, StartedAt: &now, Target: jobs.TargetAuto, Executor: jobs.KindWorker, WorkerID: "worker-Ab3dE_fG9hI"},
		{ID: "slurm-wait", OwnerID: 99, Owner: "admin", Status: jobs.StatusStarting, CreatedAt: now.Add(time.Second), Target: jobs.TargetSlurm, Executor: jobs.KindSlurm, Note: "Slurm: PENDING (Resources)"},
	} {
		if err := h.db.Jobs().Create(j); err != nil {
			t.Fatal(err)
		}
	}
	type placement struct{ target, executor, workerID, note any }
	want := map[string]placement{
		"on-worker":  {"auto", "worker", "worker-Ab3dE_fG9hI", nil},
		"slurm-wait": {"slurm", "slurm", nil, "Slurm: PENDING (Resources)"},
		"theirs":     {"auto", "local", nil, nil}, // a record from before targets, started
		"mine-q":     {"auto", nil, nil, nil},     // queued: no executor yet
	}
	check := func(where string, m map[string]any) {
		t.Helper()
		id, _ := m["job_id"].(string)
		w, ok := want[id]
		if !ok {
			return
		}
		for _, k := range []string{"target", "executor", "worker_id", "note"} {
			if _, present := m[k]; !present {
				t.Errorf("%s: job %s has no %s", where, id, k)
			}
		}
		if got := (placement{m["target"], m["executor"], m["worker_id"], m["note"]}); got != w {
			t.Errorf("%s: job %s placement %v, want %v", where, id, got, w)
		}
	}
	var list struct{ Jobs []map[string]any }
	h.do(req{method: "GET", path: "/api/jobs", key: adminKey}).json(t, &list)
	var q struct{ Entries []map[string]any }
	h.do(req{method: "GET", path: "/api/queue", key: adminKey}).json(t, &q)
	if len(list.Jobs) < 5 || len(q.Entries) < 4 {
		t.Fatalf("jobs %d, queue entries %d: want all 5 jobs and the 4 not ended", len(list.Jobs), len(q.Entries))
	}
	for _, m := range list.Jobs {
		check("GET /api/jobs", m)
	}
	for _, m := range q.Entries {
		check("GET /api/queue", m)
	}
	for id := range want {
		var one map[string]any
		h.do(req{method: "GET", path: "/api/jobs/" + id, key: adminKey}).json(t, &one)
		check("GET /api/jobs/"+id, one)
	}
	for _, id := range []string{"on-worker", "slurm-wait"} {
		j, err := h.db.Jobs().Get(id)
		if err != nil {
			t.Fatal(err)
		}
		// The status body as JSON, as /api/training/status answers it.
		var st struct {
			JobInfo map[string]any `json:"job_info"`
		}
		rec := httptest.NewRecorder()
		writeJSON(rec, 200, statusOf(j))
		if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
			t.Fatal(err)
		}
		st.JobInfo["job_id"] = id
		check("/api/training/status job_info", st.JobInfo)
	}
}
