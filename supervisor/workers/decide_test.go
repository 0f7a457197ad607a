package workers

import (
	"testing"
	"time"

	"simpletuner/plugins/workerproto"
	"simpletuner/store"
)

func TestDecideRejoin(t *testing.T) {
	for _, tc := range []struct {
		name               string
		reported, assigned string
		acked              bool
		want               rejoin
	}{
		{"fresh worker", "", "", false, rejoin{}},
		{"keeps its job across a lost connection", "j1", "j1", true, rejoin{Resume: true}},
		{"keeps a job it had not reported yet", "j1", "j1", false, rejoin{Resume: true}},
		{"job requeued while it was away", "j1", "", false, rejoin{Abandon: true}},
		{"job went elsewhere, another was given", "j1", "j2", false, rejoin{Abandon: true, Resend: true}},
		{"never got its job", "", "j2", false, rejoin{Resend: true}},
		{"lost the job it had", "", "j2", true, rejoin{LoseAssigned: true}},
		{"runs a stranger, lost its own", "j9", "j2", true, rejoin{Abandon: true, LoseAssigned: true}},
	} {
		if got := decideRejoin(tc.reported, tc.assigned, tc.acked); got != tc.want {
			t.Errorf("%s: decideRejoin(%q, %q, %v) = %+v, want %+v", tc.name, tc.reported, tc.assigned, tc.acked, got, tc.want)
		}
	}
}

