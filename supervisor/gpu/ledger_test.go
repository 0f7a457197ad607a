package gpu

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
)

func TestLedgerReserveRelease(t *testing.T) {
	gpus := FakeH100(2)
	l := NewLedger(Limits{MaxJobs: 5})

	d, err := l.Reserve("a", Request{}, gpus)
	if err != nil || d.Outcome != Start || !slices.Equal(d.UUIDs, []string{FakeUUID(0)}) {
		t.Fatalf("a: %+v, %v", d, err)
	}
	if _, err := l.Reserve("a", Request{}, gpus); !errors.Is(err, ErrAlreadyHeld) {
		t.Errorf("second reserve for a: %v, want ErrAlreadyHeld", err)
	}
	if _, err := l.Reserve("", Request{}, gpus); !errors.Is(err, ErrInvalid) {
		t.Errorf("empty job id: %v, want ErrInvalid", err)
	}
	d, _ = l.Reserve("b", Request{NumProcesses: 2}, gpus)
	if d.Outcome != Queue || l.Running() != 1 {
		t.Errorf("b: %+v, running %d; want queue and nothing recorded", d, l.Running())
	}
	d, _ = l.Reserve("c", Request{NumProcesses: 3}, gpus)
	if d.Outcome != Reject {
		t.Errorf("c: %+v, want reject", d)
	}
	if _, ok := l.Holding("b"); ok {
		t.Error("a queued job holds a reservation")
	}

	uuids, ok := l.Release("a")
	if !ok || !slices.Equal(uuids, []string{FakeUUID(0)}) {
		t.Errorf("Release(a) = %v, %v", uuids, ok)
	}
	if _, ok := l.Release("a"); ok {
		t.Error("second Release reported a holding")
	}
	d, _ = l.Reserve("b", Request{NumProcesses: 2}, gpus)
	if d.Outcome != Start || !slices.Equal(d.Indexes, []int{0, 1}) {
		t.Errorf("b after release: %+v", d)
	}
}

func TestLedgerCPUJobs(t *testing.T) {
	l := NewLedger(Limits{})
	d, err := l.Reserve("cpu1", Request{}, nil)
	if err != nil || d.Outcome != StartCPU {
		t.Fatalf("%+v, %v", d, err)
	}
	if uuids, ok := l.Holding("cpu1"); !ok || len(uuids) != 0 {
		t.Errorf("CPU job holding = %v, %v", uuids, ok)
	}
	d, _ = l.Reserve("cpu2", Request{}, nil)
	if d.Outcome != Queue || d.Reason != "Maximum concurrent local jobs (1) reached" {
		t.Errorf("second CPU job: %+v", d)
	}
	l.Release("cpu1")
	if d, _ := l.Reserve("cpu2", Request{}, nil); d.Outcome != StartCPU {
		t.Errorf("after release: %+v", d)
	}
}

func TestLedgerAdopt(t *testing.T) {
	gpus := FakeH100(2)
	l := NewLedger(Limits{}) // one job at most, but adopted jobs ignore limits
	if err := l.Adopt("a", []string{FakeUUID(0)}); err != nil {
		t.Fatal(err)
	}
	if err := l.Adopt("b", []string{FakeUUID(1)}); err != nil {
		t.Fatal(err)
	}
	if err := l.Adopt("a", []string{FakeUUID(0)}); err != nil {
		t.Errorf("re-adopting the same holding: %v", err)
	}
	if err := l.Adopt("a", []string{FakeUUID(1)}); !errors.Is(err, ErrAlreadyHeld) {
		t.Errorf("different holding: %v, want ErrAlreadyHeld", err)
	}
	if err := l.Adopt("c", []string{"GPU-other", FakeUUID(1)}); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "b") {
		t.Errorf("conflict: %v, want ErrConflict naming b", err)
	}
	if _, ok := l.Holding("c"); ok {
		t.Error("a conflicting adopt recorded something")
	}
	if err := l.Adopt("", nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("empty id: %v", err)
	}
	// G2: after a restart the re-taken GPUs are not handed out again.
	l.SetLimits(Limits{MaxJobs: 10})
	if d, _ := l.Reserve("new", Request{}, gpus); d.Outcome != Queue {
		t.Errorf("new job after adopting both GPUs: %+v, want queue", d)
	}
	if got := l.Limits(); got.MaxJobs != 10 {
		t.Errorf("Limits = %+v", got)
	}
}

