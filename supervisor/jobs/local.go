package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"simpletuner/store"
	"simpletuner/supervisor/gpu"
)

// LocalConfig configures the local executor (Manager.New builds it from Config).
type LocalConfig struct {
	JobsDir    string // one directory per job (used when the job has none yet)
	RunDir     string // plugin sockets (0700, never a PrivateTmp)
	CPUTrainer string // path of simpletuner-trainer
	GPUTrainer string // path of simpletuner-trainer-cuda
	// TrainerArgs are passed to every trainer (tests use them to select a fake).
	TrainerArgs []string
	// TrainerEnv is the base environment of every trainer; nothing else of the daemon's
	// environment is passed on.
	TrainerEnv []string
	// PollInterval is how often a trainer's liveness is checked (default 500 ms).
	PollInterval time.Duration
	// CancelGrace is how long a cancelled or stalled trainer gets before its process
	// group is killed (default 30 s).
	CancelGrace time.Duration
	// StallTimeout fails a running job that emits no event for this long (0: no watchdog).
	StallTimeout time.Duration
	// Failpoint, when set, is called at named points of the launch sequence.
	Failpoint func(name string)
	// KeepGPUEnv leaves the trainer's CUDA environment as TrainerEnv has it when the
	// placement names no GPU (the foreground command, which does not allocate GPUs),
	// instead of hiding every GPU from a CPU job.
	KeepGPUEnv bool
}

// Local is the executor that runs jobs on this machine: one trainer process per job on
// the GPUs the allocator's ledger reserved (docs/architecture.md §8). It keeps control of
// its trainers across daemon restarts through the handle it stores with each job.
type Local struct {
	cfg   LocalConfig
	alloc *gpu.Allocator
	log   *slog.Logger
	boot  string

	ctx  context.Context // ends when Close is called: followers stop, trainers keep running
	stop context.CancelFunc

	goroutines group // the followers Close waits for
}

// NewLocal returns the local executor. alloc may be nil when the caller places jobs
// itself (the foreground command): Admit and Place then refuse.
func NewLocal(cfg LocalConfig, alloc *gpu.Allocator, log *slog.Logger) *Local {
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 500 * time.Millisecond
	}
	if cfg.CancelGrace == 0 {
		cfg.CancelGrace = 30 * time.Second
	}
	ctx, stop := context.WithCancel(context.Background())
	return &Local{cfg: cfg, alloc: alloc, log: log, boot: bootID(), ctx: ctx, stop: stop}
}

// Close stops following trainers without touching them: they keep running and the next
// daemon reattaches.
func (l *Local) Close() {
	l.goroutines.stopSpawning()
	l.stop()
	l.goroutines.wait()
}

// spawn runs fn in a goroutine Close waits for; it does nothing once Close has begun.
func (l *Local) spawn(fn func()) bool { return l.goroutines.spawn(fn) }

// group runs goroutines that a Close waits for. mu guards closed and every wg.Add, so no
// goroutine starts once the wait has begun.
type group struct {
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

// spawn runs fn in a goroutine of the group; it does nothing once stopSpawning was called.
func (g *group) spawn(fn func()) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		fn()
	}()
	return true
}

// stopSpawning makes every later spawn a no-op.
func (g *group) stopSpawning() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}

// wait waits for the group's goroutines.
func (g *group) wait() { g.wg.Wait() }

// Kind is KindLocal.
func (l *Local) Kind() string { return KindLocal }

// request is the GPU request of a job.
func request(j *store.Job) gpu.Request {
	return gpu.Request{NumProcesses: max(j.NumGPUs, 1), Preferred: j.PreferredGPUs, AnyGPU: j.AnyGPU}
}

// Admit refuses a job this machine can never run (more GPUs than it has), with
// ErrRejected and the allocator's reason.
func (l *Local) Admit(ctx context.Context, j *store.Job) error {
	if l.alloc == nil {
		return fmt.Errorf("%w: this machine does not allocate GPUs", ErrNoExecutor)
	}
	gpus, err := l.alloc.Inventory().List(ctx)
	if err != nil {
		return fmt.Errorf("list GPUs: %w", err)
	}
	d := gpu.Decide(request(j), gpus, l.alloc.Ledger().Holdings(), l.alloc.Ledger().Limits())
	if d.Outcome == gpu.Reject {
		return fmt.Errorf("%w: %s", ErrRejected, d.Reason)
	}
	return nil
}

