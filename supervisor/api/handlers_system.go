package api

import (
	"net/http"

	"simpletuner/internal/buildinfo"
	"simpletuner/supervisor/auth"
)

type versionBody = buildinfo.Info

func (s *Server) health(w http.ResponseWriter, _ *http.Request, _ *auth.Principal) error {
	writeJSON(w, http.StatusOK, healthBody{Status: "healthy", Mode: "unified"})
	return nil
}

func (s *Server) versionInfo(w http.ResponseWriter, _ *http.Request, _ *auth.Principal) error {
	writeJSON(w, http.StatusOK, s.version)
	return nil
}

func (s *Server) openAPIDoc(w http.ResponseWriter, _ *http.Request, _ *auth.Principal) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	_, err := w.Write(s.spec)
	return err
}
