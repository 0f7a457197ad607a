package schedule

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"simpletuner/plugins"
	"simpletuner/store"
	"simpletuner/supervisor/training"
)

// EventRun is the type of the event every run (and every skipped missed slot) records.
const EventRun = "schedule.run"

// Outcomes of a run, as the schedule's last_outcome and the run event's outcome say.
const (
	OutcomeOK      = "ok"
	OutcomeFailed  = "failed"
	OutcomeSkipped = "skipped"
)

// Clock tells the scheduler the time; tests pass a fake one and call Tick by hand.
type Clock interface{ Now() time.Time }

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// Users finds a schedule's owner when it fires (auth.Service).
type Users interface {
	GetUser(id int64) (*store.User, error)
}

// Training builds and submits a job from an environment: the path POST /api/queue/submit
// takes (training.Service).
type Training interface {
	FromEnvironment(name string, perms []string) (*training.Bundle, error)
	Start(ctx context.Context, req training.StartRequest) (*store.Job, error)
}

// Jobs is the part of the job manager schedules use (jobs.Manager).
type Jobs interface {
	Get(id string) (*store.Job, error)
	List() ([]*store.Job, error)
	Current(keep func(*store.Job) bool) (*store.Job, error)
	Command(ctx context.Context, id string, c plugins.Command) error
	Delete(id string) error
}

// Emitter records and publishes a daemon-origin event (events.Hub).
type Emitter interface {
	Emit(jobID, typ, severity, title, message string, data any)
}

// Options configure a Scheduler. Store, Users, Training, Jobs and Events are required.
type Options struct {
	Store    *store.DB
	Users    Users
	Training Training
	Jobs     Jobs
	Events   Emitter
	// Clock is the time source [the real clock].
	Clock Clock
	// Location is the zone specs without CRON_TZ read their fields in [time.Local].
	Location *time.Location
	// Grace is how late a slot may run and still count as on time [1 min]; later, it was
	// missed and follows the schedule's missed_policy.
	Grace time.Duration
	// Poll is the longest the loop sleeps between two looks at the store [1 min]: a
	// schedule another daemon changed is seen within it.
	Poll time.Duration
	// OutputRoot bounds checkpoint cleanup: only output directories inside it are pruned.
	OutputRoot string
	// Maintenance are the daemon's built-in schedules (see Install).
	Maintenance []Maintenance
	Log         *slog.Logger
}

// Scheduler runs schedules. It is safe for concurrent use; Tick may run concurrently with
// itself (and with another Scheduler over the same store): the store's claim decides.
type Scheduler struct {
	opts   Options
	db     *store.Schedules
	clock  Clock
	log    *slog.Logger
	maint  map[string]Maintenance // by schedule id; read-only after New
	wake   chan struct{}          // buffered 1: a schedule changed, recompute the sleep
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New returns a Scheduler; call Install, then Start.
func New(o Options) *Scheduler {
	if o.Clock == nil {
		o.Clock = realClock{}
	}
	if o.Location == nil {
		o.Location = time.Local
	}
	if o.Grace <= 0 {
		o.Grace = time.Minute
	}
	if o.Poll <= 0 {
		o.Poll = time.Minute
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Scheduler{opts: o, db: o.Store.Schedules(), clock: o.Clock, log: o.Log, maint: map[string]Maintenance{},
		wake: make(chan struct{}, 1), ctx: ctx, cancel: cancel}
	for _, m := range o.Maintenance {
		s.maint[m.ID] = m
	}
	return s
}

// Start runs the loop that ticks whenever a schedule is due, until Close.
func (s *Scheduler) Start() {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			s.Tick(s.ctx)
			t := time.NewTimer(s.sleep())
			select {
			case <-s.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			case <-s.wake:
				t.Stop()
			}
		}
	}()
}

// Close stops the loop and waits for a run in progress to end.
func (s *Scheduler) Close() {
	s.cancel()
	s.wg.Wait()
}

// changed wakes the loop: a schedule was created or changed.
func (s *Scheduler) changed() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// sleep is how long the loop waits: until the earliest enabled slot, at most Poll, at
// least a few milliseconds (a slot a tick could not claim must not make it spin).
func (s *Scheduler) sleep() time.Duration {
	d := s.opts.Poll
	all, err := s.db.List()
	if err != nil {
		return d
	}
	now := s.clock.Now()
	for _, sc := range all {
		if sc.Enabled && sc.NextRunAt != nil {
			d = min(d, sc.NextRunAt.Sub(now))
		}
	}
	return max(d, 20*time.Millisecond)
}

