package jobs

import (
	"fmt"
	"strings"
	"syscall"
)

// stderrTailLines bounds how many of a crashed trainer's last stderr lines a job's error
// quotes (the bytes are bounded by plugins.StderrTailBytes).
const stderrTailLines = 20

// exitFacts is what the daemon knows of a trainer that ended without an exit record.
type exitFacts struct {
	// Status is the trainer's wait status; HaveStatus is false when the daemon is not its
	// parent (it was reattached after a restart) or could not reap it.
	Status     syscall.WaitStatus
	HaveStatus bool
	// OOMKills is how much the OOM-kill counter of the trainer's memory cgroup rose while
	// it ran; negative when there is no counter to read.
	OOMKills int64
	// Headline is the first line of a Go panic or fatal error on its stderr; Stderr is the
	// end of its stderr. Both are empty when the daemon did not launch it.
	Headline, Stderr string
}

// exitCause says in words why a trainer ended without an exit record, for the job's error
// (shown by the status endpoints and the job's terminal event):
//
//   - the wait status: "killed (signal 9)", or "exited with status 2";
//   - "killed by the kernel for lack of memory" when the cgroup's OOM-kill counter rose
//     while it ran (with its SIGKILL, or with no wait status to compare: "probably");
//   - a Go runtime out-of-memory failure read from its stderr;
//   - the panic or fatal-error line, then the last lines of its stderr.
//
// With nothing known it is the old "killed or crashed".
func exitCause(f exitFacts) string {
	var b strings.Builder
	b.WriteString("trainer exited without an exit record: ")
	oom := f.OOMKills > 0
	stderr := f.Headline + "\n" + f.Stderr
	switch {
	case f.HaveStatus && f.Status.Signaled() && f.Status.Signal() == syscall.SIGKILL && oom:
		b.WriteString("killed by the kernel for lack of memory (signal 9; the memory cgroup counted an OOM kill)")
	case f.HaveStatus && f.Status.Signaled():
		sig := f.Status.Signal()
		fmt.Fprintf(&b, "killed (signal %d)", int(sig))
		if name := sig.String(); name != "killed" {
			b.WriteString(": " + name)
		}
		if oom {
			b.WriteString("; the memory cgroup counted an OOM kill meanwhile, so memory may have run short")
		}
	case f.HaveStatus && f.Status.Exited():
		fmt.Fprintf(&b, "exited with status %d", f.Status.ExitStatus())
	case oom:
		b.WriteString("probably killed by the kernel for lack of memory (the memory cgroup counted an OOM kill while it ran)")
	default:
		b.WriteString("killed or crashed (the daemon did not launch it, so it has no exit status)")
	}
	if strings.Contains(stderr, "runtime: out of memory") || strings.Contains(stderr, "fatal error: out of memory") {
		b.WriteString("; the Go runtime ran out of memory")
	}
	tail := lastLines(f.Stderr, stderrTailLines)
	if f.Headline != "" && !strings.Contains(tail, f.Headline) {
		b.WriteString("\n" + f.Headline + "\n…") // the panic's message scrolled out of the tail
	}
	if tail != "" {
		b.WriteString("\nlast lines of its stderr:\n" + tail)
	}
	return b.String()
}

// lastLines is the last n lines of s, without trailing blank lines.
func lastLines(s string, n int) string {
	s = strings.TrimRight(s, "\n\r\t ")
	if s == "" {
		return ""
	}
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
