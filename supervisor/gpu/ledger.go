package gpu

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
)

// Ledger records which GPUs each running local job holds. Reserve applies Decide and
// records its result under one lock, so two submits can never both take the last free
// GPU; Release gives a job's GPUs back. Adopt re-takes the GPUs of jobs that survived a
// daemon restart, before new work is admitted. A Ledger is safe for concurrent use.
//
// The ledger is in memory only: after a restart the job layer rebuilds it from its
// persisted, verified running jobs with Adopt.
type Ledger struct {
	// mu guards held and limits. It is never held while calling out (NVML, store),
	// so it cannot take part in a lock cycle.
	mu     sync.Mutex
	held   map[string][]string // job ID → GPU UUIDs; an empty list is a CPU job
	limits Limits
}

// NewLedger returns an empty ledger with the given limits.
func NewLedger(lim Limits) *Ledger {
	return &Ledger{held: make(map[string][]string), limits: lim}
}

// Reserve decides for jobID against gpus (a fresh inventory list) and, when the
// decision is Start or StartCPU, records the job's holding before returning. Queue and
// Reject record nothing. A job that already holds a reservation gets ErrAlreadyHeld.
func (l *Ledger) Reserve(jobID string, req Request, gpus []GPU) (Decision, error) {
	if jobID == "" {
		return Decision{}, invalidf("empty job id")
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.held[jobID]; ok {
		return Decision{}, fmt.Errorf("gpu: reserve for job %s: %w", jobID, ErrAlreadyHeld)
	}
	d := Decide(req, gpus, l.held, l.limits)
	if d.Outcome == Start || d.Outcome == StartCPU {
		l.held[jobID] = slices.Clone(d.UUIDs)
		if l.held[jobID] == nil {
			l.held[jobID] = []string{}
		}
	}
	return d, nil
}

// Adopt records that jobID holds uuids without applying limits: it is for jobs that
// were already running when the daemon restarted, which must keep their GPUs. Adopting
// the same holding twice is a no-op; a GPU held by another job is ErrConflict and a
// different holding for the same job is ErrAlreadyHeld (either means the persisted
// state disagrees with itself, and nothing is recorded).
func (l *Ledger) Adopt(jobID string, uuids []string) error {
	if jobID == "" {
		return invalidf("empty job id")
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if cur, ok := l.held[jobID]; ok {
		if slices.Equal(cur, uuids) {
			return nil
		}
		return fmt.Errorf("gpu: adopt job %s: %w (holds %v, asked %v)", jobID, ErrAlreadyHeld, cur, uuids)
	}
	for other, theirs := range l.held {
		for _, u := range uuids {
			if slices.Contains(theirs, u) {
				return fmt.Errorf("gpu: adopt job %s: %s: %w %s", jobID, u, ErrConflict, other)
			}
		}
	}
	l.held[jobID] = append([]string{}, uuids...)
	return nil
}

// Release frees the job's GPUs and returns them; ok is false when the job held nothing.
// Releasing twice is harmless, so every path that ends a job may call it.
func (l *Ledger) Release(jobID string) (uuids []string, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	uuids, ok = l.held[jobID]
	delete(l.held, jobID)
	return uuids, ok
}

// Holding returns the GPUs jobID holds, and whether it holds a reservation at all.
func (l *Ledger) Holding(jobID string) ([]string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	uuids, ok := l.held[jobID]
	return slices.Clone(uuids), ok
}

// Holdings returns a copy of every job's holding.
func (l *Ledger) Holdings() map[string][]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string][]string, len(l.held))
	for job, uuids := range l.held {
		out[job] = slices.Clone(uuids)
	}
	return out
}

// Running returns how many jobs hold a reservation.
func (l *Ledger) Running() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.held)
}

// Limits returns the current limits.
func (l *Ledger) Limits() Limits {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.limits
}

// SetLimits changes the limits for later reservations; running jobs keep their GPUs
// even when they now exceed them.
func (l *Ledger) SetLimits(lim Limits) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.limits = lim
}

// View is the allocation view of gpus under the current holdings (see View).
func (l *Ledger) View(gpus []GPU) AllocationView {
	l.mu.Lock()
	held := maps.Clone(l.held) // the slices are never mutated in place, so sharing them is safe
	l.mu.Unlock()
	return View(gpus, held)
}

// Allocator puts an Inventory in front of a Ledger: it lists the GPUs (outside the
// ledger's lock, since NVML queries take milliseconds) and then reserves. It is safe
// for concurrent use.
type Allocator struct {
	inv    Inventory
	ledger *Ledger
}

// NewAllocator returns an allocator over inv with a fresh ledger.
func NewAllocator(inv Inventory, lim Limits) *Allocator {
	return &Allocator{inv: inv, ledger: NewLedger(lim)}
}

// Ledger returns the allocator's ledger (for Release, Adopt, SetLimits, …).
func (a *Allocator) Ledger() *Ledger { return a.ledger }

// Inventory returns the allocator's inventory.
func (a *Allocator) Inventory() Inventory { return a.inv }

// Reserve lists the GPUs and reserves for jobID. An inventory error is returned as is
// (wrapped): the caller should keep the job queued and retry, not fall back to the CPU.
func (a *Allocator) Reserve(ctx context.Context, jobID string, req Request) (Decision, error) {
	gpus, err := a.inv.List(ctx)
	if err != nil {
		return Decision{}, fmt.Errorf("gpu: list GPUs for job %s: %w", jobID, err)
	}
	return a.ledger.Reserve(jobID, req, gpus)
}

// View lists the GPUs and returns the allocation view for the system status.
func (a *Allocator) View(ctx context.Context) (AllocationView, error) {
	gpus, err := a.inv.List(ctx)
	if err != nil {
		return AllocationView{}, fmt.Errorf("gpu: list GPUs: %w", err)
	}
	return a.ledger.View(gpus), nil
}
