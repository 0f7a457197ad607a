package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"simpletuner/plugins"
	"simpletuner/store"
	"simpletuner/supervisor/auth"
	"simpletuner/supervisor/gpu"
	"simpletuner/supervisor/jobs"
	"simpletuner/supervisor/training"
)

// jobBody is a job as the API shows it, with its resolved config and how it ended.
type jobBody struct {
	JobID       string          `json:"job_id"`
	Status      string          `json:"status"`
	Owner       string          `json:"owner"`
	Environment string          `json:"environment"`
	Priority    int             `json:"priority"`
	CreatedAt   string          `json:"created_at"`
	StartedAt   *string         `json:"started_at"`
	FinishedAt  *string         `json:"finished_at"`
	GPUs        []string        `json:"gpus"`
	NumGPUs     int             `json:"num_gpus"`
	PID         int             `json:"pid"`
	Attempts    int             `json:"attempts"`
	LastSeq     uint64          `json:"last_seq"` // the trainer's events stored so far
	Error       string          `json:"error,omitempty"`
	Progress    json.RawMessage `json:"progress"`
	// WorkerLabels is the worker selector the job was submitted with (queue submit).
	WorkerLabels map[string]string `json:"worker_labels,omitempty"`
	// Target, Executor, WorkerID and Note say where the job runs: see placementOf.
	Target   string              `json:"target"`
	Executor *string             `json:"executor"`
	WorkerID *string             `json:"worker_id"`
	Note     *string             `json:"note"`
	Config   map[string]any      `json:"config,omitempty"`
	Exit     *plugins.ExitRecord `json:"exit,omitempty"`
}

func toJobBody(j *store.Job, full bool) jobBody {
	b := jobBody{JobID: j.ID, Status: j.Status, Owner: j.Owner, Environment: j.EnvName, Priority: j.Priority,
		CreatedAt: isoTime(j.CreatedAt), StartedAt: isoPtr(j.StartedAt), FinishedAt: isoPtr(j.FinishedAt),
		GPUs: j.GPUs, NumGPUs: j.NumGPUs, PID: jobs.TrainerPID(j), Attempts: j.Attempts, LastSeq: j.LastSeq, Error: j.Error, Progress: j.Progress,
		WorkerLabels: j.WorkerLabels}
	b.Target, b.Executor, b.WorkerID, b.Note = placementOf(j)
	if b.GPUs == nil {
		b.GPUs = []string{}
	}
	if len(b.Progress) == 0 {
		b.Progress = json.RawMessage("null")
	}
	if full {
		var cfg map[string]any
		if json.Unmarshal(j.Config, &cfg) == nil {
			b.Config = redactConfig(cfg)
		}
		if j.JobDir != "" && jobs.Terminal(j.Status) {
			if rec, err := plugins.ReadExitRecord(j.JobDir); err == nil {
				b.Exit = &rec
			}
		}
	}
	return b
}

// placementOf is where a job runs as the job and queue views show it: its target (auto
// for records older than targets), the kind of executor that launched it (null until one
// did; a record older than executors that started ran locally), the worker running it and
// the executor's note (Slurm's pending reason, a wait reason), null when there is none.
// SimpleTuner's queue entries have no such field (only error_message, for failures), hence
// the name note (docs/architecture.md §16).
func placementOf(j *store.Job) (target string, executor, workerID, note *string) {
	target = j.Target
	if target == "" {
		target = jobs.TargetAuto
	}
	switch {
	case j.Executor != "":
		executor = strp(j.Executor)
	case j.StartedAt != nil:
		executor = strp(jobs.KindLocal)
	}
	if j.WorkerID != "" {
		workerID = strp(j.WorkerID)
	}
	if j.Note != "" {
		note = strp(j.Note)
	}
	return target, executor, workerID, note
}

type jobsBody struct {
	Jobs  []jobBody `json:"jobs"`
	Total int       `json:"total"`
}

