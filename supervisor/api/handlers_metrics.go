package api

import (
	"crypto/subtle"
	"net/http"
	"strings"
	"time"

	"simpletuner/supervisor/auth"
)

// RequestObserver records how long each request took, by route template (the metrics'
// HTTP histogram; supervisor/metrics implements it).
type RequestObserver interface {
	ObserveRequest(route, method string, code int, d time.Duration)
}

// unmatchedRoute is the route label of requests no route matched (404 and 405), so that
// probes of random paths count without adding a series per path.
const unmatchedRoute = "unmatched"

// routeLabel is a route template as the metrics label it: the variables' patterns left
// out ("/api/jobs/{job_id:[A-Za-z0-9_-]+}" → "/api/jobs/{job_id}").
func routeLabel(template string) string {
	var b strings.Builder
	depth := 0
	skipping := false
	for _, c := range template {
		switch {
		case c == '{':
			depth++
			if depth == 1 {
				skipping = false
			}
		case c == '}':
			depth--
			if depth == 0 {
				skipping = false
			}
		case c == ':' && depth == 1:
			skipping = true
		}
		if !skipping || (c == '}' && depth == 0) {
			b.WriteRune(c)
		}
	}
	return b.String()
}

// observe wraps the handler of one route template with the request observer. Streams
// are left out: their duration is the life of the stream, not a response time.
func (s *Server) observe(route string, rt *route, h http.Handler) http.Handler {
	if s.cfg.Requests == nil || (rt != nil && rt.streams()) {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw, ok := w.(*statusWriter)
		if !ok {
			sw = &statusWriter{ResponseWriter: w}
		}
		h.ServeHTTP(sw, r)
		code := sw.status
		if code == 0 {
			code = http.StatusOK // nothing written: net/http answers 200
		}
		s.cfg.Requests.ObserveRequest(route, r.Method, code, time.Since(start))
	})
}

// metricsVerdict is who may scrape GET /metrics: 0 allowed, else the status and message
// of the refusal.
type metricsVerdict struct {
	status int
	detail string
}

// Refusals of GET /metrics; each says how to get access.
const (
	metricsNotLocal = "GET /metrics answers only callers on this machine (addressed as localhost or a loopback address). " +
		"To scrape from elsewhere, start the server with --metrics-token TOKEN (or SIMPLETUNER_METRICS_TOKEN) and send Authorization: Bearer TOKEN"
	metricsNeedToken = "GET /metrics from another machine needs the scrape token: send Authorization: Bearer followed by the server's --metrics-token (SIMPLETUNER_METRICS_TOKEN)"
	metricsBadToken  = "Wrong metrics token: send the server's --metrics-token (SIMPLETUNER_METRICS_TOKEN) as Authorization: Bearer TOKEN"
)

// metricsAccess decides a scrape: a bearer token, when the server has one and the caller
// sends one, must match (compared in constant time; a wrong one is refused even from this
// machine); without a token, only local callers are served.
func metricsAccess(serverToken, bearer string, hasBearer, local bool) metricsVerdict {
	switch {
	case serverToken != "" && hasBearer:
		if subtle.ConstantTimeCompare([]byte(bearer), []byte(serverToken)) == 1 {
			return metricsVerdict{}
		}
		return metricsVerdict{http.StatusForbidden, metricsBadToken}
	case local:
		return metricsVerdict{}
	case serverToken != "":
		return metricsVerdict{http.StatusForbidden, metricsNeedToken}
	default:
		return metricsVerdict{http.StatusForbidden, metricsNotLocal}
	}
}

// bearerToken returns the token of an "Authorization: Bearer …" header.
func bearerToken(r *http.Request) (string, bool) {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimSpace(tok), true
}

// metrics serves the Prometheus metrics to a caller metricsAccess admits. A local caller
// must also name the server by a loopback (or allowed) name, as before setup: a web page
// that re-points its own name at 127.0.0.1 (DNS rebinding) is not local.
func (s *Server) metrics(w http.ResponseWriter, r *http.Request, _ *auth.Principal) error {
	tok, has := bearerToken(r)
	if v := metricsAccess(s.cfg.MetricsToken, tok, has, s.localBeforeSetup(r)); v.status != 0 {
		return errorf(v.status, "%s", v.detail)
	}
	s.cfg.Metrics.ServeHTTP(w, r)
	return nil
}
