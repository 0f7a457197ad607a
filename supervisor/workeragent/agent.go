// Package workeragent is `simpletuner worker`: a remote worker that registers with an
// orchestrator (the daemon), takes jobs from its dispatch stream and runs them with the
// daemon's own job manager — the same launcher, GPU allocation, trainer reattach and hook
// scripts — on a store of its own. Trainer events are stored locally with their seq and
// uploaded in acknowledged batches, so a dropped connection loses and repeats nothing; a
// killed agent leaves its trainers running and the restarted one reattaches them
// (docs/architecture.md §16).
package workeragent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"simpletuner/plugins"
	"simpletuner/plugins/workerproto"
	"simpletuner/store"
	"simpletuner/supervisor/gpu"
	"simpletuner/supervisor/hookrunner"
	"simpletuner/supervisor/jobs"
)

// DefaultHeartbeat is how often a worker sends a heartbeat (contract: every 30 s).
const DefaultHeartbeat = 30 * time.Second

// Config configures an agent.
type Config struct {
	// OrchestratorURL is the daemon's base URL (http or https), as workers reach it.
	OrchestratorURL string
	// Token is the worker token (X-Worker-Token). It is sent in that header only.
	Token string
	// Name is the worker's name (the host name by default, filled by the command).
	Name string
	// Persistent keeps the worker running after a job; an ephemeral one exits 0 once its
	// one job ended and the orchestrator accepted its final status.
	Persistent bool
	// Labels are the worker's labels, matched against a job's worker_labels.
	Labels map[string]string
	// Job binds the worker to one job id (Slurm): it accepts job_submit for that job only
	// and exits when it ends.
	Job string
	// StateDir holds the agent's store (locked: one agent per directory), its job
	// folders and trainer sockets.
	StateDir string
	// CPUTrainer and GPUTrainer are the trainer binaries; TrainerArgs and TrainerEnv are
	// as in jobs.Config.
	CPUTrainer, GPUTrainer string
	TrainerArgs            []string
	TrainerEnv             []string
	// JobAttempts and StallTimeout are as the daemon's (jobs.Config MaxAttempts and
	// StallTimeout).
	JobAttempts  int
	StallTimeout time.Duration
	// Inventory is the machine's GPUs (gpu.Open; gpu.None on a CPU-only host).
	Inventory gpu.Inventory
	// HTTP is the client for the orchestrator (nil: a default client without a total
	// timeout, since the dispatch stream stays open).
	HTTP *http.Client
	// Heartbeat is the heartbeat interval (0: DefaultHeartbeat).
	Heartbeat time.Duration
	// StreamIdle is how long the dispatch stream may stay silent (the orchestrator pings
	// every 30 s) before the agent takes the connection for dead and reconnects (0: 90 s).
	StreamIdle time.Duration
	// RetryBase and RetryMax shape the reconnect and upload backoff (0: 1 s and 30 s).
	RetryBase, RetryMax time.Duration
	// PollInterval is the job manager's trainer liveness check (0: its default).
	PollInterval time.Duration
	// Log receives the agent's log; the token never appears in it.
	Log *slog.Logger
}

