package api

import (
	"errors"
	"strings"

	"simpletuner/store"
	"simpletuner/supervisor/jobs"
	"simpletuner/supervisor/training"
)

// startOutcome is what became of a job submission. Both routes that submit jobs,
// /api/queue/submit and /api/training/start, decide it here and answer it in their own
// documented words (queueWords, trainingWords).
type startOutcome int

const (
	// outcomeStarted: the job was launched at once (it may have ended since).
	outcomeStarted startOutcome = iota
	// outcomeQueued: the job waits in the queue for a job slot or GPUs.
	outcomeQueued
	// outcomeRejected: this machine refused the job (jobs.ErrRejected), or the job ended
	// without ever starting.
	outcomeRejected
	// outcomeInvalid: the configuration cannot be trained (training.ErrInvalid).
	outcomeInvalid
	// outcomeBlocked: the job was submitted for approval and waits for a reviewer
	// (jobs.StatusPendingApproval).
	outcomeBlocked
)

// outcomeOf classifies the result of training.Service.Start. ok is false for an error
// that is no outcome (a missing permission, invalid labels, an internal failure): the
// caller answers it as an error.
func outcomeOf(j *store.Job, err error) (o startOutcome, ok bool) {
	switch {
	case errors.Is(err, training.ErrInvalid):
		return outcomeInvalid, true
	case errors.Is(err, jobs.ErrRejected):
		return outcomeRejected, true
	case err != nil || j == nil:
		return 0, false
	case j.Status == jobs.StatusQueued:
		return outcomeQueued, true
	case j.Status == jobs.StatusPendingApproval:
		return outcomeBlocked, true
	case j.StartedAt != nil, j.Status == jobs.StatusStarting, j.Status == jobs.StatusRunning:
		// An Idempotency-Key replay can return a job that has run and ended since: it
		// still started at once.
		return outcomeStarted, true
	}
	return outcomeRejected, true // ended before it started (refused when its turn came, cancelled)
}

// queueWords are the statuses of /api/queue/submit, SimpleTuner's: running (started on
// its allocated devices, or handed to a worker, whose id allocated_worker_id names, as
// SimpleTuner answers a job pushed to a connected worker), queued, rejected, blocked
// (held for approval: submitted with for_approval). SimpleTuner's dispatched is never
// answered. An invalid configuration is a rejection there.
var queueWords = map[startOutcome]string{
	outcomeStarted:  "running",
	outcomeQueued:   "queued",
	outcomeRejected: "rejected",
	outcomeInvalid:  "rejected",
	outcomeBlocked:  "blocked",
}

// trainingWords are the JSON statuses of /api/training/start, one per HTML fragment it
// answers by default: "Training Starting", "Training Queued", "Training Rejected",
// "Cannot Start Training". Starting, not running: the trainer is being initialised, as
// /api/training/status then reports.
var trainingWords = map[startOutcome]string{
	outcomeStarted:  "starting",
	outcomeQueued:   "queued",
	outcomeRejected: "rejected",
	outcomeInvalid:  "invalid",
	outcomeBlocked:  "pending_approval",
}

// rejectionReason is why an outcomeRejected submission did not run: the allocator's
// reason without the sentinel's words, or the error of a job that ended before starting.
func rejectionReason(j *store.Job, err error) string {
	if err != nil {
		return strings.TrimPrefix(err.Error(), jobs.ErrRejected.Error()+": ")
	}
	if j != nil {
		return j.Error
	}
	return ""
}
