package workeragent

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"simpletuner/internal/procenv"
	"simpletuner/plugins"
	"simpletuner/plugins/kit"
	"simpletuner/plugins/kit/kittest"
	"simpletuner/plugins/workerproto"
	"simpletuner/store"
	"simpletuner/supervisor/gpu"
	"simpletuner/supervisor/workeragent/agenttest"
)

// asTrainer makes the test binary a fake trainer (the real plugin kit around
// kittest's fake loop); the agent's job manager launches it.
const asTrainer = "SIMPLETUNER_TEST_RUN_TRAINER"

func TestMain(m *testing.M) {
	if os.Getenv(asTrainer) == "1" {
		kit.Main(kittest.FromEnv())
		return
	}
	os.Exit(m.Run())
}

const token = "tok-0123456789abcdef"

// logBuffer collects the agent's log, to check what it says (and what it never says).
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// harness is a fake orchestrator and the config of an agent against it.
type harness struct {
	t     *testing.T
	orch  *agenttest.Orchestrator
	state string
	log   *logBuffer
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	o := agenttest.New(token)
	t.Cleanup(o.Close)
	h := &harness{t: t, orch: o, state: t.TempDir(), log: &logBuffer{}}
	t.Cleanup(func() {
		for _, pid := range procenv.Find("SIMPLETUNER_JOB_DIR=" + h.state) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	return h
}

// config is an agent config with a fake trainer taking the given FAKE_TRAINER_* settings.
func (h *harness) config(persistent bool, trainerEnv ...string) Config {
	return Config{OrchestratorURL: h.orch.URL(), Token: token, Name: "box-1", Persistent: persistent,
		Labels: map[string]string{"gpu_type": "h100"}, StateDir: h.state,
		CPUTrainer: os.Args[0], GPUTrainer: os.Args[0], TrainerEnv: append([]string{asTrainer + "=1"}, trainerEnv...),
		Inventory: gpu.NewFake(gpu.FakeH100(2)...), Heartbeat: 50 * time.Millisecond,
		RetryBase: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond, PollInterval: 50 * time.Millisecond,
		Log: slog.New(slog.NewTextHandler(h.log, &slog.HandlerOptions{Level: slog.LevelDebug}))}
}

// start runs an agent; its result arrives on the channel. The agent is stopped at the
// end of the test if it still runs.
func (h *harness) start(cfg Config) (cancel func(), done <-chan error) {
	ctx, stop := context.WithCancel(context.Background())
	ch := make(chan error, 1)
	go func() { ch <- Run(ctx, cfg) }()
	exited := make(chan struct{})
	h.t.Cleanup(func() {
		stop()
		<-exited
	})
	out := make(chan error, 1)
	go func() {
		err := <-ch
		close(exited)
		out <- err
	}()
	return stop, out
}

// waitFor waits until cond holds (checked at every change of the orchestrator's
// records), or fails after within.
func (h *harness) waitFor(what string, within time.Duration, cond func() bool) {
	h.t.Helper()
	deadline := time.After(within)
	for {
		ch := h.orch.Changed()
		if cond() {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			h.t.Fatalf("timed out waiting for %s\nagent log:\n%s", what, h.log.String())
		}
	}
}

// waitExit waits for the agent to return.
func (h *harness) waitExit(done <-chan error, within time.Duration) error {
	h.t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(within):
		h.t.Fatalf("the agent did not exit within %v\nagent log:\n%s", within, h.log.String())
	}
	return nil
}

func submitEvent(t *testing.T, id string, gpus int) workerproto.JobSubmit {
	cfg, _ := json.Marshal(map[string]any{"--output_dir": t.TempDir(), "--model_family": "dit"})
	return workerproto.JobSubmit{Type: workerproto.EventJobSubmit, JobID: id, Config: cfg, NumGPUs: gpus, ConfigName: "env1"}
}

// checkExactlyOnce fails unless the orchestrator stored seqs 1..N with N > 0 and its
// final status names N.
func checkExactlyOnce(t *testing.T, j *agenttest.Job) {
	t.Helper()
	if len(j.Events) == 0 {
		t.Fatalf("no events stored: %s", j.Summary())
	}
	for i, e := range j.Events {
		if e.Seq != uint64(i+1) {
			t.Fatalf("stored seqs are not 1..N: %s", j.Summary())
		}
	}
	if j.Final == nil || j.Final.LastSeq != uint64(len(j.Events)) {
		t.Fatalf("final status missing or its last_seq differs from the events stored: %+v; %s", j.Final, j.Summary())
	}
}

func TestEphemeralWorkerRunsOneJobAndExits(t *testing.T) {
	h := newHarness(t)
	_, done := h.start(h.config(false, kittest.EnvSteps+"=15", kittest.EnvStepMS+"=5"))
	h.waitFor("a registration and a dispatch stream", 30*time.Second, func() bool { return h.orch.Streams() > 0 })
	reg := h.orch.Registrations()[0]
	if reg.Name != "box-1" || reg.Persistent || reg.Labels["gpu_type"] != "h100" || reg.CurrentJobID != nil ||
		reg.GPUInfo.Count != 2 || reg.GPUInfo.Accelerator != "cuda" || len(reg.GPUInfo.UUIDs) != 2 {
		t.Fatalf("registration = %+v", reg)
	}
	sub := submitEvent(t, "job-1", 1)
	sub.Dataloader = json.RawMessage(`[{"id":"img","type":"local"}]`)
	h.orch.Dispatch(workerproto.EventJobSubmit, sub)
	if err := h.waitExit(done, 60*time.Second); err != nil {
		t.Fatalf("ephemeral agent: %v\n%s", err, h.log)
	}
	// The dataloader sent beside the config is the job's --data_backend_config.
	db, err := store.Open(filepath.Join(h.state, "state"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	local, err := db.Jobs().Get("job-1")
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	json.Unmarshal(local.Config, &cfg)
	path, _ := cfg["--data_backend_config"].(string)
	if b, err := os.ReadFile(path); err != nil || string(b) != string(sub.Dataloader) || cfg["--model_family"] != "dit" {
		t.Fatalf("job config %v: dataloader file %q: %q, %v", cfg, path, b, err)
	}
	j := h.orch.Job("job-1")
	checkExactlyOnce(t, j)
	if j.Received != len(j.Events) {
		t.Fatalf("events were sent twice without a fault: %s", j.Summary())
	}
	if j.Final.Status != "completed" {
		t.Fatalf("final status %+v", j.Final)
	}
	sts := j.Statuses
	if len(sts) < 2 || sts[len(sts)-2].Status != "running" {
		t.Fatalf("statuses %s: want running before completed", j.Summary())
	}
	// The fake trainer reports the GPU it was given: the agent's allocator placed it.
	var sawGPU bool
	for _, e := range j.Events {
		if e.Type == plugins.EventTrainingStatus && strings.Contains(string(e.Data), gpu.FakeUUID(0)) {
			sawGPU = true
		}
	}
	if !sawGPU {
		t.Fatalf("the trainer did not get GPU 0 through CUDA_VISIBLE_DEVICES: %s", j.Summary())
	}
	if !strings.Contains(h.log.String(), "ephemeral") {
		t.Fatalf("the agent did not say why it exited:\n%s", h.log)
	}
	if strings.Contains(h.log.String(), token) {
		t.Fatal("the worker token appears in the agent's log")
	}
	if n := len(h.orch.Heartbeats()); n == 0 {
		t.Fatal("no heartbeat was sent")
	}
}

func TestDroppedUploadsLoseAndRepeatNothing(t *testing.T) {
	h := newHarness(t)
	// Every upload fault in turn, twice: half a body then a hang-up, and a batch stored
	// whose answer never comes.
	h.orch.DropUploads(agenttest.DropMidBody, agenttest.DropAfterStore, agenttest.DropMidBody, agenttest.DropAfterStore,
		agenttest.DropAfterStore, agenttest.DropMidBody)
	_, done := h.start(h.config(false, kittest.EnvSteps+"=60", kittest.EnvStepMS+"=3"))
	h.orch.Dispatch(workerproto.EventJobSubmit, submitEvent(t, "job-d", 0))
	if err := h.waitExit(done, 60*time.Second); err != nil {
		t.Fatalf("agent: %v", err)
	}
	if h.orch.Dropped() != 6 {
		t.Fatalf("%d uploads dropped, want 6", h.orch.Dropped())
	}
	j := h.orch.Job("job-d")
	checkExactlyOnce(t, j)
	if j.Received <= len(j.Events) {
		t.Fatalf("a batch stored but not answered must be sent again (and skipped): %s", j.Summary())
	}
}

func TestRestartedAgentResumesFromOrchestratorSeq(t *testing.T) {
	h := newHarness(t)
	stop, done := h.start(h.config(true, kittest.EnvSteps+"=80", kittest.EnvStepMS+"=25"))
	h.orch.Dispatch(workerproto.EventJobSubmit, submitEvent(t, "job-r", 0))
	h.waitFor("some events", 30*time.Second, func() bool { j := h.orch.Job("job-r"); return len(j.Events) >= 10 })
	// A stopped agent leaves its trainer running.
	stop()
	if err := h.waitExit(done, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if len(procenv.Find("SIMPLETUNER_JOB_DIR="+h.state)) == 0 {
		t.Fatal("stopping the agent stopped the trainer")
	}
	regs := len(h.orch.Registrations())
	// The next agent on the state directory reattaches it and resumes the upload.
	_, done = h.start(h.config(false, kittest.EnvSteps+"=80", kittest.EnvStepMS+"=25"))
	if err := h.waitExit(done, 60*time.Second); err != nil {
		t.Fatalf("restarted agent: %v\n%s", err, h.log)
	}
	r := h.orch.Registrations()[regs]
	if r.CurrentJobID == nil || *r.CurrentJobID != "job-r" {
		t.Fatalf("the restarted agent registered without its running job: %+v", r)
	}
	j := h.orch.Job("job-r")
	checkExactlyOnce(t, j)
	if j.Final.Status != "completed" || j.Received != len(j.Events) {
		t.Fatalf("after a resume the upload goes on from the stored seq: %s", j.Summary())
	}
}

func TestLostStreamReRegistersAndKeepsTheJob(t *testing.T) {
	h := newHarness(t)
	_, done := h.start(h.config(false, kittest.EnvSteps+"=60", kittest.EnvStepMS+"=20"))
	h.orch.Dispatch(workerproto.EventJobSubmit, submitEvent(t, "job-s", 0))
	h.waitFor("some events", 30*time.Second, func() bool { return len(h.orch.Job("job-s").Events) >= 5 })
	h.orch.CloseStreams()
	h.waitFor("a second stream", 30*time.Second, func() bool { return h.orch.Streams() >= 2 })
	if err := h.waitExit(done, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	regs := h.orch.Registrations()
	if len(regs) < 2 || regs[1].CurrentJobID == nil || *regs[1].CurrentJobID != "job-s" {
		t.Fatalf("re-registration did not name the running job: %+v", regs)
	}
	checkExactlyOnce(t, h.orch.Job("job-s"))
}

func TestSilentStreamReconnects(t *testing.T) {
	h := newHarness(t)
	cfg := h.config(true)
	cfg.StreamIdle = 100 * time.Millisecond // the fake never pings
	_, _ = h.start(cfg)
	h.waitFor("a reconnect after the stream went silent", 30*time.Second, func() bool { return h.orch.Streams() >= 3 })
	if n := len(h.orch.Registrations()); n < 3 {
		t.Fatalf("%d registrations: every reconnect registers again", n)
	}
}

func TestAbandonedJobIsCancelled(t *testing.T) {
	h := newHarness(t)
	stop, done := h.start(h.config(true, kittest.EnvSteps+"=400", kittest.EnvStepMS+"=25"))
	h.orch.Dispatch(workerproto.EventJobSubmit, submitEvent(t, "job-a", 0))
	h.waitFor("the job running", 30*time.Second, func() bool { return len(h.orch.Job("job-a").Events) >= 3 })
	stop()
	h.waitExit(done, 30*time.Second)
	// A new orchestrator that never heard of the job: registration answers abandon_job.
	o2 := agenttest.New(token)
	defer o2.Close()
	cfg := h.config(false)
	cfg.OrchestratorURL = o2.URL()
	_, done = h.start(cfg)
	if err := h.waitExit(done, 60*time.Second); err != nil {
		t.Fatalf("agent: %v\n%s", err, h.log)
	}
	db, err := store.Open(filepath.Join(h.state, "state"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	j, err := db.Jobs().Get("job-a")
	if err != nil || j.Status != "cancelled" {
		t.Fatalf("abandoned job is %q (%v), want cancelled\n%s", j.Status, err, h.log)
	}
	if o2.Job("job-a") != nil {
		t.Fatal("the new orchestrator got reports of a job it abandoned")
	}
}

func TestCommandsCancelAndDrain(t *testing.T) {
	h := newHarness(t)
	_, done := h.start(h.config(true, kittest.EnvSteps+"=400", kittest.EnvStepMS+"=20"))
	h.orch.Dispatch(workerproto.EventJobSubmit, submitEvent(t, "job-c", 0))
	h.waitFor("the job running", 30*time.Second, func() bool { return len(h.orch.Job("job-c").Events) >= 3 })
	h.orch.Dispatch(workerproto.EventJobCommand, workerproto.JobControl{Type: workerproto.EventJobCommand, JobID: "job-c", Command: "checkpoint"})
	h.waitFor("a checkpoint event", 30*time.Second, func() bool {
		for _, e := range h.orch.Job("job-c").Events {
			if e.Type == plugins.EventTrainingCheckpoint {
				return true
			}
		}
		return false
	})
	h.orch.Dispatch(workerproto.EventDrain, workerproto.Notice{Type: workerproto.EventDrain, Data: map[string]string{}})
	// Draining finishes the job: here it is cancelled, then the worker exits.
	h.orch.Dispatch(workerproto.EventJobCancel, workerproto.JobControl{Type: workerproto.EventJobCancel, JobID: "job-c"})
	if err := h.waitExit(done, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	j := h.orch.Job("job-c")
	checkExactlyOnce(t, j)
	if j.Final.Status != "cancelled" {
		t.Fatalf("final %+v", j.Final)
	}
	if !strings.Contains(h.log.String(), "drained") {
		t.Fatalf("the agent did not say it drained:\n%s", h.log)
	}
}

func TestBoundWorkerTakesOnlyItsJob(t *testing.T) {
	h := newHarness(t)
	cfg := h.config(false, kittest.EnvSteps+"=5", kittest.EnvStepMS+"=5")
	cfg.Job = "job-b"
	_, done := h.start(cfg)
	h.orch.Dispatch(workerproto.EventJobSubmit, submitEvent(t, "job-other", 0))
	h.orch.Dispatch(workerproto.EventJobSubmit, submitEvent(t, "job-b", 0))
	if err := h.waitExit(done, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	checkExactlyOnce(t, h.orch.Job("job-b"))
	if j := h.orch.Job("job-other"); len(j.Statuses) != 0 || len(j.Events) != 0 {
		t.Fatalf("the bound worker ran another job: %s", j.Summary())
	}
}

func TestShutdownExitsAndLeavesJobsRunning(t *testing.T) {
	h := newHarness(t)
	_, done := h.start(h.config(true, kittest.EnvSteps+"=400", kittest.EnvStepMS+"=25"))
	h.orch.Dispatch(workerproto.EventJobSubmit, submitEvent(t, "job-x", 0))
	h.waitFor("the job running", 30*time.Second, func() bool { return len(h.orch.Job("job-x").Events) >= 3 })
	h.orch.Dispatch(workerproto.EventShutdown, workerproto.Notice{Type: workerproto.EventShutdown, Data: map[string]string{"reason": "worker_deleted"}})
	if err := h.waitExit(done, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if len(procenv.Find("SIMPLETUNER_JOB_DIR="+h.state)) == 0 {
		t.Fatal("shutdown stopped the trainer; it must be left running")
	}
	if !strings.Contains(h.log.String(), "worker_deleted") || !strings.Contains(h.log.String(), "not cancelled") {
		t.Fatalf("the agent did not say why it exited:\n%s", h.log)
	}
}

func TestRefusedTokenExits(t *testing.T) {
	h := newHarness(t)
	cfg := h.config(true)
	cfg.Token = "wrong-token-value"
	_, done := h.start(cfg)
	err := h.waitExit(done, 30*time.Second)
	if !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("Run = %v, want ErrUnauthorized", err)
	}
	if strings.Contains(err.Error(), "wrong-token-value") || strings.Contains(h.log.String(), "wrong-token-value") {
		t.Fatal("the token appears in the error or the log")
	}
}

func TestRefusedRegistrationExits(t *testing.T) {
	h := newHarness(t)
	cfg := h.config(true)
	cfg.Labels = map[string]string{"bad name": "x"}
	_, done := h.start(cfg)
	err := h.waitExit(done, 30*time.Second)
	if !errors.Is(err, ErrRegisterRefused) || !strings.Contains(err.Error(), "bad name") {
		t.Fatalf("Run = %v, want ErrRegisterRefused with the orchestrator's reason", err)
	}
}

func TestStateDirectoryIsLocked(t *testing.T) {
	h := newHarness(t)
	_, _ = h.start(h.config(true))
	h.waitFor("the first agent registered", 30*time.Second, func() bool { return h.orch.Streams() > 0 })
	_, done := h.start(h.config(true))
	if err := h.waitExit(done, 30*time.Second); !errors.Is(err, ErrStateInUse) {
		t.Fatalf("second agent on the same state dir: %v, want ErrStateInUse", err)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no url", Config{Token: "t", Name: "n", StateDir: "/x"}, "--orchestrator-url"},
		{"bad url", Config{OrchestratorURL: "ftp://x", Token: "t", Name: "n", StateDir: "/x"}, "http://"},
		{"no token", Config{OrchestratorURL: "http://x:1", Name: "n", StateDir: "/x"}, "--worker-token"},
	} {
		err := Run(context.Background(), c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Run = %v, want a message naming %s", c.name, err, c.want)
		}
	}
}
