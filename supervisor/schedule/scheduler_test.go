package schedule

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"simpletuner/plugins"
	"simpletuner/store"
	"simpletuner/supervisor/auth"
	"simpletuner/supervisor/jobs"
	"simpletuner/supervisor/training"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Set(t time.Time) { c.mu.Lock(); c.now = t; c.mu.Unlock() }

// world is the daemon around a scheduler: users, environments, jobs and events, in memory.
type world struct {
	mu      sync.Mutex
	db      *store.DB
	users   map[int64]*store.User
	envs    map[string]bool
	jobs    map[string]*store.Job
	submits []training.StartRequest
	cmds    []string
	events  []map[string]any
}

func newWorld(t *testing.T) *world {
	t.Helper()
	db, err := store.OpenInMemory(slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return &world{db: db, envs: map[string]bool{"nightly-env": true}, jobs: map[string]*store.Job{},
		users: map[int64]*store.User{
			1: {ID: 1, Username: "alice", Levels: []string{"researcher"}, IsActive: true},
			2: {ID: 2, Username: "mallory", Levels: []string{"researcher"}, IsActive: true},
			3: {ID: 3, Username: "root", IsAdmin: true, IsActive: true},
		}}
}

func (w *world) principal(id int64) *auth.Principal {
	u := w.users[id]
	return &auth.Principal{User: u, Permissions: auth.PermissionsFor(u.Levels, u.IsAdmin), Method: "session"}
}

func (w *world) GetUser(id int64) (*store.User, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if u, ok := w.users[id]; ok {
		c := *u
		return &c, nil
	}
	return nil, store.ErrNotFound
}

func (w *world) FromEnvironment(name string, _ []string) (*training.Bundle, error) {
	if !w.envs[name] {
		return nil, fmt.Errorf("%w: Config '%s' not found", training.ErrEnvNotFound, name)
	}
	return &training.Bundle{EnvName: name}, nil
}

func (w *world) Start(_ context.Context, req training.StartRequest) (*store.Job, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.submits = append(w.submits, req)
	j := &store.Job{ID: fmt.Sprintf("job%d", len(w.submits)), Status: jobs.StatusQueued, OwnerID: req.OwnerID, Owner: req.Owner, Seq: int64(len(w.jobs) + 1)}
	w.jobs[j.ID] = j
	return j, nil
}

func (w *world) Get(id string) (*store.Job, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if j, ok := w.jobs[id]; ok {
		return j, nil
	}
	return nil, jobs.ErrNotFound
}

func (w *world) List() ([]*store.Job, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []*store.Job
	for _, j := range w.jobs {
		out = append(out, j)
	}
	return out, nil
}

func (w *world) Current(keep func(*store.Job) bool) (*store.Job, error) {
	all, _ := w.List()
	for _, j := range all {
		if j.Status == jobs.StatusRunning && keep(j) {
			return j, nil
		}
	}
	return nil, nil
}

func (w *world) Command(_ context.Context, id string, c plugins.Command) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.cmds = append(w.cmds, id+":"+c.String())
	return nil
}

func (w *world) Delete(id string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.jobs, id)
	return nil
}

func (w *world) Emit(jobID, typ, sev, title, msg string, data any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.events = append(w.events, map[string]any{"job_id": jobID, "type": typ, "severity": sev, "data": data})
}

func (w *world) submitted() int { w.mu.Lock(); defer w.mu.Unlock(); return len(w.submits) }

// scheduler is a daemon's scheduler over w's store, on clock.
func (w *world) scheduler(clock Clock, m ...Maintenance) *Scheduler {
	return New(Options{Store: w.db, Users: w, Training: w, Jobs: w, Events: w, Clock: clock, Location: time.UTC, Maintenance: m})
}

func ptr[T any](v T) *T { return &v }

func nightly(policy string) Request {
	return Request{Name: ptr("nightly"), Spec: ptr("0 22 * * *"), Action: ptr(ActionSubmit), Params: &Params{ConfigName: "nightly-env"}, MissedPolicy: ptr(policy)}
}

