package jobs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"simpletuner/plugins"
	"simpletuner/store"
	"simpletuner/supervisor/gpu"
)

// Job statuses, as the API reports them.
const (
	StatusQueued    = "queued"
	StatusStarting  = "starting"
	StatusRunning   = "running"
	StatusCompleted = plugins.StateCompleted
	StatusFailed    = plugins.StateFailed
	StatusCancelled = plugins.StateCancelled
	StatusStopped   = plugins.StateStopped
	StatusLost      = "lost"
)

// Terminal reports whether a job status is final.
func Terminal(s string) bool { return plugins.Terminal(s) || s == StatusLost }

// Sentinel errors of the job manager.
var (
	ErrNotFound    = errors.New("job not found")
	ErrRejected    = errors.New("job cannot run on this machine")
	ErrNoActiveJob = errors.New("No active training job")
	ErrEnded       = errors.New("job already ended")
	// ErrNotEnded refuses to delete a job that is queued, starting or running.
	ErrNotEnded    = errors.New("job has not ended")
	ErrUnreachable = errors.New("trainer unreachable")
	ErrNotReady    = errors.New("job manager is still reconciling")
	// ErrInvalidLabels wraps what ValidateLabels found wrong with a submission's labels.
	ErrInvalidLabels = errors.New("invalid worker_labels")
)

// Config configures the Manager.
type Config struct {
	JobsDir    string // one directory per job: config, trainer log, event spool, exit record
	RunDir     string // plugin sockets (0700, never a PrivateTmp)
	CPUTrainer string // path of simpletuner-trainer
	GPUTrainer string // path of simpletuner-trainer-cuda
	// TrainerArgs are passed to every trainer (tests use them to select a fake).
	TrainerArgs []string
	// TrainerEnv is the base environment of every trainer; nothing else of the
	// daemon's environment is passed on.
	TrainerEnv []string
	// MaxBypass bounds backfill (see backfillAllowed); default 3.
	MaxBypass int
	// PollInterval is how often a trainer's liveness is checked (default 500 ms), so a
	// dead trainer is noticed well within 2 s.
	PollInterval time.Duration
	// CancelGrace is how long a cancelled trainer gets before its process group is
	// killed (default 30 s).
	CancelGrace time.Duration
	// MaxAttempts is how many times a job is launched when its trainer crashes without
	// an exit record (default 1: no retry). Retries resume from the latest checkpoint.
	MaxAttempts int
	// RetryBase and RetryMax shape the retry backoff (defaults 10 s and 5 min).
	RetryBase, RetryMax time.Duration
	// StallTimeout fails a running job that emits no event for this long: its process
	// group gets SIGTERM, then SIGKILL after CancelGrace (0 disables the watchdog).
	StallTimeout time.Duration
	// Failpoint, when set, is called at named points of the launch sequence; crash tests
	// kill the daemon there (see SIMPLETUNER_FAILPOINTS in the daemon).
	Failpoint func(name string)
	// OnEvents, when set, sees every batch of events after it is stored.
	OnEvents func(jobID string, evs []plugins.Event)
	// Events, when set, stores the trainer events (instead of the manager writing them
	// to the store itself) and hears of every job status change: the event hub.
	Events EventSink
	// Executors run jobs elsewhere than on this machine (remote workers, Slurm); the
	// local executor, built by New from the fields above, is always first. Executors
	// that need the Manager as their Reporter are added with AddExecutor instead.
	Executors []Executor
	// LostRetries is how many times a job whose place went away (Exit.Lost: a worker that
	// stopped answering) is requeued to resume elsewhere before it fails (default 3).
	LostRetries int
}

// EventSink stores and publishes job events (implemented by supervisor/events.Hub).
type EventSink interface {
	// Append stores a batch of one job's trainer events; events at or below the job's
	// stored LastSeq must be skipped (replays after a reattach).
	Append(jobID string, evs []plugins.Event) error
	// JobStatus is called after every job status change the manager stores.
	JobStatus(j *store.Job)
}

// statusChanged tells the event sink about a stored status change.
func (m *Manager) statusChanged(j *store.Job) {
	if m.cfg.Events != nil && j != nil {
		m.cfg.Events.JobStatus(j)
	}
}

