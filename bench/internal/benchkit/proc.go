// Package benchkit holds what the benchmarks share: starting a daemon of their own on a
// free loopback port, running a child that reports in JSON, and reading what /proc says
// about a process.
package benchkit

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// RunJSON runs a benchmark child (our side or a reference script) with its thread
// environment fixed to threads (OpenMP, OpenBLAS, MKL), and decodes the last line of its
// standard output into v. A failed child's error carries its standard error.
func RunJSON(cmd *exec.Cmd, threads int, v any) error {
	cmd.Env = ThreadEnv(threads)
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("%w\n%s", err, ee.Stderr)
		}
		return err
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), v); err != nil {
		return fmt.Errorf("decode %q: %w", lines[len(lines)-1], err)
	}
	return nil
}

// RSSMB returns a process's resident set size in MiB (-1 when it cannot be read).
func RSSMB(pid int) float64 { return statusMB(pid, "VmRSS:") }

// PeakRSSMB returns a process's peak resident set size so far (VmHWM) in MiB (-1 when it
// cannot be read).
func PeakRSSMB(pid int) float64 { return statusMB(pid, "VmHWM:") }

// statusMB reads a kB field of /proc/<pid>/status in MiB.
func statusMB(pid int, field string) float64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == field {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return -1
}

// ThreadEnv is this process's environment with the thread count of OpenMP, OpenBLAS and MKL
// fixed, for a child (PyTorch) that must use as many threads as the Go side.
func ThreadEnv(threads int) []string {
	t := strconv.Itoa(threads)
	return append(os.Environ(), "OMP_NUM_THREADS="+t, "OPENBLAS_NUM_THREADS="+t, "MKL_NUM_THREADS="+t)
}

// ChildPeakRSSMB is the peak resident set size in MiB of a child that has exited, from the
// kernel's accounting (-1 when it is not available).
func ChildPeakRSSMB(cmd *exec.Cmd) float64 {
	if cmd.ProcessState == nil {
		return -1
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		return float64(ru.Maxrss) / 1024 // KiB on Linux
	}
	return -1
}

// CPUSeconds is this process's user plus system CPU time: on a machine shared with other
// work, wall time includes waiting for a core, CPU time does not.
func CPUSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// Median returns the median of v (the upper one of an even count), sorting v.
func Median(v []float64) float64 {
	sort.Float64s(v)
	return v[len(v)/2]
}
