package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"simpletuner/plugins"
	"simpletuner/store"
	"simpletuner/supervisor/auth"
	"simpletuner/supervisor/jobs"
)

// The /api/cloud/jobs routes are SimpleTuner's job routes, the ones its own CLI calls
// (`simpletuner jobs list|get|logs|cancel|delete|purge`). They show the jobs of this
// server's job manager — every job here is a local one — under the same visibility and
// permission rules as /api/jobs (docs/compatibility.md §6).

// actDelete deletes an ended job's record (SimpleTuner's job.delete.own / job.delete.all).
var actDelete = jobAction{own: "job.delete.own", all: "job.delete.all"}

// logTailBytes is how much of a trainer log GET …/logs answers (and …/logs/stream sends
// before it follows): the end of the file, as SimpleTuner does.
const logTailBytes = 50_000

// cloudJobBody is a job in SimpleTuner's unified job shape. Fields this server has no
// value for (cost, provider, output URL) are null; metadata.run_name is the job's
// tracker_run_name.
type cloudJobBody struct {
	JobID           string         `json:"job_id"`
	JobType         string         `json:"job_type"`
	Provider        *string        `json:"provider"`
	Status          string         `json:"status"`
	ConfigName      *string        `json:"config_name"`
	CreatedAt       string         `json:"created_at"`
	StartedAt       *string        `json:"started_at"`
	CompletedAt     *string        `json:"completed_at"`
	FinishedAt      *string        `json:"finished_at"`
	CostUSD         *float64       `json:"cost_usd"`
	HardwareType    *string        `json:"hardware_type"`
	ErrorMessage    *string        `json:"error_message"`
	OutputURL       *string        `json:"output_url"`
	UploadToken     *string        `json:"upload_token"`
	UserID          int64          `json:"user_id"`
	Owner           string         `json:"owner"`
	Priority        int            `json:"priority"`
	Metadata        map[string]any `json:"metadata"`
	IsTerminal      bool           `json:"is_terminal"`
	IsActive        bool           `json:"is_active"`
	DurationSeconds *float64       `json:"duration_seconds"`
	QueuePosition   *int           `json:"queue_position"`
}

// cloudJobListBody is GET /api/cloud/jobs. total counts every job that matches the
// filters, not only this page.
type cloudJobListBody struct {
	Jobs  []cloudJobBody `json:"jobs"`
	Total int            `json:"total"`
}

// cloudJobOne is GET /api/cloud/jobs/{job_id}.
type cloudJobOne struct {
	Job cloudJobBody `json:"job"`
}

// cloudJobLogsBody is GET /api/cloud/jobs/{job_id}/logs: the end of the trainer log.
type cloudJobLogsBody struct {
	JobID string `json:"job_id"`
	Logs  string `json:"logs"`
}

// cloudCancelBody is POST /api/cloud/jobs/{job_id}/cancel. status is the job's status
// after the request: cancelled for a queued job; a running job ends (cancelled) once its
// trainer has stopped.
type cloudCancelBody struct {
	Success bool   `json:"success"`
	JobID   string `json:"job_id"`
	Status  string `json:"status"`
}

var cloudJobsQuery = []queryParam{
	{"limit", "integer", "page size, 1 to 500 (default 50)"},
	{"offset", "integer", "jobs to skip (default 0)"},
	{"status", "string", "only jobs with this status (pending: waiting for approval, queued, starting, running, completed, failed, cancelled, stopped, lost)"},
	{"job_type", "string", "local or cloud; every job of this server is local"},
	{"provider", "string", "cloud provider; local jobs have none, so any value lists nothing"},
}

// cloudStatus is a job's status as the original's job records spell it: a job waiting for
// approval is "pending" there (its queue entry is the one that says blocked); every other
// status is the same word.
func cloudStatus(status string) string {
	if status == jobs.StatusPendingApproval {
		return "pending"
	}
	return status
}

