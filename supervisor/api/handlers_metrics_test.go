package api

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestMetricsAccess(t *testing.T) {
	const tok = "0123456789abcdef0123"
	for _, tc := range []struct {
		name         string
		server, sent string
		hasBearer    bool
		local        bool
		want         int
		detail       string
	}{
		{"local, no token configured", "", "", false, true, 0, ""},
		{"remote, no token configured", "", "", false, false, 403, metricsNotLocal},
		{"remote bearer, no token configured", "", tok, true, false, 403, metricsNotLocal},
		{"local bearer, no token configured: an API key, say", "", "st_key", true, true, 0, ""},
		{"remote, right token", tok, tok, true, false, 0, ""},
		{"remote, no token sent", tok, "", false, false, 403, metricsNeedToken},
		{"remote, wrong token", tok, tok + "0", true, false, 403, metricsBadToken},
		{"remote, token prefix", tok, tok[:10], true, false, 403, metricsBadToken},
		{"remote, empty bearer", tok, "", true, false, 403, metricsBadToken},
		{"local, wrong token", tok, "nope", true, true, 403, metricsBadToken},
		{"local, no token sent", tok, "", false, true, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := metricsAccess(tc.server, tc.sent, tc.hasBearer, tc.local)
			if v.status != tc.want || v.detail != tc.detail {
				t.Errorf("metricsAccess = %+v, want %d %q", v, tc.want, tc.detail)
			}
		})
	}
}

func TestRouteLabel(t *testing.T) {
	for in, want := range map[string]string{
		"/health":                                     "/health",
		"/api/jobs/{job_id:[A-Za-z0-9_-]+}":           "/api/jobs/{job_id}",
		"/api/jobs/{job_id:[A-Za-z0-9_-]+}/events":    "/api/jobs/{job_id}/events",
		"/api/users/{id:[0-9]+}/levels":               "/api/users/{id}/levels",
		"/api/configs/{name}":                         "/api/configs/{name}",
		"/x/{a:[0-9]{2}}/{b}":                         "/x/{a}/{b}",
		"/api/approvals/{approval_id:[0-9]+}/approve": "/api/approvals/{approval_id}/approve",
	} {
		if got := routeLabel(in); got != want {
			t.Errorf("routeLabel(%q) = %q, want %q", in, got, want)
		}
	}
}

// observed records what the middleware reports.
type observed struct {
	mu   sync.Mutex
	seen []string
}

func (o *observed) ObserveRequest(route, method string, code int, _ time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.seen = append(o.seen, method+" "+route+" "+http.StatusText(code))
}

func (o *observed) all() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return strings.Join(o.seen, "\n")
}

// TestMetricsRoute: GET /metrics answers loopback callers addressed by a loopback name,
// and callers with the token; everyone else gets 403 with how to get access. Requests
// are observed by route template.
func TestMetricsRoute(t *testing.T) {
	const tok = "scrape-token-0123456789"
	served := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		w.Write([]byte("simpletuner_queue_depth 0\n"))
	})
	obs := &observed{}
	h := newHarness(t, Config{Metrics: served, MetricsToken: tok, Requests: obs})
	for _, tc := range []struct {
		name   string
		q      req
		code   int
		detail string
	}{
		{"loopback", req{method: "GET", path: "/metrics", remote: loopbackAddr}, 200, ""},
		{"remote", req{method: "GET", path: "/metrics"}, 403, metricsNeedToken},
		{"remote, wrong token", req{method: "GET", path: "/metrics", header: map[string]string{"Authorization": "Bearer " + tok + "x"}}, 403, metricsBadToken},
		{"remote, token", req{method: "GET", path: "/metrics", header: map[string]string{"Authorization": "Bearer " + tok}}, 200, ""},
		{"loopback, rebinding name", req{method: "GET", path: "/metrics", remote: loopbackAddr, header: map[string]string{"Host": "evil.example:8001"}}, 403, metricsNeedToken},
		{"loopback peer forwarding for a remote client", req{method: "GET", path: "/metrics", remote: loopbackAddr, header: map[string]string{"X-Forwarded-For": "198.51.100.4"}}, 403, metricsNeedToken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := h.do(tc.q)
			if res.code != tc.code || (tc.detail != "" && res.detail() != tc.detail) {
				t.Errorf("%d %s", res.code, res.body)
			}
			if tc.code == 200 && !strings.Contains(string(res.body), "simpletuner_queue_depth") {
				t.Errorf("body %s", res.body)
			}
		})
	}
	h.do(req{method: "GET", path: "/api/jobs/some-job-id", remote: loopbackAddr})
	h.do(req{method: "GET", path: "/no/such/path/12345", remote: loopbackAddr})
	h.do(req{method: "GET", path: "/api/events", remote: loopbackAddr}) // a stream: left out
	got := obs.all()
	for _, want := range []string{"GET /metrics OK", "GET /metrics Forbidden", "GET /api/jobs/{job_id} Service Unavailable", "GET unmatched Not Found"} {
		if !strings.Contains(got, want) {
			t.Errorf("observed:\n%s\nwant a line %q", got, want)
		}
	}
	for _, bad := range []string{"some-job-id", "12345", "/api/events"} {
		if strings.Contains(got, bad) {
			t.Errorf("observed %q:\n%s", bad, got)
		}
	}

	// Without metrics the route says so; without a token, remote callers learn how to
	// enable one.
	h2 := newHarness(t, Config{})
	if res := h2.do(req{method: "GET", path: "/metrics", remote: loopbackAddr}); res.code != 503 {
		t.Errorf("no metrics: %d %s", res.code, res.body)
	}
	h3 := newHarness(t, Config{Metrics: served})
	if res := h3.do(req{method: "GET", path: "/metrics"}); res.code != 403 || !strings.Contains(res.detail(), "--metrics-token") {
		t.Errorf("remote, no token configured: %d %s", res.code, res.body)
	}
}
