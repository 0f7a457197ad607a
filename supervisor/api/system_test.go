package api

import (
	"log/slog"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"simpletuner/options"
	"simpletuner/supervisor/gpu"
	"simpletuner/supervisor/jobs"
	"simpletuner/supervisor/training"
)

// Part "system" of issue 15: the shapes SimpleTuner's own CLI checks.

// TestSystemShutdownAnswersThenStopsOnce: an administrator gets SimpleTuner's
// {"status":"shutting_down"} and the daemon's stop runs once; a researcher may not stop
// the server, and a server without a stop hook says how to stop it.
func TestSystemShutdownAnswersThenStopsOnce(t *testing.T) {
	calls := 0
	h := newHarness(t, Config{Shutdown: func() { calls++ }})
	_, adminKey := h.setup()
	research := h.createUser(adminKey, "research", "researcher")

	if res := h.do(req{method: "POST", path: "/api/system/shutdown", cookie: research}); res.code != 403 || calls != 0 {
		t.Fatalf("researcher: %d %s (stops %d), want 403 and no stop", res.code, res.body, calls)
	}
	for i, want := range []string{"SimpleTuner is shutting down. Running training jobs keep running and are reattached when the server starts again.", "Shutdown already in progress."} {
		res := h.do(req{method: "POST", path: "/api/system/shutdown", key: adminKey})
		var b shutdownBody
		res.json(t, &b)
		if res.code != 200 || b.Status != "shutting_down" || b.Message != want {
			t.Fatalf("call %d: %d %s", i+1, res.code, res.body)
		}
		if calls != 1 {
			t.Fatalf("call %d: the stop ran %d times, want once", i+1, calls)
		}
	}

	bare := newHarness(t, Config{})
	_, key := bare.setup()
	if res := bare.do(req{method: "POST", path: "/api/system/shutdown", key: key}); res.code != 503 || res.detail() == "" {
		t.Fatalf("without a stop hook: %d %s, want 503 with a message", res.code, res.body)
	}
}

// TestUserActivationAnswersSuccess: deactivate and activate answer the original's
// success flag beside the user object they answered before.
func TestUserActivationAnswersSuccess(t *testing.T) {
	h := newHarness(t, Config{})
	_, adminKey := h.setup()
	var bob userBody
	h.do(req{method: "GET", path: "/api/users/me", cookie: h.createUser(adminKey, "bob", "researcher")}).json(t, &bob)
	id := bob.ID
	for _, tc := range []struct {
		action string
		active bool
	}{{"deactivate", false}, {"activate", true}} {
		res := h.do(req{method: "POST", path: "/api/users/" + strconv.FormatInt(id, 10) + "/" + tc.action, key: adminKey})
		var b struct {
			Success  bool   `json:"success"`
			ID       int64  `json:"id"`
			Username string `json:"username"`
			IsActive bool   `json:"is_active"`
		}
		res.json(t, &b)
		if res.code != 200 || !b.Success || b.ID != id || b.Username != "bob" || b.IsActive != tc.active {
			t.Fatalf("%s: %d %s", tc.action, res.code, res.body)
		}
	}
}

// TestQueueStatsLimitsAndCPUSlot: the scheduler limits carry the one real job limit, and a
// host without GPUs reports its CPU trainer as device 0: available while a job may start,
// allocated while one runs. Hosts with GPUs report them as before.
func TestQueueStatsLimitsAndCPUSlot(t *testing.T) {
	stats := func(t *testing.T, inv gpu.Inventory, lim gpu.Limits, hold map[string][]string) queueStatsBody {
		t.Helper()
		h := newHarness(t, Config{})
		_, key := h.setup()
		alloc := gpu.NewAllocator(inv, lim)
		dir := t.TempDir()
		log := slog.New(slog.DiscardHandler)
		jm, err := jobs.New(jobs.Config{JobsDir: filepath.Join(dir, "jobs"), RunDir: filepath.Join(dir, "run")}, h.db, alloc, log)
		if err != nil {
			t.Fatal(err)
		}
		h.srv.cfg.Jobs, h.srv.cfg.GPUs = jm, alloc
		h.srv.cfg.Training = training.New(options.Default(), nil, jm, dir, log)
		for id, uuids := range hold {
			if err := alloc.Ledger().Adopt(id, uuids); err != nil {
				t.Fatal(err)
			}
		}
		res := h.do(req{method: "GET", path: "/api/queue/stats", key: key})
		var st queueStatsBody
		res.json(t, &st)
		if res.code != 200 {
			t.Fatalf("stats: %d %s", res.code, res.body)
		}
		return st
	}
	cpu := gpu.NewFake()
	for _, tc := range []struct {
		name                 string
		inv                  gpu.Inventory
		maxJobs              int
		hold                 map[string][]string
		limit                int
		total                int
		allocated, available []int
	}{
		{"cpu idle, default limit", cpu, 0, nil, 1, 1, []int{}, []int{0}},
		{"cpu busy at the limit", cpu, 1, map[string][]string{"a": {}}, 1, 1, []int{0}, []int{}},
		{"cpu busy below the limit", cpu, 3, map[string][]string{"a": {}}, 3, 1, []int{0}, []int{0}},
		{"two gpus, one held", gpu.NewFake(gpu.GPU{Index: 0, UUID: "GPU-0", Healthy: true}, gpu.GPU{Index: 1, UUID: "GPU-1", Healthy: true}), 2,
			map[string][]string{"a": {"GPU-1"}}, 2, 2, []int{1}, []int{0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := stats(t, tc.inv, gpu.Limits{MaxJobs: tc.maxJobs}, tc.hold)
			if st.MaxConcurrent != tc.limit || st.UserMaxConcurrent != tc.limit || st.TeamMaxConcurrent != tc.limit || st.EnableFairShare || st.LocalJobMaxConcurrent != tc.limit {
				t.Errorf("limits %d/%d/%d fair %v local %d, want %d everywhere and no fair share",
					st.MaxConcurrent, st.UserMaxConcurrent, st.TeamMaxConcurrent, st.EnableFairShare, st.LocalJobMaxConcurrent, tc.limit)
			}
			l := st.Local
			if l.TotalGPUs != tc.total || !slices.Equal(l.AllocatedGPUs, tc.allocated) || !slices.Equal(l.AvailableGPUs, tc.available) {
				t.Errorf("local: total %d allocated %v available %v, want %d %v %v", l.TotalGPUs, l.AllocatedGPUs, l.AvailableGPUs, tc.total, tc.allocated, tc.available)
			}
		})
	}
}
