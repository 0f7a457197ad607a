package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"simpletuner/plugins"
	"simpletuner/plugins/kit/kittest"
	"simpletuner/store"
	"simpletuner/supervisor/gpu"
)

// fakeExec is a scripted executor: place decides placements, each launch gets a fakeTask
// the test ends by sending on its exit channel.
type fakeExec struct {
	kind       string
	place      func(j *store.Job) Placement
	admitErr   error
	recoverErr error

	// mu guards the fields below.
	mu        sync.Mutex
	launched  []string
	recovered []string
	tasks     []*fakeTask
	released  int
}

type fakeTask struct {
	h    Handle
	exit chan Exit
}

func (t *fakeTask) Handle() Handle { return t.h }
func (t *fakeTask) Command(context.Context, plugins.Command) error {
	select {
	case t.exit <- Exit{State: StatusCancelled}:
	default:
	}
	return nil
}
func (t *fakeTask) Wait(ctx context.Context) (Exit, error) {
	select {
	case e := <-t.exit:
		return e, nil
	case <-ctx.Done():
		return Exit{}, ctx.Err()
	}
}

func (f *fakeExec) Kind() string { return f.kind }
func (f *fakeExec) Admit(context.Context, *store.Job) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.admitErr
}
func (f *fakeExec) Place(_ context.Context, j *store.Job) (Placement, error) {
	return f.place(j), nil
}
func (f *fakeExec) Release(*store.Job, Placement) {
	f.mu.Lock()
	f.released++
	f.mu.Unlock()
}

func (f *fakeExec) newTask(j *store.Job, r Reporter) (*fakeTask, error) {
	h, _ := NewHandle(f.kind, 1, map[string]string{"job": j.ID})
	if err := r.SaveHandle(j.ID, h); err != nil {
		return nil, err
	}
	t := &fakeTask{h: h, exit: make(chan Exit, 1)}
	f.mu.Lock()
	f.tasks = append(f.tasks, t)
	f.mu.Unlock()
	return t, nil
}

func (f *fakeExec) Launch(_ context.Context, j *store.Job, p Placement, r Reporter) (Task, error) {
	t, err := f.newTask(j, r)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.launched = append(f.launched, j.ID)
	f.mu.Unlock()
	r.Running(j.ID)
	return t, nil
}

func (f *fakeExec) Recover(_ context.Context, j *store.Job, r Reporter) (Task, error) {
	f.mu.Lock()
	f.recovered = append(f.recovered, j.ID)
	f.mu.Unlock()
	if f.recoverErr != nil {
		return nil, f.recoverErr
	}
	return f.newTask(j, r)
}

// lastTask waits for the n-th task (1-based) the executor launched or recovered.
func (f *fakeExec) task(t *testing.T, n int) *fakeTask {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		f.mu.Lock()
		if len(f.tasks) >= n {
			tk := f.tasks[n-1]
			f.mu.Unlock()
			return tk
		}
		f.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("%s executor: task %d never came", f.kind, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (f *fakeExec) count() (launched int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.launched)
}

func always(o PlaceOutcome, where, reason string) func(*store.Job) Placement {
	return func(*store.Job) Placement { return Placement{Outcome: o, Where: where, Reason: reason} }
}

// statusSink records, for each status change it hears of, whether the job had a handle.
type statusSink struct {
	mu         sync.Mutex
	noHandleAt []string // "id:status" of running jobs seen without a handle
	running    int
}

func (s *statusSink) Append(string, []plugins.Event) error { return nil }
func (s *statusSink) JobStatus(j *store.Job) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if j.Status == StatusRunning {
		s.running++
		if j.Handle == nil {
			s.noHandleAt = append(s.noHandleAt, j.ID+":"+j.Status)
		}
	}
}

// fakeManager starts a Manager with the fake executors (the first through Config, the
// rest through AddExecutor).
func (e *env) fakeManager(cfg Config, execs ...Executor) *Manager {
	e.t.Helper()
	if len(execs) > 0 {
		cfg.Executors = execs[:1]
	}
	return e.managerAdding(cfg, execs[min(1, len(execs)):], kittest.EnvSteps+"=3", kittest.EnvStepMS+"=5")
}

