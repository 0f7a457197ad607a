package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// Job is the durable record of a training job. The executor that launched it stores its
// Handle (for a local trainer: nonce, socket, pid, start time, boot id) before it reports
// the job running, so a restarted daemon can find the trainer again or prove it is gone.
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
	JobDir     string     `json:"job_dir,omitempty"`

	// Legacy process identity: records written before the executor seam kept the local
	// trainer here; the local executor reads these fields only to convert such a record
	// to its Handle (jobs.localProcOf), and a new launch clears them.
	Trainer   string `json:"trainer,omitempty"`
	Nonce     string `json:"nonce,omitempty"`
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
	// WorkerLabels is the submission's worker selector (label name → glob pattern), kept
	// as sent; see jobs.LabelsMatch.
	WorkerLabels map[string]string `json:"worker_labels,omitempty"`
	// NotBefore holds a retried job back until its backoff has passed.
	NotBefore *time.Time `json:"not_before,omitempty"`
	// Approval is the job's approval request, when it was submitted for approval; the
	// request's ID is the job's Seq.
	Approval *Approval `json:"approval,omitempty"`

	// Target is where the job may run: auto (default), local, worker or slurm.
	Target string `json:"target,omitempty"`
	// Executor is the kind of executor that launched the job (local, worker, slurm).
	Executor string `json:"executor,omitempty"`
	// Handle is that executor's record of the launched job (docs/architecture.md §16).
	Handle *TaskHandle `json:"handle,omitempty"`
	// WorkerID is the remote worker running the job, when one does.
	WorkerID string `json:"worker_id,omitempty"`
	// Note is a short line about where the job is (Slurm's pending reason, say).
	Note string `json:"note,omitempty"`
	// LostCount counts the times the job's place went away (a worker that stopped
	// answering) and it was requeued.
	LostCount int `json:"lost_count,omitempty"`
}

// TaskHandle is an executor's opaque, versioned record of a launched job: what it needs
// to find the job again after a restart. Only the executor named by Kind reads Data.
type TaskHandle struct {
	Kind    string          `json:"kind"`
	Version int             `json:"version"`
	Data    json.RawMessage `json:"data"`
}

// Approval is a job's request for approval and its review.
type Approval struct {
	// Status is pending, approved, rejected or cancelled (the job ended while pending).
	Status string `json:"status"`
	// Reason is why the job needs approval.
	Reason      string    `json:"reason"`
	RequestedAt time.Time `json:"requested_at"`
	// ReviewerID and Reviewer are the user who approved or rejected it.
	ReviewerID  int64      `json:"reviewer_id,omitempty"`
	Reviewer    string     `json:"reviewer,omitempty"`
	ReviewedAt  *time.Time `json:"reviewed_at,omitempty"`
	ReviewNotes string     `json:"review_notes,omitempty"`
}

func jobKey(id string) []byte { return []byte("jobs/" + id) }

// jobSeqKey holds a job's LastSeq (8 bytes, big endian) apart from the job record, so
// storing a batch of events rewrites 8 bytes instead of the whole job (its config
// included). A job record's own last_seq is what older state directories kept; the
// larger of the two wins.
func jobSeqKey(id string) []byte { return []byte("jobseq/" + id) }

// getJob reads a job with its LastSeq.
func getJob(txn *badger.Txn, id string, j *Job) error {
	if err := getJSON(txn, jobKey(id), j); err != nil {
		return err
	}
	seq, _, err := getJobSeq(txn, id)
	if err != nil {
		return err
	}
	j.LastSeq = max(j.LastSeq, seq)
	return nil
}

// getJobSeq reads the LastSeq key of a job; found is false when it was never written.
func getJobSeq(txn *badger.Txn, id string) (seq uint64, found bool, err error) {
	it, err := txn.Get(jobSeqKey(id))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	err = it.Value(func(v []byte) error {
		if len(v) != 8 {
			return fmt.Errorf("job %s: last seq of %d bytes: %w", id, len(v), ErrCorrupt)
		}
		seq = binary.BigEndian.Uint64(v)
		return nil
	})
	return seq, true, err
}

// jobLastSeq returns a job's LastSeq, decoding the job record only when the LastSeq key
// was never written (a job from an older state directory).
func jobLastSeq(txn *badger.Txn, id string) (uint64, error) {
	if _, err := txn.Get(jobKey(id)); err != nil {
		if errors.Is(err, badger.ErrKeyNotFound) {
			return 0, ErrNotFound
		}
		return 0, err
	}
	if seq, found, err := getJobSeq(txn, id); found || err != nil {
		return seq, err
	}
	var j Job
	if err := getJSON(txn, jobKey(id), &j); err != nil {
		return 0, err
	}
	return j.LastSeq, nil
}

func setJobSeq(txn *badger.Txn, id string, seq uint64) error {
	return txn.Set(jobSeqKey(id), be64(seq))
}

// be64 is the 8-byte big-endian value the store keeps counters and indexes in.
func be64(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

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
	if err := s.db.view(func(txn *badger.Txn) error { return getJob(txn, id, &j) }); err != nil {
		return nil, err
	}
	return &j, nil
}

// LastSeq returns the seq of a job's last stored event without decoding its record
// (ErrNotFound when there is no such job): the event path checks it for every batch.
func (s *Jobs) LastSeq(id string) (uint64, error) {
	var seq uint64
	err := s.db.view(func(txn *badger.Txn) error {
		var err error
		seq, err = jobLastSeq(txn, id)
		return err
	})
	return seq, err
}

// Update applies fn to the stored job atomically and returns the result.
func (s *Jobs) Update(id string, fn func(j *Job) error) (*Job, error) {
	var out Job
	err := s.db.update(func(txn *badger.Txn) error {
		var j Job
		if err := getJob(txn, id, &j); err != nil {
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

// Delete removes a job's record and its LastSeq key in one transaction, after check
// (nil: none) has accepted the stored job; check's error is returned as is. The job's
// stored events stay until retention trims them (they carry their owner, so who may
// read them does not change). ErrNotFound when there is no such job.
func (s *Jobs) Delete(id string, check func(j *Job) error) error {
	return s.db.update(func(txn *badger.Txn) error {
		var j Job
		if err := getJob(txn, id, &j); err != nil {
			return err
		}
		if check != nil {
			if err := check(&j); err != nil {
				return err
			}
		}
		if err := txn.Delete(jobKey(id)); err != nil {
			return err
		}
		return txn.Delete(jobSeqKey(id))
	})
}

// List returns every job ordered by submission.
func (s *Jobs) List() ([]*Job, error) {
	var out []*Job
	err := s.db.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte("jobs/"), PrefetchValues: true, PrefetchSize: 32})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var j Job
			if err := getJob(txn, strings.TrimPrefix(string(it.Item().Key()), "jobs/"), &j); err != nil {
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
