package jobs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"simpletuner/internal/sysmem"
	"simpletuner/plugins"
	"simpletuner/store"
)

// localTask is a trainer the local executor follows: it streams the job's events to the
// reporter, polls the process, runs the stall watchdog and, when the trainer is done or
// gone, works out how the job ended (Wait).
type localTask struct {
	l      *Local
	id     string
	jobDir string
	nonce  string
	r      Reporter

	// mu guards client, proc, oom, oomBase and lastSeq.
	mu     sync.Mutex
	client *plugins.Client // nil while unreachable
	proc   localProc
	// oom counts the OOM kills of the trainer's memory cgroup; oomBase is its value when
	// the daemon took the trainer on (launch or reattach), -1 when there is no counter.
	oom     sysmem.OOMCounter
	oomBase int64
	// lastSeq is the job's last stored event (the reporter's answer to each batch).
	lastSeq uint64

	done chan struct{} // closed by end, after exit is set
	once sync.Once
	exit Exit
}

func (l *Local) newTask(j *store.Job, dir, nonce string, r Reporter) *localTask {
	return &localTask{l: l, id: j.ID, jobDir: dir, nonce: nonce, r: r, oomBase: -1, lastSeq: j.LastSeq, done: make(chan struct{})}
}

// attach records the trainer's client and identity.
func (t *localTask) attach(c *plugins.Client, p localProc) {
	t.mu.Lock()
	t.client, t.proc = c, p
	t.mu.Unlock()
}

// watchOOM starts counting the OOM kills of the memory cgroup of pid (0: the daemon's own,
// which a trainer it launches inherits).
func (t *localTask) watchOOM(pid int) {
	c := sysmem.FS{}.OOMCounterOf(pid)
	base, ok := c.Read()
	if !ok {
		base = -1
	}
	t.mu.Lock()
	t.oom, t.oomBase = c, base
	t.mu.Unlock()
}

// Handle is the job's local handle (nonce, trainer, process identity, socket).
func (t *localTask) Handle() Handle {
	t.mu.Lock()
	p := t.proc
	t.mu.Unlock()
	h, _ := NewHandle(KindLocal, localHandleVersion, p) // a struct of strings and numbers always encodes
	return h
}

// Command relays c to the trainer; a cancel kills the trainer's process group when it
// has not ended within the grace period.
func (t *localTask) Command(ctx context.Context, c plugins.Command) error {
	select {
	case <-t.done:
		return ErrEnded
	default:
	}
	t.mu.Lock()
	client := t.client
	t.mu.Unlock()
	if client == nil {
		return ErrUnreachable
	}
	err := client.Command(ctx, c)
	switch {
	case errors.Is(err, plugins.ErrJobEnded):
		return ErrEnded
	case errors.Is(err, plugins.ErrTrainerGone):
		return fmt.Errorf("%w: %w", ErrUnreachable, err)
	case err != nil:
		return err
	}
	if c == plugins.CommandCancel {
		go t.killAfterGrace()
	}
	return nil
}

// killAfterGrace kills a cancelled trainer's process group if it has not ended within
// the grace period — after checking it is still the process we launched.
func (t *localTask) killAfterGrace() {
	timer := time.NewTimer(t.l.cfg.CancelGrace)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-t.done:
		return
	case <-t.l.ctx.Done():
		return
	}
	t.mu.Lock()
	p := t.proc
	t.mu.Unlock()
	if classifyProc(p.PID, p.ProcStart, p.BootID, t.l.boot) == procOurs {
		t.l.log.Warn("trainer ignored cancel; killing its process group", "job_id", t.id, "pid", p.PID)
		killGroup(p.PID)
	}
}

// Wait returns how the job ended, or ctx's error first.
func (t *localTask) Wait(ctx context.Context) (Exit, error) {
	select {
	case <-t.done: // an ended job wins over a shutdown that comes at the same time
		return t.exit, nil
	default:
	}
	select {
	case <-t.done:
		return t.exit, nil
	case <-ctx.Done():
		return Exit{}, ctx.Err()
	}
}

