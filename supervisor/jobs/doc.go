// Package jobs supervises training jobs: the queue, GPU allocation through
// supervisor/gpu, launching one trainer process per job over the plugin contract,
// following its event stream into the store, relaying commands, and — the part no peer
// does — keeping control across daemon restarts by reattaching to trainers that outlived
// the daemon.
//
// A job's life (status values are the API's):
//
//	queued ──allocate──▶ starting ──identity persisted──▶ running ──▶ completed | failed
//	   │                     │                               │         stopped | cancelled
//	   └─cancel─▶ cancelled  └─launch error─▶ failed          └─trainer vanished, no exit record─▶ lost
//
// Launch order (docs/architecture.md §8): the job is written "starting", its handle with its nonce;
// the trainer is started with setsid; {socket, pid, process start time, boot id} are
// persisted; only then is the job "running". On start-up Reconcile runs before any new
// work is admitted: each non-terminal job is reattached if its process is provably the
// one we launched (pid + start time + boot id, then the nonce over Status), classified
// from its exit record otherwise, and never signalled when its identity does not match.
//
// Executors (docs/architecture.md §16): the Manager keeps the queue and the records and
// hands each job to an Executor — Local (this machine, local*.go), a remote worker or
// Slurm — in the order dispatchOrder gives for the job's target. The executor stores a
// versioned Handle with the job before it runs (the local one: nonce, then the trainer's
// identity), reports through the Manager (its Reporter), and after a restart Recover
// takes the job back from that handle. The Manager waits on each Task and ends the job:
// a final state, or a retry that resumes from the latest checkpoint.
//
// Locking: Manager.mu guards the tasks map and serialises queue advancement; execMu
// guards the executor list; evMu serialises event stores; the store serialises record
// updates; a watch goroutine of the local executor owns each local trainer's stream.
package jobs
