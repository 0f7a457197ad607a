package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io/fs"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"simpletuner/internal/safefile"
	"simpletuner/options"
	"simpletuner/plugins"
	"simpletuner/store"
	"simpletuner/supervisor/auth"
	"simpletuner/supervisor/jobs"
	"simpletuner/supervisor/training"
	"simpletuner/supervisor/webhooks"
)

// trainingForm documents the training form: every option of the registry, as a
// "--flag" field.
func (s *Server) trainingForm() []formField {
	reg := options.Default()
	if s.cfg.Training != nil {
		reg = s.cfg.Training.Registry()
	}
	fields := []formField{{name: "__active_tab__", help: "ignored (web UI tab)"}, {name: "__replace_active_config__", help: "true: ignore the active environment"},
		{name: "__disabled_fields__", help: "comma list of fields to drop from this submission"}}
	for _, o := range reg.Options() {
		help := o.Help
		if o.Default != nil {
			help += fmt.Sprintf(" (default %v)", o.Default)
		}
		fields = append(fields, formField{name: o.Name, help: help})
	}
	return fields
}

// wantsJSON reports whether the client asked for JSON rather than the HTML fragments
// SimpleTuner's web UI consumes.
func wantsJSON(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		mt, _, _ := mime.ParseMediaType(strings.TrimSpace(part))
		if mt == "application/json" {
			return true
		}
	}
	return false
}

// readForm parses a multipart or urlencoded body (the body cap is already in place).
func readForm(r *http.Request) (map[string][]string, error) {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch ct {
	case "multipart/form-data":
		// Training forms are small text fields: keep everything in memory, never spool.
		if err := r.ParseMultipartForm(1 << 20); err != nil {
			return nil, formError(err)
		}
		return r.MultipartForm.Value, nil
	case "application/x-www-form-urlencoded", "":
		if err := r.ParseForm(); err != nil {
			return nil, formError(err)
		}
		return r.PostForm, nil
	case "application/json":
		var m map[string]any
		if err := decodeJSON(r, &m); err != nil {
			return nil, err
		}
		out := map[string][]string{}
		for k, v := range m {
			switch x := v.(type) {
			case string:
				out[k] = []string{x}
			case nil:
				out[k] = []string{""}
			default:
				b, _ := json.Marshal(x)
				out[k] = []string{string(b)}
			}
		}
		return out, nil
	}
	return nil, errorf(http.StatusUnsupportedMediaType, "Send the training fields as multipart/form-data (curl -F), application/x-www-form-urlencoded or JSON (got %q)", ct)
}

func formError(err error) error {
	if te := transportError(err); te != nil {
		return te
	}
	return errorf(http.StatusBadRequest, "Cannot read the form: %v", err)
}

// validationReport is the JSON form of a validation result.
type validationReport struct {
	Valid       bool           `json:"valid"`
	Errors      []issueBody    `json:"errors"`
	Warnings    []issueBody    `json:"warnings"`
	Suggestions []issueBody    `json:"suggestions"`
	Environment string         `json:"environment"`
	Config      map[string]any `json:"config,omitempty"`
}

type issueBody struct {
	Option  string `json:"option"`
	Message string `json:"message"`
}

func issuesBody(is options.Issues) []issueBody {
	out := []issueBody{}
	for _, i := range is {
		out = append(out, issueBody{Option: i.Option, Message: i.Message})
	}
	return out
}

func reportOf(b *training.Bundle, withConfig bool) validationReport {
	rep := validationReport{Valid: b.Valid(), Errors: issuesBody(b.Issues.Errors()), Warnings: issuesBody(b.Issues.Warnings()),
		Suggestions: issuesBody(b.Issues.Suggestions()), Environment: b.EnvName}
	if withConfig {
		rep.Config = redactConfig(b.Config.Map())
	}
	return rep
}

