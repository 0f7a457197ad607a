package workers

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"simpletuner/plugins/workerproto"
	"simpletuner/store"
	"simpletuner/supervisor/jobs"
)

// Sentinel errors; the API maps them to statuses in one place.
var (
	// ErrNotFound: no worker with that id.
	ErrNotFound = errors.New("worker not found")
	// ErrInvalid wraps a bad request (a missing name, a bad worker_type or label).
	ErrInvalid = errors.New("invalid worker request")
	// ErrExists refuses a second worker of the same name.
	ErrExists = errors.New("worker already exists")
	// ErrBusy refuses to delete a worker that runs a job (without force).
	ErrBusy = errors.New("worker is running a job")
	// ErrInvalidToken: the X-Worker-Token matches no worker.
	ErrInvalidToken = errors.New("Invalid worker token")
	// ErrMismatch: a worker named another worker's id.
	ErrMismatch = errors.New("Worker ID mismatch")
	// ErrNotAssigned: a worker reported on a job it does not run.
	ErrNotAssigned = errors.New("Worker not assigned to this job")
	// ErrJobNotFound: a worker reported on a job that does not exist.
	ErrJobNotFound = errors.New("job not found")
	// ErrClosed: the daemon is shutting down and opens no dispatch stream.
	ErrClosed = errors.New("the server is shutting down; reconnect shortly")
	// ErrNotBound: no worker is bound to that job (Slurm's calls).
	ErrNotBound = errors.New("no worker is bound to this job")
)

// BehindError refuses a terminal status (or an event batch) until the orchestrator has
// stored the job's events up to the worker's last one: the worker uploads from
// LastSeq+1 first. The API answers 409 with a workerproto.EventAck.
type BehindError struct {
	LastSeq uint64
	Reason  string
}

func (e *BehindError) Error() string { return e.Reason }

// Config configures the registry. Zero fields take the defaults.
type Config struct {
	// HeartbeatTimeout marks a worker offline when its last heartbeat is older (default
	// 120 s); its job is then lost and requeued.
	HeartbeatTimeout time.Duration
	// CheckEvery is the period of the health check (default a quarter of
	// HeartbeatTimeout).
	CheckEvery time.Duration
	// ConnectingTimeout removes (ephemeral) or marks offline (persistent) a worker that
	// never registered (default 300 s).
	ConnectingTimeout time.Duration
	// OfflineEphemeralTTL removes an ephemeral worker offline for longer (default 1 h).
	OfflineEphemeralTTL time.Duration
	// PingEvery is the dispatch stream's keep-alive period (default 30 s).
	PingEvery time.Duration
	// PublicURL, when set, is the orchestrator URL put in connection commands instead of
	// the URL a request came to.
	PublicURL string
	// Now is the clock (tests); nil is time.Now.
	Now func() time.Time
}

