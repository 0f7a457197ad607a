package jobs

import (
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"simpletuner/plugins"
	"simpletuner/plugins/kit/kittest"
	"simpletuner/supervisor/gpu"
)

// TestCrashedTrainerSaysWhy: a trainer killed with SIGKILL, and one whose process dies of a
// panic outside the run loop, fail their job with the exit signal or status and the end of
// what they wrote on stderr (the panic's message included).
func TestCrashedTrainerSaysWhy(t *testing.T) {
	e := newEnv(t, gpu.None{})
	m := e.manager(kittest.EnvSteps+"=100000", kittest.EnvStepMS+"=10", kittest.EnvStderr+"=loading shards|CUDA warning: nothing to see")
	j := submit(t, m, 1)
	r := waitStatus(t, m, j.ID, 20*time.Second, StatusRunning)
	if err := syscall.Kill(proc(t, r).PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	f := waitStatus(t, m, j.ID, 20*time.Second, StatusFailed)
	for _, want := range []string{"killed (signal 9)", "loading shards\nCUDA warning: nothing to see"} {
		if !strings.Contains(f.Error, want) {
			t.Errorf("error lacks %q:\n%s", want, f.Error)
		}
	}

	m2 := newEnv(t, gpu.None{}).manager(kittest.EnvSteps+"=100000", kittest.EnvStepMS+"=10", kittest.EnvPanicAt+"=3", kittest.EnvStderr+"=before the panic")
	j2 := submit(t, m2, 1)
	f2 := waitStatus(t, m2, j2.ID, 20*time.Second, StatusFailed)
	t.Logf("%s\n\n%s", f.Error, f2.Error)
	for _, want := range []string{"exited with status 2", "before the panic", "panic: simulated panic at step 3", "goroutine"} {
		if !strings.Contains(f2.Error, want) {
			t.Errorf("error lacks %q:\n%s", want, f2.Error)
		}
	}
}

// TestLaunchInterruptedBeforePersistReattachesThroughBootstrap: a daemon that dies after
// the trainer started but before its identity was saved (failpoint launch.before_persist;
// runtime.Goexit stands in for the death) leaves only the launch's nonce in the handle.
// The next daemon finds the trainer through its bootstrap.json, completes the launch in
// it and follows it: the same process runs the job once, to completion.
func TestLaunchInterruptedBeforePersistReattachesThroughBootstrap(t *testing.T) {
	e := newEnv(t, gpu.NewFake())
	died := make(chan struct{})
	var once sync.Once
	m1 := e.managerWith(Config{Failpoint: func(name string) {
		if name == "launch.before_persist" {
			once.Do(func() {
				close(died)
				runtime.Goexit()
			})
		}
	}}, kittest.EnvSteps+"=20", kittest.EnvStepMS+"=10")
	j := submit(t, m1, 1)
	select {
	case <-died:
	case <-time.After(30 * time.Second):
		t.Fatal("the failpoint never fired")
	}
	m1.Close()
	rec, _ := e.db.Jobs().Get(j.ID)
	b, err := plugins.ReadBootstrap(rec.JobDir)
	if err != nil {
		t.Fatal(err)
	}
	if p := proc(t, rec); rec.Status != StatusStarting || p.PID != 0 || p.Nonce == "" || b.Nonce != p.Nonce || b.PID <= 0 {
		t.Fatalf("after the interrupted launch: %s handle %+v bootstrap %+v", rec.Status, p, b)
	}
	m2 := e.manager()
	done := waitStatus(t, m2, j.ID, 30*time.Second, StatusCompleted)
	if p := proc(t, done); done.Attempts != 1 || p.PID != b.PID || p.Addr != b.Addr {
		t.Fatalf("attempts %d pid %d addr %s; bootstrap pid %d addr %s", done.Attempts, p.PID, p.Addr, b.PID, b.Addr)
	}
	if n := len(events(t, e.db, j.ID)); n == 0 {
		t.Fatal("no events stored")
	}
}
