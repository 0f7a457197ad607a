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

// shutdownBody is POST /api/system/shutdown, SimpleTuner's shape: status is always
// "shutting_down", which the original client checks.
type shutdownBody struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

// systemShutdown answers SimpleTuner's shape, then stops the daemon as SIGTERM does: the
// HTTP server drains and the daemon exits 0, while running trainers keep running and the
// next start reattaches them (docs/architecture.md). A second call while stopping gets
// the same status with "already in progress".
func (s *Server) systemShutdown(w http.ResponseWriter, _ *http.Request, p *auth.Principal) error {
	if s.cfg.Shutdown == nil {
		return errorf(http.StatusServiceUnavailable, "This server cannot be shut down through the API; stop it with SIGTERM")
	}
	if s.shuttingDown.Swap(true) {
		writeJSON(w, http.StatusOK, shutdownBody{Status: "shutting_down", Message: "Shutdown already in progress."})
		return nil
	}
	who := "API key"
	if p != nil && p.User != nil {
		who = p.User.Username
	}
	s.log.Info("shutdown requested through the API", "by", who)
	writeJSON(w, http.StatusOK, shutdownBody{Status: "shutting_down",
		Message: "SimpleTuner is shutting down. Running training jobs keep running and are reattached when the server starts again."})
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	s.cfg.Shutdown()
	return nil
}
