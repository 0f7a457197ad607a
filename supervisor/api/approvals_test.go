package api

import (
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"simpletuner/options"
	"simpletuner/store"
	"simpletuner/supervisor/gpu"
	"simpletuner/supervisor/jobs"
	"simpletuner/supervisor/training"
)

// TestApprovalRoutes: who sees which approval requests, the filters, approve and reject
// with their errors, and the (empty) rules, in SimpleTuner's shapes.
func TestApprovalRoutes(t *testing.T) {
	h := newHarness(t, Config{})
	_, adminKey := h.setup()
	lead := h.createUser(adminKey, "lead", "lead")
	r1 := h.createUser(adminKey, "res1", "researcher")
	var me userBody
	h.do(req{method: "GET", path: "/api/users/me", cookie: r1}).json(t, &me)

	log := slog.New(slog.DiscardHandler)
	alloc := gpu.NewAllocator(gpu.NewFake(), gpu.Limits{})
	dir := t.TempDir()
	jm, err := jobs.New(jobs.Config{JobsDir: filepath.Join(dir, "jobs"), RunDir: filepath.Join(dir, "run")}, h.db, alloc, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(jm.Close)
	h.srv.cfg.Jobs, h.srv.cfg.GPUs = jm, alloc
	h.srv.cfg.Training = training.New(options.Default(), nil, jm, dir, log)
	now := time.Now().UTC()
	pending := func() *store.Approval {
		return &store.Approval{Status: jobs.ApprovalPending, Reason: submittedForApproval, RequestedAt: now}
	}
	mine := &store.Job{ID: "mine", OwnerID: me.ID, Owner: "res1", EnvName: "demo", Status: jobs.StatusPendingApproval, Approval: pending(), CreatedAt: now}
	theirs := &store.Job{ID: "theirs", OwnerID: 99, Owner: "x", EnvName: "other", Status: jobs.StatusPendingApproval, Approval: pending(), CreatedAt: now}
	plain := &store.Job{ID: "plain", OwnerID: me.ID, Status: jobs.StatusCompleted, CreatedAt: now}
	for _, j := range []*store.Job{mine, theirs, plain} {
		if err := h.db.Jobs().Create(j); err != nil {
			t.Fatal(err)
		}
	}
	list := func(q req) approvalsBody {
		t.Helper()
		q.method = "GET"
		res := h.do(q)
		var b approvalsBody
		res.json(t, &b)
		if res.code != 200 {
			t.Fatalf("GET %s: %d %s", q.path, res.code, res.body)
		}
		return b
	}
	ids := func(b approvalsBody) string {
		var out []string
		for _, a := range b.Approvals {
			out = append(out, a.JobID+":"+a.Status)
		}
		return strings.Join(out, ",")
	}

	if b := list(req{path: "/api/approvals?limit=50", cookie: r1}); ids(b) != "mine:pending" || b.PendingCount != 1 {
		t.Errorf("researcher sees %q (pending %d), want only their own", ids(b), b.PendingCount)
	}
	b := list(req{path: "/api/approvals?status=pending&limit=50", cookie: lead})
	if ids(b) != "theirs:pending,mine:pending" || b.PendingCount != 2 || len(b.Requests) != 2 {
		t.Fatalf("lead sees %q (pending %d), want both, newest first", ids(b), b.PendingCount)
	}
	a := b.Approvals[1]
	if a.ID != mine.Seq || a.ConfigName != "demo" || a.RequestedAt == "" || a.Reason != submittedForApproval || a.UserID != me.ID || a.JobStatus != jobs.StatusPendingApproval {
		t.Errorf("approval fields: %+v", a)
	}
	if b := list(req{path: "/api/approvals?limit=1&offset=1", cookie: lead}); ids(b) != "mine:pending" || b.Total != 2 {
		t.Errorf("limit/offset: %q total %d", ids(b), b.Total)
	}

	for _, tc := range []struct {
		q    req
		code int
		want string
	}{
		{req{method: "GET", path: "/api/approvals?status=waiting", cookie: lead}, 422, "one of pending, approved, rejected, cancelled"},
		{req{method: "GET", path: "/api/approvals?limit=0", cookie: lead}, 422, "from 1 to 200"},
		{req{method: "POST", path: "/api/approvals/" + itoa(mine.Seq) + "/approve", cookie: r1}, 403, "admin.approve"},
		{req{method: "GET", path: "/api/approvals/rules", cookie: r1}, 403, "admin.approve"},
		{req{method: "POST", path: "/api/approvals/" + itoa(theirs.Seq) + "/reject", cookie: lead}, 400, "Rejection reason is required"},
		{req{method: "POST", path: "/api/approvals/" + itoa(theirs.Seq) + "/reject", cookie: lead, body: map[string]any{"reason": " "}}, 400, "Rejection reason is required"},
		{req{method: "POST", path: "/api/approvals/999/approve", cookie: lead}, 404, "Approval request not found: 999"},
		{req{method: "POST", path: "/api/approvals/" + itoa(plain.Seq) + "/approve", cookie: lead}, 404, "Approval request not found"},
	} {
		res := h.do(tc.q)
		if res.code != tc.code || !strings.Contains(string(res.body), tc.want) {
			t.Errorf("%s %s: %d %s, want %d with %q", tc.q.method, tc.q.path, res.code, res.body, tc.code, tc.want)
		}
	}

	res := h.do(req{method: "POST", path: "/api/approvals/requests/" + itoa(theirs.Seq) + "/reject", cookie: lead, body: map[string]any{"reason": "too big"}})
	var rv reviewBody
	res.json(t, &rv)
	if res.code != 200 || !rv.Success || rv.JobID != "theirs" || rv.Status != jobs.ApprovalRejected || rv.JobStatus != jobs.StatusCancelled || rv.Reason != "too big" {
		t.Fatalf("reject: %d %s", res.code, res.body)
	}
	if j, _ := jm.Get("theirs"); j.Status != jobs.StatusCancelled || !strings.Contains(j.Error, "too big") {
		t.Errorf("rejected job: %+v", j)
	}
	if res := h.do(req{method: "POST", path: "/api/approvals/" + itoa(theirs.Seq) + "/approve", cookie: lead}); res.code != http.StatusConflict || !strings.Contains(res.detail(), "is rejected, not pending") {
		t.Errorf("approve a rejected request: %d %s", res.code, res.body)
	}

	res = h.do(req{method: "POST", path: "/api/approvals/" + itoa(mine.Seq) + "/approve", cookie: lead})
	res.json(t, &rv)
	if res.code != 200 || !rv.Success || rv.JobID != "mine" || rv.Status != jobs.ApprovalApproved || rv.JobStatus == jobs.StatusPendingApproval {
		t.Fatalf("approve: %d %s", res.code, res.body)
	}
	if b := list(req{path: "/api/approvals/requests?status=rejected", cookie: lead}); ids(b) != "theirs:rejected" || b.PendingCount != 0 {
		t.Errorf("rejected filter: %q pending %d", ids(b), b.PendingCount)
	}
	if b := list(req{path: "/api/approvals?status=approved", cookie: r1}); len(b.Approvals) != 1 || b.Approvals[0].Reviewer == nil || *b.Approvals[0].Reviewer != "lead" {
		t.Errorf("approved, seen by its owner: %+v", b.Approvals)
	}

	res = h.do(req{method: "GET", path: "/api/approvals/rules", cookie: lead})
	if res.code != 200 || strings.TrimSpace(string(res.body)) != `{"rules":[]}` {
		t.Errorf("rules: %d %s", res.code, res.body)
	}
}