// validate checks the values a person typed and fills defaults.
func (c *Config) validate() (*url.URL, error) {
	if c.OrchestratorURL == "" {
		return nil, errors.New("--orchestrator-url (or SIMPLETUNER_ORCHESTRATOR_URL) is required, e.g. http://orchestrator:8001")
	}
	u, err := url.Parse(c.OrchestratorURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--orchestrator-url %q: want an http:// or https:// URL such as http://orchestrator:8001", c.OrchestratorURL)
	}
	if c.Token == "" {
		return nil, errors.New("--worker-token (or SIMPLETUNER_WORKER_TOKEN) is required: create a worker with POST /api/admin/workers and use the token it shows")
	}
	if c.StateDir == "" {
		return nil, errors.New("--state-dir is required")
	}
	if c.Heartbeat <= 0 {
		c.Heartbeat = DefaultHeartbeat
	}
	if c.StreamIdle <= 0 {
		c.StreamIdle = 90 * time.Second
	}
	if c.RetryBase <= 0 {
		c.RetryBase = time.Second
	}
	if c.RetryMax <= 0 {
		c.RetryMax = 30 * time.Second
	}
	if c.Inventory == nil {
		c.Inventory = gpu.None{Reason: "no GPU inventory given"}
	}
	if c.HTTP == nil {
		c.HTTP = &http.Client{}
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return u, nil
}

// requestTimeout bounds one request other than the dispatch stream.
const requestTimeout = 30 * time.Second

// Agent is one running worker. Run creates it; it lives until Run returns.
type Agent struct {
	cfg   Config
	log   *slog.Logger
	cl    *client
	db    *store.DB
	jm    *jobs.Manager
	hooks *hookrunner.Runner
	ctx   context.Context // ends when Run returns
	wg    sync.WaitGroup  // the job syncs

	// quit is closed (once, by finish) when the agent's work is done.
	quit     chan struct{}
	quitOnce sync.Once

	// mu guards the fields below.
	mu         sync.Mutex
	exitMsg    string                    // why Run returns nil (the first reason given)
	generation int                       // registrations so far; syncs wait for one
	registered chan struct{}             // closed at each registration, replaced when it is lost
	draining   bool                      // a drain arrived: no new jobs, exit when idle
	accepted   int                       // jobs taken on this run (ephemeral: one)
	syncs      map[string]*jobSync       // jobs whose events or status are not all reported
	configs    map[string]map[string]any // resolved configs of running jobs, for hooks
}

// Run runs a worker until its work is done (drain, shutdown, an ephemeral worker's job
// ended), ctx ends (SIGTERM: running jobs are left running; the next agent on this
// state directory reattaches them), or the orchestrator refuses the token
// (ErrUnauthorized). A clean end returns nil and logs why.
func Run(ctx context.Context, cfg Config) error {
	base, err := cfg.validate()
	if err != nil {
		return err
	}
	log := cfg.Log
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", cfg.StateDir, err)
	}
	db, err := store.Open(filepath.Join(cfg.StateDir, "state"), log.With("component", "store"))
	if errors.Is(err, store.ErrLocked) {
		return fmt.Errorf("%w: %s (stop the other worker, or give this one its own --state-dir)", ErrStateInUse, cfg.StateDir)
	}
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	a := &Agent{cfg: cfg, log: log, db: db, ctx: ctx, quit: make(chan struct{}), registered: make(chan struct{}),
		cl:    &client{base: base, token: cfg.Token, http: cfg.HTTP},
		syncs: map[string]*jobSync{}, configs: map[string]map[string]any{}}
	// Hook scripts run here, where the checkpoints are, as the daemon runs them for its
	// own jobs; their start and end are logged (the orchestrator hears of them through
	// the job's own events only).
	a.hooks = hookrunner.New(db, log.With("component", "hooks"), hookrunner.Options{Emit: func(jobID, typ, sev, title, msg string, _ any) {
		log.Info(title, "job_id", jobID, "event", typ, "severity", sev, "message", msg)
	}})
	defer a.hooks.Close()
	a.jm, err = jobs.New(jobs.Config{JobsDir: filepath.Join(cfg.StateDir, "jobs"), RunDir: filepath.Join(cfg.StateDir, "run"),
		CPUTrainer: cfg.CPUTrainer, GPUTrainer: cfg.GPUTrainer, TrainerArgs: cfg.TrainerArgs, TrainerEnv: cfg.TrainerEnv,
		MaxAttempts: cfg.JobAttempts, StallTimeout: cfg.StallTimeout, PollInterval: cfg.PollInterval,
		Events: sink{a}, OnEvents: func(id string, _ []plugins.Event) { a.wakeJob(id) }},
		db, gpu.NewAllocator(cfg.Inventory, gpu.Limits{}), log.With("component", "jobs"))
	if err != nil {
		return err
	}
	// Trainers that outlived the previous agent are reattached before anything else.
	rctx, rcancel := context.WithTimeout(ctx, 2*time.Minute)
	err = a.jm.Reconcile(rctx)
	rcancel()
	if err != nil {
		a.jm.Close()
		return fmt.Errorf("reconcile jobs: %w", err)
	}
	a.jm.Start()
	defer func() {
		// Syncs first (they read the store), then stop following trainers: they keep
		// running for the next agent.
		cancel()
		a.wg.Wait()
		a.jm.Close()
	}()
	if err := a.adoptStored(); err != nil {
		return err
	}
	if info := cfg.Inventory.Info(); info.Reason != "" {
		log.Info("no GPUs: jobs run on the CPU trainer", "reason", info.Reason)
	}
	err = a.loop(ctx)
	a.mu.Lock()
	msg := a.exitMsg
	a.mu.Unlock()
	if err == nil && msg != "" {
		log.Info("worker exiting", "reason", msg)
	}
	return err
}

