package slurm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"simpletuner/plugins"
	"simpletuner/store"
	"simpletuner/supervisor/jobs"
)

// Workers is the daemon's worker registry as the Slurm executor uses it: a Slurm job's
// worker registers with a token bound to one training job, and control and the final
// status travel over the worker protocol. *workers.Registry implements it.
type Workers interface {
	// BindJob mints a one-time token for an ephemeral worker that may run only jobID.
	BindJob(jobID string) (token string, err error)
	// Command sends c to the worker running jobID.
	Command(ctx context.Context, jobID string, c plugins.Command) error
	// Wait blocks until the bound worker reports jobID's terminal status (or is lost).
	Wait(ctx context.Context, jobID string) (jobs.Exit, error)
	// Unbind invalidates jobID's token and forgets its worker.
	Unbind(jobID string)
}

// Config is the Slurm executor's settings (the daemon's --slurm-* flags).
type Config struct {
	// Partition and Account are passed to sbatch (empty: the cluster's defaults).
	Partition string
	Account   string
	// SbatchArgs are extra sbatch arguments, as given (e.g. "--time=24:00:00").
	SbatchArgs []string
	// WorkerURL is the daemon's URL as a Slurm job's worker reaches it.
	WorkerURL string
	// WorkerCommand is the simpletuner binary on the cluster's nodes (default: this
	// binary's path, right when the nodes share it).
	WorkerCommand string
	// Env are KEY=VALUE pairs exported into every Slurm job (the job starts from an
	// empty environment: --export=NONE).
	Env []string
	// Poll is how often squeue is asked (default 5 s); one squeue covers every job.
	Poll time.Duration
	// JobsDir is the daemon's job directories; a job's Slurm output goes to
	// <JobsDir>/<job id>/slurm-<slurm id>.out.
	JobsDir string
	// CancelGrace is how long a cancelled job's worker gets to end the trainer before
	// scancel (default 30 s).
	CancelGrace time.Duration
	// EndGrace is how long the worker's final status is waited for once Slurm says the
	// job ended (default 10 s).
	EndGrace time.Duration
}

// Configured reports whether a Slurm cluster is set up: the rule is that a partition or
// a worker URL is set (a cluster with a default partition needs only the URL).
func (c Config) Configured() bool { return c.Partition != "" || c.WorkerURL != "" }

// envKey is what a variable name passed with --slurm-env may be.
var envKey = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Validate checks a configured cluster's settings; an unconfigured one is valid (the
// executor then refuses target=slurm).
func (c Config) Validate() error {
	if !c.Configured() {
		if len(c.SbatchArgs)+len(c.Env) > 0 || c.Account != "" {
			return errors.New("--slurm-account, --slurm-sbatch-arg and --slurm-env need --slurm-worker-url (and usually --slurm-partition)")
		}
		return nil
	}
	if c.WorkerURL == "" {
		return errors.New("--slurm-partition needs --slurm-worker-url: the URL a Slurm job's worker uses to reach this server, e.g. http://login-node:8001")
	}
	if !strings.HasPrefix(c.WorkerURL, "http://") && !strings.HasPrefix(c.WorkerURL, "https://") {
		return fmt.Errorf("--slurm-worker-url %q: want an http:// or https:// URL", c.WorkerURL)
	}
	for _, kv := range c.Env {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || !envKey.MatchString(k) {
			return fmt.Errorf("--slurm-env %q: want KEY=VALUE with KEY made of letters, digits and _", kv)
		}
		if k == "SIMPLETUNER_WORKER_TOKEN" {
			return errors.New("--slurm-env may not set SIMPLETUNER_WORKER_TOKEN: each Slurm job gets its own one-time token")
		}
	}
	if c.Poll < 0 || c.CancelGrace < 0 || c.EndGrace < 0 {
		return errors.New("--slurm-poll and the Slurm grace periods must not be negative")
	}
	return nil
}

