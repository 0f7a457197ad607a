package api

import (
	"bufio"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"simpletuner/options"
	"simpletuner/plugins"
	"simpletuner/store"
	"simpletuner/supervisor/gpu"
	"simpletuner/supervisor/jobs"
	"simpletuner/supervisor/training"
)

// cloudJobsHarness is an API harness with a job manager (not started: jobs stay as the
// test stores them) and three jobs: the researcher's completed "mine" (with a trainer
// log) and queued "mine-q", and another user's running "theirs".
func cloudJobsHarness(t *testing.T) (h *harness, adminKey, research, jobsDir string) {
	h = newHarness(t, Config{})
	_, adminKey = h.setup()
	research = h.createUser(adminKey, "research", "researcher")
	var me userBody
	h.do(req{method: "GET", path: "/api/users/me", cookie: research}).json(t, &me)
	log := slog.New(slog.DiscardHandler)
	alloc := gpu.NewAllocator(gpu.NewFake(), gpu.Limits{})
	dir := t.TempDir()
	jobsDir = filepath.Join(dir, "jobs")
	jm, err := jobs.New(jobs.Config{JobsDir: jobsDir, RunDir: filepath.Join(dir, "run")}, h.db, alloc, log)
	if err != nil {
		t.Fatal(err)
	}
	h.srv.cfg.Jobs, h.srv.cfg.GPUs = jm, alloc
	h.srv.cfg.Training = training.New(options.Default(), nil, jm, dir, log)
	start := time.Now().Add(-90 * time.Second)
	end := start.Add(75 * time.Second)
	for _, j := range []*store.Job{
		{ID: "mine", OwnerID: me.ID, Owner: "research", EnvName: "my-env", Status: jobs.StatusCompleted, CreatedAt: start, StartedAt: &start, FinishedAt: &end,
			Config: []byte(`{"--tracker_run_name":"run-1"}`), JobDir: filepath.Join(jobsDir, "mine")},
		{ID: "theirs", OwnerID: 99, Owner: "admin", EnvName: "their-env", Status: jobs.StatusRunning, CreatedAt: start, StartedAt: &start, JobDir: filepath.Join(jobsDir, "theirs")},
		{ID: "mine-q", OwnerID: me.ID, Owner: "research", EnvName: "my-env", Status: jobs.StatusQueued, CreatedAt: time.Now()},
	} {
		if err := h.db.Jobs().Create(j); err != nil {
			t.Fatal(err)
		}
		if j.JobDir != "" {
			if err := os.MkdirAll(j.JobDir, 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := os.WriteFile(filepath.Join(jobsDir, "mine", plugins.LogFile), []byte("loading model\nstep 1 loss 0.5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return h, adminKey, research, jobsDir
}

func TestCloudJobsListAndGet(t *testing.T) {
	h, adminKey, research, _ := cloudJobsHarness(t)
	var l cloudJobListBody
	res := h.do(req{method: "GET", path: "/api/cloud/jobs?limit=20", cookie: research})
	res.json(t, &l)
	if res.code != 200 || l.Total != 2 || len(l.Jobs) != 2 || l.Jobs[0].JobID != "mine-q" || l.Jobs[1].JobID != "mine" {
		t.Fatalf("researcher's list: %d %s", res.code, res.body)
	}
	mine := l.Jobs[1]
	if mine.ConfigName == nil || *mine.ConfigName != "my-env" || mine.Metadata["run_name"] != "run-1" || mine.DurationSeconds == nil ||
		*mine.DurationSeconds != 75 || !mine.IsTerminal || mine.IsActive || mine.JobType != "local" || mine.FinishedAt == nil || mine.CompletedAt == nil {
		t.Errorf("job fields: %+v", mine)
	}
	if q := l.Jobs[0]; q.QueuePosition == nil || *q.QueuePosition != 1 || q.DurationSeconds != nil || !q.IsActive {
		t.Errorf("queued job: %+v", q)
	}
	h.do(req{method: "GET", path: "/api/cloud/jobs?status=running&limit=500&offset=0", key: adminKey}).json(t, &l)
	if l.Total != 1 || l.Jobs[0].JobID != "theirs" {
		t.Errorf("admin, status=running: %+v", l)
	}
	h.do(req{method: "GET", path: "/api/cloud/jobs?limit=1&offset=1", key: adminKey}).json(t, &l)
	if l.Total != 3 || len(l.Jobs) != 1 || l.Jobs[0].JobID != "theirs" {
		t.Errorf("admin, second page of one: %+v", l)
	}
	h.do(req{method: "GET", path: "/api/cloud/jobs?job_type=cloud", key: adminKey}).json(t, &l)
	if l.Total != 0 || len(l.Jobs) != 0 {
		t.Errorf("job_type=cloud: %+v", l)
	}
	for path, code := range map[string]int{"/api/cloud/jobs?limit=0": 422, "/api/cloud/jobs?limit=501": 422, "/api/cloud/jobs?offset=-1": 422,
		"/api/cloud/jobs?job_type=gpu": 400} {
		if res := h.do(req{method: "GET", path: path, key: adminKey}); res.code != code || res.detail() == "" {
			t.Errorf("%s: %d %s, want %d", path, res.code, res.body, code)
		}
	}
	var one cloudJobOne
	res = h.do(req{method: "GET", path: "/api/cloud/jobs/mine", cookie: research})
	res.json(t, &one)
	if res.code != 200 || one.Job.JobID != "mine" || one.Job.Status != "completed" {
		t.Errorf("get: %d %s", res.code, res.body)
	}
	if res := h.do(req{method: "GET", path: "/api/cloud/jobs/theirs", cookie: research}); res.code != 404 || res.detail() != "Job not found" {
		t.Errorf("another user's job: %d %s", res.code, res.body)
	}
}

func TestCloudJobsLogsCancelDelete(t *testing.T) {
	h, adminKey, research, jobsDir := cloudJobsHarness(t)
	var logs cloudJobLogsBody
	h.do(req{method: "GET", path: "/api/cloud/jobs/mine/logs", cookie: research}).json(t, &logs)
	if logs.Logs != "loading model\nstep 1 loss 0.5\n" {
		t.Errorf("logs: %q", logs.Logs)
	}
	h.do(req{method: "GET", path: "/api/cloud/jobs/mine-q/logs", cookie: research}).json(t, &logs)
	if logs.Logs != "" {
		t.Errorf("logs of a job never launched: %q", logs.Logs)
	}
	if res := h.do(req{method: "GET", path: "/api/cloud/jobs/theirs/logs", cookie: research}); res.code != 404 {
		t.Errorf("another user's logs: %d", res.code)
	}

	var c cloudCancelBody
	res := h.do(req{method: "POST", path: "/api/cloud/jobs/mine-q/cancel", cookie: research})
	res.json(t, &c)
	if res.code != 200 || !c.Success || c.Status != "cancelled" {
		t.Errorf("cancel queued: %d %s", res.code, res.body)
	}
	if res := h.do(req{method: "POST", path: "/api/cloud/jobs/mine/cancel", cookie: research}); res.code != 409 {
		t.Errorf("cancel an ended job: %d %s", res.code, res.body)
	}
	if res := h.do(req{method: "POST", path: "/api/cloud/jobs/theirs/cancel", cookie: research}); res.code != 404 {
		t.Errorf("cancel another user's job: %d %s", res.code, res.body)
	}

	res = h.do(req{method: "DELETE", path: "/api/cloud/jobs/theirs", key: adminKey})
	if res.code != 400 || !strings.Contains(res.detail(), "Cancel it first") {
		t.Errorf("delete a running job: %d %s", res.code, res.body)
	}
	if res := h.do(req{method: "DELETE", path: "/api/cloud/jobs/theirs", cookie: research}); res.code != 404 {
		t.Errorf("researcher deletes another user's job: %d %s", res.code, res.body)
	}
	var d successJobBody
	res = h.do(req{method: "DELETE", path: "/api/cloud/jobs/mine", cookie: research})
	res.json(t, &d)
	if res.code != 200 || !d.Success || d.JobID != "mine" {
		t.Fatalf("delete: %d %s", res.code, res.body)
	}
	if _, err := os.Stat(filepath.Join(jobsDir, "mine")); !os.IsNotExist(err) {
		t.Errorf("job directory left behind: %v", err)
	}
	if res := h.do(req{method: "GET", path: "/api/jobs/mine", cookie: research}); res.code != 404 {
		t.Errorf("deleted job still served: %d", res.code)
	}
	if res := h.do(req{method: "DELETE", path: "/api/cloud/jobs/mine", cookie: research}); res.code != 404 {
		t.Errorf("delete twice: %d", res.code)
	}
}

// TestCloudJobLogStream follows a running job: the log so far, a line written while the
// stream is open, then "event: done" with the final status once the job ends.
func TestCloudJobLogStream(t *testing.T) {
	h, adminKey, _, jobsDir := cloudJobsHarness(t)
	logFile := filepath.Join(jobsDir, "theirs", plugins.LogFile)
	if err := os.WriteFile(logFile, []byte("first line\npart"), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h.srv.Handler())
	defer srv.Close()
	rq, _ := http.NewRequest("GET", srv.URL+"/api/cloud/jobs/theirs/logs/stream", nil)
	rq.Header.Set("X-API-Key", adminKey)
	rq.Header.Set("Accept", "text/event-stream")
	res, err := http.DefaultClient.Do(rq)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("stream: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	sc := bufio.NewScanner(res.Body)
	next := func() string {
		for sc.Scan() {
			if l := sc.Text(); l != "" && !strings.HasPrefix(l, ":") {
				return l
			}
		}
		t.Fatalf("stream ended early: %v", sc.Err())
		return ""
	}
	if l := next(); l != "data: first line" {
		t.Fatalf("first event %q", l)
	}
	f, err := os.OpenFile(logFile, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("ial line\nlast words")
	f.Close()
	if l := next(); l != "data: partial line" {
		t.Fatalf("followed line %q", l)
	}
	if _, err := h.db.Jobs().Update("theirs", func(j *store.Job) error { j.Status = jobs.StatusFailed; return nil }); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"data: last words", "event: done", "data: failed"} {
		if l := next(); l != want {
			t.Fatalf("got %q, want %q", l, want)
		}
	}
	if r := h.do(req{method: "GET", path: "/api/cloud/jobs/nope/logs/stream", key: adminKey}); r.code != 404 {
		t.Errorf("stream of a missing job: %d", r.code)
	}
}

// TestCloudJobsSpellWaitingForApprovalAsPending: a job waiting for approval is "pending" in
// the original's job records (its client knows no other word for it), and status=pending
// finds it.
func TestCloudJobsSpellWaitingForApprovalAsPending(t *testing.T) {
	h, adminKey, _, _ := cloudJobsHarness(t)
	if err := h.db.Jobs().Create(&store.Job{ID: "waits", OwnerID: 99, Owner: "admin", EnvName: "e", Status: jobs.StatusPendingApproval, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	var l cloudJobListBody
	h.do(req{method: "GET", path: "/api/cloud/jobs?status=pending", key: adminKey}).json(t, &l)
	if l.Total != 1 || l.Jobs[0].JobID != "waits" || l.Jobs[0].Status != "pending" {
		t.Fatalf("status=pending: %+v", l)
	}
	var one cloudJobOne
	h.do(req{method: "GET", path: "/api/cloud/jobs/waits", key: adminKey}).json(t, &one)
	if one.Job.Status != "pending" {
		t.Fatalf("one job: %+v", one.Job)
	}
}
