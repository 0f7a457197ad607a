package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"simpletuner/internal/procenv"
	"simpletuner/plugins"
	"simpletuner/plugins/kit"
	"simpletuner/plugins/kit/kittest"
	"simpletuner/store"
	"simpletuner/supervisor/gpu"
)

const asTrainer = "JOBS_TEST_RUN_TRAINER"

// The test binary doubles as the trainer: the fake runner on the real kit.
func TestMain(m *testing.M) {
	if os.Getenv(asTrainer) == "1" {
		kit.Main(kittest.FromEnv())
		return
	}
	os.Exit(m.Run())
}

type env struct {
	t     *testing.T
	db    *store.DB
	home  string
	alloc *gpu.Allocator
	inv   gpu.Inventory
}

func newEnv(t *testing.T, inv gpu.Inventory) *env {
	t.Helper()
	home := t.TempDir()
	db, err := store.Open(filepath.Join(home, "state"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		db.Close()
		killTrainersUnder(home)
	})
	return &env{t: t, db: db, home: home, inv: inv}
}

// manager starts a Manager over the env's store, as a (re)started daemon would.
func (e *env) manager(trainerEnv ...string) *Manager {
	return e.managerWith(Config{}, trainerEnv...)
}

func (e *env) managerWith(cfg Config, trainerEnv ...string) *Manager {
	e.t.Helper()
	return e.managerAdding(cfg, nil, trainerEnv...)
}