// end lets go of the trainer and publishes how the job ended, once.
func (t *localTask) end(e Exit) {
	t.once.Do(func() {
		t.letGo()
		t.exit = e
		close(t.done)
	})
}

// follow streams the job's events from since on until the job ends, watching the process
// so a trainer that dies is noticed within PollInterval×2. It returns at once.
func (t *localTask) follow(since uint64) {
	if !t.l.spawn(func() { t.watch(t.l.ctx, since) }) {
		return
	}
}

func (t *localTask) watch(ctx context.Context, since uint64) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cfg := t.l.cfg
	streamDone := make(chan error, 1)
	batch := newBatcher(t.r, t.id, t.l.log, t.stored)
	batchCtx, stopBatch := context.WithCancel(context.Background())
	batchDone := make(chan struct{})
	go func() {
		defer close(batchDone)
		batch.run(batchCtx)
	}()
	defer func() { stopBatch(); <-batchDone }() // nothing is stored after watch returns
	t.mu.Lock()
	client, p := t.client, t.proc
	t.mu.Unlock()
	if client != nil {
		go func() {
			streamDone <- client.Events(ctx, since, func(evs []plugins.Event) error { batch.add(evs...); return nil })
		}()
	}
	tick := time.NewTicker(cfg.PollInterval)
	defer tick.Stop()
	killedAt := time.Time{}
	for {
		select {
		case <-ctx.Done():
			batch.flush()
			return // daemon shutting down: leave the trainer alone
		case err := <-streamDone:
			batch.flush()
			if err == nil {
				t.end(t.finishFromRecord())
				return
			}
			if ctx.Err() != nil {
				return
			}
			t.l.log.Warn("event stream broke", "job_id", t.id, "err", err)
			streamDone = nil // keep polling the process; the spool will tell the rest
		case <-tick.C:
			alive := classifyProc(p.PID, p.ProcStart, p.BootID, t.l.boot) == procOurs
			if !alive && p.PID != 0 {
				batch.flush()
				if !killedAt.IsZero() {
					t.ingestSpool()
					t.end(Exit{State: StatusFailed, Error: fmt.Sprintf("stalled: no event for more than %v; the trainer was killed", cfg.StallTimeout)})
					return
				}
				t.end(t.finishFromRecord())
				return
			}
			now := time.Now()
			switch {
			case alive && killedAt.IsZero() && stalled(batch.lastEvent(), now, cfg.StallTimeout):
				// The watchdog: a hung trainer gets SIGTERM, then SIGKILL after the grace.
				t.l.log.Warn("trainer stalled; terminating its process group", "job_id", t.id, "pid", p.PID, "silent_for", now.Sub(batch.lastEvent()))
				killedAt = now
				_ = syscall.Kill(-p.PID, syscall.SIGTERM)
			case alive && !killedAt.IsZero() && now.Sub(killedAt) > cfg.CancelGrace:
				killGroup(p.PID)
			}
		}
	}
}

// stored notes the reporter's last stored seq.
func (t *localTask) stored(seq uint64) {
	t.mu.Lock()
	t.lastSeq = max(t.lastSeq, seq)
	t.mu.Unlock()
}

// finishFromRecord says how a job whose trainer is done or gone ended: it stores the
// events the trainer spooled but we did not receive, then reads the exit record. A trainer
// without one crashed: the job is retried (Exit.Retry) with the cause in words.
func (t *localTask) finishFromRecord() Exit {
	t.ingestSpool()
	rec, err := plugins.ReadExitRecord(t.jobDir)
	switch {
	case err == nil && rec.Nonce == t.nonce && plugins.Terminal(rec.State):
		return Exit{State: rec.State, Error: rec.Error}
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return Exit{State: StatusFailed, Error: "trainer exit record unreadable: " + err.Error()}
	}
	return Exit{Retry: true, Error: exitCause(t.crashFacts())}
}

