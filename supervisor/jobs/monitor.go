package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"simpletuner/plugins"
	"simpletuner/store"
)

// follow streams a job's events into the store until the job ends, watching the process
// so a trainer that dies is noticed within PollInterval×2. It returns at once; the work
// runs in a goroutine.
func (m *Manager) follow(id string, h *handle, since uint64) {
	ctx, cancel := context.WithCancel(m.ctx)
	h.cmdMu.Lock()
	h.cancel = cancel
	h.cmdMu.Unlock()
	if !m.spawn(func() {
		defer cancel()
		m.watch(ctx, id, h, since)
	}) {
		cancel()
	}
}

func (m *Manager) watch(ctx context.Context, id string, h *handle, since uint64) {
	type result struct{ err error }
	streamDone := make(chan result, 1)
	batch := newBatcher(m, id)
	batchCtx, stopBatch := context.WithCancel(context.Background())
	batchDone := make(chan struct{})
	go func() {
		defer close(batchDone)
		batch.run(batchCtx)
	}()
	defer func() { stopBatch(); <-batchDone }() // no store after watch returns
	h.cmdMu.Lock()
	client := h.client
	h.cmdMu.Unlock()
	if client != nil {
		go func() {
			err := client.Events(ctx, since, func(evs []plugins.Event) error { batch.add(evs...); return nil })
			streamDone <- result{err}
		}()
	}
	tick := time.NewTicker(m.cfg.PollInterval)
	defer tick.Stop()
	j, _ := m.db.Jobs().Get(id)
	boot := ""
	if j != nil {
		boot = j.BootID
	}
	killedAt := time.Time{}
	for {
		select {
		case <-ctx.Done():
			batch.flush()
			return // daemon shutting down: leave the trainer alone
		case r := <-streamDone:
			batch.flush()
			if r.err == nil {
				m.finishFromRecord(id, h)
				return
			}
			if ctx.Err() != nil {
				return
			}
			m.log.Warn("event stream broke", "job_id", id, "err", r.err)
			streamDone = nil // keep polling the process; the spool will tell the rest
		case <-tick.C:
			batch.flushProgress()
			alive := classifyProc(h.pid, h.start, boot, m.boot) == procOurs
			if !alive && h.pid != 0 {
				batch.flush()
				if !killedAt.IsZero() {
					m.ingestSpool(mustJob(m, id))
					m.finalize(id, h, StatusFailed, fmt.Sprintf("stalled: no event for more than %v; the trainer was killed", m.cfg.StallTimeout))
					return
				}
				m.finishFromRecord(id, h)
				return
			}
			now := time.Now()
			switch {
			case alive && killedAt.IsZero() && stalled(batch.lastEvent(), now, m.cfg.StallTimeout):
				// The watchdog: a hung trainer gets SIGTERM, then SIGKILL after the grace.
				m.log.Warn("trainer stalled; terminating its process group", "job_id", id, "pid", h.pid, "silent_for", now.Sub(batch.lastEvent()))
				killedAt = now
				_ = syscall.Kill(-h.pid, syscall.SIGTERM)
			case alive && !killedAt.IsZero() && now.Sub(killedAt) > m.cfg.CancelGrace:
				killGroup(h.pid)
			}
		}
	}
}

// finishFromRecord ends a job whose trainer is done or gone: it reads the events the
// trainer spooled but we did not receive, then the exit record.
func (m *Manager) finishFromRecord(id string, h *handle) {
	j, err := m.db.Jobs().Get(id)
	if err != nil {
		m.log.Error("read job", "job_id", id, "err", err)
		return
	}
	m.ingestSpool(j)
	rec, err := plugins.ReadExitRecord(j.JobDir)
	switch {
	case err == nil && rec.Nonce == j.Nonce && plugins.Terminal(rec.State):
		m.finalize(id, h, rec.State, rec.Error)
	case err != nil && !errors.Is(err, os.ErrNotExist):
		m.finalize(id, h, StatusFailed, "trainer exit record unreadable: "+err.Error())
	default:
		cause := exitCause(m.crashFacts(h))
		if retry, delay := retryDelay(j.Attempts, m.cfg.MaxAttempts, m.cfg.RetryBase, m.cfg.RetryMax); retry {
			m.requeueForRetry(j, h, delay, cause)
			return
		}
		m.finalize(id, h, StatusFailed, cause)
	}
}

