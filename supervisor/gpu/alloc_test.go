package gpu

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestDecide(t *testing.T) {
	h1, h2, h4, h8 := FakeH100(1), FakeH100(2), FakeH100(4), FakeH100(8)
	u := FakeUUID
	sick := func(gpus []GPU, idx ...int) []GPU {
		gpus = slices.Clone(gpus)
		for _, i := range idx {
			gpus[i].Healthy, gpus[i].HealthReason = false, "nvmlDeviceGetMemoryInfo: GPU is lost"
		}
		return gpus
	}
	reversed := slices.Clone(h4)
	slices.Reverse(reversed)
	noUUID := slices.Clone(h2)
	noUUID[0].UUID, noUUID[0].Healthy = "", false
	cpuJob := map[string][]string{"cpu-job": {}}

	tests := []struct {
		name   string
		req    Request
		gpus   []GPU
		held   map[string][]string
		lim    Limits
		want   Outcome
		idx    []int  // Start: the indexes, in order
		reason string // Queue/Reject: exact reason, or a substring when prefixed with "~"
	}{
		// Rule 2: the CPU-only host.
		{name: "cpu host runs the default job on the CPU", want: StartCPU},
		{name: "cpu host: num_processes 0 counts as 1", req: Request{NumProcesses: 0}, want: StartCPU},
		{name: "cpu host: negative num_processes counts as 1", req: Request{NumProcesses: -3}, want: StartCPU},
		{name: "cpu host rejects two GPUs", req: Request{NumProcesses: 2}, want: Reject,
			reason: "num_processes=2 needs 2 GPUs but this host has none; set num_processes=1 to train on the CPU"},
		{name: "cpu host rejects two GPUs even with any_gpu", req: Request{NumProcesses: 2, AnyGPU: true}, want: Reject, reason: "~has none"},
		{name: "cpu host rejects a preferred device", req: Request{Preferred: []string{"0"}}, want: Reject,
			reason: "accelerate_visible_devices asks for GPU 0 but this host has none; remove it (or pass any_gpu) to train on the CPU"},
		{name: "cpu host: any_gpu ignores the preference", req: Request{Preferred: []string{"0"}, AnyGPU: true}, want: StartCPU},
		{name: "cpu host: CPU jobs count against local_job_max_concurrent", held: cpuJob, want: Queue,
			reason: "Maximum concurrent local jobs (1) reached"},
		{name: "cpu host: raised job limit admits a second CPU job", held: cpuJob, lim: Limits{MaxJobs: 2}, want: StartCPU},
		{name: "cpu host: no_wait rejects instead of queueing", req: Request{NoWait: true}, held: cpuJob, want: Reject,
			reason: "Maximum concurrent local jobs (1) reached"},

		// Rule 3: impossible requests are rejected at submission, before any queueing rule.
		{name: "more GPUs than the host has", req: Request{NumProcesses: 3}, gpus: h2, want: Reject,
			reason: "num_processes=3 needs 3 GPUs but this host has only 2"},
		{name: "nine on a DGX", req: Request{NumProcesses: 9}, gpus: h8, want: Reject, reason: "~has only 8"},
		{name: "reject wins over a full job limit", req: Request{NumProcesses: 3}, gpus: h2, held: map[string][]string{"a": {u(0)}}, want: Reject},
		{name: "unhealthy GPUs still count as existing", req: Request{NumProcesses: 2}, gpus: sick(h2, 1), want: Queue,
			reason: "Insufficient GPUs available (1 available, 2 required)"},
		{name: "unknown preferred index", req: Request{Preferred: []string{"7"}}, gpus: h2, want: Reject,
			reason: `accelerate_visible_devices names GPU "7", which this host does not have (it has GPUs 0, 1)`},
		{name: "unknown preferred UUID", req: Request{Preferred: []string{"GPU-deadbeef"}}, gpus: h2, want: Reject, reason: "~GPU-deadbeef"},
		{name: "index and UUID of the same GPU are one device", req: Request{NumProcesses: 2, Preferred: []string{"1", u(1)}}, gpus: h2,
			want: Reject, reason: "accelerate_visible_devices names 1 distinct GPUs but num_processes=2"},

		// Rule 4: local_job_max_concurrent (default 1).
		{name: "default job limit is one", gpus: h8, held: map[string][]string{"a": {u(0)}}, want: Queue,
			reason: "Maximum concurrent local jobs (1) reached"},
		{name: "job limit two admits a second", gpus: h8, held: map[string][]string{"a": {u(0), u(1)}}, lim: Limits{MaxJobs: 2}, want: Start, idx: []int{2}},
		{name: "job limit checked before the GPU limit", gpus: h8, held: map[string][]string{"a": {u(0)}, "b": {u(1)}},
			lim: Limits{MaxJobs: 2, MaxGPUs: 2}, want: Queue, reason: "Maximum concurrent local jobs (2) reached"},

		// Rule 5: local_gpu_max_concurrent (0 = null = unlimited).
		{name: "would exceed GPU limit", req: Request{NumProcesses: 2}, gpus: h8, held: map[string][]string{"a": {u(0), u(1), u(2)}},
			lim: Limits{MaxJobs: 5, MaxGPUs: 4}, want: Queue, reason: "Would exceed GPU limit (5 > 4)"},
		{name: "exactly at the GPU limit starts", gpus: h8, held: map[string][]string{"a": {u(0), u(1), u(2)}},
			lim: Limits{MaxJobs: 5, MaxGPUs: 4}, want: Start, idx: []int{3}},
		{name: "GPU limit larger than the job is permanent but queues", req: Request{NumProcesses: 4}, gpus: h8,
			lim: Limits{MaxGPUs: 2}, want: Queue, reason: "Would exceed GPU limit (4 > 2)"},
		{name: "unlimited GPUs", gpus: h8, held: map[string][]string{"a": {u(0), u(1), u(2), u(3), u(4), u(5), u(6)}},
			lim: Limits{MaxJobs: 5}, want: Start, idx: []int{7}},
		{name: "GPUs held on a vanished device count toward the limit", gpus: h2, held: map[string][]string{"a": {"GPU-gone"}},
			lim: Limits{MaxJobs: 5, MaxGPUs: 1}, want: Queue, reason: "Would exceed GPU limit (2 > 1)"},
		{name: "GPU limit checked before availability", req: Request{NumProcesses: 2}, gpus: h2, held: map[string][]string{"a": {u(0)}},
			lim: Limits{MaxJobs: 5, MaxGPUs: 2}, want: Queue, reason: "Would exceed GPU limit (3 > 2)"},

		// Rule 6: availability; unhealthy GPUs are never free.
		{name: "insufficient GPUs", req: Request{NumProcesses: 2}, gpus: h2, held: map[string][]string{"a": {u(0)}},
			lim: Limits{MaxJobs: 5}, want: Queue, reason: "Insufficient GPUs available (1 available, 2 required)"},
		{name: "last free GPU is taken", gpus: h2, held: map[string][]string{"a": {u(0)}}, lim: Limits{MaxJobs: 5}, want: Start, idx: []int{1}},
		{name: "all GPUs busy", gpus: h1, held: map[string][]string{"a": {u(0)}}, lim: Limits{MaxJobs: 5}, want: Queue,
			reason: "Insufficient GPUs available (0 available, 1 required)"},
		{name: "unhealthy GPU skipped", gpus: sick(h2, 0), want: Start, idx: []int{1}},
		{name: "only unhealthy GPUs: queue, not CPU", gpus: sick(h1, 0), want: Queue, reason: "Insufficient GPUs available (0 available, 1 required)"},
		{name: "GPU without UUID never allocated", gpus: noUUID, want: Start, idx: []int{1}},
		{name: "no_wait turns insufficient into reject", req: Request{NoWait: true}, gpus: h1, held: map[string][]string{"a": {u(0)}},
			lim: Limits{MaxJobs: 5}, want: Reject, reason: "Insufficient GPUs available (0 available, 1 required)"},

		// Rule 7: preferred devices.
		{name: "preferred pair", req: Request{NumProcesses: 2, Preferred: []string{"2", "3"}}, gpus: h4, want: Start, idx: []int{2, 3}},
		{name: "preference order is kept", req: Request{NumProcesses: 2, Preferred: []string{"3", "1"}}, gpus: h4, want: Start, idx: []int{3, 1}},
		{name: "first n free of a longer list", req: Request{NumProcesses: 2, Preferred: []string{"3", "1", "0"}}, gpus: h4,
			held: map[string][]string{"a": {u(3)}}, lim: Limits{MaxJobs: 2}, want: Start, idx: []int{1, 0}},
		{name: "preferred by UUID, any case", req: Request{Preferred: []string{strings.ToLower(u(2))}}, gpus: h4, want: Start, idx: []int{2}},
		{name: "preferred not fully available", req: Request{NumProcesses: 2, Preferred: []string{"2", "3"}}, gpus: h4,
			held: map[string][]string{"a": {u(2)}}, lim: Limits{MaxJobs: 2}, want: Queue,
			reason: "Preferred GPUs [2, 3] not fully available (only [3] available, need 2)"},
		{name: "preferred GPU unhealthy", req: Request{Preferred: []string{"0"}}, gpus: sick(h2, 0), want: Queue,
			reason: "Preferred GPUs [0] not fully available (only [] available, need 1)"},
		{name: "any_gpu ignores the preference", req: Request{NumProcesses: 2, Preferred: []string{"2", "3"}, AnyGPU: true}, gpus: h4,
			held: map[string][]string{"a": {u(2)}}, lim: Limits{MaxJobs: 2}, want: Start, idx: []int{0, 1}},
		{name: "any_gpu ignores an unknown preference", req: Request{Preferred: []string{"9"}, AnyGPU: true}, gpus: h4, want: Start, idx: []int{0}},
		{name: "incomplete preference list is dropped", req: Request{NumProcesses: 2, Preferred: []string{"3"}}, gpus: h4, want: Start, idx: []int{0, 1}},
		{name: "incomplete list with an unknown id is dropped, not rejected", req: Request{NumProcesses: 2, Preferred: []string{"9"}}, gpus: h4,
			want: Start, idx: []int{0, 1}},
		{name: "duplicate ids collapse, then the list is incomplete", req: Request{NumProcesses: 2, Preferred: []string{"3", "3"}}, gpus: h4,
			want: Start, idx: []int{0, 1}},

		// Rule 8: lowest index.
		{name: "one GPU host", gpus: h1, want: Start, idx: []int{0}},
		{name: "half a DGX", req: Request{NumProcesses: 4}, gpus: h8, want: Start, idx: []int{0, 1, 2, 3}},
		{name: "whole DGX", req: Request{NumProcesses: 8}, gpus: h8, want: Start, idx: []int{0, 1, 2, 3, 4, 5, 6, 7}},
		{name: "lowest index even from an unsorted list", req: Request{NumProcesses: 2}, gpus: reversed, want: Start, idx: []int{0, 1}},
		{name: "holes are filled lowest first", req: Request{NumProcesses: 2}, gpus: h8,
			held: map[string][]string{"a": {u(0), u(2)}}, lim: Limits{MaxJobs: 2}, want: Start, idx: []int{1, 3}},
		// SimpleTuner's documented example: GPUs 0,1 allocated, 2,3 available.
		{name: "SimpleTuner's example: next job gets 2 and 3", req: Request{NumProcesses: 2}, gpus: h4,
			held: map[string][]string{"3f2a9c1d": {u(0), u(1)}}, lim: Limits{MaxJobs: 2}, want: Start, idx: []int{2, 3}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := cloneHeld(tc.held)
			d := Decide(tc.req, tc.gpus, tc.held, tc.lim)
			if d.Outcome != tc.want {
				t.Fatalf("outcome %v (%q), want %v", d.Outcome, d.Reason, tc.want)
			}
			switch d.Outcome {
			case Start:
				if !slices.Equal(d.Indexes, tc.idx) {
					t.Errorf("indexes %v, want %v", d.Indexes, tc.idx)
				}
				for i, idx := range d.Indexes {
					if d.UUIDs[i] != u(idx) {
						t.Errorf("UUID %d = %s, want %s", i, d.UUIDs[i], u(idx))
					}
				}
				if d.Reason != "" {
					t.Errorf("reason on start: %q", d.Reason)
				}
			case StartCPU:
				if len(d.UUIDs) != 0 || len(d.Indexes) != 0 {
					t.Errorf("CPU start with GPUs: %+v", d)
				}
			default:
				if len(d.UUIDs) != 0 {
					t.Errorf("GPUs on %v: %v", d.Outcome, d.UUIDs)
				}
				if sub, ok := strings.CutPrefix(tc.reason, "~"); ok {
					if !strings.Contains(d.Reason, sub) {
						t.Errorf("reason %q, want it to contain %q", d.Reason, sub)
					}
				} else if tc.reason != "" && d.Reason != tc.reason {
					t.Errorf("reason\n got %q\nwant %q", d.Reason, tc.reason)
				}
				if d.Reason == "" {
					t.Error("no reason")
				}
			}
			if !equalHeld(tc.held, before) {
				t.Errorf("Decide modified its input: %v → %v", before, tc.held)
			}
		})
	}
}