func TestLedgerHoldingsIsACopy(t *testing.T) {
	l := NewLedger(Limits{})
	if err := l.Adopt("a", []string{FakeUUID(0)}); err != nil {
		t.Fatal(err)
	}
	h := l.Holdings()
	h["a"][0] = "GPU-mutated"
	h["b"] = nil
	if got := l.Holdings(); len(got) != 1 || got["a"][0] != FakeUUID(0) {
		t.Errorf("ledger changed through a copy: %v", got)
	}
	u, _ := l.Holding("a")
	u[0] = "GPU-mutated"
	if got, _ := l.Holding("a"); got[0] != FakeUUID(0) {
		t.Errorf("ledger changed through Holding: %v", got)
	}
}

// TestLastGPURace is reliability row G1: 50 concurrent submits compete for the last free
// GPU; exactly one wins and CUDA_VISIBLE_DEVICES sets never overlap.
func TestLastGPURace(t *testing.T) {
	for _, tc := range []struct {
		name       string
		gpus       int
		lim        Limits
		noWait     bool
		loser      Outcome
		loseReason string
	}{
		{"insufficient", 2, Limits{MaxJobs: 100}, false, Queue, "Insufficient GPUs available (0 available, 1 required)"},
		{"no_wait", 2, Limits{MaxJobs: 100}, true, Reject, "Insufficient GPUs available (0 available, 1 required)"},
		{"job limit", 8, Limits{MaxJobs: 2}, false, Queue, "Maximum concurrent local jobs (2) reached"},
		{"gpu limit", 8, Limits{MaxJobs: 100, MaxGPUs: 2}, false, Queue, "Would exceed GPU limit (3 > 2)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inv := NewFake(FakeH100(tc.gpus)...)
			a := NewAllocator(inv, tc.lim)
			if err := a.Ledger().Adopt("running", []string{FakeUUID(0)}); err != nil {
				t.Fatal(err)
			}
			const n = 50
			var (
				start   = make(chan struct{})
				wg      sync.WaitGroup
				results [n]Decision
				errs    [n]error
			)
			for i := range n {
				wg.Go(func() {
					<-start
					results[i], errs[i] = a.Reserve(context.Background(), fmt.Sprintf("job-%02d", i), Request{NoWait: tc.noWait})
				})
			}
			close(start)
			wg.Wait()

			winners := 0
			envs := map[string]string{"running": CUDAVisibleDevices([]string{FakeUUID(0)})}
			for i, d := range results {
				if errs[i] != nil {
					t.Fatalf("job %d: %v", i, errs[i])
				}
				switch d.Outcome {
				case Start:
					winners++
					envs[fmt.Sprint(i)] = CUDAVisibleDevices(d.UUIDs)
				case tc.loser:
					if d.Reason != tc.loseReason {
						t.Errorf("job %d: reason %q, want %q", i, d.Reason, tc.loseReason)
					}
				default:
					t.Errorf("job %d: %v", i, d.Outcome)
				}
			}
			if winners != 1 {
				t.Fatalf("%d winners, want exactly 1", winners)
			}
			if got := a.Ledger().Running(); got != 2 {
				t.Errorf("ledger has %d jobs, want 2", got)
			}
			seen := map[string]string{}
			for job, env := range envs {
				for _, u := range strings.Split(env, ",") {
					if other, ok := seen[u]; ok {
						t.Errorf("%s given to %s and %s", u, other, job)
					}
					seen[u] = job
				}
			}
		})
	}
}