// Manager runs the queue and hands each job to an executor (docs/architecture.md §16): it
// keeps the job records, asks the executors to place queued jobs, waits on each launched
// task and ends the job as its task says. It is the executors' Reporter. It is safe for
// concurrent use.
type Manager struct {
	cfg   Config
	db    *store.DB
	alloc *gpu.Allocator
	log   *slog.Logger
	local *Local

	ready chan struct{} // closed once Reconcile has run
	wake  chan struct{} // queue advancement requests (capacity 1)
	ctx   context.Context
	stop  context.CancelFunc

	goroutines group // what Close waits for

	// execMu guards executors (AddExecutor may run while the queue advances).
	execMu    sync.RWMutex
	executors []Executor

	// mu guards tasks and bypassed, and serialises queue advancement.
	mu       sync.Mutex
	tasks    map[string]*tracked
	bypassed map[string]int

	// evMu guards evs: per job, the lock that serialises its event stores and the last
	// seq this manager stored (an event sink need not update the store's LastSeq at once).
	evMu sync.Mutex
	evs  map[string]*jobEvents

	// validating holds a token per trainer launched by Validate (capacity maxValidations).
	validating chan struct{}
}

// tracked is a job the manager follows: task is nil while its launch is under way.
type tracked struct {
	task Task
	kind string
}

// New returns a Manager. Call Reconcile before serving requests that change jobs.
func New(cfg Config, db *store.DB, alloc *gpu.Allocator, log *slog.Logger) (*Manager, error) {
	if cfg.MaxBypass == 0 {
		cfg.MaxBypass = 3
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 500 * time.Millisecond
	}
	if cfg.CancelGrace == 0 {
		cfg.CancelGrace = 30 * time.Second
	}
	if cfg.LostRetries == 0 {
		cfg.LostRetries = 3
	}
	if cfg.MaxAttempts < 1 {
		cfg.MaxAttempts = 1
	}
	if cfg.RetryBase == 0 {
		cfg.RetryBase = 10 * time.Second
	}
	if cfg.RetryMax == 0 {
		cfg.RetryMax = 5 * time.Minute
	}
	if err := prepareDirs(cfg.JobsDir, cfg.RunDir); err != nil {
		return nil, err
	}
	local := NewLocal(LocalConfig{JobsDir: cfg.JobsDir, RunDir: cfg.RunDir, CPUTrainer: cfg.CPUTrainer, GPUTrainer: cfg.GPUTrainer,
		TrainerArgs: cfg.TrainerArgs, TrainerEnv: cfg.TrainerEnv, PollInterval: cfg.PollInterval, CancelGrace: cfg.CancelGrace,
		StallTimeout: cfg.StallTimeout, Failpoint: cfg.Failpoint}, alloc, log)
	ctx, stop := context.WithCancel(context.Background())
	return &Manager{cfg: cfg, db: db, alloc: alloc, log: log, local: local, ready: make(chan struct{}),
		executors: append([]Executor{local}, cfg.Executors...),
		wake:      make(chan struct{}, 1), ctx: ctx, stop: stop, tasks: map[string]*tracked{}, bypassed: map[string]int{},
		evs: map[string]*jobEvents{}, validating: make(chan struct{}, maxValidations)}, nil
}

// AddExecutor adds an executor built after the Manager (a worker pool or Slurm executor
// needs the Manager as its Reporter). Add executors before Reconcile, so the jobs they
// launched before a restart are recovered by them.
func (m *Manager) AddExecutor(e Executor) {
	m.execMu.Lock()
	m.executors = append(m.executors, e)
	m.execMu.Unlock()
	m.kick()
}

// executor returns the executor of a kind, nil when none is configured.
func (m *Manager) executor(kind string) Executor {
	m.execMu.RLock()
	defer m.execMu.RUnlock()
	for _, e := range m.executors {
		if e.Kind() == kind {
			return e
		}
	}
	return nil
}

// Close stops following trainers without touching them: they keep running and the next
// daemon reattaches.
func (m *Manager) Close() {
	m.goroutines.stopSpawning()
	m.stop()
	m.local.Close()
	m.goroutines.wait()
}

