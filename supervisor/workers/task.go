package workers

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"simpletuner/plugins"
	"simpletuner/plugins/workerproto"
	"simpletuner/store"
	"simpletuner/supervisor/jobs"
)

// handleVersion is the version of the worker executor's handle data.
const handleVersion = 1

// handleData is what a worker task's handle holds: the worker running the job.
type handleData struct {
	WorkerID string `json:"worker_id"`
}

// task is one job given to a worker. Its fields are guarded by Registry.mu, except
// done and exit: exit is written once, before done is closed, and read after.
type task struct {
	jobID, workerID string
	// bound marks a job of the Slurm executor, run by a worker bound to it.
	bound bool
	// acked is set once the worker reported the job (a status or events): it has it.
	acked bool
	// since is when the task began waiting on its worker (launch, bind, or the daemon's
	// restart); loss is counted from it or the last heartbeat, whichever is later.
	since time.Time
	// submit is the job_submit event, kept to send again to a worker that never got it
	// (nil for a recovered or bound task until it is built).
	submit *workerproto.JobSubmit
	rep    jobs.Reporter
	handle jobs.Handle
	done   chan struct{}
	exit   jobs.Exit
}

func newTask(jobID, workerID string, bound bool, since time.Time, rep jobs.Reporter) *task {
	return &task{jobID: jobID, workerID: workerID, bound: bound, since: since, rep: rep, done: make(chan struct{})}
}

// ended reports whether the task has its exit. Callers hold Registry.mu.
func (t *task) ended() bool {
	select {
	case <-t.done:
		return true
	default:
		return false
	}
}

// jobSubmit builds the job_submit event of a job.
func jobSubmit(j *store.Job) *workerproto.JobSubmit {
	return &workerproto.JobSubmit{Type: workerproto.EventJobSubmit, JobID: j.ID, Config: j.Config,
		ConfigName: j.EnvName, NumGPUs: j.NumGPUs, AnyGPU: j.AnyGPU, LastSeq: j.LastSeq}
}

// finishLocked ends a task with exit, frees its worker (idle again; an ephemeral one is
// told to shut down) and forgets the task (a bound one only at Unbind). It reports whether the queue should be kicked
// (a worker freed up). Ending an ended task does nothing. Callers hold r.mu.
func (r *Registry) finishLocked(t *task, exit jobs.Exit) bool {
	if t.ended() {
		return false
	}
	t.exit = exit
	close(t.done)
	if cur := r.tasks[t.jobID]; cur == t && !t.bound {
		// A bound job's task stays until Unbind, so Wait answers however late it asks.
		delete(r.tasks, t.jobID)
	}
	if l := r.links[t.workerID]; l != nil {
		l.dropSubmit(t.jobID)
	}
	w := r.workers[t.workerID]
	if w == nil {
		return false
	}
	if w.CurrentJobID == t.jobID {
		w.CurrentJobID = ""
	}
	if w.Status == workerproto.StatusBusy {
		w.Status = workerproto.StatusIdle
	}
	if w.Type == TypeEphemeral && w.Status != workerproto.StatusOffline {
		r.pushLocked(w.ID, workerproto.EventShutdown, workerproto.Notice{Type: workerproto.EventShutdown,
			Data: map[string]string{"reason": "job_finished"}}, "")
	}
	r.logSave(w)
	return !t.bound
}

// finish ends a task and kicks the queue when a worker freed up.
func (r *Registry) finish(t *task, exit jobs.Exit) {
	r.mu.Lock()
	k := r.finishLocked(t, exit)
	r.mu.Unlock()
	if k {
		r.kick()
	}
}

// command sends a stop, cancel, checkpoint or validation to the worker running a task.
func (r *Registry) command(t *task, c plugins.Command) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if t.ended() {
		return jobs.ErrEnded
	}
	name := t.workerID
	if w := r.workers[t.workerID]; w != nil {
		name = w.Name
	}
	if !r.connectedLocked(t.workerID) {
		return fmt.Errorf("worker %s is not connected: %w", name, jobs.ErrUnreachable)
	}
	typ := workerproto.EventJobCommand
	if c == plugins.CommandCancel {
		typ = workerproto.EventJobCancel
	}
	r.pushLocked(t.workerID, typ, workerproto.JobControl{Type: typ, JobID: t.jobID, Command: c.String()}, "")
	return nil
}

// wait blocks until a task ends or ctx does.
func wait(ctx context.Context, t *task) (jobs.Exit, error) {
	select {
	case <-t.done:
		return t.exit, nil
	case <-ctx.Done():
		return jobs.Exit{}, ctx.Err()
	}
}

// workerTask is a task as the job manager sees it (jobs.Task).
type workerTask struct {
	r *Registry
	t *task
}

// Handle is the worker executor's handle of the job: the worker running it.
func (wt workerTask) Handle() jobs.Handle { return wt.t.handle }

// Command relays c to the worker over its dispatch stream.
func (wt workerTask) Command(_ context.Context, c plugins.Command) error {
	return wt.r.command(wt.t, c)
}

// Wait returns the terminal status the worker reported, or a lost exit when the worker
// went silent.
func (wt workerTask) Wait(ctx context.Context) (jobs.Exit, error) { return wait(ctx, wt.t) }

// Executor returns the worker executor (kind "worker") for the job manager.
func (r *Registry) Executor() jobs.Executor { return executor{r} }

// executor places queued jobs on idle workers whose labels match.
type executor struct{ r *Registry }