// withDefaults fills the zero durations.
func (c Config) withDefaults() Config {
	if c.Poll == 0 {
		c.Poll = 5 * time.Second
	}
	if c.CancelGrace == 0 {
		c.CancelGrace = 30 * time.Second
	}
	if c.EndGrace == 0 {
		c.EndGrace = 10 * time.Second
	}
	if c.WorkerCommand == "" {
		if exe, err := os.Executable(); err == nil {
			c.WorkerCommand = exe
		}
	}
	return c
}

// handleVersion is the version of handleData.
const handleVersion = 1

// handleData is a Slurm task's Handle: what Recover needs after a daemon restart.
type handleData struct {
	SlurmJobID string `json:"slurm_job_id"`
	Output     string `json:"output,omitempty"`
}

// Executor is the Slurm executor (jobs.KindSlurm).
type Executor struct {
	cfg     Config
	drv     *Driver
	workers Workers
	log     *slog.Logger

	ctx    context.Context // ends with Close: the poller and grace timers stop
	cancel context.CancelFunc
	done   chan struct{} // closed when the poller has returned
	kick   chan struct{} // asks the poller for a poll now (buffered 1)

	mu    sync.Mutex       // guards tasks
	tasks map[string]*task // by Slurm job id, while followed
}

var _ jobs.Executor = (*Executor)(nil)

// New returns the Slurm executor and starts its poller; Close stops it. With cfg not
// Configured, it refuses every job in Admit.
func New(cfg Config, w Workers, r Runner, log *slog.Logger) (*Executor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &Executor{cfg: cfg.withDefaults(), drv: NewDriver(r), workers: w, log: log, ctx: ctx, cancel: cancel,
		done: make(chan struct{}), kick: make(chan struct{}, 1), tasks: map[string]*task{}}
	go e.poll()
	return e, nil
}

// Close stops following Slurm jobs (they keep running; Recover takes them back). It may
// be called more than once.
func (e *Executor) Close() {
	e.cancel()
	<-e.done
}

// Kind implements jobs.Executor.
func (e *Executor) Kind() string { return jobs.KindSlurm }

// Admit implements jobs.Executor: any job may go to a configured cluster (Slurm itself
// refuses what it cannot ever run, and the job then fails with sbatch's message).
func (e *Executor) Admit(ctx context.Context, j *store.Job) error {
	if !e.cfg.Configured() {
		return fmt.Errorf("%w: target=slurm: no Slurm cluster is configured on this server (start it with --slurm-partition PARTITION --slurm-worker-url URL)", jobs.ErrNoExecutor)
	}
	return nil
}

// Place implements jobs.Executor: Slurm queues the job itself.
func (e *Executor) Place(ctx context.Context, j *store.Job) (jobs.Placement, error) {
	return jobs.Placement{Outcome: jobs.PlaceStart}, nil
}

// Release implements jobs.Executor; a Slurm placement holds nothing.
func (e *Executor) Release(j *store.Job, p jobs.Placement) {}

// jobName is the Slurm job name of a training job; Recover finds a job submitted just
// before a crash by it.
func jobName(jobID string) string { return "simpletuner-" + jobID }