// adoptStored starts reporting every stored job whose final status the orchestrator has
// not accepted yet (jobs reattached after a restart, or that ended while the agent was
// away); they count as this run's jobs for an ephemeral worker.
func (a *Agent) adoptStored() error {
	all, err := a.jm.List()
	if err != nil {
		return err
	}
	for _, j := range all {
		if !a.reported(j.ID) {
			a.mu.Lock()
			a.accepted++
			a.mu.Unlock()
			a.wakeJob(j.ID)
		}
	}
	return nil
}

// loop keeps a session with the orchestrator, reconnecting with backoff, until the
// agent's work is done, ctx ends or the token is refused.
func (a *Agent) loop(ctx context.Context) error {
	for attempt := 0; ; {
		started := time.Now()
		err := a.session(ctx)
		select {
		case <-a.quit:
			return nil
		default:
		}
		if ctx.Err() != nil {
			a.setExitMsg("stopped; running jobs keep running and the next worker on this state directory reattaches them")
			return nil
		}
		if errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrRegisterRefused) {
			return err
		}
		if time.Since(started) > a.cfg.RetryMax {
			attempt = 0 // a session that lasted is not a failing one
		}
		attempt++
		d := backoff(attempt, a.cfg.RetryBase, a.cfg.RetryMax)
		a.log.Warn("lost the orchestrator; reconnecting", "err", err, "retry_in", d)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
		case <-a.quit:
		case <-t.C:
		}
		t.Stop()
	}
}

// finish ends the agent's work: Run returns nil after logging msg.
func (a *Agent) finish(msg string) {
	a.quitOnce.Do(func() {
		a.setExitMsg(msg)
		close(a.quit)
	})
}

// setExitMsg records why Run returns; the first reason given stays.
func (a *Agent) setExitMsg(msg string) {
	a.mu.Lock()
	if a.exitMsg == "" {
		a.exitMsg = msg
	}
	a.mu.Unlock()
}

// session registers, then follows the dispatch stream (with heartbeats beside it) until
// the stream fails, the agent's work is done or ctx ends.
func (a *Agent) session(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case <-a.quit:
			cancel(errors.New("done"))
		case <-ctx.Done():
		}
	}()
	res, err := a.register(ctx)
	if err != nil {
		return err
	}
	defer a.unregistered()
	hbDone := make(chan struct{})
	go func() {
		defer close(hbDone)
		if err := a.heartbeats(ctx, res.WorkerID); err != nil {
			cancel(err)
		}
	}()
	defer func() { <-hbDone }()
	defer cancel(nil)
	sse := res.SSEURL
	if sse == "" {
		sse = "/api/workers/stream?worker_id=" + url.QueryEscape(res.WorkerID)
	}
	body, err := a.cl.stream(ctx, sse)
	if err != nil {
		return err
	}
	defer body.Close()
	// A connection that died without a reset (a host gone, a NAT entry dropped) reads
	// nothing forever: silence longer than a few pings ends the session.
	idle := time.AfterFunc(a.cfg.StreamIdle, func() { cancel(errStreamSilent) })
	defer idle.Stop()
	a.checkExit()
	err = readSSE(activityReader{body, func() { idle.Reset(a.cfg.StreamIdle) }}, func(ev sseEvent) error {
		a.handle(ctx, ev)
		return nil
	})
	if cause := context.Cause(ctx); cause != nil {
		return cause
	}
	return err
}

