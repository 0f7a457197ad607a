// Package agenttest is a fake orchestrator for tests of `simpletuner worker`: an
// httptest server implementing the worker routes of plugins/workerproto (register, the
// dispatch stream, heartbeats, job status and event upload) with the daemon's rules —
// events stored by seq with no gap and no double, a terminal status refused (409) until
// every event it follows is stored — and faults to inject (connections dropped in the
// middle of an upload, or after it was stored but before it was answered).
package agenttest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"

	"simpletuner/plugins"
	"simpletuner/plugins/workerproto"
)

// Drop is a fault injected into event uploads.
type Drop int

const (
	// DropMidBody closes the connection after reading part of the upload's body:
	// nothing of it is stored.
	DropMidBody Drop = iota + 1
	// DropAfterStore stores the upload, then closes the connection without answering.
	DropAfterStore
)

// Job is what the orchestrator holds of one dispatched job.
type Job struct {
	// Events are the stored events, in seq order (1..N when nothing was lost).
	Events []plugins.Event
	// Received counts every event uploaded, doubles included.
	Received int
	// Statuses are the statuses accepted, in order.
	Statuses []workerproto.JobStatus
	// Final is the accepted terminal status, if any.
	Final *workerproto.JobStatus
}

// Orchestrator is the fake. Its methods are safe for concurrent use.
type Orchestrator struct {
	srv *httptest.Server

	// mu guards everything below.
	mu            sync.Mutex
	token         string
	registrations []workerproto.RegisterRequest
	heartbeats    []workerproto.Heartbeat
	jobs          map[string]*Job
	drops         []Drop
	dropped       int
	queue         []string      // encoded SSE events not yet sent
	kick          chan struct{} // wakes the stream writer
	streams       map[int]chan struct{}
	nextStream    int
	streamCount   int
	changed       chan struct{} // closed and replaced at every change (WaitFor)
}

// New starts a fake orchestrator that accepts token. Close it when done.
func New(token string) *Orchestrator {
	o := &Orchestrator{token: token, jobs: map[string]*Job{}, kick: make(chan struct{}, 1),
		streams: map[int]chan struct{}{}, changed: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/workers/register", o.register)
	mux.HandleFunc("GET /api/workers/stream", o.stream)
	mux.HandleFunc("POST /api/workers/heartbeat", o.heartbeat)
	mux.HandleFunc("POST /api/workers/job/{id}/status", o.status)
	mux.HandleFunc("POST /api/workers/job/{id}/events", o.events)
	o.srv = httptest.NewServer(o.auth(mux))
	return o
}

// URL is the orchestrator's base URL.
func (o *Orchestrator) URL() string { return o.srv.URL }

// Close stops the server.
func (o *Orchestrator) Close() {
	o.CloseStreams()
	o.srv.CloseClientConnections()
	o.srv.Close()
}

// SetToken replaces the accepted token (the old one then gets 401).
func (o *Orchestrator) SetToken(t string) {
	o.mu.Lock()
	o.token = t
	o.mu.Unlock()
}

// DropUploads makes the next event uploads fail, one drop each, in order.
func (o *Orchestrator) DropUploads(d ...Drop) {
	o.mu.Lock()
	o.drops = append(o.drops, d...)
	o.mu.Unlock()
}

// Dropped is how many uploads were dropped so far.
func (o *Orchestrator) Dropped() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.dropped
}

// Dispatch sends an event on the dispatch stream (queued until a worker follows it).
// A job_submit makes the job known here.
func (o *Orchestrator) Dispatch(name string, payload any) {
	b, _ := json.Marshal(payload)
	o.mu.Lock()
	if js, ok := payload.(workerproto.JobSubmit); ok {
		if o.jobs[js.JobID] == nil {
			o.jobs[js.JobID] = &Job{}
		}
	}
	o.queue = append(o.queue, fmt.Sprintf("event: %s\ndata: %s\n\n", name, b))
	o.mu.Unlock()
	select {
	case o.kick <- struct{}{}:
	default:
	}
}

