package workeragent

import (
	"strings"
	"testing"
	"time"

	"simpletuner/store"
	"simpletuner/supervisor/gpu"
)

func TestWireStatus(t *testing.T) {
	for _, c := range []struct {
		local, want  string
		terminal, ok bool
	}{
		{"queued", "starting", false, true},
		{"pending_approval", "", false, false},
		{"starting", "starting", false, true},
		{"running", "running", false, true},
		{"completed", "completed", true, true},
		{"failed", "failed", true, true},
		{"cancelled", "cancelled", true, true},
		{"stopped", "stopped", true, true},
		{"lost", "failed", true, true},
	} {
		got, term, ok := wireStatus(c.local)
		if got != c.want || term != c.terminal || ok != c.ok {
			t.Errorf("wireStatus(%q) = %q, %v, %v; want %q, %v, %v", c.local, got, term, ok, c.want, c.terminal, c.ok)
		}
	}
}

func TestHeartbeatStatus(t *testing.T) {
	if heartbeatStatus(true) != "busy" || heartbeatStatus(false) != "idle" {
		t.Fatal("a worker with a job is busy, one without is idle")
	}
}

func TestCutBatch(t *testing.T) {
	ev := func(n int) store.StoredEvent { return store.StoredEvent{Event: []byte(strings.Repeat("x", n))} }
	many := func(k, size int) []store.StoredEvent {
		out := make([]store.StoredEvent, k)
		for i := range out {
			out[i] = ev(size)
		}
		return out
	}
	for _, c := range []struct {
		name            string
		evs             []store.StoredEvent
		maxEvents, maxB int
		want            int
	}{
		{"none", nil, 1000, 1 << 20, 0},
		{"all fit", many(10, 10), 1000, 1 << 20, 10},
		{"event count caps", many(1500, 10), 1000, 1 << 20, 1000},
		{"bytes cap", many(10, 99), 1000, 300, 3},
		{"one event over the byte limit still goes", []store.StoredEvent{ev(500), ev(1)}, 1000, 100, 1},
	} {
		if got := cutBatch(c.evs, c.maxEvents, c.maxB); got != c.want {
			t.Errorf("%s: cutBatch = %d, want %d", c.name, got, c.want)
		}
	}
}

func TestBackoff(t *testing.T) {
	for _, c := range []struct {
		attempt int
		want    time.Duration
	}{{1, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second}, {6, 30 * time.Second}, {50, 30 * time.Second}} {
		if got := backoff(c.attempt, time.Second, 30*time.Second); got != c.want {
			t.Errorf("backoff(%d) = %v, want %v", c.attempt, got, c.want)
		}
	}
}

func TestSubmitRefusal(t *testing.T) {
	for _, c := range []struct {
		name, job, bound    string
		draining, ephemeral bool
		accepted            int
		refused             bool
	}{
		{"persistent takes jobs", "a", "", false, false, 3, false},
		{"draining takes none", "a", "", true, false, 0, true},
		{"ephemeral takes its first", "a", "", false, true, 0, false},
		{"ephemeral takes one only", "b", "", false, true, 1, true},
		{"bound takes its job", "a", "a", false, true, 0, false},
		{"bound refuses another", "b", "a", false, true, 0, true},
	} {
		why := submitRefusal(c.job, c.bound, c.draining, c.ephemeral, c.accepted)
		if (why != "") != c.refused {
			t.Errorf("%s: submitRefusal = %q, want refused=%v", c.name, why, c.refused)
		}
	}
}

func TestShouldExit(t *testing.T) {
	for _, c := range []struct {
		name                string
		open, accepted      int
		draining, ephemeral bool
		want                bool
	}{
		{"persistent idle stays", 0, 2, false, false, false},
		{"ephemeral before its job stays", 0, 0, false, true, false},
		{"ephemeral with its job running stays", 1, 1, false, true, false},
		{"ephemeral after its job exits", 0, 1, false, true, true},
		{"draining with a job stays", 1, 1, true, false, false},
		{"draining idle exits", 0, 0, true, false, true},
	} {
		if got := shouldExit(c.open, c.accepted, c.draining, c.ephemeral); got != c.want {
			t.Errorf("%s: shouldExit = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestDescribeGPUs(t *testing.T) {
	inv := gpu.NewFake(gpu.FakeH100(2)...)
	gpus, _ := inv.List(t.Context())
	got := describeGPUs(gpus, inv.Info())
	if got.Count != 2 || got.Name != gpu.H100Name || got.Accelerator != "cuda" || got.Driver == "" ||
		len(got.UUIDs) != 2 || got.UUIDs[1] != gpu.FakeUUID(1) || got.VRAMGB < 70 || got.VRAMGB > 90 {
		t.Fatalf("describeGPUs(2×H100) = %+v", got)
	}
	cpu := describeGPUs(nil, gpu.Info{Backend: "cpu", Reason: "no driver"})
	if cpu.Count != 0 || cpu.Accelerator != "cpu" || len(cpu.UUIDs) != 0 {
		t.Fatalf("describeGPUs(none) = %+v", cpu)
	}
}
