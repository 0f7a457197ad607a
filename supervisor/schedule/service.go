package schedule

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"simpletuner/store"
	"simpletuner/supervisor/auth"
	"simpletuner/supervisor/jobs"
	"simpletuner/supervisor/training"
)

// Sentinel errors of the schedule service; the API maps them to statuses.
var (
	// ErrNotFound: no such schedule, or one the caller may not see.
	ErrNotFound = errors.New("schedule not found")
	// ErrForbidden: the caller lacks a permission the schedule's action needs.
	ErrForbidden = errors.New("permission denied")
	// ErrReadOnly: a built-in schedule of the daemon, which nobody changes or runs by hand.
	ErrReadOnly = errors.New("built-in schedule is read-only")
	// ErrInvalid: a field of the request is wrong; the *FieldError says which and why.
	ErrInvalid = errors.New("invalid schedule")
)

// FieldError names the request field that is wrong and how to fix it.
type FieldError struct {
	Field string // "spec", "action", "params.config_name", …
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// Is makes errors.Is(err, ErrInvalid) true.
func (e *FieldError) Is(target error) bool { return target == ErrInvalid }

func invalid(field, format string, a ...any) error {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, a...)}
}

// Params are an action's parameters: the fields of store.ScheduleAction but its kind,
// which Request.Action names. Each action reads only its own: submit config_name,
// target, worker_labels, priority; checkpoint and validate job_id ("current": the owner's
// running job); cleanup what (jobs, events, checkpoints), keep_days, keep_last.
type Params = store.ScheduleAction

// Request creates a schedule (POST) or changes one (PUT: fields left out keep their
// value).
type Request struct {
	Name         *string `json:"name"`
	Spec         *string `json:"spec"`
	Action       *string `json:"action"`
	Params       *Params `json:"params"`
	Enabled      *bool   `json:"enabled"`
	MissedPolicy *string `json:"missed_policy"`
}

// isAdmin: who sees and manages every schedule, the built-in ones included.
func isAdmin(p *auth.Principal) bool { return p.Can(auth.PermAdminConfig) }

// visibleTo reports whether p may see sc: its owner, or an administrator.
func visibleTo(p *auth.Principal, sc *store.Schedule) bool {
	if isAdmin(p) {
		return true
	}
	return !sc.System && p != nil && p.User != nil && p.User.ID == sc.OwnerID
}

// List returns the schedules p may see, oldest first.
func (s *Scheduler) List(p *auth.Principal) ([]*store.Schedule, error) {
	all, err := s.db.List()
	if err != nil {
		return nil, err
	}
	out := []*store.Schedule{}
	for _, sc := range all {
		if visibleTo(p, sc) {
			out = append(out, sc)
		}
	}
	return out, nil
}

// Get returns one schedule p may see; ErrNotFound otherwise (the same answer whether it
// does not exist or is someone else's, so ids cannot be probed).
func (s *Scheduler) Get(p *auth.Principal, id string) (*store.Schedule, error) {
	sc, err := s.db.Get(id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !visibleTo(p, sc)) {
		return nil, ErrNotFound
	}
	return sc, err
}

// editable loads a schedule p may change: visible, and not built in.
func (s *Scheduler) editable(p *auth.Principal, id string) (*store.Schedule, error) {
	sc, err := s.Get(p, id)
	if err != nil {
		return nil, err
	}
	if sc.System {
		return nil, fmt.Errorf("%w: %s is the daemon's own maintenance", ErrReadOnly, sc.ID)
	}
	return sc, nil
}

// Create stores a new schedule owned by p and returns it with its first slot.
func (s *Scheduler) Create(p *auth.Principal, req Request) (*store.Schedule, error) {
	if p == nil || p.User == nil {
		return nil, fmt.Errorf("%w: schedules run as a user; create the first administrator and log in", ErrForbidden)
	}
	now := s.clock.Now()
	sc := &store.Schedule{ID: newID(), Enabled: true, MissedPolicy: MissedSkip, OwnerID: p.User.ID, Owner: p.User.Username,
		CreatedAt: now.UTC(), UpdatedAt: now.UTC()}
	if req.Name == nil || strings.TrimSpace(*req.Name) == "" {
		return nil, invalid("name", "required: a short name for the schedule, such as \"nightly\"")
	}
	if req.Spec == nil {
		return nil, invalid("spec", "required: a cron spec such as \"0 22 * * *\", @daily or \"@every 6h\"")
	}
	if req.Action == nil {
		return nil, invalid("action", "required: one of submit, checkpoint, validate, cleanup")
	}
	if err := s.apply(p, sc, req); err != nil {
		return nil, err
	}
	if err := s.db.Create(sc); err != nil {
		return nil, err
	}
	s.changed()
	return sc, nil
}