// crashFacts gathers what tells how a trainer without an exit record ended: its wait
// status and stderr (when this daemon launched it) and the OOM kills its cgroup counted.
func (m *Manager) crashFacts(h *handle) exitFacts {
	f := exitFacts{OOMKills: -1}
	if h == nil {
		return f
	}
	h.cmdMu.Lock()
	client, pid, oom, base := h.client, h.pid, h.oom, h.oomBase
	h.cmdMu.Unlock()
	if base >= 0 {
		if n, ok := oom.Read(); ok {
			f.OOMKills = n - base
		}
	}
	if client == nil {
		return f
	}
	// The process is gone; go-plugin reaps it once its stdout and stderr close. Children
	// that inherited them (a data worker) keep them open: they are killed (their group is
	// the trainer's, which letGo kills anyway) and the reaping is waited for again.
	f.Status, f.HaveStatus = waitExitStatus(client, 2*time.Second)
	if !f.HaveStatus {
		killGroup(pid)
		f.Status, f.HaveStatus = waitExitStatus(client, 3*time.Second)
	}
	f.Headline, f.Stderr = client.Stderr()
	return f
}

// waitExitStatus polls for a launched trainer's wait status for up to d.
func waitExitStatus(c *plugins.Client, d time.Duration) (syscall.WaitStatus, bool) {
	deadline := time.Now().Add(d)
	for {
		if ws, ok := c.ExitStatus(); ok || time.Now().After(deadline) {
			return ws, ok
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// requeueForRetry puts a crashed job back in the queue after a backoff, resuming from its
// latest checkpoint; cause (exitCause) is kept in the job's error meanwhile.
func (m *Manager) requeueForRetry(j *store.Job, h *handle, delay time.Duration, cause string) {
	nb := time.Now().Add(delay).UTC()
	rec, err := m.db.Jobs().Update(j.ID, func(rec *store.Job) error {
		var cfg map[string]any
		if json.Unmarshal(rec.Config, &cfg) == nil {
			cfg["--resume_from_checkpoint"] = "latest"
			if b, err := json.Marshal(cfg); err == nil {
				rec.Config = b
			}
		}
		rec.Status, rec.NotBefore, rec.GPUs, rec.PID = StatusQueued, &nb, nil, 0
		rec.Error = fmt.Sprintf("trainer crashed (attempt %d of %d); retrying after %v. %s", rec.Attempts, m.cfg.MaxAttempts, delay, cause)
		return nil
	})
	if err != nil {
		m.log.Error("requeue for retry", "job_id", j.ID, "err", err)
	} else {
		m.statusChanged(rec)
	}
	m.letGo(j.ID, h)
	m.log.Warn("trainer crashed; job requeued", "job_id", j.ID, "attempt", j.Attempts, "retry_in", delay)
	time.AfterFunc(delay, m.kick)
}

// ingestSpool stores the spooled events after the job's LastSeq.
func (m *Manager) ingestSpool(j *store.Job) {
	if j.JobDir == "" {
		return
	}
	b := newBatcher(m, j.ID)
	_, err := plugins.ReadSpool(filepath.Join(j.JobDir, plugins.SpoolFile), 0, -1, j.LastSeq, func(e plugins.Event) error {
		b.add(e)
		return nil
	})
	b.flush()
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		m.log.Warn("read event spool", "job_id", j.ID, "err", err)
	}
}

// letGo stops tracking a job's trainer: its GPUs return to the pool and the connection is
// shut down. A trainer that was reachable a moment ago has a process group that is still
// provably ours, so what it left behind (dataloader workers, a background validation
// script) is killed after it shuts down, and nothing is reparented to init.
func (m *Manager) letGo(id string, h *handle) {
	m.alloc.Ledger().Release(id)
	m.mu.Lock()
	if m.running[id] == h {
		delete(m.running, id)
	}
	m.mu.Unlock()
	if h == nil {
		return
	}
	h.cmdMu.Lock()
	defer h.cmdMu.Unlock()
	if client, pid := h.client, h.pid; client != nil {
		go func() {
			client.Shutdown()
			killGroup(pid)
		}()
		h.client = nil
	}
}

// finalize marks the job terminal exactly once, releases its GPUs and advances the queue.
func (m *Manager) finalize(id string, h *handle, status, msg string) {
	now := time.Now().UTC()
	changed := false
	rec, err := m.db.Jobs().Update(id, func(j *store.Job) error {
		if Terminal(j.Status) {
			return nil
		}
		changed = true
		j.Status, j.Error, j.FinishedAt = status, msg, &now
		return nil
	})
	if err != nil {
		m.log.Error("finalize job", "job_id", id, "err", err)
	}
	m.letGo(id, h)
	if changed && err == nil {
		m.statusChanged(rec)
	}
	if changed {
		m.log.Info("job ended", "job_id", id, "status", status, "error", msg)
	}
	m.kick()
}

// batcher stores a job's events in group commits: while one batch is being stored, the
// events that arrive meanwhile wait and go into the next. At a low rate each event is
// stored (and so published) on its own, at once; at a high rate batches grow by
// themselves, so a trainer emitting tens of thousands of events a second costs a few
// hundred transactions, and no event waits for a timer. When maxBatch events wait, add
// stores them itself: the receive loop is held back (the trainer is not; its spool
// keeps everything) instead of memory growing.
type batcher struct {
	m    *Manager
	id   string
	kick chan struct{} // capacity 1: "events are pending" for run

	// mu guards seen, pending and progress.
	mu       sync.Mutex
	seen     time.Time // when the last event arrived
	pending  []plugins.Event
	progress json.RawMessage // the newest progress payload not yet written to the job

	// storeMu serialises stores, so batches are stored in the order they were taken;
	// it guards progressAt.
	storeMu    sync.Mutex
	progressAt time.Time // when the job's progress was last written
}

// maxBatch bounds one group commit.
const maxBatch = 4096

// progressEvery is how often, at most, a job's stored progress is rewritten while
// events stream in; the events themselves carry every step.
const progressEvery = 250 * time.Millisecond

func newBatcher(m *Manager, id string) *batcher {
	return &batcher{m: m, id: id, seen: time.Now(), kick: make(chan struct{}, 1)}
}

// run stores pending events as they come until ctx ends.
func (b *batcher) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.kick:
			b.store(false)
		}
	}
}

