// Package benchkit holds what the benchmarks share: starting a daemon of their own on a
// free loopback port, reading what they report about a process from /proc, and the thread
// environment of a PyTorch child.
package benchkit

import (
	"os"
	"strconv"
	"strings"
)

// RSSMB returns a process's resident set size in MiB (-1 when it cannot be read).
func RSSMB(pid int) float64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
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
