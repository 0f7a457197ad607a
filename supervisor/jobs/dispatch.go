package jobs

import "fmt"

// dispatchOrder is the executor kinds asked, in order, to place a job submitted with
// target (docs/architecture.md §16): auto ("" too) prefers a registered worker and falls
// back to this machine; local, worker and slurm name one kind. An unknown target is an
// error a person can act on.
func dispatchOrder(target string, haveWorkers bool) ([]string, error) {
	switch target {
	case "", TargetAuto:
		if haveWorkers {
			return []string{KindWorker, KindLocal}, nil
		}
		return []string{KindLocal}, nil
	case TargetLocal:
		return []string{KindLocal}, nil
	case TargetWorker:
		return []string{KindWorker}, nil
	case TargetSlurm:
		return []string{KindSlurm}, nil
	}
	return nil, fmt.Errorf("unknown target %q (want auto, local, worker or slurm)", target)
}

// placeOutcome sums up the placements of the executors asked for one job, in order: the
// first Start wins (its index); otherwise the job waits with the first Wait's reason if
// any executor may still take it, and is refused with the first Reject's reason if none
// can (with no placement at all: Reject with no reason, which the caller supplies).
func placeOutcome(ps []Placement) (start int, outcome PlaceOutcome, reason string) {
	waitReason, rejectReason, waits := "", "", false
	for i, p := range ps {
		switch p.Outcome {
		case PlaceStart:
			return i, PlaceStart, ""
		case PlaceWait:
			if !waits {
				waits, waitReason = true, p.Reason
			}
		case PlaceReject:
			if rejectReason == "" {
				rejectReason = p.Reason
			}
		}
	}
	if waits {
		return -1, PlaceWait, waitReason
	}
	return -1, PlaceReject, rejectReason
}
