package store

import (
	"time"

	badger "github.com/dgraph-io/badger/v4"

	"simpletuner/plugins/workerproto"
)

// Worker is the durable record of a remote worker (docs/architecture.md §4). Its token
// is never stored: TokenHash is the SHA-256 (hex) of it.
type Worker struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// Type is persistent or ephemeral.
	Type   string            `json:"worker_type"`
	Labels map[string]string `json:"labels,omitempty"`
	// Status is the last status the registry set (connecting, idle, busy, offline,
	// draining); after a daemon restart a worker is offline until it registers again.
	Status string `json:"status"`
	// GPU is the inventory the worker registered (the wire type: stored as sent).
	GPU          workerproto.GPUInfo `json:"gpu_info"`
	Provider     *string             `json:"provider,omitempty"`
	CurrentJobID string              `json:"current_job_id,omitempty"`
	LastSeen     *time.Time          `json:"last_heartbeat,omitempty"`
	ConnectedAt  *time.Time          `json:"connected_at,omitempty"`
	CreatedAt    time.Time           `json:"created_at"`
	// OfflineSince is when the worker last went offline (for the removal of ephemeral
	// workers that stay away).
	OfflineSince *time.Time `json:"offline_since,omitempty"`
	TokenHash    string     `json:"token_hash"`
	// BoundJob, when set, is the only job this (ephemeral) worker may run: a worker
	// started by a Slurm batch job for it.
	BoundJob string `json:"bound_job,omitempty"`
}

func workerKey(id string) []byte { return []byte("workers/" + id) }

// Workers is the typed store of remote workers.
type Workers struct{ db *DB }

// Workers returns the worker store.
func (d *DB) Workers() *Workers { return &Workers{db: d} }

// Put creates or replaces a worker record.
func (s *Workers) Put(w *Worker) error {
	return s.db.update(func(txn *badger.Txn) error { return setJSON(txn, workerKey(w.ID), w, time.Time{}) })
}

// Get returns the worker with the given id, or ErrNotFound.
func (s *Workers) Get(id string) (*Worker, error) {
	var w Worker
	if err := s.db.view(func(txn *badger.Txn) error { return getJSON(txn, workerKey(id), &w) }); err != nil {
		return nil, err
	}
	return &w, nil
}

// Delete removes a worker record; deleting an absent one is not an error.
func (s *Workers) Delete(id string) error {
	return s.db.update(func(txn *badger.Txn) error { return txn.Delete(workerKey(id)) })
}

// List returns every worker, ordered by id.
func (s *Workers) List() ([]*Worker, error) {
	var out []*Worker
	err := s.db.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte("workers/"), PrefetchValues: true, PrefetchSize: 16})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var w Worker
			if err := getJSON(txn, it.Item().KeyCopy(nil), &w); err != nil {
				return err
			}
			out = append(out, &w)
		}
		return nil
	})
	return out, err
}
