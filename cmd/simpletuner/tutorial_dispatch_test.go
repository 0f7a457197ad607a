package main

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The tutorial's "dispatch jobs to remote workers" section: its three submissions, as it
// writes them, against a daemon with no worker registered.
const (
	tutorialSubmitAuto = `curl -s -X POST http://localhost:8001/api/queue/submit \
  -H 'Content-Type: application/json' \
  -d '{
    "config_name": "my-training-config",
    "target": "auto"
  }'`
	tutorialSubmitWorker = `curl -s -X POST http://localhost:8001/api/queue/submit \
  -H 'Content-Type: application/json' \
  -d '{
    "config_name": "my-training-config",
    "target": "worker"
  }'`
	tutorialSubmitLocal = `curl -s -X POST http://localhost:8001/api/queue/submit \
  -H 'Content-Type: application/json' \
  -d '{
    "config_name": "my-training-config",
    "target": "local"
  }'`
)

// TestTutorialDispatchWithoutWorkers runs the tutorial's three submissions with bash and
// curl (before the first administrator exists, the tutorial's unauthenticated calls from
// this machine are the administrator's): auto falls back to this machine and runs, worker
// is refused with a 400 that says where workers are registered, local runs. The job views
// show where each ran.
func TestTutorialDispatchWithoutWorkers(t *testing.T) {
	needTools(t)
	home := t.TempDir()
	writeEnv(t, home, "my-training-config")
	d := start(t, home, fakeTrainerArgs(3, 5)...)
	c := &http.Client{Timeout: 30 * time.Second}
	d.waitReady(c)
	// The one change to the commands: the daemon's address, and the HTTP status printed on
	// a last line after the body.
	rep := strings.NewReplacer("http://localhost:8001", d.base, "curl -s ", `curl -s -w '\n%{http_code}' `)
	submit := func(script string) (int, map[string]any) {
		t.Helper()
		out := strings.TrimSpace(pixartShell(t, home, rep.Replace(script)))
		i := strings.LastIndexByte(out, '\n')
		code, err := strconv.Atoi(out[i+1:])
		var body map[string]any
		if err != nil || i < 0 || json.Unmarshal([]byte(out[:i]), &body) != nil {
			t.Fatalf("%s printed %q: want a JSON body and the status", script, out)
		}
		return code, body
	}

	for _, tc := range []struct{ script, target string }{{tutorialSubmitAuto, "auto"}, {tutorialSubmitLocal, "local"}} {
		code, r := submit(tc.script)
		id, _ := r["job_id"].(string)
		if code != 200 || r["success"] != true || r["status"] != "running" || id == "" || r["allocated_worker_id"] != nil {
			t.Fatalf("target %s: %d %v, want success, status running on this machine", tc.target, code, r)
		}
		j := waitJob(t, c, d.base, id, 30*time.Second, "completed")
		if j["target"] != tc.target || j["executor"] != "local" || j["worker_id"] != nil {
			t.Errorf("target %s: job shows target %v, executor %v, worker_id %v; want %s, local, null", tc.target, j["target"], j["executor"], j["worker_id"], tc.target)
		}
	}

	code, r := submit(tutorialSubmitWorker)
	detail, _ := r["detail"].(string)
	if code != http.StatusBadRequest || !strings.Contains(detail, "worker") || !strings.Contains(detail, "GET /api/admin/workers") {
		t.Errorf("target worker with none registered: %d %v, want 400 saying to see GET /api/admin/workers", code, r)
	}
	_, list := call(t, c, "GET", d.base+"/api/jobs", nil, nil)
	if list["total"] != float64(2) {
		t.Errorf("GET /api/jobs: %v, want the 2 jobs that ran (the refused one is not stored)", list["total"])
	}
}