// spawn runs fn in a goroutine Close waits for; it does nothing once Close has begun.
func (m *Manager) spawn(fn func()) bool { return m.goroutines.spawn(fn) }

// SubmitRequest is a new job.
type SubmitRequest struct {
	// ID, when set, is the job's id (a worker runs a job under the orchestrator's id);
	// otherwise a new one is made.
	ID string
	// Target is where the job may run (TargetAuto when empty).
	Target string
	// SeqBase is the seq its events are numbered after: a worker runs an orchestrator's
	// job under the orchestrator's numbering (workerproto.JobSubmit.LastSeq).
	SeqBase  uint64
	OwnerID  int64
	Owner    string
	EnvName  string
	Config   json.RawMessage // resolved, "--flag" keys
	Priority int
	GPU      gpu.Request
	// IdempotencyKey, when set, makes a retried submission (same owner, same key) return
	// the job the first one created instead of creating another.
	IdempotencyKey string
	// WorkerLabels select the workers that may run the job (see LabelsMatch); they are
	// checked with ValidateLabels and kept on the job. The local executor ignores them:
	// this machine is not a worker and has no labels to match.
	WorkerLabels map[string]string
	// ForApproval holds the job in StatusPendingApproval until a user with admin.approve
	// approves it (Approve) or rejects it (Reject); ApprovalReason says why it waits.
	ForApproval    bool
	ApprovalReason string
}

// Submit validates a job against the executors of its target (auto when empty) and queues
// it; the queue starts it as soon as one of them can. A job none of them could ever run
// (more GPUs than this machine has, say) is refused with that executor's error (ErrRejected
// or ErrNoExecutor, wrapped) and not stored; an unknown target is refused with
// ErrRejected; with NoWait, one that cannot start at once is rejected too.
func (m *Manager) Submit(ctx context.Context, req SubmitRequest) (*store.Job, error) {
	select {
	case <-m.ready:
	default:
		return nil, ErrNotReady
	}
	if err := ValidateLabels(req.WorkerLabels); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidLabels, err)
	}
	if req.IdempotencyKey != "" {
		all, err := m.db.Jobs().List()
		if err != nil {
			return nil, err
		}
		for _, j := range all {
			if j.OwnerID == req.OwnerID && j.IdempotencyKey == req.IdempotencyKey {
				return j, nil
			}
		}
	}
	target := req.Target
	if target == "" {
		target = TargetAuto
	}
	id := req.ID
	if id == "" {
		id = newJobID()
	} else if _, err := m.db.Jobs().Get(id); err == nil {
		return nil, fmt.Errorf("%w: a job with id %s exists", ErrRejected, id)
	}
	j := &store.Job{ID: id, Status: StatusQueued, OwnerID: req.OwnerID, Owner: req.Owner, EnvName: req.EnvName,
		Config: req.Config, Priority: req.Priority, CreatedAt: time.Now().UTC(), NumGPUs: max(req.GPU.NumProcesses, 1),
		AnyGPU: req.GPU.AnyGPU, PreferredGPUs: req.GPU.Preferred, IdempotencyKey: req.IdempotencyKey, WorkerLabels: req.WorkerLabels,
		Target: target, LastSeq: req.SeqBase}
	if err := m.admit(ctx, j); err != nil {
		return nil, err
	}
	if req.ForApproval {
		j.Status = StatusPendingApproval
		j.Approval = &store.Approval{Status: ApprovalPending, Reason: req.ApprovalReason, RequestedAt: j.CreatedAt}
	}
	if err := m.db.Jobs().Create(j); err != nil {
		return nil, err
	}
	m.statusChanged(j)
	if req.ForApproval {
		// Not scheduled until approved; no_wait does not withdraw it: it was asked to wait.
		m.log.Info("job waits for approval", "job_id", j.ID, "owner", req.Owner)
		return j, nil
	}
	m.log.Info("job queued", "job_id", j.ID, "owner", req.Owner, "gpus", j.NumGPUs)
	if req.GPU.NoWait {
		// Start now or not at all: advance synchronously and withdraw the job if it waits.
		m.advance()
		cur, err := m.db.Jobs().Get(j.ID)
		if err == nil && cur.Status == StatusQueued {
			m.finishQueued(j.ID, StatusCancelled, "not started: "+cur.Note)
			return nil, fmt.Errorf("%w: %s", ErrRejected, cur.Note)
		}
		return cur, err
	}
	// Advance now rather than in the background: the caller learns at once whether the
	// job is starting or waiting in the queue.
	m.advance()
	if cur, err := m.db.Jobs().Get(j.ID); err == nil {
		j = cur
	}
	return j, nil
}