// redactConfig returns a copy of a configuration (a job's, or a stored environment's)
// as views show it: the one place that decides what of a config is hidden. The webhook
// config, under either spelling, keeps its structure with its secrets (auth tokens, URL
// paths and queries) shown as "<set>" (webhooks.Shown); nobody reads them back through
// the API, and a save that sends "<set>" back keeps the stored secret
// (docs/security.md, webhook secrets).
func redactConfig(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		if k == "--webhook_config" || k == "webhook_config" {
			v = webhooks.Shown(v)
		}
		out[k] = v
	}
	return out
}

func htmlList(items []issueBody) string {
	var b strings.Builder
	for _, i := range items {
		b.WriteString("<li>" + html.EscapeString(i.Message) + "</li>")
	}
	return b.String()
}

// validationHTML renders SimpleTuner's fragments, which scripts grep for.
func validationHTML(rep validationReport) string {
	if !rep.Valid {
		return `<div class="alert alert-danger"><h6><i class="fas fa-exclamation-triangle"></i> Validation Failed</h6><ul class="mb-0">` +
			htmlList(rep.Errors) + `</ul></div>`
	}
	if len(rep.Warnings)+len(rep.Suggestions) > 0 {
		s := `<div class="alert alert-warning"><h6><i class="fas fa-exclamation-circle"></i> Validation Warnings</h6><ul class="mb-2">` + htmlList(rep.Warnings) + `</ul>`
		if len(rep.Suggestions) > 0 {
			s += `<h6>Suggestions:</h6><ul class="mb-0">` + htmlList(rep.Suggestions) + `</ul>`
		}
		return s + `<small class="text-muted">You can proceed but review these items.</small></div>`
	}
	return `<div class="alert alert-success"><h6><i class="fas fa-check-circle"></i> Configuration Valid</h6><p class="mb-0">All settings look good! Ready to start training.</p></div>`
}

func writeHTML(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	fmt.Fprint(w, body)
}

func (s *Server) trainingValidate(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	form, err := readForm(r)
	if err != nil {
		return err
	}
	b, err := s.cfg.Training.FromForm(form, true, p.Permissions)
	if err != nil {
		return err
	}
	rep := reportOf(b, false)
	if wantsJSON(r) {
		writeJSON(w, http.StatusOK, rep)
		return nil
	}
	writeHTML(w, http.StatusOK, validationHTML(rep))
	return nil
}

// startBody is the JSON answer of a training start.
type startBody struct {
	Success       bool             `json:"success"`
	Status        string           `json:"status"` // trainingWords: starting | queued | rejected | invalid
	JobID         *string          `json:"job_id"`
	QueuePosition *int             `json:"queue_position"`
	Reason        *string          `json:"reason"`
	Validation    validationReport `json:"validation"`
}