// TestMissedRunsAcrossRestart: the daemon is down over two slots; the next daemon skips
// them (skip) or runs once (run_once), and a second tick at the same time never runs again.
func TestMissedRunsAcrossRestart(t *testing.T) {
	for policy, want := range map[string]int{MissedSkip: 0, MissedRunOnce: 1} {
		t.Run(policy, func(t *testing.T) {
			w := newWorld(t)
			clock := &fakeClock{now: utc(2026, 12, 6, 12, 0)}
			sc, err := w.scheduler(clock).Create(w.principal(1), nightly(policy))
			if err != nil {
				t.Fatal(err)
			}
			if !sc.NextRunAt.Equal(utc(2026, 12, 6, 22, 0)) {
				t.Fatalf("first slot %v", sc.NextRunAt)
			}
			// The first daemon is gone; two days later another starts over the same store.
			clock.Set(utc(2026, 12, 8, 23, 30))
			next := w.scheduler(clock)
			next.Tick(context.Background())
			next.Tick(context.Background())
			if got := w.submitted(); got != want {
				t.Fatalf("%d submissions after the restart, want %d", got, want)
			}
			cur, _ := w.db.Schedules().Get(sc.ID)
			if !cur.NextRunAt.Equal(utc(2026, 12, 9, 22, 0)) {
				t.Fatalf("next slot %v, want the first after the restart", cur.NextRunAt)
			}
			wantOutcome := map[string]string{MissedSkip: OutcomeSkipped, MissedRunOnce: OutcomeOK}[policy]
			if cur.LastOutcome != wantOutcome {
				t.Fatalf("last outcome %q, want %q", cur.LastOutcome, wantOutcome)
			}
			// The next slot on time runs whatever the policy.
			clock.Set(utc(2026, 12, 9, 22, 0))
			next.Tick(context.Background())
			if got := w.submitted(); got != want+1 {
				t.Fatalf("%d submissions after the next slot, want %d", got, want+1)
			}
		})
	}
}

// TestRacingTicksRunOnce: ticks of two schedulers over one store (two daemons sharing
// nothing but it), racing for the same slot, run it once.
func TestRacingTicksRunOnce(t *testing.T) {
	w := newWorld(t)
	clock := &fakeClock{now: utc(2026, 12, 6, 12, 0)}
	a, b := w.scheduler(clock), w.scheduler(clock)
	if _, err := a.Create(w.principal(1), nightly(MissedSkip)); err != nil {
		t.Fatal(err)
	}
	clock.Set(utc(2026, 12, 6, 22, 0))
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			[]*Scheduler{a, b}[i%2].Tick(context.Background())
		}()
	}
	wg.Wait()
	if got := w.submitted(); got != 1 {
		t.Fatalf("%d submissions from racing ticks, want 1", got)
	}
}

// TestRunObeysOwnerPermissionsNow: a schedule whose owner lost job.submit after creating
// it fails when it fires, and says why on the schedule and in the run's event.
func TestRunObeysOwnerPermissionsNow(t *testing.T) {
	w := newWorld(t)
	clock := &fakeClock{now: utc(2026, 12, 6, 12, 0)}
	s := w.scheduler(clock)
	sc, err := s.Create(w.principal(1), nightly(MissedSkip))
	if err != nil {
		t.Fatal(err)
	}
	w.mu.Lock()
	w.users[1].Levels = []string{"viewer"}
	w.mu.Unlock()
	clock.Set(utc(2026, 12, 6, 22, 0))
	s.Tick(context.Background())
	if w.submitted() != 0 {
		t.Fatal("a run submitted a job its owner may no longer submit")
	}
	cur, _ := w.db.Schedules().Get(sc.ID)
	if cur.LastOutcome != OutcomeFailed || !strings.Contains(cur.LastError, "permission denied: job.submit") {
		t.Fatalf("outcome %q error %q, want failed with job.submit", cur.LastOutcome, cur.LastError)
	}
	if len(w.events) != 1 {
		t.Fatalf("%d events, want 1", len(w.events))
	}
	d := w.events[0]["data"].(map[string]any)
	if d["outcome"] != OutcomeFailed || d["schedule_id"] != sc.ID || d["action"] != ActionSubmit || !strings.Contains(d["error"].(string), "job.submit") {
		t.Fatalf("event data %v", d)
	}
	// A deactivated owner: the run fails too.
	w.mu.Lock()
	w.users[1].Levels, w.users[1].IsActive = []string{"researcher"}, false
	w.mu.Unlock()
	if _, r, err := s.RunNow(context.Background(), w.principal(3), sc.ID); err != nil || !strings.Contains(r.Error, "deactivated") {
		t.Fatalf("run of a deactivated owner's schedule: %+v, %v", r, err)
	}
	// A deleted owner: the run fails and the schedule is disabled, not failed at every slot.
	w.mu.Lock()
	delete(w.users, 1)
	w.mu.Unlock()
	if _, r, err := s.RunNow(context.Background(), w.principal(3), sc.ID); err != nil || !strings.Contains(r.Error, "no longer exists") {
		t.Fatalf("run of a deleted owner's schedule: %+v, %v", r, err)
	}
	if cur, _ := w.db.Schedules().Get(sc.ID); cur.Enabled {
		t.Fatal("a schedule whose owner was deleted is still enabled")
	}
}

