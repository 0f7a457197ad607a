package safetensors

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// rssChildEnv carries "mode path" to the child process that does the measured load.
const rssChildEnv = "SAFETENSORS_RSS_CHILD"

// statusKB reads one kB field (VmHWM, VmRSS) of /proc/self/status.
func statusKB(t *testing.T, field string) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no %s in /proc/self/status", field)
	return 0
}

// TestLoadPeakRSS loads a 64 MiB F32 checkpoint into float32 slices in a fresh process and
// compares the growth of its peak resident set with the file size: the goal is
// ≤ 1.1×, i.e. the decoded weights and little else (for mmap: not the file pages as well).
func TestLoadPeakRSS(t *testing.T) {
	if spec := os.Getenv(rssChildEnv); spec != "" {
		mode, path, _ := strings.Cut(spec, " ")
		base := statusKB(t, "VmHWM")
		open := openers()[mode]
		src, err := open(path)
		if err != nil {
			t.Fatal(err)
		}
		var kept [][]float32
		for _, n := range src.Names() {
			v, _, err := ReadFloat32(src, n)
			if err != nil {
				t.Fatal(err)
			}
			kept = append(kept, v)
		}
		fmt.Printf("RSSGROWTH %d\n", (statusKB(t, "VmHWM")-base)*1024)
		_ = kept
		return
	}
	if testing.Short() {
		t.Skip("writes 64 MiB and starts child processes")
	}
	if raceEnabled {
		t.Skip("the race detector's shadow memory inflates RSS")
	}
	path := largeFile(t, 64<<20, F32)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"pread", "mmap"} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestLoadPeakRSS$", "-test.count=1")
		cmd.Env = append(os.Environ(), rssChildEnv+"="+mode+" "+path, "GOGC=off")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s child: %v\n%s", mode, err, out)
		}
		i := bytes.Index(out, []byte("RSSGROWTH "))
		if i < 0 {
			t.Fatalf("%s child printed no measurement:\n%s", mode, out)
		}
		var growth int64
		fmt.Sscan(string(out[i+len("RSSGROWTH "):]), &growth)
		ratio := float64(growth) / float64(st.Size())
		t.Logf("%s: peak RSS grew by %d bytes loading a %d-byte file (%.3f×)", mode, growth, st.Size(), ratio)
		if ratio > 1.1 {
			t.Errorf("%s: peak RSS grew %.3f× the file size, want ≤ 1.1×", mode, ratio)
		}
	}
}
