package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"simpletuner/plugins"
	"simpletuner/store"
)

// haveWorkers reports whether a worker executor is configured.
func (m *Manager) haveWorkers() bool { return m.executor(KindWorker) != nil }

// candidates are the configured executors a job of this target may run on, in the order
// they are asked.
func (m *Manager) candidates(target string) ([]Executor, error) {
	kinds, err := dispatchOrder(target, m.haveWorkers())
	if err != nil {
		return nil, err
	}
	var es []Executor
	for _, k := range kinds {
		if e := m.executor(k); e != nil {
			es = append(es, e)
		}
	}
	return es, nil
}

// noExecutor says why a target has no executor, with what to do about it.
func noExecutor(target string) error {
	switch target {
	case TargetSlurm:
		return fmt.Errorf("%w: target=slurm: no Slurm cluster is configured on this server (start the server with --slurm-partition PARTITION --slurm-worker-url URL)", ErrNoExecutor)
	case TargetWorker:
		return fmt.Errorf("%w: target=worker: no worker executor is configured on this server (register a worker with POST /api/admin/workers; see them with GET /api/admin/workers)", ErrNoExecutor)
	}
	return fmt.Errorf("%w: target=%s", ErrNoExecutor, target)
}

// admit checks that at least one executor of the job's target could ever run it; it
// returns the first executor's refusal otherwise.
func (m *Manager) admit(ctx context.Context, j *store.Job) error {
	es, err := m.candidates(j.Target)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrRejected, err)
	}
	if len(es) == 0 {
		return noExecutor(j.Target)
	}
	var first error
	for _, e := range es {
		err := e.Admit(ctx, j)
		if err == nil {
			return nil
		}
		if first == nil {
			first = err
		}
	}
	return first
}

// place asks the job's executors, in dispatch order, whether it can start now. Called
// with m.mu held.
func (m *Manager) place(j *store.Job) (Executor, Placement, PlaceOutcome, string) {
	es, err := m.candidates(j.Target)
	if err != nil {
		return nil, Placement{}, PlaceReject, err.Error()
	}
	if len(es) == 0 {
		return nil, Placement{}, PlaceReject, noExecutor(j.Target).Error()
	}
	if len(es) > 1 {
		// Target auto: an executor that could never take the job now (no registered
		// worker matches it) is not asked, so the job's note says why it waits here.
		var admitted []Executor
		for _, e := range es {
			if e.Admit(m.ctx, j) == nil {
				admitted = append(admitted, e)
			}
		}
		if len(admitted) > 0 {
			es = admitted
		}
	}
	ps := make([]Placement, 0, len(es))
	for _, e := range es {
		p, err := e.Place(m.ctx, j)
		if err != nil {
			m.log.Warn("placement failed; job stays queued", "job_id", j.ID, "executor", e.Kind(), "err", err)
			p = Placement{Outcome: PlaceWait, Reason: p.Reason}
			if p.Reason == "" {
				p.Reason = e.Kind() + ": " + err.Error()
			}
		}
		ps = append(ps, p)
		if p.Outcome == PlaceStart {
			break
		}
	}
	i, outcome, reason := placeOutcome(ps)
	if outcome == PlaceStart {
		return es[i], ps[i], outcome, ""
	}
	return nil, Placement{}, outcome, reason
}