func (s *Server) trainingStart(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	if !p.Can("job.submit") {
		return errorf(http.StatusForbidden, "Permission denied: job.submit")
	}
	form, err := readForm(r)
	if err != nil {
		return err
	}
	b, err := s.cfg.Training.FromForm(form, false, p.Permissions)
	if err != nil {
		return err
	}
	job, err := s.cfg.Training.Start(r.Context(), training.StartRequest{Bundle: b, OwnerID: p.User.ID, Owner: p.User.Username,
		IdempotencyKey: idempotencyKey(r)})
	if errors.Is(err, training.ErrForbidden) {
		return errorf(http.StatusForbidden, "Permission denied: %s (%s)", auth.PermJobHooks, strings.TrimPrefix(err.Error(), training.ErrForbidden.Error()+": "))
	}
	outcome, ok := outcomeOf(job, err)
	if !ok {
		return err
	}
	out := startBody{Status: trainingWords[outcome], Validation: reportOf(b, false)}
	var frag string
	switch outcome {
	case outcomeInvalid:
		msgs := out.Validation.Errors
		if len(msgs) == 0 {
			msgs = []issueBody{{Message: err.Error()}}
		}
		frag = `<div class="alert alert-danger"><h6><i class="fas fa-exclamation-triangle"></i> Cannot Start Training</h6><ul class="mb-0">` + htmlList(msgs) + `</ul></div>`
	case outcomeRejected:
		reason := rejectionReason(job, err)
		if job != nil {
			out.JobID = &job.ID
		}
		out.Reason = &reason
		frag = `<div class="alert alert-warning"><h6><i class="fas fa-ban"></i> Training Rejected</h6><p>` + html.EscapeString(reason) + `</p></div>`
	case outcomeQueued:
		pos := s.cfg.Jobs.QueuePosition(job.ID)
		out.Success, out.JobID, out.QueuePosition = true, &job.ID, &pos
		frag = fmt.Sprintf(`<div class="alert alert-info"><h6><i class="fas fa-clock"></i> Training Queued</h6><p>Your job is queued at position %d.</p><p class="mb-0"><small>Job ID: %s</small></p></div>`, pos, job.ID)
	case outcomeBlocked:
		out.Success, out.JobID = true, &job.ID
		frag = `<div class="alert alert-info"><h6><i class="fas fa-user-check"></i> Awaiting Approval</h6><p class="mb-0"><small>Job ID: ` + job.ID + `</small></p></div>`
	case outcomeStarted:
		out.Success, out.JobID = true, &job.ID
		frag = `<div class="alert alert-info"><h6><i class="fas fa-cog fa-spin"></i> Training Starting</h6><p>Your training job is being initialized.</p><p class="mb-0"><small>Job ID: ` + job.ID + `</small></p></div>`
	}
	if wantsJSON(r) {
		status := http.StatusOK
		if outcome == outcomeInvalid {
			status = http.StatusUnprocessableEntity
		}
		writeJSON(w, status, out)
		return nil
	}
	writeHTML(w, http.StatusOK, frag)
	return nil
}

// progressBody is the progress object of the status.
type progressBody struct {
	Percent      float64 `json:"percent"`
	Step         int64   `json:"step"`
	TotalSteps   int64   `json:"total_steps"`
	Epoch        int64   `json:"epoch"`
	TotalEpochs  int64   `json:"total_epochs"`
	Loss         float64 `json:"loss"`
	LearningRate float64 `json:"learning_rate"`
}

// trainingStatusOf maps a job's status, and the message it ended with, to the words of
// /api/training/status (SimpleTuner's): a failed or lost job is "error"; every other
// status keeps its name (starting, running, completed, stopped, cancelled). detail is
// job_info.status_detail, which only an error has: "error_with_details" when the job
// says why, else "crashed_without_details". A stopped or cancelled job is no error,
// whatever note it ended with ("cancelled before it started").
func trainingStatusOf(status, message string) (word, detail string) {
	switch status {
	case jobs.StatusFailed, jobs.StatusLost:
		if message != "" {
			return "error", "error_with_details"
		}
		return "error", "crashed_without_details"
	}
	return status, ""
}

// statusOf maps a job to the training status shape SimpleTuner answers.
func statusOf(j *store.Job) trainingStatusBody {
	st := trainingStatusBody{Status: "idle", Config: map[string]any{}, StartupProgress: map[string]any{}}
	if j == nil {
		return st
	}
	var detail string
	st.Status, detail = trainingStatusOf(j.Status, j.Error)
	id := j.ID
	st.JobID = &id
	var cfg map[string]any
	if json.Unmarshal(j.Config, &cfg) == nil {
		st.Config = redactConfig(cfg)
	}
	st.JobInfo = map[string]any{"status": j.Status, "gpus": j.GPUs, "pid": jobs.TrainerPID(j), "attempts": j.Attempts}
	st.JobInfo["target"], st.JobInfo["executor"], st.JobInfo["worker_id"], st.JobInfo["note"] = placementOf(j)
	if j.Error != "" {
		st.JobInfo["message"] = j.Error
	}
	if detail != "" {
		st.JobInfo["status_detail"] = detail
	}
	if len(j.Progress) > 0 {
		var p plugins.Progress
		if json.Unmarshal(j.Progress, &p) == nil {
			pb := progressBody{Step: p.Step, TotalSteps: p.TotalSteps, Epoch: p.Epoch, TotalEpochs: p.TotalEpochs, Loss: p.Loss, LearningRate: p.LearningRate}
			if p.TotalSteps > 0 {
				pb.Percent = float64(p.Step) * 100 / float64(p.TotalSteps)
			}
			if j.Status == jobs.StatusCompleted {
				pb.Percent = 100
			}
			st.Progress = &pb
		}
	}
	return st
}

