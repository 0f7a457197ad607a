package api

import (
	"errors"
	"net/http"

	"simpletuner/store"
	"simpletuner/supervisor/auth"
	"simpletuner/supervisor/jobs"
)

// jobAction is something a caller asks to do with a job, as the permission that allows it
// on the caller's own jobs and the one that allows it on everyone's.
type jobAction struct{ own, all string }

// The job actions of the API. Every route that names or implies a job decides with one of
// these through decideJob (see docs/security.md, "job ownership").
var (
	// actView reads a job: its record, status, events, logs and checkpoints.
	actView = jobAction{own: "job.view.own", all: "job.view.all"}
	// actStop stops or cancels a job (training stop and cancel).
	actStop = jobAction{own: "job.cancel.own", all: "job.cancel.all"}
	// actSteer asks a running job for a checkpoint or a validation run. No permission
	// names it; steering someone else's run spends their GPU time and writes into their
	// output directory, so it takes the strongest job-control permission, job.cancel.all.
	actSteer = jobAction{own: "job.submit", all: "job.cancel.all"}
	// actQueueCancel cancels through the queue (what `simpletuner jobs cancel` calls).
	actQueueCancel = jobAction{own: "queue.cancel.own", all: "queue.cancel.all"}
	// actPriority changes a queued job's priority: a queue manager's job on any job.
	actPriority = jobAction{own: "queue.manage", all: "queue.manage"}
)

// jobVerdict is the outcome of decideJob.
type jobVerdict int

const (
	// jobHidden: the caller may not know the job exists; answer as if it did not (404).
	jobHidden jobVerdict = iota
	// jobForbidden: the caller may see the job but not do this to it (403).
	jobForbidden
	// jobAllowed: go ahead.
	jobAllowed
)

// decideJob decides whether p may do a to a job owned by owner. Own jobs need a.own (or
// a.all); others' need a.all. A caller who lacks the permission but may see the job (its owner,
// or anyone with job.view.all) is refused with 403, which tells them nothing new; anyone
// else gets jobHidden, so job ids cannot be probed. The local administrator of a fresh
// install holds "*" and passes every check.
func decideJob(p *auth.Principal, owner int64, a jobAction) jobVerdict {
	mine := p != nil && p.User != nil && p.User.ID == owner
	switch {
	case p.Can(a.all), mine && p.Can(a.own):
		return jobAllowed
	case mine, p.Can(actView.all):
		return jobForbidden
	}
	return jobHidden
}

// visible reports whether p may see the job.
func visible(p *auth.Principal, j *store.Job) bool {
	return decideJob(p, j.OwnerID, actView) == jobAllowed
}

// errJobNotFound is the one answer for a job that does not exist or that the caller may
// not see: the same status and words, so the two cannot be told apart.
func errJobNotFound() error { return errorf(http.StatusNotFound, "Job not found") }

// jobFor loads job id for doing a on behalf of p: 404 "Job not found" when it does not
// exist or p may not see it, 403 when p may see it but not do a.
func (s *Server) jobFor(p *auth.Principal, id string, a jobAction) (*store.Job, error) {
	j, err := s.cfg.Jobs.Get(id)
	if errors.Is(err, jobs.ErrNotFound) {
		return nil, errJobNotFound()
	}
	if err != nil {
		return nil, err
	}
	switch decideJob(p, j.OwnerID, a) {
	case jobAllowed:
		return j, nil
	case jobForbidden:
		perm := a.all
		if p.User != nil && p.User.ID == j.OwnerID {
			perm = a.own
		}
		return nil, errorf(http.StatusForbidden, "Permission denied: %s", perm)
	}
	return nil, errJobNotFound()
}

// mayDo is the filter of the jobs p may do a to, for jobs.Manager.Current and Latest.
func mayDo(p *auth.Principal, a jobAction) func(*store.Job) bool {
	return func(j *store.Job) bool { return decideJob(p, j.OwnerID, a) == jobAllowed }
}

// ownJobs is the filter of p's own jobs that p may do a to: narrower than mayDo for a
// caller who may act on everyone's jobs, where a default must not land on another
// user's job.
func ownJobs(p *auth.Principal, a jobAction) func(*store.Job) bool {
	return func(j *store.Job) bool {
		return p != nil && p.User != nil && j.OwnerID == p.User.ID && decideJob(p, j.OwnerID, a) == jobAllowed
	}
}

// currentJob is "the current job" of p for a: the newest starting or running job p may do
// a to. That is p's own latest running job, unless p may do a to everyone's (then the
// newest of all, as SimpleTuner's single-user API means it). Nil when there is none.
func (s *Server) currentJob(p *auth.Principal, a jobAction) (*store.Job, error) {
	return s.cfg.Jobs.Current(mayDo(p, a))
}

// jobOrCurrent is the job named by id, or p's current job when id is empty (nil, nil
// when p has none).
func (s *Server) jobOrCurrent(p *auth.Principal, id string, a jobAction) (*store.Job, error) {
	if id != "" {
		return s.jobFor(p, id, a)
	}
	return s.currentJob(p, a)
}