// launch marks j starting on executor e and hands it over in the background, so the
// queue is not blocked by a slow start. Called with m.mu held.
func (m *Manager) launch(j *store.Job, e Executor, p Placement) {
	now := time.Now().UTC()
	j, err := m.db.Jobs().Update(j.ID, func(j *store.Job) error {
		j.Status, j.GPUs, j.JobDir, j.StartedAt = StatusStarting, p.GPU.UUIDs, m.jobDir(j.ID), &now
		j.Executor, j.WorkerID, j.Note, j.Handle = e.Kind(), p.Where, "", nil
		j.Attempts++
		// The process fields of a record from before the executor seam mean nothing now.
		j.PID, j.Network, j.Addr, j.ProcStart, j.BootID, j.Nonce, j.Trainer = 0, "", "", 0, "", "", ""
		return nil
	})
	if err != nil {
		m.log.Error("mark job starting", "job_id", j.ID, "err", err)
		e.Release(j, p)
		return
	}
	m.statusChanged(j)
	if err := m.db.Sync(); err != nil {
		m.log.Warn("sync before launch", "err", err)
	}
	m.tasks[j.ID] = &tracked{kind: e.Kind()}
	m.spawn(func() {
		task, err := e.Launch(m.ctx, j, p, m)
		if err != nil {
			if m.ctx.Err() != nil {
				return // shutting down: the next daemon's Reconcile decides
			}
			m.log.Error("launch failed", "job_id", j.ID, "executor", e.Kind(), "err", err)
			m.finalize(j.ID, StatusFailed, "trainer launch failed: "+err.Error())
			return
		}
		m.follow(j.ID, e.Kind(), task)
	})
}

// follow tracks a launched or recovered task and ends its job when the task ends.
func (m *Manager) follow(id, kind string, task Task) {
	m.mu.Lock()
	m.tasks[id] = &tracked{task: task, kind: kind}
	m.mu.Unlock()
	m.spawn(func() {
		exit, err := task.Wait(m.ctx)
		if err != nil {
			return // the daemon is shutting down: the job is left running
		}
		m.end(id, exit)
	})
}

// end ends a job as its task said: a final state finalizes it; Retry requeues it to
// resume from its latest checkpoint while attempts (or, for a lost place, lost retries)
// remain, and fails it with the task's error otherwise.
func (m *Manager) end(id string, exit Exit) {
	switch {
	case exit.State != "":
		m.finalize(id, exit.State, exit.Error)
		return
	case !exit.Retry:
		msg := exit.Error
		if msg == "" {
			msg = "the job ended without a final status"
		}
		m.finalize(id, StatusFailed, msg)
		return
	}
	j, err := m.db.Jobs().Get(id)
	if err != nil {
		m.log.Error("read job", "job_id", id, "err", err)
		m.untrack(id)
		return
	}
	if exit.Lost {
		if j.LostCount < m.cfg.LostRetries {
			m.requeue(j, 0, true, fmt.Sprintf("its place was lost (%d of %d retries); requeued to resume from the latest checkpoint. %s", j.LostCount+1, m.cfg.LostRetries, exit.Error))
			return
		}
		m.finalize(id, StatusFailed, fmt.Sprintf("its place was lost %d times; giving up. %s", j.LostCount+1, exit.Error))
		return
	}
	if retry, delay := retryDelay(j.Attempts, m.cfg.MaxAttempts, m.cfg.RetryBase, m.cfg.RetryMax); retry {
		m.requeue(j, delay, false, fmt.Sprintf("trainer crashed (attempt %d of %d); retrying after %v. %s", j.Attempts, m.cfg.MaxAttempts, delay, exit.Error))
		return
	}
	m.finalize(id, StatusFailed, exit.Error)
}

// requeue puts a job back in the queue after delay, resuming from its latest checkpoint;
// msg is kept in the job's error meanwhile. lost counts the retry in LostCount.
func (m *Manager) requeue(j *store.Job, delay time.Duration, lost bool, msg string) {
	nb := time.Now().Add(delay).UTC()
	rec, err := m.db.Jobs().Update(j.ID, func(rec *store.Job) error {
		var cfg map[string]any
		if json.Unmarshal(rec.Config, &cfg) == nil {
			cfg["--resume_from_checkpoint"] = "latest"
			if b, err := json.Marshal(cfg); err == nil {
				rec.Config = b
			}
		}
		rec.Status, rec.NotBefore, rec.GPUs, rec.Error = StatusQueued, &nb, nil, msg
		if lost {
			rec.LostCount++
		}
		return nil
	})
	m.untrack(j.ID)
	if err != nil {
		m.log.Error("requeue for retry", "job_id", j.ID, "err", err)
	} else {
		m.statusChanged(rec)
	}
	m.log.Warn("job requeued to resume", "job_id", j.ID, "attempt", j.Attempts, "retry_in", delay, "lost", lost)
	time.AfterFunc(delay, m.kick)
}