// TestConcurrentMixedRequests hammers the ledger with reserves and releases of mixed
// sizes and checks after each step that no GPU is ever held twice.
func TestConcurrentMixedRequests(t *testing.T) {
	gpus := FakeH100(8)
	l := NewLedger(Limits{MaxJobs: 100})
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := range 50 {
				job := fmt.Sprintf("w%d-%d", w, i)
				d, err := l.Reserve(job, Request{NumProcesses: 1 + (w+i)%3, AnyGPU: i%2 == 0, Preferred: []string{"7", "6", "5"}}, gpus)
				if err != nil {
					t.Error(err)
					return
				}
				if d.Outcome == Start {
					checkNoDoubleBooking(t, l.Holdings())
					l.Release(job)
				}
			}
		})
	}
	wg.Wait()
	if l.Running() != 0 {
		t.Errorf("%d jobs still hold GPUs", l.Running())
	}
}

func checkNoDoubleBooking(t *testing.T, held map[string][]string) {
	t.Helper()
	owner := map[string]string{}
	for job, uuids := range held {
		for _, u := range uuids {
			if other, ok := owner[u]; ok {
				t.Errorf("%s held by %s and %s", u, other, job)
			}
			owner[u] = job
		}
	}
}

func TestAllocatorInventoryError(t *testing.T) {
	inv := NewFake(FakeH100(2)...)
	a := NewAllocator(inv, Limits{})
	inv.SetError(fmt.Errorf("count devices: %w", &NVMLError{Op: "nvmlDeviceGetCount_v2", Code: int(nvmlErrorUnknown)}))
	if _, err := a.Reserve(context.Background(), "a", Request{}); !errors.Is(err, ErrNVML) {
		t.Errorf("Reserve with a failing inventory: %v, want ErrNVML", err)
	}
	if a.Ledger().Running() != 0 {
		t.Error("a failed Reserve recorded a holding")
	}
	if _, err := a.View(context.Background()); !errors.Is(err, ErrNVML) {
		t.Errorf("View: %v", err)
	}
	inv.SetError(nil)
	d, err := a.Reserve(context.Background(), "a", Request{})
	if err != nil || d.Outcome != Start {
		t.Errorf("after recovery: %+v, %v", d, err)
	}
	if a.Inventory() != Inventory(inv) {
		t.Error("Inventory() is not the one given")
	}
}

// TestAllocatorQuarantine is G3: a GPU that becomes unhealthy is not handed out until
// it is healthy again; fewer GPUs after a restart turn big jobs into rejects.
func TestAllocatorQuarantine(t *testing.T) {
	inv := NewFake(FakeH100(2)...)
	a := NewAllocator(inv, Limits{MaxJobs: 5})
	ctx := context.Background()
	if !inv.SetHealthy(FakeUUID(0), false, "XID 79: GPU has fallen off the bus") {
		t.Fatal("SetHealthy found no GPU")
	}
	if d, _ := a.Reserve(ctx, "a", Request{NumProcesses: 2}); d.Outcome != Queue {
		t.Errorf("2 GPUs with one quarantined: %+v, want queue", d)
	}
	if d, _ := a.Reserve(ctx, "b", Request{}); d.Outcome != Start || d.Indexes[0] != 1 {
		t.Errorf("1 GPU with GPU 0 quarantined: %+v", d)
	}
	inv.SetHealthy(FakeUUID(0), true, "")
	if d, _ := a.Reserve(ctx, "c", Request{}); d.Outcome != Start || d.Indexes[0] != 0 {
		t.Errorf("after recovery: %+v", d)
	}
	inv.SetGPUs(FakeH100(1)...)
	if d, _ := a.Reserve(ctx, "d", Request{NumProcesses: 2}); d.Outcome != Reject {
		t.Errorf("2 GPUs on a host that now has 1: %+v, want reject", d)
	}
	if inv.SetHealthy("GPU-nope", false, "") {
		t.Error("SetHealthy found a GPU that does not exist")
	}
}
