package schedule

import (
	"sort"
	"time"

	"simpletuner/store"
)

// Missed-run policies: what a slot that passed while the daemon was down (or later than
// the grace period) becomes.
const (
	// MissedSkip drops missed slots; the schedule waits for its next slot.
	MissedSkip = "skip"
	// MissedRunOnce runs once for all missed slots, however many there were.
	MissedRunOnce = "run_once"
)

// slot is what a tick does with one schedule.
type slot struct {
	// due: the schedule's NextRunAt has come; the tick claims it (moving NextRunAt to next).
	due bool
	// run: the claimant runs the slot (false with due: a missed slot skipped).
	run bool
	// missed: the slot is later than the grace period allows (the daemon was down).
	missed bool
	// next is the slot after this one: the first after now, so a tick never leaves a
	// schedule with a slot in the past, and missed slots are never run one by one.
	next time.Time
}

// decideSlot decides what a tick at now does with sc, whose spec is spec. A slot is on
// time while now is at most grace past it; later, it was missed and follows the schedule's
// missed_policy. Disabled schedules and those without a next slot are left alone. loc is
// the zone a spec without CRON_TZ reads its fields in.
func decideSlot(sc *store.Schedule, spec Spec, now time.Time, loc *time.Location, grace time.Duration) slot {
	if !sc.Enabled || sc.NextRunAt == nil || now.Before(*sc.NextRunAt) {
		return slot{}
	}
	d := slot{due: true, next: spec.Next(now.In(loc))}
	d.missed = now.Sub(*sc.NextRunAt) > grace
	d.run = !d.missed || sc.MissedPolicy == MissedRunOnce
	return d
}

// aged is one thing a retention policy may delete: its id, how new it is (rank: larger is
// newer) and when it ended or was made.
type aged struct {
	id   string
	rank int64
	at   time.Time
}

// expired returns the ids a retention policy deletes: everything but the keepLast newest
// (by rank), and of those only what is older than keepFor (0: any age). keepLast 0 keeps
// none by count. The caller guarantees at least one of the two bounds is set.
func expired(items []aged, keepLast int, keepFor time.Duration, now time.Time) []string {
	sorted := append([]aged(nil), items...)
	sort.SliceStable(sorted, func(a, b int) bool { return sorted[a].rank > sorted[b].rank })
	var out []string
	for i, it := range sorted {
		if i < keepLast {
			continue
		}
		if keepFor > 0 && now.Sub(it.at) <= keepFor {
			continue
		}
		out = append(out, it.id)
	}
	return out
}