// Update changes a schedule p may change. The owner stays; a run still acts as the owner.
func (s *Scheduler) Update(p *auth.Principal, id string, req Request) (*store.Schedule, error) {
	if _, err := s.editable(p, id); err != nil {
		return nil, err
	}
	sc, err := s.db.Update(id, func(sc *store.Schedule) error {
		if err := s.apply(p, sc, req); err != nil {
			return err
		}
		sc.UpdatedAt = s.clock.Now().UTC()
		return nil
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	s.changed()
	return sc, nil
}

// Delete removes a schedule p may change.
func (s *Scheduler) Delete(p *auth.Principal, id string) error {
	if _, err := s.editable(p, id); err != nil {
		return err
	}
	if err := s.db.Delete(id); errors.Is(err, store.ErrNotFound) {
		return ErrNotFound
	} else if err != nil {
		return err
	}
	s.changed()
	return nil
}

// RunNow runs a schedule p may change at once, as its owner (whoever asks), outside its
// slots: next_run_at does not move. It returns the schedule after the run and the run's
// result; the run is recorded and is an event like any other.
func (s *Scheduler) RunNow(ctx context.Context, p *auth.Principal, id string) (*store.Schedule, Result, error) {
	if _, err := s.editable(p, id); err != nil {
		return nil, Result{}, err
	}
	now := s.clock.Now().UTC()
	sc, err := s.db.Update(id, func(sc *store.Schedule) error {
		sc.LastRunAt = &now
		sc.Runs++
		return nil
	})
	if err != nil {
		return nil, Result{}, err
	}
	r := s.execute(ctx, sc)
	s.record(sc, r, "manual")
	if cur, err := s.db.Get(id); err == nil {
		sc = cur
	}
	return sc, r, nil
}

// apply checks req against what p may do and writes it into sc. Fields left out keep
// sc's values; the first slot is recomputed when the spec changes or the schedule is
// (re-)enabled, so slots that passed while it was off are not "missed".
func (s *Scheduler) apply(p *auth.Principal, sc *store.Schedule, req Request) error {
	if req.Name != nil {
		n := strings.TrimSpace(*req.Name)
		if n == "" || len(n) > 100 {
			return invalid("name", "must be 1 to 100 characters")
		}
		sc.Name = n
	}
	reslot := sc.NextRunAt == nil
	if req.Spec != nil {
		if len(*req.Spec) > maxSpecLen {
			return invalid("spec", "longer than %d characters", maxSpecLen)
		}
		if _, err := ParseSpec(*req.Spec); err != nil {
			return invalid("spec", "%s", strings.TrimPrefix(err.Error(), errSpec.Error()+": "))
		}
		reslot = reslot || strings.TrimSpace(*req.Spec) != sc.Spec
		sc.Spec = strings.TrimSpace(*req.Spec)
	}
	if req.MissedPolicy != nil {
		switch *req.MissedPolicy {
		case MissedSkip, MissedRunOnce:
			sc.MissedPolicy = *req.MissedPolicy
		default:
			return invalid("missed_policy", "must be %s or %s, not %q", MissedSkip, MissedRunOnce, *req.MissedPolicy)
		}
	}
	if req.Enabled != nil {
		reslot = reslot || (*req.Enabled && !sc.Enabled)
		sc.Enabled = *req.Enabled
	}
	if req.Action != nil || req.Params != nil {
		kind := sc.Action.Kind
		if req.Action != nil {
			kind = *req.Action
		}
		params := Params{}
		if req.Params != nil {
			params = *req.Params
		} else if kind == sc.Action.Kind {
			params = sc.Action
		}
		a, err := s.checkAction(p, kind, params)
		if err != nil {
			return err
		}
		sc.Action = a
	}
	if reslot {
		spec, err := ParseSpec(sc.Spec)
		if err != nil {
			return invalid("spec", "%v", err)
		}
		next := spec.Next(s.clock.Now().In(s.opts.Location)).UTC()
		sc.NextRunAt = &next
	}
	return nil
}

// checkAction validates an action and its parameters, and that p may take it now (a run
// checks again with the owner's permissions of that moment).
func (s *Scheduler) checkAction(p *auth.Principal, kind string, pr Params) (store.ScheduleAction, error) {
	a := store.ScheduleAction{Kind: kind}
	switch kind {
	case ActionSubmit:
		name := strings.TrimSpace(pr.ConfigName)
		if name == "" {
			return a, invalid("params.config_name", "required for submit: the name of an environment (GET /api/configs/)")
		}
		if err := checkTarget(pr.Target); err != nil {
			return a, err
		}
		if err := jobs.ValidateLabels(pr.WorkerLabels); err != nil {
			return a, invalid("params.worker_labels", "%v", err)
		}
		if pr.Priority != nil && (*pr.Priority < 0 || *pr.Priority > maxPrio) {
			return a, invalid("params.priority", "must be from 0 to %d", maxPrio)
		}
		if !p.Can(permSubmit) {
			return a, fmt.Errorf("%w: %s", ErrForbidden, permSubmit)
		}
		if pr.Priority != nil && *pr.Priority > maxNormalPrio && !p.Can(permPriority) {
			return a, fmt.Errorf("%w: %s (priority above %d)", ErrForbidden, permPriority, maxNormalPrio)
		}
		if _, err := s.opts.Training.FromEnvironment(name, p.Permissions); errors.Is(err, training.ErrEnvNotFound) {
			return a, invalid("params.config_name", "unknown environment %q (GET /api/configs/ lists them)", name)
		} else if err != nil {
			return a, err
		}
		a.ConfigName, a.Target, a.WorkerLabels, a.Priority = name, pr.Target, pr.WorkerLabels, pr.Priority
	case ActionCheckpoint, ActionValidate:
		if !p.Can(permSubmit) {
			return a, fmt.Errorf("%w: %s", ErrForbidden, permSubmit)
		}
		a.JobID = strings.TrimSpace(pr.JobID)
		if a.JobID == "" {
			a.JobID = CurrentJob
		}
		if !jobIDPattern.MatchString(a.JobID) {
			return a, invalid("params.job_id", "%q is not a job id: use one from GET /api/jobs, or \"current\" for your running job", a.JobID)
		}
	case ActionCleanup:
		switch pr.What {
		case CleanupJobs, CleanupCheckpoints:
			if !p.Can(permDeleteOwn) && !p.Can(permDeleteAll) {
				return a, fmt.Errorf("%w: %s", ErrForbidden, permDeleteOwn)
			}
		case CleanupEvents:
			if !p.Can(permDeleteAll) {
				return a, fmt.Errorf("%w: %s (event cleanup trims every user's events)", ErrForbidden, permDeleteAll)
			}
		default:
			return a, invalid("params.what", "must be jobs, events or checkpoints, not %q", pr.What)
		}
		if pr.KeepDays < 0 || pr.KeepLast < 0 {
			return a, invalid("params.keep_days", "keep_days and keep_last cannot be negative")
		}
		if pr.KeepDays == 0 && pr.KeepLast == 0 {
			return a, invalid("params.keep_days", "set keep_days or keep_last (or both): a cleanup that keeps nothing is refused")
		}
		a.What, a.KeepDays, a.KeepLast = pr.What, pr.KeepDays, pr.KeepLast
	case ActionMaintenance:
		return a, invalid("action", "maintenance is the daemon's own (built-in schedules); use submit, checkpoint, validate or cleanup")
	default:
		return a, invalid("action", "unknown action %q: use submit, checkpoint, validate or cleanup", kind)
	}
	return a, nil
}

// checkTarget accepts the targets of POST /api/queue/submit. Whether one can run here
// (a worker registered, Slurm configured) is the job manager's call at run time: a run
// whose target nothing serves fails with the manager's message.
func checkTarget(t string) error {
	switch t {
	case "", jobs.TargetAuto, jobs.TargetLocal, jobs.TargetWorker, jobs.TargetSlurm:
		return nil
	}
	return invalid("params.target", "must be one of auto, local, worker, slurm, not %q", t)
}

// maxSpecLen bounds a stored cron spec.
const maxSpecLen = 200

// jobIDPattern is what a job id looks like (the API's {job_id} routes take the same).
var jobIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// newID returns 8 random hex characters.
func newID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