// Launch implements jobs.Executor: bind a one-time worker token to the job, sbatch a
// script that runs the worker, and store the Slurm job id before anything else can fail.
func (e *Executor) Launch(ctx context.Context, j *store.Job, p jobs.Placement, r jobs.Reporter) (jobs.Task, error) {
	if !e.cfg.Configured() {
		return nil, e.Admit(ctx, j)
	}
	dir := filepath.Join(e.cfg.JobsDir, j.ID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create the job directory: %w", err)
	}
	token, err := e.workers.BindJob(j.ID)
	if err != nil {
		return nil, fmt.Errorf("bind a worker token to job %s: %w", j.ID, err)
	}
	script := workerScript(workerSpec{Command: e.cfg.WorkerCommand, URL: e.cfg.WorkerURL, JobID: j.ID, Token: token, Env: e.cfg.Env})
	out := filepath.Join(dir, "slurm-%j.out")
	id, err := e.drv.Submit(ctx, SubmitSpec{JobName: jobName(j.ID), Partition: e.cfg.Partition, Account: e.cfg.Account,
		GPUs: j.NumGPUs, Output: out, ExtraArgs: e.cfg.SbatchArgs, Script: script})
	if err != nil {
		e.workers.Unbind(j.ID)
		return nil, fmt.Errorf("submit to Slurm: %w", err)
	}
	out = strings.ReplaceAll(out, "%j", id)
	h, err := jobs.NewHandle(jobs.KindSlurm, handleVersion, handleData{SlurmJobID: id, Output: out})
	if err == nil {
		err = r.SaveHandle(j.ID, h)
	}
	if err != nil {
		// Without the handle a restarted daemon could not follow the Slurm job: take it back.
		if cerr := e.drv.Cancel(e.ctx, id); cerr != nil {
			e.log.Warn("scancel after a failed launch", "job_id", j.ID, "slurm_job_id", id, "err", cerr)
		}
		e.workers.Unbind(j.ID)
		return nil, fmt.Errorf("store the Slurm job id %s: %w", id, err)
	}
	e.log.Info("submitted to Slurm", "job_id", j.ID, "slurm_job_id", id, "output", out)
	return e.follow(j.ID, id, out, h, r), nil
}

// Recover implements jobs.Executor: resume following the Slurm job named in the handle.
// A job without a handle was interrupted between sbatch and storing the id: a Slurm job
// of its name is cancelled (its token died with the daemon's binding) and the job requeued.
func (e *Executor) Recover(ctx context.Context, j *store.Job, r jobs.Reporter) (jobs.Task, error) {
	if j.Handle == nil {
		if e.cfg.Configured() {
			ids, err := e.drv.FindByName(ctx, jobName(j.ID))
			if err != nil {
				return nil, fmt.Errorf("look for an interrupted Slurm submission of job %s: %w", j.ID, err)
			}
			for _, id := range ids {
				if err := e.drv.Cancel(ctx, id); err != nil {
					return nil, fmt.Errorf("cancel the interrupted Slurm submission %s of job %s: %w", id, j.ID, err)
				}
			}
		}
		e.workers.Unbind(j.ID)
		return nil, jobs.ErrRequeue
	}
	if j.Handle.Kind != jobs.KindSlurm || j.Handle.Version != handleVersion {
		return nil, fmt.Errorf("job %s has a %s handle version %d; the Slurm executor reads slurm version %d", j.ID, j.Handle.Kind, j.Handle.Version, handleVersion)
	}
	var d handleData
	if err := json.Unmarshal(j.Handle.Data, &d); err != nil || d.SlurmJobID == "" {
		return nil, fmt.Errorf("job %s: unreadable Slurm handle %s: %v", j.ID, j.Handle.Data, err)
	}
	if !e.cfg.Configured() {
		return nil, fmt.Errorf("job %s runs as Slurm job %s, but no Slurm cluster is configured on this server any more (start it with --slurm-partition and --slurm-worker-url)", j.ID, d.SlurmJobID)
	}
	return e.follow(j.ID, d.SlurmJobID, d.Output, *j.Handle, r), nil
}

// follow starts following a Slurm job and returns its task.
func (e *Executor) follow(jobID, slurmID, out string, h jobs.Handle, r jobs.Reporter) *task {
	t := &task{e: e, jobID: jobID, slurmID: slurmID, output: out, handle: h, rep: r,
		ended: make(chan struct{}), finished: make(chan struct{})}
	e.mu.Lock()
	e.tasks[slurmID] = t
	e.mu.Unlock()
	e.pollNow()
	return t
}

// forget stops following a Slurm job.
func (e *Executor) forget(slurmID string) {
	e.mu.Lock()
	delete(e.tasks, slurmID)
	e.mu.Unlock()
}

