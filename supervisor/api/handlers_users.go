package api

import (
	"errors"
	"net/http"
	"strconv"

	"simpletuner/supervisor/auth"
)

type permissionBody struct {
	Name     string `json:"name"`
	Category string `json:"category"`
}

func (s *Server) listUsers(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	q := r.URL.Query()
	limit, err := intParam(q.Get("limit"), 100, 1, 1000, "limit")
	if err != nil {
		return err
	}
	offset, err := intParam(q.Get("offset"), 0, 0, 1<<30, "offset")
	if err != nil {
		return err
	}
	inactive, _ := strconv.ParseBool(q.Get("include_inactive"))
	users, err := s.auth.ListUsers(inactive, limit, offset)
	if err != nil {
		return err
	}
	out := make([]userBody, 0, len(users))
	for _, u := range users {
		out = append(out, toUserBody(u))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func intParam(v string, def, lo, hi int, name string) (int, error) {
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, &validationError{fieldError{Type: "int_parsing", Loc: []string{"query", name}, Msg: "must be an integer from " + strconv.Itoa(lo) + " to " + strconv.Itoa(hi)}}
	}
	return n, nil
}

func (s *Server) createUser(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	var req createUserRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	if req.Password == nil || *req.Password == "" {
		return errorf(http.StatusBadRequest, "Password required for local authentication")
	}
	n := auth.NewUser{Email: req.Email, Username: req.Username, Password: *req.Password, IsAdmin: req.IsAdmin, Levels: req.LevelNames}
	if req.DisplayName != nil {
		n.DisplayName = *req.DisplayName
	}
	u, err := s.auth.CreateUser(r.Context(), n)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, toUserBody(u))
	return nil
}

func (s *Server) getUser(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	u, err := s.auth.GetUser(id)
	if err != nil {
		return notFoundUser(err)
	}
	writeJSON(w, http.StatusOK, toUserBody(u))
	return nil
}

func notFoundUser(err error) error {
	if errors.Is(err, auth.ErrNotFound) {
		return errorf(http.StatusNotFound, "User not found")
	}
	return err
}

func (s *Server) updateUser(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	var req updateUserRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	u, err := s.auth.UpdateUser(r.Context(), id, auth.UserPatch{Email: req.Email, Username: req.Username,
		DisplayName: req.DisplayName, Password: req.Password, IsAdmin: req.IsAdmin, IsActive: req.IsActive, Levels: req.LevelNames})
	if err != nil {
		return notFoundUser(err)
	}
	writeJSON(w, http.StatusOK, toUserBody(u))
	return nil
}

func (s *Server) deleteUser(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	if err := s.auth.DeleteUser(p, id); err != nil {
		return notFoundUser(err)
	}
	writeJSON(w, http.StatusOK, successBody{Success: true})
	return nil
}

func (s *Server) setActive(active bool) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
		id, err := pathID(r, "id")
		if err != nil {
			return err
		}
		if !active && p.User != nil && p.User.ID == id {
			return errorf(http.StatusBadRequest, "You cannot deactivate your own account")
		}
		u, err := s.auth.UpdateUser(r.Context(), id, auth.UserPatch{IsActive: &active})
		if err != nil {
			return notFoundUser(err)
		}
		writeJSON(w, http.StatusOK, userSuccessBody{Success: true, userBody: toUserBody(u)})
		return nil
	}
}

// userSuccessBody answers activate and deactivate: SimpleTuner's {"success": true},
// which its client checks, with the updated user's fields beside it as before.
type userSuccessBody struct {
	Success bool `json:"success"`
	userBody
}

func (s *Server) setLevels(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	var req levelsRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	levels := req.LevelNames
	if levels == nil {
		levels = []string{}
	}
	u, err := s.auth.UpdateUser(r.Context(), id, auth.UserPatch{Levels: &levels})
	if err != nil {
		return notFoundUser(err)
	}
	writeJSON(w, http.StatusOK, toUserBody(u))
	return nil
}

func (s *Server) listLevels(w http.ResponseWriter, _ *http.Request, _ *auth.Principal) error {
	writeJSON(w, http.StatusOK, auth.Levels())
	return nil
}

func (s *Server) listPermissions(w http.ResponseWriter, _ *http.Request, _ *auth.Principal) error {
	out := []permissionBody{}
	for _, p := range auth.Catalogue() {
		cat := p
		for i := range p {
			if p[i] == '.' {
				cat = p[:i]
				break
			}
		}
		out = append(out, permissionBody{Name: p, Category: cat})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) authStatus(w http.ResponseWriter, _ *http.Request, _ *auth.Principal) error {
	st, err := s.auth.Status()
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, authStatusBody{InUse: !st.NeedsSetup, UserCount: st.UserCount})
	return nil
}

func (s *Server) getRegistration(w http.ResponseWriter, _ *http.Request, _ *auth.Principal) error {
	reg, err := s.auth.Registration()
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, reg)
	return nil
}

func (s *Server) putRegistration(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	var req registrationRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	reg, err := s.auth.SetRegistration(req.Enabled, req.DefaultLevel)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, reg)
	return nil
}