type queueListBody struct {
	Entries      []queueEntry `json:"entries"`
	TotalPending int          `json:"total_pending"`
	TotalRunning int          `json:"total_running"`
}

type successJobBody struct {
	Success  bool   `json:"success"`
	JobID    string `json:"job_id"`
	Priority *int   `json:"priority,omitempty"`
}

type jobEventsBody struct {
	JobID   string            `json:"job_id"`
	Events  []json.RawMessage `json:"events"`
	NextSeq uint64            `json:"next_seq"`
	Status  string            `json:"status"`
}

// withJobs answers 503 when the server runs without job supervision (API tests do).
func (s *Server) withJobs(h handlerFunc) handlerFunc {
	return requires(func() bool { return s.cfg.Jobs != nil && s.cfg.Training != nil && s.cfg.GPUs != nil }, "Job supervision is", h)
}

func (s *Server) listJobs(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	all, err := s.cfg.Jobs.List()
	if err != nil {
		return err
	}
	status := r.URL.Query().Get("status")
	out := []jobBody{}
	for i := len(all) - 1; i >= 0; i-- {
		if visible(p, all[i]) && (status == "" || all[i].Status == status) {
			out = append(out, toJobBody(all[i], false))
		}
	}
	writeJSON(w, http.StatusOK, jobsBody{Jobs: out, Total: len(out)})
	return nil
}

func (s *Server) getJob(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	j, err := s.jobFor(p, mux.Vars(r)["job_id"], actView)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toJobBody(j, true))
	return nil
}

// queueEntry is one row of GET /api/queue.
type queueEntry struct {
	JobID         string   `json:"job_id"`
	Status        string   `json:"status"`
	Priority      int      `json:"priority"`
	Owner         string   `json:"owner"`
	Environment   string   `json:"environment"`
	QueuePosition *int     `json:"queue_position"`
	NumGPUs       int      `json:"num_gpus"`
	GPUs          []string `json:"gpus"`
	QueuedAt      string   `json:"queued_at"`
	// WorkerLabels is the worker selector the job was submitted with (queue submit).
	WorkerLabels map[string]string `json:"worker_labels,omitempty"`
	// Target, Executor, WorkerID and Note say where the job runs: see placementOf.
	Target   string  `json:"target"`
	Executor *string `json:"executor"`
	WorkerID *string `json:"worker_id"`
	Note     *string `json:"note"`
}

func (s *Server) listQueue(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	all, err := s.cfg.Jobs.List()
	if err != nil {
		return err
	}
	includeDone, _ := strconv.ParseBool(r.URL.Query().Get("include_completed"))
	entries := []queueEntry{}
	pending, running := 0, 0
	for _, j := range all {
		if !visible(p, j) && !p.Can("queue.view.all") {
			continue
		}
		if jobs.Terminal(j.Status) && !includeDone {
			continue
		}
		e := queueEntry{JobID: j.ID, Status: j.Status, Priority: j.Priority, Owner: j.Owner, Environment: j.EnvName, NumGPUs: j.NumGPUs, GPUs: j.GPUs, QueuedAt: isoTime(j.CreatedAt),
			WorkerLabels: j.WorkerLabels}
		e.Target, e.Executor, e.WorkerID, e.Note = placementOf(j)
		if e.GPUs == nil {
			e.GPUs = []string{}
		}
		switch j.Status {
		case jobs.StatusQueued:
			pending++
			pos := s.cfg.Jobs.QueuePosition(j.ID)
			e.QueuePosition = &pos
		case jobs.StatusRunning, jobs.StatusStarting:
			running++
		}
		entries = append(entries, e)
	}
	writeJSON(w, http.StatusOK, queueListBody{Entries: entries, TotalPending: pending, TotalRunning: running})
	return nil
}