// pollNow asks the poller for a poll without waiting for its tick.
func (e *Executor) pollNow() {
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

// poll asks Slurm about every followed job, all in one squeue, every cfg.Poll.
func (e *Executor) poll() {
	defer close(e.done)
	tick := time.NewTicker(e.cfg.Poll)
	defer tick.Stop()
	failing := false
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-tick.C:
		case <-e.kick:
		}
		e.mu.Lock()
		var ids []string
		var followed []*task
		for id, t := range e.tasks {
			if !t.hasEnded() {
				ids = append(ids, id)
				followed = append(followed, t)
			}
		}
		e.mu.Unlock()
		if len(ids) == 0 {
			continue
		}
		qctx, cancel := context.WithTimeout(e.ctx, time.Minute)
		infos, err := e.drv.Query(qctx, ids)
		cancel()
		if err != nil {
			if e.ctx.Err() != nil {
				return
			}
			if !failing { // once per outage, not every poll
				e.log.Warn("cannot ask Slurm about its jobs; retrying", "err", err)
			}
			failing = true
			continue
		}
		if failing {
			e.log.Info("Slurm answers again")
			failing = false
		}
		for _, t := range followed {
			info, ok := infos[t.slurmID]
			t.observe(info, ok)
		}
	}
}

// unknownPolls is how many polls in a row may find no trace of a followed job before it
// counts as ended (squeue and sacct both forgot it, or it never existed).
const unknownPolls = 3

// task is one Slurm job as the executor follows it.
type task struct {
	e       *Executor
	jobID   string
	slurmID string
	output  string
	handle  jobs.Handle
	rep     jobs.Reporter

	mu        sync.Mutex // guards the fields below
	info      JobInfo    // Slurm's latest word
	seen      bool       // info has been set at least once
	unknown   int        // polls in a row without a trace of the job
	note      string     // the note last reported
	cancelled bool       // a cancel was asked for
	ended     chan struct{}
	endedOnce sync.Once
	finished  chan struct{} // closed once Wait has returned the job's end
	finOnce   sync.Once
}

// Handle implements jobs.Task.
func (t *task) Handle() jobs.Handle { return t.handle }

// hasEnded reports whether Slurm said the job ended.
func (t *task) hasEnded() bool {
	select {
	case <-t.ended:
		return true
	default:
		return false
	}
}

// isFinished reports whether Wait has returned the job's end.
func (t *task) isFinished() bool {
	select {
	case <-t.finished:
		return true
	default:
		return false
	}
}

// observe takes one poll's answer about the job.
func (t *task) observe(info JobInfo, found bool) {
	t.mu.Lock()
	if !found {
		t.unknown++
		if t.unknown < unknownPolls {
			t.mu.Unlock()
			return
		}
		info = JobInfo{ID: t.slurmID, State: "UNKNOWN"}
	} else {
		t.unknown = 0
	}
	t.info, t.seen = info, true
	note := noteFor(info)
	changed := note != t.note
	t.note = note
	t.mu.Unlock()
	if changed && !found {
		t.e.log.Warn("Slurm no longer knows a followed job", "job_id", t.jobID, "slurm_job_id", t.slurmID)
	}
	if changed {
		t.rep.Note(t.jobID, note)
	}
	if !found || info.Ended() {
		t.endedOnce.Do(func() { close(t.ended) })
	}
}

// noteFor is the job's note for Slurm's word about it: "Slurm: PENDING (Resources)",
// "Slurm: RUNNING on n1", "Slurm: FAILED (NonZeroExitCode)".
func noteFor(info JobInfo) string {
	s := "Slurm: " + info.State
	if info.Reason != "" {
		s += " (" + info.Reason + ")"
	}
	if info.State == "RUNNING" && info.Nodes != "" {
		s += " on " + info.Nodes
	}
	return s
}

// pending reports whether the job has not started on a node (no worker runs yet).
func (t *task) pending() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return !t.seen || t.info.State == "PENDING" || t.info.State == "CONFIGURING"
}