// crashFacts gathers what tells how a trainer without an exit record ended: its wait
// status and stderr (when this daemon launched it) and the OOM kills its cgroup counted.
func (t *localTask) crashFacts() exitFacts {
	f := exitFacts{OOMKills: -1}
	t.mu.Lock()
	client, pid, oom, base := t.client, t.proc.PID, t.oom, t.oomBase
	t.mu.Unlock()
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

// ingestSpool stores the spooled events after the last stored one.
func (t *localTask) ingestSpool() {
	if t.jobDir == "" {
		return
	}
	t.mu.Lock()
	since := t.lastSeq
	t.mu.Unlock()
	b := newBatcher(t.r, t.id, t.l.log, t.stored)
	_, err := plugins.ReadSpool(filepath.Join(t.jobDir, plugins.SpoolFile), 0, -1, since, func(e plugins.Event) error {
		b.add(e)
		return nil
	})
	b.flush()
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.l.log.Warn("read event spool", "job_id", t.id, "err", err)
	}
}

// letGo stops tracking the job's trainer: its GPUs return to the pool and the connection
// is shut down. A trainer that was reachable a moment ago has a process group that is
// still provably ours, so what it left behind (dataloader workers, a background
// validation script) is killed after it shuts down, and nothing is reparented to init.
func (t *localTask) letGo() {
	t.l.release(t.id)
	t.mu.Lock()
	defer t.mu.Unlock()
	if client, pid := t.client, t.proc.PID; client != nil {
		go func() {
			client.Shutdown()
			killGroup(pid)
		}()
		t.client = nil
	}
}

// batcher stores a job's events in group commits: while one batch is being stored, the
// events that arrive meanwhile wait and go into the next. At a low rate each event is
// stored (and so published) on its own, at once; at a high rate batches grow by
// themselves, so a trainer emitting tens of thousands of events a second costs a few
// hundred transactions, and no event waits for a timer. When maxBatch events wait, add
// stores them itself: the receive loop is held back (the trainer is not; its spool
// keeps everything) instead of memory growing.
type batcher struct {
	r      Reporter
	id     string
	log    interface{ Error(string, ...any) }
	stored func(lastSeq uint64) // told the reporter's LastSeq after each store
	kick   chan struct{}        // capacity 1: "events are pending" for run

	// mu guards seen and pending.
	mu      sync.Mutex
	seen    time.Time // when the last event arrived
	pending []plugins.Event

	// storeMu serialises stores, so batches are stored in the order they were taken.
	storeMu sync.Mutex
}

// maxBatch bounds one group commit.
const maxBatch = 4096

func newBatcher(r Reporter, id string, log interface{ Error(string, ...any) }, stored func(uint64)) *batcher {
	return &batcher{r: r, id: id, log: log, stored: stored, seen: time.Now(), kick: make(chan struct{}, 1)}
}

// run stores pending events as they come until ctx ends.
func (b *batcher) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.kick:
			b.store()
		}
	}
}

func (b *batcher) lastEvent() time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.seen
}

func (b *batcher) add(evs ...plugins.Event) {
	b.mu.Lock()
	b.seen = time.Now()
	b.pending = append(b.pending, evs...)
	full := len(b.pending) >= maxBatch
	b.mu.Unlock()
	if full {
		b.store()
		return
	}
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// flush stores whatever is pending before it returns.
func (b *batcher) flush() { b.store() }

func (b *batcher) store() {
	b.storeMu.Lock()
	defer b.storeMu.Unlock()
	b.mu.Lock()
	batch := b.pending
	b.pending = nil
	b.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	last, err := b.r.Events(b.id, batch)
	if err != nil {
		// The spool still has them: the next restart or finishFromRecord re-reads it.
		b.log.Error("store events", "job_id", b.id, "err", err)
		return
	}
	if b.stored != nil {
		b.stored(last)
	}
}

// Info asks the trainer what it is (version, backend); the foreground command prints it.
func (t *localTask) Info(ctx context.Context) (plugins.Info, error) {
	t.mu.Lock()
	client := t.client
	t.mu.Unlock()
	if client == nil {
		return plugins.Info{}, ErrUnreachable
	}
	return client.Info(ctx)
}

// Kill ends the trainer's process group at once, without a grace period (the foreground
// command's last resort); the task then ends as a crash does.
func (t *localTask) Kill() {
	t.mu.Lock()
	pid := t.proc.PID
	t.mu.Unlock()
	killGroup(pid)
}