func submitTo(t *testing.T, m *Manager, target string) (*store.Job, error) {
	t.Helper()
	cfg, _ := json.Marshal(map[string]any{"--output_dir": t.TempDir(), "--model_family": "dit"})
	return m.Submit(context.Background(), SubmitRequest{Owner: "t", Config: cfg, Target: target, GPU: gpu.Request{NumProcesses: 1}})
}

// TestAutoPrefersAWorkerOfferThenLocal: target auto goes to a worker that offers to run
// it, and to this machine when the workers only wait; the handle is stored before the job
// is reported running.
func TestAutoPrefersAWorkerOfferThenLocal(t *testing.T) {
	e := newEnv(t, gpu.NewFake())
	offer := true
	var mu sync.Mutex
	w := &fakeExec{kind: KindWorker, place: func(*store.Job) Placement {
		mu.Lock()
		defer mu.Unlock()
		if offer {
			return Placement{Outcome: PlaceStart, Where: "w1"}
		}
		return Placement{Outcome: PlaceWait, Reason: "no idle worker matches"}
	}}
	sink := &statusSink{}
	m := e.fakeManager(Config{Events: sink}, w)
	a, err := submitTo(t, m, "")
	if err != nil {
		t.Fatal(err)
	}
	ra := waitStatus(t, m, a.ID, 20*time.Second, StatusRunning)
	if ra.Executor != KindWorker || ra.WorkerID != "w1" || ra.Target != TargetAuto || ra.Handle == nil || ra.Handle.Kind != KindWorker {
		t.Fatalf("job on the worker: %+v", ra)
	}
	mu.Lock()
	offer = false
	mu.Unlock()
	b, err := submitTo(t, m, TargetAuto)
	if err != nil {
		t.Fatal(err)
	}
	rb := waitStatus(t, m, b.ID, 20*time.Second, StatusCompleted)
	if rb.Executor != KindLocal || rb.WorkerID != "" || w.count() != 1 {
		t.Fatalf("job placed on %q (worker %q); worker launches %d", rb.Executor, rb.WorkerID, w.count())
	}
	w.task(t, 1).exit <- Exit{State: StatusCompleted}
	waitStatus(t, m, a.ID, 20*time.Second, StatusCompleted)
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if sink.running < 2 || len(sink.noHandleAt) > 0 {
		t.Fatalf("running reported %d times; without a handle: %v", sink.running, sink.noHandleAt)
	}
}

// TestTargetsWithoutExecutorsAreRefused: target=slurm without Slurm and an unknown target
// are refused at submission, with messages a person can act on, and nothing is stored.
func TestTargetsWithoutExecutorsAreRefused(t *testing.T) {
	e := newEnv(t, gpu.NewFake())
	m := e.fakeManager(Config{})
	if _, err := submitTo(t, m, TargetSlurm); !errors.Is(err, ErrNoExecutor) || !strings.Contains(err.Error(), "no Slurm cluster is configured") {
		t.Fatalf("target=slurm: %v", err)
	}
	if _, err := submitTo(t, m, "cloud"); !errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), "unknown target") {
		t.Fatalf("target=cloud: %v", err)
	}
	if all, _ := m.List(); len(all) != 0 {
		t.Fatalf("%d jobs stored", len(all))
	}
}

// TestWorkerTargetWaitsWithAReasonOrFails: a job for a worker waits in the queue with the
// executor's reason in its note; one the only candidate rejects fails with the reason.
func TestWorkerTargetWaitsWithAReasonOrFails(t *testing.T) {
	e := newEnv(t, gpu.NewFake())
	reject := false
	var mu sync.Mutex
	w := &fakeExec{kind: KindWorker, place: func(*store.Job) Placement {
		mu.Lock()
		defer mu.Unlock()
		if reject {
			return Placement{Outcome: PlaceReject, Reason: "no worker has 8 GPUs"}
		}
		return Placement{Outcome: PlaceWait, Reason: "all matching workers are busy"}
	}}
	m := e.fakeManager(Config{}, w)
	j, err := submitTo(t, m, TargetWorker)
	if err != nil {
		t.Fatal(err)
	}
	if j.Status != StatusQueued || j.Note != "all matching workers are busy" {
		t.Fatalf("job %s note %q", j.Status, j.Note)
	}
	mu.Lock()
	reject = true
	mu.Unlock()
	m.Kick()
	f := waitStatus(t, m, j.ID, 20*time.Second, StatusFailed)
	if f.Error != "no worker has 8 GPUs" {
		t.Fatalf("error %q", f.Error)
	}
}

