package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"
)

// cliAgainst runs `simpletuner args…` in this process against the daemon d with an API
// key, as a user would from a shell.
func cliAgainst(t *testing.T, d *proc, key string, args ...string) (string, string, int) {
	t.Helper()
	u, err := url.Parse(d.base)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"SIMPLETUNER_HOST": u.Hostname(), "SIMPLETUNER_PORT": u.Port(), "SIMPLETUNER_API_KEY": key}
	var out, errb bytes.Buffer
	code := run(args, &out, &errb, func(k string) string { return env[k] })
	return out.String(), errb.String(), code
}

// waitSchedule polls a schedule until ok accepts it.
func waitSchedule(t *testing.T, c *http.Client, base, id string, what string, ok func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, sc := call(t, c, "GET", base+"/api/schedules/"+id, nil, nil)
		if code == 200 && ok(sc) {
			return sc
		}
		if time.Now().After(deadline) {
			t.Fatalf("schedule %s: waited for %s: %d %v", id, what, code, sc)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestSchedulesAgainstRealDaemon runs the real daemon with the fake trainer on the real
// clock: an "@every 1s" schedule created with the CLI submits a job that trains to the
// end, and its run is an event of that job; a cleanup schedule deletes the ended jobs
// beyond its keep_last; bad specs and environments are refused naming the field; another
// user can neither read, change, run nor delete the schedule; the daemon's maintenance is
// listed to the administrator.
func TestSchedulesAgainstRealDaemon(t *testing.T) {
	home := t.TempDir()
	writeEnv(t, home, "demo")
	d := start(t, home, fakeTrainerArgs(3, 5)...)
	c := adminClient(t, d)
	code, k := call(t, c, "POST", d.base+"/api/auth/api-keys", map[string]any{"name": "cli"}, nil)
	key, _ := k["key"].(string)
	if code != 200 || key == "" {
		t.Fatalf("api key: %d %v", code, k)
	}

	// Refusals name the field and the fix.
	if _, errOut, code := cliAgainst(t, d, key, "schedules", "create", "bad", "--cron", "0 25 * * *", "--submit", "demo"); code != 1 || !strings.Contains(errOut, "spec: field 2 (hour)") {
		t.Fatalf("bad spec: exit %d, %q", code, errOut)
	}
	if _, errOut, code := cliAgainst(t, d, key, "schedules", "create", "bad", "--cron", "@daily", "--submit", "nope"); code != 1 || !strings.Contains(errOut, "params.config_name: unknown environment \"nope\"") {
		t.Fatalf("unknown environment: exit %d, %q", code, errOut)
	}
	if code, r := call(t, c, "POST", d.base+"/api/schedules", map[string]any{"name": "x", "spec": "@daily", "action": "reboot"}, nil); code != 422 || !strings.Contains(strings.ToLower(mustJSON(r)), "unknown action") {
		t.Fatalf("unknown action: %d %v", code, r)
	}

	// Every second: submit demo.
	out, errOut, code := cliAgainst(t, d, key, "schedules", "create", "often", "--cron", "@every 1s", "--submit", "demo")
	if code != 0 {
		t.Fatalf("create: exit %d\n%s%s", code, out, errOut)
	}
	id := ""
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "ID:"); ok {
			id = strings.TrimSpace(v)
		}
	}
	if id == "" {
		t.Fatalf("create printed no id:\n%s", out)
	}
	sc := waitSchedule(t, c, d.base, id, "a submitted job", func(sc map[string]any) bool { return sc["last_job_id"] != nil && sc["last_job_id"] != "" })
	if sc["last_outcome"] != "ok" {
		t.Fatalf("first run: %v", sc)
	}
	jobID := sc["last_job_id"].(string)
	if _, errOut, code := cliAgainst(t, d, key, "schedules", "delete", id); code != 0 {
		t.Fatalf("delete: exit %d %s", code, errOut)
	}
	waitJob(t, c, d.base, jobID, 30*time.Second, "completed")
	code, evs := call(t, c, "GET", d.base+"/api/training/events?types=schedule.run&job_id="+jobID, nil, nil)
	if code != 200 || !strings.Contains(mustJSON(evs), `"schedule.run"`) || !strings.Contains(mustJSON(evs), `"schedule_id":"`+id+`"`) {
		t.Fatalf("the job's events lack the schedule's run: %d %v", code, evs)
	}

	// Another scheduled job or two may have run meanwhile; make sure there are at least two
	// ended jobs, then let a cleanup keep only the newest.
	code, r := call(t, c, "POST", d.base+"/api/schedules", map[string]any{"name": "one more", "spec": "@daily", "action": "submit", "params": map[string]any{"config_name": "demo"}}, nil)
	if code != 201 {
		t.Fatalf("create: %d %v", code, r)
	}
	out, errOut, code = cliAgainst(t, d, key, "schedules", "run", r["id"].(string))
	if code != 0 || !strings.Contains(out, "ran: ok") {
		t.Fatalf("run now: exit %d\n%s%s", code, out, errOut)
	}
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "Job ID:"); ok {
			waitJob(t, c, d.base, strings.TrimSpace(v), 30*time.Second, "completed")
		}
	}
	ended := func() int {
		_, jl := call(t, c, "GET", d.base+"/api/jobs", nil, nil)
		n := 0
		for _, j := range jl["jobs"].([]any) {
			if s := j.(map[string]any)["status"]; s == "completed" || s == "failed" || s == "cancelled" {
				n++
			}
		}
		return n
	}
	if n := ended(); n < 2 {
		t.Fatalf("%d ended jobs before the cleanup, want at least 2", n)
	}
	code, r = call(t, c, "POST", d.base+"/api/schedules", map[string]any{"name": "tidy", "spec": "@every 1s", "action": "cleanup", "params": map[string]any{"what": "jobs", "keep_last": 1}}, nil)
	if code != 201 {
		t.Fatalf("cleanup schedule: %d %v", code, r)
	}
	tidy := r["id"].(string)
	waitSchedule(t, c, d.base, tidy, "a cleanup run", func(sc map[string]any) bool { return sc["last_outcome"] == "ok" })
	if n := ended(); n != 1 {
		t.Fatalf("%d ended jobs after the cleanup, want 1", n)
	}

	// Another user: nothing of the admin's schedules, not even their existence.
	if code, _ := call(t, c, "POST", d.base+"/api/users", map[string]any{"email": "m@example.com", "username": "mallory", "password": "their-password", "level_names": []string{"researcher"}}, nil); code != 201 && code != 200 {
		t.Fatalf("create user: %d", code)
	}
	jar, _ := cookiejar.New(nil)
	m := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	if code, r := call(t, m, "POST", d.base+"/api/auth/login", map[string]any{"username": "mallory", "password": "their-password"}, nil); code != 200 {
		t.Fatalf("login: %d %v", code, r)
	}
	for _, op := range []struct{ method, path string }{{"GET", ""}, {"PUT", ""}, {"POST", "/run"}, {"DELETE", ""}} {
		var body any
		if op.method == "PUT" {
			body = map[string]any{"enabled": false}
		}
		if code, r := call(t, m, op.method, d.base+"/api/schedules/"+tidy+op.path, body, nil); code != 404 {
			t.Errorf("another user's %s %s: %d %v", op.method, op.path, code, r)
		}
	}
	if code, r := call(t, m, "GET", d.base+"/api/schedules", nil, nil); code != 200 || r["total"] != float64(0) {
		t.Errorf("another user's list: %d %v", code, r)
	}

	// The administrator sees the daemon's own maintenance, read-only.
	out, _, code = cliAgainst(t, d, key, "schedules", "list")
	if code != 0 || !strings.Contains(out, "system-event-retention") || !strings.Contains(out, "system-orphan-sockets") || !strings.Contains(out, "tidy") {
		t.Fatalf("list: exit %d\n%s", code, out)
	}
	if code, r := call(t, c, "DELETE", d.base+"/api/schedules/system-event-retention", nil, nil); code != 403 {
		t.Fatalf("delete a built-in schedule: %d %v", code, r)
	}
}

