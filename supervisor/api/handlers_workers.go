package api

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/gorilla/mux"

	"simpletuner/plugins/workerproto"
	"simpletuner/supervisor/auth"
	"simpletuner/supervisor/workers"
)

// permWorkers guards the admin routes of remote workers.
const permWorkers = "admin.workers"

// maxEventBatchBytes caps one event upload of a worker (it sends batches of at most
// 1 MiB; the rest is headroom for encoding).
const maxEventBatchBytes = 8 << 20

// workerStreamWrite bounds one write of the dispatch stream: a worker that does not take
// its bytes is dropped (it reconnects).
const workerStreamWrite = 10 * time.Second

// workerKey is the request context key of the worker a worker route authenticated.
type workerKey struct{}

// workerOf returns the id of the worker that called a worker route.
func workerOf(r *http.Request) string {
	id, _ := r.Context().Value(workerKey{}).(string)
	return id
}

// authWorker resolves the X-Worker-Token of a worker route into the request's context.
func (s *Server) authWorker(r *http.Request) (*http.Request, error) {
	tok := r.Header.Get(workerproto.HeaderToken)
	if tok == "" {
		return nil, workers.ErrInvalidToken
	}
	if s.cfg.Workers == nil {
		return nil, errorf(http.StatusServiceUnavailable, "Remote workers not available on this server")
	}
	id, err := s.cfg.Workers.Authenticate(tok)
	if err != nil {
		return nil, err
	}
	return r.WithContext(context.WithValue(r.Context(), workerKey{}, id)), nil
}

// withWorkers answers 503 while the server has no worker registry.
func (s *Server) withWorkers(h handlerFunc) handlerFunc {
	return requires(func() bool { return s.cfg.Workers != nil }, "Remote workers", h)
}

// workersListBody is GET /api/admin/workers.
type workersListBody struct {
	Workers []workers.View `json:"workers"`
	Total   int            `json:"total"`
}

// workerActionBody answers delete and drain.
type workerActionBody struct {
	Success  bool   `json:"success"`
	WorkerID string `json:"worker_id"`
	Status   string `json:"status,omitempty"`
}

// behindBody is the 409 of a worker that must upload events first.
type behindBody struct {
	Detail  string `json:"detail"`
	LastSeq uint64 `json:"last_seq"`
}

// baseURL is the URL this request came to (scheme and host), for connection commands.
func (s *Server) baseURL(r *http.Request) string {
	scheme := "http"
	if s.isHTTPS(r) {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

func (s *Server) createWorker(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	var req workers.CreateRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	wk, token, err := s.cfg.Workers.Create(req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, workers.Credentials{WorkerID: wk.ID, Token: token, ConnectionCommand: s.cfg.Workers.ConnectionCommand(s.baseURL(r), token)})
	return nil
}

func (s *Server) listWorkers(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	status, err := workers.ParseStatusFilter(r.URL.Query().Get("status_filter"))
	if err != nil {
		return err
	}
	ws := s.cfg.Workers.List(status)
	writeJSON(w, http.StatusOK, workersListBody{Workers: ws, Total: len(ws)})
	return nil
}

func (s *Server) deleteWorker(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	force := false
	if v := r.URL.Query().Get("force"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return errorf(http.StatusBadRequest, "force must be true or false, not %q", v)
		}
		force = b
	}
	id := mux.Vars(r)["worker_id"]
	if err := s.cfg.Workers.Delete(id, force); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, workerActionBody{Success: true, WorkerID: id})
	return nil
}

func (s *Server) drainWorker(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	wk, err := s.cfg.Workers.Drain(mux.Vars(r)["worker_id"])
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, workerActionBody{Success: true, WorkerID: wk.ID, Status: wk.Status})
	return nil
}

func (s *Server) rotateWorkerToken(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	id := mux.Vars(r)["worker_id"]
	token, err := s.cfg.Workers.RotateToken(id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, workers.Credentials{WorkerID: id, Token: token, ConnectionCommand: s.cfg.Workers.ConnectionCommand(s.baseURL(r), token)})
	return nil
}

func (s *Server) workerRegister(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	var req workerproto.RegisterRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	resp, err := s.cfg.Workers.Register(workerOf(r), req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// workerStream serves the dispatch stream: "event: <type>" and "data: <json>" per event.
func (s *Server) workerStream(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	st, err := s.cfg.Workers.OpenStream(workerOf(r), r.URL.Query().Get("worker_id"))
	if err != nil {
		return err
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("Cache-Control", "no-cache, no-store")
	hd.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	_ = st.Run(r.Context(), func(typ string, data []byte) error {
		_ = rc.SetWriteDeadline(time.Now().Add(workerStreamWrite))
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", typ, data); err != nil {
			return err
		}
		return rc.Flush()
	})
	return nil
}

func (s *Server) workerHeartbeat(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	var hb workerproto.Heartbeat
	if err := decodeJSON(r, &hb); err != nil {
		return err
	}
	if err := s.cfg.Workers.Heartbeat(workerOf(r), hb); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, workerproto.Success{Success: true})
	return nil
}

func (s *Server) workerJobStatus(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	var st workerproto.JobStatus
	if err := decodeJSON(r, &st); err != nil {
		return err
	}
	if err := s.cfg.Workers.JobStatus(workerOf(r), mux.Vars(r)["job_id"], st); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, workerproto.Success{Success: true})
	return nil
}

func (s *Server) workerJobEvents(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	var b workerproto.EventBatch
	if err := decodeJSON(r, &b); err != nil {
		return err
	}
	ack, err := s.cfg.Workers.Events(workerOf(r), mux.Vars(r)["job_id"], b)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, ack)
	return nil
}