// TestLostJobIsRetriedUpToLostRetriesWithResume: a task whose place went away is requeued
// to resume from its latest checkpoint LostRetries times, then fails.
func TestLostJobIsRetriedUpToLostRetriesWithResume(t *testing.T) {
	e := newEnv(t, gpu.NewFake())
	w := &fakeExec{kind: KindWorker, place: always(PlaceStart, "w1", "")}
	m := e.fakeManager(Config{LostRetries: 2, MaxAttempts: 1}, w)
	j, err := submitTo(t, m, TargetWorker)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		w.task(t, i).exit <- Exit{Retry: true, Lost: true, Error: "worker w1 stopped sending heartbeats"}
	}
	f := waitStatus(t, m, j.ID, 20*time.Second, StatusFailed)
	if f.LostCount != 2 || f.Attempts != 3 || w.count() != 3 || !strings.Contains(f.Error, "stopped sending heartbeats") {
		t.Fatalf("lost %d attempts %d launches %d error %q", f.LostCount, f.Attempts, w.count(), f.Error)
	}
	var cfg map[string]any
	json.Unmarshal(f.Config, &cfg)
	if cfg["--resume_from_checkpoint"] != "latest" {
		t.Fatalf("lost job does not resume: %v", cfg)
	}
}

// TestRetryIsBoundedByMaxAttempts: an end without a final status (Retry) is retried until
// MaxAttempts launches, then the job fails with the task's error.
func TestRetryIsBoundedByMaxAttempts(t *testing.T) {
	e := newEnv(t, gpu.NewFake())
	w := &fakeExec{kind: KindSlurm, place: always(PlaceStart, "", "")}
	m := e.fakeManager(Config{MaxAttempts: 2, RetryBase: 10 * time.Millisecond, RetryMax: 20 * time.Millisecond}, w)
	j, err := submitTo(t, m, TargetSlurm)
	if err != nil {
		t.Fatal(err)
	}
	w.task(t, 1).exit <- Exit{Retry: true, Error: "slurm job 42 ended: NODE_FAIL"}
	w.task(t, 2).exit <- Exit{Retry: true, Error: "slurm job 43 ended: NODE_FAIL"}
	f := waitStatus(t, m, j.ID, 20*time.Second, StatusFailed)
	if f.Attempts != 2 || f.LostCount != 0 || f.Error != "slurm job 43 ended: NODE_FAIL" {
		t.Fatalf("attempts %d lost %d error %q", f.Attempts, f.LostCount, f.Error)
	}
}

// TestRecoverIsRoutedByTheJobsExecutor: after a restart each launched job goes to the
// executor that launched it; ErrRequeue puts a job back in the queue (and it launches
// again); a job of an executor no longer configured is lost with a reason.
func TestRecoverIsRoutedByTheJobsExecutor(t *testing.T) {
	e := newEnv(t, gpu.NewFake())
	mk := func(id, status, executor string) {
		t.Helper()
		h, _ := NewHandle(executor, 1, map[string]string{"job": id})
		j := &store.Job{ID: id, Status: status, Executor: executor, Handle: &h, Target: executor, CreatedAt: time.Now(),
			Config: json.RawMessage(`{"--model_family":"dit"}`), NumGPUs: 1, Attempts: 1}
		if err := e.db.Jobs().Create(j); err != nil {
			t.Fatal(err)
		}
	}
	mk("onworker", StatusRunning, KindWorker)
	mk("onslurm", StatusStarting, KindSlurm)
	mk("gone", StatusRunning, "kubernetes")
	w := &fakeExec{kind: KindWorker, place: always(PlaceWait, "", "busy")}
	s := &fakeExec{kind: KindSlurm, place: always(PlaceStart, "", ""), recoverErr: ErrRequeue}
	m := e.fakeManager(Config{}, w, s)
	w.mu.Lock()
	wr := append([]string(nil), w.recovered...)
	w.mu.Unlock()
	s.mu.Lock()
	sr := append([]string(nil), s.recovered...)
	s.mu.Unlock()
	if fmt.Sprint(wr) != "[onworker]" || fmt.Sprint(sr) != "[onslurm]" {
		t.Fatalf("worker recovered %v, slurm recovered %v", wr, sr)
	}
	rs := waitStatus(t, m, "onslurm", 20*time.Second, StatusRunning)
	if rs.Attempts != 2 || s.count() != 1 {
		t.Fatalf("requeued job: attempts %d, launches %d", rs.Attempts, s.count())
	}
	g := waitStatus(t, m, "gone", 20*time.Second, StatusLost)
	if !strings.Contains(g.Error, "kubernetes") {
		t.Fatalf("error %q", g.Error)
	}
	w.task(t, 1).exit <- Exit{State: StatusStopped}
	waitStatus(t, m, "onworker", 20*time.Second, StatusStopped)
	if err := m.Command(context.Background(), "onslurm", plugins.CommandCancel); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, m, "onslurm", 20*time.Second, StatusCancelled)
}