// queueStatsBody is GET /api/queue/stats (SimpleTuner's shape), local part only: no workers.
// The original's scheduler limits (max_concurrent, user_max_concurrent,
// team_max_concurrent, enable_fair_share) carry this server's real ones: its only job
// limit is local_job_max_concurrent, which bounds everyone's jobs together, so one user
// or team may use all of it, and the queue runs by priority then submission order, with
// no fair share (docs/compatibility.md §11).
type queueStatsBody struct {
	ByStatus              map[string]int `json:"by_status"`
	ByUser                map[string]int `json:"by_user"`
	QueueDepth            int            `json:"queue_depth"`
	Running               int            `json:"running"`
	AvgWaitSeconds        *float64       `json:"avg_wait_seconds"`
	MaxConcurrent         int            `json:"max_concurrent"`
	UserMaxConcurrent     int            `json:"user_max_concurrent"`
	TeamMaxConcurrent     int            `json:"team_max_concurrent"`
	EnableFairShare       bool           `json:"enable_fair_share"`
	LocalGPUMaxConcurrent *int           `json:"local_gpu_max_concurrent"`
	LocalJobMaxConcurrent int            `json:"local_job_max_concurrent"`
	Local                 localStats     `json:"local"`
	Workers               *struct{}      `json:"workers"`
}

type localStats struct {
	RunningJobs       int   `json:"running_jobs"`
	PendingJobs       int   `json:"pending_jobs"`
	AllocatedGPUs     []int `json:"allocated_gpus"`
	AvailableGPUs     []int `json:"available_gpus"`
	TotalGPUs         int   `json:"total_gpus"`
	MaxConcurrentGPUs *int  `json:"max_concurrent_gpus"`
	MaxConcurrentJobs int   `json:"max_concurrent_jobs"`
}