// TestDecideNeverDoubleBooks checks the invariant over many shapes: a started job's
// GPUs are distinct, healthy, in the inventory and held by nobody else.
func TestDecideNeverDoubleBooks(t *testing.T) {
	gpus := FakeH100(8)
	gpus[5].Healthy = false
	for mask := range 1 << 8 {
		held := map[string][]string{}
		for i := range 8 {
			if mask&(1<<i) != 0 {
				held["job"+FakeUUID(i)] = []string{FakeUUID(i)}
			}
		}
		for n := 1; n <= 8; n++ {
			for _, anyGPU := range []bool{false, true} {
				req := Request{NumProcesses: n, AnyGPU: anyGPU, Preferred: []string{"7", "6", "5", "4", "3", "2", "1", "0"}}
				d := Decide(req, gpus, held, Limits{MaxJobs: 100})
				if d.Outcome != Start {
					continue
				}
				seen := map[string]bool{}
				for _, id := range d.UUIDs {
					g := lookup(gpus, id)
					if g == nil || !g.Healthy || seen[id] || heldSet(held)[id] {
						t.Fatalf("mask %08b n %d: bad pick %v", mask, n, d.UUIDs)
					}
					seen[id] = true
				}
				if len(seen) != n {
					t.Fatalf("mask %08b n %d: got %d GPUs", mask, n, len(seen))
				}
			}
		}
	}
}

