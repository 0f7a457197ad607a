package api

import (
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
)

func TestLoopbackHost(t *testing.T) {
	allowed := []string{"Train.Lab.Example", "[fd00::5]", "192.0.2.10"}
	for _, tc := range []struct {
		host string
		want bool
	}{
		{"localhost", true},
		{"localhost:8001", true},
		{"LOCALHOST:8001", true},
		{"localhost.:8001", true},
		{"127.0.0.1", true},
		{"127.0.0.1:8001", true},
		{"127.1.2.3:8001", true},
		{"[::1]:8001", true},
		{"[::1]", true},
		{"::1", true},
		{"[::ffff:127.0.0.1]:8001", true},
		{"train.lab.example:8001", true}, // allowed, any case, any port
		{"train.lab.example.", true},
		{"[fd00::5]:8001", true},
		{"192.0.2.10:8001", true},

		{"", false},
		{"attacker.example:8001", false}, // DNS rebinding
		{"attacker.example", false},
		{"localhost.attacker.example", false},
		{"app.localhost:8001", false}, // stricter than RFC 6761: allow it by name if wanted
		{"127.1:8001", false},         // non-canonical spellings are not what browsers send
		{"2130706433", false},
		{"0.0.0.0:8001", false},
		{"10.0.0.5:8001", false},
		{"[::1%lo]:8001", false},
		{"[fe80::1]:8001", false},
		{"lab.example", false},
		{"[::1", false},
	} {
		if got := loopbackHost(tc.host, allowed); got != tc.want {
			t.Errorf("loopbackHost(%q) = %v, want %v", tc.host, got, tc.want)
		}
	}
}

// DNS rebinding before setup: a loopback peer that names the server by a foreign host is
// not the local administrator and cannot create the first one; the bootstrap token works
// from any host.
func TestBeforeSetupForeignHostIsNotLocal(t *testing.T) {
	h := newHarness(t, Config{SetupToken: "tok-123", AllowedHosts: []string{"gpu-box"}})
	rebound := map[string]string{"Host": "attacker.example:8001", "Origin": "http://attacker.example:8001", "Sec-Fetch-Site": "same-origin"}
	if res := h.do(req{method: "GET", path: "/api/users", remote: loopbackAddr, header: rebound}); res.code != 403 {
		t.Fatalf("rebound GET before setup: %d %s", res.code, res.body)
	}
	body := map[string]any{"email": "a@example.com", "username": "admin", "password": "long-enough-pw"}
	if res := h.do(req{method: "POST", path: "/api/auth/setup/first-admin", remote: loopbackAddr, header: rebound, body: body}); res.code != 403 {
		t.Fatalf("rebound first-admin: %d %s", res.code, res.body)
	}
	if res := h.do(req{method: "POST", path: "/api/users", remote: loopbackAddr, header: rebound, body: map[string]any{
		"email": "b@example.com", "username": "b-admin", "password": "long-enough-pw", "level_names": []string{"admin"}}}); res.code != 403 {
		t.Fatalf("rebound create user: %d %s", res.code, res.body)
	}
	if h.auth.SetupDone() {
		t.Fatal("a rebound request completed setup")
	}
	if res := h.do(req{method: "GET", path: "/api/users", remote: loopbackAddr, header: map[string]string{"Host": "gpu-box:8001"}}); res.code != 200 {
		t.Fatalf("allowed host before setup: %d %s", res.code, res.body)
	}
	withToken := map[string]string{"Host": "attacker.example:8001", "X-Setup-Token": "tok-123"}
	if res := h.do(req{method: "POST", path: "/api/auth/setup/first-admin", remote: loopbackAddr, header: withToken, body: body}); res.code != 200 {
		t.Fatalf("first-admin with the token from a foreign host: %d %s", res.code, res.body)
	}
}

// An administrator made through POST /api/users before setup completes setup: loopback
// is nobody special afterwards, first-admin is closed, and the setup hook runs once.
func TestAdminCreatedByAnyRouteClosesSetup(t *testing.T) {
	var hooked atomic.Int32
	tokenFile := filepath.Join(t.TempDir(), "bootstrap-token")
	if err := os.WriteFile(tokenFile, []byte("tok\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, Config{SetupToken: "tok", OnSetupDone: func() { hooked.Add(1); os.Remove(tokenFile) }})
	if res := h.do(req{method: "POST", path: "/api/users", remote: loopbackAddr, body: map[string]any{
		"email": "r@example.com", "username": "researcher", "password": "long-enough-pw", "level_names": []string{"researcher"}}}); res.code != 201 {
		t.Fatalf("create researcher: %d %s", res.code, res.body)
	}
	if h.auth.SetupDone() || hooked.Load() != 0 {
		t.Fatal("a researcher completed setup")
	}
	if res := h.do(req{method: "POST", path: "/api/users", remote: loopbackAddr, body: map[string]any{
		"email": "b@example.com", "username": "boss", "password": "long-enough-pw", "is_admin": true}}); res.code != 201 {
		t.Fatalf("create admin: %d %s", res.code, res.body)
	}
	var st struct {
		NeedsSetup bool `json:"needs_setup"`
		HasAdmin   bool `json:"has_admin"`
	}
	h.do(req{method: "GET", path: "/api/auth/setup/status"}).json(t, &st)
	if st.NeedsSetup || !st.HasAdmin {
		t.Fatalf("setup status after an admin was created: %+v", st)
	}
	if res := h.do(req{method: "GET", path: "/api/users", remote: loopbackAddr}); res.code != 401 {
		t.Fatalf("anonymous loopback after setup: %d", res.code)
	}
	if res := h.do(req{method: "POST", path: "/api/auth/setup/first-admin", remote: loopbackAddr, body: map[string]any{
		"email": "c@example.com", "username": "late", "password": "long-enough-pw"}}); res.code != 409 {
		t.Fatalf("first-admin after setup: %d", res.code)
	}
	if hooked.Load() != 1 {
		t.Fatalf("setup hook ran %d times, want 1", hooked.Load())
	}
	if _, err := os.Stat(tokenFile); !os.IsNotExist(err) {
		t.Fatalf("bootstrap token left behind: %v", err)
	}
}
