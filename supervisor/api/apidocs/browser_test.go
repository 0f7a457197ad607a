package apidocs

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// sampleSpec exercises what the viewers render: tags, a request body,
// $refs into components, an enum and a security scheme.
const sampleSpec = `{
  "openapi": "3.0.3",
  "info": {"title": "simpletuner", "version": "test"},
  "tags": [{"name": "training"}],
  "components": {
    "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}},
    "schemas": {
      "Job": {"type": "object", "required": ["job_id"], "properties": {
        "job_id": {"type": "string"},
        "status": {"type": "string", "enum": ["queued", "running", "completed"]}}}
    }
  },
  "security": [{"apiKey": []}],
  "paths": {
    "/api/training/start": {"post": {
      "tags": ["training"], "summary": "Start a training run", "operationId": "startTraining",
      "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}},
      "responses": {"200": {"description": "started",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}}}}}
  }
}`

// findBrowser returns a headless-capable Chromium, or "".
func findBrowser() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// docsServer serves the pages and the sample spec under a chosen
// Content-Security-Policy and records the paths the browser asked for.
type docsServer struct {
	router http.Handler

	mu        sync.Mutex
	policy    string
	requested []string
}

func (s *docsServer) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	s.mu.Lock()
	s.requested = append(s.requested, req.URL.Path)
	policy := s.policy
	s.mu.Unlock()
	// As daemon middleware would: a policy set before the handler runs.
	w.Header().Set("Content-Security-Policy", policy)
	if req.URL.Path == DefaultSpecURL {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(sampleSpec))
		return
	}
	s.router.ServeHTTP(w, req)
}

// reset sets the policy for the next page and forgets earlier requests.
func (s *docsServer) reset(policy string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.policy, s.requested = policy, nil
}

func (s *docsServer) paths() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.requested...)
}

// TestPagesRenderInBrowser loads both pages in headless Chromium, under the
// package's own policy and under the daemon-wide one, and checks that the
// viewers rendered the spec, that the browser reported no CSP violation or
// script error, and that it asked the server only for the page, its assets
// and the spec. Skipped without a Chromium on PATH or with -short.
func TestPagesRenderInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	browser := findBrowser()
	if browser == "" {
		t.Skip("no chromium on PATH")
	}
	ds := &docsServer{router: newRouter(New(""))}
	srv := httptest.NewServer(ds)
	defer srv.Close()

	policies := map[string]string{
		"own": ContentSecurityPolicy,
		// The daemon-wide policy the pages were specified against.
		"daemon": "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; " +
			"img-src 'self' data:; worker-src 'self' blob:",
	}
	for name, csp := range policies {
		for _, p := range []string{SwaggerPath, ReDocPath} {
			t.Run(name+strings.ReplaceAll(p, "/", "-"), func(t *testing.T) {
				ds.reset(csp)
				checkPage(t, browser, srv.URL, p, ds.paths)
			})
		}
	}
}

// checkPage loads srvURL+p in the browser and checks the rendered DOM, the
// console, and the requests the server saw (from paths).
func checkPage(t *testing.T, browser, srvURL, p string, paths func() []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, browser,
		"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--disable-extensions", "--disable-background-networking",
		"--user-data-dir="+t.TempDir(),
		"--enable-logging=stderr", "--v=0",
		"--virtual-time-budget=10000",
		"--dump-dom", srvURL+p)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	dom, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", browser, err, stderr.String())
	}
	for _, line := range strings.Split(stderr.String(), "\n") {
		if !strings.Contains(line, ":CONSOLE") {
			continue
		}
		l := strings.ToLower(line)
		if strings.Contains(l, "content security policy") || strings.Contains(l, "refused") ||
			strings.Contains(l, "uncaught") || strings.Contains(l, "error") {
			t.Errorf("browser console: %s", line)
		}
	}
	if html := string(dom); !strings.Contains(html, "Start a training run") {
		t.Errorf("%s: the operation was not rendered; DOM:\n%.2000s", p, html)
	}
	sawSpec := false
	requested := paths()
	for _, path := range requested {
		switch {
		case path == DefaultSpecURL:
			sawSpec = true
		case path == p, strings.HasPrefix(path, AssetsPath):
		default:
			t.Errorf("%s: browser requested unexpected %s", p, path)
		}
	}
	if !sawSpec {
		t.Errorf("%s: the spec was never fetched (requests: %v)", p, requested)
	}
}