// managerAdding is managerWith that adds executors with AddExecutor before Reconcile.
func (e *env) managerAdding(cfg Config, add []Executor, trainerEnv ...string) *Manager {
	e.t.Helper()
	e.alloc = gpu.NewAllocator(e.inv, gpu.Limits{MaxJobs: 4})
	cfg.JobsDir, cfg.RunDir = filepath.Join(e.home, "jobs"), filepath.Join(e.home, "run")
	cfg.CPUTrainer, cfg.GPUTrainer = os.Args[0], os.Args[0]
	cfg.TrainerEnv = append([]string{asTrainer + "=1"}, trainerEnv...)
	cfg.PollInterval = 100 * time.Millisecond
	if cfg.CancelGrace == 0 {
		cfg.CancelGrace = 2 * time.Second
	}
	m, err := New(cfg, e.db, e.alloc, slog.New(slog.DiscardHandler))
	if err != nil {
		e.t.Fatal(err)
	}
	for _, x := range add {
		m.AddExecutor(x)
	}
	if err := m.Reconcile(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	m.Start()
	e.t.Cleanup(m.Close)
	return m
}

// proc is the trainer identity a job's local handle records.
func proc(t *testing.T, j *store.Job) localProc {
	t.Helper()
	p, err := localProcOf(j)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func submit(t *testing.T, m *Manager, gpus int) *store.Job {
	t.Helper()
	cfg, _ := json.Marshal(map[string]any{"--output_dir": t.TempDir(), "--model_family": "dit"})
	j, err := m.Submit(context.Background(), SubmitRequest{Owner: "t", Config: cfg, GPU: gpu.Request{NumProcesses: gpus}})
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func waitStatus(t *testing.T, m *Manager, id string, within time.Duration, want ...string) *store.Job {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		j, err := m.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range want {
			if j.Status == w {
				return j
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s is %q after %v, want %v (error %q)", id, j.Status, within, want, j.Error)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func events(t *testing.T, db *store.DB, id string) []plugins.Event {
	t.Helper()
	stored, err := db.Events().List(id, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []plugins.Event
	for i, s := range stored {
		var e plugins.Event
		if err := json.Unmarshal(s.Event, &e); err != nil {
			t.Fatal(err)
		}
		if e.Seq != uint64(i+1) {
			t.Fatalf("event %d has seq %d: the stored stream has a gap", i, e.Seq)
		}
		out = append(out, e)
	}
	return out
}

func TestJobRunsToCompletionOnCPUHost(t *testing.T) {
	e := newEnv(t, gpu.NewFake())
	m := e.manager(kittest.EnvSteps+"=15", kittest.EnvStepMS+"=5")
	j := submit(t, m, 1)
	done := waitStatus(t, m, j.ID, 20*time.Second, StatusCompleted)
	if p := proc(t, done); p.PID == 0 || p.ProcStart == 0 || p.Nonce == "" || done.Handle == nil || done.Executor != KindLocal || done.Attempts != 1 || len(done.GPUs) != 0 {
		t.Fatalf("record: %+v", done)
	}
	evs := events(t, e.db, j.ID)
	if last := evs[len(evs)-1]; last.Type != "job.status" || !strings.Contains(string(last.Data), "completed") {
		t.Fatalf("last event %+v", last)
	}
	var p plugins.Progress
	json.Unmarshal(done.Progress, &p)
	if p.Step != 15 {
		t.Fatalf("progress %+v", p)
	}
	if _, err := os.Stat(filepath.Join(done.JobDir, "config.json")); err != nil {
		t.Fatal("resolved config not persisted with the job")
	}
}

func TestKilledTrainerFailsFastAndQueueAdvances(t *testing.T) {
	e := newEnv(t, gpu.NewFake(gpu.FakeH100(1)...))
	m := e.manager(kittest.EnvSteps+"=100000", kittest.EnvStepMS+"=10")
	a := submit(t, m, 1)
	b := submit(t, m, 1)
	ra := waitStatus(t, m, a.ID, 20*time.Second, StatusRunning)
	if got, _ := m.Get(b.ID); got.Status != StatusQueued {
		t.Fatalf("second job on a 1-GPU host is %q, want queued", got.Status)
	}
	if len(ra.GPUs) != 1 || ra.GPUs[0] != gpu.FakeUUID(0) {
		t.Fatalf("GPUs %v", ra.GPUs)
	}
	syscall.Kill(proc(t, ra).PID, syscall.SIGKILL)
	// How soon the death is noticed (PollInterval) is not asserted: on a busy machine it
	// measures the machine. That it is noticed, and the queue moves on, is.
	fa := waitStatus(t, m, a.ID, 20*time.Second, StatusFailed)
	if !strings.Contains(fa.Error, "without an exit record") {
		t.Fatalf("error %q", fa.Error)
	}
	rb := waitStatus(t, m, b.ID, 20*time.Second, StatusRunning)
	if len(rb.GPUs) != 1 {
		t.Fatalf("queued job did not get the freed GPU: %+v", rb)
	}
	// The trainer saw its GPU by UUID, in PCI bus order.
	evs := events(t, e.db, b.ID)
	deadline := time.Now().Add(20 * time.Second)
	for !hasEnv(evs) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		evs = events(t, e.db, b.ID)
	}
	if !hasEnv(evs) {
		t.Fatal("no training.status event with the trainer's environment")
	}
	if err := m.Command(context.Background(), b.ID, plugins.CommandCancel); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, m, b.ID, 20*time.Second, StatusCancelled)
	if h := e.alloc.Ledger().Holdings(); len(h) != 0 {
		t.Fatalf("GPUs still held: %v", h)
	}
}

func hasEnv(evs []plugins.Event) bool {
	for _, e := range evs {
		if e.Type == "training.status" && strings.Contains(string(e.Data), `"cuda_visible_devices":"GPU-`) && strings.Contains(string(e.Data), `"cuda_device_order":"PCI_BUS_ID"`) {
			return true
		}
	}
	return false
}

func TestRestartReattachesSameTrainerAndStopWorks(t *testing.T) {
	e := newEnv(t, gpu.NewFake())
	m1 := e.manager(kittest.EnvSteps+"=100000", kittest.EnvStepMS+"=10")
	j := submit(t, m1, 1)
	r1 := waitStatus(t, m1, j.ID, 20*time.Second, StatusRunning)
	for range 3 {
		// A daemon restart: stop following without touching the trainer, start anew.
		m1.Close()
		if syscall.Kill(proc(t, r1).PID, 0) != nil {
			t.Fatal("trainer died with the manager")
		}
		m1 = e.manager()
		r2 := waitStatus(t, m1, j.ID, 20*time.Second, StatusRunning)
		if proc(t, r2).PID != proc(t, r1).PID || r2.Attempts != 1 {
			t.Fatalf("after restart: pid %d attempts %d, want pid %d attempts 1", proc(t, r2).PID, r2.Attempts, proc(t, r1).PID)
		}
	}
	// The reattached stream delivers: new events are stored after the last restart.
	before := len(events(t, e.db, j.ID))
	deadline := time.Now().Add(20 * time.Second)
	for len(events(t, e.db, j.ID)) <= before {
		if time.Now().After(deadline) {
			t.Fatalf("no event stored after the reattach (%d before)", before)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := m1.Command(context.Background(), j.ID, plugins.CommandStop); err != nil {
		t.Fatalf("stop after reattach: %v", err)
	}
	waitStatus(t, m1, j.ID, 20*time.Second, StatusStopped)
	evs := events(t, e.db, j.ID)
	if evs[len(evs)-2].Type != "training.checkpoint" {
		t.Fatalf("stop did not checkpoint: %+v", evs[len(evs)-2])
	}
}

func TestTrainerFinishingWhileDaemonDownIsCompletedNotRelaunched(t *testing.T) {
	e := newEnv(t, gpu.NewFake())
	m1 := e.manager(kittest.EnvSteps+"=30", kittest.EnvStepMS+"=20")
	j := submit(t, m1, 1)
	r := waitStatus(t, m1, j.ID, 20*time.Second, StatusRunning)
	m1.Close()
	// Let it finish alone, and make sure the process is gone (no linger to rescue us).
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := plugins.ReadExitRecord(r.JobDir); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("trainer never finished")
		}
		time.Sleep(20 * time.Millisecond)
	}
	syscall.Kill(proc(t, r).PID, syscall.SIGKILL)
	waitProcGone(t, proc(t, r).PID, proc(t, r).ProcStart)
	m2 := e.manager()
	done := waitStatus(t, m2, j.ID, 20*time.Second, StatusCompleted)
	if done.Attempts != 1 {
		t.Fatalf("relaunched: attempts %d", done.Attempts)
	}
	evs := events(t, e.db, j.ID)
	progress := 0
	for _, ev := range evs {
		if ev.Type == "training.progress" {
			progress++
		}
	}
	if progress != 30 {
		t.Fatalf("%d progress events recovered from the spool, want 30", progress)
	}
}

func TestReusedPIDIsNeverSignalled(t *testing.T) {
	e := newEnv(t, gpu.NewFake())
	sleeper := exec.Command("sleep", "60")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	defer sleeper.Process.Kill()
	start, _, _ := procIdentity(sleeper.Process.Pid)
	// A job record that points at the sleeper's pid with another start time, and a
	// listener that is not a trainer on its recorded socket.
	sock := filepath.Join(t.TempDir(), "not-a-trainer.sock")
	j := &store.Job{ID: "reused1", Status: StatusRunning, CreatedAt: time.Now(), PID: sleeper.Process.Pid, ProcStart: start + 12345,
		BootID: bootID(), Network: "unix", Addr: sock, Nonce: "n", JobDir: t.TempDir(), Config: json.RawMessage(`{}`)}
	if err := e.db.Jobs().Create(j); err != nil {
		t.Fatal(err)
	}
	m := e.manager()
	got := waitStatus(t, m, j.ID, 20*time.Second, StatusLost)
	if !strings.Contains(got.Error, "gone") {
		t.Fatalf("error %q", got.Error)
	}
	if err := syscall.Kill(sleeper.Process.Pid, 0); err != nil {
		t.Fatal("the unrelated process was signalled")
	}
	if err := m.Command(context.Background(), j.ID, plugins.CommandCancel); !errors.Is(err, ErrEnded) {
		t.Fatalf("command to lost job: %v", err)
	}
}

func TestRejectsMoreGPUsThanTheMachineHas(t *testing.T) {
	e := newEnv(t, gpu.NewFake(gpu.FakeH100(2)...))
	m := e.manager()
	cfg := json.RawMessage(`{"--model_family":"dit"}`)
	_, err := m.Submit(context.Background(), SubmitRequest{Config: cfg, GPU: gpu.Request{NumProcesses: 3}})
	if !errors.Is(err, ErrRejected) {
		t.Fatalf("got %v, want ErrRejected", err)
	}
	jobs, _ := m.List()
	if len(jobs) != 0 {
		t.Fatal("rejected job was stored")
	}
}

func TestCancelQueuedJob(t *testing.T) {
	e := newEnv(t, gpu.NewFake(gpu.FakeH100(1)...))
	m := e.manager(kittest.EnvSteps+"=100000", kittest.EnvStepMS+"=10")
	a := submit(t, m, 1)
	b := submit(t, m, 1)
	waitStatus(t, m, a.ID, 20*time.Second, StatusRunning)
	if err := m.Command(context.Background(), b.ID, plugins.CommandCancel); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, m, b.ID, 20*time.Second, StatusCancelled)
	m.Command(context.Background(), a.ID, plugins.CommandCancel)
	waitStatus(t, m, a.ID, 20*time.Second, StatusCancelled)
}

func TestCrashedTrainerIsRetriedWithBackoffThenFails(t *testing.T) {
	e := newEnv(t, gpu.NewFake())
	m := e.managerWith(Config{MaxAttempts: 3, RetryBase: 150 * time.Millisecond, RetryMax: time.Second},
		kittest.EnvSteps+"=100", kittest.EnvStepMS+"=5", kittest.EnvCrashAt+"=3")
	j := submit(t, m, 1)
	done := waitStatus(t, m, j.ID, 30*time.Second, StatusFailed)
	if done.Attempts != 3 {
		t.Fatalf("attempts %d, want 3", done.Attempts)
	}
	// The last launch waited for its backoff: a retry is held until NotBefore (the delays
	// themselves are TestRetryDelay's).
	if done.NotBefore == nil || done.StartedAt == nil || done.StartedAt.Before(*done.NotBefore) {
		t.Fatalf("third launch at %v, retry not before %v", done.StartedAt, done.NotBefore)
	}
	var cfg map[string]any
	json.Unmarshal(done.Config, &cfg)
	if cfg["--resume_from_checkpoint"] != "latest" {
		t.Fatalf("retry does not resume: %v", cfg["--resume_from_checkpoint"])
	}
	// Each attempt numbers its events after the stored ones (plugins.EnvSeqBase): the
	// job's events are one gapless sequence and every attempt's are kept, its
	// "Trainer started" included.
	evs := events(t, e.db, j.ID)
	started := 0
	for i, ev := range evs {
		if ev.Seq != uint64(i+1) {
			t.Fatalf("event %d has seq %d: the sequence has a gap or a double", i+1, ev.Seq)
		}
		if ev.Title == "Trainer started" {
			started++
		}
	}
	if started != 3 {
		t.Fatalf("%d attempts' start events stored, want 3", started)
	}
}

func TestReportedFailureIsNotRetried(t *testing.T) {
	e := newEnv(t, gpu.NewFake())
	m := e.managerWith(Config{MaxAttempts: 3, RetryBase: 50 * time.Millisecond},
		kittest.EnvSteps+"=100", kittest.EnvStepMS+"=5", kittest.EnvFailAt+"=3")
	j := submit(t, m, 1)
	done := waitStatus(t, m, j.ID, 20*time.Second, StatusFailed)
	if done.Attempts != 1 || !strings.Contains(done.Error, "simulated failure") {
		t.Fatalf("attempts %d error %q", done.Attempts, done.Error)
	}
}

func TestHungTrainerIsKilledByTheWatchdog(t *testing.T) {
	e := newEnv(t, gpu.NewFake())
	m := e.managerWith(Config{StallTimeout: 400 * time.Millisecond, CancelGrace: 400 * time.Millisecond},
		kittest.EnvSteps+"=100", kittest.EnvStepMS+"=5", kittest.EnvHangAt+"=3", kittest.EnvIgnoreTerm+"=1")
	j := submit(t, m, 1)
	// The watchdog may already have struck when the test looks: running or failed, the
	// record names the trainer's pid.
	r := waitStatus(t, m, j.ID, 20*time.Second, StatusRunning, StatusFailed)
	done := waitStatus(t, m, j.ID, 20*time.Second, StatusFailed)
	if !strings.Contains(done.Error, "stalled") {
		t.Fatalf("error %q", done.Error)
	}
	if classifyProc(proc(t, r).PID, proc(t, r).ProcStart, proc(t, r).BootID, bootID()) == procOurs {
		t.Fatal("hung trainer still alive")
	}
}

func TestCancelledTrainerLeavesNoChildren(t *testing.T) {
	e := newEnv(t, gpu.NewFake())
	m := e.manager(kittest.EnvSteps+"=100000", kittest.EnvStepMS+"=10", kittest.EnvChildren+"=3")
	j := submit(t, m, 1)
	waitStatus(t, m, j.ID, 20*time.Second, StatusRunning)
	var kids []int
	deadline := time.Now().Add(20 * time.Second)
	for len(kids) == 0 && time.Now().Before(deadline) {
		for _, ev := range events(t, e.db, j.ID) {
			var d struct {
				Children []int `json:"children"`
			}
			if ev.Type == "training.status" && json.Unmarshal(ev.Data, &d) == nil && len(d.Children) > 0 {
				kids = d.Children
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(kids) != 3 {
		t.Fatalf("children %v", kids)
	}
	if err := m.Command(context.Background(), j.ID, plugins.CommandCancel); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, m, j.ID, 20*time.Second, StatusCancelled)
	for _, pid := range kids {
		deadline := time.Now().Add(20 * time.Second)
		for {
			st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
			if err != nil || strings.Contains(string(st), ") Z ") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("child %d of the cancelled trainer is still running", pid)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func TestDeletedSocketKeepsJobRunningUntilTheProcessEnds(t *testing.T) {
	e := newEnv(t, gpu.NewFake())
	m1 := e.manager(kittest.EnvSteps+"=100000", kittest.EnvStepMS+"=10")
	j := submit(t, m1, 1)
	r := waitStatus(t, m1, j.ID, 20*time.Second, StatusRunning)
	m1.Close()
	if err := os.Remove(proc(t, r).Addr); err != nil {
		t.Fatal(err)
	}
	m2 := e.manager()
	// A window for a wrong decision to show (the reattach already ran in Reconcile; the
	// watch polls the process every PollInterval). Nothing is waited for: a slow machine
	// only makes the window shorter, never the test fail.
	time.Sleep(500 * time.Millisecond)
	if got, _ := m2.Get(j.ID); got.Status != StatusRunning {
		t.Fatalf("job with a live trainer but no socket is %q", got.Status)
	}
	if err := m2.Command(context.Background(), j.ID, plugins.CommandStop); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("command without a socket: %v", err)
	}
	syscall.Kill(proc(t, r).PID, syscall.SIGKILL)
	waitStatus(t, m2, j.ID, 20*time.Second, StatusFailed)
}

func TestInterruptedLaunchIsRequeuedAndTheIdleTrainerKilled(t *testing.T) {
	e := newEnv(t, gpu.NewFake())
	// A trainer launched by a daemon that died before sending Start.
	c, err := plugins.Launch(plugins.LaunchConfig{Path: os.Args[0], Env: []string{asTrainer + "=1"}, SocketDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	st, _ := c.Status(context.Background())
	att, _ := c.Attachment()
	start, _, _ := procIdentity(st.PID)
	j := &store.Job{ID: "interrupted", Status: StatusStarting, CreatedAt: time.Now(), Config: json.RawMessage(`{"--model_family":"dit"}`),
		PID: st.PID, ProcStart: start, BootID: bootID(), Network: att.Network, Addr: att.Addr, Nonce: "n", JobDir: t.TempDir(), Attempts: 1}
	if err := e.db.Jobs().Create(j); err != nil {
		t.Fatal(err)
	}
	m := e.manager(kittest.EnvSteps+"=3", kittest.EnvStepMS+"=5")
	done := waitStatus(t, m, j.ID, 20*time.Second, StatusCompleted)
	if done.Attempts != 2 || proc(t, done).PID == st.PID {
		t.Fatalf("attempts %d pid %d (old %d)", done.Attempts, proc(t, done).PID, st.PID)
	}
	waitProcGone(t, st.PID, start)
}

// waitProcGone waits until the process pid (started at start) has exited.
func waitProcGone(t *testing.T, pid int, start uint64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for classifyProc(pid, start, bootID(), bootID()) == procOurs {
		if time.Now().After(deadline) {
			t.Fatalf("process %d is still running", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// killTrainersUnder kills trainer processes whose job directory lies under home: they
// outlive the manager by design, so a test must end them itself.
func killTrainersUnder(home string) {
	for _, pid := range procenv.Find("SIMPLETUNER_JOB_DIR=" + home) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
}