// mustJSON is v as JSON, for searching an answer's text.
func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestScheduledValidationSteersRunningJob: an "@every 1s" validate schedule on "current"
// asks the owner's running job for validation, and the trainer's validation event follows.
func TestScheduledValidationSteersRunningJob(t *testing.T) {
	home := t.TempDir()
	writeEnv(t, home, "demo")
	d := start(t, home, fakeTrainerArgs(100000, 20)...)
	c := adminClient(t, d)
	jobID := submitRunning(t, c, d.base, "demo")
	code, r := call(t, c, "POST", d.base+"/api/schedules", map[string]any{"name": "validate often", "spec": "@every 1s", "action": "validate", "params": map[string]any{"job_id": "current"}}, nil)
	if code != 201 {
		t.Fatalf("create: %d %v", code, r)
	}
	id := r["id"].(string)
	sc := waitSchedule(t, c, d.base, id, "a validation request", func(sc map[string]any) bool { return sc["last_outcome"] != nil && sc["last_outcome"] != "" })
	if sc["last_outcome"] != "ok" || sc["last_job_id"] != jobID {
		t.Fatalf("run: %v", sc)
	}
	if code, _ := call(t, c, "DELETE", d.base+"/api/schedules/"+id, nil, nil); code != 200 {
		t.Fatalf("delete: %d", code)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, evs := call(t, c, "GET", d.base+"/api/training/events?types=training.validation&job_id="+jobID, nil, nil)
		if list, _ := evs["events"].([]any); len(list) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no validation event from job %s: %v", jobID, evs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, _ := call(t, c, "POST", d.base+"/api/queue/"+jobID+"/cancel", nil, nil); code != 200 {
		t.Fatalf("cancel: %d", code)
	}
}
