package api

import (
	"log/slog"
	"path/filepath"
	"testing"

	"simpletuner/options"
	"simpletuner/store"
	"simpletuner/supervisor/auth"
	"simpletuner/supervisor/gpu"
	"simpletuner/supervisor/jobs"
	"simpletuner/supervisor/training"
)

// TestDecideJob is the job-ownership table: own jobs with the .own permission, others'
// only with .all, 403 only where the caller may see the job anyway, 404 everywhere else.
func TestDecideJob(t *testing.T) {
	level := func(name string, id int64) *auth.Principal {
		l, _ := auth.LevelByName(name)
		return &auth.Principal{User: &store.User{ID: id, IsActive: true}, Permissions: l.Permissions, Method: "api_key"}
	}
	viewer, researcher, lead, admin := level("viewer", 1), level("researcher", 2), level("lead", 3), level("admin", 4)
	local := (&auth.Service{}).LocalAdmin()
	scoped := level("admin", 5)
	scoped.Scopes = []string{"job.view.own"} // an admin's key limited to viewing own jobs
	inactive := level("researcher", 6)
	inactive.User.IsActive = false
	const mine, theirs = 0, 1 // owner: the caller, or user 99
	for _, tc := range []struct {
		name  string
		p     *auth.Principal
		owner int
		a     jobAction
		want  jobVerdict
	}{
		{"viewer views own", viewer, mine, actView, jobAllowed},
		{"viewer stops own", viewer, mine, actStop, jobForbidden},
		{"viewer views another's", viewer, theirs, actView, jobHidden},
		{"viewer stops another's", viewer, theirs, actStop, jobHidden},

		{"researcher views own", researcher, mine, actView, jobAllowed},
		{"researcher stops own", researcher, mine, actStop, jobAllowed},
		{"researcher steers own", researcher, mine, actSteer, jobAllowed},
		{"researcher cancels own in queue", researcher, mine, actQueueCancel, jobAllowed},
		{"researcher reprioritises own", researcher, mine, actPriority, jobForbidden},
		{"researcher views another's", researcher, theirs, actView, jobHidden},
		{"researcher stops another's", researcher, theirs, actStop, jobHidden},
		{"researcher steers another's", researcher, theirs, actSteer, jobHidden},
		{"researcher cancels another's in queue", researcher, theirs, actQueueCancel, jobHidden},
		{"researcher reprioritises another's", researcher, theirs, actPriority, jobHidden},

		{"lead views another's", lead, theirs, actView, jobAllowed},
		{"lead stops another's", lead, theirs, actStop, jobForbidden},
		{"lead steers another's", lead, theirs, actSteer, jobForbidden},
		{"lead cancels another's in queue", lead, theirs, actQueueCancel, jobForbidden},
		{"lead stops own", lead, mine, actStop, jobAllowed},

		{"admin views another's", admin, theirs, actView, jobAllowed},
		{"admin stops another's", admin, theirs, actStop, jobAllowed},
		{"admin steers another's", admin, theirs, actSteer, jobAllowed},
		{"admin cancels another's in queue", admin, theirs, actQueueCancel, jobAllowed},
		{"admin reprioritises another's", admin, theirs, actPriority, jobAllowed},

		{"local admin before setup stops another's", local, theirs, actStop, jobAllowed},
		{"scoped admin key views own", scoped, mine, actView, jobAllowed},
		{"scoped admin key stops own", scoped, mine, actStop, jobForbidden},
		{"scoped admin key views another's", scoped, theirs, actView, jobHidden},
		{"deactivated researcher views own", inactive, mine, actView, jobForbidden},
		{"deactivated researcher views another's", inactive, theirs, actView, jobHidden},
		{"nobody", nil, theirs, actView, jobHidden},
	} {
		owner := int64(99)
		if tc.owner == mine {
			owner = tc.p.User.ID
		}
		if got := decideJob(tc.p, owner, tc.a); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestSystemStatusHidesOthersJobIDs: the GPU allocation of /api/system/status shows the
// job id only of jobs the caller may see; other held GPUs show as allocated, id null.
func TestSystemStatusHidesOthersJobIDs(t *testing.T) {
	h := newHarness(t, Config{})
	_, adminKey := h.setup()
	research := h.createUser(adminKey, "research", "researcher")
	var me userBody
	h.do(req{method: "GET", path: "/api/users/me", cookie: research}).json(t, &me)

	log := slog.New(slog.DiscardHandler)
	alloc := gpu.NewAllocator(gpu.NewFake(
		gpu.GPU{Index: 0, UUID: "GPU-0", Name: "fake", Healthy: true},
		gpu.GPU{Index: 1, UUID: "GPU-1", Name: "fake", Healthy: true}), gpu.Limits{})
	dir := t.TempDir()
	jm, err := jobs.New(jobs.Config{JobsDir: filepath.Join(dir, "jobs"), RunDir: filepath.Join(dir, "run")}, h.db, alloc, log)
	if err != nil {
		t.Fatal(err)
	}
	h.srv.cfg.Jobs, h.srv.cfg.GPUs = jm, alloc
	h.srv.cfg.Training = training.New(options.Default(), nil, jm, dir, log)
	for i, j := range []*store.Job{{ID: "mine", OwnerID: me.ID, Status: "running"}, {ID: "theirs", OwnerID: 99, Status: "running"}} {
		if err := h.db.Jobs().Create(j); err != nil {
			t.Fatal(err)
		}
		if err := alloc.Ledger().Adopt(j.ID, []string{"GPU-" + itoa(int64(i))}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name   string
		q      req
		wantID []string
	}{
		{"researcher", req{cookie: research}, []string{"mine", ""}},
		{"admin", req{key: adminKey}, []string{"mine", "theirs"}},
	} {
		tc.q.method, tc.q.path = "GET", "/api/system/status?include_allocation=true"
		res := h.do(tc.q)
		var st systemStatusBody
		res.json(t, &st)
		if res.code != 200 || st.GPUAllocation == nil || len(st.GPUAllocation.Devices) != 2 {
			t.Fatalf("%s: %d %s", tc.name, res.code, res.body)
		}
		for i, d := range st.GPUAllocation.Devices {
			got := ""
			if d.JobID != nil {
				got = *d.JobID
			}
			if got != tc.wantID[i] || !d.Allocated {
				t.Errorf("%s: GPU %d held by %q (allocated %v), want %q", tc.name, i, got, d.Allocated, tc.wantID[i])
			}
		}
	}
}

// TestOwnJobs: the default of a checkpoint listing lands only on the caller's own jobs,
// even for a caller who may see everyone's.
func TestOwnJobs(t *testing.T) {
	level := func(name string, id int64) *auth.Principal {
		l, _ := auth.LevelByName(name)
		return &auth.Principal{User: &store.User{ID: id, IsActive: true}, Permissions: l.Permissions, Method: "api_key"}
	}
	admin, researcher := level("admin", 4), level("researcher", 2)
	inactive := level("researcher", 6)
	inactive.User.IsActive = false
	for _, tc := range []struct {
		name  string
		p     *auth.Principal
		owner int64
		want  bool
	}{
		{"researcher's own", researcher, 2, true},
		{"researcher, another's", researcher, 99, false},
		{"admin's own", admin, 4, true},
		{"admin, another's it may see", admin, 99, false},
		{"local admin's own", (&auth.Service{}).LocalAdmin(), 0, true},
		{"deactivated owner", inactive, 6, false},
		{"nobody", nil, 0, false},
	} {
		if got := ownJobs(tc.p, actView)(&store.Job{OwnerID: tc.owner}); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
