package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"simpletuner/plugins"
	"simpletuner/store"
	"simpletuner/supervisor/events"
)

// eventsHarness is the API harness with an event hub (heartbeat hb) and two jobs: "adm1"
// owned by the admin (user 1) and "oth1" owned by user 99.
func eventsHarness(t *testing.T, hb time.Duration) (*harness, *events.Hub) {
	t.Helper()
	h := newHarness(t, Config{})
	hub := events.New(events.Config{Store: h.db, Log: slog.New(slog.DiscardHandler), Heartbeat: hb})
	t.Cleanup(hub.Close)
	h.srv.cfg.Events = hub
	for id, owner := range map[string]int64{"adm1": 1, "oth1": 99} {
		if err := h.db.Jobs().Create(&store.Job{ID: id, Status: "running", OwnerID: owner}); err != nil {
			t.Fatal(err)
		}
	}
	return h, hub
}

func emitEvents(t *testing.T, hub *events.Hub, job string, from, n int, typ string) {
	t.Helper()
	evs := make([]plugins.Event, n)
	for i := range evs {
		evs[i] = plugins.Event{Seq: uint64(from + i), Type: typ, Severity: "info", Time: time.Now().UTC(),
			Data: json.RawMessage(fmt.Sprintf(`{"step":%d,"total_steps":10}`, from+i))}
	}
	if _, err := hub.Append(job, evs); err != nil {
		t.Fatal(err)
	}
}

func TestTrainingEventsJSON(t *testing.T) {
	h, hub := eventsHarness(t, time.Hour)
	_, key := h.setup()
	emitEvents(t, hub, "adm1", 1, 3, "training.progress")
	emitEvents(t, hub, "oth1", 1, 2, "training.validation")
	hub.JobStatus(&store.Job{ID: "adm1", Status: "completed", OwnerID: 1})

	res := h.do(req{method: "GET", path: "/api/training/events?since_index=0", key: key})
	var body struct {
		Events    []events.Event `json:"events"`
		JobID     *string        `json:"job_id"`
		NextIndex uint64         `json:"next_index"`
	}
	res.json(t, &body)
	if res.code != 200 || len(body.Events) != 6 || body.NextIndex != 6 {
		t.Fatalf("all events: %d %d next %d: %s", res.code, len(body.Events), body.NextIndex, res.body)
	}
	if body.Events[5].Type != "job.status" || body.Events[0].Progress == nil {
		t.Fatalf("types: %s %v", body.Events[5].Type, body.Events[0].Progress)
	}
	res = h.do(req{method: "GET", path: "/api/training/events?since_index=2&types=training.*,job.status&limit=2", key: key})
	res.json(t, &body)
	if len(body.Events) != 2 || body.Events[0].Index != 3 || body.NextIndex != 4 {
		t.Fatalf("page: %s", res.body)
	}
	// A job's events after it ended, by job_id.
	res = h.do(req{method: "GET", path: "/api/training/events?job_id=adm1&since_index=0", key: key})
	res.json(t, &body)
	if len(body.Events) != 4 || body.JobID == nil || *body.JobID != "adm1" {
		t.Fatalf("by job: %s", res.body)
	}
	if res := h.do(req{method: "GET", path: "/api/training/events?since_index=x", key: key}); res.code != 422 {
		t.Fatalf("bad since_index: %d", res.code)
	}
	// A user without job.view.all sees only their own jobs.
	rs := h.createUser(key, "researcher", "researcher")
	res = h.do(req{method: "GET", path: "/api/training/events?since_index=0", cookie: rs})
	res.json(t, &body)
	if res.code != 200 || len(body.Events) != 0 {
		t.Fatalf("researcher sees others' events: %s", res.body)
	}
	if h.validated.Load() == 0 {
		t.Fatal("no response was validated against the OpenAPI document")
	}
}

// streamClient opens an SSE stream through a real HTTP server and returns its frames.
func streamClient(t *testing.T, url string, hdr map[string]string) (*http.Response, <-chan [2]string) {
	t.Helper()
	rq, _ := http.NewRequest("GET", url, nil)
	for k, v := range hdr {
		rq.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(rq)
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan [2]string, 1024)
	if res.StatusCode != 200 {
		res.Body.Close()
		close(out)
		return res, out
	}
	go func() {
		defer close(out)
		defer res.Body.Close()
		sc := bufio.NewScanner(res.Body)
		var ev string
		for sc.Scan() {
			line := sc.Text()
			if v, ok := strings.CutPrefix(line, "event: "); ok {
				ev = v
			}
			if v, ok := strings.CutPrefix(line, "data: "); ok {
				out <- [2]string{ev, v}
			}
		}
	}()
	return res, out
}