// trainingStatus reports the caller's current job, or their most recent one when none
// runs: only a job the caller may see (own jobs, or any with job.view.all), so nobody
// reads another user's config, prompts, paths or pid here; otherwise "idle".
func (s *Server) trainingStatus(w http.ResponseWriter, _ *http.Request, p *auth.Principal) error {
	if s.cfg.Jobs == nil {
		writeJSON(w, http.StatusOK, statusOf(nil))
		return nil
	}
	j, err := s.cfg.Jobs.Latest(mayDo(p, actView))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, statusOf(j))
	return nil
}

type messageBody struct {
	Message string  `json:"message"`
	JobID   *string `json:"job_id"`
}

// jobIDParam is the job_id of a request: the query's, else a form field's.
func jobIDParam(r *http.Request) string {
	id := r.URL.Query().Get("job_id")
	if id == "" && r.Method == http.MethodPost {
		if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct == "multipart/form-data" || ct == "application/x-www-form-urlencoded" {
			if form, err := readForm(r); err == nil && len(form["job_id"]) > 0 {
				id = form["job_id"][0]
			}
		}
	}
	return id
}

// command sends c to the job named by job_id (query or form), or to the caller's current
// job, after checking the caller may do a to it (see jobFor and currentJob).
func (s *Server) command(r *http.Request, p *auth.Principal, a jobAction, c plugins.Command) (string, error) {
	j, err := s.jobOrCurrent(p, jobIDParam(r), a)
	if err != nil {
		return "", err
	}
	if j == nil {
		return "", jobs.ErrNoActiveJob
	}
	return j.ID, s.sendCommand(r.Context(), j.ID, c)
}

// sendCommand sends c to job id, whose access the caller has already checked, and maps
// the job manager's refusals to their answers: the one place every route that commands
// a job (training stop/cancel/steering, queue cancel, cloud job cancel) goes through.
func (s *Server) sendCommand(ctx context.Context, id string, c plugins.Command) error {
	err := s.cfg.Jobs.Command(ctx, id, c)
	switch {
	case errors.Is(err, jobs.ErrNotFound):
		return errJobNotFound()
	case errors.Is(err, jobs.ErrEnded):
		return errorf(http.StatusConflict, "Job %s has already ended", id)
	case errors.Is(err, jobs.ErrUnreachable):
		return errorf(http.StatusServiceUnavailable, "Process %s is not reachable right now: %v", id, err)
	}
	return err
}

// runCommand asks a running job for a checkpoint or a validation run (actSteer).
func (s *Server) runCommand(c plugins.Command, msg string) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
		id, err := s.command(r, p, actSteer, c)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, messageBody{Message: msg, JobID: &id})
		return nil
	}
}

func (s *Server) trainingStop(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	id, err := s.command(r, p, actStop, plugins.CommandStop)
	if errors.Is(err, jobs.ErrNoActiveJob) {
		writeJSON(w, http.StatusOK, messageBody{Message: "No active training job to stop"})
		return nil
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, messageBody{Message: "Training job " + id + " stop requested", JobID: &id})
	return nil
}