// untrack forgets a job's task and the seq it had stored.
func (m *Manager) untrack(id string) {
	m.mu.Lock()
	delete(m.tasks, id)
	m.mu.Unlock()
	m.evMu.Lock()
	delete(m.evs, id)
	m.evMu.Unlock()
}

// finalize marks the job terminal exactly once and advances the queue.
func (m *Manager) finalize(id string, status, msg string) {
	now := time.Now().UTC()
	changed := false
	rec, err := m.db.Jobs().Update(id, func(j *store.Job) error {
		if Terminal(j.Status) {
			return nil
		}
		changed = true
		j.Status, j.Error, j.FinishedAt, j.Note = status, msg, &now, ""
		return nil
	})
	if err != nil {
		m.log.Error("finalize job", "job_id", id, "err", err)
	}
	m.untrack(id)
	if changed && err == nil {
		m.statusChanged(rec)
	}
	if changed {
		m.log.Info("job ended", "job_id", id, "status", status, "error", msg)
	}
	m.kick()
}

// SaveHandle stores a job's handle and syncs the store before the executor goes on.
func (m *Manager) SaveHandle(jobID string, h Handle) error {
	_, err := m.db.Jobs().Update(jobID, func(j *store.Job) error {
		j.Handle = &h
		return nil
	})
	if err != nil {
		return fmt.Errorf("store handle of job %s: %w", jobID, err)
	}
	if err := m.db.Sync(); err != nil {
		return fmt.Errorf("sync handle of job %s: %w", jobID, err)
	}
	return nil
}

// Running marks a starting job running.
func (m *Manager) Running(jobID string) {
	changed := false
	rec, err := m.db.Jobs().Update(jobID, func(j *store.Job) error {
		if j.Status == StatusStarting {
			j.Status, changed = StatusRunning, true
		}
		return nil
	})
	if err != nil {
		m.log.Error("mark job running", "job_id", jobID, "err", err)
		return
	}
	if changed {
		m.statusChanged(rec)
	}
}

// Note sets the job's note (where it is, why it waits). A note is not a status change:
// it is read with the job (status, queue, views), and announcing it through the event sink
// would repeat the job's status event and webhook at every change of Slurm's state.
func (m *Manager) Note(jobID, note string) {
	if j, err := m.db.Jobs().Get(jobID); err == nil && j.Note == note {
		return // the queue repeats a waiting job's reason at every pass: no write for that
	}
	if _, err := m.db.Jobs().Update(jobID, func(j *store.Job) error {
		j.Note = note
		return nil
	}); err != nil {
		m.log.Warn("set job note", "job_id", jobID, "err", err)
	}
}