func TestDecideHealth(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) *time.Time { t := now.Add(-d); return &t }
	lim := healthLimits{heartbeat: 120 * time.Second, connecting: 300 * time.Second, offlineEphemeral: time.Hour}
	for _, tc := range []struct {
		name string
		w    store.Worker
		want healthAction
	}{
		{"fresh heartbeat", store.Worker{Status: workerproto.StatusIdle, LastSeen: ago(10 * time.Second)}, keep},
		{"busy and silent", store.Worker{Status: workerproto.StatusBusy, LastSeen: ago(121 * time.Second)}, markOffline},
		{"draining and silent", store.Worker{Status: workerproto.StatusDraining, LastSeen: ago(time.Hour)}, markOffline},
		{"idle without any heartbeat", store.Worker{Status: workerproto.StatusIdle}, markOffline},
		{"connecting, in time", store.Worker{Status: workerproto.StatusConnecting, CreatedAt: *ago(time.Minute)}, keep},
		{"ephemeral never came", store.Worker{Status: workerproto.StatusConnecting, Type: TypeEphemeral, CreatedAt: *ago(301 * time.Second)}, remove},
		{"persistent never came", store.Worker{Status: workerproto.StatusConnecting, Type: TypePersistent, CreatedAt: *ago(301 * time.Second)}, markOffline},
		{"bound worker pending in Slurm", store.Worker{Status: workerproto.StatusConnecting, Type: TypeEphemeral, BoundJob: "j", CreatedAt: *ago(5 * time.Hour)}, keep},
		{"ephemeral offline long", store.Worker{Status: workerproto.StatusOffline, Type: TypeEphemeral, OfflineSince: ago(61 * time.Minute)}, remove},
		{"ephemeral offline briefly", store.Worker{Status: workerproto.StatusOffline, Type: TypeEphemeral, OfflineSince: ago(59 * time.Minute)}, keep},
		{"persistent offline long", store.Worker{Status: workerproto.StatusOffline, Type: TypePersistent, OfflineSince: ago(48 * time.Hour)}, keep},
		{"bound offline long", store.Worker{Status: workerproto.StatusOffline, Type: TypeEphemeral, BoundJob: "j", OfflineSince: ago(48 * time.Hour)}, keep},
	} {
		if got := decideHealth(&tc.w, now, lim); got != tc.want {
			t.Errorf("%s: decideHealth = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestTaskLost(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) *time.Time { t := now.Add(-d); return &t }
	timeout := 2 * time.Minute
	for _, tc := range []struct {
		name  string
		w     *store.Worker
		since time.Time
		want  bool
	}{
		{"worker gone", nil, now, true},
		{"worker online", &store.Worker{Status: workerproto.StatusBusy, LastSeen: ago(time.Hour)}, now.Add(-time.Hour), false},
		{"offline and silent", &store.Worker{Status: workerproto.StatusOffline, LastSeen: ago(3 * time.Minute)}, now.Add(-time.Hour), true},
		{"offline, daemon just restarted", &store.Worker{Status: workerproto.StatusOffline, LastSeen: ago(time.Hour)}, now.Add(-time.Minute), false},
		{"offline since restart past the timeout", &store.Worker{Status: workerproto.StatusOffline, LastSeen: ago(time.Hour)}, now.Add(-3 * time.Minute), true},
		{"bound, Slurm has not started it", &store.Worker{Status: workerproto.StatusOffline, BoundJob: "j"}, now.Add(-time.Hour), false},
		{"bound, registered then silent", &store.Worker{Status: workerproto.StatusOffline, BoundJob: "j", ConnectedAt: ago(time.Hour), LastSeen: ago(time.Hour)}, now.Add(-time.Hour), true},
	} {
		if got, _ := taskLost(tc.w, tc.since, now, timeout); got != tc.want {
			t.Errorf("%s: taskLost = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestGPUsFit(t *testing.T) {
	for _, tc := range []struct {
		have, want int
		ok         bool
	}{
		{8, 1, true}, {2, 2, true}, {1, 2, false}, {0, 1, true}, {0, 0, true}, {0, 2, false}, {4, 0, true},
	} {
		if got := gpusFit(tc.have, tc.want); got != tc.ok {
			t.Errorf("gpusFit(%d, %d) = %v, want %v", tc.have, tc.want, got, tc.ok)
		}
	}
}

func TestChoosePlace(t *testing.T) {
	w := func(id, status string, gpus int, labels map[string]string) *store.Worker {
		return &store.Worker{ID: id, Status: status, GPU: workerproto.GPUInfo{Count: gpus}, Labels: labels}
	}
	a100 := map[string]string{"gpu_type": "a100-80gb"}
	h100 := map[string]string{"gpu_type": "h100"}
	all := func(string) bool { return true }
	none := func(string) bool { return false }
	for _, tc := range []struct {
		name      string
		ws        []*store.Worker
		connected func(string) bool
		reserved  func(string) bool
		job       store.Job
		want      string
	}{
		{"label glob", []*store.Worker{w("w1", "idle", 1, h100), w("w2", "idle", 1, a100)}, all, none,
			store.Job{NumGPUs: 1, WorkerLabels: map[string]string{"gpu_type": "a100*"}}, "w2"},
		{"fewest GPUs that suffice", []*store.Worker{w("w1", "idle", 8, a100), w("w2", "idle", 2, a100), w("w3", "idle", 1, a100)}, all, none,
			store.Job{NumGPUs: 2}, "w2"},
		{"busy, draining, offline skipped", []*store.Worker{w("w1", "busy", 1, nil), w("w2", "draining", 1, nil), w("w3", "offline", 1, nil)}, all, none,
			store.Job{NumGPUs: 1}, ""},
		{"not connected", []*store.Worker{w("w1", "idle", 1, nil)}, none, none, store.Job{NumGPUs: 1}, ""},
		{"reserved for another job", []*store.Worker{w("w1", "idle", 1, nil), w("w2", "idle", 1, nil)}, all, func(id string) bool { return id == "w1" },
			store.Job{NumGPUs: 1}, "w2"},
		{"bound worker never chosen", []*store.Worker{{ID: "w1", Status: "idle", GPU: workerproto.GPUInfo{Count: 1}, BoundJob: "x"}}, all, none,
			store.Job{NumGPUs: 1}, ""},
		{"ties by id", []*store.Worker{w("w2", "idle", 1, nil), w("w1", "idle", 1, nil)}, all, none, store.Job{NumGPUs: 1}, "w1"},
	} {
		got, ok := choosePlace(tc.ws, tc.connected, tc.reserved, &tc.job)
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("%s: choosePlace = %q %v, want %q", tc.name, got, ok, tc.want)
		}
	}
}
