package kit_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"simpletuner/plugins"
	"simpletuner/plugins/kit"
	"simpletuner/plugins/kit/kittest"
)

const asPlugin = "KIT_TEST_RUN_PLUGIN"

// The test binary doubles as a trainer plugin (the fake runner on the real kit).
func TestMain(m *testing.M) {
	if os.Getenv(asPlugin) == "1" {
		kit.Main(kittest.FromEnv())
		return
	}
	os.Exit(m.Run())
}

func launch(t *testing.T, jobDir string, env ...string) *plugins.Client {
	t.Helper()
	sock := t.TempDir()
	c, err := plugins.Launch(plugins.LaunchConfig{Path: os.Args[0], Env: append([]string{asPlugin + "=1", plugins.EnvJobDir + "=" + jobDir}, env...), SocketDir: sock})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Shutdown)
	return c
}

func collect(t *testing.T, tr plugins.Trainer, since uint64) []plugins.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out []plugins.Event
	if err := tr.Events(ctx, since, plugins.EachEvent(func(e plugins.Event) error { out = append(out, e); return nil })); err != nil {
		t.Fatalf("events: %v", err)
	}
	return out
}

func checkContiguous(t *testing.T, evs []plugins.Event, from uint64) {
	t.Helper()
	for i, e := range evs {
		if e.Seq != from+uint64(i)+1 {
			t.Fatalf("event %d has seq %d, want %d", i, e.Seq, from+uint64(i)+1)
		}
	}
}

func cfg(t *testing.T, outDir string) json.RawMessage {
	b, _ := json.Marshal(map[string]any{"--output_dir": outDir, "--model_family": "dit"})
	return b
}

func TestLaunchRunToCompletion(t *testing.T) {
	jobDir := t.TempDir()
	c := launch(t, jobDir, kittest.EnvSteps+"=10", kittest.EnvStepMS+"=5")
	ctx := context.Background()
	info, err := c.Info(ctx)
	if err != nil || info.Backend != "cpu" || info.ProtocolVersion != plugins.ProtocolVersion {
		t.Fatalf("info: %+v %v", info, err)
	}
	st, _ := c.Status(ctx)
	if st.State != plugins.StateIdle {
		t.Fatalf("state before start: %q", st.State)
	}
	if err := c.Command(ctx, plugins.CommandCheckpoint); !errors.Is(err, plugins.ErrNotStarted) {
		t.Fatalf("command before start: %v", err)
	}
	pid, err := c.Start(ctx, plugins.StartRequest{JobID: "j1", Config: cfg(t, t.TempDir()), JobDir: jobDir, Nonce: "n-1"})
	if err != nil || pid <= 0 || pid == os.Getpid() {
		t.Fatalf("start: pid %d %v", pid, err)
	}
	if _, err := c.Start(ctx, plugins.StartRequest{JobID: "j2", Config: cfg(t, t.TempDir()), JobDir: jobDir}); !errors.Is(err, plugins.ErrAlreadyStarted) {
		t.Fatalf("second start: %v", err)
	}
	evs := collect(t, c, 0)
	checkContiguous(t, evs, 0)
	last := evs[len(evs)-1]
	if last.Type != "job.status" || !strings.Contains(string(last.Data), `"completed"`) {
		t.Fatalf("last event: %+v", last)
	}
	progress := 0
	for _, e := range evs {
		if e.Type == "training.progress" {
			progress++
		}
	}
	if progress != 10 {
		t.Fatalf("%d progress events, want 10", progress)
	}
	st, _ = c.Status(ctx)
	if st.State != plugins.StateCompleted || st.Nonce != "n-1" || st.PID != pid || st.Progress.Step != 10 {
		t.Fatalf("final status: %+v", st)
	}
	rec, err := plugins.ReadExitRecord(jobDir)
	if err != nil || rec.State != plugins.StateCompleted || rec.LastSeq != last.Seq || rec.Nonce != "n-1" {
		t.Fatalf("exit record: %+v %v", rec, err)
	}
	if err := c.Command(ctx, plugins.CommandStop); !errors.Is(err, plugins.ErrJobEnded) {
		t.Fatalf("command after end: %v", err)
	}
	// Replay from the middle returns exactly the rest.
	tail := collect(t, c, 5)
	checkContiguous(t, tail, 5)
	if len(tail) != len(evs)-5 {
		t.Fatalf("replay from 5: %d events, want %d", len(tail), len(evs)-5)
	}
	// The spool on disk holds the same stream.
	var spooled []plugins.Event
	if _, err := plugins.ReadSpool(filepath.Join(jobDir, plugins.SpoolFile), 0, -1, 0, func(e plugins.Event) error { spooled = append(spooled, e); return nil }); err != nil || len(spooled) != len(evs) {
		t.Fatalf("spool: %d events, %v", len(spooled), err)
	}
}

