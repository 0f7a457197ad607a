package kit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"simpletuner/plugins"
)

// Host implements plugins.Trainer for one job run by a Runner.
type Host struct {
	runner Runner
	log    *slog.Logger
	pid    int
	// linger is how long the process stays after the job ends when no daemon has read
	// the final event; then it exits anyway (the daemon reads the spool and exit record).
	linger time.Duration
	// done is closed when the process may exit.
	done     chan struct{}
	doneOnce sync.Once
	commands chan plugins.Command

	// mu guards every field below.
	mu        sync.Mutex
	job       *Job
	nonce     string
	state     string
	errMsg    string
	progress  plugins.Progress
	seq       uint64
	spool     *os.File
	spoolPath string
	spoolSize int64         // bytes of complete lines in the spool
	changed   chan struct{} // closed and replaced on every append and state change
	delivered bool          // a reader streamed the terminal event
	// recent holds the newest events appended (at most 2×recentKeep of them and
	// recentMaxBytes of payload, contiguous by seq), so a reader that keeps up is served
	// from memory; the spool serves replays and readers further behind. recentBytes is
	// the payload held.
	recent      []plugins.Event
	recentBytes int
}

// recentKeep is how many of the newest events a Host keeps in memory, and
// recentMaxBytes how much of their payload (validation images are large).
const (
	recentKeep     = 4096
	recentMaxBytes = 16 << 20
)

func eventBytes(e *plugins.Event) int { return len(e.Data) + len(e.Title) + len(e.Message) }

// Options tune a Host.
type Options struct {
	Linger time.Duration // default 30 s
	// StartTimeout is how long a launched trainer waits for Start before it exits: a
	// daemon that died between launching it and starting the job must not leave it
	// behind forever (default 2 min).
	StartTimeout time.Duration
	// SeqBase is the seq the job's events are numbered after (plugins.EnvSeqBase): 0 for
	// a job's first attempt.
	SeqBase uint64
}

// NewHost returns a Host for runner.
func NewHost(r Runner, log *slog.Logger, o Options) *Host {
	if o.Linger == 0 {
		o.Linger = 30 * time.Second
	}
	if o.StartTimeout == 0 {
		o.StartTimeout = 2 * time.Minute
	}
	h := &Host{runner: r, log: log, pid: os.Getpid(), linger: o.Linger, done: make(chan struct{}),
		commands: make(chan plugins.Command, 16), state: plugins.StateIdle, changed: make(chan struct{}), seq: o.SeqBase}
	time.AfterFunc(o.StartTimeout, func() {
		h.mu.Lock()
		idle := h.job == nil
		h.mu.Unlock()
		if idle {
			h.log.Warn("no job was started; exiting", "waited", o.StartTimeout)
			h.exit()
		}
	})
	return h
}

var _ plugins.Trainer = (*Host)(nil)

// Done is closed when the trainer process should exit.
func (h *Host) Done() <-chan struct{} { return h.done }

// Info implements plugins.Trainer.
func (h *Host) Info(ctx context.Context) (plugins.Info, error) {
	info, err := h.runner.Info(ctx)
	info.ProtocolVersion = plugins.ProtocolVersion
	return info, err
}

// Validate implements plugins.Trainer.
func (h *Host) Validate(ctx context.Context, cfg json.RawMessage) ([]plugins.Issue, error) {
	return h.runner.Validate(ctx, cfg)
}

// Start implements plugins.Trainer: it takes the output-dir lock, opens the spool and runs
// the job in the background.
func (h *Host) Start(ctx context.Context, req plugins.StartRequest) (int, error) {
	h.mu.Lock()
	if h.job != nil {
		h.mu.Unlock()
		return 0, plugins.ErrAlreadyStarted
	}
	if req.JobID == "" || req.JobDir == "" {
		h.mu.Unlock()
		return 0, fmt.Errorf("%w: job id and job dir are required", plugins.ErrInvalidConfig)
	}
	path := filepath.Join(req.JobDir, plugins.SpoolFile)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		h.mu.Unlock()
		return 0, fmt.Errorf("open event spool: %w", err)
	}
	job := &Job{ID: req.JobID, Config: req.Config, Dir: req.JobDir, Log: h.log.With("job_id", req.JobID), host: h}
	h.job, h.nonce, h.spool, h.spoolPath, h.state = job, req.Nonce, f, path, plugins.StateStarting
	h.mu.Unlock()

	unlock, lockErr := lockOutputDir(req.Config)
	h.emit(plugins.EventJobStatus, "info", "Trainer started", "", map[string]any{"status": plugins.StateStarting, "pid": h.pid})
	go h.run(job, unlock, lockErr)
	return h.pid, nil
}