// Kind is jobs.KindWorker.
func (executor) Kind() string { return jobs.KindWorker }

// Admit accepts j when some registered worker could run it (labels match, enough GPUs).
func (e executor) Admit(_ context.Context, j *store.Job) error {
	e.r.mu.Lock()
	defer e.r.mu.Unlock()
	for _, w := range e.r.workers {
		if canRun(w, j) {
			return nil
		}
	}
	if len(e.r.workers) == 0 {
		return fmt.Errorf("%w: target=worker: no worker is registered on this server (register one with POST /api/admin/workers; see them with GET /api/admin/workers)", jobs.ErrNoExecutor)
	}
	return fmt.Errorf("%w: target=worker: %s; see GET /api/admin/workers", jobs.ErrNoExecutor, noMatch(j))
}

// Place reserves an idle, connected, matching worker for j, or says why j waits.
func (e executor) Place(_ context.Context, j *store.Job) (jobs.Placement, error) {
	r := e.r
	r.mu.Lock()
	defer r.mu.Unlock()
	ws := make([]*store.Worker, 0, len(r.workers))
	matchable := false
	for _, w := range r.workers {
		ws = append(ws, w)
		matchable = matchable || canRun(w, j)
	}
	id, ok := choosePlace(ws, r.connectedLocked, func(id string) bool { _, held := r.reserved[id]; return held }, j)
	if !ok {
		reason := "waiting for an idle worker matching worker_labels " + selectorText(j.WorkerLabels)
		if !matchable {
			reason = noMatch(j)
		}
		return jobs.Placement{Outcome: jobs.PlaceWait, Reason: reason}, nil
	}
	r.reserved[id] = j.ID
	return jobs.Placement{Outcome: jobs.PlaceStart, Where: id}, nil
}

// Release frees the worker a Start placement reserved.
func (e executor) Release(j *store.Job, p jobs.Placement) {
	e.r.mu.Lock()
	defer e.r.mu.Unlock()
	if e.r.reserved[p.Where] == j.ID {
		delete(e.r.reserved, p.Where)
	}
}

// Launch gives j to the worker placed for it: the worker is marked busy, the handle
// saved (so a restarted daemon finds the job again), then job_submit is pushed.
func (e executor) Launch(_ context.Context, j *store.Job, p jobs.Placement, rep jobs.Reporter) (jobs.Task, error) {
	r := e.r
	h, err := jobs.NewHandle(jobs.KindWorker, handleVersion, handleData{WorkerID: p.Where})
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	if r.reserved[p.Where] == j.ID {
		delete(r.reserved, p.Where)
	}
	w := r.workers[p.Where]
	if w == nil || w.BoundJob != "" || w.Status != workerproto.StatusIdle {
		r.mu.Unlock()
		return nil, fmt.Errorf("worker %s is no longer free to run the job", p.Where)
	}
	name := w.Name
	w.Status = workerproto.StatusBusy
	w.CurrentJobID = j.ID
	t := newTask(j.ID, w.ID, false, r.now(), rep)
	t.handle = h
	t.submit = jobSubmit(j)
	r.tasks[j.ID] = t
	err = r.saveLocked(w)
	r.mu.Unlock()
	if err == nil {
		err = rep.SaveHandle(j.ID, h)
	}
	if err != nil {
		r.finish(t, jobs.Exit{State: jobs.StatusFailed, Error: err.Error()})
		return nil, err
	}
	rep.Note(j.ID, "on worker "+name)
	r.mu.Lock()
	if !t.ended() {
		r.pushLocked(t.workerID, workerproto.EventJobSubmit, t.submit, j.ID)
	}
	r.mu.Unlock()
	r.log.Info("job dispatched to worker", "job_id", j.ID, "worker_id", t.workerID, "worker", name)
	return workerTask{r, t}, nil
}

// Recover takes back a job a worker ran before the daemon restarted. The worker is
// offline until it registers again; if it does not within the heartbeat timeout, the
// job is lost (and requeued by the manager).
func (e executor) Recover(_ context.Context, j *store.Job, rep jobs.Reporter) (jobs.Task, error) {
	r := e.r
	if j.Handle == nil {
		return nil, fmt.Errorf("job %s has no worker handle: %w", j.ID, jobs.ErrRequeue)
	}
	var hd handleData
	if err := json.Unmarshal(j.Handle.Data, &hd); err != nil || j.Handle.Version != handleVersion {
		return nil, fmt.Errorf("job %s: unreadable worker handle (version %d): %v", j.ID, j.Handle.Version, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	t := newTask(j.ID, hd.WorkerID, false, r.now(), rep)
	t.handle = *j.Handle
	t.submit = jobSubmit(j)
	// A job the manager marked running was acknowledged by its worker; one still
	// starting may never have reached it and is sent again when the worker returns.
	t.acked = j.Status == jobs.StatusRunning
	if prev := r.tasks[j.ID]; prev != nil && !prev.ended() {
		return workerTask{r, prev}, nil
	}
	r.tasks[j.ID] = t
	w := r.workers[hd.WorkerID]
	if w == nil {
		t.exit = jobs.Exit{Retry: true, Lost: true, Error: fmt.Sprintf("worker %s is no longer registered", hd.WorkerID)}
		close(t.done)
		delete(r.tasks, j.ID)
		return workerTask{r, t}, nil
	}
	w.CurrentJobID = j.ID
	r.logSave(w)
	return workerTask{r, t}, nil
}
