package ui

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, path string, hdr map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest("GET", path, nil)
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// TestServesPageAndAssetsWithTypesAndPolicy: every file has its content type, the strict
// policy, an ETag that answers 304, and unknown names are 404.
func TestServesPageAndAssetsWithTypesAndPolicy(t *testing.T) {
	u, err := New()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		h          http.Handler
		path, want string
	}{
		{u.Page(), "/", "text/html; charset=utf-8"},
		{u.Assets(), "/ui/app.js", "text/javascript; charset=utf-8"},
		{u.Assets(), "/ui/app.css", "text/css; charset=utf-8"},
	} {
		w := get(t, c.h, c.path, nil)
		if w.Code != 200 || w.Header().Get("Content-Type") != c.want || w.Body.Len() == 0 {
			t.Errorf("%s: %d %q (%d bytes), want 200 %q", c.path, w.Code, w.Header().Get("Content-Type"), w.Body.Len(), c.want)
		}
		if got := w.Header().Get("Content-Security-Policy"); got != ContentSecurityPolicy {
			t.Errorf("%s: policy %q", c.path, got)
		}
		etag := w.Header().Get("ETag")
		if w2 := get(t, c.h, c.path, map[string]string{"If-None-Match": etag}); etag == "" || w2.Code != http.StatusNotModified {
			t.Errorf("%s: ETag %q answered %d to If-None-Match", c.path, etag, w2.Code)
		}
	}
	for _, p := range []string{"/ui/index.html", "/ui/nope.js", "/ui/../ui.go"} {
		if w := get(t, u.Assets(), p, nil); w.Code != 404 {
			t.Errorf("%s: %d, want 404", p, w.Code)
		}
	}
}

// TestPolicyIsStrict holds the policy to what the brief asks: scripts and styles only
// from the daemon, nothing inline, nothing from elsewhere.
func TestPolicyIsStrict(t *testing.T) {
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'", "frame-ancestors 'none'", "base-uri 'none'"} {
		if !strings.Contains(ContentSecurityPolicy, want) {
			t.Errorf("policy lacks %q: %s", want, ContentSecurityPolicy)
		}
	}
	for _, bad := range []string{"unsafe-inline", "unsafe-eval", "http:", "https:", "*"} {
		if strings.Contains(ContentSecurityPolicy, bad) {
			t.Errorf("policy allows %q: %s", bad, ContentSecurityPolicy)
		}
	}
}

// TestPageNeedsNothingInlineOrRemote: the HTML has no inline script, style or handler and
// loads nothing from another host; the script stays under 150 KB and never parses data as
// markup.
func TestPageNeedsNothingInlineOrRemote(t *testing.T) {
	page, _ := files.ReadFile("web/index.html")
	js, _ := files.ReadFile("web/app.js")
	html := string(page)
	for _, m := range regexp.MustCompile(`(?s)<script([^>]*)>(.*?)</script>`).FindAllStringSubmatch(html, -1) {
		if !strings.Contains(m[1], "src=") || strings.TrimSpace(m[2]) != "" {
			t.Errorf("index.html has an inline script: %s", m[0])
		}
	}
	for _, re := range []string{`\sstyle=`, `\son[a-z]+=`, `<style`, `(?:src|href)="(?:https?:)?//`} {
		if m := regexp.MustCompile(re).FindString(html); m != "" {
			t.Errorf("index.html has %q (matched %s)", m, re)
		}
	}
	if !strings.Contains(html, `<script src="/ui/app.js"`) || !strings.Contains(html, `href="/ui/app.css"`) {
		t.Error("index.html does not load /ui/app.js and /ui/app.css")
	}
	if len(js) >= 150<<10 {
		t.Errorf("app.js is %d bytes, want under 150 KB", len(js))
	}
	for _, sink := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "setAttribute('style'", "on' +"} {
		if strings.Contains(string(js), sink) {
			t.Errorf("app.js uses %s", sink)
		}
	}
}
