package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"strings"
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

// rawCall sends body (JSON bytes, nil for none) and returns the status and the answer as
// text. An event stream's body is not read: its status is the answer.
func rawCall(t *testing.T, c *http.Client, method, url string, body []byte, hdr map[string]string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
		return res.StatusCode, ""
	}
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// jsonBytes encodes v as a request body (nil stays nil: no body).
func jsonBytes(t *testing.T, v any) []byte {
	t.Helper()
	if v == nil {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
