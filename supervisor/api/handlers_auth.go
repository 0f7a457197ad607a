package api

import (
	"crypto/subtle"
	"errors"
	"net/http"
	"strconv"

	"github.com/gorilla/mux"

	"simpletuner/supervisor/auth"
)

func (s *Server) setupStatus(w http.ResponseWriter, _ *http.Request, _ *auth.Principal) error {
	st, err := s.auth.Status()
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}

func (s *Server) firstAdmin(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	if s.auth.SetupDone() {
		return auth.ErrSetupDone
	}
	var req setupRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	if !s.localBeforeSetup(r) {
		tok := r.Header.Get("X-Setup-Token")
		if tok == "" {
			tok = req.SetupToken
		}
		if s.cfg.SetupToken == "" || subtle.ConstantTimeCompare([]byte(tok), []byte(s.cfg.SetupToken)) != 1 {
			// The file's path is not told to a caller nobody has authenticated (the
			// operator finds it in the daemon's start-up log).
			return errorf(http.StatusForbidden, "Creating the first administrator needs the bootstrap token unless the request comes from the server machine itself, addressed as localhost or 127.0.0.1 (or a name allowed with --allowed-host): "+
				"send the contents of the file bootstrap-token in the server's state directory (its path is in the daemon's log) as the X-Setup-Token header")
		}
	}
	n := auth.NewUser{Email: req.Email, Username: req.Username, Password: req.Password}
	if req.DisplayName != nil {
		n.DisplayName = *req.DisplayName
	}
	u, err := s.auth.CreateFirstAdmin(r.Context(), n)
	if err != nil {
		return err
	}
	s.afterSetup() // before the answer: a client told "created" finds the token file gone
	tok, ttl, err := s.auth.NewSession(u.ID, true)
	if err != nil {
		return err
	}
	s.setSessionCookie(w, r, tok, ttl)
	writeJSON(w, http.StatusOK, firstAdminBody{Success: true, Message: "Admin account created successfully", User: toUserBody(u)})
	return nil
}

func (s *Server) login(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	var req loginRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	u, tok, ttl, err := s.auth.Login(r.Context(), s.clientAddr(r).String(), req.Username, req.Password, req.RememberMe)
	if err != nil {
		return err
	}
	s.setSessionCookie(w, r, tok, ttl)
	writeJSON(w, http.StatusOK, loginBody{Success: true, User: toUserBody(u)})
	return nil
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	if c, err := r.Cookie(sessionCookie); err == nil {
		if err := s.auth.Logout(c.Value); err != nil {
			return err
		}
	}
	s.clearSessionCookie(w, r)
	writeJSON(w, http.StatusOK, successBody{Success: true})
	return nil
}

func (s *Server) me(w http.ResponseWriter, _ *http.Request, p *auth.Principal) error {
	writeJSON(w, http.StatusOK, toUserBody(p.User))
	return nil
}

func (s *Server) check(w http.ResponseWriter, _ *http.Request, p *auth.Principal) error {
	if p == nil {
		writeJSON(w, http.StatusOK, checkBody{Authenticated: false})
		return nil
	}
	id, admin := p.User.ID, p.User.IsAdmin
	writeJSON(w, http.StatusOK, checkBody{Authenticated: true, UserID: &id, Username: p.User.Username, IsAdmin: &admin})
	return nil
}

func (s *Server) register(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	var req setupRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	n := auth.NewUser{Email: req.Email, Username: req.Username, Password: req.Password}
	if req.DisplayName != nil {
		n.DisplayName = *req.DisplayName
	}
	u, tok, ttl, err := s.auth.Register(r.Context(), s.clientAddr(r).String(), n)
	if err != nil {
		return err
	}
	s.setSessionCookie(w, r, tok, ttl)
	writeJSON(w, http.StatusOK, loginBody{Success: true, User: toUserBody(u)})
	return nil
}

func (s *Server) changePassword(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	var req changePasswordRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	if err := s.auth.ChangePassword(r.Context(), p, req.CurrentPassword, req.NewPassword); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, successBody{Success: true})
	return nil
}

func (s *Server) createAPIKey(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	var req apiKeyRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	key, rec, err := s.auth.CreateAPIKey(p, req.Name, req.ExpiresDays, req.ScopedPermissions)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, apiKeyCreated{Key: key, KeyInfo: toKeyInfo(rec)})
	return nil
}

func (s *Server) listAPIKeys(w http.ResponseWriter, _ *http.Request, p *auth.Principal) error {
	keys, err := s.auth.ListAPIKeys(p)
	if err != nil {
		return err
	}
	out := []apiKeyInfo{}
	for _, k := range keys {
		if k.IsActive {
			out = append(out, toKeyInfo(k))
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) revokeAPIKey(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	id, err := pathID(r, "key_id")
	if err != nil {
		return err
	}
	if err := s.auth.RevokeAPIKey(p, id); err != nil {
		if errors.Is(err, auth.ErrNotFound) {
			return errorf(http.StatusNotFound, "API key not found or already revoked")
		}
		return err
	}
	writeJSON(w, http.StatusOK, successBody{Success: true})
	return nil
}

// pathID parses an integer path variable (the route's regexp already admits digits only).
func pathID(r *http.Request, name string) (int64, error) {
	id, err := strconv.ParseInt(mux.Vars(r)[name], 10, 64)
	if err != nil || id <= 0 {
		return 0, errorf(http.StatusNotFound, "Not found")
	}
	return id, nil
}
