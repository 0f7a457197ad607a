package main

import (
	"net/http"
	"net/http/cookiejar"
	"testing"
	"time"
)

// member is one user of a team daemon: its API key (empty for a viewer, who may not mint
// one), and a client that holds its session cookie (logged in with the password).
type member struct {
	name   string
	id     float64
	key    string
	cookie *http.Client
}

// keyed returns the header that authenticates as m with its API key.
func (m member) keyed() map[string]string { return map[string]string{"X-API-Key": m.key} }

// team is a daemon shared by an administrator, a lead, two researchers and a viewer: the
// cast of the multi-user security tests.
type team struct {
	d                         *proc
	admin, lead, r1, r2, view member
	// anon is a client with no credentials.
	anon *http.Client
}

// teamPassword is every team member's password.
const teamPassword = "your-secure-password"

// newTeam sets up the first admin from loopback, creates the other members through the
// admin API, and logs each one in and mints its API key.
func newTeam(t *testing.T, d *proc) *team {
	t.Helper()
	tm := &team{d: d, anon: &http.Client{Timeout: 30 * time.Second}}
	adminC := adminClient(t, d)
	tm.admin = loginMember(t, d, "admin", adminC)
	for _, m := range []struct {
		dst         *member
		name, level string
	}{{&tm.lead, "lead", "lead"}, {&tm.r1, "research1", "researcher"}, {&tm.r2, "research2", "researcher"}, {&tm.view, "viewer", "viewer"}} {
		code, body := call(t, adminC, "POST", d.base+"/api/users", map[string]any{"email": m.name + "@example.com", "username": m.name,
			"password": teamPassword, "level_names": []string{m.level}}, nil)
		if code != 201 {
			t.Fatalf("create %s: %d %v", m.name, code, body)
		}
		*m.dst = loginMember(t, d, m.name, nil)
	}
	return tm
}

// loginMember logs name in (reusing c's cookie jar when given) and mints an API key.
func loginMember(t *testing.T, d *proc, name string, c *http.Client) member {
	t.Helper()
	if c == nil {
		jar, _ := cookiejar.New(nil)
		c = &http.Client{Jar: jar, Timeout: 30 * time.Second}
	}
	code, body := call(t, c, "POST", d.base+"/api/auth/login", map[string]any{"username": name, "password": teamPassword}, nil)
	if code != 200 {
		t.Fatalf("login %s: %d %v", name, code, body)
	}
	m := member{name: name, cookie: c}
	if u, ok := body["user"].(map[string]any); ok {
		m.id, _ = u["id"].(float64)
	}
	code, body = call(t, c, "POST", d.base+"/api/auth/api-keys", map[string]any{"name": name + "-key"}, nil)
	if code == 403 {
		return m // viewers may not mint keys (api.keys.own): they use the cookie
	}
	if code != 200 {
		t.Fatalf("api key for %s: %d %v", name, code, body)
	}
	m.key, _ = body["key"].(string)
	return m
}
