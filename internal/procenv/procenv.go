// Package procenv finds processes by what their environment carries. The daemon marks
// every trainer's environment (job directory, launch nonce), so it can recognise its
// trainers even when it has no other record of them — and tests can clean up after
// trainers that, by design, outlive the daemon that started them.
package procenv

import (
	"bytes"
	"os"
	"strconv"
)

// Find returns the pids of live processes (not zombies, not this process) whose
// environment has an entry starting with entry ("KEY=value…"). Processes whose
// environment cannot be read (another user's) are skipped.
func Find(entry string) []int {
	marker := []byte(entry)
	var out []int
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		env, err := os.ReadFile("/proc/" + d.Name() + "/environ")
		if err != nil || !hasEntry(env, marker) {
			continue
		}
		if st, err := os.ReadFile("/proc/" + d.Name() + "/stat"); err == nil && bytes.Contains(st, []byte(") Z ")) {
			continue
		}
		out = append(out, pid)
	}
	return out
}

// hasEntry reports whether a NUL-separated environment block has an entry starting with
// marker.
func hasEntry(env, marker []byte) bool {
	for _, kv := range bytes.Split(env, []byte{0}) {
		if bytes.HasPrefix(kv, marker) {
			return true
		}
	}
	return false
}