// errStreamSilent ends a session whose dispatch stream went silent.
var errStreamSilent = errors.New("the dispatch stream was silent for too long; reconnecting")

// activityReader calls touch whenever a read returns data.
type activityReader struct {
	r     io.Reader
	touch func()
}

func (a activityReader) Read(p []byte) (int, error) {
	n, err := a.r.Read(p)
	if n > 0 {
		a.touch()
	}
	return n, err
}

// register announces the worker with its inventory and the job it still has, and
// follows the answer's resume_job and abandon_job.
func (a *Agent) register(ctx context.Context) (*workerproto.RegisterResponse, error) {
	info, err := a.gpuInfo(ctx)
	if err != nil {
		return nil, err
	}
	req := workerproto.RegisterRequest{Name: a.cfg.Name, GPUInfo: info, Persistent: a.cfg.Persistent, Labels: a.cfg.Labels,
		CurrentJobID: a.currentJob(true)}
	if req.Labels == nil {
		req.Labels = map[string]string{}
	}
	var res workerproto.RegisterResponse
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	if err := a.cl.post(rctx, "/api/workers/register", req, &res); err != nil {
		var se *statusError
		if errors.As(err, &se) && (se.Code == http.StatusBadRequest || se.Code == http.StatusUnprocessableEntity) {
			return nil, fmt.Errorf("%w: %s", ErrRegisterRefused, se.Msg)
		}
		return nil, fmt.Errorf("register: %w", err)
	}
	a.log.Info("registered with the orchestrator", "worker_id", res.WorkerID, "name", a.cfg.Name,
		"gpus", info.Count, "accelerator", info.Accelerator)
	if r := res.ResumeJob; r != nil {
		a.resume(ctx, r)
	}
	if res.AbandonJob != nil && *res.AbandonJob != "" {
		a.abandon(ctx, *res.AbandonJob, "the orchestrator no longer wants it run here")
	}
	a.mu.Lock()
	a.generation++
	close(a.registered)
	a.mu.Unlock()
	return &res, nil
}

// unregistered marks the session lost: syncs wait for the next registration.
func (a *Agent) unregistered() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.registered = make(chan struct{})
}

// resume continues reporting a job the orchestrator still has on this worker, from the
// seq it has stored.
func (a *Agent) resume(ctx context.Context, r *workerproto.ResumeJob) {
	if _, err := a.jm.Get(r.JobID); errors.Is(err, jobs.ErrNotFound) {
		// This state directory never ran it (or was reset): say so, so the
		// orchestrator can run it elsewhere.
		a.log.Warn("the orchestrator resumes a job this worker has no record of; reporting it failed", "job_id", r.JobID)
		st := workerproto.JobStatus{Status: jobs.StatusFailed, Error: "the worker has no record of this job (its state directory was reset)"}
		rctx, cancel := context.WithTimeout(ctx, requestTimeout)
		defer cancel()
		if err := a.cl.post(rctx, jobPath(r.JobID, "status"), st, nil); err != nil {
			a.log.Warn("report unknown job", "job_id", r.JobID, "err", err)
		}
		return
	}
	a.log.Info("resuming job", "job_id", r.JobID, "orchestrator_last_seq", r.LastSeq)
	a.syncFor(r.JobID, true).setAcked(r.LastSeq)
	a.wakeJob(r.JobID)
}

