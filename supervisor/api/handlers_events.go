package api

import (
	"errors"
	"net/http"
	"strconv"
	"strings"

	"simpletuner/supervisor/auth"
	"simpletuner/supervisor/events"
)

// eventsBody answers GET /api/training/events (SimpleTuner's shape, extended: every job's
// events by server-wide index, not only the current job's).
type eventsBody struct {
	Events []*events.Event `json:"events"`
	// JobID is the job_id asked for, else the current job (null when none runs).
	JobID *string `json:"job_id"`
	// NextIndex is the since_index of the next call.
	NextIndex uint64 `json:"next_index"`
	// OldestIndex is the oldest index still stored.
	OldestIndex uint64 `json:"oldest_index"`
	// Reset is true when events after since_index were already deleted by retention
	// (or since_index is unknown here): the client should reload its state.
	Reset bool `json:"reset,omitempty"`
}

// eventQuery are the query parameters every event route takes.
var eventQuery = []queryParam{
	{"since_index", "integer", "return events with a larger index (streams: resume point, like the Last-Event-ID header)"},
	{"job_id", "string", "only this job's events"},
	{"types", "string", "comma-separated event types; a trailing .* matches a prefix (training.*)"},
}

// withEvents answers 503 when the server runs without the event hub.
func (s *Server) withEvents(h handlerFunc) handlerFunc {
	return requires(func() bool { return s.cfg.Events != nil }, "Events are", h)
}

// eventFilter builds the filter of an event request: what the caller may see (decideJob:
// their own jobs unless job.view.all), job_id and types. A job_id that does not exist or
// that the caller may not see answers 404 "Job not found" either way.
func (s *Server) eventFilter(r *http.Request, p *auth.Principal) (string, func(*events.Event) bool, error) {
	q := r.URL.Query()
	jobID := q.Get("job_id")
	if jobID != "" && s.cfg.Jobs != nil {
		if _, err := s.jobFor(p, jobID, actView); err != nil {
			return "", nil, err
		}
	}
	var exact map[string]bool
	var prefixes []string
	if t := q.Get("types"); t != "" {
		exact = map[string]bool{}
		for _, name := range strings.Split(t, ",") {
			name = strings.TrimSpace(name)
			switch {
			case name == "":
			case strings.HasSuffix(name, "*"):
				prefixes = append(prefixes, strings.TrimSuffix(name, "*"))
			default:
				exact[name] = true
			}
		}
	}
	keep := func(e *events.Event) bool {
		if decideJob(p, e.Owner(), actView) != jobAllowed {
			return false
		}
		if jobID != "" && e.JobID != jobID {
			return false
		}
		if exact == nil || exact[e.Type] {
			return true
		}
		for _, pre := range prefixes {
			if strings.HasPrefix(e.Type, pre) {
				return true
			}
		}
		return false
	}
	return jobID, keep, nil
}

// trainingEvents answers GET /api/training/events?since_index=N.
func (s *Server) trainingEvents(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	jobID, keep, err := s.eventFilter(r, p)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	var since uint64
	if v := q.Get("since_index"); v != "" {
		if since, err = strconv.ParseUint(v, 10, 64); err != nil {
			return &validationError{fieldError{Type: "int_parsing", Loc: []string{"query", "since_index"}, Msg: "Input should be a valid integer"}}
		}
	}
	limit := 1000
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > 10000 {
			return &validationError{fieldError{Type: "int_parsing", Loc: []string{"query", "limit"}, Msg: "Input should be an integer from 1 to 10000"}}
		}
	}
	pg, err := s.cfg.Events.Read(events.Query{Since: since, JobID: jobID, Limit: limit, Keep: keep})
	if err != nil {
		return err
	}
	body := eventsBody{Events: pg.Events, NextIndex: pg.Next, OldestIndex: pg.Oldest, Reset: pg.Reset}
	if body.Events == nil {
		body.Events = []*events.Event{}
	}
	switch {
	case jobID != "":
		body.JobID = &jobID
	case s.cfg.Jobs != nil:
		if cur, err := s.currentJob(p, actView); err == nil && cur != nil {
			body.JobID = &cur.ID
		}
	}
	writeJSON(w, http.StatusOK, body)
	return nil
}

// streamOptions builds the options of an event stream: filter, resume point, and the
// credential re-check run at every heartbeat.
func (s *Server) streamOptions(r *http.Request, p *auth.Principal) (events.StreamOptions, error) {
	_, keep, err := s.eventFilter(r, p)
	if err != nil {
		return events.StreamOptions{}, err
	}
	since, has, err := events.ResumeIndex(r)
	if err != nil {
		return events.StreamOptions{}, errorf(http.StatusBadRequest, "%v", err)
	}
	key := apiKeyFrom(r)
	tok := ""
	if c, err := r.Cookie(sessionCookie); err == nil {
		tok = c.Value
	}
	local := p.IsLocal()
	check := func() error {
		if local {
			if s.auth.SetupDone() {
				return auth.ErrUnauthenticated
			}
			return nil
		}
		_, err := s.auth.Authenticate(key, tok)
		return err
	}
	return events.StreamOptions{Since: since, HasSince: has, Keep: keep, Check: check}, nil
}

// streamError maps hub errors that happen before a stream starts.
func streamError(err error) error {
	switch {
	case errors.Is(err, events.ErrTooManyClients):
		return errorf(http.StatusServiceUnavailable, "Connection limit reached: too many concurrent connections. Please try again later.")
	case errors.Is(err, events.ErrClosed):
		return errorf(http.StatusServiceUnavailable, "The server is shutting down")
	}
	return nil // the stream ran; its end is not an HTTP error
}

// eventStream serves GET /api/events: Server-Sent Events.
func (s *Server) eventStream(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	o, err := s.streamOptions(r, p)
	if err != nil {
		return err
	}
	return streamError(s.cfg.Events.ServeSSE(w, r, o))
}

// trainingEventStream serves GET /api/training/events/stream: a WebSocket when the
// client asks for an upgrade, Server-Sent Events otherwise.
func (s *Server) trainingEventStream(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	o, err := s.streamOptions(r, p)
	if err != nil {
		return err
	}
	if events.IsWebSocket(r) {
		return streamError(s.cfg.Events.ServeWS(w, r, o))
	}
	return streamError(s.cfg.Events.ServeSSE(w, r, o))
}
