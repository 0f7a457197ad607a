package workers

import (
	"context"
	"fmt"

	"simpletuner/plugins"
	"simpletuner/plugins/workerproto"
	"simpletuner/store"
	"simpletuner/supervisor/jobs"
)

// BindJob mints a one-time token for an ephemeral worker that may run only jobID (the
// Slurm executor puts it in the batch script). The worker gets job_submit for that job
// as soon as it registers, and no other job. Binding a job again replaces the token.
func (r *Registry) BindJob(jobID string) (string, error) {
	if jobID == "" {
		return "", fmt.Errorf("%w: no job to bind", ErrInvalid)
	}
	token, hash := newToken()
	r.mu.Lock()
	defer r.mu.Unlock()
	if t := r.tasks[jobID]; t != nil && !t.bound {
		return "", fmt.Errorf("%w: job %s already runs on worker %s", ErrInvalid, jobID, t.workerID)
	}
	if t := r.tasks[jobID]; t != nil {
		w := r.workers[t.workerID]
		if w != nil {
			prev := w.TokenHash
			w.TokenHash = hash
			if err := r.saveLocked(w); err != nil {
				w.TokenHash = prev
				return "", err
			}
			r.closeStreamLocked(w.ID)
			if t.ended() {
				r.tasks[jobID] = newTask(jobID, w.ID, true, r.now(), r.src)
			}
			return token, nil
		}
	}
	w := &store.Worker{ID: newWorkerID(), Name: "slurm-" + jobID, Type: TypeEphemeral, Status: workerproto.StatusConnecting,
		CreatedAt: r.now().UTC(), TokenHash: hash, BoundJob: jobID, CurrentJobID: jobID}
	if err := r.saveLocked(w); err != nil {
		return "", err
	}
	r.workers[w.ID] = w
	r.tasks[jobID] = newTask(jobID, w.ID, true, r.now(), r.src)
	r.log.Info("worker bound to job", "worker_id", w.ID, "job_id", jobID)
	return token, nil
}

// boundTask returns the task of a bound job.
func (r *Registry) boundTask(jobID string) (*task, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.tasks[jobID]
	if t == nil || !t.bound {
		return nil, fmt.Errorf("%w: %s", ErrNotBound, jobID)
	}
	return t, nil
}

// Command relays c to the worker bound to jobID (jobs.ErrUnreachable, wrapped, while it
// is not connected: Slurm has not started it yet, say).
func (r *Registry) Command(_ context.Context, jobID string, c plugins.Command) error {
	t, err := r.boundTask(jobID)
	if err != nil {
		return err
	}
	return r.command(t, c)
}

// Wait blocks until the worker bound to jobID reports a terminal status, or is lost
// (it registered, then stopped sending heartbeats), or ctx ends.
func (r *Registry) Wait(ctx context.Context, jobID string) (jobs.Exit, error) {
	t, err := r.boundTask(jobID)
	if err != nil {
		return jobs.Exit{}, err
	}
	return wait(ctx, t)
}

// Unbind ends the binding of jobID: the worker's token stops working, its record is
// removed, and a Wait still blocked on it returns (as a retry without final status).
func (r *Registry) Unbind(jobID string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.tasks[jobID]
	if t == nil || !t.bound {
		return
	}
	r.finishLocked(t, jobs.Exit{Retry: true, Error: "the worker bound to the job was released before it reported a final status"})
	delete(r.tasks, jobID)
	if w := r.workers[t.workerID]; w != nil {
		if err := r.db.Workers().Delete(w.ID); err != nil {
			r.log.Error("remove bound worker", "worker_id", w.ID, "err", err)
		}
		delete(r.workers, w.ID)
	}
	r.closeStreamLocked(t.workerID)
	delete(r.links, t.workerID)
	r.log.Info("worker unbound", "worker_id", t.workerID, "job_id", jobID)
}