// Command implements jobs.Task. Stop, checkpoint and validation go to the job's worker.
// Cancel goes to the worker too, with scancel after CancelGrace if the job has not ended
// by then; a job that is still PENDING (no worker yet), or whose worker cannot be told,
// is scancelled at once.
func (t *task) Command(ctx context.Context, c plugins.Command) error {
	if t.hasEnded() || t.isFinished() {
		return jobs.ErrEnded
	}
	if c != plugins.CommandCancel {
		if t.pending() {
			return fmt.Errorf("%w: Slurm job %s has not started yet (%s)", jobs.ErrUnreachable, t.slurmID, t.currentNote())
		}
		return t.e.workers.Command(ctx, t.jobID, c)
	}
	t.mu.Lock()
	t.cancelled = true
	t.mu.Unlock()
	if !t.pending() {
		err := t.e.workers.Command(ctx, t.jobID, c)
		if err == nil {
			go t.scancelAfterGrace()
			return nil
		}
		t.e.log.Info("the Slurm job's worker cannot be told to cancel; scancel at once", "job_id", t.jobID, "slurm_job_id", t.slurmID, "err", err)
	}
	if err := t.e.drv.Cancel(ctx, t.slurmID); err != nil {
		return fmt.Errorf("cancel Slurm job %s: %w", t.slurmID, err)
	}
	t.e.pollNow()
	return nil
}

// currentNote is the job's last note.
func (t *task) currentNote() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.note == "" {
		return "Slurm: submitted"
	}
	return t.note
}

// scancelAfterGrace cancels the Slurm job if it has not ended CancelGrace after its
// worker was told to cancel.
func (t *task) scancelAfterGrace() {
	timer := time.NewTimer(t.e.cfg.CancelGrace)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-t.ended:
		return
	case <-t.finished:
		return
	case <-t.e.ctx.Done():
		return
	}
	t.e.log.Info("a cancelled Slurm job did not end within the grace; scancel", "job_id", t.jobID, "slurm_job_id", t.slurmID)
	if err := t.e.drv.Cancel(t.e.ctx, t.slurmID); err != nil {
		t.e.log.Warn("scancel", "job_id", t.jobID, "slurm_job_id", t.slurmID, "err", err)
	}
	t.e.pollNow()
}

// Wait implements jobs.Task: the worker's final status, or, when Slurm says the job
// ended and none arrives within EndGrace, an end made from Slurm's state (endExit).
func (t *task) Wait(ctx context.Context) (jobs.Exit, error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		x   jobs.Exit
		err error
	}
	res := make(chan result, 1)
	go func() {
		x, err := t.e.workers.Wait(wctx, t.jobID)
		res <- result{x, err}
	}()
	ended := t.ended
	var grace <-chan time.Time
	workerGone := false
	for {
		select {
		case <-ctx.Done():
			return jobs.Exit{}, ctx.Err()
		case <-t.e.ctx.Done():
			return jobs.Exit{}, t.e.ctx.Err()
		case r := <-res:
			if r.err == nil {
				if r.x.Lost && !t.hasEnded() {
					// The worker went silent but its Slurm job may still hold the
					// allocation: end it before the job is requeued elsewhere.
					if err := t.e.drv.Cancel(ctx, t.slurmID); err != nil {
						t.e.log.Warn("scancel the Slurm job of a lost worker", "job_id", t.jobID, "slurm_job_id", t.slurmID, "err", err)
					}
				}
				t.finish()
				return r.x, nil
			}
			if ctx.Err() != nil {
				return jobs.Exit{}, ctx.Err()
			}
			// No final status will come through the registry: Slurm's word decides.
			t.e.log.Warn("waiting for the Slurm job's worker failed; following Slurm alone", "job_id", t.jobID, "err", r.err)
			res, workerGone = nil, true
			if t.hasEnded() {
				grace = time.After(0)
			}
		case <-ended:
			ended = nil
			wait := t.e.cfg.EndGrace
			if workerGone {
				wait = 0
			}
			grace = time.After(wait)
		case <-grace:
			t.mu.Lock()
			info, cancelled := t.info, t.cancelled
			t.mu.Unlock()
			x := endExit(info, cancelled, t.output, tailFile(t.output, tailLines, tailBytes))
			t.finish()
			return x, nil
		}
	}
}