// waitClosed waits for the auth_revoked frame and the end of the stream. The bound only
// ends a hung test: how soon the stream closes (at its next heartbeat) is not asserted,
// since on a busy machine it measures the machine.
func waitClosed(t *testing.T, frames <-chan [2]string) {
	t.Helper()
	const within = 30 * time.Second
	revoked := false
	deadline := time.After(within)
	for {
		select {
		case f, ok := <-frames:
			if !ok {
				if !revoked {
					t.Fatal("stream ended without an auth_revoked frame")
				}
				return
			}
			if f[0] == "auth_revoked" {
				revoked = true
			}
		case <-deadline:
			t.Fatalf("stream still open after %v", within)
		}
	}
}

// TestRevokedCredentialsCloseStreams is row A10: revoking the API key, logging out and
// disabling the user each close an open stream at its next credential check (every
// heartbeat), with an auth_revoked frame; reconnecting gets 401.
func TestRevokedCredentialsCloseStreams(t *testing.T) {
	const hb = 100 * time.Millisecond
	h, _ := eventsHarness(t, hb)
	cookie, key := h.setup()
	srv := httptest.NewServer(h.h)
	defer srv.Close()

	// API key revoked (SSE at /api/events).
	_, frames := streamClient(t, srv.URL+"/api/events", map[string]string{"X-API-Key": key})
	if f := <-frames; f[0] != "connection" {
		t.Fatalf("first frame %v", f)
	}
	var keys []apiKeyInfo
	h.do(req{method: "GET", path: "/api/cloud/auth/api-keys", cookie: cookie}).json(t, &keys)
	if res := h.do(req{method: "DELETE", path: fmt.Sprintf("/api/cloud/auth/api-keys/%d", keys[0].ID), cookie: cookie}); res.code != 200 {
		t.Fatalf("revoke: %d %s", res.code, res.body)
	}
	waitClosed(t, frames)
	if res, _ := streamClient(t, srv.URL+"/api/events", map[string]string{"X-API-Key": key}); res.StatusCode != 401 {
		t.Fatalf("reconnect with revoked key: %d", res.StatusCode)
	}

	// Logout (SSE at /api/training/events/stream).
	sess := h.login("admin", "your-secure-password")
	_, frames = streamClient(t, srv.URL+"/api/training/events/stream", map[string]string{"Cookie": sessionCookie + "=" + sess})
	<-frames
	if res := h.do(req{method: "POST", path: "/api/cloud/auth/logout", cookie: sess}); res.code != 200 {
		t.Fatalf("logout: %d", res.code)
	}
	waitClosed(t, frames)

	// User disabled.
	rs := h.createUser(key2(t, h, cookie), "researcher", "researcher")
	_, frames = streamClient(t, srv.URL+"/api/events", map[string]string{"Cookie": sessionCookie + "=" + rs})
	<-frames
	var users []userBody
	h.do(req{method: "GET", path: "/api/users", cookie: cookie}).json(t, &users)
	var id int64
	for _, u := range users {
		if u.Username == "researcher" {
			id = u.ID
		}
	}
	if res := h.do(req{method: "POST", path: fmt.Sprintf("/api/users/%d/deactivate", id), cookie: cookie}); res.code != 200 {
		t.Fatalf("deactivate: %d %s", res.code, res.body)
	}
	waitClosed(t, frames)
}

// key2 makes a fresh admin API key (the first one was revoked).
func key2(t *testing.T, h *harness, cookie string) string {
	res := h.do(req{method: "POST", path: "/api/cloud/auth/api-keys", cookie: cookie, body: map[string]any{"name": "second"}})
	var k apiKeyCreated
	res.json(t, &k)
	return k.Key
}

// TestWebSocketStreamAndOrigin: /api/training/events/stream upgrades to a WebSocket with
// the same events, and a cookie-authenticated cross-site upgrade is refused.
func TestWebSocketStreamAndOrigin(t *testing.T) {
	h, hub := eventsHarness(t, time.Hour)
	cookie, key := h.setup()
	srv := httptest.NewServer(h.h)
	defer srv.Close()
	emitEvents(t, hub, "adm1", 1, 3, "training.progress")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws := "ws" + strings.TrimPrefix(srv.URL, "http") + "/api/training/events/stream?since_index=0"
	c, _, err := websocket.Dial(ctx, ws, &websocket.DialOptions{HTTPHeader: http.Header{"X-API-Key": {key}}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	var got []uint64
	for len(got) < 3 {
		_, b, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var m struct {
			JobID string       `json:"job_id"`
			Event events.Event `json:"event"`
		}
		json.Unmarshal(b, &m)
		if m.JobID == "adm1" {
			got = append(got, m.Event.Index)
		}
	}
	if got[0] != 1 || got[2] != 3 {
		t.Fatalf("ws indexes %v", got)
	}
	_, res, err := websocket.Dial(ctx, ws, &websocket.DialOptions{HTTPHeader: http.Header{
		"Cookie": {sessionCookie + "=" + cookie}, "Origin": {"https://evil.example"}}})
	if err == nil || res == nil || res.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site upgrade with a cookie: %v %v", err, res)
	}
	if res, _ := streamClient(t, srv.URL+"/api/events", nil); res.StatusCode != 401 {
		t.Fatalf("anonymous stream: %d", res.StatusCode)
	}
}