func (c *Config) defaults() {
	if c.HeartbeatTimeout <= 0 {
		c.HeartbeatTimeout = 120 * time.Second
	}
	if c.CheckEvery <= 0 {
		c.CheckEvery = c.HeartbeatTimeout / 4
	}
	if c.ConnectingTimeout <= 0 {
		c.ConnectingTimeout = 300 * time.Second
	}
	if c.OfflineEphemeralTTL <= 0 {
		c.OfflineEphemeralTTL = time.Hour
	}
	if c.PingEvery <= 0 {
		c.PingEvery = 30 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// JobSource is what the registry needs of the job manager (*jobs.Manager satisfies it):
// job records, a nudge to the queue when a worker frees up, and the Reporter that takes
// a job's progress and events.
type JobSource interface {
	jobs.Reporter
	Get(id string) (*store.Job, error)
	Kick()
}

// Registry is the set of remote workers and the jobs they run. It is safe for
// concurrent use.
type Registry struct {
	cfg Config
	db  *store.DB
	src JobSource
	log *slog.Logger

	mu sync.Mutex
	// workers holds every worker record by id, as last saved to the store.
	workers map[string]*store.Worker
	// links holds each worker's outbox and live stream.
	links map[string]*link
	// tasks holds every job given to a worker (or bound to one), by job id.
	tasks map[string]*task
	// reserved maps a worker placed for a job (Place) to that job until Launch or Release.
	reserved map[string]string
	// closed is set by Close: no new dispatch streams.
	closed bool
}

// link is a worker's side of the dispatch stream.
type link struct {
	outbox []outEvent
	// wake (capacity 1) tells the live stream that the outbox has something.
	wake chan struct{}
	// stream is the live stream (nil when the worker is not connected).
	stream *streamConn
}

// streamConn is one open dispatch stream; a newer stream, a token rotation or a
// deletion ends it.
type streamConn struct {
	closed chan struct{}
	// flushThenClose ends the stream after it wrote the outbox (a deleted worker hears
	// "shutdown" first).
	flushThenClose bool
}

// outEvent is one event waiting to be sent; jobID names the job of a job_submit, so a
// resend replaces it and a finished job removes it.
type outEvent struct {
	typ   string
	data  []byte
	jobID string
}

// New builds the registry over the store and loads its workers. After a daemon restart
// no worker is connected: all that were registered are offline until they register
// again, and jobs bound to one wait for it (they are lost when it does not come back
// within the heartbeat timeout).
func New(cfg Config, db *store.DB, src JobSource, log *slog.Logger) (*Registry, error) {
	cfg.defaults()
	r := &Registry{cfg: cfg, db: db, src: src, log: log, workers: map[string]*store.Worker{},
		links: map[string]*link{}, tasks: map[string]*task{}, reserved: map[string]string{}}
	ws, err := db.Workers().List()
	if err != nil {
		return nil, fmt.Errorf("load workers: %w", err)
	}
	now := cfg.Now()
	for _, w := range ws {
		if w.Status != workerproto.StatusConnecting && w.Status != workerproto.StatusOffline {
			w.Status = workerproto.StatusOffline
			w.OfflineSince = &now
			if err := db.Workers().Put(w); err != nil {
				return nil, fmt.Errorf("save worker %s: %w", w.ID, err)
			}
		}
		r.workers[w.ID] = w
		if w.BoundJob != "" {
			r.tasks[w.BoundJob] = newTask(w.BoundJob, w.ID, true, now, src)
		}
	}
	return r, nil
}

// now is the registry's clock.
func (r *Registry) now() time.Time { return r.cfg.Now() }

// saveLocked writes w to the store. Callers hold r.mu.
func (r *Registry) saveLocked(w *store.Worker) error {
	if err := r.db.Workers().Put(w); err != nil {
		return fmt.Errorf("save worker %s: %w", w.ID, err)
	}
	return nil
}

// logSave saves w and logs a failure (paths that cannot answer anyone).
func (r *Registry) logSave(w *store.Worker) {
	if err := r.saveLocked(w); err != nil {
		r.log.Error("save worker", "worker_id", w.ID, "err", err)
	}
}

// linkLocked returns a worker's link, creating it. Callers hold r.mu.
func (r *Registry) linkLocked(id string) *link {
	l := r.links[id]
	if l == nil {
		l = &link{wake: make(chan struct{}, 1)}
		r.links[id] = l
	}
	return l
}

// connectedLocked reports whether a worker has a live stream. Callers hold r.mu.
func (r *Registry) connectedLocked(id string) bool {
	l := r.links[id]
	return l != nil && l.stream != nil
}

// pushLocked queues an event for a worker and wakes its stream. A job_submit replaces
// an earlier one for the same job. Callers hold r.mu.
func (r *Registry) pushLocked(id, typ string, v any, jobID string) {
	b, err := json.Marshal(v)
	if err != nil {
		r.log.Error("encode worker event", "worker_id", id, "type", typ, "err", err)
		return
	}
	l := r.linkLocked(id)
	if jobID != "" {
		l.dropSubmit(jobID)
	}
	l.outbox = append(l.outbox, outEvent{typ: typ, data: b, jobID: jobID})
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// dropSubmit removes a queued job_submit of a job.
func (l *link) dropSubmit(jobID string) {
	l.outbox = deleteFunc(l.outbox, func(e outEvent) bool { return e.jobID == jobID })
}

func deleteFunc(s []outEvent, del func(outEvent) bool) []outEvent {
	out := s[:0]
	for _, e := range s {
		if !del(e) {
			out = append(out, e)
		}
	}
	return out
}

// closeStreamLocked ends a worker's live stream, if any. Callers hold r.mu.
func (r *Registry) closeStreamLocked(id string) {
	if l := r.links[id]; l != nil && l.stream != nil {
		close(l.stream.closed)
		l.stream = nil
	}
}

// assignedLocked returns the task a worker runs, if any. Callers hold r.mu.
func (r *Registry) assignedLocked(workerID string) *task {
	for _, t := range r.tasks {
		if t.workerID == workerID && !t.ended() {
			return t
		}
	}
	return nil
}

// Authenticate returns the id of the worker whose token this is. Every worker's hash is
// compared, in constant time, so the time taken says nothing about which matched.
func (r *Registry) Authenticate(token string) (string, error) {
	if token == "" {
		return "", ErrInvalidToken
	}
	h := hashToken(token)
	r.mu.Lock()
	defer r.mu.Unlock()
	found := ""
	for id, w := range r.workers {
		if sameHash(h, w.TokenHash) {
			found = id
		}
	}
	if found == "" {
		return "", ErrInvalidToken
	}
	return found, nil
}

// worker returns a copy of a worker's record.
func (r *Registry) worker(id string) (*store.Worker, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	w, ok := r.workers[id]
	if !ok {
		return nil, false
	}
	c := *w
	return &c, true
}

// kick nudges the queue (never under r.mu).
func (r *Registry) kick() {
	if r.src != nil {
		r.src.Kick()
	}
}

// statusList is the statuses for messages.
func statusList() string { return strings.Join(statuses, ", ") }
