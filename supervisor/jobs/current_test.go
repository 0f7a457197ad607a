package jobs

import (
	"log/slog"
	"path/filepath"
	"testing"

	"simpletuner/store"
	"simpletuner/supervisor/gpu"
)

// TestCurrentAndLatestKeepOnlyTheJobsAsked: the API passes "jobs this caller may see" as
// keep, so one user's current job is never another user's newer one.
func TestCurrentAndLatestKeepOnlyTheJobsAsked(t *testing.T) {
	e := newEnv(t, gpu.NewFake())
	// Oldest first: owner 1 finished, owner 1 running, owner 2 running, owner 3 queued,
	// owner 4 failed, owner 5 held for approval.
	for _, j := range []*store.Job{
		{ID: "done1", OwnerID: 1, Status: StatusCompleted},
		{ID: "run1", OwnerID: 1, Status: StatusRunning},
		{ID: "run2", OwnerID: 2, Status: StatusRunning},
		{ID: "queued3", OwnerID: 3, Status: StatusQueued},
		{ID: "done4", OwnerID: 4, Status: StatusFailed},
		{ID: "held5", OwnerID: 5, Status: StatusPendingApproval},
	} {
		if err := e.db.Jobs().Create(j); err != nil {
			t.Fatal(err)
		}
	}
	// No Reconcile: it would judge these hand-made jobs; Current and Latest only read.
	m, err := New(Config{JobsDir: filepath.Join(e.home, "jobs"), RunDir: filepath.Join(e.home, "run")}, e.db,
		gpu.NewAllocator(e.inv, gpu.Limits{}), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	owner := func(id int64) func(*store.Job) bool { return func(j *store.Job) bool { return j.OwnerID == id } }
	for _, tc := range []struct {
		name            string
		keep            func(*store.Job) bool
		current, latest string
	}{
		{"everyone", nil, "run2", "run2"},
		{"owner 1", owner(1), "run1", "run1"},
		{"owner 2", owner(2), "run2", "run2"},
		{"owner 3 (only queued)", owner(3), "", ""},
		{"owner 4 (only ended)", owner(4), "", "done4"},
		{"owner 5 (only held for approval)", owner(5), "", ""},
		{"owner 9 (none)", owner(9), "", ""},
	} {
		cur, err := m.Current(tc.keep)
		if err != nil {
			t.Fatal(err)
		}
		lat, err := m.Latest(tc.keep)
		if err != nil {
			t.Fatal(err)
		}
		if id(cur) != tc.current || id(lat) != tc.latest {
			t.Errorf("%s: Current %q, Latest %q; want %q, %q", tc.name, id(cur), id(lat), tc.current, tc.latest)
		}
	}
}

func id(j *store.Job) string {
	if j == nil {
		return ""
	}
	return j.ID
}
