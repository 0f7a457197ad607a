package api

import (
	"errors"
	"net/http"
	"strings"

	"github.com/gorilla/mux"

	"simpletuner/store"
	"simpletuner/supervisor/auth"
	"simpletuner/supervisor/schedule"
)

// scheduleBody is a schedule as the API shows it (part "schedule", issue 17).
type scheduleBody struct {
	ID           string          `json:"id"`
	Name         string          `json:"name"`
	Spec         string          `json:"spec"`
	Action       string          `json:"action"`
	Params       schedule.Params `json:"params"`
	Enabled      bool            `json:"enabled"`
	MissedPolicy string          `json:"missed_policy"`
	OwnerID      int64           `json:"owner_id"`
	Owner        string          `json:"owner"`
	// System marks the daemon's own maintenance: read-only, listed to administrators.
	System      bool    `json:"system"`
	CreatedAt   string  `json:"created_at"`
	UpdatedAt   string  `json:"updated_at"`
	LastRunAt   *string `json:"last_run_at"`
	NextRunAt   *string `json:"next_run_at"`
	Runs        int     `json:"runs"`
	LastOutcome string  `json:"last_outcome,omitempty"`
	LastError   string  `json:"last_error,omitempty"`
	LastJobID   string  `json:"last_job_id,omitempty"`
}

func toScheduleBody(sc *store.Schedule) scheduleBody {
	params := sc.Action
	params.Kind = "" // shown as action
	return scheduleBody{ID: sc.ID, Name: sc.Name, Spec: sc.Spec, Action: sc.Action.Kind, Enabled: sc.Enabled, MissedPolicy: sc.MissedPolicy, Params: params,
		OwnerID: sc.OwnerID, Owner: sc.Owner, System: sc.System, CreatedAt: isoTime(sc.CreatedAt), UpdatedAt: isoTime(sc.UpdatedAt),
		LastRunAt: isoPtr(sc.LastRunAt), NextRunAt: isoPtr(sc.NextRunAt), Runs: sc.Runs,
		LastOutcome: sc.LastOutcome, LastError: sc.LastError, LastJobID: sc.LastJobID}
}

type schedulesBody struct {
	Schedules []scheduleBody `json:"schedules"`
	Total     int            `json:"total"`
}

// scheduleRunBody answers POST /api/schedules/{id}/run: the run's result and the
// schedule after it.
type scheduleRunBody struct {
	Result   schedule.Result `json:"result"`
	Schedule scheduleBody    `json:"schedule"`
}

// withSchedules answers 503 when the server runs without a scheduler (API tests do).
func (s *Server) withSchedules(h handlerFunc) handlerFunc {
	return requires(func() bool { return s.cfg.Schedules != nil }, "Schedules are", h)
}

// scheduleError maps the schedule service's errors to API errors.
func scheduleError(err error) error {
	var fe *schedule.FieldError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &fe):
		return &validationError{fieldError{Type: "value_error", Loc: append([]string{"body"}, strings.Split(fe.Field, ".")...), Msg: fe.Msg}}
	case errors.Is(err, schedule.ErrNotFound):
		return errorf(http.StatusNotFound, "Schedule not found")
	case errors.Is(err, schedule.ErrForbidden), errors.Is(err, schedule.ErrReadOnly):
		return errorf(http.StatusForbidden, "%s", upperFirst(err.Error()))
	}
	return err
}

func (s *Server) listSchedules(w http.ResponseWriter, _ *http.Request, p *auth.Principal) error {
	all, err := s.cfg.Schedules.List(p)
	if err != nil {
		return err
	}
	out := schedulesBody{Schedules: make([]scheduleBody, 0, len(all)), Total: len(all)}
	for _, sc := range all {
		out.Schedules = append(out.Schedules, toScheduleBody(sc))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) createSchedule(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	var req schedule.Request
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	sc, err := s.cfg.Schedules.Create(p, req)
	if err != nil {
		return scheduleError(err)
	}
	writeJSON(w, http.StatusCreated, toScheduleBody(sc))
	return nil
}

func (s *Server) getSchedule(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	sc, err := s.cfg.Schedules.Get(p, mux.Vars(r)["schedule_id"])
	if err != nil {
		return scheduleError(err)
	}
	writeJSON(w, http.StatusOK, toScheduleBody(sc))
	return nil
}

func (s *Server) putSchedule(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	var req schedule.Request
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	sc, err := s.cfg.Schedules.Update(p, mux.Vars(r)["schedule_id"], req)
	if err != nil {
		return scheduleError(err)
	}
	writeJSON(w, http.StatusOK, toScheduleBody(sc))
	return nil
}

func (s *Server) deleteSchedule(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	if err := s.cfg.Schedules.Delete(p, mux.Vars(r)["schedule_id"]); err != nil {
		return scheduleError(err)
	}
	writeJSON(w, http.StatusOK, successBody{Success: true})
	return nil
}

func (s *Server) runSchedule(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	sc, res, err := s.cfg.Schedules.RunNow(r.Context(), p, mux.Vars(r)["schedule_id"])
	if err != nil {
		return scheduleError(err)
	}
	writeJSON(w, http.StatusOK, scheduleRunBody{Result: res, Schedule: toScheduleBody(sc)})
	return nil
}
