package api

import (
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strings"
	"time"

	"simpletuner/supervisor/api/apidocs"
	"simpletuner/supervisor/auth"
)

// sessionCookie is SimpleTuner's cookie name; clients and proxies know it.
const sessionCookie = "simpletuner_session"

// common sets the headers every response carries and turns a panic into a 500.
func (s *Server) common(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "strict-origin-when-cross-origin")
		h.Set("Content-Security-Policy", apidocs.ContentSecurityPolicy)
		h.Set("Cache-Control", "no-store")
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("handler panic", "method", r.Method, "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
				if sw.status == 0 {
					writeJSON(sw, http.StatusInternalServerError, detailBody{Detail: "Internal server error"})
				}
			}
			s.log.Debug("request", "method", r.Method, "path", r.URL.Path, "status", sw.status, "dur", time.Since(start))
		}()
		next.ServeHTTP(sw, r)
	})
}

// statusWriter remembers the status for logging. It forwards Flush and Unwrap so
// streaming handlers and http.ResponseController keep working.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// wrap puts authentication, the permission check, cross-origin protection and the body
// cap in front of a route's handler. All of it runs before the body is read.
func (s *Server) wrap(rt *route) http.Handler {
	maxBody := rt.maxBody
	if maxBody == 0 {
		maxBody = s.cfg.MaxBodyBytes
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.auth.SetupDone() {
			defer s.afterSetup()
		}
		var p *auth.Principal
		var err error
		if rt.access == workerAuth {
			r, err = s.authWorker(r)
		} else {
			p, err = s.authorize(rt, r)
		}
		if err != nil {
			writeError(w, s.log, r, err)
			return
		}
		if r.Body != nil {
			if !rt.streams() {
				r.Body = s.bodyDeadline(w, r)
			}
			r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		}
		if rt.raw != nil {
			rt.raw.ServeHTTP(w, r)
			return
		}
		if err := rt.h(w, r, p); err != nil {
			writeError(w, s.log, r, err)
		}
	})
}

// afterSetup runs the operator's hook (the daemon deletes the bootstrap token file) once,
// after the first request that completed setup, whichever route made the administrator.
func (s *Server) afterSetup() {
	if s.cfg.OnSetupDone != nil && s.auth.SetupDone() {
		s.setupOnce.Do(s.cfg.OnSetupDone)
	}
}

// authorize resolves the caller and checks the route's access rule.
func (s *Server) authorize(rt *route, r *http.Request) (*auth.Principal, error) {
	if _, ok := r.URL.Query()["api_key"]; ok {
		// Keys in URLs end up in access logs, proxies and Referer headers.
		return nil, errorf(http.StatusBadRequest, "API keys are accepted only in the X-API-Key or Authorization header, never in the URL")
	}
	key := apiKeyFrom(r)
	if isUnsafe(r.Method) && key == "" {
		// Cookie (or local) callers: refuse cross-site requests. curl and scripts send no
		// Origin/Sec-Fetch-Site and pass; requests with an API key cannot be forged by a form.
		if err := s.csrf.Check(r); err != nil {
			return nil, errorf(http.StatusForbidden, "Cross-origin request refused: %v", err)
		}
	}
	p, err := s.principal(r, key)
	if err != nil {
		if rt.access == public {
			// Public routes answer anonymous callers, even those with stale credentials.
			return nil, nil
		}
		return nil, err
	}
	if rt.perm != "" && !p.Can(rt.perm) {
		return nil, errorf(http.StatusForbidden, "Permission denied: %s", rt.perm)
	}
	return p, nil
}

// principal resolves the caller. Before setup, callers on the server machine itself that
// name it by a loopback name act as the local administrator (localBeforeSetup); everyone
// else is refused.
func (s *Server) principal(r *http.Request, key string) (*auth.Principal, error) {
	if !s.auth.SetupDone() {
		if s.localBeforeSetup(r) {
			return s.auth.LocalAdmin(), nil
		}
		if s.isLocal(r) {
			return nil, errForeignHost
		}
		return nil, auth.ErrSetupRequired
	}
	tok := ""
	if c, err := r.Cookie(sessionCookie); err == nil {
		tok = c.Value
	}
	return s.auth.Authenticate(key, tok)
}

// apiKeyFrom returns the API key from X-API-Key or "Authorization: Bearer st_…".
func apiKeyFrom(r *http.Request) string {
	if k := r.Header.Get("X-API-Key"); k != "" {
		return strings.TrimSpace(k)
	}
	if a := r.Header.Get("Authorization"); a != "" {
		if scheme, tok, ok := strings.Cut(a, " "); ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(tok)
		}
	}
	return ""
}

func isUnsafe(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	return true
}

// clientAddr is the caller's address: the peer, or, when the peer is a trusted proxy, the
// rightmost X-Forwarded-For hop that is not itself a trusted proxy.
func (s *Server) clientAddr(r *http.Request) netip.Addr {
	peer := peerAddr(r)
	if !s.trusted(peer) {
		return peer
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break
		}
		a = a.Unmap()
		if !s.trusted(a) {
			return a
		}
		peer = a
	}
	return peer
}

func peerAddr(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap()
}

func (s *Server) trusted(a netip.Addr) bool {
	for _, p := range s.cfg.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// isLocal reports whether the caller is on the server machine. A loopback peer that
// forwards for someone else (a reverse proxy on the same host) is not local unless the
// operator declared it a trusted proxy and the forwarded client is loopback too:
// otherwise the whole internet would be "local" behind nginx.
func (s *Server) isLocal(r *http.Request) bool {
	peer := peerAddr(r)
	if !peer.IsLoopback() {
		return false
	}
	forwarded := r.Header.Get("X-Forwarded-For") != "" || r.Header.Get("Forwarded") != "" || r.Header.Get("X-Real-IP") != ""
	if !forwarded {
		return true
	}
	return s.trusted(peer) && s.clientAddr(r).IsLoopback()
}

// isHTTPS reports whether the client reached us over TLS, directly or through a trusted
// proxy that says so.
func (s *Server) isHTTPS(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	return s.trusted(peerAddr(r)) && strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

// setSessionCookie issues the session cookie.
func (s *Server) setSessionCookie(w http.ResponseWriter, r *http.Request, tok string, ttl time.Duration) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: tok, Path: "/", MaxAge: int(ttl.Seconds()),
		HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: s.isHTTPS(r)})
}

func (s *Server) clearSessionCookie(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: s.isHTTPS(r)})
}