// abandon cancels a local job the orchestrator no longer wants here and stops reporting
// it.
func (a *Agent) abandon(ctx context.Context, id, why string) {
	j, err := a.jm.Get(id)
	if err != nil {
		return
	}
	if !jobs.Terminal(j.Status) {
		a.log.Warn("cancelling job", "job_id", id, "reason", why)
		if err := a.jm.Command(ctx, id, plugins.CommandCancel); err != nil && !errors.Is(err, jobs.ErrEnded) {
			a.log.Warn("cancel abandoned job", "job_id", id, "err", err)
		}
	}
	a.markReported(id)
	a.mu.Lock()
	if s := a.syncs[id]; s != nil {
		s.abandon()
	}
	a.mu.Unlock()
	a.checkExit()
}

// gpuInfo describes the machine's GPUs for registration.
func (a *Agent) gpuInfo(ctx context.Context) (workerproto.GPUInfo, error) {
	inf := a.cfg.Inventory.Info()
	gpus, err := a.cfg.Inventory.List(ctx)
	if err != nil {
		return workerproto.GPUInfo{}, fmt.Errorf("list GPUs: %w", err)
	}
	return describeGPUs(gpus, inf), nil
}

// describeGPUs is the registration's gpu_info for an inventory: the first GPU's name and
// memory (SimpleTuner reports one kind per worker), the count and every UUID.
func describeGPUs(gpus []gpu.GPU, inf gpu.Info) workerproto.GPUInfo {
	out := workerproto.GPUInfo{Accelerator: inf.Backend, Driver: inf.DriverVersion, Count: len(gpus)}
	if len(gpus) == 0 {
		out.Accelerator = gpu.BackendCPU
		out.Name = "cpu"
		return out
	}
	out.Name = gpus[0].Name
	out.VRAMGB = float64(gpus[0].MemoryTotal) / (1 << 30)
	for _, g := range gpus {
		out.UUIDs = append(out.UUIDs, g.UUID)
	}
	return out
}

// currentJob is the job a registration or heartbeat names: the first one running here,
// else (withUnreported) the first whose final status is not yet accepted.
func (a *Agent) currentJob(withUnreported bool) *string {
	all, err := a.jm.List()
	if err != nil {
		return nil
	}
	var pending *string
	for _, j := range all {
		if !jobs.Terminal(j.Status) {
			id := j.ID
			return &id
		}
		if withUnreported && pending == nil && !a.reported(j.ID) {
			id := j.ID
			pending = &id
		}
	}
	return pending
}

// heartbeats sends a heartbeat every interval until ctx ends; a refused token ends it
// with ErrUnauthorized, other failures are logged (the stream notices a dead
// orchestrator).
func (a *Agent) heartbeats(ctx context.Context, workerID string) error {
	t := time.NewTicker(a.cfg.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		cur := a.currentJob(false)
		hb := workerproto.Heartbeat{WorkerID: workerID, Status: heartbeatStatus(cur != nil), CurrentJobID: cur}
		if cur != nil {
			if j, err := a.jm.Get(*cur); err == nil && len(j.Progress) > 0 {
				hb.JobProgress = j.Progress
			}
		}
		rctx, cancel := context.WithTimeout(ctx, requestTimeout)
		err := a.cl.post(rctx, "/api/workers/heartbeat", hb, nil)
		cancel()
		if errors.Is(err, ErrUnauthorized) {
			return err
		}
		if err != nil && ctx.Err() == nil {
			a.log.Warn("heartbeat", "err", err)
		}
	}
}

