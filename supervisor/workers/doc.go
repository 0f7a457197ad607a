// Package workers is the orchestrator's side of remote workers (docs/architecture.md
// §4): the registry of workers (persisted in the store, tokens kept only as SHA-256),
// the admin operations behind /api/admin/workers, the worker protocol behind
// /api/workers (registration, the dispatch stream, heartbeats, job status and event
// upload), the health loop that marks silent workers offline and gives their jobs back to
// the queue, and the worker executor (jobs.Executor of kind "worker") that places queued
// jobs on idle workers whose labels match.
//
// A job given to a worker is a task: the registry keeps one per job (jobID → task) until
// the worker reports a terminal status, the worker is lost, or the job is unbound. Jobs of
// the Slurm executor run on an ephemeral worker bound to them (BindJob): the same task
// machinery, but the registry never places other jobs there.
//
// Locking: Registry.mu guards the workers, their live streams and outboxes, the tasks and
// the placement reservations. Store writes happen under it (they are short), calls into
// the job manager (JobSource) never do: the manager calls the executor under its own lock.
package workers
