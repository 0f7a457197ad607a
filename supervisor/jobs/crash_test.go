package jobs

import (
	"strings"
	"syscall"
	"testing"
	"time"

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