func (h *Host) run(job *Job, unlock func(), lockErr error) {
	err := lockErr
	if err == nil {
		err = h.safeRun(job)
		// Release the output directory before the terminal event: whoever sees the job end
		// (a resume started at once) must find the directory free.
		unlock()
	}
	state, msg := plugins.StateCompleted, ""
	switch {
	case err == nil:
	case errors.Is(err, ErrStopped):
		state = plugins.StateStopped
	case errors.Is(err, ErrCancelled):
		state = plugins.StateCancelled
	default:
		state, msg = plugins.StateFailed, err.Error()
	}
	h.finish(state, msg)
}

// safeRun turns a panic in the Runner into a failed job rather than a dead process
// without an exit record.
func (h *Host) safeRun(job *Job) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("trainer panic: %v", v)
		}
	}()
	return h.runner.Run(context.Background(), job)
}

func (h *Host) finish(state, msg string) {
	severity := "info"
	if state == plugins.StateFailed {
		severity = "error"
	}
	h.mu.Lock()
	h.errMsg = msg
	progress := h.progress
	h.mu.Unlock()
	seq := h.emit(plugins.EventJobStatus, severity, "Job "+state, msg, map[string]any{"status": state, "error": msg})
	h.mu.Lock()
	h.spool.Sync()
	rec := plugins.ExitRecord{JobID: h.job.ID, Nonce: h.nonce, State: state, Error: msg, LastSeq: seq, Progress: progress, PID: h.pid, FinishedAt: time.Now().UTC()}
	h.mu.Unlock()
	// The exit record is durable before anyone can observe the terminal state: a daemon
	// that saw the job end always finds the record.
	if err := plugins.WriteExitRecord(h.job.Dir, rec); err != nil {
		h.log.Error("write exit record", "err", err)
	}
	h.mu.Lock()
	h.state = state
	h.broadcastLocked()
	h.mu.Unlock()
	h.log.Info("job ended", "state", state, "error", msg)
	// Stay reachable until a reader has the terminal event or the linger ends.
	go func() {
		deadline := time.After(h.linger)
		for {
			h.mu.Lock()
			delivered, ch := h.delivered, h.changed
			h.mu.Unlock()
			if delivered {
				// Give the daemon a moment to read the rest and shut us down itself.
				time.Sleep(2 * time.Second)
				h.exit()
				return
			}
			select {
			case <-ch:
			case <-deadline:
				h.exit()
				return
			}
		}
	}()
}

func (h *Host) exit() { h.doneOnce.Do(func() { close(h.done) }) }