func TestReattachAndStop(t *testing.T) {
	jobDir := t.TempDir()
	c := launch(t, jobDir, kittest.EnvSteps+"=100000", kittest.EnvStepMS+"=5")
	ctx := context.Background()
	pid, err := c.Start(ctx, plugins.StartRequest{JobID: "j1", Config: cfg(t, t.TempDir()), JobDir: jobDir, Nonce: "secret"})
	if err != nil {
		t.Fatal(err)
	}
	att, err := c.Attachment()
	if err != nil || att.PID != pid || att.Network != "unix" {
		t.Fatalf("attachment: %+v %v", att, err)
	}
	// A second client, as a restarted daemon would make it.
	r, err := plugins.Reattach(att, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := r.Status(ctx)
	if err != nil || st.Nonce != "secret" || st.PID != pid || st.JobID != "j1" {
		t.Fatalf("status over reattach: %+v %v", st, err)
	}
	// Stop it mid-training: once a step has been reported.
	deadline := time.Now().Add(30 * time.Second)
	for st.Progress.Step < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("no step reported: %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
		if st, err = r.Status(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Command(ctx, plugins.CommandStop); err != nil {
		t.Fatal(err)
	}
	evs := collect(t, r, 0)
	checkContiguous(t, evs, 0)
	if last := evs[len(evs)-1]; !strings.Contains(string(last.Data), `"stopped"`) || evs[len(evs)-2].Type != "training.checkpoint" {
		t.Fatalf("stop did not checkpoint then stop: %+v / %+v", evs[len(evs)-2], last)
	}
	if rec, err := plugins.ReadExitRecord(jobDir); err != nil || rec.State != plugins.StateStopped {
		t.Fatalf("exit record: %+v %v", rec, err)
	}
}

// runnerFunc adapts a function to kit.Runner for in-process tests.
type runnerFunc func(ctx context.Context, j *kit.Job) error

func (f runnerFunc) Info(context.Context) (plugins.Info, error) { return plugins.Info{}, nil }
func (f runnerFunc) Validate(context.Context, json.RawMessage) ([]plugins.Issue, error) {
	return nil, nil
}
func (f runnerFunc) Run(ctx context.Context, j *kit.Job) error { return f(ctx, j) }

func waitEnd(t *testing.T, h *kit.Host) plugins.Status {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		st, _ := h.Status(context.Background())
		if plugins.Terminal(st.State) {
			return st
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("job never ended")
	return plugins.Status{}
}

func TestTwoTrainersCannotShareAnOutputDir(t *testing.T) {
	out := t.TempDir()
	block := make(chan struct{})
	defer close(block)
	log := slog.New(slog.DiscardHandler)
	a := kit.NewHost(runnerFunc(func(ctx context.Context, j *kit.Job) error { <-block; return nil }), log, kit.Options{})
	b := kit.NewHost(runnerFunc(func(ctx context.Context, j *kit.Job) error { return nil }), log, kit.Options{})
	if _, err := a.Start(context.Background(), plugins.StartRequest{JobID: "a", Config: cfg(t, out), JobDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	dirB := t.TempDir() // a's Start took the output dir's lock before it returned
	if _, err := b.Start(context.Background(), plugins.StartRequest{JobID: "b", Config: cfg(t, out), JobDir: dirB}); err != nil {
		t.Fatal(err)
	}
	st := waitEnd(t, b)
	if st.State != plugins.StateFailed || !strings.Contains(st.Error, "in use by another trainer") {
		t.Fatalf("second trainer: %+v", st)
	}
	if st, _ := a.Status(context.Background()); st.State != plugins.StateStarting {
		t.Fatalf("first trainer disturbed: %+v", st)
	}
}

func TestRunnerPanicBecomesFailedJob(t *testing.T) {
	h := kit.NewHost(runnerFunc(func(ctx context.Context, j *kit.Job) error { panic("boom") }), slog.New(slog.DiscardHandler), kit.Options{Linger: time.Millisecond})
	dir := t.TempDir()
	if _, err := h.Start(context.Background(), plugins.StartRequest{JobID: "p", Config: json.RawMessage(`{}`), JobDir: dir}); err != nil {
		t.Fatal(err)
	}
	st := waitEnd(t, h)
	if st.State != plugins.StateFailed || !strings.Contains(st.Error, "boom") {
		t.Fatalf("status: %+v", st)
	}
	select {
	case <-h.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("host did not finish after the linger")
	}
	if rec, err := plugins.ReadExitRecord(dir); err != nil || rec.State != plugins.StateFailed {
		t.Fatalf("exit record: %+v %v", rec, err)
	}
}

func TestEventsFollowLiveAppends(t *testing.T) {
	release := make(chan struct{})
	h := kit.NewHost(runnerFunc(func(ctx context.Context, j *kit.Job) error {
		for i := range 100 {
			j.Emit("log", "info", "", "line "+string(rune('0'+i%10)), nil)
		}
		<-release
		for range 100 {
			j.Emit("log", "info", "", "more", nil)
		}
		return nil
	}), slog.New(slog.DiscardHandler), kit.Options{})
	if _, err := h.Start(context.Background(), plugins.StartRequest{JobID: "e", Config: json.RawMessage(`{}`), JobDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	got := make(chan []plugins.Event)
	var read atomic.Int64
	go func() {
		var evs []plugins.Event
		h.Events(context.Background(), 0, plugins.EachEvent(func(e plugins.Event) error { evs = append(evs, e); read.Add(1); return nil }))
		got <- evs
	}()
	// The reader has everything emitted so far and waits for more when the rest comes.
	deadline := time.Now().Add(30 * time.Second)
	for read.Load() < 1+100 {
		if time.Now().After(deadline) {
			t.Fatalf("the reader got %d of the first 101 events", read.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(release)
	evs := <-got
	checkContiguous(t, evs, 0)
	if len(evs) != 1+100+100+1 {
		t.Fatalf("%d events", len(evs))
	}
}

func TestLaunchFailureCarriesTheTrainersWords(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "broken-trainer")
	os.WriteFile(bin, []byte("#!/bin/sh\necho 'error while loading shared libraries: libcuda.so.1: cannot open shared object file' >&2\nexit 127\n"), 0o755)
	_, err := plugins.Launch(plugins.LaunchConfig{Path: bin, SocketDir: dir})
	if err == nil || !errors.Is(err, plugins.ErrTrainerGone) || !strings.Contains(err.Error(), "libcuda.so.1") {
		t.Fatalf("got %v", err)
	}
}

func TestTrainerNeverStartedExitsByItself(t *testing.T) {
	h := kit.NewHost(runnerFunc(func(ctx context.Context, j *kit.Job) error { return nil }), slog.New(slog.DiscardHandler), kit.Options{StartTimeout: 50 * time.Millisecond})
	select {
	case <-h.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("an idle trainer never gave up waiting for Start")
	}
}

// TestEventsFromSpoolThenMemory: a reader from the start of a long stream reads the
// events no longer held in memory from the spool, then the rest from memory, with no gap
// or repeat; a reader near the end is served from memory; what it gets is what the spool
// holds.
func TestEventsFromSpoolThenMemory(t *testing.T) {
	const n = 20000 // several times what a Host keeps in memory
	release := make(chan struct{})
	dir := t.TempDir()
	h := kit.NewHost(runnerFunc(func(ctx context.Context, j *kit.Job) error {
		for i := range n {
			j.Emit("training.progress", "info", "", "", map[string]int{"i": i})
		}
		<-release
		return nil
	}), slog.New(slog.DiscardHandler), kit.Options{})
	if _, err := h.Start(context.Background(), plugins.StartRequest{JobID: "m", Config: json.RawMessage(`{}`), JobDir: dir}); err != nil {
		t.Fatal(err)
	}
	for {
		st, _ := h.Status(context.Background())
		if st.LastSeq >= n+1 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(release)
	all := collect(t, h, 0)
	checkContiguous(t, all, 0)
	if len(all) != n+2 {
		t.Fatalf("%d events, want %d", len(all), n+2)
	}
	tail := collect(t, h, n-5)
	checkContiguous(t, tail, n-5)
	var spooled []plugins.Event
	if _, err := plugins.ReadSpool(filepath.Join(dir, plugins.SpoolFile), 0, -1, 0, func(e plugins.Event) error { spooled = append(spooled, e); return nil }); err != nil {
		t.Fatal(err)
	}
	for i, e := range all {
		a, _ := json.Marshal(e)
		b, _ := json.Marshal(spooled[i])
		if string(a) != string(b) {
			t.Fatalf("event %d streamed %s, spooled %s", i, a, b)
		}
	}
}

// TestLargeEventsReadBackAcrossTheMemoryBound: events whose payloads exceed what a Host
// keeps in memory (validation images) still all reach readers, in order, from memory
// or the spool.
func TestLargeEventsReadBackAcrossTheMemoryBound(t *testing.T) {
	const n = 40
	big := strings.Repeat("x", 1<<20)
	release := make(chan struct{})
	h := kit.NewHost(runnerFunc(func(ctx context.Context, j *kit.Job) error {
		for i := range n {
			j.Emit("validation.image", "info", "", "", map[string]any{"i": i, "src": big})
		}
		<-release
		return nil
	}), slog.New(slog.DiscardHandler), kit.Options{})
	if _, err := h.Start(context.Background(), plugins.StartRequest{JobID: "big", Config: json.RawMessage(`{}`), JobDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	for {
		st, _ := h.Status(context.Background())
		if st.LastSeq >= n+1 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(release)
	all := collect(t, h, 0)
	checkContiguous(t, all, 0)
	if len(all) != n+2 {
		t.Fatalf("%d events, want %d", len(all), n+2)
	}
	for _, e := range all[1 : n+1] {
		if len(e.Data) < 1<<20 {
			t.Fatalf("event %d lost its payload (%d bytes)", e.Seq, len(e.Data))
		}
	}
	checkContiguous(t, collect(t, h, n-2), n-2)
}

// TestOutputDirFreeWhenTheJobEnds: the output directory's lock is released before the
// terminal event, so a resume started by whoever saw the job end finds the directory free
// (the lock used to be released after the exit record was written).
func TestOutputDirFreeWhenTheJobEnds(t *testing.T) {
	out := t.TempDir()
	h := kit.NewHost(runnerFunc(func(ctx context.Context, j *kit.Job) error { return nil }), slog.New(slog.DiscardHandler), kit.Options{Linger: time.Millisecond})
	if _, err := h.Start(context.Background(), plugins.StartRequest{JobID: "r", Config: cfg(t, out), JobDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var lockErr error
	checked := false
	err := h.Events(ctx, 0, plugins.EachEvent(func(e plugins.Event) error {
		if e.Type != plugins.EventJobStatus || checked {
			return nil
		}
		var d struct{ Status string }
		if json.Unmarshal(e.Data, &d) != nil || !plugins.Terminal(d.Status) {
			return nil
		}
		checked = true
		f, err := os.OpenFile(filepath.Join(out, ".simpletuner.lock"), os.O_RDWR, 0)
		if err != nil {
			lockErr = err
			return nil
		}
		defer f.Close()
		if lockErr = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); lockErr == nil {
			syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		}
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	if !checked || lockErr != nil {
		t.Fatalf("terminal event seen %v; output dir lock at that moment: %v", checked, lockErr)
	}
}