// Place reserves the job's GPUs in the ledger when they are free (Start, with the
// decision in Placement.GPU), or says why it waits or can never run here.
func (l *Local) Place(ctx context.Context, j *store.Job) (Placement, error) {
	if l.alloc == nil {
		return Placement{Outcome: PlaceReject, Reason: "this machine does not allocate GPUs"}, nil
	}
	d, err := l.alloc.Reserve(ctx, j.ID, request(j))
	if err != nil {
		return Placement{Outcome: PlaceWait, Reason: "GPU inventory unavailable"}, fmt.Errorf("reserve GPUs: %w", err)
	}
	switch d.Outcome {
	case gpu.Start, gpu.StartCPU:
		return Placement{Outcome: PlaceStart, GPU: d}, nil
	case gpu.Reject:
		return Placement{Outcome: PlaceReject, Reason: d.Reason}, nil
	}
	return Placement{Outcome: PlaceWait, Reason: d.Reason}, nil
}

// Release frees the GPUs a Start placement reserved.
func (l *Local) Release(j *store.Job, _ Placement) {
	if l.alloc != nil {
		l.alloc.Ledger().Release(j.ID)
	}
}

// release frees a job's GPUs in the ledger (nothing without an allocator).
func (l *Local) release(id string) {
	if l.alloc != nil {
		l.alloc.Ledger().Release(id)
	}
}

// localHandleVersion is the version of localProc in a handle's Data.
const localHandleVersion = 1

// localProc is the local executor's handle data: what finds a trainer again after a
// restart. Nonce is stored before the trainer is spawned; the rest once it answers.
type localProc struct {
	Nonce     string `json:"nonce"`
	Trainer   string `json:"trainer,omitempty"`
	PID       int    `json:"pid,omitempty"`
	ProcStart uint64 `json:"proc_start,omitempty"` // /proc/<pid>/stat starttime, clock ticks
	BootID    string `json:"boot_id,omitempty"`
	Network   string `json:"network,omitempty"`
	Addr      string `json:"addr,omitempty"`
}

// localProcOf reads a job's local handle. A record written before the executor seam has
// no handle but the process fields of store.Job: they are converted here, on read.
func localProcOf(j *store.Job) (localProc, error) {
	if j.Handle == nil {
		return localProc{Nonce: j.Nonce, Trainer: j.Trainer, PID: j.PID, ProcStart: j.ProcStart, BootID: j.BootID,
			Network: j.Network, Addr: j.Addr}, nil
	}
	if j.Handle.Kind != KindLocal {
		return localProc{}, fmt.Errorf("job %s has a %q handle, not a local one", j.ID, j.Handle.Kind)
	}
	if j.Handle.Version != localHandleVersion {
		return localProc{}, fmt.Errorf("job %s: local handle version %d is not understood (want %d)", j.ID, j.Handle.Version, localHandleVersion)
	}
	var p localProc
	if err := json.Unmarshal(j.Handle.Data, &p); err != nil {
		return localProc{}, fmt.Errorf("job %s: local handle: %w", j.ID, err)
	}
	return p, nil
}

// TrainerPID is the process id of a local job's trainer as its record knows it (0 when
// the job runs elsewhere or its trainer was not recorded yet), for status displays.
func TrainerPID(j *store.Job) int {
	if j.Handle != nil && j.Handle.Kind != KindLocal {
		return 0
	}
	p, err := localProcOf(j)
	if err != nil {
		return 0
	}
	return p.PID
}

// jobDir is where a job's files go: the directory its record names, else one under
// JobsDir.
func (l *Local) jobDir(j *store.Job) string {
	if j.JobDir != "" {
		return j.JobDir
	}
	return filepath.Join(l.cfg.JobsDir, j.ID)
}

// prepareDirs creates the local executor's directories, private to the daemon's user.
func prepareDirs(dirs ...string) error {
	for _, d := range dirs {
		if d == "" {
			continue
		}
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
		if err := os.Chmod(d, 0o700); err != nil {
			return err
		}
	}
	return nil
}