func (s *Server) toCloudJob(j *store.Job, now time.Time) cloudJobBody {
	b := cloudJobBody{JobID: j.ID, JobType: "local", Status: cloudStatus(j.Status), CreatedAt: isoTime(j.CreatedAt),
		StartedAt: isoPtr(j.StartedAt), CompletedAt: isoPtr(j.FinishedAt), FinishedAt: isoPtr(j.FinishedAt),
		UserID: j.OwnerID, Owner: j.Owner, Priority: j.Priority, Metadata: map[string]any{},
		IsTerminal: jobs.Terminal(j.Status)}
	b.IsActive = !b.IsTerminal
	if j.EnvName != "" {
		b.ConfigName = &j.EnvName
	}
	if j.Error != "" {
		b.ErrorMessage = &j.Error
	}
	var cfg map[string]any
	if json.Unmarshal(j.Config, &cfg) == nil {
		for _, k := range []string{"--tracker_run_name", "tracker_run_name"} {
			if v, ok := cfg[k].(string); ok && v != "" {
				b.Metadata["run_name"] = v
				break
			}
		}
	}
	if j.StartedAt != nil {
		end := now
		if j.FinishedAt != nil {
			end = *j.FinishedAt
		}
		d := end.Sub(*j.StartedAt).Seconds()
		b.DurationSeconds = &d
	}
	if j.Status == jobs.StatusQueued {
		if pos := s.cfg.Jobs.QueuePosition(j.ID); pos > 0 {
			b.QueuePosition = &pos
		}
	}
	return b
}

// intQuery reads a non-negative integer query parameter within [lo, hi].
func intQuery(r *http.Request, name string, def, lo, hi int) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, &validationError{fieldError{Type: "int_parsing", Loc: []string{"query", name},
			Msg: name + " must be an integer from " + strconv.Itoa(lo) + " to " + strconv.Itoa(hi)}}
	}
	return n, nil
}