func TestParseDeviceList(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
		err  bool
	}{
		{"", nil, false},
		{"0", []string{"0"}, false},
		{" 0, 1 ,,3 ", []string{"0", "1", "3"}, false},
		{"01", []string{"1"}, false},
		{FakeUUID(0) + "," + FakeUUID(1), []string{FakeUUID(0), FakeUUID(1)}, false},
		{"MIG-abc", []string{"MIG-abc"}, false},
		{"-1", nil, true},
		{"cuda:0", nil, true},
		{"GPU-", nil, true},
	} {
		got, err := ParseDeviceList(tc.in)
		if tc.err {
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("ParseDeviceList(%q) err = %v, want ErrInvalid", tc.in, err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("ParseDeviceList(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestOutcomeString(t *testing.T) {
	for o, want := range map[Outcome]string{Start: "start", StartCPU: "cpu", Queue: "queue", Reject: "reject", 0: "Outcome(0)"} {
		if o.String() != want {
			t.Errorf("%d.String() = %q, want %q", int(o), o.String(), want)
		}
	}
}

func cloneHeld(h map[string][]string) map[string][]string {
	if h == nil {
		return nil
	}
	out := map[string][]string{}
	for k, v := range h {
		out[k] = slices.Clone(v)
	}
	return out
}

func equalHeld(a, b map[string][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || !slices.Equal(v, w) {
			return false
		}
	}
	return true
}