// handle acts on one dispatch stream event.
func (a *Agent) handle(ctx context.Context, ev sseEvent) {
	switch ev.Name {
	case workerproto.EventJobSubmit:
		var js workerproto.JobSubmit
		if err := json.Unmarshal(ev.Data, &js); err != nil || js.JobID == "" {
			a.log.Warn("malformed job_submit ignored", "err", err)
			return
		}
		a.submit(ctx, &js)
	case workerproto.EventJobCancel, workerproto.EventJobCommand:
		var jc workerproto.JobControl
		if err := json.Unmarshal(ev.Data, &jc); err != nil || jc.JobID == "" {
			a.log.Warn("malformed job control ignored", "event", ev.Name, "err", err)
			return
		}
		c := plugins.CommandCancel
		if ev.Name == workerproto.EventJobCommand {
			var ok bool
			if c, ok = workerproto.ParseCommand(jc.Command); !ok {
				a.log.Warn("unknown job command ignored", "job_id", jc.JobID, "command", jc.Command)
				return
			}
		}
		if err := a.jm.Command(ctx, jc.JobID, c); err != nil {
			a.log.Warn("job command", "job_id", jc.JobID, "command", c.String(), "err", err)
		} else {
			a.log.Info("job command sent", "job_id", jc.JobID, "command", c.String())
		}
	case workerproto.EventDrain:
		a.mu.Lock()
		a.draining = true
		a.mu.Unlock()
		a.log.Info("draining: finishing the current job, taking no more")
		a.checkExit()
	case workerproto.EventShutdown:
		var n workerproto.Notice
		_ = json.Unmarshal(ev.Data, &n)
		a.finish(fmt.Sprintf("the orchestrator sent shutdown (%s); jobs on this machine were not cancelled", n.Data["reason"]))
	case workerproto.EventPing, "message":
	default:
		a.log.Debug("unknown dispatch event ignored", "event", ev.Name)
	}
}

// submit starts a dispatched job under the orchestrator's id.
func (a *Agent) submit(ctx context.Context, js *workerproto.JobSubmit) {
	if _, err := a.jm.Get(js.JobID); err == nil {
		// Sent again after a reconnect: it is already here.
		a.wakeJob(js.JobID)
		return
	}
	a.mu.Lock()
	why := submitRefusal(js.JobID, a.cfg.Job, a.draining, !a.cfg.Persistent || a.cfg.Job != "", a.accepted)
	if why == "" {
		a.accepted++
	}
	a.mu.Unlock()
	if why != "" {
		a.log.Warn("job_submit refused", "job_id", js.JobID, "reason", why)
		return
	}
	cfg, err := a.jobConfig(js)
	if err == nil {
		_, err = a.jm.Submit(ctx, jobs.SubmitRequest{ID: js.JobID, Target: jobs.TargetLocal, Owner: "orchestrator",
			EnvName: js.ConfigName, Config: cfg, GPU: gpu.Request{NumProcesses: js.NumGPUs, AnyGPU: js.AnyGPU}, SeqBase: js.LastSeq})
	}
	if err != nil {
		a.log.Warn("job could not start here", "job_id", js.JobID, "err", err)
		a.refuse(ctx, js.JobID, err)
		return
	}
	a.log.Info("job accepted", "job_id", js.JobID, "gpus", js.NumGPUs)
	a.wakeJob(js.JobID)
}

// refuse reports a dispatched job failed without running it (it cannot run on this
// machine), retrying briefly.
func (a *Agent) refuse(ctx context.Context, id string, cause error) {
	st := workerproto.JobStatus{Status: jobs.StatusFailed, Error: "the worker could not start the job: " + cause.Error()}
	for attempt := 1; attempt <= 5; attempt++ {
		rctx, cancel := context.WithTimeout(ctx, requestTimeout)
		err := a.cl.post(rctx, jobPath(id, "status"), st, nil)
		cancel()
		if err == nil || errors.Is(err, ErrNotAssigned) || errors.Is(err, ErrUnauthorized) {
			break
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff(attempt, a.cfg.RetryBase, a.cfg.RetryMax)):
		}
	}
	a.checkExit()
}