// newJobID returns the first 8 hex characters of a random UUID, as SimpleTuner does.
func newJobID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Kick asks the queue to re-check what can start (after a limit changed, say).
func (m *Manager) Kick() { m.kick() }

// SetPriority changes a queued job's priority.
func (m *Manager) SetPriority(id string, prio int) error {
	_, err := m.db.Jobs().Update(id, func(j *store.Job) error {
		if j.Status != StatusQueued {
			return ErrEnded
		}
		j.Priority = prio
		return nil
	})
	if errors.Is(err, store.ErrNotFound) {
		return ErrNotFound
	}
	if err == nil {
		m.kick()
	}
	return err
}

func (m *Manager) kick() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// Start runs the queue in the background until Close: it advances whenever something
// changes, and every few seconds in case the machine did.
func (m *Manager) Start() { m.spawn(m.run) }

func (m *Manager) run() {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-m.wake:
		case <-t.C:
		}
		m.advance()
	}
}

// advance starts every queued job that fits, in priority order, with bounded backfill.
func (m *Manager) advance() {
	m.mu.Lock()
	defer m.mu.Unlock()
	all, err := m.db.Jobs().List()
	if err != nil {
		m.log.Error("list jobs", "err", err)
		return
	}
	var q []queued
	byID := map[string]*store.Job{}
	now := time.Now()
	for _, j := range all {
		if j.Status == StatusQueued && (j.NotBefore == nil || !now.Before(*j.NotBefore)) {
			q = append(q, queued{ID: j.ID, Priority: j.Priority, Seq: j.Seq, Bypassed: m.bypassed[j.ID]})
			byID[j.ID] = j
		}
	}
	planOrder(q)
	var waiting []queued
	for _, cand := range q {
		if len(waiting) > 0 && !backfillAllowed(waiting, m.cfg.MaxBypass) {
			break
		}
		j := byID[cand.ID]
		e, p, outcome, reason := m.place(j)
		switch outcome {
		case PlaceStart:
			for _, w := range waiting {
				m.bypassed[w.ID]++
			}
			delete(m.bypassed, j.ID)
			m.launch(j, e, p)
		case PlaceReject:
			m.finishQueued(j.ID, StatusFailed, reason)
		default:
			if reason != j.Note {
				m.Note(j.ID, reason)
			}
			waiting = append(waiting, cand)
		}
	}
}

// finishQueued ends a job that never started.
func (m *Manager) finishQueued(id, status, msg string) {
	now := time.Now().UTC()
	j, err := m.db.Jobs().Update(id, func(j *store.Job) error {
		j.Status, j.Error, j.FinishedAt = status, msg, &now
		if j.Approval != nil && j.Approval.Status == ApprovalPending {
			j.Approval.Status = ApprovalCancelled
		}
		return nil
	})
	if err != nil {
		m.log.Error("update job", "job_id", id, "err", err)
		return
	}
	m.statusChanged(j)
}

// Get returns a job.
func (m *Manager) Get(id string) (*store.Job, error) {
	j, err := m.db.Jobs().Get(id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrNotFound
	}
	return j, err
}

// List returns all jobs, oldest first.
func (m *Manager) List() ([]*store.Job, error) { return m.db.Jobs().List() }

// QueuePosition is a queued job's 1-based place in the order the queue starts jobs
// (0 when the job is not queued).
func (m *Manager) QueuePosition(id string) int {
	all, err := m.db.Jobs().List()
	if err != nil {
		return 0
	}
	var q []queued
	for _, j := range all {
		if j.Status == StatusQueued {
			q = append(q, queued{ID: j.ID, Priority: j.Priority, Seq: j.Seq})
		}
	}
	planOrder(q)
	for i, j := range q {
		if j.ID == id {
			return i + 1
		}
	}
	return 0
}

