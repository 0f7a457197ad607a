package workers

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"testing"
	"time"

	"simpletuner/plugins"
	"simpletuner/plugins/workerproto"
	"simpletuner/store"
	"simpletuner/supervisor/jobs"
)

// fakeSource is a job manager as the registry sees it: job records, and what the
// registry reported about them.
type fakeSource struct {
	mu      sync.Mutex
	jobs    map[string]*store.Job
	running map[string]int
	events  map[string][]plugins.Event
	handles map[string]jobs.Handle
	notes   map[string]string
	kicks   int
}

func newFakeSource() *fakeSource {
	return &fakeSource{jobs: map[string]*store.Job{}, running: map[string]int{}, events: map[string][]plugins.Event{},
		handles: map[string]jobs.Handle{}, notes: map[string]string{}}
}

func (f *fakeSource) add(j *store.Job) *store.Job {
	f.mu.Lock()
	defer f.mu.Unlock()
	if j.Config == nil {
		j.Config = json.RawMessage(`{"--model_family":"dit"}`)
	}
	if j.Status == "" {
		j.Status = jobs.StatusStarting
	}
	f.jobs[j.ID] = j
	return j
}

func (f *fakeSource) Get(id string) (*store.Job, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	j, ok := f.jobs[id]
	if !ok {
		return nil, jobs.ErrNotFound
	}
	c := *j
	return &c, nil
}

func (f *fakeSource) Kick() { f.mu.Lock(); f.kicks++; f.mu.Unlock() }

func (f *fakeSource) SaveHandle(id string, h jobs.Handle) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.handles[id] = h
	if j := f.jobs[id]; j != nil {
		j.Handle = &h
	}
	return nil
}

func (f *fakeSource) Running(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.running[id]++
	if j := f.jobs[id]; j != nil {
		j.Status = jobs.StatusRunning
	}
}

// Events follows the Reporter's contract: events at or below LastSeq are skipped, a
// batch starting beyond LastSeq+1 is ErrSeqGap.
func (f *fakeSource) Events(id string, evs []plugins.Event) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	j := f.jobs[id]
	if len(evs) > 0 && evs[0].Seq > j.LastSeq+1 {
		return j.LastSeq, jobs.ErrSeqGap
	}
	for _, e := range evs {
		if e.Seq <= j.LastSeq {
			continue
		}
		f.events[id] = append(f.events[id], e)
		j.LastSeq = e.Seq
	}
	return j.LastSeq, nil
}

func (f *fakeSource) Note(id, note string) { f.mu.Lock(); f.notes[id] = note; f.mu.Unlock() }

func (f *fakeSource) kicked() int { f.mu.Lock(); defer f.mu.Unlock(); return f.kicks }

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
	src *fakeSource
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
	e := &env{t: t, db: db, src: newFakeSource(), clk: newClock()}
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