// TestOtherUsersCannotTouchMySchedule: another user can neither read, change, delete nor
// run my schedule (and cannot tell it exists); an administrator can.
func TestOtherUsersCannotTouchMySchedule(t *testing.T) {
	w := newWorld(t)
	s := w.scheduler(&fakeClock{now: utc(2026, 12, 6, 12, 0)})
	sc, err := s.Create(w.principal(1), nightly(MissedSkip))
	if err != nil {
		t.Fatal(err)
	}
	mallory := w.principal(2)
	if _, err := s.Get(mallory, sc.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("read: %v", err)
	}
	if _, err := s.Update(mallory, sc.ID, Request{Enabled: ptr(false)}); !errors.Is(err, ErrNotFound) {
		t.Errorf("update: %v", err)
	}
	if _, _, err := s.RunNow(context.Background(), mallory, sc.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("run: %v", err)
	}
	if err := s.Delete(mallory, sc.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("delete: %v", err)
	}
	if l, _ := s.List(mallory); len(l) != 0 {
		t.Errorf("list shows %d schedules of others", len(l))
	}
	if w.submitted() != 0 {
		t.Fatal("another user's run submitted a job")
	}
	if _, err := s.Get(w.principal(3), sc.ID); err != nil {
		t.Errorf("admin read: %v", err)
	}
	// An administrator's "run now" runs as the owner.
	if _, r, err := s.RunNow(context.Background(), w.principal(3), sc.ID); err != nil || r.Outcome != OutcomeOK {
		t.Fatalf("admin run: %+v %v", r, err)
	}
	if w.submits[0].Owner != "alice" {
		t.Fatalf("admin's run submitted as %q, want the owner", w.submits[0].Owner)
	}
}

// TestCreateValidation: each bad request is refused naming the field and the fix.
func TestCreateValidation(t *testing.T) {
	w := newWorld(t)
	s := w.scheduler(&fakeClock{now: utc(2026, 12, 6, 12, 0)})
	alice := w.principal(1)
	for _, c := range []struct {
		name  string
		req   Request
		field string
		msg   string
	}{
		{"bad spec", Request{Name: ptr("n"), Spec: ptr("0 25 * * *"), Action: ptr(ActionSubmit), Params: &Params{ConfigName: "nightly-env"}}, "spec", "field 2 (hour)"},
		{"unknown action", Request{Name: ptr("n"), Spec: ptr("@daily"), Action: ptr("reboot")}, "action", "unknown action \"reboot\""},
		{"unknown environment", Request{Name: ptr("n"), Spec: ptr("@daily"), Action: ptr(ActionSubmit), Params: &Params{ConfigName: "nope"}}, "params.config_name", "unknown environment \"nope\""},
		{"unknown target", Request{Name: ptr("n"), Spec: ptr("@daily"), Action: ptr(ActionSubmit), Params: &Params{ConfigName: "nightly-env", Target: "kubeflow"}}, "params.target", "must be one of auto, local, worker, slurm"},
		{"cleanup keeps nothing", Request{Name: ptr("n"), Spec: ptr("@daily"), Action: ptr(ActionCleanup), Params: &Params{What: CleanupJobs}}, "params.keep_days", "set keep_days or keep_last"},
		{"bad job id", Request{Name: ptr("n"), Spec: ptr("@daily"), Action: ptr(ActionValidate), Params: &Params{JobID: "../x"}}, "params.job_id", "not a job id"},
		{"bad policy", Request{Name: ptr("n"), Spec: ptr("@daily"), Action: ptr(ActionCleanup), Params: &Params{What: CleanupJobs, KeepLast: 1}, MissedPolicy: ptr("twice")}, "missed_policy", "skip or run_once"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := s.Create(alice, c.req)
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != c.field || !strings.Contains(fe.Msg, c.msg) {
				t.Fatalf("Create = %v, want %s: …%s…", err, c.field, c.msg)
			}
		})
	}
	// Event cleanup trims everyone's events: a researcher may not schedule it.
	_, err := s.Create(alice, Request{Name: ptr("n"), Spec: ptr("@daily"), Action: ptr(ActionCleanup), Params: &Params{What: CleanupEvents, KeepDays: 1}})
	if !errors.Is(err, ErrForbidden) {
		t.Fatalf("event cleanup by a researcher: %v", err)
	}
}