// Events stores a batch of a job's trainer events after its LastSeq (the event sink's
// path when one is configured), writes the newest progress in the batch to the job, and
// returns the LastSeq now stored. A batch that does not follow the stored events is
// refused with ErrSeqGap.
func (m *Manager) Events(jobID string, evs []plugins.Event) (uint64, error) {
	je := m.jobEvents(jobID)
	je.mu.Lock()
	defer je.mu.Unlock()
	stored, err := m.db.Jobs().LastSeq(jobID)
	if errors.Is(err, store.ErrNotFound) {
		return 0, ErrNotFound
	}
	if err != nil {
		return 0, err
	}
	last := max(je.last, stored)
	fresh, err := eventsAfter(evs, last)
	if err != nil || len(fresh) == 0 {
		return last, err
	}
	if m.cfg.Events != nil {
		err = m.cfg.Events.Append(jobID, fresh)
	} else {
		stored := make([]store.StoredEvent, 0, len(fresh))
		for _, e := range fresh {
			raw, _ := json.Marshal(e)
			stored = append(stored, store.StoredEvent{JobID: jobID, Seq: e.Seq, Event: raw})
		}
		_, err = m.db.Events().Append(jobID, stored)
	}
	if err != nil {
		return last, fmt.Errorf("store events of job %s: %w", jobID, err)
	}
	last = fresh[len(fresh)-1].Seq
	je.last = last
	if p := lastProgress(fresh); p != nil {
		_, _ = m.db.Jobs().Update(jobID, func(j *store.Job) error { j.Progress = p; return nil })
	}
	if m.cfg.OnEvents != nil {
		m.cfg.OnEvents(jobID, fresh)
	}
	return last, nil
}

// jobEvents is one job's event path state. mu serialises the job's stores (jobs store in
// parallel) and guards last, the last seq this manager stored for it.
type jobEvents struct {
	mu   sync.Mutex
	last uint64
}

// jobEvents returns a job's event path state, made on first use.
func (m *Manager) jobEvents(id string) *jobEvents {
	m.evMu.Lock()
	defer m.evMu.Unlock()
	je := m.evs[id]
	if je == nil {
		je = &jobEvents{}
		m.evs[id] = je
	}
	return je
}

// eventsAfter drops the events at or below last; ErrSeqGap when the first one left does
// not follow last (or the batch is not in order).
func eventsAfter(evs []plugins.Event, last uint64) ([]plugins.Event, error) {
	i := 0
	for i < len(evs) && evs[i].Seq <= last {
		i++
	}
	fresh := evs[i:]
	next := last + 1
	for _, e := range fresh {
		if e.Seq != next {
			return nil, fmt.Errorf("%w: event %d where %d was due", ErrSeqGap, e.Seq, next)
		}
		next++
	}
	return fresh, nil
}

// lastProgress is the newest training progress in evs, re-encoded, or nil.
func lastProgress(evs []plugins.Event) json.RawMessage {
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i].Type != plugins.EventTrainingProgress {
			continue
		}
		var p plugins.Progress
		if json.Unmarshal(evs[i].Data, &p) == nil {
			enc, _ := json.Marshal(p)
			return enc
		}
	}
	return nil
}

// Reconcile brings every non-terminal job up to date after a (re)start: each launched
// job's executor (by job.Executor; records from before the executor seam are local)
// recovers it; ErrRequeue puts it back in the queue. It must run before the manager
// admits new work, after every executor was added.
func (m *Manager) Reconcile(ctx context.Context) error {
	defer close(m.ready)
	all, err := m.db.Jobs().List()
	if err != nil {
		return err
	}
	for _, j := range all {
		if Terminal(j.Status) || j.Status == StatusQueued || j.Status == StatusPendingApproval {
			continue
		}
		kind := j.Executor
		if kind == "" {
			kind = KindLocal
		}
		e := m.executor(kind)
		if e == nil {
			m.finalize(j.ID, StatusLost, fmt.Sprintf("the job ran on the %s executor, which is not configured on this server now", kind))
			continue
		}
		task, err := e.Recover(ctx, j, m)
		switch {
		case errors.Is(err, ErrRequeue):
			rec, err := m.db.Jobs().Update(j.ID, func(rec *store.Job) error {
				rec.Status, rec.GPUs = StatusQueued, nil
				return nil
			})
			if err != nil {
				return err
			}
			m.statusChanged(rec)
		case err != nil:
			m.log.Error("recover job", "job_id", j.ID, "executor", kind, "err", err)
			m.finalize(j.ID, StatusLost, "could not recover the job after a restart: "+err.Error())
		default:
			m.follow(j.ID, kind, task)
		}
	}
	m.kick()
	return nil
}
