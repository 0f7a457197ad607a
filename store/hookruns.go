package store

import (
	"errors"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// HookRun records one run of a hook script for one checkpoint.
type HookRun struct {
	JobID      string     `json:"job_id"`
	Hook       string     `json:"hook"`
	Checkpoint string     `json:"checkpoint"`
	StartedAt  time.Time  `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	ExitCode   *int       `json:"exit_code,omitempty"`
	Error      string     `json:"error,omitempty"`
}

func hookRunKey(job, hook, checkpoint string) []byte {
	return []byte("hookruns/" + job + "/" + hook + "/" + checkpoint)
}

// HookRuns is the typed store of hook runs.
type HookRuns struct{ db *DB }

// HookRuns returns the hook-run store.
func (d *DB) HookRuns() *HookRuns { return &HookRuns{db: d} }

// Claim records that a hook is about to run for a checkpoint and reports whether this
// caller won the claim (false: it ran, or is running, already). The claim is durable
// before the hook starts, so a restarted daemon never runs it again.
func (s *HookRuns) Claim(job, hook, checkpoint string) (bool, error) {
	won := false
	err := s.db.update(func(txn *badger.Txn) error {
		won = false
		if _, err := txn.Get(hookRunKey(job, hook, checkpoint)); err == nil {
			return nil
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		won = true
		return setJSON(txn, hookRunKey(job, hook, checkpoint), HookRun{JobID: job, Hook: hook, Checkpoint: checkpoint, StartedAt: time.Now().UTC()}, time.Time{})
	})
	return won, err
}

// Finish records a hook's outcome.
func (s *HookRuns) Finish(job, hook, checkpoint string, code int, errMsg string) error {
	return s.db.update(func(txn *badger.Txn) error {
		var r HookRun
		if err := getJSON(txn, hookRunKey(job, hook, checkpoint), &r); err != nil {
			return err
		}
		now := time.Now().UTC()
		r.FinishedAt, r.ExitCode, r.Error = &now, &code, errMsg
		return setJSON(txn, hookRunKey(job, hook, checkpoint), &r, time.Time{})
	})
}

// Get returns the record of a hook run.
func (s *HookRuns) Get(job, hook, checkpoint string) (*HookRun, error) {
	var r HookRun
	if err := s.db.view(func(txn *badger.Txn) error { return getJSON(txn, hookRunKey(job, hook, checkpoint), &r) }); err != nil {
		return nil, err
	}
	return &r, nil
}
