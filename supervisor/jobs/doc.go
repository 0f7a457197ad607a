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
// Launch order (docs/architecture.md §8): the job is written "starting" with its nonce;
// the trainer is started with setsid; {socket, pid, process start time, boot id} are
// persisted; only then is the job "running". On start-up Reconcile runs before any new
// work is admitted: each non-terminal job is reattached if its process is provably the
// one we launched (pid + start time + boot id, then the nonce over Status), classified
// from its exit record otherwise, and never signalled when its identity does not match.
//
// Locking: Manager.mu guards the running map and serialises queue advancement; the store
// serialises record updates; a monitor goroutine owns each running job's stream.
package jobs