// TestCleanupAndSteer: a cleanup deletes only the owner's ended jobs beyond the policy and
// prunes their checkpoints; a checkpoint action steers the owner's running job.
func TestCleanupAndSteer(t *testing.T) {
	w := newWorld(t)
	root := t.TempDir()
	clock := &fakeClock{now: utc(2026, 12, 6, 12, 0)}
	s := New(Options{Store: w.db, Users: w, Training: w, Jobs: w, Events: w, Clock: clock, Location: time.UTC, OutputRoot: root})
	out := filepath.Join(root, "run1")
	for i, name := range []string{"checkpoint-10", "checkpoint-20", "checkpoint-30", "other"} {
		if err := os.MkdirAll(filepath.Join(out, name), 0o700); err != nil {
			t.Fatal(err)
		}
		_ = i
	}
	cfg := []byte(`{"--output_dir":"` + out + `"}`)
	w.jobs["old1"] = &store.Job{ID: "old1", Status: jobs.StatusCompleted, OwnerID: 1, Seq: 1, Config: cfg}
	w.jobs["old2"] = &store.Job{ID: "old2", Status: jobs.StatusFailed, OwnerID: 1, Seq: 2, Config: cfg}
	w.jobs["new"] = &store.Job{ID: "new", Status: jobs.StatusCompleted, OwnerID: 1, Seq: 3, Config: cfg}
	w.jobs["theirs"] = &store.Job{ID: "theirs", Status: jobs.StatusCompleted, OwnerID: 2, Seq: 4}
	w.jobs["live"] = &store.Job{ID: "live", Status: jobs.StatusRunning, OwnerID: 1, Seq: 5}
	alice := w.principal(1)

	ck, err := s.Create(alice, Request{Name: ptr("ck"), Spec: ptr("@hourly"), Action: ptr(ActionCleanup), Params: &Params{What: CleanupCheckpoints, KeepLast: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if _, r, err := s.RunNow(context.Background(), alice, ck.ID); err != nil || r.Outcome != OutcomeOK || r.Detail != "deleted 2 checkpoints" {
		t.Fatalf("checkpoint cleanup: %+v %v", r, err)
	}
	left, _ := os.ReadDir(out)
	if len(left) != 2 || left[0].Name() != "checkpoint-30" || left[1].Name() != "other" {
		t.Fatalf("left in the output dir: %v", left)
	}

	jc, err := s.Create(alice, Request{Name: ptr("jobs"), Spec: ptr("@daily"), Action: ptr(ActionCleanup), Params: &Params{What: CleanupJobs, KeepLast: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if _, r, err := s.RunNow(context.Background(), alice, jc.ID); err != nil || r.Detail != "deleted 2 jobs" {
		t.Fatalf("job cleanup: %+v %v", r, err)
	}
	for id, want := range map[string]bool{"old1": false, "old2": false, "new": true, "theirs": true, "live": true} {
		if _, ok := w.jobs[id]; ok != want {
			t.Errorf("job %s kept=%v, want %v", id, ok, want)
		}
	}

	st, err := s.Create(alice, Request{Name: ptr("ck"), Spec: ptr("@hourly"), Action: ptr(ActionCheckpoint)})
	if err != nil {
		t.Fatal(err)
	}
	if _, r, err := s.RunNow(context.Background(), alice, st.ID); err != nil || r.JobID != "live" {
		t.Fatalf("checkpoint action: %+v %v", r, err)
	}
	if len(w.cmds) != 1 || w.cmds[0] != "live:"+plugins.CommandCheckpoint.String() {
		t.Fatalf("commands sent: %v", w.cmds)
	}
}

// TestMaintenanceInstalledReadOnly: built-in schedules are stored, shown to
// administrators only, refuse changes, run on their slots, and are removed when the
// daemon no longer has them.
func TestMaintenanceInstalledReadOnly(t *testing.T) {
	w := newWorld(t)
	clock := &fakeClock{now: utc(2026, 12, 6, 12, 0)}
	ran := 0
	m := Maintenance{ID: "system-test", Name: "Test upkeep", Spec: "@hourly", Run: func(context.Context, time.Time) (int, string, error) { ran++; return ran - 1, "did it", nil }}
	s := w.scheduler(clock, m)
	if err := s.Install(); err != nil {
		t.Fatal(err)
	}
	if l, _ := s.List(w.principal(1)); len(l) != 0 {
		t.Fatalf("a user sees %d built-in schedules", len(l))
	}
	l, _ := s.List(w.principal(3))
	if len(l) != 1 || !l[0].System || l[0].Owner != "system" {
		t.Fatalf("admin's list: %+v", l)
	}
	if _, err := s.Update(w.principal(3), m.ID, Request{Enabled: ptr(false)}); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("update of a built-in schedule: %v", err)
	}
	if err := s.Delete(w.principal(3), m.ID); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("delete of a built-in schedule: %v", err)
	}
	clock.Set(utc(2026, 12, 6, 13, 0))
	s.Tick(context.Background())
	if ran != 1 {
		t.Fatalf("maintenance ran %d times, want 1", ran)
	}
	if len(w.events) != 0 {
		t.Fatalf("a maintenance run that changed nothing made %d events", len(w.events))
	}
	clock.Set(utc(2026, 12, 6, 14, 0))
	s.Tick(context.Background())
	if ran != 2 || len(w.events) != 1 {
		t.Fatalf("second maintenance run: ran %d, %d events; want 2 and 1", ran, len(w.events))
	}
	if err := w.scheduler(clock).Install(); err != nil {
		t.Fatal(err)
	}
	if _, err := w.db.Schedules().Get(m.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a built-in schedule the daemon no longer has is still stored: %v", err)
	}
}

// TestRemoveOrphans: only sockets, not in use and old enough, are removed.
func TestRemoveOrphans(t *testing.T) {
	dir, err := os.MkdirTemp("", "sock") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	mk := func(name string) string {
		p := filepath.Join(dir, name)
		ln, err := netListenUnix(p)
		if err != nil {
			t.Fatal(err)
		}
		ln.SetUnlinkOnClose(false)
		ln.Close()
		return p
	}
	old, used, fresh := mk("plugin1"), mk("plugin2"), mk("plugin3")
	plain := filepath.Join(dir, "notes")
	if err := os.WriteFile(plain, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, p := range []string{old, used, plain} {
		if err := os.Chtimes(p, now.Add(-2*time.Hour), now.Add(-2*time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	n, err := removeOrphans(dir, map[string]bool{used: true}, time.Hour, now)
	if err != nil || n != 1 {
		t.Fatalf("removeOrphans = %d, %v; want 1", n, err)
	}
	for p, want := range map[string]bool{old: false, used: true, fresh: true, plain: true} {
		if _, err := os.Lstat(p); (err == nil) != want {
			t.Errorf("%s exists=%v, want %v", filepath.Base(p), err == nil, want)
		}
	}
}

func netListenUnix(path string) (*net.UnixListener, error) {
	return net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
}
