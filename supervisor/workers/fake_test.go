package workers

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"simpletuner/plugins"
	"simpletuner/plugins/workerproto"
	"simpletuner/store"
	"simpletuner/supervisor/jobs"
	"simpletuner/supervisor/workers/workerstest"
)

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }
func newClock() *clock               { return &clock{t: time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)} }
func discard() *slog.Logger          { return slog.New(slog.DiscardHandler) }
func strp(s string) *string          { return &s }
func evs(from, to uint64) []plugins.Event {
	var out []plugins.Event
	for s := from; s <= to; s++ {
		out = append(out, plugins.Event{Seq: s, Type: "progress", Severity: "info"})
	}
	return out
}

// env is a registry over an in-memory store with a fake job manager and clock.
type env struct {
	t   *testing.T
	db  *store.DB
	src *workerstest.Jobs
	clk *clock
	reg *Registry
}

func newEnv(t *testing.T) *env {
	t.Helper()
	db, err := store.OpenInMemory(discard())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	e := &env{t: t, db: db, src: workerstest.New(), clk: newClock()}
	e.reopen()
	return e
}

// reopen builds a new registry over the same store (a daemon restart).
func (e *env) reopen() {
	e.t.Helper()
	reg, err := New(Config{HeartbeatTimeout: 2 * time.Minute, PingEvery: time.Hour, Now: e.clk.now}, e.db, e.src, discard())
	if err != nil {
		e.t.Fatal(err)
	}
	e.reg = reg
}

// worker creates and registers a worker; it returns its id and token.
func (e *env) worker(name string, gpus int, labels map[string]string) (string, string) {
	e.t.Helper()
	w, tok, err := e.reg.Create(CreateRequest{Name: name})
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.reg.Register(w.ID, workerproto.RegisterRequest{Name: name, Persistent: true, Labels: labels,
		GPUInfo: workerproto.GPUInfo{Name: "A100", Count: gpus, Accelerator: "cuda"}}); err != nil {
		e.t.Fatal(err)
	}
	return w.ID, tok
}

// sse is a running dispatch stream whose events arrive on a channel.
type sse struct {
	ch     chan outEvent
	cancel context.CancelFunc
	done   chan error
}

func (e *env) stream(id string) *sse {
	e.t.Helper()
	st, err := e.reg.OpenStream(id, id)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &sse{ch: make(chan outEvent, 64), cancel: cancel, done: make(chan error, 1)}
	go func() {
		s.done <- st.Run(ctx, func(typ string, data []byte) error { s.ch <- outEvent{typ: typ, data: data}; return nil })
	}()
	e.t.Cleanup(func() { cancel(); <-s.done })
	return s
}

// next waits for the stream's next event that is not a ping.
func (s *sse) next(t *testing.T) outEvent {
	t.Helper()
	for {
		select {
		case ev := <-s.ch:
			if ev.typ != workerproto.EventPing {
				return ev
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no event on the dispatch stream")
		}
	}
}

// launch places and launches a job through the executor, as the manager does.
func (e *env) launch(j *store.Job) jobs.Task {
	e.t.Helper()
	ex := e.reg.Executor()
	ctx := context.Background()
	if err := ex.Admit(ctx, j); err != nil {
		e.t.Fatalf("admit: %v", err)
	}
	p, err := ex.Place(ctx, j)
	if err != nil || p.Outcome != jobs.PlaceStart {
		e.t.Fatalf("place: %+v %v", p, err)
	}
	task, err := ex.Launch(ctx, j, p, e.src)
	if err != nil {
		e.t.Fatalf("launch: %v", err)
	}
	return task
}

// waitExit waits for a task's exit.
func waitExit(t *testing.T, task jobs.Task) jobs.Exit {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	x, err := task.Wait(ctx)
	if err != nil {
		t.Fatalf("wait: %v", err)
	}
	return x
}