// emit appends one event to the spool; the spool is the stream's single source of truth.
func (h *Host) emit(typ, severity, title, message string, data any) uint64 {
	var raw json.RawMessage
	if data != nil {
		b, err := json.Marshal(data)
		if err != nil {
			b, _ = json.Marshal(map[string]string{"marshal_error": err.Error()})
		}
		raw = b
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.spool == nil {
		return 0
	}
	h.seq++
	e := plugins.Event{Seq: h.seq, Type: typ, Severity: severity, Time: time.Now().UTC(), Title: title, Message: message, Data: raw}
	line, err := e.AppendJSON(make([]byte, 0, 256))
	if err != nil {
		h.log.Error("event not encodable", "type", typ, "err", err)
		h.seq--
		return 0
	}
	line = append(line, '\n')
	if _, err := h.spool.Write(line); err != nil {
		h.log.Error("event spool write failed", "err", err)
		h.seq--
		return 0
	}
	h.spoolSize += int64(len(line))
	h.recent = append(h.recent, e)
	h.recentBytes += eventBytes(&e)
	if len(h.recent) > 2*recentKeep || h.recentBytes > recentMaxBytes {
		// Down to half of either bound (so this runs once per many appends), always
		// keeping the newest event; a fresh array lets the dropped payloads go.
		keep, bytes := 0, 0
		for i := len(h.recent) - 1; i >= 0 && keep < recentKeep; i-- {
			b := eventBytes(&h.recent[i])
			if keep > 0 && bytes+b > recentMaxBytes/2 {
				break
			}
			keep, bytes = keep+1, bytes+b
		}
		h.recent = append(make([]plugins.Event, 0, 2*recentKeep+1), h.recent[len(h.recent)-keep:]...)
		h.recentBytes = bytes
	}
	if typ == plugins.EventJobStatus || severity == "error" {
		// Lifecycle events must survive a power loss; progress may not pay an fsync each.
		h.spool.Sync()
	}
	h.broadcastLocked()
	return e.Seq
}

func (h *Host) broadcastLocked() {
	close(h.changed)
	h.changed = make(chan struct{})
}

func (h *Host) setProgress(p plugins.Progress) {
	h.mu.Lock()
	h.progress = p
	h.mu.Unlock()
}

func (h *Host) setState(s string) {
	h.mu.Lock()
	if !plugins.Terminal(h.state) {
		h.state = s
	}
	h.broadcastLocked()
	h.mu.Unlock()
}

// spoolBatch is how many events read back from the spool go to fn at a time.
const spoolBatch = 512

// Events implements plugins.Trainer by following the spool: replay from disk, then wait
// for appends, until the terminal event is sent. Events still held in memory are sent
// from there, without reading the spool back.
func (h *Host) Events(ctx context.Context, since uint64, fn func([]plugins.Event) error) error {
	var off int64
	last := since
	var batch []plugins.Event
	for {
		h.mu.Lock()
		path, size, ch, state, seq := h.spoolPath, h.spoolSize, h.changed, h.state, h.seq
		batch = batch[:0]
		fromMemory := len(h.recent) > 0 && h.recent[0].Seq <= last+1
		if fromMemory {
			if i := last + 1 - h.recent[0].Seq; i < uint64(len(h.recent)) {
				batch = append(batch, h.recent[i:]...)
			}
		}
		h.mu.Unlock()
		if path == "" {
			return plugins.ErrNotStarted
		}
		sent := 0
		if fromMemory {
			if len(batch) > 0 {
				if err := fn(batch); err != nil {
					return err
				}
				last, sent = batch[len(batch)-1].Seq, len(batch)
			}
		} else {
			var err error
			off, err = plugins.ReadSpool(path, off, size, last, func(e plugins.Event) error {
				batch = append(batch, e)
				if len(batch) < spoolBatch {
					return nil
				}
				if err := fn(batch); err != nil {
					return err
				}
				last, sent, batch = e.Seq, sent+len(batch), batch[:0]
				return nil
			})
			if err == nil && len(batch) > 0 {
				err = fn(batch)
				last, sent = batch[len(batch)-1].Seq, sent+len(batch)
			}
			if err != nil {
				return err
			}
		}
		if plugins.Terminal(state) && last >= seq {
			h.mu.Lock()
			h.delivered = true
			h.broadcastLocked()
			h.mu.Unlock()
			return nil
		}
		if sent > 0 {
			continue // more may have come meanwhile
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Command implements plugins.Trainer.
func (h *Host) Command(_ context.Context, c plugins.Command) error {
	h.mu.Lock()
	state := h.state
	h.mu.Unlock()
	switch {
	case state == plugins.StateIdle:
		return plugins.ErrNotStarted
	case plugins.Terminal(state):
		return plugins.ErrJobEnded
	}
	select {
	case h.commands <- c:
		return nil
	default:
		return fmt.Errorf("%w: command queue full", plugins.ErrUnsupported)
	}
}

// Status implements plugins.Trainer.
func (h *Host) Status(_ context.Context) (plugins.Status, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	id := ""
	if h.job != nil {
		id = h.job.ID
	}
	return plugins.Status{JobID: id, State: h.state, PID: h.pid, Nonce: h.nonce, Progress: h.progress, LastSeq: h.seq, Error: h.errMsg}, nil
}

// lockOutputDir takes an exclusive flock on <output_dir>/.simpletuner.lock so two trainers
// can never write one output directory. A config without output_dir needs no lock.
func lockOutputDir(cfg json.RawMessage) (func(), error) {
	var m map[string]any
	if err := json.Unmarshal(cfg, &m); err != nil {
		return nil, fmt.Errorf("%w: config is not a JSON object: %w", plugins.ErrInvalidConfig, err)
	}
	dir, _ := m["--output_dir"].(string)
	if dir == "" {
		dir, _ = m["output_dir"].(string)
	}
	if dir == "" {
		return func() {}, nil
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("create output dir %s: %w", dir, err)
	}
	f, err := os.OpenFile(filepath.Join(dir, ".simpletuner.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open output dir lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("output dir %s is in use by another trainer (lock held): %w", dir, err)
	}
	fmt.Fprintf(f, "%d\n", os.Getpid())
	return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}
