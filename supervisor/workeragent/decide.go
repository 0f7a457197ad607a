package workeragent

import (
	"time"

	"simpletuner/plugins/workerproto"
	"simpletuner/store"
	"simpletuner/supervisor/jobs"
)

// Limits of one event upload (docs/architecture.md §16: batches of at most 4096 events
// or 4 MiB, the daemon's own group-commit size; it takes up to 8 MiB).
const (
	maxBatchEvents = 4096
	maxBatchBytes  = 4 << 20
)

// wireStatus is the status a local job's status is reported as to the orchestrator; ok
// is false for one that is not reported. A job queued on this machine (waiting for a GPU,
// or for a retry after a crash) is starting for the orchestrator: reporting it at once
// tells the orchestrator the worker has the job. A job whose trainer vanished without a
// final status ("lost" here) is reported failed, with the manager's error saying why.
func wireStatus(local string) (status string, terminal, ok bool) {
	switch local {
	case jobs.StatusQueued:
		return jobs.StatusStarting, false, true
	case jobs.StatusStarting, jobs.StatusRunning:
		return local, false, true
	case jobs.StatusCompleted, jobs.StatusFailed, jobs.StatusCancelled, jobs.StatusStopped:
		return local, true, true
	case jobs.StatusLost:
		return jobs.StatusFailed, true, true
	}
	return "", false, false
}

// heartbeatStatus is what a heartbeat reports: busy while any job runs here.
func heartbeatStatus(active bool) string {
	if active {
		return workerproto.StatusBusy
	}
	return workerproto.StatusIdle
}

// cutBatch is how many of evs (in seq order) go in one upload: at most maxEvents, and
// no more than maxBytes of encoded events, but always at least one (a single event over
// the byte limit still has to travel).
func cutBatch(evs []store.StoredEvent, maxEvents, maxBytes int) int {
	n, size := 0, 0
	for _, e := range evs {
		if n == maxEvents {
			break
		}
		size += len(e.Event) + 1
		if n > 0 && size > maxBytes {
			break
		}
		n++
	}
	return n
}

// backoff is the wait before retry number attempt (1-based): base doubled per attempt,
// capped at max.
func backoff(attempt int, base, max time.Duration) time.Duration {
	d := base
	for i := 1; i < attempt && d < max; i++ {
		d *= 2
	}
	return min(d, max)
}

// submitRefusal says why a job_submit is refused ("" accepts it): a draining worker
// takes no more jobs, a worker bound to one job (--job) takes only that one, and an
// ephemeral worker takes one job per run.
func submitRefusal(jobID, boundJob string, draining, ephemeral bool, accepted int) string {
	switch {
	case draining:
		return "the worker is draining and takes no more jobs"
	case boundJob != "" && jobID != boundJob:
		return "the worker is bound to job " + boundJob
	case ephemeral && accepted > 0:
		return "the ephemeral worker has already run its one job"
	}
	return ""
}

// shouldExit reports whether the agent's work is done: nothing runs or waits to be
// reported, and it is draining, or it is ephemeral (or bound to a job) and has had its
// job.
func shouldExit(open, accepted int, draining, ephemeral bool) bool {
	if open > 0 {
		return false
	}
	return draining || (ephemeral && accepted > 0)
}