// cloudListJobs is GET /api/cloud/jobs: the jobs p may see (as GET /api/jobs), newest
// first, filtered and paged.
func (s *Server) cloudListJobs(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	limit, err := intQuery(r, "limit", 50, 1, 500)
	if err != nil {
		return err
	}
	offset, err := intQuery(r, "offset", 0, 0, 1<<31-1)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	none := q.Get("provider") != ""
	switch jt := q.Get("job_type"); jt {
	case "", "local":
	case "cloud":
		none = true
	default:
		return errorf(http.StatusBadRequest, "Invalid job_type: %s. Must be 'local' or 'cloud'.", jt)
	}
	all, err := s.cfg.Jobs.List()
	if err != nil {
		return err
	}
	status := q.Get("status")
	now := time.Now()
	out := cloudJobListBody{Jobs: []cloudJobBody{}}
	for i := len(all) - 1; i >= 0 && !none; i-- {
		j := all[i]
		if !visible(p, j) || (status != "" && cloudStatus(j.Status) != status) {
			continue
		}
		if out.Total >= offset && len(out.Jobs) < limit {
			out.Jobs = append(out.Jobs, s.toCloudJob(j, now))
		}
		out.Total++
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// cloudGetJob is GET /api/cloud/jobs/{job_id}.
func (s *Server) cloudGetJob(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	j, err := s.jobFor(p, mux.Vars(r)["job_id"], actView)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, cloudJobOne{Job: s.toCloudJob(j, time.Now())})
	return nil
}

// cloudCancelJob is POST /api/cloud/jobs/{job_id}/cancel: cancel without saving, as
// POST /api/queue/{job_id}/cancel does, under SimpleTuner's job.cancel permissions.
func (s *Server) cloudCancelJob(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	id, err := s.cancelNamed(r, p, actStop)
	if err != nil {
		return err
	}
	out := cloudCancelBody{Success: true, JobID: id, Status: jobs.StatusCancelled}
	if j, err := s.cfg.Jobs.Get(id); err == nil {
		out.Status = j.Status
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// cloudDeleteJob is DELETE /api/cloud/jobs/{job_id}: remove an ended job's record (and
// its job directory; never its output directory). A job that has not ended is refused
// with 400, as SimpleTuner does, saying to cancel it first.
func (s *Server) cloudDeleteJob(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	id := mux.Vars(r)["job_id"]
	j, err := s.jobFor(p, id, actDelete)
	if err != nil {
		return err
	}
	err = s.cfg.Jobs.Delete(id)
	switch {
	case errors.Is(err, jobs.ErrNotFound):
		return errJobNotFound()
	case errors.Is(err, jobs.ErrNotEnded):
		if cur, gerr := s.cfg.Jobs.Get(id); gerr == nil {
			j = cur
		}
		if jobs.Terminal(j.Status) {
			return errorf(http.StatusConflict, "Cannot delete job %s yet: its trainer is still shutting down; try again in a few seconds", id)
		}
		return errorf(http.StatusBadRequest, "Cannot delete job in state '%s'. Cancel it first (POST /api/cloud/jobs/%s/cancel).", j.Status, id)
	case err != nil:
		return err
	}
	writeJSON(w, http.StatusOK, successJobBody{Success: true, JobID: id})
	return nil
}

// logPath is a job's trainer log ("" when the job was never launched).
func logPath(j *store.Job) string {
	if j.JobDir == "" {
		return ""
	}
	return filepath.Join(j.JobDir, plugins.LogFile)
}

// readLogTail returns the last limit bytes of the file at path, starting at a line
// boundary, and the file's size; "" and 0 when there is no file yet.
func readLogTail(path string, limit int64) (string, int64, error) {
	if path == "" {
		return "", 0, nil
	}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", 0, nil
	}
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", 0, err
	}
	start := max(st.Size()-limit, 0)
	buf := make([]byte, st.Size()-start)
	n, err := f.ReadAt(buf, start)
	if err != nil && !errors.Is(err, io.EOF) {
		return "", 0, err
	}
	buf = buf[:n]
	if start > 0 {
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			buf = buf[i+1:]
		}
	}
	return strings.ToValidUTF8(string(buf), "\uFFFD"), start + int64(n), nil
}

// cloudJobLogs is GET /api/cloud/jobs/{job_id}/logs: the end of the trainer's log (what
// it printed, as the log events relay it); "" before the trainer has written anything.
func (s *Server) cloudJobLogs(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	id := mux.Vars(r)["job_id"]
	j, err := s.jobFor(p, id, actView)
	if err != nil {
		return err
	}
	logs, _, err := readLogTail(logPath(j), logTailBytes)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, cloudJobLogsBody{JobID: id, Logs: logs})
	return nil
}

// Log stream timing: how often the log and the job's status are read, how often an idle
// stream sends a comment (which finds clients that left), and how long one write may take.
const (
	logStreamPoll      = 250 * time.Millisecond
	logStreamHeartbeat = 15 * time.Second
	logStreamWrite     = 10 * time.Second
	logStreamMaxRead   = 1 << 20
)

// logStream writes one job's log lines as Server-Sent Events.
type logStream struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	path    string
	off     int64
	partial []byte // the start of a line the trainer has not finished
	buf     []byte
}

func (ls *logStream) write(b []byte) error {
	_ = ls.rc.SetWriteDeadline(time.Now().Add(logStreamWrite))
	if _, err := ls.w.Write(b); err != nil {
		return err
	}
	return ls.rc.Flush()
}

// errLogRead marks a failure to read the log (not to write to the client).
var errLogRead = errors.New("read trainer log")

