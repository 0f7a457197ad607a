package api

import (
	"testing"

	"simpletuner/store"
	"simpletuner/supervisor/auth"
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