// Latest returns the job /api/training/status reports among the jobs keep accepts (nil
// keeps every job): the newest starting or running one, else the newest one that has
// left the queue (so a finished job's outcome stays visible), else nil. Callers pass
// who may see what as keep, so this package stays free of users and permissions.
func (m *Manager) Latest(keep func(*store.Job) bool) (*store.Job, error) {
	all, err := m.db.Jobs().List()
	if err != nil {
		return nil, err
	}
	var ended *store.Job
	for i := len(all) - 1; i >= 0; i-- {
		if keep != nil && !keep(all[i]) {
			continue
		}
		switch s := all[i].Status; {
		case s == StatusRunning || s == StatusStarting:
			return all[i], nil
		case s != StatusQueued && s != StatusPendingApproval && ended == nil:
			ended = all[i]
		}
	}
	return ended, nil
}

// Current returns "the current job" among the jobs keep accepts (nil keeps every job):
// the newest starting or running one, else nil.
func (m *Manager) Current(keep func(*store.Job) bool) (*store.Job, error) {
	all, err := m.db.Jobs().List()
	if err != nil {
		return nil, err
	}
	for i := len(all) - 1; i >= 0; i-- {
		if s := all[i].Status; (s == StatusRunning || s == StatusStarting) && (keep == nil || keep(all[i])) {
			return all[i], nil
		}
	}
	return nil, nil
}

// Command sends a command to a job. Stop and cancel of a queued job end it at once.
func (m *Manager) Command(ctx context.Context, id string, c plugins.Command) error {
	j, err := m.Get(id)
	if err != nil {
		return err
	}
	if Terminal(j.Status) {
		return ErrEnded
	}
	if j.Status == StatusQueued || j.Status == StatusPendingApproval {
		if c == plugins.CommandStop || c == plugins.CommandCancel {
			m.finishQueued(id, StatusCancelled, "cancelled before it started")
			m.kick()
			return nil
		}
		return fmt.Errorf("%w: the job has not started yet", ErrUnreachable)
	}
	m.mu.Lock()
	tr := m.tasks[id]
	m.mu.Unlock()
	if tr == nil || tr.task == nil {
		return fmt.Errorf("%w: the job is not followed by this daemon (yet)", ErrUnreachable)
	}
	return tr.task.Command(ctx, c)
}

// Delete removes an ended job: its record, then its job directory under JobsDir (the
// trainer log, exit record and resolved config; the job's output directory is never
// touched). A job that has not ended (or whose trainer this daemon still follows) is
// refused with ErrNotEnded, wrapped with its status; ErrNotFound when there is none.
func (m *Manager) Delete(id string) error {
	var dir string
	m.mu.Lock() // advance launches under m.mu: a queued job cannot start while it is checked
	_, followed := m.tasks[id]
	err := m.db.Jobs().Delete(id, func(j *store.Job) error {
		switch {
		case !Terminal(j.Status):
			return fmt.Errorf("%w: it is %s", ErrNotEnded, j.Status)
		case followed:
			return fmt.Errorf("%w: its trainer is still shutting down; try again in a few seconds", ErrNotEnded)
		}
		dir = j.JobDir
		return nil
	})
	m.mu.Unlock()
	if errors.Is(err, store.ErrNotFound) {
		return ErrNotFound
	}
	if err != nil {
		return err
	}
	if dir != "" && filepath.Dir(filepath.Clean(dir)) == filepath.Clean(m.cfg.JobsDir) {
		if err := os.RemoveAll(dir); err != nil {
			m.log.Warn("delete job directory", "job_id", id, "err", err)
		}
	}
	return nil
}

// jobDir is a job's directory.
func (m *Manager) jobDir(id string) string { return filepath.Join(m.cfg.JobsDir, id) }

// Ready is closed once reconciliation has finished.
func (m *Manager) Ready() <-chan struct{} { return m.ready }