func (s *Server) trainingCancel(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	id, err := s.command(r, p, actStop, plugins.CommandCancel)
	none := errors.Is(err, jobs.ErrNoActiveJob)
	if err != nil && !none {
		return err
	}
	if wantsJSON(r) {
		if none {
			writeJSON(w, http.StatusOK, messageBody{Message: "There is no active training job to cancel."})
		} else {
			writeJSON(w, http.StatusOK, messageBody{Message: "Training job has been cancelled successfully.", JobID: &id})
		}
		return nil
	}
	if none {
		writeHTML(w, http.StatusOK, `<div class="alert alert-info"><h6><i class="fas fa-info-circle"></i> No Active Training</h6><p>There is no active training job to cancel.</p></div>`)
		return nil
	}
	writeHTML(w, http.StatusOK, `<div class="alert alert-warning"><h6><i class="fas fa-stop-circle"></i> Training Cancelled</h6><p>Training job has been cancelled successfully.</p><p class="mb-0"><small>Job ID: `+id+`</small></p></div>`)
	return nil
}

// checkpointBody is one row of the checkpoint listing.
type checkpointBody struct {
	Name         string  `json:"name"`
	Path         string  `json:"path"`
	Step         int     `json:"step"`
	GlobalStep   int     `json:"global_step"`
	Epoch        int     `json:"epoch"`
	Loss         float64 `json:"loss"`
	LearningRate float64 `json:"learning_rate"`
	Timestamp    float64 `json:"timestamp"`
	IsLatest     bool    `json:"is_latest"`
	Complete     bool    `json:"complete"`
}

// checkpointsQuery are the query parameters of the checkpoint listing.
var checkpointsQuery = []queryParam{{"job_id", "string", "the job (default: your running one, else your latest one that ran)"},
	{"output_dir", "string", "the output directory of a job you can see (job.view.all: any inside the output root)"}}

type checkpointsBody struct {
	OutputDir   string           `json:"output_dir"`
	Total       int              `json:"total"`
	Checkpoints []checkpointBody `json:"checkpoints"`
	Error       string           `json:"error,omitempty"`
}

// errCheckpointsHidden is the one answer for an output_dir the caller may not list,
// whether or not it exists and whatever it is: nothing about paths outside the caller's
// jobs leaks through this route (see docs/security.md).
func errCheckpointsHidden() error {
	return errorf(http.StatusNotFound, "No checkpoints to show: output_dir must be the output directory of a job you can see")
}

// trainingCheckpoints lists checkpoint-<step> folders, newest first, of
// the job named by job_id, else of output_dir, else of the caller's current job, else of
// the caller's own latest job that ran (SimpleTuner keeps the last job's output_dir after
// it ends, so the listing still answers then). GET and POST both work (the tutorial uses
// POST).
func (s *Server) trainingCheckpoints(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	q := r.URL.Query()
	dir, id := q.Get("output_dir"), q.Get("job_id")
	if dir == "" && id == "" && r.Method == http.MethodPost {
		if form, err := readForm(r); err == nil {
			if v := form["output_dir"]; len(v) > 0 {
				dir = v[0]
			}
			if v := form["job_id"]; len(v) > 0 {
				id = v[0]
			}
		}
	}
	var resolved string
	if id != "" || dir == "" {
		j, err := s.jobOrCurrent(p, id, actView)
		if err == nil && j == nil && id == "" {
			j, err = s.latestRunJob(p)
		}
		if err != nil {
			return err
		}
		if j != nil {
			resolved = jobOutputDir(s.cfg.OutputRoot, j)
		}
	} else {
		var err error
		if resolved, err = s.checkpointDir(p, dir); err != nil {
			return err
		}
	}
	if resolved == "" {
		writeJSON(w, http.StatusOK, checkpointsBody{Error: "No output directory specified", Checkpoints: []checkpointBody{}})
		return nil
	}
	list, err := listCheckpoints(resolved)
	if errors.Is(err, fs.ErrNotExist) {
		list, err = []checkpointBody{}, nil // the job has not saved anything yet
	}
	if err != nil {
		return errCheckpointsHidden()
	}
	writeJSON(w, http.StatusOK, checkpointsBody{OutputDir: resolved, Total: len(list), Checkpoints: list})
	return nil
}

