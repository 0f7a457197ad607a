// Package benchkit holds what the benchmarks share: starting a daemon of their own on a
// free loopback port and reading what they report about a process from /proc.
package benchkit

import (
	"os"
	"strconv"
	"strings"
)

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
