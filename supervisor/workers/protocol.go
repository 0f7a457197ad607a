package workers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"simpletuner/plugins/workerproto"
	"simpletuner/store"
	"simpletuner/supervisor/jobs"
)

// SSEPath is the dispatch stream's path; register answers it with the worker's id.
const SSEPath = "/api/workers/stream"

// Register records a worker's registration (GPU inventory, labels, type) and decides
// what becomes of the job it says it runs and of the job it was given (decideRejoin).
func (r *Registry) Register(workerID string, req workerproto.RegisterRequest) (*workerproto.RegisterResponse, error) {
	if err := validateWorkerLabels(req.Labels); err != nil {
		return nil, fmt.Errorf("%w: labels: %w", ErrInvalid, err)
	}
	reported := ""
	if req.CurrentJobID != nil {
		reported = *req.CurrentJobID
	}
	now := r.now().UTC()
	r.mu.Lock()
	w := r.workers[workerID]
	if w == nil {
		r.mu.Unlock()
		return nil, ErrInvalidToken
	}
	assigned, acked := "", false
	t := r.assignedLocked(workerID)
	if t != nil {
		assigned, acked = t.jobID, t.acked
	}
	d := decideRejoin(reported, assigned, acked)
	if req.Name != "" && validateName(req.Name) == nil && w.BoundJob == "" {
		w.Name = req.Name
	}
	if w.BoundJob == "" {
		w.Type = TypeEphemeral
		if req.Persistent {
			w.Type = TypePersistent
		}
	}
	if len(req.Labels) > 0 {
		w.Labels = req.Labels
	}
	w.GPU = req.GPUInfo
	w.Provider = req.Provider
	w.LastSeen, w.ConnectedAt, w.OfflineSince = &now, &now, nil
	busy := d.Resume || d.Resend
	w.CurrentJobID = ""
	if busy {
		w.CurrentJobID = assigned
	}
	switch {
	case w.Status == workerproto.StatusDraining:
	case busy:
		w.Status = workerproto.StatusBusy
	default:
		w.Status = workerproto.StatusIdle
	}
	if t != nil {
		t.since = now
	}
	if err := r.saveLocked(w); err != nil {
		r.mu.Unlock()
		return nil, err
	}
	name, bound := w.Name, w.BoundJob
	r.mu.Unlock()

	resp := &workerproto.RegisterResponse{WorkerID: workerID, SSEURL: SSEPath + "?worker_id=" + workerID}
	if d.Abandon {
		resp.AbandonJob = &reported
	}
	if d.Resume {
		j, err := r.src.Get(reported)
		if err != nil {
			return nil, fmt.Errorf("read job %s: %w", reported, err)
		}
		last, err := r.storedSeq(t)
		if err != nil {
			return nil, err
		}
		resp.ResumeJob = &workerproto.ResumeJob{JobID: j.ID, ConfigName: j.EnvName, Status: j.Status, LastSeq: max(last, j.LastSeq)}
	}
	if d.Resend {
		if err := r.resend(t); err != nil {
			return nil, err
		}
	}
	kick := true
	if d.LoseAssigned {
		r.finish(t, jobs.Exit{Retry: true, Lost: true, Error: fmt.Sprintf("worker %s registered again without job %s", name, assigned)})
		kick = false // finish kicked
	}
	r.log.Info("worker registered", "worker_id", workerID, "worker", name, "bound_job", bound,
		"resume", d.Resume, "abandon", d.Abandon, "resend", d.Resend, "lost", d.LoseAssigned)
	if kick && bound == "" {
		r.kick()
	}
	return resp, nil
}

// resend pushes a task's job_submit again (building it from the job's record if the
// task has none yet: a bound job, or one recovered after a restart).
func (r *Registry) resend(t *task) error {
	r.mu.Lock()
	sub := t.submit
	r.mu.Unlock()
	if sub == nil {
		j, err := r.src.Get(t.jobID)
		if err != nil {
			return fmt.Errorf("read job %s: %w", t.jobID, err)
		}
		sub = jobSubmit(j)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	t.submit = sub
	if !t.ended() {
		r.pushLocked(t.workerID, workerproto.EventJobSubmit, sub, t.jobID)
	}
	return nil
}

// Close ends every open dispatch stream (the daemon is shutting down; workers reconnect
// to the next one). Jobs and records are untouched.
func (r *Registry) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	for id := range r.links {
		r.closeStreamLocked(id)
	}
}

// Stream is one worker's open dispatch stream (OpenStream, then Run).
type Stream struct {
	r        *Registry
	workerID string
	conn     *streamConn
}

