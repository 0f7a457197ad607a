package jobs

import (
	"context"
	"encoding/json"
	"errors"

	"simpletuner/plugins"
	"simpletuner/store"
	"simpletuner/supervisor/gpu"
)

// Targets a job may be submitted with (POST /api/queue/submit "target").
const (
	// TargetAuto prefers an idle worker whose labels match, then this machine.
	TargetAuto = "auto"
	// TargetLocal runs the job on this machine's GPUs (or CPU).
	TargetLocal = "local"
	// TargetWorker runs the job on a registered remote worker only.
	TargetWorker = "worker"
	// TargetSlurm submits the job to the configured Slurm cluster.
	TargetSlurm = "slurm"
)

// Executor kinds (an Executor's Kind, stored on the job that it launched).
const (
	KindLocal  = "local"
	KindWorker = "worker"
	KindSlurm  = "slurm"
)

// Sentinel errors of executors; the API maps them in one place.
var (
	// ErrNoExecutor refuses a target no configured executor serves (target=slurm with no
	// Slurm settings, target=worker with no worker registered).
	ErrNoExecutor = errors.New("no executor for this target")
	// ErrRequeue from Recover says the job was never handed over (a launch interrupted
	// by a crash): the manager puts it back in the queue.
	ErrRequeue = errors.New("launch was interrupted; requeue")
)

// An Executor runs jobs somewhere: on this machine (local), on a remote worker, or as a
// Slurm batch job — the seam of docs/architecture.md (like Nomad's task drivers). The
// manager keeps the queue and the job records; an executor places, launches, controls
// and, after a daemon restart, recovers the jobs it was given. Everything it must find
// again after a restart lives in the Handle it returns, stored with the job.
type Executor interface {
	// Kind names the executor (KindLocal, KindWorker, KindSlurm).
	Kind() string
	// Admit says whether this executor could ever run j (enough GPUs exist, a worker
	// could match, Slurm is configured); a non-nil error (wrapping ErrRejected or
	// ErrNoExecutor) refuses the submission with a message a person can act on.
	Admit(ctx context.Context, j *store.Job) error
	// Place decides whether j can start now. A Start placement may hold resources (the
	// local executor reserves GPUs in the ledger) until Launch or Release.
	Place(ctx context.Context, j *store.Job) (Placement, error)
	// Release gives back what a Start placement held when the manager does not launch it.
	Release(j *store.Job, p Placement)
	// Launch hands j over at placement p. It returns once the job is on its way; r hears
	// about it from then on. A launch that fails before the job runs returns an error
	// (the manager fails the job with it).
	Launch(ctx context.Context, j *store.Job, p Placement, r Reporter) (Task, error)
	// Recover takes back a job this executor launched before the daemon restarted, from
	// the Handle stored with it. ErrRequeue puts the job back in the queue.
	Recover(ctx context.Context, j *store.Job, r Reporter) (Task, error)
}

// Placement is an executor's answer to "can this job start now?".
type Placement struct {
	// Outcome is Start, Wait or Reject.
	Outcome PlaceOutcome
	// Reason says why a job waits or is refused (shown in status and queue).
	Reason string
	// GPU is the local executor's GPU decision (UUIDs and launch environment).
	GPU gpu.Decision
	// Where names the place (a worker's id; empty for local and Slurm).
	Where string
}

// PlaceOutcome is what Place decided.
type PlaceOutcome int

const (
	// PlaceWait leaves the job queued.
	PlaceWait PlaceOutcome = iota
	// PlaceStart launches the job now.
	PlaceStart
	// PlaceReject fails the job: it can never run on this executor.
	PlaceReject
)

// A Task is one launched job as its executor controls it.
type Task interface {
	// Handle is what the executor needs to find the job again after a restart.
	Handle() Handle
	// Command sends stop, cancel, checkpoint or validate to the job's trainer. It
	// returns ErrEnded when the job has ended and ErrUnreachable (wrapped) when the
	// trainer cannot be reached now.
	Command(ctx context.Context, c plugins.Command) error
	// Wait blocks until the job has ended and says how. It returns ctx's error when ctx
	// ends first (the daemon is shutting down: the job is left running).
	Wait(ctx context.Context) (Exit, error)
}

// Exit is how a task ended.
type Exit struct {
	// State is the terminal status (completed, failed, cancelled, stopped) when the job
	// reported one.
	State string
	// Error is the cause of a failure, for the user.
	Error string
	// Retry marks an end without a final status (a crashed trainer, a lost worker, a
	// Slurm job that ended on its own): the manager requeues the job to resume from its
	// latest checkpoint while attempts remain, else fails it with Error.
	Retry bool
	// Lost marks a job whose place went away (a worker that stopped sending heartbeats);
	// such jobs are retried up to Config.LostRetries rather than Config.MaxAttempts.
	Lost bool
}

// Handle is an executor's opaque, versioned record of a launched job, stored with the job
// (store.Job.Handle). Only its executor reads Data.
type Handle = store.TaskHandle

// NewHandle encodes v as the Data of a handle of the given kind and version.
func NewHandle(kind string, version int, v any) (Handle, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return Handle{}, err
	}
	return Handle{Kind: kind, Version: version, Data: b}, nil
}

// A Reporter is what an executor tells the manager about a job it launched. *Manager
// implements it.
type Reporter interface {
	// SaveHandle stores (and syncs) the job's handle before the executor goes on: a
	// daemon that dies after it returns can recover the job.
	SaveHandle(jobID string, h Handle) error
	// Running marks the job running (from starting) once its trainer has it.
	Running(jobID string)
	// Events stores a batch of the job's trainer events; events at or below the job's
	// LastSeq are skipped. A batch whose first seq is beyond LastSeq+1 is refused with
	// ErrSeqGap, so nothing is lost when an upload was cut off.
	Events(jobID string, evs []plugins.Event) (lastSeq uint64, err error)
	// Note sets a short line about where the job is (Slurm's pending reason, the worker
	// that runs it), shown in its status and in the queue; "" clears it.
	Note(jobID, note string)
}

// ErrSeqGap refuses an event batch that does not follow the stored events.
var ErrSeqGap = errors.New("event batch does not follow the stored events")
