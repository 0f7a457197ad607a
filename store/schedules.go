package store

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// Schedule is the durable record of a cron schedule (supervisor/schedule): when it runs,
// what it does, on whose behalf, and how its last run went. NextRunAt is the slot the
// scheduler waits for; a run claims it with ClaimRun, so a slot runs at most once.
type Schedule struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// Spec is the cron spec as given (5 fields, a descriptor, optional CRON_TZ= prefix).
	Spec    string         `json:"spec"`
	Action  ScheduleAction `json:"action"`
	Enabled bool           `json:"enabled"`
	// MissedPolicy is "skip" or "run_once": what a slot missed while the daemon was down
	// becomes.
	MissedPolicy string `json:"missed_policy"`
	OwnerID      int64  `json:"owner_id"`
	Owner        string `json:"owner"`
	// System marks the daemon's own maintenance schedules: owned by no user, read-only.
	System    bool       `json:"system,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	UpdatedAt time.Time  `json:"updated_at"`
	LastRunAt *time.Time `json:"last_run_at,omitempty"`
	NextRunAt *time.Time `json:"next_run_at,omitempty"`
	// Runs counts the runs so far; LastOutcome, LastError and LastJobID describe the last.
	Runs        int    `json:"runs"`
	LastOutcome string `json:"last_outcome,omitempty"`
	LastError   string `json:"last_error,omitempty"`
	LastJobID   string `json:"last_job_id,omitempty"`
}

// ScheduleAction is what a schedule does when it fires. Kind names the action; the other
// fields are its parameters (each action reads only its own).
type ScheduleAction struct {
	Kind string `json:"kind,omitempty"`
	// submit: the environment to queue, where and how.
	ConfigName   string            `json:"config_name,omitempty"`
	Target       string            `json:"target,omitempty"`
	WorkerLabels map[string]string `json:"worker_labels,omitempty"`
	Priority     *int              `json:"priority,omitempty"`
	// checkpoint, validate: the job to steer, or "current".
	JobID string `json:"job_id,omitempty"`
	// cleanup: what to delete and the retention policy.
	What     string `json:"what,omitempty"`
	KeepDays int    `json:"keep_days,omitempty"`
	KeepLast int    `json:"keep_last,omitempty"`
}

func scheduleKey(id string) []byte { return []byte("schedules/" + id) }

// Schedules is the typed store of schedules.
type Schedules struct{ db *DB }

// Schedules returns the schedule store.
func (d *DB) Schedules() *Schedules { return &Schedules{db: d} }

// Create stores a new schedule; ErrExists when its id is taken.
func (s *Schedules) Create(sc *Schedule) error {
	return s.db.update(func(txn *badger.Txn) error {
		if _, err := txn.Get(scheduleKey(sc.ID)); err == nil {
			return ErrExists
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		return setJSON(txn, scheduleKey(sc.ID), sc, time.Time{})
	})
}

// Get returns a schedule; ErrNotFound when there is none.
func (s *Schedules) Get(id string) (*Schedule, error) {
	var sc Schedule
	if err := s.db.view(func(txn *badger.Txn) error { return getJSON(txn, scheduleKey(id), &sc) }); err != nil {
		return nil, err
	}
	return &sc, nil
}

// Update applies fn to the stored schedule atomically and returns the result; fn's error
// is returned as is and nothing is written.
func (s *Schedules) Update(id string, fn func(sc *Schedule) error) (*Schedule, error) {
	var out Schedule
	err := s.db.update(func(txn *badger.Txn) error {
		var sc Schedule
		if err := getJSON(txn, scheduleKey(id), &sc); err != nil {
			return err
		}
		if err := fn(&sc); err != nil {
			return err
		}
		out = sc
		return setJSON(txn, scheduleKey(id), &sc, time.Time{})
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// Put stores sc whether or not it exists (the daemon's built-in schedules, refreshed at
// every start).
func (s *Schedules) Put(sc *Schedule) error {
	return s.db.update(func(txn *badger.Txn) error { return setJSON(txn, scheduleKey(sc.ID), sc, time.Time{}) })
}

// Delete removes a schedule; ErrNotFound when there is none.
func (s *Schedules) Delete(id string) error {
	return s.db.update(func(txn *badger.Txn) error {
		if _, err := txn.Get(scheduleKey(id)); errors.Is(err, badger.ErrKeyNotFound) {
			return ErrNotFound
		} else if err != nil {
			return err
		}
		return txn.Delete(scheduleKey(id))
	})
}

// List returns every schedule ordered by creation, then id.
func (s *Schedules) List() ([]*Schedule, error) {
	var out []*Schedule
	err := s.db.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte("schedules/"), PrefetchValues: true, PrefetchSize: 32})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var sc Schedule
			if err := getJSON(txn, it.Item().KeyCopy(nil), &sc); err != nil {
				return err
			}
			out = append(out, &sc)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sortSchedules(out)
	return out, nil
}

func sortSchedules(ss []*Schedule) {
	slices.SortFunc(ss, func(a, b *Schedule) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
}

// ErrSlotTaken means a run's slot was already claimed (by another tick or daemon) or the
// schedule changed since it was read.
var ErrSlotTaken = errors.New("schedule slot already claimed")

// ClaimRun moves a schedule from the slot due to the slot next in one transaction, and
// reports ErrSlotTaken unless the stored NextRunAt is still due (compare-and-set): of two
// ticks or daemons that read the same slot, exactly one claims it, so a slot runs at most
// once. ran says whether the claimant runs the slot (LastRunAt becomes at) or skips it.
// The claimed record is returned.
func (s *Schedules) ClaimRun(id string, due, next, at time.Time, ran bool) (*Schedule, error) {
	sc, err := s.Update(id, func(sc *Schedule) error {
		if sc.NextRunAt == nil || !sc.NextRunAt.Equal(due) || !sc.Enabled {
			return ErrSlotTaken
		}
		n := next.UTC()
		sc.NextRunAt = &n
		if ran {
			a := at.UTC()
			sc.LastRunAt = &a
			sc.Runs++
		}
		return nil
	})
	if err != nil && !errors.Is(err, ErrSlotTaken) {
		return nil, fmt.Errorf("claim schedule %s: %w", id, err)
	}
	return sc, err
}
