package main

import (
	"encoding/json"
	"fmt"
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

// TestOriginalCLISystemSequences replays what SimpleTuner's own CLI sends for `auth users
// deactivate|activate`, `jobs status` and `jobs submit --dry-run`, and asserts the fields
// it reads (docs/compatibility.md §11 for the queue): success on user activation, the four
// scheduler limits, and on a host without GPUs the CPU slot, so its "can allocate" and
// "insufficient GPUs" predictions come out true.
func TestOriginalCLISystemSequences(t *testing.T) {
	home := t.TempDir()
	writeEnv(t, home, "demo")
	d := start(t, home, fakeTrainerArgs(1000000, 20)...)
	c := adminClient(t, d)
	code, u := call(t, c, "POST", d.base+"/api/users", map[string]any{"email": "b@example.com", "username": "bob", "password": "bobpass1234", "is_admin": false}, nil)
	if code != 201 {
		t.Fatalf("create: %d %v", code, u)
	}
	id := fmt.Sprint(u["id"])
	for _, action := range []string{"deactivate", "activate"} {
		if code, r := call(t, c, "POST", d.base+"/api/users/"+id+"/"+action, nil, nil); code != 200 || r["success"] != true {
			t.Fatalf("%s: %d %v, want success true", action, code, r)
		}
	}

	_, sys := call(t, c, "GET", d.base+"/api/system/status", nil, nil)
	gpus, _ := sys["gpus"].([]any)
	cpuOnly := len(gpus) == 0
	stats := func(wantRunning float64, wantAvailable, wantAllocated []any) {
		t.Helper()
		code, st := call(t, c, "GET", d.base+"/api/queue/stats", nil, nil)
		if code != 200 || st["max_concurrent"] != 1.0 || st["user_max_concurrent"] != 1.0 || st["team_max_concurrent"] != 1.0 || st["enable_fair_share"] != false || st["running"] != wantRunning {
			t.Fatalf("queue stats: %d %v", code, st)
		}
		local, _ := st["local"].(map[string]any)
		if !cpuOnly {
			return
		}
		if local["total_gpus"] != 1.0 || fmt.Sprint(local["available_gpus"]) != fmt.Sprint(wantAvailable) || fmt.Sprint(local["allocated_gpus"]) != fmt.Sprint(wantAllocated) {
			t.Fatalf("local block on a CPU-only host: %v, want total 1, available %v, allocated %v", local, wantAvailable, wantAllocated)
		}
	}
	stats(0, []any{0.0}, []any{})
	code, sub := call(t, c, "POST", d.base+"/api/queue/submit", map[string]any{"any_gpu": true, "config_name": "demo", "for_approval": false, "no_wait": true, "target": "auto"}, nil)
	if code != 200 || sub["success"] != true || sub["status"] != "running" {
		t.Fatalf("submit: %d %v", code, sub)
	}
	stats(1, []any{}, []any{0.0})
	// The client now predicts "queued (waiting for GPUs)"; with no_wait the server refuses.
	if code, r := call(t, c, "POST", d.base+"/api/queue/submit", map[string]any{"any_gpu": false, "config_name": "demo", "for_approval": false, "no_wait": true, "target": "auto"}, nil); code != 200 || r["success"] != false {
		t.Fatalf("second submit: %d %v, want a refusal", code, r)
	}
}