// finish ends the task: the worker's token dies and the job is no longer followed.
func (t *task) finish() {
	t.finOnce.Do(func() {
		close(t.finished)
		t.e.workers.Unbind(t.jobID)
		t.e.forget(t.slurmID)
	})
}

// The end of a job's Slurm output that a failure message quotes.
const (
	tailLines = 20
	tailBytes = 4096
)

// endExit is how a job ends when its Slurm job ended without a final status from its
// worker. A cancel that was asked for ends it cancelled; a node that failed, a
// preemption or a failed boot is the place going away, so the job is retried (Lost);
// anything else fails it with Slurm's state, reason and exit code, and the end of the
// job's output when there is one.
func endExit(info JobInfo, cancelled bool, output, tail string) jobs.Exit {
	if cancelled {
		return jobs.Exit{State: plugins.StateCancelled}
	}
	var why []string
	if info.Reason != "" {
		why = append(why, info.Reason)
	}
	if info.ExitCode != "" {
		why = append(why, "exit "+info.ExitCode)
	}
	msg := fmt.Sprintf("Slurm job %s ended %s", info.ID, info.State)
	if info.State == "UNKNOWN" {
		msg = fmt.Sprintf("Slurm job %s is no longer known to Slurm", info.ID)
	}
	if len(why) > 0 {
		msg += " (" + strings.Join(why, ", ") + ")"
	}
	msg += " without a final status"
	if output != "" {
		msg += "; see " + output
	}
	if tail != "" {
		msg += "\n" + tail
	}
	switch info.State {
	case "NODE_FAIL", "PREEMPTED", "BOOT_FAIL":
		return jobs.Exit{Retry: true, Lost: true, Error: msg}
	}
	return jobs.Exit{State: plugins.StateFailed, Error: msg}
}

// tailFile returns the last lines of a file (at most maxLines lines and maxBytes bytes),
// or "" when it cannot be read (the output lies on a node's disk, say).
func tailFile(path string, maxLines int, maxBytes int64) string {
	if path == "" {
		return ""
	}
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(st.Size()-maxBytes, 0)
	b, err := io.ReadAll(io.NewSectionReader(f, off, st.Size()-off))
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if off > 0 && len(lines) > 1 {
		lines = lines[1:] // the first line was cut
	}
	if len(lines) > maxLines {
		lines = lines[len(lines)-maxLines:]
	}
	return strings.TrimSpace(strings.Join(lines, "\n"))
}

// workerSpec is what a Slurm job's script runs.
type workerSpec struct {
	Command string
	URL     string
	JobID   string
	Token   string
	Env     []string
}

// workerScript is the batch script of a training job: it exports the configured
// variables and the one-time token, then execs the worker (exec, so scancel's signals
// reach the worker itself). The worker keeps its state on the node's temporary disk, in
// a directory named after the training job and the Slurm job: two jobs on one node never
// share one, and a cluster that numbers its jobs from 1 again never hands a new job the
// state of an old one.
func workerScript(s workerSpec) string {
	var b strings.Builder
	b.WriteString("#!/bin/sh\n")
	fmt.Fprintf(&b, "# simpletuner training job %s (a one-time worker token; do not reuse)\n", shellQuote(s.JobID))
	for _, kv := range s.Env {
		k, v, _ := strings.Cut(kv, "=")
		fmt.Fprintf(&b, "%s=%s\nexport %s\n", k, shellQuote(v), k)
	}
	fmt.Fprintf(&b, "SIMPLETUNER_WORKER_TOKEN=%s\nexport SIMPLETUNER_WORKER_TOKEN\n", shellQuote(s.Token))
	fmt.Fprintf(&b, "exec %s worker --orchestrator-url %s --job %s --name %s --state-dir \"${TMPDIR:-/tmp}\"/%s\n",
		shellQuote(s.Command), shellQuote(s.URL), shellQuote(s.JobID), shellQuote("slurm-"+s.JobID), shellQuote("simpletuner-worker-"+s.JobID)+"-\"$SLURM_JOB_ID\"")
	return b.String()
}

// shellQuote quotes s for sh: in single quotes, each quote inside closed, escaped and reopened.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