func (b *batcher) lastEvent() time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.seen
}

func mustJob(m *Manager, id string) *store.Job {
	j, err := m.db.Jobs().Get(id)
	if err != nil {
		return &store.Job{ID: id}
	}
	return j
}

func (b *batcher) add(evs ...plugins.Event) {
	b.mu.Lock()
	b.seen = time.Now()
	b.pending = append(b.pending, evs...)
	for _, e := range evs {
		if e.Type == plugins.EventTrainingProgress {
			b.progress = e.Data // decoded when written, so once per write, not per event
		}
	}
	full := len(b.pending) >= maxBatch
	b.mu.Unlock()
	if full {
		b.store(false)
		return
	}
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// flush stores whatever is pending, the job's latest progress included, before it
// returns.
func (b *batcher) flush() { b.store(true) }

// flushProgress writes a progress that was held back by progressEvery, once it is due.
func (b *batcher) flushProgress() { b.store(false) }

func (b *batcher) store(final bool) {
	b.storeMu.Lock()
	defer b.storeMu.Unlock()
	b.mu.Lock()
	batch, progress := b.pending, b.progress
	b.pending = nil
	writeProgress := progress != nil && (final || time.Since(b.progressAt) >= progressEvery)
	if writeProgress {
		b.progress = nil
	}
	b.mu.Unlock()
	if len(batch) > 0 {
		var err error
		if b.m.cfg.Events != nil {
			err = b.m.cfg.Events.Append(b.id, batch)
		} else {
			evs := make([]store.StoredEvent, 0, len(batch))
			for _, e := range batch {
				raw, _ := json.Marshal(e)
				evs = append(evs, store.StoredEvent{JobID: b.id, Seq: e.Seq, Event: raw})
			}
			_, err = b.m.db.Events().Append(b.id, evs)
		}
		if err != nil {
			// The spool still has them: the next restart or finishFromRecord re-reads it.
			b.m.log.Error("store events", "job_id", b.id, "err", err)
			return
		}
	}
	if writeProgress {
		var p plugins.Progress
		if json.Unmarshal(progress, &p) == nil {
			enc, _ := json.Marshal(p)
			_, _ = b.m.db.Jobs().Update(b.id, func(j *store.Job) error { j.Progress = enc; return nil })
		}
		b.progressAt = time.Now()
	}
	if len(batch) > 0 && b.m.cfg.OnEvents != nil {
		b.m.cfg.OnEvents(b.id, batch)
	}
}
