package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"simpletuner/plugins"
	"simpletuner/plugins/kit/kittest"
	"simpletuner/store"
	"simpletuner/supervisor/gpu"
)

func TestApprovalTransition(t *testing.T) {
	for _, tc := range []struct {
		name            string
		from            string
		approved        bool
		cancel          bool
		wantJob, wantAp string
		ok              bool
	}{
		{"approve a pending job", StatusPendingApproval, true, false, StatusQueued, ApprovalApproved, true},
		{"reject a pending job", StatusPendingApproval, false, false, StatusCancelled, ApprovalRejected, true},
		{"cancel a pending job", StatusPendingApproval, false, true, StatusCancelled, ApprovalCancelled, true},
		{"approve a queued job", StatusQueued, true, false, StatusQueued, "", false},
		{"reject a running job", StatusRunning, false, false, StatusRunning, "", false},
		{"approve a cancelled job", StatusCancelled, true, false, StatusCancelled, "", false},
		{"approve a completed job", StatusCompleted, true, false, StatusCompleted, "", false},
	} {
		st, ast, ok := ApprovalTransition(tc.from, tc.approved, tc.cancel)
		if st != tc.wantJob || ast != tc.wantAp || ok != tc.ok {
			t.Errorf("%s: got %q %q %v, want %q %q %v", tc.name, st, ast, ok, tc.wantJob, tc.wantAp, tc.ok)
		}
	}
}

func submitForApproval(t *testing.T, m *Manager) *store.Job {
	t.Helper()
	cfg, _ := json.Marshal(map[string]any{"--output_dir": t.TempDir(), "--model_family": "dit"})
	j, err := m.Submit(context.Background(), SubmitRequest{OwnerID: 7, Owner: "t", Config: cfg, GPU: gpu.Request{NumProcesses: 1},
		ForApproval: true, ApprovalReason: "Submitted for approval"})
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// TestPendingJobWaitsSurvivesRestartAndRunsWhenApproved: a job submitted for approval is
// not started on a free machine, is still pending after a daemon restart, and runs once
// approved.
func TestPendingJobWaitsSurvivesRestartAndRunsWhenApproved(t *testing.T) {
	e := newEnv(t, gpu.NewFake())
	m := e.manager(kittest.EnvSteps+"=5", kittest.EnvStepMS+"=5")
	j := submitForApproval(t, m)
	if j.Status != StatusPendingApproval || j.Approval == nil || j.Approval.Status != ApprovalPending {
		t.Fatalf("submitted: %+v", j)
	}
	m.Kick()
	time.Sleep(300 * time.Millisecond)
	if got, _ := m.Get(j.ID); got.Status != StatusPendingApproval || got.StartedAt != nil {
		t.Fatalf("the queue started a pending job: %+v", got)
	}
	if pos := m.QueuePosition(j.ID); pos != 0 {
		t.Fatalf("pending job has queue position %d", pos)
	}
	m.Close()
	m = e.manager(kittest.EnvSteps+"=5", kittest.EnvStepMS+"=5")
	got, err := m.ByApprovalID(j.Seq)
	if err != nil || got.ID != j.ID || got.Status != StatusPendingApproval {
		t.Fatalf("after restart: %+v, %v", got, err)
	}
	done, err := m.Approve(j.ID, Review{ReviewerID: 1, Reviewer: "boss", Notes: "ok"})
	if err != nil {
		t.Fatal(err)
	}
	if done.Approval.Status != ApprovalApproved || done.Approval.Reviewer != "boss" || done.Approval.ReviewedAt == nil {
		t.Fatalf("approval record: %+v", done.Approval)
	}
	waitStatus(t, m, j.ID, 20*time.Second, StatusCompleted)
	if _, err := m.Approve(j.ID, Review{Reviewer: "boss"}); !errors.Is(err, ErrNotPending) {
		t.Fatalf("second approval: %v, want ErrNotPending", err)
	}
}

func TestRejectedAndCancelledPendingJobsEndWithoutRunning(t *testing.T) {
	e := newEnv(t, gpu.NewFake())
	m := e.manager(kittest.EnvSteps+"=5", kittest.EnvStepMS+"=5")
	a := submitForApproval(t, m)
	rej, err := m.Reject(a.ID, Review{ReviewerID: 1, Reviewer: "boss", Notes: "too big"})
	if err != nil {
		t.Fatal(err)
	}
	if rej.Status != StatusCancelled || rej.StartedAt != nil || rej.FinishedAt == nil || rej.Error != "rejected by boss: too big" || rej.Approval.Status != ApprovalRejected {
		t.Fatalf("rejected: %+v %+v", rej, rej.Approval)
	}
	if _, err := m.Reject(a.ID, Review{Notes: "again"}); !errors.Is(err, ErrNotPending) {
		t.Fatalf("second rejection: %v", err)
	}
	b := submitForApproval(t, m)
	if err := m.Command(context.Background(), b.ID, plugins.CommandCancel); err != nil {
		t.Fatal(err)
	}
	got := waitStatus(t, m, b.ID, 5*time.Second, StatusCancelled)
	if got.Approval.Status != ApprovalCancelled {
		t.Fatalf("cancelled pending job's approval: %+v", got.Approval)
	}
	if _, err := m.Approve(b.ID, Review{}); !errors.Is(err, ErrNotPending) {
		t.Fatalf("approving a cancelled job: %v", err)
	}
	if _, err := m.Approve("nope", Review{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("approving a missing job: %v", err)
	}
	if _, err := m.ByApprovalID(999); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing approval id: %v", err)
	}
	// A job submitted without for_approval has no approval request.
	c := submit(t, m, 1)
	if _, err := m.ByApprovalID(c.Seq); !errors.Is(err, ErrNotFound) {
		t.Fatalf("plain job found as approval: %v", err)
	}
	if _, err := m.Approve(c.ID, Review{}); !errors.Is(err, ErrNotPending) {
		t.Fatalf("approving a plain job: %v", err)
	}
}
