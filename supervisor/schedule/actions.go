package schedule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"simpletuner/options"
	"simpletuner/plugins"
	"simpletuner/store"
	"simpletuner/supervisor/auth"
	"simpletuner/supervisor/jobs"
	"simpletuner/supervisor/training"
)

// Actions a schedule can take.
const (
	// ActionSubmit queues an environment, as POST /api/queue/submit does.
	ActionSubmit = "submit"
	// ActionCheckpoint asks a running job for a checkpoint.
	ActionCheckpoint = "checkpoint"
	// ActionValidate asks a running job for a validation run.
	ActionValidate = "validate"
	// ActionCleanup deletes old jobs, events or checkpoints by a retention policy.
	ActionCleanup = "cleanup"
	// ActionMaintenance is the daemon's own upkeep (built-in schedules only).
	ActionMaintenance = "maintenance"
)

// What a cleanup deletes.
const (
	CleanupJobs        = "jobs"
	CleanupEvents      = "events"
	CleanupCheckpoints = "checkpoints"
)

// CurrentJob in a checkpoint or validate action means the owner's running job.
const CurrentJob = "current"

// Permissions (docs/security.md): a job's own permission and the one over everyone's.
const (
	permSubmit     = "job.submit"
	permPriority   = "job.priority.high"
	permViewAll    = "job.view.all"
	permSteerAll   = "job.cancel.all" // steering another's run: docs/security.md, job ownership
	permDeleteOwn  = "job.delete.own"
	permDeleteAll  = "job.delete.all"
	defaultPrio    = 10
	maxPrio        = 50
	maxNormalPrio  = 20
	scheduleMethod = "schedule"
)

// errOwnerGone: the schedule's owner was deleted; the schedule is disabled, not failed
// again at every slot.
var errOwnerGone = errors.New("owner gone")

// ownerPrincipal is the schedule's owner with the permissions they hold now: a run obeys
// them as they are when it fires, so a demoted or deactivated owner's schedule fails.
func (s *Scheduler) ownerPrincipal(sc *store.Schedule) (*auth.Principal, error) {
	u, err := s.opts.Users.GetUser(sc.OwnerID)
	if err != nil {
		return nil, fmt.Errorf("%w: the schedule's owner %s (id %d) no longer exists; the schedule is disabled", errOwnerGone, sc.Owner, sc.OwnerID)
	}
	if !u.IsActive {
		return nil, fmt.Errorf("the schedule's owner %s is deactivated", u.Username)
	}
	return &auth.Principal{User: u, Permissions: auth.PermissionsFor(u.Levels, u.IsAdmin), Method: scheduleMethod}, nil
}

// mayActOn reports whether p may do to a job owned by owner what own (on p's own jobs)
// or all (on anyone's) allows — the rule of docs/security.md, "job ownership".
func mayActOn(p *auth.Principal, owner int64, own, all string) bool {
	return p.Can(all) || (p.User != nil && p.User.ID == owner && p.Can(own))
}

// submit queues the schedule's environment through the training service, the path POST
// /api/queue/submit takes, as the owner.
func (s *Scheduler) submit(ctx context.Context, p *auth.Principal, sc *store.Schedule) Result {
	a := sc.Action
	if !p.Can(permSubmit) {
		return failed("permission denied: %s (the owner %s lacks it now)", permSubmit, p.User.Username)
	}
	prio := defaultPrio
	if a.Priority != nil {
		prio = *a.Priority
	}
	if prio > maxNormalPrio && !p.Can(permPriority) {
		return failed("permission denied: %s (priority %d)", permPriority, prio)
	}
	b, err := s.opts.Training.FromEnvironment(a.ConfigName, p.Permissions)
	if errors.Is(err, training.ErrEnvNotFound) {
		return failed("environment %q not found", a.ConfigName)
	}
	if err != nil {
		return failed("environment %q: %v", a.ConfigName, err)
	}
	job, err := s.opts.Training.Start(ctx, training.StartRequest{Bundle: b, OwnerID: p.User.ID, Owner: p.User.Username,
		Priority: prio, WorkerLabels: a.WorkerLabels, Target: a.Target})
	switch {
	case errors.Is(err, training.ErrInvalid):
		return failed("configuration validation failed: %s", strings.Join(b.Issues.Errors().Messages(), "; "))
	case err != nil:
		r := failed("%v", err)
		if job != nil {
			r.JobID = job.ID
		}
		return r
	}
	return Result{Outcome: OutcomeOK, JobID: job.ID, Detail: fmt.Sprintf("job %s submitted from %s: %s", job.ID, a.ConfigName, job.Status)}
}

// steer asks a job for a checkpoint or validation run, as the owner.
func (s *Scheduler) steer(ctx context.Context, p *auth.Principal, sc *store.Schedule, c plugins.Command) Result {
	id := sc.Action.JobID
	var j *store.Job
	var err error
	if id == "" || id == CurrentJob {
		j, err = s.opts.Jobs.Current(func(j *store.Job) bool { return mayActOn(p, j.OwnerID, "job.view.own", permViewAll) })
		if err == nil && j == nil {
			return failed("no running job of %s to %s", p.User.Username, sc.Action.Kind)
		}
	} else {
		j, err = s.opts.Jobs.Get(id)
		if errors.Is(err, jobs.ErrNotFound) || (err == nil && !mayActOn(p, j.OwnerID, "job.view.own", permViewAll)) {
			return failed("job %s not found", id)
		}
	}
	if err != nil {
		return failed("%v", err)
	}
	if !mayActOn(p, j.OwnerID, permSubmit, permSteerAll) {
		return Result{Outcome: OutcomeFailed, JobID: j.ID, Error: "permission denied: " + permSubmit + " on job " + j.ID}
	}
	if err := s.opts.Jobs.Command(ctx, j.ID, c); err != nil {
		return Result{Outcome: OutcomeFailed, JobID: j.ID, Error: fmt.Sprintf("job %s: %v", j.ID, err)}
	}
	return Result{Outcome: OutcomeOK, JobID: j.ID, Detail: fmt.Sprintf("%s requested from job %s", c, j.ID)}
}