// jobConfig is the config the local trainer gets: the dispatched one, with a dataloader
// sent beside it written to the job's own file and named by --data_backend_config.
func (a *Agent) jobConfig(js *workerproto.JobSubmit) (json.RawMessage, error) {
	if len(js.Config) == 0 {
		return nil, errors.New("job_submit carries no config")
	}
	dl := js.Dataloader
	if len(dl) == 0 || string(dl) == "null" {
		return js.Config, nil
	}
	var cfg map[string]any
	if err := json.Unmarshal(js.Config, &cfg); err != nil {
		return nil, fmt.Errorf("job config: %w", err)
	}
	dir := filepath.Join(a.cfg.StateDir, "dataloaders")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, filepath.Base(js.JobID)+".json")
	if err := os.WriteFile(path, dl, 0o600); err != nil {
		return nil, fmt.Errorf("write the job's dataloader: %w", err)
	}
	cfg["--data_backend_config"] = path
	return json.Marshal(cfg)
}

// jobPath is the URL path of one of a job's worker routes.
func jobPath(id, what string) string {
	return "/api/workers/job/" + url.PathEscape(id) + "/" + what
}

// checkExit ends the agent when its work is done (shouldExit).
func (a *Agent) checkExit() {
	open := 0
	if all, err := a.jm.List(); err == nil {
		for _, j := range all {
			if !jobs.Terminal(j.Status) {
				open++
			}
		}
	}
	a.mu.Lock()
	for _, s := range a.syncs {
		if !s.isDone() {
			open++
		}
	}
	draining, accepted := a.draining, a.accepted
	ephemeral := !a.cfg.Persistent || a.cfg.Job != ""
	a.mu.Unlock()
	if shouldExit(open, accepted, draining, ephemeral) {
		if draining {
			a.finish("drained: no job left to run")
		} else {
			a.finish("the ephemeral worker's job ended and its final status was accepted")
		}
	}
}

// reportedKey is the settings key that records a job's final status as accepted.
func reportedKey(id string) string { return "worker_reported/" + id }

// reported says whether the orchestrator accepted the job's final status (or abandoned
// it): nothing more is sent for it.
func (a *Agent) reported(id string) bool {
	var v bool
	ok, err := a.db.Settings().Get(reportedKey(id), &v)
	return ok && err == nil && v
}

// markReported records that nothing more is sent for the job.
func (a *Agent) markReported(id string) {
	if err := a.db.Settings().Put(reportedKey(id), true); err != nil {
		a.log.Error("record a reported job", "job_id", id, "err", err)
	}
}

// sink is the job manager's event sink: events go to the agent's store with their seq
// (the uploads read them from there), checkpoints to the hook scripts, and status
// changes wake the job's sync.
type sink struct{ a *Agent }

var _ jobs.EventSink = sink{}

// Append implements jobs.EventSink.
func (s sink) Append(jobID string, evs []plugins.Event) error {
	stored := make([]store.StoredEvent, 0, len(evs))
	for _, e := range evs {
		raw, err := json.Marshal(e)
		if err != nil {
			return err
		}
		stored = append(stored, store.StoredEvent{JobID: jobID, Seq: e.Seq, Event: raw})
	}
	if _, err := s.a.db.Events().Append(jobID, stored); err != nil {
		return err
	}
	if cfg := s.a.jobHooksConfig(jobID); cfg != nil {
		s.a.hooks.HandleEvents(jobID, cfg, evs)
	}
	return nil
}

// JobStatus implements jobs.EventSink.
func (s sink) JobStatus(j *store.Job) {
	if jobs.Terminal(j.Status) {
		s.a.mu.Lock()
		delete(s.a.configs, j.ID)
		s.a.mu.Unlock()
	}
	s.a.wakeJob(j.ID)
	if jobs.Terminal(j.Status) {
		// An abandoned job has no sync left to notice its end.
		s.a.checkExit()
	}
}

// jobHooksConfig is a job's resolved configuration, decoded once, for its hooks.
func (a *Agent) jobHooksConfig(id string) map[string]any {
	a.mu.Lock()
	defer a.mu.Unlock()
	if c, ok := a.configs[id]; ok {
		return c
	}
	j, err := a.db.Jobs().Get(id)
	if err != nil {
		return nil
	}
	var cfg map[string]any
	if json.Unmarshal(j.Config, &cfg) != nil {
		return nil
	}
	a.configs[id] = cfg
	return cfg
}
