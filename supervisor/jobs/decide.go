package jobs

import (
	"sort"
	"time"

	"simpletuner/plugins"
)

// reconcileAction is what to do with a non-terminal job found at start-up.
type reconcileAction int

const (
	actKeepQueued reconcileAction = iota // still waiting: nothing to do
	actReattach                          // the trainer is ours and alive: reattach
	actFinishExit                        // the trainer ended: take the state from its exit record
	actLost                              // the trainer is gone without a trace: lost
	actRequeue                           // the daemon died mid-launch before recording the trainer
)

func (a reconcileAction) String() string {
	return [...]string{"keep-queued", "reattach", "finish-from-exit-record", "lost", "requeue"}[a]
}

// decideReconcile is the restart decision as a pure function of the stored status, what
// /proc says about the recorded process, and whether an exit record with the job's nonce
// exists. A process whose identity does not match is never reattached nor signalled.
func decideReconcile(status string, hasPID bool, proc procState, exit *plugins.ExitRecord) reconcileAction {
	switch status {
	case StatusQueued:
		return actKeepQueued
	case StatusStarting, StatusRunning:
	default:
		return actKeepQueued
	}
	if exit != nil && plugins.Terminal(exit.State) && proc != procOurs {
		return actFinishExit
	}
	if !hasPID {
		if status == StatusStarting {
			return actRequeue
		}
		return actLost
	}
	switch proc {
	case procOurs:
		return actReattach
	default:
		return actLost
	}
}

// queued is a queued job as the queue planner sees it.
type queued struct {
	ID       string
	Priority int
	Seq      int64
	Bypassed int // how many later jobs started while this one waited
}

// planOrder sorts queued jobs: higher priority first, then first come first served.
func planOrder(q []queued) {
	sort.SliceStable(q, func(i, k int) bool {
		if q[i].Priority != q[k].Priority {
			return q[i].Priority > q[k].Priority
		}
		return q[i].Seq < q[k].Seq
	})
}

// backfillAllowed reports whether a job may start ahead of the waiting jobs before it.
// Backfill keeps a small job from waiting behind a big one (no head-of-line blocking),
// but once a waiting job has been passed maxBypass times nothing passes it any more, so
// the big job cannot starve.
func backfillAllowed(waiting []queued, maxBypass int) bool {
	for _, w := range waiting {
		if w.Bypassed >= maxBypass {
			return false
		}
	}
	return true
}

// retryDelay decides whether a job whose trainer crashed (it left no exit record: killed,
// out of memory) is launched again, and after how long: exponential backoff from base,
// doubling per attempt, capped at max. A trainer that reported its own failure is not
// retried: the same configuration would fail the same way.
func retryDelay(attempts, maxAttempts int, base, maxDelay time.Duration) (bool, time.Duration) {
	if attempts >= maxAttempts {
		return false, 0
	}
	d := base
	for i := 1; i < attempts && d < maxDelay; i++ {
		d *= 2
	}
	return true, min(d, maxDelay)
}

// stalled reports whether a running job has been silent for longer than the timeout
// (0 disables the watchdog).
func stalled(lastEvent, now time.Time, timeout time.Duration) bool {
	return timeout > 0 && now.Sub(lastEvent) > timeout
}