func (s *Server) queueStats(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	all, err := s.cfg.Jobs.List()
	if err != nil {
		return err
	}
	st := queueStatsBody{ByStatus: map[string]int{}, ByUser: map[string]int{}}
	var waits []float64
	for _, j := range all {
		st.ByStatus[j.Status]++
		if !jobs.Terminal(j.Status) {
			st.ByUser[strconv.FormatInt(j.OwnerID, 10)]++
		}
		switch j.Status {
		case jobs.StatusQueued:
			st.QueueDepth++
		case jobs.StatusRunning, jobs.StatusStarting:
			st.Running++
		}
		if j.StartedAt != nil {
			waits = append(waits, j.StartedAt.Sub(j.CreatedAt).Seconds())
		}
	}
	if len(waits) > 0 {
		sum := 0.0
		for _, w := range waits {
			sum += w
		}
		avg := sum / float64(len(waits))
		st.AvgWaitSeconds = &avg
	}
	lim := s.cfg.GPUs.Ledger().Limits()
	st.LocalJobMaxConcurrent = max(lim.MaxJobs, 1)
	st.MaxConcurrent, st.UserMaxConcurrent, st.TeamMaxConcurrent = st.LocalJobMaxConcurrent, st.LocalJobMaxConcurrent, st.LocalJobMaxConcurrent
	if lim.MaxGPUs > 0 {
		v := lim.MaxGPUs
		st.LocalGPUMaxConcurrent = &v
	}
	view, err := s.cfg.GPUs.View(r.Context())
	if err != nil {
		return err
	}
	st.Local = localStats{RunningJobs: st.Running, PendingJobs: st.QueueDepth, AllocatedGPUs: nonNil(view.AllocatedGPUs),
		AvailableGPUs: nonNil(view.AvailableGPUs), TotalGPUs: len(view.Devices), MaxConcurrentGPUs: st.LocalGPUMaxConcurrent, MaxConcurrentJobs: st.LocalJobMaxConcurrent}
	if len(view.Devices) == 0 {
		st.Local.cpuSlot(s.cfg.GPUs.Ledger().Running(), st.LocalJobMaxConcurrent)
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}

// cpuSlot reports a host without GPUs as one device, index 0, standing for the CPU
// trainer: allocated while a CPU job runs, available while another may start (running
// below the job limit). The original client predicts "insufficient GPUs" from
// len(available_gpus) < num_processes; here a one-process job does start on the CPU
// when the slot is available, so its prediction comes out true (docs/compatibility.md §11).
func (l *localStats) cpuSlot(running, maxJobs int) {
	l.TotalGPUs = 1
	l.AllocatedGPUs, l.AvailableGPUs = []int{}, []int{}
	if running > 0 {
		l.AllocatedGPUs = []int{0}
	}
	if running < maxJobs {
		l.AvailableGPUs = []int{0}
	}
}

func nonNil(v []int) []int {
	if v == nil {
		return []int{}
	}
	return v
}

// submitRequest is POST /api/queue/submit (SimpleTuner's body). target picks where the
// job may run: auto (default: an idle worker whose labels match, else this machine),
// local, worker (a registered remote worker only) or slurm (the configured Slurm
// cluster); the job manager decides and refuses a target nothing here serves.
// worker_labels is the tutorial's selector, label name → glob ({"gpu_type":"a100*"});
// SimpleTuner ignores it, this server matches it against the workers' labels
// (jobs.LabelsMatch). A local run ignores it: this machine is not a worker and has no
// labels to match.
type submitRequest struct {
	ConfigName   string            `json:"config_name"`
	NoWait       bool              `json:"no_wait"`
	AnyGPU       bool              `json:"any_gpu"`
	ForApproval  bool              `json:"for_approval"`
	Target       string            `json:"target"`
	WorkerLabels map[string]string `json:"worker_labels"`
	Priority     *int              `json:"priority"`
}

// submitBody is its answer; like SimpleTuner's it is 200 with success:false for refusals
// of a job this server could take (an unknown environment, more GPUs than exist, no_wait
// with none free). A target nothing here serves is a 400 instead (jobs.ErrNoExecutor,
// mapped in errors.go): the request, not the moment, is wrong.
type submitBody struct {
	Success           bool        `json:"success"`
	JobID             *string     `json:"job_id"`
	Status            string      `json:"status"`
	AllocatedGPUs     []string    `json:"allocated_gpus"`
	AllocatedWorkerID *string     `json:"allocated_worker_id"`
	QueuePosition     *int        `json:"queue_position"`
	RequiresApproval  bool        `json:"requires_approval"`
	Error             *string     `json:"error"`
	Reason            *string     `json:"reason"`
	Issues            []issueBody `json:"issues,omitempty"`
}

func strp(s string) *string { return &s }

// submitTarget checks a submission's target: the jobs.Target* value it passes on, or
// refused (kubeflow, which SimpleTuner's schema accepts and this server does not run, as
// a rejection in SimpleTuner's answer; anything else a 422).
func submitTarget(target string) (string, *submitBody, error) {
	switch target {
	case "", jobs.TargetAuto:
		return jobs.TargetAuto, nil, nil
	case jobs.TargetLocal, jobs.TargetWorker, jobs.TargetSlurm:
		return target, nil, nil
	case "kubeflow":
		return "", &submitBody{Status: "rejected", AllocatedGPUs: []string{},
			Error: strp("target=kubeflow is not supported by this server: use auto, local, worker or slurm")}, nil
	}
	return "", nil, &validationError{fieldError{Type: "enum", Loc: []string{"body", "target"}, Msg: "target must be one of auto, local, worker, slurm"}}
}

func (s *Server) queueSubmit(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	var req submitRequest
	if err := decodeJSON(r, &req); err != nil {
		var ve *validationError
		if errors.As(err, &ve) && len(ve.fe.Loc) > 1 && strings.HasPrefix(ve.fe.Loc[1], "worker_labels") {
			ve.fe.Msg = jobs.LabelsHelp // not "expected map[string]string"
		}
		return err
	}
	if !p.Can("job.submit") {
		return errorf(http.StatusForbidden, "Permission denied: job.submit")
	}
	target, refused, err := submitTarget(req.Target)
	if err != nil {
		return err
	}
	if refused != nil {
		writeJSON(w, http.StatusOK, refused)
		return nil
	}
	if strings.TrimSpace(req.ConfigName) == "" {
		return &validationError{fieldError{Type: "missing", Loc: []string{"body", "config_name"}, Msg: "config_name is required: the name of an environment (GET /api/configs/)"}}
	}
	b, err := s.cfg.Training.FromEnvironment(req.ConfigName, p.Permissions)
	if errors.Is(err, training.ErrEnvNotFound) {
		msg := "Config '" + req.ConfigName + "' not found"
		writeJSON(w, http.StatusOK, submitBody{Status: "rejected", Error: &msg, AllocatedGPUs: []string{}})
		return nil
	}
	if err != nil {
		return err
	}
	prio := 10
	if req.Priority != nil {
		if *req.Priority < 0 || *req.Priority > 50 {
			return &validationError{fieldError{Type: "range", Loc: []string{"body", "priority"}, Msg: "priority must be from 0 to 50"}}
		}
		if *req.Priority > 20 && !p.Can("job.priority.high") {
			return errorf(http.StatusForbidden, "Permission denied: job.priority.high")
		}
		prio = *req.Priority
	}
	job, err := s.cfg.Training.Start(r.Context(), training.StartRequest{Bundle: b, OwnerID: p.User.ID, Owner: p.User.Username, Priority: prio,
		NoWait: req.NoWait, AnyGPU: req.AnyGPU, IdempotencyKey: idempotencyKey(r), WorkerLabels: req.WorkerLabels, Target: target,
		ForApproval: req.ForApproval, ApprovalReason: submittedForApproval})
	if errors.Is(err, training.ErrForbidden) {
		return errorf(http.StatusForbidden, "Permission denied: %s", auth.PermJobHooks)
	}
	outcome, ok := outcomeOf(job, err)
	if !ok {
		return err
	}
	out := submitBody{Status: queueWords[outcome], AllocatedGPUs: []string{}}
	if job != nil && job.WorkerID != "" {
		out.AllocatedWorkerID = strp(job.WorkerID)
	}
	switch outcome {
	case outcomeInvalid:
		out.Error, out.Issues = strp("Configuration validation failed: "+strings.Join(b.Issues.Errors().Messages(), "; ")), issuesBody(b.Issues.Errors())
	case outcomeRejected:
		reason := rejectionReason(job, err)
		if job != nil {
			out.JobID = &job.ID
		}
		out.Error, out.Reason = &reason, &reason
	case outcomeQueued:
		out.Success, out.JobID = true, &job.ID
		pos := s.cfg.Jobs.QueuePosition(job.ID)
		out.QueuePosition = &pos
		out.Reason = strp(waitReason(job))
	case outcomeBlocked:
		out.Success, out.JobID, out.RequiresApproval = true, &job.ID, true
		out.Reason = strp(submittedForApproval + ": waiting for a user with admin.approve (GET /api/approvals)")
	case outcomeStarted:
		out.Success, out.JobID = true, &job.ID
		if job.GPUs != nil {
			out.AllocatedGPUs = job.GPUs
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// waitReason says why a queued job waits: what its executors answered (the job's note,
// e.g. no idle worker matches its labels), else the local queue's words.
func waitReason(j *store.Job) string {
	if j.Note != "" {
		return j.Note
	}
	return "Waiting for resources: " + strconv.Itoa(j.NumGPUs) + " GPU(s) or a free job slot"
}

// concurrencyRequest is POST /api/queue/concurrency. Unlike SimpleTuner, an explicit
// null for local_gpu_max_concurrent resets it to unlimited (the tutorial's promise).
type concurrencyRequest struct {
	LocalGPUMaxConcurrent json.RawMessage `json:"local_gpu_max_concurrent"`
	LocalJobMaxConcurrent *int            `json:"local_job_max_concurrent"`
	MaxConcurrent         *int            `json:"max_concurrent"`
	UserMaxConcurrent     *int            `json:"user_max_concurrent"`
	TeamMaxConcurrent     *int            `json:"team_max_concurrent"`
	EnableFairShare       *bool           `json:"enable_fair_share"`
}

type concurrencyBody struct {
	Success               bool `json:"success"`
	LocalGPUMaxConcurrent *int `json:"local_gpu_max_concurrent"`
	LocalJobMaxConcurrent int  `json:"local_job_max_concurrent"`
}

func (s *Server) queueConcurrency(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	var req concurrencyRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	lim := s.cfg.GPUs.Ledger().Limits()
	if raw := strings.TrimSpace(string(req.LocalGPUMaxConcurrent)); raw != "" {
		if raw == "null" {
			lim.MaxGPUs = 0
		} else {
			n, err := strconv.Atoi(raw)
			if err != nil || n < 1 {
				return &validationError{fieldError{Type: "range", Loc: []string{"body", "local_gpu_max_concurrent"}, Msg: "an integer ≥ 1, or null for unlimited"}}
			}
			lim.MaxGPUs = n
		}
	}
	if v := req.LocalJobMaxConcurrent; v != nil {
		if *v < 1 || *v > 10 {
			return &validationError{fieldError{Type: "range", Loc: []string{"body", "local_job_max_concurrent"}, Msg: "an integer from 1 to 10"}}
		}
		lim.MaxJobs = *v
	}
	s.cfg.GPUs.Ledger().SetLimits(lim)
	if s.cfg.SaveLimits != nil {
		if err := s.cfg.SaveLimits(lim); err != nil {
			return err
		}
	}
	s.cfg.Jobs.Kick()
	out := concurrencyBody{Success: true, LocalJobMaxConcurrent: max(lim.MaxJobs, 1)}
	if lim.MaxGPUs > 0 {
		v := lim.MaxGPUs
		out.LocalGPUMaxConcurrent = &v
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// queueCancel cancels a queued or running job: own jobs with queue.cancel.own, others'
// with queue.cancel.all.
func (s *Server) queueCancel(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	id, err := s.cancelNamed(r, p, actQueueCancel)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, successJobBody{Success: true, JobID: id})
	return nil
}

// cancelNamed cancels the job of the path's {job_id} without saving, if p may do a to
// it: the one cancellation behind POST /api/queue/{job_id}/cancel and
// POST /api/cloud/jobs/{job_id}/cancel, which differ only in the permissions they name.
func (s *Server) cancelNamed(r *http.Request, p *auth.Principal, a jobAction) (string, error) {
	id := mux.Vars(r)["job_id"]
	if _, err := s.jobFor(p, id, a); err != nil {
		return id, err
	}
	return id, s.sendCommand(r.Context(), id, plugins.CommandCancel)
}

type priorityRequest struct {
	Priority *int `json:"priority"`
}

// queuePriority changes a queued job's priority. queue.manage is checked with the job
// (actPriority), not on the route, so a job the caller may not see answers 404 like a
// job that does not exist.
func (s *Server) queuePriority(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	id := mux.Vars(r)["job_id"]
	if _, err := s.jobFor(p, id, actPriority); err != nil {
		return err
	}
	var req priorityRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	if req.Priority == nil || *req.Priority < 0 || *req.Priority > 50 {
		return &validationError{fieldError{Type: "range", Loc: []string{"body", "priority"}, Msg: "priority must be an integer from 0 to 50"}}
	}
	if err := s.cfg.Jobs.SetPriority(id, *req.Priority); err != nil {
		if errors.Is(err, jobs.ErrNotFound) {
			return errJobNotFound()
		}
		if errors.Is(err, jobs.ErrEnded) {
			return errorf(http.StatusConflict, "Only queued jobs can change priority")
		}
		return err
	}
	writeJSON(w, http.StatusOK, successJobBody{Success: true, JobID: id, Priority: req.Priority})
	return nil
}

// systemStatusBody is GET /api/system/status (SimpleTuner's shape).
type systemStatusBody struct {
	Timestamp     float64             `json:"timestamp"`
	UptimeSeconds float64             `json:"uptime_seconds"`
	LoadAvg5Min   *float64            `json:"load_avg_5min"`
	MemoryPercent *float64            `json:"memory_percent"`
	GPUs          []gpu.StatusGPU     `json:"gpus"`
	GPUInventory  gpuInventoryBody    `json:"gpu_inventory"`
	GPUAllocation *gpu.AllocationView `json:"gpu_allocation"`
}

type gpuInventoryBody struct {
	Backend      string          `json:"backend"`
	Count        int             `json:"count"`
	Reason       string          `json:"reason,omitempty"`
	Capabilities map[string]bool `json:"capabilities"`
}

func (s *Server) systemStatus(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	now := time.Now()
	inv := s.cfg.GPUs.Inventory()
	gpus, err := inv.List(r.Context())
	if err != nil {
		gpus = nil
	}
	info := inv.Info()
	st := systemStatusBody{Timestamp: float64(now.UnixNano()) / 1e9, UptimeSeconds: now.Sub(s.started).Seconds(),
		GPUs: gpu.StatusGPUs(gpus), LoadAvg5Min: loadAvg5(), MemoryPercent: memPercent(),
		GPUInventory: gpuInventoryBody{Backend: info.Backend, Count: len(gpus), Reason: info.Reason,
			Capabilities: map[string]bool{"supports_cuda": info.Backend == gpu.BackendCUDA, "supports_mps": false, "supports_rocm": false,
				"supports_deepspeed": false, "supports_fsdp": false, "supports_cpu_training": true}}}
	if st.GPUs == nil {
		st.GPUs = []gpu.StatusGPU{}
	}
	if inc, _ := strconv.ParseBool(r.URL.Query().Get("include_allocation")); inc {
		if v, err := s.cfg.GPUs.View(r.Context()); err == nil {
			s.hideJobIDs(p, &v)
			st.GPUAllocation = &v
		}
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}

// hideJobIDs blanks the job id of every GPU held by a job p may not see: the device still
// shows as allocated, but another user's job id is not handed out to be probed.
func (s *Server) hideJobIDs(p *auth.Principal, v *gpu.AllocationView) {
	for i, d := range v.Devices {
		if d.JobID == nil {
			continue
		}
		if j, err := s.cfg.Jobs.Get(*d.JobID); err != nil || !visible(p, j) {
			v.Devices[i].JobID = nil
		}
	}
}

func loadAvg5() *float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return nil
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return nil
	}
	v, err := strconv.ParseFloat(f[1], 64)
	if err != nil {
		return nil
	}
	return &v
}

func memPercent() *float64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return nil
	}
	var total, avail float64
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "MemTotal:":
			total = v
		case "MemAvailable:":
			avail = v
		}
	}
	if total == 0 {
		return nil
	}
	p := float64(int((1-avail/total)*1000)) / 10
	return &p
}

// jobEvents answers a job's stored events after since_seq (at most 1000 a page).
func (s *Server) jobEvents(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	id := mux.Vars(r)["job_id"]
	j, err := s.jobFor(p, id, actView)
	if err != nil {
		return err
	}
	var since uint64
	if v := r.URL.Query().Get("since_seq"); v != "" {
		if since, err = strconv.ParseUint(v, 10, 64); err != nil {
			return &validationError{fieldError{Type: "int_parsing", Loc: []string{"query", "since_seq"}, Msg: "a non-negative integer"}}
		}
	}
	stored, err := s.cfg.Store.Events().List(id, since, 1000)
	if err != nil {
		return err
	}
	evs := make([]json.RawMessage, 0, len(stored))
	next := since
	for _, e := range stored {
		evs = append(evs, e.Event)
		next = e.Seq
	}
	writeJSON(w, http.StatusOK, jobEventsBody{JobID: id, Events: evs, NextSeq: next, Status: j.Status})
	return nil
}
