package api

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/gorilla/mux"
)

// fillVars turns a route template into a concrete path.
func fillVars(tmpl string) string {
	return regexp.MustCompile(`\{[^}]+\}`).ReplaceAllStringFunc(tmpl, func(v string) string {
		if strings.Contains(v, "[0-9]") {
			return "1"
		}
		return "x"
	})
}

// walk lists every (method, template) the router serves.
func walk(t *testing.T, r *mux.Router) [][2]string {
	t.Helper()
	var out [][2]string
	err := r.Walk(func(route *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		tmpl, err := route.GetPathTemplate()
		if err != nil {
			return err
		}
		methods, err := route.GetMethods()
		if err != nil {
			t.Errorf("route %s has no method restriction", tmpl)
			return nil
		}
		for _, m := range methods {
			out = append(out, [2]string{m, tmpl})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// readCounter is a request body that records whether anything read it.
type readCounter struct {
	mu   sync.Mutex
	read bool
}

func (r *readCounter) Read(p []byte) (int, error) {
	r.mu.Lock()
	r.read = true
	r.mu.Unlock()
	return 0, http.ErrBodyReadAfterClose
}

func TestRouterAndDocumentAgree(t *testing.T) {
	h := newHarness(t, Config{})
	routed := map[string]bool{}
	for _, mt := range walk(t, h.srv.router) {
		if mt[0] == http.MethodHead {
			continue
		}
		path, _, _ := openAPIPath(mt[1])
		routed[mt[0]+" "+path] = true
		item := h.doc.Paths.Value(path)
		if item == nil || item.GetOperation(mt[0]) == nil {
			t.Errorf("%s %s is routed but not in /openapi.json", mt[0], mt[1])
		}
	}
	for path, item := range h.doc.Paths.Map() {
		for method := range item.Operations() {
			if !routed[method+" "+path] {
				t.Errorf("%s %s is documented but not routed", method, path)
			}
		}
	}
	wantTags := []string{"auth", "users", "training", "system", "settings"}
	for _, tag := range wantTags {
		if h.doc.Tags.Get(tag) == nil {
			t.Errorf("tag %q missing from the document", tag)
		}
	}
	if len(routed) < 30 {
		t.Fatalf("only %d operations routed; the walk is broken", len(routed))
	}
}

func TestAnonymousGets401OnEveryProtectedRouteWithoutReadingBody(t *testing.T) {
	h := newHarness(t, Config{})
	h.setup()
	publicPaths := map[string]bool{}
	for _, rt := range h.srv.routes {
		if rt.access == public {
			for _, p := range rt.paths() {
				publicPaths[rt.method+" "+p] = true
			}
		}
	}
	checked := 0
	for _, mt := range walk(t, h.srv.router) {
		method, tmpl := mt[0], mt[1]
		if method == http.MethodHead {
			continue
		}
		if publicPaths[method+" "+tmpl] {
			continue
		}
		body := &readCounter{}
		for _, remote := range []string{remoteAddr, loopbackAddr} {
			r := httptest.NewRequest(method, fillVars(tmpl), body)
			r.RemoteAddr = remote
			r.Header.Set("Content-Type", "application/json")
			w := httptest.NewRecorder()
			h.h.ServeHTTP(w, r)
			if w.Code != http.StatusUnauthorized {
				t.Errorf("anonymous %s %s from %s: %d, want 401 (%s)", method, tmpl, remote, w.Code, w.Body)
			}
			if w.Header().Get("WWW-Authenticate") == "" {
				t.Errorf("%s %s: 401 without WWW-Authenticate", method, tmpl)
			}
		}
		if body.read {
			t.Errorf("%s %s read the body of an anonymous request", method, tmpl)
		}
		checked++
	}
	if checked < 20 {
		t.Fatalf("only %d protected routes checked", checked)
	}
}

func TestPublicRoutesAnswerAnonymous(t *testing.T) {
	h := newHarness(t, Config{})
	h.setup()
	for _, p := range []string{"/health", "/api/version", "/openapi.json", "/docs", "/redoc", "/api/auth/setup/status", "/api/cloud/auth/check", "/api/users/meta/auth-status"} {
		if res := h.do(req{method: "GET", path: p}); res.code != 200 {
			t.Errorf("GET %s: %d", p, res.code)
		}
	}
}

func TestMissingServiceAnswers503(t *testing.T) {
	h := newHarness(t, Config{})
	_, key := h.setup()
	for _, tc := range []struct{ method, path, want string }{
		{"GET", "/api/configs/", "Configurations are not available on this server"},
		{"GET", "/api/datasets/browse", "Dataset uploads are not available on this server"},
		{"GET", "/api/training/events", "Events are not available on this server"},
		{"GET", "/api/queue", "Job supervision is not available on this server"},
	} {
		res := h.do(req{method: tc.method, path: tc.path, key: key})
		if res.code != http.StatusServiceUnavailable || res.detail() != tc.want {
			t.Errorf("%s %s: %d %s, want 503 %q", tc.method, tc.path, res.code, res.body, tc.want)
		}
	}
	// Examples are embedded: they need no configs service.
	if res := h.do(req{method: "GET", path: "/api/configs/examples", key: key}); res.code != 200 {
		t.Errorf("examples without a configs service: %d %s", res.code, res.body)
	}
}

func TestResearcherGets403OnAdminRoutes(t *testing.T) {
	h := newHarness(t, Config{})
	_, adminKey := h.setup()
	rs := h.createUser(adminKey, "researcher", "researcher")
	admin := 0
	for _, rt := range h.srv.routes {
		if rt.perm == "" || !strings.HasPrefix(rt.perm, "admin.") {
			continue
		}
		for _, p := range rt.paths() {
			res := h.do(req{method: rt.method, path: fillVars(p), cookie: rs, body: "{}"})
			if res.code != http.StatusForbidden || res.detail() != "Permission denied: "+rt.perm {
				t.Errorf("researcher %s %s: %d %q, want 403 Permission denied: %s", rt.method, p, res.code, res.detail(), rt.perm)
			}
			admin++
		}
	}
	if admin < 10 {
		t.Fatalf("only %d admin routes found", admin)
	}
	// And what a researcher may do still works.
	if res := h.do(req{method: "GET", path: "/api/training/status", cookie: rs}); res.code != 200 {
		t.Fatalf("researcher status: %d", res.code)
	}
	if res := h.do(req{method: "POST", path: "/api/auth/api-keys", cookie: rs, body: map[string]any{"name": "mine"}}); res.code != 200 {
		t.Fatalf("researcher key: %d %s", res.code, res.body)
	}
	// A viewer may not mint keys.
	vs := h.createUser(adminKey, "viewer1", "viewer")
	if res := h.do(req{method: "POST", path: "/api/auth/api-keys", cookie: vs, body: map[string]any{"name": "mine"}}); res.code != 403 {
		t.Fatalf("viewer key: %d %s", res.code, res.body)
	}
}

func TestSeedAuthenticationFlow(t *testing.T) {
	h := newHarness(t, Config{})
	var st struct {
		NeedsSetup bool `json:"needs_setup"`
	}
	h.do(req{method: "GET", path: "/api/cloud/auth/setup/status"}).json(t, &st)
	if !st.NeedsSetup {
		t.Fatal("fresh server does not need setup")
	}
	cookie, key := h.setup()
	if !strings.HasPrefix(key, "st_") || len(key) != 35 {
		t.Fatalf("key %q is not st_ + 32 characters", key)
	}
	h.do(req{method: "GET", path: "/api/auth/setup/status"}).json(t, &st)
	if st.NeedsSetup {
		t.Fatal("still needs setup after first admin")
	}
	res := h.do(req{method: "GET", path: "/api/training/status", key: key})
	if res.code != 200 {
		t.Fatalf("status with key: %d %s", res.code, res.body)
	}
	res = h.do(req{method: "GET", path: "/api/training/status", header: map[string]string{"Authorization": "Bearer " + key}})
	if res.code != 200 {
		t.Fatalf("status with bearer: %d", res.code)
	}
	res = h.do(req{method: "POST", path: "/api/users", cookie: cookie, body: map[string]any{
		"email": "researcher@example.com", "username": "researcher", "password": "their-password", "level_names": []string{"researcher"}}})
	if res.code != 201 {
		t.Fatalf("create user: %d %s", res.code, res.body)
	}
	var u userBody
	res.json(t, &u)
	if u.Username != "researcher" || u.IsAdmin || len(u.Levels) != 1 || u.Levels[0].Name != "researcher" {
		t.Fatalf("created user: %+v", u)
	}
	if res := h.do(req{method: "POST", path: "/api/users", cookie: cookie, body: map[string]any{
		"email": "researcher@example.com", "username": "researcher2", "password": "their-password"}}); res.code != 400 || !strings.Contains(res.detail(), "already exists") {
		t.Fatalf("duplicate: %d %s", res.code, res.body)
	}
	if h.validated.Load() < 8 {
		t.Fatalf("only %d responses were validated against the document", h.validated.Load())
	}
}

func TestBeforeSetupOnlyLoopbackIsAdmin(t *testing.T) {
	h := newHarness(t, Config{SetupToken: "tok-123"})
	res := h.do(req{method: "GET", path: "/api/training/status"})
	if res.code != 401 || res.detail() != "Setup required" {
		t.Fatalf("remote before setup: %d %q", res.code, res.detail())
	}
	if res := h.do(req{method: "GET", path: "/api/users", remote: loopbackAddr}); res.code != 200 {
		t.Fatalf("loopback before setup: %d %s", res.code, res.body)
	}
	// A reverse proxy on the same host forwards remote clients: they are not local.
	if res := h.do(req{method: "GET", path: "/api/users", remote: loopbackAddr, header: map[string]string{"X-Forwarded-For": "198.51.100.9"}}); res.code != 401 {
		t.Fatalf("proxied remote before setup: %d", res.code)
	}
	body := map[string]any{"email": "a@example.com", "username": "admin", "password": "long-enough-pw"}
	if res := h.do(req{method: "POST", path: "/api/auth/setup/first-admin", body: body}); res.code != 403 {
		t.Fatalf("remote first-admin without token: %d %s", res.code, res.body)
	}
	if res := h.do(req{method: "POST", path: "/api/auth/setup/first-admin", body: body, header: map[string]string{"X-Setup-Token": "wrong"}}); res.code != 403 {
		t.Fatalf("remote first-admin with wrong token: %d", res.code)
	}
	if res := h.do(req{method: "POST", path: "/api/auth/setup/first-admin", body: body, header: map[string]string{"X-Setup-Token": "tok-123"}}); res.code != 200 {
		t.Fatalf("remote first-admin with token: %d %s", res.code, res.body)
	}
	// After setup loopback is nobody special.
	if res := h.do(req{method: "GET", path: "/api/users", remote: loopbackAddr}); res.code != 401 {
		t.Fatalf("loopback after setup: %d", res.code)
	}
	if res := h.do(req{method: "POST", path: "/api/auth/setup/first-admin", remote: loopbackAddr, body: body}); res.code != 409 {
		t.Fatalf("second first-admin: %d", res.code)
	}
}

func TestFirstAdminRaceFiftyCalls(t *testing.T) {
	h := newHarness(t, Config{})
	const n = 50
	codes := make([]int, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			r := httptest.NewRequest("POST", "/api/auth/setup/first-admin", strings.NewReader(
				`{"email":"admin`+string(rune('a'+i%26))+string(rune('a'+i/26))+`@example.com","username":"admin`+string(rune('a'+i%26))+string(rune('a'+i/26))+`","password":"your-secure-password"}`))
			r.RemoteAddr, r.Host = loopbackAddr, "localhost:8001"
			w := httptest.NewRecorder()
			h.h.ServeHTTP(w, r)
			codes[i] = w.Code
		}()
	}
	close(start)
	wg.Wait()
	ok := 0
	for _, c := range codes {
		switch c {
		case 200:
			ok++
		case 409:
		default:
			t.Errorf("unexpected status %d", c)
		}
	}
	users, _ := h.db.Users().List()
	admins := slices.DeleteFunc(users, func(u *storeUser) bool { return !u.IsAdmin })
	if ok != 1 || len(admins) != 1 {
		t.Fatalf("%d successes and %d admins; want exactly one", ok, len(admins))
	}
}

func TestCookieAttributes(t *testing.T) {
	h := newHarness(t, Config{})
	h.setup()
	for _, tc := range []struct {
		remember bool
		maxAge   int
	}{{false, 86400}, {true, 30 * 86400}} {
		res := h.do(req{method: "POST", path: "/api/auth/login", body: map[string]any{"username": "admin", "password": "your-secure-password", "remember_me": tc.remember}})
		c := findCookie(res)
		if c == nil || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.MaxAge != tc.maxAge || c.Secure {
			t.Fatalf("remember=%v cookie: %+v", tc.remember, c)
		}
	}
	// Behind a trusted proxy that says https, the cookie is Secure.
	h2 := newHarness(t, Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	h2.setup()
	res := h2.do(req{method: "POST", path: "/api/auth/login", remote: loopbackAddr,
		header: map[string]string{"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.3"},
		body:   map[string]any{"username": "admin", "password": "your-secure-password"}})
	if c := findCookie(res); c == nil || !c.Secure {
		t.Fatalf("cookie behind https proxy: %+v", c)
	}
	// An untrusted peer claiming https gets no Secure upgrade (and no say at all).
	res = h.do(req{method: "POST", path: "/api/auth/login", header: map[string]string{"X-Forwarded-Proto": "https"},
		body: map[string]any{"username": "admin", "password": "your-secure-password"}})
	if c := findCookie(res); c == nil || c.Secure {
		t.Fatalf("untrusted forwarded proto honoured: %+v", c)
	}
}

func findCookie(res resp) *http.Cookie {
	for _, c := range (&http.Response{Header: res.header}).Cookies() {
		if c.Name == sessionCookie {
			return c
		}
	}
	return nil
}

func TestLogoutAndPasswordChangeEndSessions(t *testing.T) {
	h := newHarness(t, Config{})
	c1, _ := h.setup()
	c2 := h.login("admin", "your-secure-password")
	if res := h.do(req{method: "POST", path: "/api/auth/logout", cookie: c2}); res.code != 200 {
		t.Fatalf("logout: %d", res.code)
	}
	if res := h.do(req{method: "GET", path: "/api/auth/me", cookie: c2}); res.code != 401 {
		t.Fatalf("old cookie after logout: %d", res.code)
	}
	c3 := h.login("admin", "your-secure-password")
	res := h.do(req{method: "POST", path: "/api/auth/change-password", cookie: c1, body: map[string]any{"current_password": "wrong-password", "new_password": "another-password"}})
	if res.code != 401 || res.detail() != "Current password is incorrect" {
		t.Fatalf("wrong current password: %d %s", res.code, res.body)
	}
	res = h.do(req{method: "POST", path: "/api/auth/change-password", cookie: c1, body: map[string]any{"current_password": "your-secure-password", "new_password": "another-password"}})
	if res.code != 200 {
		t.Fatalf("change password: %d %s", res.code, res.body)
	}
	if res := h.do(req{method: "GET", path: "/api/auth/me", cookie: c3}); res.code != 401 {
		t.Fatalf("other session survived a password change: %d", res.code)
	}
	if res := h.do(req{method: "GET", path: "/api/auth/me", cookie: c1}); res.code != 200 {
		t.Fatalf("the changing session was ended: %d", res.code)
	}
	h.login("admin", "another-password")
}

func TestAPIKeyHandling(t *testing.T) {
	h := newHarness(t, Config{})
	cookie, key := h.setup()
	if res := h.do(req{method: "GET", path: "/api/training/status?api_key=" + key}); res.code != 400 {
		t.Fatalf("key in URL: %d", res.code)
	}
	wrong := key[:len(key)-1] + "X"
	if wrong == key {
		wrong = key[:len(key)-1] + "Y"
	}
	if res := h.do(req{method: "GET", path: "/api/training/status", key: wrong}); res.code != 401 {
		t.Fatalf("wrong key: %d", res.code)
	}
	// An invalid key is not silently replaced by a valid cookie.
	if res := h.do(req{method: "GET", path: "/api/training/status", key: wrong, cookie: cookie}); res.code != 401 {
		t.Fatalf("wrong key with cookie: %d", res.code)
	}
	var list []apiKeyInfo
	h.do(req{method: "GET", path: "/api/auth/api-keys", key: key}).json(t, &list)
	if len(list) != 1 || list[0].KeyPrefix != key[:11] {
		t.Fatalf("list: %+v", list)
	}
	res := h.do(req{method: "DELETE", path: "/api/auth/api-keys/" + itoa(list[0].ID), cookie: cookie})
	if res.code != 200 {
		t.Fatalf("revoke: %d %s", res.code, res.body)
	}
	if res := h.do(req{method: "GET", path: "/api/training/status", key: key}); res.code != 401 {
		t.Fatalf("revoked key: %d", res.code)
	}
	if res := h.do(req{method: "DELETE", path: "/api/auth/api-keys/" + itoa(list[0].ID), cookie: cookie}); res.code != 404 || res.detail() != "API key not found or already revoked" {
		t.Fatalf("revoke twice: %d %s", res.code, res.body)
	}
	for _, bad := range []map[string]any{{"name": ""}, {"name": "x", "expires_days": 0}, {"name": "x", "expires_days": 400}, {"name": "x", "scoped_permissions": []string{"nonsense.perm"}}} {
		if res := h.do(req{method: "POST", path: "/api/auth/api-keys", cookie: cookie, body: bad}); res.code != 422 && res.code != 400 {
			t.Errorf("bad key request %v: %d", bad, res.code)
		}
	}
}

func TestCrossOriginCookieRequestsRefused(t *testing.T) {
	h := newHarness(t, Config{})
	cookie, key := h.setup()
	body := map[string]any{"name": "k"}
	for _, hdr := range []map[string]string{{"Sec-Fetch-Site": "cross-site"}, {"Origin": "http://127.0.0.1:9999"}} {
		if res := h.do(req{method: "POST", path: "/api/auth/api-keys", cookie: cookie, body: body, header: hdr}); res.code != 403 {
			t.Errorf("cookie request with %v: %d, want 403", hdr, res.code)
		}
		if res := h.do(req{method: "POST", path: "/api/auth/api-keys", key: key, body: body, header: hdr}); res.code != 200 {
			t.Errorf("API-key request with %v: %d, want 200", hdr, res.code)
		}
	}
	if res := h.do(req{method: "POST", path: "/api/auth/api-keys", cookie: cookie, body: body, header: map[string]string{"Sec-Fetch-Site": "same-origin"}}); res.code != 200 {
		t.Errorf("same-origin cookie request: %d", res.code)
	}
	res := h.do(req{method: "OPTIONS", path: "/api/auth/api-keys", header: map[string]string{"Origin": "http://evil.example"}})
	if v := res.header.Get("Access-Control-Allow-Origin"); v != "" {
		t.Fatalf("CORS reflected origin %q", v)
	}
}

func TestLoginRateLimit(t *testing.T) {
	h := newHarness(t, Config{})
	h.setup()
	var last resp
	for i := range 20 {
		// Rotating X-Forwarded-For (even to 127.0.0.1) must not reset anything: no proxy is trusted.
		last = h.do(req{method: "POST", path: "/api/auth/login", header: map[string]string{"X-Forwarded-For": "127.0.0." + itoa(int64(i))},
			body: map[string]any{"username": "admin", "password": "wrong-password"}})
		if last.code == 429 {
			break
		}
		if last.code != 401 || last.detail() != "Invalid username or password" {
			t.Fatalf("attempt %d: %d %s", i, last.code, last.body)
		}
	}
	if last.code != 429 || last.header.Get("Retry-After") == "" {
		t.Fatalf("no 429 with Retry-After after many failures: %d %v", last.code, last.header)
	}
	// Unknown users get the same answer as known ones.
	h2 := newHarness(t, Config{})
	h2.setup()
	a := h2.do(req{method: "POST", path: "/api/auth/login", body: map[string]any{"username": "admin", "password": "wrong-password"}})
	b := h2.do(req{method: "POST", path: "/api/auth/login", body: map[string]any{"username": "nobody", "password": "wrong-password"}})
	if a.code != b.code || string(a.body) != string(b.body) {
		t.Fatalf("known vs unknown user differ: %d %s / %d %s", a.code, a.body, b.code, b.body)
	}
}

func TestBadInputsGetClearErrors(t *testing.T) {
	h := newHarness(t, Config{MaxBodyBytes: 4096})
	cookie, _ := h.setup()
	cases := []struct {
		name string
		q    req
		code int
		want string
	}{
		{"malformed json", req{method: "POST", path: "/api/auth/login", body: "{"}, 422, "JSON"},
		{"empty body", req{method: "POST", path: "/api/auth/login", body: ""}, 422, "Field required"},
		{"wrong type", req{method: "POST", path: "/api/auth/login", body: `{"username": 5}`}, 422, "string"},
		{"missing password", req{method: "POST", path: "/api/auth/login", body: `{"username":"admin"}`}, 400, "required"},
		{"huge body", req{method: "POST", path: "/api/auth/login", body: `{"username":"` + strings.Repeat("a", 10000) + `"}`}, 413, "too large"},
		{"short password", req{method: "POST", path: "/api/users", cookie: cookie, body: map[string]any{"email": "x@example.com", "username": "xyz", "password": "short"}}, 422, "at least 8"},
		{"bad username", req{method: "POST", path: "/api/users", cookie: cookie, body: map[string]any{"email": "x@example.com", "username": "a b", "password": "long-enough"}}, 422, "characters"},
		{"bad email", req{method: "POST", path: "/api/users", cookie: cookie, body: map[string]any{"email": "nope", "username": "xyz", "password": "long-enough"}}, 422, "e-mail"},
		{"unknown level", req{method: "POST", path: "/api/users", cookie: cookie, body: map[string]any{"email": "x@example.com", "username": "xyz", "password": "long-enough", "level_names": []string{"god"}}}, 422, "unknown level"},
		{"no password", req{method: "POST", path: "/api/users", cookie: cookie, body: map[string]any{"email": "x@example.com", "username": "xyz"}}, 400, "Password required"},
		{"unknown user", req{method: "GET", path: "/api/users/999", cookie: cookie}, 404, "User not found"},
		{"bad limit", req{method: "GET", path: "/api/users?limit=abc", cookie: cookie}, 422, "integer"},
		{"wrong method", req{method: "PUT", path: "/api/auth/login"}, 405, "Method Not Allowed"},
		{"unknown path", req{method: "GET", path: "/api/nothing-here", cookie: cookie}, 404, "Not Found"},
		{"form body", req{method: "POST", path: "/api/auth/login", body: "username=a", header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}}, 415, "JSON"},
		{"delete self", req{method: "DELETE", path: "/api/users/1", cookie: cookie}, 400, "own account"},
		{"demote last admin", req{method: "PATCH", path: "/api/users/1", cookie: cookie, body: map[string]any{"is_admin": false}}, 400, "last active administrator"},
		{"registration disabled", req{method: "POST", path: "/api/auth/register", body: map[string]any{"email": "r@example.com", "username": "reg", "password": "long-enough"}}, 403, "disabled"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := h.do(tc.q)
			if res.code != tc.code || !strings.Contains(res.detail(), tc.want) {
				t.Fatalf("%d %s; want %d containing %q", res.code, res.body, tc.code, tc.want)
			}
		})
	}
}

func TestUserLifecycle(t *testing.T) {
	h := newHarness(t, Config{})
	_, adminKey := h.setup()
	rs := h.createUser(adminKey, "bob", "researcher")
	var users []userBody
	h.do(req{method: "GET", path: "/api/users", key: adminKey}).json(t, &users)
	if len(users) != 2 {
		t.Fatalf("users: %+v", users)
	}
	bob := users[1].ID
	res := h.do(req{method: "POST", path: "/api/users/" + itoa(bob) + "/levels", key: adminKey, body: map[string]any{"level_names": []string{"lead"}}})
	var u userBody
	res.json(t, &u)
	if res.code != 200 || len(u.Levels) != 1 || u.Levels[0].Name != "lead" || !slices.Contains(u.Permissions, "job.hooks") {
		t.Fatalf("set levels: %d %s", res.code, res.body)
	}
	if res := h.do(req{method: "POST", path: "/api/users/" + itoa(bob) + "/deactivate", key: adminKey}); res.code != 200 {
		t.Fatalf("deactivate: %d", res.code)
	}
	if res := h.do(req{method: "GET", path: "/api/auth/me", cookie: rs}); res.code != 401 {
		t.Fatalf("deactivated user's session still works: %d", res.code)
	}
	res = h.do(req{method: "POST", path: "/api/auth/login", body: map[string]any{"username": "bob", "password": "password-of-bob"}})
	if res.code != 401 {
		t.Fatalf("deactivated user logs in: %d", res.code)
	}
	h.do(req{method: "GET", path: "/api/users", key: adminKey}).json(t, &users)
	if len(users) != 1 {
		t.Fatalf("inactive user listed by default: %d", len(users))
	}
	h.do(req{method: "GET", path: "/api/users?include_inactive=true", key: adminKey}).json(t, &users)
	if len(users) != 2 {
		t.Fatalf("include_inactive: %d", len(users))
	}
	if res := h.do(req{method: "POST", path: "/api/users/" + itoa(bob) + "/activate", key: adminKey}); res.code != 200 {
		t.Fatalf("activate: %d", res.code)
	}
	h.login("bob", "password-of-bob")
	if res := h.do(req{method: "DELETE", path: "/api/users/" + itoa(bob), key: adminKey}); res.code != 200 {
		t.Fatalf("delete: %d", res.code)
	}
	if res := h.do(req{method: "GET", path: "/api/users/" + itoa(bob), key: adminKey}); res.code != 404 {
		t.Fatalf("deleted user: %d", res.code)
	}
}

func TestRegistrationSetting(t *testing.T) {
	h := newHarness(t, Config{})
	_, key := h.setup()
	var reg struct {
		Enabled      bool   `json:"enabled"`
		DefaultLevel string `json:"default_level"`
	}
	h.do(req{method: "GET", path: "/api/cloud/settings/registration", key: key}).json(t, &reg)
	if reg.Enabled || reg.DefaultLevel != "researcher" {
		t.Fatalf("default registration: %+v", reg)
	}
	if res := h.do(req{method: "PUT", path: "/api/cloud/settings/registration", key: key, body: map[string]any{"enabled": true, "default_level": "admin"}}); res.code != 422 {
		t.Fatalf("registration granting admin: %d", res.code)
	}
	if res := h.do(req{method: "PUT", path: "/api/cloud/settings/registration", key: key, body: map[string]any{"enabled": true, "default_level": "viewer"}}); res.code != 200 {
		t.Fatalf("enable: %d %s", res.code, res.body)
	}
	res := h.do(req{method: "POST", path: "/api/auth/register", body: map[string]any{"email": "r@example.com", "username": "reg", "password": "long-enough"}})
	var lb loginBody
	res.json(t, &lb)
	if res.code != 200 || lb.User.Levels[0].Name != "viewer" || findCookie(res) == nil {
		t.Fatalf("register: %d %s", res.code, res.body)
	}
}
