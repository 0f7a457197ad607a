package main

import (
	"bufio"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
)

// SimpleTuner's own CLI (`simpletuner jobs …`) against the real daemon, replayed request
// by request. What the client sends, and the response fields it reads (recorded from its
// source; every request carries X-API-Key, JSON bodies are read with .get):
//
//	jobs list [-s S]    GET /api/cloud/jobs?limit=20[&status=S]      jobs[].job_id, status, config_name,
//	                                                                 metadata.run_name, duration_seconds
//	jobs get ID         GET /api/cloud/jobs/ID                       job (or the body itself): job_id, status,
//	                                                                 config_name, job_type, created_at, started_at,
//	                                                                 finished_at, duration_seconds, error_message,
//	                                                                 queue_position
//	jobs logs ID        GET /api/cloud/jobs/ID/logs                  logs
//	jobs logs ID -f     GET /api/cloud/jobs/ID/logs/stream           SSE: prints each "data: " line; stops at a
//	                    (Accept: text/event-stream)                  message with "event: done" (data: final status)
//	jobs cancel ID      POST /api/cloud/jobs/ID/cancel               success, detail
//	jobs cancel --all   GET /api/cloud/jobs?status=S&limit=500&offset=0 for S in running, pending, queued
//	                    (jobs[].job_id, status), then POST …/ID/cancel for each
//	jobs delete ID -f   DELETE /api/cloud/jobs/ID                    success, detail
//	jobs purge --status S --force
//	                    GET /api/cloud/jobs?status=S&limit=500&offset=0, then for pending/queued jobs
//	                    POST …/ID/cancel, and DELETE /api/cloud/jobs/ID for each (success, detail)
//
// A non-2xx answer makes the client print detail and exit 1.
func TestSimpleTunerCLIJobsSequence(t *testing.T) {
	home := t.TempDir()
	writeEnv(t, home, "demo")
	d := start(t, home, fakeTrainerArgs(150, 20)...)
	c := adminClient(t, d)
	code, k := call(t, c, "POST", d.base+"/api/auth/api-keys", map[string]any{"name": "cli"}, nil)
	key, _ := k["key"].(string)
	if code != 200 || key == "" {
		t.Fatalf("api key: %d %v", code, k)
	}
	cli := &http.Client{Timeout: 30 * time.Second} // no session: the key alone, as the CLI
	hdr := map[string]string{"X-API-Key": key}
	api := func(method, path string) (int, map[string]any) {
		t.Helper()
		return call(t, cli, method, d.base+path, nil, hdr)
	}
	submit := func() string {
		t.Helper()
		code, r := call(t, cli, "POST", d.base+"/api/queue/submit", map[string]any{"config_name": "demo"}, hdr)
		id, _ := r["job_id"].(string)
		if code != 200 || id == "" {
			t.Fatalf("submit: %d %v", code, r)
		}
		return id
	}
	jobsOf := func(r map[string]any) []map[string]any {
		var out []map[string]any
		list, _ := r["jobs"].([]any)
		for _, j := range list {
			out = append(out, j.(map[string]any))
		}
		return out
	}

	// jobs logs A --follow, on a running job until it ends.
	a := submit()
	waitJob(t, c, d.base, a, 20*time.Second, "running")
	lines, final := followLogs(t, d.base+"/api/cloud/jobs/"+a+"/logs/stream", key)
	if final != "completed" || !strings.Contains(strings.Join(lines, "\n"), "fake step done") {
		t.Fatalf("follow: final %q, %d lines %q", final, len(lines), lines)
	}

	// jobs list; jobs list -s running.
	code, r := api("GET", "/api/cloud/jobs?limit=20")
	js := jobsOf(r)
	if code != 200 || len(js) != 1 || js[0]["job_id"] != a || js[0]["status"] != "completed" || js[0]["config_name"] != "demo" {
		t.Fatalf("jobs list: %d %v", code, r)
	}
	if _, ok := js[0]["duration_seconds"].(float64); !ok {
		t.Errorf("jobs list: duration_seconds %v", js[0]["duration_seconds"])
	}
	if _, ok := js[0]["metadata"].(map[string]any); !ok {
		t.Errorf("jobs list: metadata %v", js[0]["metadata"])
	}
	if code, r := api("GET", "/api/cloud/jobs?limit=20&status=running"); code != 200 || len(jobsOf(r)) != 0 {
		t.Errorf("jobs list -s running: %d %v", code, r)
	}

	// jobs get A.
	code, r = api("GET", "/api/cloud/jobs/"+a)
	job, _ := r["job"].(map[string]any)
	if code != 200 || job["job_id"] != a || job["status"] != "completed" || job["config_name"] != "demo" || job["job_type"] != "local" {
		t.Fatalf("jobs get: %d %v", code, r)
	}
	for _, f := range []string{"created_at", "started_at", "finished_at"} {
		if s, _ := job[f].(string); s == "" {
			t.Errorf("jobs get: %s = %v", f, job[f])
		}
	}

	// jobs logs A.
	code, r = api("GET", "/api/cloud/jobs/"+a+"/logs")
	if logs, _ := r["logs"].(string); code != 200 || strings.Count(logs, "fake step done") < 100 {
		t.Errorf("jobs logs: %d, %d steps in %v", code, strings.Count(logs, "fake step done"), r)
	}

	// jobs cancel --all --force: one running job, one queued behind it.
	b := submit()
	waitJob(t, c, d.base, b, 20*time.Second, "running")
	q := submit()
	found := map[string]string{}
	for _, s := range []string{"running", "pending", "queued"} {
		code, r := api("GET", "/api/cloud/jobs?status="+s+"&limit=500&offset=0")
		if code != 200 {
			t.Fatalf("list %s: %d %v", s, code, r)
		}
		for _, j := range jobsOf(r) {
			found[j["job_id"].(string)] = j["status"].(string)
		}
	}
	if len(found) != 2 || found[b] != "running" || found[q] != "queued" {
		t.Fatalf("jobs to cancel: %v, want %s running and %s queued", found, b, q)
	}
	for id := range found {
		if code, r := api("POST", "/api/cloud/jobs/"+id+"/cancel"); code != 200 || r["success"] != true {
			t.Fatalf("cancel %s: %d %v", id, code, r)
		}
	}
	waitJob(t, c, d.base, b, 20*time.Second, "cancelled")
	waitJob(t, c, d.base, q, 20*time.Second, "cancelled")

	// jobs delete of a running job is refused with what to do; then jobs cancel ID.
	e := submit()
	waitJob(t, c, d.base, e, 20*time.Second, "running")
	if code, r := api("DELETE", "/api/cloud/jobs/"+e); code != 400 || !strings.Contains(r["detail"].(string), "Cancel it first") {
		t.Errorf("delete a running job: %d %v", code, r)
	}
	if code, r := api("POST", "/api/cloud/jobs/"+e+"/cancel"); code != 200 || r["success"] != true {
		t.Fatalf("jobs cancel: %d %v", code, r)
	}
	waitJob(t, c, d.base, e, 20*time.Second, "cancelled")

	// jobs delete A -f.
	if code, r := api("DELETE", "/api/cloud/jobs/"+a); code != 200 || r["success"] != true {
		t.Fatalf("jobs delete: %d %v", code, r)
	}
	if code, _ := api("GET", "/api/cloud/jobs/"+a); code != 404 {
		t.Errorf("deleted job: %d, want 404", code)
	}

	// jobs purge --status cancelled --force.
	code, r = api("GET", "/api/cloud/jobs?status=cancelled&limit=500&offset=0")
	if js := jobsOf(r); code != 200 || len(js) != 3 {
		t.Fatalf("purge list: %d %v", code, r)
	}
	for _, j := range jobsOf(r) {
		if code, r := api("DELETE", "/api/cloud/jobs/"+j["job_id"].(string)); code != 200 || r["success"] != true {
			t.Errorf("purge %v: %d %v", j["job_id"], code, r)
		}
	}
	if code, r := api("GET", "/api/cloud/jobs?limit=20"); code != 200 || len(jobsOf(r)) != 0 || r["total"] != float64(0) {
		t.Errorf("after purge: %d %v", code, r)
	}
	if code, r := api("GET", "/api/jobs"); code != 200 || r["total"] != float64(0) {
		t.Errorf("GET /api/jobs after purge: %d %v", code, r)
	}
}

// followLogs reads a log stream as SimpleTuner's client does: messages split at blank
// lines, each "data: " line printed, the stream over at a message with "event: done".
func followLogs(t *testing.T, url, key string) (lines []string, final string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rq, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	rq.Header.Set("Accept", "text/event-stream")
	rq.Header.Set("Cache-Control", "no-cache")
	rq.Header.Set("X-API-Key", key)
	res, err := http.DefaultClient.Do(rq)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("log stream: %d", res.StatusCode)
	}
	sc := bufio.NewScanner(res.Body)
	var msg []string
	for sc.Scan() {
		if l := sc.Text(); l != "" {
			msg = append(msg, l)
			continue
		}
		done := false
		var data []string
		for _, l := range msg {
			done = done || l == "event: done"
			if s, ok := strings.CutPrefix(l, "data: "); ok {
				data = append(data, s)
			}
		}
		msg = nil
		if done {
			if len(data) > 0 {
				final = data[0]
			}
			return lines, final
		}
		lines = append(lines, data...)
	}
	t.Fatalf("log stream ended without event: done (%v); %d lines", sc.Err(), len(lines))
	return nil, ""
}