// OpenStream opens a worker's dispatch stream, ending any older one. queryID is the
// worker_id the worker asked for; it must be its own.
func (r *Registry) OpenStream(workerID, queryID string) (*Stream, error) {
	if queryID != workerID {
		return nil, ErrMismatch
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	if r.workers[workerID] == nil {
		return nil, ErrInvalidToken
	}
	r.closeStreamLocked(workerID)
	sc := &streamConn{closed: make(chan struct{})}
	r.linkLocked(workerID).stream = sc
	return &Stream{r: r, workerID: workerID, conn: sc}, nil
}

// Run sends the worker's events through send (event type, JSON data) until ctx ends, a
// newer stream or a token rotation replaces this one, the worker is deleted (after its
// "shutdown" is sent) or send fails. A ping goes out every Config.PingEvery.
func (s *Stream) Run(ctx context.Context, send func(typ string, data []byte) error) error {
	r := s.r
	ping := time.NewTicker(r.cfg.PingEvery)
	defer ping.Stop()
	defer func() {
		r.mu.Lock()
		if l := r.links[s.workerID]; l != nil && l.stream == s.conn {
			l.stream = nil
		}
		r.mu.Unlock()
	}()
	for {
		r.mu.Lock()
		l := r.links[s.workerID]
		if l == nil || l.stream != s.conn {
			r.mu.Unlock()
			return nil
		}
		evs := l.outbox
		l.outbox = nil
		closing := s.conn.flushThenClose
		wake := l.wake
		r.mu.Unlock()
		for i, e := range evs {
			if err := send(e.typ, e.data); err != nil {
				s.requeue(evs[i:])
				return err
			}
		}
		if closing {
			r.mu.Lock()
			if r.workers[s.workerID] == nil {
				delete(r.links, s.workerID)
			}
			r.mu.Unlock()
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.conn.closed:
			return nil
		case <-wake:
		case <-ping.C:
			if err := send(workerproto.EventPing, []byte(`{"type":"ping"}`)); err != nil {
				return err
			}
		}
	}
}

// requeue puts events a broken stream did not send back at the front of the outbox.
func (s *Stream) requeue(evs []outEvent) {
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	if l := s.r.links[s.workerID]; l != nil {
		l.outbox = append(append([]outEvent(nil), evs...), l.outbox...)
	}
}

// Heartbeat records a worker's heartbeat. A worker that was marked offline is back
// (idle, or busy with the job it was given); a job it reports that it should not run is
// cancelled on it.
func (r *Registry) Heartbeat(workerID string, hb workerproto.Heartbeat) error {
	if hb.WorkerID != "" && hb.WorkerID != workerID {
		return ErrMismatch
	}
	now := r.now().UTC()
	r.mu.Lock()
	defer r.mu.Unlock()
	w := r.workers[workerID]
	if w == nil {
		return ErrInvalidToken
	}
	w.LastSeen = &now
	t := r.assignedLocked(workerID)
	if w.Status == workerproto.StatusOffline || w.Status == workerproto.StatusConnecting {
		w.Status, w.OfflineSince = workerproto.StatusIdle, nil
		if t != nil {
			w.Status = workerproto.StatusBusy
		}
		if w.ConnectedAt == nil {
			w.ConnectedAt = &now
		}
	}
	if hb.CurrentJobID != nil && *hb.CurrentJobID != "" && (t == nil || t.jobID != *hb.CurrentJobID) {
		r.pushLocked(workerID, workerproto.EventJobCancel, workerproto.JobControl{Type: workerproto.EventJobCancel,
			JobID: *hb.CurrentJobID, Command: "cancel"}, "")
	}
	// The heartbeat is not worth a store write each time: only status changes are kept
	// durably; LastSeen in memory is what the health check reads.
	return nil
}

// taskOf returns the task of jobID if workerID runs it; else ErrNotAssigned, or
// ErrJobNotFound when the job does not exist.
func (r *Registry) taskOf(workerID, jobID string) (*task, error) {
	r.mu.Lock()
	t := r.tasks[jobID]
	ok := t != nil && t.workerID == workerID && !t.ended()
	if ok {
		t.acked = true
	}
	r.mu.Unlock()
	if ok {
		return t, nil
	}
	if _, err := r.src.Get(jobID); errors.Is(err, jobs.ErrNotFound) || errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s", ErrJobNotFound, jobID)
	}
	return nil, ErrNotAssigned
}

// JobStatus records a status the worker reports for its job: starting, running or
// training mark it running; a terminal status ends its task (once every event up to
// st.LastSeq is stored, else *BehindError).
func (r *Registry) JobStatus(workerID, jobID string, st workerproto.JobStatus) error {
	t, err := r.taskOf(workerID, jobID)
	if err != nil {
		return err
	}
	switch {
	case st.Status == jobs.StatusStarting, st.Status == jobs.StatusRunning, st.Status == "training":
		t.rep.Running(jobID)
		return nil
	case jobs.Terminal(st.Status) && st.Status != jobs.StatusLost:
	default:
		return fmt.Errorf("%w: status must be starting, running, training, completed, failed, cancelled or stopped, not %q", ErrInvalid, st.Status)
	}
	stored, err := r.storedSeq(t)
	if err != nil {
		return err
	}
	if st.LastSeq > stored {
		return &BehindError{LastSeq: stored, Reason: fmt.Sprintf("events after seq %d are missing; upload them (up to %d) before the final status", stored, st.LastSeq)}
	}
	exit := jobs.Exit{State: st.Status, Error: st.Error}
	r.finish(t, exit)
	r.log.Info("worker job ended", "job_id", jobID, "worker_id", workerID, "status", st.Status)
	return nil
}

// storedSeq is the last event seq the job manager has stored for a task's job: an empty
// batch through the Reporter answers it without storing anything (the job record's
// LastSeq may trail the events just stored).
func (r *Registry) storedSeq(t *task) (uint64, error) {
	last, err := t.rep.Events(t.jobID, nil)
	if err != nil {
		return 0, fmt.Errorf("last stored seq of job %s: %w", t.jobID, err)
	}
	return last, nil
}

// Events stores a batch of the job's trainer events and answers the last stored seq. A
// batch that does not follow the stored events is refused with *BehindError.
func (r *Registry) Events(workerID, jobID string, b workerproto.EventBatch) (workerproto.EventAck, error) {
	t, err := r.taskOf(workerID, jobID)
	if err != nil {
		return workerproto.EventAck{}, err
	}
	last, err := t.rep.Events(jobID, b.Events)
	if errors.Is(err, jobs.ErrSeqGap) {
		return workerproto.EventAck{}, &BehindError{LastSeq: last, Reason: fmt.Sprintf("the batch does not follow the stored events; send from seq %d", last+1)}
	}
	if err != nil {
		return workerproto.EventAck{}, fmt.Errorf("store events of job %s: %w", jobID, err)
	}
	return workerproto.EventAck{LastSeq: last}, nil
}
