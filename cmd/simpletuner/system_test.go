package main

import (
	"encoding/json"
	"net/http"
	"net/http/cookiejar"
	"syscall"
	"testing"
	"time"
)

// TestShutdownRouteStopsLikeSIGTERMAndNextStartReattaches: POST /api/system/shutdown
// answers the original's {"status":"shutting_down"}, the daemon exits 0, the running
// trainer survives it, and the next start reattaches the same trainer (issue 15).
func TestShutdownRouteStopsLikeSIGTERMAndNextStartReattaches(t *testing.T) {
	home := t.TempDir()
	args := fakeTrainerArgs(1000000, 20)
	d := start(t, home, args...)
	c := adminClient(t, d)

	// A researcher may not stop the server.
	if code, _ := call(t, c, "POST", d.base+"/api/users", map[string]any{"email": "r@example.com", "username": "researcher", "password": "their-password", "level_names": []string{"researcher"}}, nil); code != 201 {
		t.Fatalf("create researcher: %d", code)
	}
	jar, _ := cookiejar.New(nil)
	rs := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	if code, _ := call(t, rs, "POST", d.base+"/api/auth/login", map[string]any{"username": "researcher", "password": "their-password"}, nil); code != 200 {
		t.Fatalf("login: %d", code)
	}
	if code, r := call(t, rs, "POST", d.base+"/api/system/shutdown", nil, nil); code != 403 {
		t.Fatalf("researcher shutdown: %d %v, want 403", code, r)
	}

	_, body := form(t, c, d.base+"/api/training/start", fastPathFields(t, home), "application/json")
	var st struct {
		JobID string `json:"job_id"`
	}
	json.Unmarshal([]byte(body), &st)
	j := waitJob(t, c, d.base, st.JobID, 20*time.Second, "running")
	pid := int(j["pid"].(float64))

	code, r := call(t, c, "POST", d.base+"/api/system/shutdown", nil, nil)
	if code != 200 || r["status"] != "shutting_down" {
		t.Fatalf("shutdown: %d %v", code, r)
	}
	select {
	case err := <-d.done:
		if err != nil {
			t.Fatalf("daemon exit after shutdown: %v, want 0\n%s", err, d.stderr)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("daemon still running 60 s after the shutdown call\n%s", d.stderr)
	}
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("trainer %d died with the daemon", pid)
	}

	d = start(t, home, args...)
	d.waitReady(c)
	j = waitJob(t, c, d.base, st.JobID, 20*time.Second, "running")
	if got := int(j["pid"].(float64)); got != pid || j["attempts"].(float64) != 1 {
		t.Fatalf("after restart: pid %d attempts %v, want the same trainer %d launched once", got, j["attempts"], pid)
	}
	if code, r := call(t, c, "POST", d.base+"/api/training/stop", nil, nil); code != 200 {
		t.Fatalf("stop: %d %v", code, r)
	}
	waitJob(t, c, d.base, st.JobID, 20*time.Second, "stopped")
}
