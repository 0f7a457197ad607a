package sysmem

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const meminfo = "MemTotal:       24683748 kB\nMemFree:         1000000 kB\nMemAvailable:   20000000 kB\n"

// tree writes files (path → content) under a temp root.
func tree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for p, c := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestReadHost(t *testing.T) {
	const total = 24683748 << 10
	cases := []struct {
		name      string
		files     map[string]string
		limit     int64
		limitFile string
	}{
		{"cgroup v2 with a limit on the parent", map[string]string{
			"proc/self/cgroup":                              "0::/user.slice/job.scope\n",
			"sys/fs/cgroup/cgroup.controllers":              "cpu memory",
			"sys/fs/cgroup/user.slice/memory.max":           "8589934592\n",
			"sys/fs/cgroup/user.slice/job.scope/memory.max": "max\n",
		}, 8 << 30, "sys/fs/cgroup/user.slice/memory.max"},
		{"cgroup v1 (hybrid host)", map[string]string{
			"proc/self/cgroup":                                           "4:memory:/process_api/abc\n0::/\n",
			"sys/fs/cgroup/memory/memory.limit_in_bytes":                 "9223372036854771712\n",
			"sys/fs/cgroup/memory/process_api/abc/memory.limit_in_bytes": "4294967296\n",
			"sys/fs/cgroup/unified/cgroup.controllers":                   "",
		}, 4 << 30, "sys/fs/cgroup/memory/process_api/abc/memory.limit_in_bytes"},
		{"container: the recorded path is not under the mount", map[string]string{
			"proc/self/cgroup":                 "0::/docker/0123\n",
			"sys/fs/cgroup/cgroup.controllers": "memory",
			"sys/fs/cgroup/memory.max":         "2147483648\n",
		}, 2 << 30, "sys/fs/cgroup/memory.max"},
		{"a limit above the host's RAM", map[string]string{
			"proc/self/cgroup":                 "0::/big\n",
			"sys/fs/cgroup/cgroup.controllers": "memory",
			"sys/fs/cgroup/big/memory.max":     "107374182400\n",
		}, 100 << 30, "sys/fs/cgroup/big/memory.max"},
		{"no cgroup", map[string]string{}, 0, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.files["proc/meminfo"] = meminfo
			root := tree(t, tc.files)
			h, err := FS{Root: root}.ReadHost(0)
			if err != nil {
				t.Fatal(err)
			}
			if h.Total != total || h.Available != 20000000<<10 {
				t.Errorf("total %d available %d", h.Total, h.Available)
			}
			want := tc.limitFile
			if want != "" {
				want = filepath.Join(root, want)
			}
			if h.Limit != tc.limit || h.LimitFile != want {
				t.Errorf("limit %d from %q, want %d from %q", h.Limit, h.LimitFile, tc.limit, want)
			}
			capacity := int64(total)
			if tc.limit > 0 && tc.limit < total {
				capacity = tc.limit
			}
			if h.Capacity() != capacity {
				t.Errorf("capacity %d, want %d", h.Capacity(), capacity)
			}
			if capacity < total && !strings.Contains(h.String(), "limit in") || capacity == total && !strings.Contains(h.String(), "of RAM") {
				t.Errorf("description %q", h.String())
			}
		})
	}
}

func TestOOMCounter(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		files      map[string]string
		want       int64
	}{
		{"v2", "sys/fs/cgroup/job/memory.events", map[string]string{
			"proc/42/cgroup":                   "0::/job\n",
			"sys/fs/cgroup/cgroup.controllers": "memory",
			"sys/fs/cgroup/job/memory.events":  "low 0\nhigh 0\nmax 3\noom 2\noom_kill 2\noom_group_kill 0\n",
		}, 2},
		{"v1", "sys/fs/cgroup/memory/a/memory.oom_control", map[string]string{
			"proc/42/cgroup": "9:memory:/a\n",
			"sys/fs/cgroup/memory/memory.limit_in_bytes": "1",
			"sys/fs/cgroup/memory/a/memory.oom_control":  "oom_kill_disable 0\nunder_oom 0\noom_kill 5\n",
		}, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := tree(t, tc.files)
			c := FS{Root: root}.OOMCounterOf(42)
			if c.File != filepath.Join(root, tc.file) {
				t.Fatalf("counter file %q", c.File)
			}
			if n, ok := c.Read(); !ok || n != tc.want {
				t.Errorf("read %d %v, want %d", n, ok, tc.want)
			}
		})
	}
	if n, ok := (OOMCounter{}).Read(); ok || n != 0 {
		t.Error("no counter read as one")
	}
	if c := (FS{Root: t.TempDir()}).OOMCounterOf(42); c.File != "" {
		t.Errorf("counter %q without a cgroup", c.File)
	}
}

// TestThisHost reads the real files: whatever the machine, it has RAM.
func TestThisHost(t *testing.T) {
	h, err := FS{}.ReadHost(0)
	if err != nil {
		t.Skip("no /proc/meminfo:", err)
	}
	if h.Total <= 0 || h.Capacity() <= 0 || h.Capacity() > h.Total {
		t.Errorf("host %+v", h)
	}
	t.Logf("this host: %s; OOM counter %q", h, FS{}.OOMCounterOf(0).File)
}
