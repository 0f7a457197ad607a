package api

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"simpletuner/store"
	"simpletuner/supervisor/jobs"
	"simpletuner/supervisor/training"
)

// TestStartOutcomeWords is the table of what a submission answers: the outcome, and
// its word on each route (queue submit: SimpleTuner's running|queued|rejected; training
// start: starting|queued|rejected|invalid, like its HTML fragments).
func TestStartOutcomeWords(t *testing.T) {
	now := time.Now()
	job := func(status string, started bool) *store.Job {
		j := &store.Job{ID: "j1", Status: status}
		if started {
			j.StartedAt = &now
		}
		return j
	}
	for _, tc := range []struct {
		name      string
		job       *store.Job
		err       error
		ok        bool
		want      startOutcome
		queue     string
		trainWord string
	}{
		{"launched", job(jobs.StatusStarting, true), nil, true, outcomeStarted, "running", "starting"},
		{"already running", job(jobs.StatusRunning, true), nil, true, outcomeStarted, "running", "starting"},
		{"replay of a job that ran and ended", job(jobs.StatusCompleted, true), nil, true, outcomeStarted, "running", "starting"},
		{"replay of a job that ran and failed", job(jobs.StatusFailed, true), nil, true, outcomeStarted, "running", "starting"},
		{"busy slot", job(jobs.StatusQueued, false), nil, true, outcomeQueued, "queued", "queued"},
		{"refused when its turn came", job(jobs.StatusFailed, false), nil, true, outcomeRejected, "rejected", "rejected"},
		{"replay of a job cancelled in the queue", job(jobs.StatusCancelled, false), nil, true, outcomeRejected, "rejected", "rejected"},
		{"machine refuses", nil, fmt.Errorf("%w: Insufficient GPUs", jobs.ErrRejected), true, outcomeRejected, "rejected", "rejected"},
		{"invalid configuration", nil, training.ErrInvalid, true, outcomeInvalid, "rejected", "invalid"},
		{"held for approval", job(jobs.StatusPendingApproval, false), nil, true, outcomeBlocked, "blocked", "pending_approval"},
		{"missing permission is an error", nil, fmt.Errorf("%w: job.hooks", training.ErrForbidden), false, 0, "", ""},
		{"bad labels are an error", nil, fmt.Errorf("%w: bad", jobs.ErrInvalidLabels), false, 0, "", ""},
		{"internal failure is an error", nil, errors.New("disk full"), false, 0, "", ""},
	} {
		got, ok := outcomeOf(tc.job, tc.err)
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("%s: outcomeOf = %v, %v; want %v, %v", tc.name, got, ok, tc.want, tc.ok)
			continue
		}
		if !ok {
			continue
		}
		if queueWords[got] != tc.queue || trainingWords[got] != tc.trainWord {
			t.Errorf("%s: words %q/%q, want %q/%q", tc.name, queueWords[got], trainingWords[got], tc.queue, tc.trainWord)
		}
	}
	for o := outcomeStarted; o <= outcomeBlocked; o++ {
		if queueWords[o] == "" || trainingWords[o] == "" {
			t.Errorf("outcome %d has no word", o)
		}
	}
}

func TestRejectionReason(t *testing.T) {
	if got := rejectionReason(nil, fmt.Errorf("%w: Insufficient GPUs available (0 available, 1 required)", jobs.ErrRejected)); got != "Insufficient GPUs available (0 available, 1 required)" {
		t.Errorf("allocator reason: %q", got)
	}
	if got := rejectionReason(&store.Job{Error: "cancelled before it started"}, nil); got != "cancelled before it started" {
		t.Errorf("ended job: %q", got)
	}
}
