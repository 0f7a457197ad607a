// Package sysmem reads what the kernel says about memory: the host's RAM (/proc/meminfo)
// and the memory controller of a process's cgroup (v2, or v1 on older hosts): its limit and
// how many of its processes the OOM killer has killed. The trainer sizes jobs against the
// first two; the daemon reads the third to tell a job killed for lack of memory from one
// killed by a person.
package sysmem

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// noLimit is where cgroup v1 limits start to mean "unlimited" (the kernel reports
// PAGE_COUNTER_MAX·page size, 0x7FFFFFFFFFFFF000, for none).
const noLimit = 1 << 60

// FS reads the kernel's files under Root ("/" or "": the real ones; tests pass a tree of
// their own).
type FS struct {
	Root string
}

func (f FS) path(p string) string {
	if f.Root == "" {
		return p
	}
	return filepath.Join(f.Root, p)
}

// Host is the memory a process may use.
type Host struct {
	// Total and Available are MemTotal and MemAvailable of /proc/meminfo.
	Total, Available int64
	// Limit is the lowest memory limit of the process's cgroup and its ancestors (0: none);
	// LimitFile is the file that set it.
	Limit     int64
	LimitFile string
}

// Capacity is what a job can ever get: the host's RAM, or the cgroup's limit when lower.
// MemAvailable is not used: it changes from second to second with other processes and the
// page cache, so a job refused against it might fit a moment later.
func (h Host) Capacity() int64 {
	if h.Limit > 0 && h.Limit < h.Total {
		return h.Limit
	}
	return h.Total
}

// String describes the capacity for messages: "23.5 GiB of RAM (20.1 GiB available now)"
// or "8.0 GiB (the memory limit of cgroup /sys/fs/cgroup/…/memory.max; the host has 64 GiB)".
func (h Host) String() string {
	if h.Limit > 0 && h.Limit < h.Total {
		return fmt.Sprintf("%s (the limit in %s; the host has %s of RAM)", gib(h.Limit), h.LimitFile, gib(h.Total))
	}
	return fmt.Sprintf("%s of RAM (%s available now)", gib(h.Total), gib(h.Available))
}

func gib(n int64) string { return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30)) }

// ReadHost reads the host's memory and the limit of process pid's cgroup (0: this process).
// A host without a memory controller (or one this process cannot read) has no limit.
func (f FS) ReadHost(pid int) (Host, error) {
	var h Host
	b, err := os.ReadFile(f.path("/proc/meminfo"))
	if err != nil {
		return h, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(v)
		if len(fields) == 0 {
			continue
		}
		n, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			continue
		}
		if len(fields) > 1 && fields[1] == "kB" {
			n <<= 10
		}
		switch k {
		case "MemTotal":
			h.Total = n
		case "MemAvailable":
			h.Available = n
		}
	}
	if h.Total <= 0 {
		return h, fmt.Errorf("sysmem: no MemTotal in %s", f.path("/proc/meminfo"))
	}
	if cg, err := f.cgroup(pid); err == nil {
		h.Limit, h.LimitFile = cg.limit()
	}
	return h, nil
}

// OOMCounter is where the OOM kills of a process's cgroup are counted.
type OOMCounter struct {
	// File is memory.events (cgroup v2) or memory.oom_control (v1); "" when the process's
	// cgroup has no memory controller this process can read.
	File string
}

// OOMCounterOf finds the OOM-kill counter of process pid's memory cgroup (0: this process).
// The count covers every process of the cgroup and its descendants, so a rise during a job
// means some process there was killed for lack of memory.
func (f FS) OOMCounterOf(pid int) OOMCounter {
	cg, err := f.cgroup(pid)
	if err != nil {
		return OOMCounter{}
	}
	name := "memory.oom_control"
	if cg.v2 {
		name = "memory.events"
	}
	p := filepath.Join(cg.dir, name)
	if _, err := os.Stat(p); err != nil {
		return OOMCounter{}
	}
	return OOMCounter{File: p}
}

// Read returns the number of OOM kills so far; ok is false when there is no counter.
func (c OOMCounter) Read() (n int64, ok bool) {
	if c.File == "" {
		return 0, false
	}
	b, err := os.ReadFile(c.File)
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, found := strings.Cut(strings.TrimSpace(line), " "); found && k == "oom_kill" {
			if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
				return n, true
			}
		}
	}
	return 0, false
}

// memCgroup is a process's memory cgroup directory and the mount it lies under.
type memCgroup struct {
	dir, mount string
	v2         bool
}

// cgroup finds process pid's memory cgroup from /proc/<pid>/cgroup: the v1 memory
// hierarchy if there is one, else the v2 unified one (mounted at /sys/fs/cgroup, or at
// /sys/fs/cgroup/unified beside v1 controllers). Inside a container the recorded path may
// not exist under the mount (the container sees its own cgroup as the root): the mount's
// root is used then.
func (f FS) cgroup(pid int) (memCgroup, error) {
	proc := "self"
	if pid > 0 {
		proc = strconv.Itoa(pid)
	}
	b, err := os.ReadFile(f.path("/proc/" + proc + "/cgroup"))
	if err != nil {
		return memCgroup{}, err
	}
	var v1Path, v2Path string
	hasV2 := false
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "":
			v2Path, hasV2 = parts[2], true
		case strings.Contains(","+parts[1]+",", ",memory,"):
			v1Path = parts[2]
		}
	}
	try := func(mount, rel string, v2 bool, marker string) (memCgroup, bool) {
		mount = f.path(mount)
		if _, err := os.Stat(filepath.Join(mount, marker)); err != nil {
			return memCgroup{}, false
		}
		dir := filepath.Join(mount, filepath.Clean("/"+rel))
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			dir = mount
		}
		return memCgroup{dir: dir, mount: mount, v2: v2}, true
	}
	if v1Path != "" {
		if cg, ok := try("/sys/fs/cgroup/memory", v1Path, false, "memory.limit_in_bytes"); ok {
			return cg, nil
		}
	}
	if hasV2 {
		for _, m := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
			if cg, ok := try(m, v2Path, true, "cgroup.controllers"); ok {
				return cg, nil
			}
		}
	}
	return memCgroup{}, errors.New("sysmem: no memory cgroup")
}

// limit is the lowest memory limit from the cgroup up to its mount (a parent's limit
// binds its children too).
func (cg memCgroup) limit() (int64, string) {
	name := "memory.limit_in_bytes"
	if cg.v2 {
		name = "memory.max"
	}
	var best int64
	file := ""
	for dir := cg.dir; ; dir = filepath.Dir(dir) {
		p := filepath.Join(dir, name)
		if b, err := os.ReadFile(p); err == nil {
			s := strings.TrimSpace(string(b))
			if n, err := strconv.ParseInt(s, 10, 64); err == nil && n > 0 && n < noLimit && (best == 0 || n < best) {
				best, file = n, p
			}
		}
		if dir == cg.mount || len(dir) <= len(cg.mount) {
			break
		}
	}
	return best, file
}