// cleanup deletes what the owner's retention policy says: ended jobs, stored events, or
// checkpoints of ended jobs' output directories.
func (s *Scheduler) cleanup(p *auth.Principal, sc *store.Schedule) Result {
	a := sc.Action
	now := s.clock.Now()
	if a.What == CleanupEvents {
		// Events are one server-wide log: trimming it touches everyone's.
		if !p.Can(permDeleteAll) {
			return failed("permission denied: %s (event cleanup trims every user's events)", permDeleteAll)
		}
		n, err := s.opts.Store.Events().Trim(a.KeepLast, days(a.KeepDays), now)
		if err != nil {
			return failed("trim events: %v", err)
		}
		return Result{Outcome: OutcomeOK, Detail: fmt.Sprintf("deleted %d events", n)}
	}
	if !p.Can(permDeleteOwn) && !p.Can(permDeleteAll) {
		return failed("permission denied: %s", permDeleteOwn)
	}
	all, err := s.opts.Jobs.List()
	if err != nil {
		return failed("list jobs: %v", err)
	}
	var mine []*store.Job
	for _, j := range all {
		if jobs.Terminal(j.Status) && mayActOn(p, j.OwnerID, permDeleteOwn, permDeleteAll) {
			mine = append(mine, j)
		}
	}
	if a.What == CleanupCheckpoints {
		return s.pruneCheckpoints(all, mine, a.KeepLast, a.KeepDays, now)
	}
	items := make([]aged, len(mine))
	for i, j := range mine {
		items[i] = aged{id: j.ID, rank: j.Seq, at: endedAt(j)}
	}
	deleted, errs := 0, []string{}
	for _, id := range expired(items, a.KeepLast, days(a.KeepDays), now) {
		if err := s.opts.Jobs.Delete(id); err != nil {
			errs = append(errs, id+": "+err.Error())
			continue
		}
		deleted++
	}
	r := Result{Outcome: OutcomeOK, Detail: fmt.Sprintf("deleted %d jobs", deleted)}
	if len(errs) > 0 {
		r.Outcome, r.Error = OutcomeFailed, "deleted "+fmt.Sprint(deleted)+" jobs; not deleted: "+strings.Join(errs, "; ")
	}
	return r
}

// days is n days.
func days(n int) time.Duration { return time.Duration(n) * 24 * time.Hour }

// endedAt is when a job ended (its creation, for a record without an end time).
func endedAt(j *store.Job) time.Time {
	if j.FinishedAt != nil {
		return *j.FinishedAt
	}
	return j.CreatedAt
}

// outputDir is a job's resolved --output_dir ("" when it has none).
func outputDir(root string, j *store.Job) string {
	var cfg struct {
		OutputDir string `json:"--output_dir"`
	}
	if json.Unmarshal(j.Config, &cfg) != nil || strings.TrimSpace(cfg.OutputDir) == "" {
		return ""
	}
	dir, err := options.ResolveOutputDir(root, cfg.OutputDir)
	if err != nil {
		return ""
	}
	return filepath.Clean(dir)
}

// within reports whether path lies strictly inside root.
func within(root, path string) bool {
	rel, err := filepath.Rel(filepath.Clean(root), path)
	return err == nil && rel != "." && !strings.HasPrefix(rel, "..") && !filepath.IsAbs(rel)
}

// pruneCheckpoints deletes checkpoint folders (named as plugins.ParseCheckpointName
// reads them) from the output directories of the ended jobs in mine, keeping the newest
// keepLast by step and any younger than keepDays. A directory a job that has not ended
// also writes to is left alone, and so is one outside the output root.
func (s *Scheduler) pruneCheckpoints(all, mine []*store.Job, keepLast, keepDays int, now time.Time) Result {
	busy := map[string]bool{}
	for _, j := range all {
		if !jobs.Terminal(j.Status) {
			busy[outputDir(s.opts.OutputRoot, j)] = true
		}
	}
	dirs := map[string]bool{}
	for _, j := range mine {
		if d := outputDir(s.opts.OutputRoot, j); d != "" && !busy[d] && s.opts.OutputRoot != "" && within(s.opts.OutputRoot, d) {
			dirs[d] = true
		}
	}
	deleted, errs := 0, []string{}
	for dir := range dirs {
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue // nothing saved yet, or gone
		}
		var items []aged
		for _, e := range entries {
			if !e.IsDir() || e.Type()&os.ModeSymlink != 0 {
				continue
			}
			step, _, ok := plugins.ParseCheckpointName(e.Name())
			if !ok {
				continue
			}
			info, err := e.Info()
			if err != nil {
				continue
			}
			items = append(items, aged{id: e.Name(), rank: int64(step), at: info.ModTime()})
		}
		for _, name := range expired(items, keepLast, days(keepDays), now) {
			if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
				errs = append(errs, err.Error())
				continue
			}
			deleted++
		}
	}
	r := Result{Outcome: OutcomeOK, Detail: fmt.Sprintf("deleted %d checkpoints", deleted)}
	if len(errs) > 0 {
		r.Outcome, r.Error = OutcomeFailed, fmt.Sprintf("deleted %d checkpoints; not deleted: %s", deleted, strings.Join(errs, "; "))
	}
	return r
}