// latestRunJob is p's own newest job that has started, whatever became of it since: the
// job a checkpoint listing without job_id or output_dir falls back to once nothing runs.
// Only p's own, even for callers who may see everyone's: the listing names paths, and a
// default should not show another user's. A job that never started wrote nothing.
func (s *Server) latestRunJob(p *auth.Principal) (*store.Job, error) {
	own := ownJobs(p, actView)
	return s.cfg.Jobs.Latest(func(j *store.Job) bool { return j.StartedAt != nil && own(j) })
}

// checkpointDir resolves an output_dir p asked to list. It answers only for the output
// directory of a job p may see (decided from the job records, without touching the
// path), or, for callers with job.view.all, a directory inside the output root once
// symlinks are resolved; everything else is errCheckpointsHidden.
func (s *Server) checkpointDir(p *auth.Principal, dir string) (string, error) {
	resolved, err := options.ResolveOutputDir(s.cfg.OutputRoot, dir)
	if err != nil || resolved == "" {
		return "", errCheckpointsHidden()
	}
	all, err := s.cfg.Jobs.List()
	if err != nil {
		return "", err
	}
	for _, j := range all {
		if jobOutputDir(s.cfg.OutputRoot, j) == resolved && visible(p, j) {
			return resolved, nil
		}
	}
	if p.Can(actView.all) && safefile.New(s.cfg.OutputRoot).Within(resolved) == nil {
		return resolved, nil
	}
	return "", errCheckpointsHidden()
}

// jobOutputDir is a job's resolved --output_dir ("" when it has none).
func jobOutputDir(outputRoot string, j *store.Job) string {
	var cfg struct {
		OutputDir string `json:"--output_dir"`
	}
	if json.Unmarshal(j.Config, &cfg) != nil || cfg.OutputDir == "" {
		return ""
	}
	dir, err := options.ResolveOutputDir(outputRoot, cfg.OutputDir)
	if err != nil {
		return ""
	}
	return dir
}

// listCheckpoints reads checkpoint-<step>[-rolling] folders, named as the trainer names
// them (plugins.ParseCheckpointName). Symlinks and other names are skipped; only folders
// whose guard file exists are complete.
func listCheckpoints(dir string) ([]checkpointBody, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := []checkpointBody{}
	for _, e := range entries {
		if !e.IsDir() || e.Type()&os.ModeSymlink != 0 {
			continue
		}
		name := e.Name()
		step, _, ok := plugins.ParseCheckpointName(name)
		if !ok {
			continue
		}
		path := filepath.Join(dir, name)
		cb := checkpointBody{Name: name, Path: path, Step: step, GlobalStep: step}
		if info, err := e.Info(); err == nil {
			cb.Timestamp = float64(info.ModTime().UnixNano()) / 1e9
		}
		if _, err := os.Stat(filepath.Join(path, plugins.CheckpointGuardFile)); err == nil {
			cb.Complete = true
		}
		var st struct {
			GlobalStep   int     `json:"global_step"`
			Epoch        int     `json:"epoch"`
			Loss         float64 `json:"loss"`
			LearningRate float64 `json:"learning_rate"`
		}
		if b, err := os.ReadFile(filepath.Join(path, plugins.CheckpointStateFile)); err == nil && json.Unmarshal(b, &st) == nil {
			cb.GlobalStep, cb.Epoch, cb.Loss, cb.LearningRate = st.GlobalStep, st.Epoch, st.Loss, st.LearningRate
		}
		out = append(out, cb)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Step > out[b].Step })
	for i := range out {
		if out[i].Complete {
			out[i].IsLatest = true
			break
		}
	}
	return out, nil
}

// idempotencyKey is the client's Idempotency-Key header, capped so it cannot bloat the
// store: a client retrying a start after a timeout gets the same job, not a second one.
func idempotencyKey(r *http.Request) string {
	k := strings.TrimSpace(r.Header.Get("Idempotency-Key"))
	if len(k) > 200 {
		k = k[:200]
	}
	return k
}