// TestReporterEventsRefuseAGap: Events stores a batch that follows the stored events,
// skips a replay, and refuses a batch that would leave a hole with ErrSeqGap.
func TestReporterEventsRefuseAGap(t *testing.T) {
	e := newEnv(t, gpu.NewFake())
	m := e.fakeManager(Config{})
	if err := e.db.Jobs().Create(&store.Job{ID: "ev", Status: StatusRunning, CreatedAt: time.Now(), Config: json.RawMessage(`{}`)}); err != nil {
		t.Fatal(err)
	}
	batch := func(seqs ...uint64) []plugins.Event {
		var out []plugins.Event
		for _, s := range seqs {
			out = append(out, progressEvent(s))
		}
		return out
	}
	if last, err := m.Events("ev", batch(1, 2)); err != nil || last != 2 {
		t.Fatalf("first batch: %d %v", last, err)
	}
	if last, err := m.Events("ev", batch(4, 5)); !errors.Is(err, ErrSeqGap) || last != 2 {
		t.Fatalf("batch after a gap: %d %v", last, err)
	}
	if last, err := m.Events("ev", batch(2, 3, 4)); err != nil || last != 4 {
		t.Fatalf("batch with a replay: %d %v", last, err)
	}
	if n := len(events(t, e.db, "ev")); n != 4 {
		t.Fatalf("%d events stored, want 4", n)
	}
	j, _ := m.Get("ev")
	var p plugins.Progress
	if json.Unmarshal(j.Progress, &p) != nil || p.Step != 4 || j.LastSeq != 4 {
		t.Fatalf("progress %s last seq %d", j.Progress, j.LastSeq)
	}
	if _, err := m.Events("nojob", batch(1)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("events of no job: %v", err)
	}
}

// TestAutoSkipsExecutorsThatCannotAdmit: while a worker could take a job, the waiting job's
// note is the worker's reason; once no worker could (none registered matches), target auto
// asks this machine only, and the note says why it waits here.
func TestAutoSkipsExecutorsThatCannotAdmit(t *testing.T) {
	e := newEnv(t, gpu.NewFake(gpu.FakeH100(1)...))
	w := &fakeExec{kind: KindWorker, place: always(PlaceWait, "", "no idle worker")}
	m := e.managerAdding(Config{}, []Executor{w}, kittest.EnvSteps+"=100000", kittest.EnvStepMS+"=10")
	a, err := submitTo(t, m, TargetAuto)
	if err != nil {
		t.Fatal(err)
	}
	waitStatus(t, m, a.ID, 20*time.Second, StatusRunning)
	b, err := submitTo(t, m, TargetAuto)
	if err != nil {
		t.Fatal(err)
	}
	if b.Status != StatusQueued || b.Note != "no idle worker" {
		t.Fatalf("second job %s, note %q", b.Status, b.Note)
	}
	w.mu.Lock()
	w.admitErr = fmt.Errorf("%w: no registered worker matches", ErrNoExecutor)
	w.mu.Unlock()
	m.Kick()
	deadline := time.Now().Add(20 * time.Second)
	for {
		j, _ := m.Get(b.ID)
		if strings.Contains(j.Note, "GPU") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("note %q, want the local reason", j.Note)
		}
		time.Sleep(10 * time.Millisecond)
	}
	m.Command(context.Background(), a.ID, plugins.CommandCancel)
	waitStatus(t, m, a.ID, 20*time.Second, StatusCancelled)
}
