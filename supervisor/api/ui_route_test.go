package api

import (
	"strings"
	"testing"

	"simpletuner/supervisor/api/ui"
)

// TestStatusPageRoutes: / (and /web/trainer, where SimpleTuner's own / leads) answer the
// status page to anyone with its strict policy in place of the daemon-wide one; the page
// an anonymous caller gets is the login form and carries no data; its assets have their
// types.
func TestStatusPageRoutes(t *testing.T) {
	h := newHarness(t, Config{})
	_, key := h.setup()
	for _, path := range []string{"/", "/web/trainer"} {
		for _, method := range []string{"GET", "HEAD"} {
			r := h.do(req{method: method, path: path})
			if r.code != 200 || r.header.Get("Content-Type") != "text/html; charset=utf-8" {
				t.Fatalf("%s %s: %d %q", method, path, r.code, r.header.Get("Content-Type"))
			}
			if got := r.header.Get("Content-Security-Policy"); got != ui.ContentSecurityPolicy {
				t.Errorf("%s %s: policy %q", method, path, got)
			}
			if r.header.Get("X-Content-Type-Options") != "nosniff" || r.header.Get("X-Frame-Options") != "DENY" {
				t.Errorf("%s %s lost the common headers: %v", method, path, r.header)
			}
		}
	}
	anon := string(h.do(req{method: "GET", path: "/"}).body)
	withKey := string(h.do(req{method: "GET", path: "/", key: key}).body)
	if anon != withKey {
		t.Error("the page differs for a logged-in caller: it must hold no data, the script reads the API")
	}
	if !strings.Contains(anon, `id="login-form"`) || !strings.Contains(anon, `type="password"`) {
		t.Error("the page has no login form")
	}
	for _, leak := range []string{"admin@", `"admin"`, key} {
		if strings.Contains(anon, leak) {
			t.Errorf("the anonymous page contains %q", leak)
		}
	}
	for file, ct := range map[string]string{"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"} {
		r := h.do(req{method: "GET", path: "/ui/" + file})
		if r.code != 200 || r.header.Get("Content-Type") != ct || r.header.Get("Content-Security-Policy") != ui.ContentSecurityPolicy {
			t.Errorf("/ui/%s: %d %q %q", file, r.code, r.header.Get("Content-Type"), r.header.Get("Content-Security-Policy"))
		}
	}
	if r := h.do(req{method: "GET", path: "/ui/missing.js"}); r.code != 404 {
		t.Errorf("/ui/missing.js: %d", r.code)
	}
	// The data the page shows stays behind the API's checks.
	if r := h.do(req{method: "GET", path: "/api/jobs"}); r.code != 401 {
		t.Errorf("anonymous /api/jobs: %d", r.code)
	}
}
