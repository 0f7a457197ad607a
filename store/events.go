package store

import (
	"encoding/json"
	"fmt"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// StoredEvent is one event of a job's stream as the daemon keeps it.
type StoredEvent struct {
	JobID string          `json:"job_id"`
	Seq   uint64          `json:"seq"`
	Event json.RawMessage `json:"event"`
}

func eventKey(job string, seq uint64) []byte { return fmt.Appendf(nil, "events/%s/%016x", job, seq) }

// Events is the typed store of job events.
type Events struct{ db *DB }

// Events returns the event store.
func (d *DB) Events() *Events { return &Events{db: d} }

// Append stores events of one job and advances the job's LastSeq in the same
// transaction, so a restarted daemon resumes exactly after what it stored. Events at or
// below the stored LastSeq are skipped (replays after a reattach are idempotent).
func (s *Events) Append(jobID string, evs []StoredEvent) (uint64, error) {
	var last uint64
	err := s.db.update(func(txn *badger.Txn) error {
		var j Job
		if err := getJSON(txn, jobKey(jobID), &j); err != nil {
			return err
		}
		last = j.LastSeq
		for _, e := range evs {
			if e.Seq <= last {
				continue
			}
			if err := txn.Set(eventKey(jobID, e.Seq), e.Event); err != nil {
				return err
			}
			last = e.Seq
		}
		j.LastSeq = last
		return setJSON(txn, jobKey(jobID), &j, time.Time{})
	})
	return last, err
}

// List returns a job's events with Seq > since, at most limit (0 = all).
func (s *Events) List(jobID string, since uint64, limit int) ([]StoredEvent, error) {
	var out []StoredEvent
	err := s.db.view(func(txn *badger.Txn) error {
		prefix := []byte("events/" + jobID + "/")
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: 64})
		defer it.Close()
		for it.Seek(eventKey(jobID, since+1)); it.Valid(); it.Next() {
			var seq uint64
			if _, err := fmt.Sscanf(string(it.Item().Key()[len(prefix):]), "%x", &seq); err != nil {
				return fmt.Errorf("%w: event key %s", ErrCorrupt, it.Item().Key())
			}
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			out = append(out, StoredEvent{JobID: jobID, Seq: seq, Event: v})
			if limit > 0 && len(out) >= limit {
				break
			}
		}
		return nil
	})
	return out, err
}