// pump sends the lines written since the last call; with final, also an unfinished last
// line. It reports whether it sent anything; a read error wraps errLogRead, anything else
// is the client's connection failing.
func (ls *logStream) pump(final bool) (bool, error) {
	if ls.path == "" {
		return false, nil
	}
	f, err := os.Open(ls.path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("%w: %w", errLogRead, err)
	}
	defer f.Close()
	chunk := make([]byte, logStreamMaxRead)
	n, err := f.ReadAt(chunk, ls.off)
	if err != nil && !errors.Is(err, io.EOF) {
		return false, fmt.Errorf("%w: %w", errLogRead, err)
	}
	ls.off += int64(n)
	data := append(ls.partial, chunk[:n]...)
	ls.partial = nil
	ls.buf = ls.buf[:0]
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			if !final {
				ls.partial = append([]byte(nil), data...)
				break
			}
			i = len(data)
		}
		line := strings.ToValidUTF8(strings.TrimRight(string(data[:i]), "\r"), "\uFFFD")
		ls.buf = append(append(append(ls.buf, "data: "...), line...), "\n\n"...)
		data = data[min(i+1, len(data)):]
	}
	if len(ls.buf) == 0 {
		return false, nil
	}
	return true, ls.write(ls.buf)
}

// cloudJobLogStream is GET /api/cloud/jobs/{job_id}/logs/stream: the end of the trainer
// log, then its lines as they are written, one "data:" event each; when the job ends,
// its last lines and "event: done" with the final status ("stream_end" when the job was
// deleted meanwhile). SimpleTuner's client prints each data line and stops at done.
func (s *Server) cloudJobLogStream(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	id := mux.Vars(r)["job_id"]
	j, err := s.jobFor(p, id, actView)
	if err != nil {
		return err
	}
	ls := &logStream{w: w, rc: http.NewResponseController(w), path: logPath(j)}
	tail, size, err := readLogTail(ls.path, logTailBytes)
	if err != nil {
		return err
	}
	ls.off = size
	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("Cache-Control", "no-cache, no-store")
	hd.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	// The tail read ended at a line boundary only if the file did; keep the rest for pump.
	if tail != "" && !strings.HasSuffix(tail, "\n") {
		cut := strings.LastIndexByte(tail, '\n') + 1
		ls.partial, tail = []byte(tail[cut:]), tail[:cut]
	}
	if tail != "" {
		for line := range strings.SplitSeq(strings.TrimSuffix(tail, "\n"), "\n") {
			ls.buf = append(append(append(ls.buf, "data: "...), strings.TrimRight(line, "\r")...), "\n\n"...)
		}
	}
	if err := ls.write(append(ls.buf, ": following "+id+"\n\n"...)); err != nil {
		return nil
	}
	var stop <-chan struct{}
	if s.cfg.Events != nil {
		stop = s.cfg.Events.Done()
	}
	tick := time.NewTicker(logStreamPoll)
	defer tick.Stop()
	quiet := time.Now()
	for {
		select {
		case <-r.Context().Done():
			return nil
		case <-stop:
			return nil
		case <-tick.C:
		}
		cur, err := s.cfg.Jobs.Get(id)
		ended := err != nil || jobs.Terminal(cur.Status)
		if cur != nil && cur.JobDir != "" && ls.path == "" {
			ls.path = logPath(cur) // a queued job got its directory when it launched
		}
		sent, perr := ls.pump(ended)
		if errors.Is(perr, errLogRead) {
			s.log.Warn("log stream", "job_id", id, "err", perr)
		}
		if perr != nil {
			return nil // the client left, or the log cannot be read: end the stream
		}
		if ended {
			final := "stream_end"
			if err == nil {
				final = cur.Status
			}
			_ = ls.write([]byte("event: done\ndata: " + final + "\n\n"))
			return nil
		}
		if sent {
			quiet = time.Now()
		} else if time.Since(quiet) >= logStreamHeartbeat {
			if ls.write([]byte(": heartbeat\n\n")) != nil {
				return nil
			}
			quiet = time.Now()
		}
	}
}
