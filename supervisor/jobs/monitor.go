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
	h.cmdMu.Lock()
	client := h.client
	h.cmdMu.Unlock()
	if client != nil {
		go func() {
			err := client.Events(ctx, since, func(e plugins.Event) error { batch.add(e); return nil })
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
			batch.flushIfDue()
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
		if retry, delay := retryDelay(j.Attempts, m.cfg.MaxAttempts, m.cfg.RetryBase, m.cfg.RetryMax); retry {
			m.requeueForRetry(j, h, delay)
			return
		}
		m.finalize(id, h, StatusFailed, "trainer exited without an exit record (killed or crashed)")
	}
}

// requeueForRetry puts a crashed job back in the queue after a backoff, resuming from its
// latest checkpoint.
func (m *Manager) requeueForRetry(j *store.Job, h *handle, delay time.Duration) {
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
		rec.Error = fmt.Sprintf("trainer crashed (attempt %d of %d); retrying after %v", rec.Attempts, m.cfg.MaxAttempts, delay)
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

// batcher stores events in batches: one transaction per ~100 ms or 256 events, so a
// trainer emitting thousands of events a second costs tens of writes, not thousands.
// Its methods may be called from the stream goroutine and the watch loop at once; mu
// guards every field.
type batcher struct {
	mu       sync.Mutex
	seen     time.Time // when the last event arrived
	m        *Manager
	id       string
	pending  []plugins.Event
	last     time.Time
	progress *plugins.Progress
	timer    *time.Timer // flushes pending events when the batch window ends
}

func newBatcher(m *Manager, id string) *batcher {
	return &batcher{m: m, id: id, last: time.Now(), seen: time.Now()}
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

func (b *batcher) add(e plugins.Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.seen = time.Now()
	b.pending = append(b.pending, e)
	if e.Type == "training.progress" {
		var p plugins.Progress
		if json.Unmarshal(e.Data, &p) == nil {
			b.progress = &p
		}
	}
	if len(b.pending) >= 256 || e.Type == "job.status" || time.Since(b.last) >= b.m.cfg.EventBatchWindow {
		b.flushLocked()
	} else if b.timer == nil {
		b.timer = time.AfterFunc(b.m.cfg.EventBatchWindow, b.flush)
	}
}

func (b *batcher) flushIfDue() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if time.Since(b.last) >= b.m.cfg.EventBatchWindow {
		b.flushLocked()
	}
}

func (b *batcher) flush() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushLocked()
}

func (b *batcher) flushLocked() {
	if b.timer != nil {
		b.timer.Stop()
		b.timer = nil
	}
	b.last = time.Now()
	if len(b.pending) == 0 {
		return
	}
	var err error
	if b.m.cfg.Events != nil {
		err = b.m.cfg.Events.Append(b.id, b.pending)
	} else {
		evs := make([]store.StoredEvent, 0, len(b.pending))
		for _, e := range b.pending {
			raw, _ := json.Marshal(e)
			evs = append(evs, store.StoredEvent{JobID: b.id, Seq: e.Seq, Event: raw})
		}
		_, err = b.m.db.Events().Append(b.id, evs)
	}
	if err != nil {
		b.m.log.Error("store events", "job_id", b.id, "err", err)
		return
	}
	if b.progress != nil {
		p, _ := json.Marshal(b.progress)
		_, _ = b.m.db.Jobs().Update(b.id, func(j *store.Job) error { j.Progress = p; return nil })
		b.progress = nil
	}
	if b.m.cfg.OnEvents != nil {
		b.m.cfg.OnEvents(b.id, b.pending)
	}
	b.pending = nil
}
