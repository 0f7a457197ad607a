package store

import (
	"encoding/json"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// Job is the durable record of a training job. The launcher writes the process identity
// (Attachment, PID, ProcStart, BootID, Nonce) before it reports the job running, so a
// restarted daemon can find the trainer again or prove it is gone.
type Job struct {
	ID        string          `json:"id"`
	Status    string          `json:"status"`
	OwnerID   int64           `json:"owner_id"`
	Owner     string          `json:"owner"`
	EnvName   string          `json:"env_name,omitempty"`
	Config    json.RawMessage `json:"config"`
	Priority  int             `json:"priority"`
	CreatedAt time.Time       `json:"created_at"`
	// Seq orders jobs of equal priority first-in first-out.
	Seq int64 `json:"seq"`

	NumGPUs       int      `json:"num_gpus"`
	AnyGPU        bool     `json:"any_gpu"`
	PreferredGPUs []string `json:"preferred_gpus,omitempty"`
	GPUs          []string `json:"gpus"`

	StartedAt  *time.Time `json:"started_at,omitempty"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	Trainer    string     `json:"trainer,omitempty"`
	JobDir     string     `json:"job_dir,omitempty"`
	Nonce      string     `json:"nonce,omitempty"`

	// Process identity.
	Network   string `json:"network,omitempty"`
	Addr      string `json:"addr,omitempty"`
	PID       int    `json:"pid,omitempty"`
	ProcStart uint64 `json:"proc_start,omitempty"` // /proc/<pid>/stat starttime, clock ticks
	BootID    string `json:"boot_id,omitempty"`

	LastSeq  uint64          `json:"last_seq"`
	Progress json.RawMessage `json:"progress,omitempty"`
	Error    string          `json:"error,omitempty"`
	// Attempts counts launches (1 for a job launched once).
	Attempts int `json:"attempts"`
	// IdempotencyKey is the client's Idempotency-Key of the submission, if it sent one.
	IdempotencyKey string `json:"idempotency_key,omitempty"`
	// NotBefore holds a retried job back until its backoff has passed.
	NotBefore *time.Time `json:"not_before,omitempty"`
}

func jobKey(id string) []byte { return []byte("jobs/" + id) }

// Jobs is the typed store of jobs.
type Jobs struct{ db *DB }

// Jobs returns the job store.
func (d *DB) Jobs() *Jobs { return &Jobs{db: d} }

// Create stores a new job, assigning its FIFO sequence number.
func (s *Jobs) Create(j *Job) error {
	return s.db.update(func(txn *badger.Txn) error {
		if _, err := txn.Get(jobKey(j.ID)); err == nil {
			return ErrExists
		}
		seq, err := nextID(txn, "jobs")
		if err != nil {
			return err
		}
		j.Seq = seq
		return setJSON(txn, jobKey(j.ID), j, time.Time{})
	})
}

// Get returns a job.
func (s *Jobs) Get(id string) (*Job, error) {
	var j Job
	if err := s.db.view(func(txn *badger.Txn) error { return getJSON(txn, jobKey(id), &j) }); err != nil {
		return nil, err
	}
	return &j, nil
}

// Update applies fn to the stored job atomically and returns the result.
func (s *Jobs) Update(id string, fn func(j *Job) error) (*Job, error) {
	var out Job
	err := s.db.update(func(txn *badger.Txn) error {
		var j Job
		if err := getJSON(txn, jobKey(id), &j); err != nil {
			return err
		}
		if err := fn(&j); err != nil {
			return err
		}
		out = j
		return setJSON(txn, jobKey(id), &j, time.Time{})
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// List returns every job ordered by submission.
func (s *Jobs) List() ([]*Job, error) {
	var out []*Job
	err := s.db.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte("jobs/"), PrefetchValues: true, PrefetchSize: 32})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var j Job
			if err := getJSON(txn, it.Item().KeyCopy(nil), &j); err != nil {
				return err
			}
			out = append(out, &j)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sortJobs(out)
	return out, nil
}

func sortJobs(js []*Job) {
	for i := 1; i < len(js); i++ {
		for k := i; k > 0 && js[k].Seq < js[k-1].Seq; k-- {
			js[k], js[k-1] = js[k-1], js[k]
		}
	}
}