// Tick runs every schedule whose slot has come, once each: the slot is claimed in the
// store first, so of racing ticks only one runs it. It returns how many runs it made.
func (s *Scheduler) Tick(ctx context.Context) int {
	all, err := s.db.List()
	if err != nil {
		s.log.Error("list schedules", "err", err)
		return 0
	}
	n := 0
	for _, sc := range all {
		if ctx.Err() != nil {
			return n
		}
		spec, err := ParseSpec(sc.Spec)
		if err != nil {
			continue // stored specs were checked when saved; one from a newer daemon is left alone
		}
		now := s.clock.Now()
		d := decideSlot(sc, spec, now, s.opts.Location, s.opts.Grace)
		if !d.due {
			continue
		}
		claimed, err := s.db.ClaimRun(sc.ID, *sc.NextRunAt, d.next, now, d.run)
		if errors.Is(err, store.ErrSlotTaken) {
			continue
		}
		if err != nil {
			s.log.Error("claim schedule slot", "schedule_id", sc.ID, "err", err)
			continue
		}
		trigger := "cron"
		if d.missed {
			trigger = "missed"
		}
		if !d.run {
			s.record(claimed, Result{Outcome: OutcomeSkipped, Detail: "missed slot " + sc.NextRunAt.UTC().Format(time.RFC3339) + " skipped (missed_policy skip)"}, trigger)
			continue
		}
		s.record(claimed, s.execute(ctx, claimed), trigger)
		n++
	}
	return n
}

// Result is the outcome of one run.
type Result struct {
	Outcome string `json:"outcome"`
	// Error says why a run failed.
	Error string `json:"error,omitempty"`
	// Detail says what a run did ("job 1a2b3c4d queued", "deleted 3 jobs").
	Detail string `json:"detail,omitempty"`
	// JobID is the job the run created or steered, if any.
	JobID string `json:"job_id,omitempty"`
	// quiet: a maintenance run that changed nothing; recorded, but no event (see
	// Maintenance).
	quiet bool
	// disable: the schedule cannot run again (its owner was deleted); record disables it.
	disable bool
}

func failed(format string, a ...any) Result {
	return Result{Outcome: OutcomeFailed, Error: fmt.Sprintf(format, a...)}
}

// execute runs a claimed schedule's action.
func (s *Scheduler) execute(ctx context.Context, sc *store.Schedule) Result {
	if sc.System {
		m, ok := s.maint[sc.ID]
		if !ok {
			return failed("built-in schedule %s is not part of this daemon", sc.ID)
		}
		n, detail, err := m.Run(ctx, s.clock.Now())
		if err != nil {
			r := failed("%v", err)
			r.Detail = detail
			return r
		}
		return Result{Outcome: OutcomeOK, Detail: detail, quiet: n == 0}
	}
	p, err := s.ownerPrincipal(sc)
	if err != nil {
		r := failed("%s", strings.TrimPrefix(err.Error(), errOwnerGone.Error()+": "))
		r.disable = errors.Is(err, errOwnerGone)
		return r
	}
	switch sc.Action.Kind {
	case ActionSubmit:
		return s.submit(ctx, p, sc)
	case ActionCheckpoint:
		return s.steer(ctx, p, sc, plugins.CommandCheckpoint)
	case ActionValidate:
		return s.steer(ctx, p, sc, plugins.CommandValidation)
	case ActionCleanup:
		return s.cleanup(p, sc)
	}
	return failed("unknown action %q", sc.Action.Kind)
}

// record stores a run's outcome on the schedule and records it as an event. The event
// belongs to the job the run made or steered, so its owner sees it with the job's events;
// a run without a job files it under schedule-<id>, which those who may see every job
// (job.view.all) read.
func (s *Scheduler) record(sc *store.Schedule, r Result, trigger string) {
	if _, err := s.db.Update(sc.ID, func(cur *store.Schedule) error {
		cur.LastOutcome, cur.LastError, cur.LastJobID = r.Outcome, r.Error, r.JobID
		if r.disable {
			cur.Enabled = false
		}
		return nil
	}); err != nil && !errors.Is(err, store.ErrNotFound) {
		s.log.Error("record schedule run", "schedule_id", sc.ID, "err", err)
	}
	if r.quiet && trigger != "manual" {
		s.log.Debug("schedule ran", "schedule_id", sc.ID, "outcome", r.Outcome, "detail", r.Detail)
		return
	}
	sev := "info"
	switch r.Outcome {
	case OutcomeFailed:
		sev = "error"
	case OutcomeSkipped:
		sev = "warning"
	}
	jobID := r.JobID
	if jobID == "" {
		jobID = "schedule-" + sc.ID
	}
	msg := r.Detail
	if r.Error != "" {
		msg = r.Error
	}
	s.opts.Events.Emit(jobID, EventRun, sev, "Schedule "+sc.Name+": "+sc.Action.Kind+" "+r.Outcome, msg, map[string]any{
		"schedule_id": sc.ID, "schedule_name": sc.Name, "action": sc.Action.Kind, "outcome": r.Outcome,
		"error": r.Error, "detail": r.Detail, "job_id": r.JobID, "trigger": trigger, "owner": sc.Owner,
	})
	s.log.Info("schedule ran", "schedule_id", sc.ID, "action", sc.Action.Kind, "outcome", r.Outcome, "job_id", r.JobID, "trigger", trigger, "error", r.Error)
}
