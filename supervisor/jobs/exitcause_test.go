package jobs

import (
	"strings"
	"syscall"
	"testing"
)

func TestExitCause(t *testing.T) {
	signaled := func(sig syscall.Signal) syscall.WaitStatus { return syscall.WaitStatus(sig) }
	exited := func(code int) syscall.WaitStatus { return syscall.WaitStatus(code << 8) }
	panicTrace := "panic: simulated panic at step 3\n\ngoroutine 7 [running]:\nmain.worker()\n\t/src/x.go:12 +0x1d\ncreated by main.main\n\t/src/x.go:9 +0x2f\n"
	long := strings.Repeat("goroutine line\n", 40) + "last line\n"
	cases := []struct {
		name  string
		f     exitFacts
		want  []string
		avoid []string
	}{
		{"SIGKILL by a person", exitFacts{Status: signaled(syscall.SIGKILL), HaveStatus: true, Stderr: "loading data\nstep 1\n"},
			[]string{"without an exit record: killed (signal 9)", "last lines of its stderr:\nloading data\nstep 1"}, []string{"memory", "signal 9):"}},
		{"SIGKILL by the OOM killer", exitFacts{Status: signaled(syscall.SIGKILL), HaveStatus: true, OOMKills: 1},
			[]string{"killed by the kernel for lack of memory (signal 9"}, []string{"stderr"}},
		{"SIGSEGV", exitFacts{Status: signaled(syscall.SIGSEGV), HaveStatus: true, OOMKills: -1},
			[]string{"killed (signal 11): segmentation fault"}, []string{"memory"}},
		{"SIGTERM while the cgroup saw an OOM kill", exitFacts{Status: signaled(syscall.SIGTERM), HaveStatus: true, OOMKills: 2},
			[]string{"killed (signal 15): terminated", "memory may have run short"}, nil},
		{"Go panic, exit 2", exitFacts{Status: exited(2), HaveStatus: true, OOMKills: 0, Headline: "panic: simulated panic at step 3", Stderr: panicTrace},
			[]string{"exited with status 2", "last lines of its stderr:\npanic: simulated panic at step 3", "created by main.main"}, []string{"…"}},
		{"panic line scrolled out of the tail", exitFacts{Status: exited(2), HaveStatus: true, Headline: "panic: boom", Stderr: long},
			[]string{"exited with status 2\npanic: boom\n…\nlast lines of its stderr:\n", "last line"}, nil},
		{"Go runtime out of memory", exitFacts{Status: exited(2), HaveStatus: true, Headline: "fatal error: runtime: out of memory",
			Stderr: "runtime: out of memory: cannot allocate 274877906944-byte block (3997696 in use)\nfatal error: runtime: out of memory\n"},
			[]string{"exited with status 2; the Go runtime ran out of memory", "cannot allocate 274877906944-byte block"}, nil},
		{"CUDA error", exitFacts{Status: exited(1), HaveStatus: true, Stderr: "CUDA error: an illegal memory access was encountered\n"},
			[]string{"exited with status 1", "CUDA error: an illegal memory access"}, nil},
		{"reattached, OOM counted", exitFacts{OOMKills: 1}, []string{"probably killed by the kernel for lack of memory"}, []string{"stderr"}},
		{"reattached, nothing known", exitFacts{OOMKills: -1}, []string{"killed or crashed"}, []string{"memory", "stderr"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := exitCause(tc.f)
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("lacks %q:\n%s", w, got)
				}
			}
			for _, a := range tc.avoid {
				if strings.Contains(got, a) {
					t.Errorf("says %q:\n%s", a, got)
				}
			}
			if n := strings.Count(got, "\n"); n > stderrTailLines+4 {
				t.Errorf("%d lines: the tail is not bounded", n)
			}
		})
	}
}