// CloseStreams ends every open dispatch stream (a lost connection).
func (o *Orchestrator) CloseStreams() {
	o.mu.Lock()
	for id, c := range o.streams {
		close(c)
		delete(o.streams, id)
	}
	o.mu.Unlock()
}

// Registrations are the registrations received, in order.
func (o *Orchestrator) Registrations() []workerproto.RegisterRequest {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]workerproto.RegisterRequest(nil), o.registrations...)
}

// Heartbeats are the heartbeats received, in order.
func (o *Orchestrator) Heartbeats() []workerproto.Heartbeat {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]workerproto.Heartbeat(nil), o.heartbeats...)
}

// Streams is how many dispatch streams were opened so far.
func (o *Orchestrator) Streams() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.streamCount
}

// Job returns a copy of what the orchestrator holds of a job (nil: unknown).
func (o *Orchestrator) Job(id string) *Job {
	o.mu.Lock()
	defer o.mu.Unlock()
	j := o.jobs[id]
	if j == nil {
		return nil
	}
	c := *j
	c.Events = append([]plugins.Event(nil), j.Events...)
	c.Statuses = append([]workerproto.JobStatus(nil), j.Statuses...)
	return &c
}

// Changed is closed at the next change of the orchestrator's records; tests wait on it
// instead of sleeping.
func (o *Orchestrator) Changed() <-chan struct{} {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.changed
}

// changedLocked wakes the waiters of Changed. Called with mu held.
func (o *Orchestrator) changedLocked() {
	close(o.changed)
	o.changed = make(chan struct{})
}

func (o *Orchestrator) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		ok := r.Header.Get(workerproto.HeaderToken) == o.token
		o.mu.Unlock()
		if !ok {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"detail": "Invalid worker token"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func (o *Orchestrator) register(w http.ResponseWriter, r *http.Request) {
	var req workerproto.RegisterRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeJSON(w, http.StatusUnprocessableEntity, map[string]string{"detail": err.Error()})
		return
	}
	for k := range req.Labels {
		if k == "" || strings.ContainsAny(k, " \t") {
			writeJSON(w, http.StatusBadRequest, map[string]string{"detail": fmt.Sprintf("labels: invalid label name %q", k)})
			return
		}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.registrations = append(o.registrations, req)
	res := workerproto.RegisterResponse{WorkerID: "worker-1", SSEURL: "/api/workers/stream?worker_id=worker-1"}
	if cur := req.CurrentJobID; cur != nil {
		j := o.jobs[*cur]
		switch {
		case j == nil:
			res.AbandonJob = cur
		case j.Final == nil:
			res.ResumeJob = &workerproto.ResumeJob{JobID: *cur, Status: "running", LastSeq: lastSeq(j)}
		}
	}
	o.changedLocked()
	writeJSON(w, http.StatusOK, res)
}

func lastSeq(j *Job) uint64 {
	if len(j.Events) == 0 {
		return 0
	}
	return j.Events[len(j.Events)-1].Seq
}

func (o *Orchestrator) stream(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("worker_id") != "worker-1" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"detail": "Worker ID mismatch"})
		return
	}
	fl, _ := w.(http.Flusher)
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	io.WriteString(w, ": connected\n\n")
	fl.Flush()
	o.mu.Lock()
	o.nextStream++
	id := o.nextStream
	gone := make(chan struct{})
	o.streams[id] = gone
	o.streamCount++
	o.changedLocked()
	o.mu.Unlock()
	defer func() {
		o.mu.Lock()
		if c, ok := o.streams[id]; ok {
			close(c)
			delete(o.streams, id)
		}
		o.mu.Unlock()
	}()
	for {
		o.mu.Lock()
		q := o.queue
		o.queue = nil
		o.mu.Unlock()
		for _, ev := range q {
			if _, err := io.WriteString(w, ev); err != nil {
				return
			}
		}
		fl.Flush()
		select {
		case <-r.Context().Done():
			return
		case <-gone:
			return
		case <-o.kick:
		}
	}
}

func (o *Orchestrator) heartbeat(w http.ResponseWriter, r *http.Request) {
	var hb workerproto.Heartbeat
	if err := json.NewDecoder(r.Body).Decode(&hb); err != nil {
		writeJSON(w, http.StatusUnprocessableEntity, map[string]string{"detail": err.Error()})
		return
	}
	o.mu.Lock()
	o.heartbeats = append(o.heartbeats, hb)
	o.changedLocked()
	o.mu.Unlock()
	writeJSON(w, http.StatusOK, workerproto.Success{Success: true})
}

func (o *Orchestrator) status(w http.ResponseWriter, r *http.Request) {
	var st workerproto.JobStatus
	if err := json.NewDecoder(r.Body).Decode(&st); err != nil {
		writeJSON(w, http.StatusUnprocessableEntity, map[string]string{"detail": err.Error()})
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	j := o.jobs[r.PathValue("id")]
	if j == nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"detail": "Job not found"})
		return
	}
	if plugins.Terminal(st.Status) && st.LastSeq > lastSeq(j) {
		writeJSON(w, http.StatusConflict, workerproto.EventAck{LastSeq: lastSeq(j)})
		return
	}
	j.Statuses = append(j.Statuses, st)
	if plugins.Terminal(st.Status) && j.Final == nil {
		f := st
		j.Final = &f
	}
	o.changedLocked()
	writeJSON(w, http.StatusOK, workerproto.Success{Success: true})
}

func (o *Orchestrator) events(w http.ResponseWriter, r *http.Request) {
	o.mu.Lock()
	var drop Drop
	if len(o.drops) > 0 {
		drop, o.drops = o.drops[0], o.drops[1:]
		o.dropped++
	}
	o.mu.Unlock()
	if drop == DropMidBody {
		// Read part of the body, then hang up: the worker sees a broken upload.
		_, _ = io.ReadFull(r.Body, make([]byte, max(r.ContentLength/2, 1)))
		hangUp(w)
		return
	}
	var b workerproto.EventBatch
	if err := json.NewDecoder(r.Body).Decode(&b); err != nil {
		writeJSON(w, http.StatusUnprocessableEntity, map[string]string{"detail": err.Error()})
		return
	}
	o.mu.Lock()
	j := o.jobs[r.PathValue("id")]
	if j == nil {
		o.mu.Unlock()
		writeJSON(w, http.StatusNotFound, map[string]string{"detail": "Job not found"})
		return
	}
	j.Received += len(b.Events)
	last := lastSeq(j)
	if len(b.Events) > 0 && b.Events[0].Seq > last+1 {
		o.mu.Unlock()
		writeJSON(w, http.StatusConflict, workerproto.EventAck{LastSeq: last})
		return
	}
	for _, e := range b.Events {
		if e.Seq == last+1 {
			j.Events = append(j.Events, e)
			last = e.Seq
		}
	}
	o.changedLocked()
	o.mu.Unlock()
	if drop == DropAfterStore {
		hangUp(w)
		return
	}
	writeJSON(w, http.StatusOK, workerproto.EventAck{LastSeq: last})
}

// hangUp closes the request's connection without an answer.
func hangUp(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic("agenttest: the server cannot hijack connections")
	}
	conn, _, err := hj.Hijack()
	if err == nil {
		conn.Close()
	}
}

// Summary is a one-line description of a job's records, for test failures.
func (j *Job) Summary() string {
	var seqs []string
	for _, e := range j.Events {
		seqs = append(seqs, fmt.Sprint(e.Seq))
	}
	var sts []string
	for _, s := range j.Statuses {
		sts = append(sts, s.Status)
	}
	return fmt.Sprintf("seqs [%s] received %d statuses [%s]", strings.Join(seqs, " "), j.Received, strings.Join(sts, " "))
}
