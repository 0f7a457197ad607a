package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
)

// fakeAPI is an httptest server that records each request and answers from a table keyed
// by "METHOD /path?query", else "METHOD /path"; unknown keys answer 404.
type fakeAPI struct {
	srv *httptest.Server
	mu  sync.Mutex // guards got
	got []fakeCall
}

// fakeCall is one request the fake server received.
type fakeCall struct {
	Method, Path, Query, APIKey string
	Body                        map[string]any
}

// fakeAnswer is the status and JSON body the fake server answers with.
type fakeAnswer struct {
	status int
	body   string
}

func newFakeAPI(t *testing.T, answers map[string]fakeAnswer) *fakeAPI {
	t.Helper()
	f := &fakeAPI{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := fakeCall{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, APIKey: r.Header.Get("X-API-Key")}
		if b, _ := io.ReadAll(r.Body); len(b) > 0 {
			if err := json.Unmarshal(b, &c.Body); err != nil {
				t.Errorf("%s %s: body is not a JSON object: %s", r.Method, r.URL.Path, b)
			}
		}
		f.mu.Lock()
		f.got = append(f.got, c)
		f.mu.Unlock()
		a, ok := answers[r.Method+" "+r.URL.Path+"?"+r.URL.RawQuery]
		if !ok {
			a, ok = answers[r.Method+" "+r.URL.Path]
		}
		if !ok {
			a = fakeAnswer{404, `{"detail":"Not Found"}`}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(a.status)
		io.WriteString(w, a.body)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// env is the CLI's environment pointing at the fake server, with an API key.
func (f *fakeAPI) env(key string) string {
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(f.srv.URL, "http://"))
	return map[string]string{"SIMPLETUNER_HOST": "127.0.0.1", "SIMPLETUNER_PORT": port, "SIMPLETUNER_API_KEY": "st_test_key"}[key]
}

// last is the last request received (the zero call when none).
func (f *fakeAPI) last() fakeCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.got) == 0 {
		return fakeCall{}
	}
	return f.got[len(f.got)-1]
}

// count is the number of requests received so far.
func (f *fakeAPI) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.got)
}

// cli runs the command line in process against the fake server.
func (f *fakeAPI) cli(args ...string) (stdout, stderr string, code int) {
	var o, e bytes.Buffer
	code = run(args, &o, &e, f.env)
	return o.String(), e.String(), code
}

const workerToken = "tok_3x4mple-Secret_value_0123456789abcdefghi"

// TestWorkersCommands runs every `simpletuner workers` subcommand against a fake server
// answering in the shapes of /api/admin/workers: what each sends, and what it prints.
func TestWorkersCommands(t *testing.T) {
	list := `{"workers":[` +
		`{"worker_id":"worker-Ab3dE_fG9hI","name":"gpu-a","worker_type":"persistent","status":"busy","gpu_name":"NVIDIA A100-SXM4-80GB","gpu_count":8,"gpu_info":{"name":"NVIDIA A100-SXM4-80GB","count":8},"labels":{"gpu_type":"a100-80gb"},"current_job_id":"3f2a9c1d","last_heartbeat":"2026-12-06T18:00:00Z"},` +
		`{"worker_id":"worker-Zz9yX_wV8uT","name":"gpu-b","worker_type":"ephemeral","status":"connecting","gpu_name":"","gpu_count":0,"gpu_info":{"name":"NVIDIA H100","count":2},"labels":{},"current_job_id":null,"last_heartbeat":null}` +
		`],"total":2}`
	tok := `{"worker_id":"worker-New_123456","token":"` + workerToken + `","connection_command":"simpletuner worker --orchestrator-url http://127.0.0.1:8001 --worker-token ` + workerToken + `"}`
	f := newFakeAPI(t, map[string]fakeAnswer{
		"GET /api/admin/workers":                           {200, list},
		"POST /api/admin/workers":                          {200, tok},
		"POST /api/admin/workers/worker-Ab3dE_fG9hI/drain": {200, `{"success":true,"worker_id":"worker-Ab3dE_fG9hI","status":"draining"}`},
		"DELETE /api/admin/workers/worker-Zz9yX_wV8uT":     {200, `{"success":true,"worker_id":"worker-Zz9yX_wV8uT"}`},
		"DELETE /api/admin/workers/worker-Ab3dE_fG9hI":     {400, `{"detail":"Worker has an active job; use force=true to delete anyway"}`},
		"POST /api/admin/workers/worker-Ab3dE_fG9hI/token": {200, strings.Replace(tok, "worker-New_123456", "worker-Ab3dE_fG9hI", 1)},
	})

	out, errOut, code := f.cli("workers", "list")
	if code != 0 || errOut != "" {
		t.Fatalf("workers list: exit %d, stderr %q", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || strings.Join(strings.Fields(lines[0]), " ") != "NAME ID STATUS GPU GPUS JOB LAST HEARTBEAT" {
		t.Fatalf("workers list table:\n%s", out)
	}
	for i, want := range [][]string{
		{"gpu-a", "worker-Ab3dE_fG9hI", "busy", "NVIDIA", "A100-SXM4-80GB", "8", "3f2a9c1d", "2026-12-06T18:00:00Z"},
		{"gpu-b", "worker-Zz9yX_wV8uT", "connecting", "NVIDIA", "H100", "2", "-", "-"}, // GPU from gpu_info only
	} {
		if got := strings.Fields(lines[i+1]); !reflect.DeepEqual(got, want) {
			t.Errorf("row %d: %q, want %q", i+1, got, want)
		}
	}
	if c := f.last(); c.Method != "GET" || c.Path != "/api/admin/workers" || c.Query != "" || c.APIKey != "st_test_key" {
		t.Errorf("workers list sent %+v", c)
	}

	out, _, code = f.cli("workers", "list", "--json", "--status", "idle")
	if code != 0 || strings.TrimSpace(out) != list {
		t.Errorf("workers list --json: exit %d, printed %q, want the answer as it came", code, out)
	}
	if c := f.last(); c.Query != "status_filter=idle" {
		t.Errorf("workers list --status idle sent query %q", c.Query)
	}

	for _, tc := range []struct {
		args []string
		body map[string]any
	}{
		{[]string{"workers", "create", "gpu-c", "--ephemeral", "--label", "gpu_type=h100-sxm", "--label", "team=nlp"},
			map[string]any{"name": "gpu-c", "worker_type": "ephemeral", "labels": map[string]any{"gpu_type": "h100-sxm", "team": "nlp"}}},
		{[]string{"workers", "create", "gpu-d"}, map[string]any{"name": "gpu-d", "worker_type": "persistent", "labels": map[string]any{}}},
	} {
		out, errOut, code := f.cli(tc.args...)
		if code != 0 || errOut != "" {
			t.Errorf("%v: exit %d, stderr %q", tc.args, code, errOut)
		}
		if c := f.last(); c.Method != "POST" || c.Path != "/api/admin/workers" || !reflect.DeepEqual(c.Body, tc.body) {
			t.Errorf("%v sent %s %s %v, want body %v", tc.args, c.Method, c.Path, c.Body, tc.body)
		}
		for _, want := range []string{"worker-New_123456", "Token: " + workerToken, "simpletuner worker --orchestrator-url http://127.0.0.1:8001 --worker-token " + workerToken, "shown only once"} {
			if !strings.Contains(out, want) {
				t.Errorf("%v: output lacks %q:\n%s", tc.args, want, out)
			}
		}
	}

	out, _, code = f.cli("workers", "token", "worker-Ab3dE_fG9hI")
	if c := f.last(); code != 0 || c.Method != "POST" || c.Path != "/api/admin/workers/worker-Ab3dE_fG9hI/token" ||
		!strings.Contains(out, "Token: "+workerToken) || !strings.Contains(out, "shown only once") || !strings.Contains(out, "old one no longer works") {
		t.Errorf("workers token: exit %d, sent %+v, printed:\n%s", code, c, out)
	}
	out, _, code = f.cli("workers", "drain", "worker-Ab3dE_fG9hI")
	if c := f.last(); code != 0 || c.Method != "POST" || c.Path != "/api/admin/workers/worker-Ab3dE_fG9hI/drain" || !strings.Contains(out, "draining") {
		t.Errorf("workers drain: exit %d, sent %+v, printed %q", code, c, out)
	}
	out, _, code = f.cli("workers", "delete", "--force", "worker-Zz9yX_wV8uT")
	if c := f.last(); code != 0 || c.Method != "DELETE" || c.Path != "/api/admin/workers/worker-Zz9yX_wV8uT" || c.Query != "force=true" || !strings.Contains(out, "deleted") {
		t.Errorf("workers delete --force: exit %d, sent %+v, printed %q", code, c, out)
	}
	_, errOut, code = f.cli("workers", "delete", "worker-Ab3dE_fG9hI")
	if c := f.last(); code != 1 || c.Query != "" || strings.TrimSpace(errOut) != "Error: Worker has an active job; use force=true to delete anyway" {
		t.Errorf("workers delete of a busy worker: exit %d, query %q, stderr %q", code, c.Query, errOut)
	}
	_, errOut, code = f.cli("workers", "drain", "worker-Nope")
	if code != 1 || !strings.Contains(errOut, "Error: Not Found") {
		t.Errorf("workers drain of an unknown worker: exit %d, stderr %q", code, errOut)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"workers", "create", "x", "--label", "gpu_type"}, "want KEY=VALUE"},
		{[]string{"workers", "create", "x", "--label", "a=1", "--label", "a=2"}, `label "a" given twice`},
		{[]string{"workers", "create"}, "want exactly one worker name"},
		{[]string{"workers", "delete"}, "want exactly one worker id"},
		{[]string{"workers", "bogus"}, `unknown command "bogus"`},
	} {
		n := f.count()
		_, errOut, code := f.cli(tc.args...)
		if code != 2 || !strings.Contains(errOut, tc.want) || f.count() != n {
			t.Errorf("%v: exit %d, stderr %q, %d requests; want exit 2 with %q and no request", tc.args, code, errOut, f.count()-n, tc.want)
		}
	}
}

// TestJobsSubmitFlags: `jobs submit` sends --target, --label and --priority as the queue
// API takes them, prints the worker it went to, and prints a 400's detail.
func TestJobsSubmitFlags(t *testing.T) {
	f := newFakeAPI(t, map[string]fakeAnswer{
		"POST /api/queue/submit": {200, `{"success":true,"job_id":"3f2a9c1d","status":"running","allocated_gpus":[],"allocated_worker_id":"worker-Ab3dE_fG9hI","queue_position":null,"requires_approval":false,"error":null,"reason":null}`},
	})
	out, errOut, code := f.cli("jobs", "submit", "demo", "--target", "worker", "--label", "gpu_type=h100*", "--label", "team=nlp", "--priority", "30")
	want := map[string]any{"config_name": "demo", "no_wait": false, "any_gpu": false, "target": "worker",
		"worker_labels": map[string]any{"gpu_type": "h100*", "team": "nlp"}, "priority": float64(30)}
	if c := f.last(); code != 0 || errOut != "" || !reflect.DeepEqual(c.Body, want) {
		t.Errorf("jobs submit: exit %d, stderr %q, sent %v, want %v", code, errOut, c.Body, want)
	}
	for _, w := range []string{"Submitting job 'demo' to worker...", "Job ID: 3f2a9c1d", "Status: running", "Worker: worker-Ab3dE_fG9hI"} {
		if !strings.Contains(out, w) {
			t.Errorf("jobs submit output lacks %q:\n%s", w, out)
		}
	}
	f.cli("jobs", "submit", "-t", "slurm", "demo")
	if c := f.last(); c.Body["target"] != "slurm" || c.Body["priority"] != nil || c.Body["worker_labels"] != nil {
		t.Errorf("jobs submit -t slurm sent %v: want target slurm and no priority or labels", c.Body)
	}
	f.cli("jobs", "submit", "demo")
	if c := f.last(); c.Body["target"] != "auto" {
		t.Errorf("jobs submit without --target sent %v, want target auto", c.Body)
	}

	refused := newFakeAPI(t, map[string]fakeAnswer{
		"POST /api/queue/submit": {400, `{"detail":"target=worker: no worker is registered; register one with POST /api/admin/workers (see GET /api/admin/workers)"}`},
	})
	_, errOut, code = refused.cli("jobs", "submit", "demo", "--target", "worker")
	if code != 1 || !strings.Contains(errOut, "Error: target=worker: no worker is registered") {
		t.Errorf("jobs submit refused with 400: exit %d, stderr %q", code, errOut)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"jobs", "submit", "demo", "--priority", "high"}, `want an integer, got "high"`},
		{[]string{"jobs", "submit", "demo", "--label", "=a100"}, "want KEY=VALUE"},
	} {
		n := f.count()
		_, errOut, code := f.cli(tc.args...)
		if code != 2 || !strings.Contains(errOut, tc.want) || f.count() != n {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 with %q and no request", tc.args, code, errOut, tc.want)
		}
	}
}

// TestJobsCommandsAgainstAFakeServer: list, status, cancel and logs send what the API
// takes and print what it answered, placement included.
func TestJobsCommandsAgainstAFakeServer(t *testing.T) {
	job := `{"job_id":"a1","status":"running","owner":"admin","environment":"demo","created_at":"2026-12-06T18:00:00Z","gpus":[],"progress":{"step":3,"total_steps":10},` +
		`"target":"auto","executor":"worker","worker_id":"worker-Ab3dE_fG9hI","note":null}`
	f := newFakeAPI(t, map[string]fakeAnswer{
		"GET /api/jobs":                       {200, `{"jobs":[` + job + `],"total":1}`},
		"GET /api/jobs/a1":                    {200, job},
		"POST /api/queue/a1/cancel":           {200, `{"success":true,"job_id":"a1"}`},
		"GET /api/jobs/a1/events?since_seq=0": {200, `{"job_id":"a1","events":[{"seq":1,"type":"notification","title":"hello","message":"from the trainer","timestamp":"2026-12-06T18:00:00Z"}],"next_seq":1}`},
		"GET /api/jobs/a1/events?since_seq=1": {200, `{"job_id":"a1","events":[],"next_seq":1}`},
	})
	out, errOut, code := f.cli("jobs", "list", "--status", "running")
	if c := f.last(); code != 0 || errOut != "" || c.Query != "status=running" || !strings.Contains(out, "a1") || !strings.Contains(out, "3/10") {
		t.Errorf("jobs list: exit %d, stderr %q, query %q, printed:\n%s", code, errOut, c.Query, out)
	}
	out, _, code = f.cli("jobs", "status", "a1")
	var j map[string]any
	if err := json.Unmarshal([]byte(out), &j); code != 0 || err != nil || j["executor"] != "worker" || j["worker_id"] != "worker-Ab3dE_fG9hI" || j["target"] != "auto" {
		t.Errorf("jobs status: exit %d, printed %s (%v)", code, out, err)
	}
	out, _, code = f.cli("jobs", "cancel", "a1")
	if c := f.last(); code != 0 || c.Method != "POST" || c.Path != "/api/queue/a1/cancel" || !strings.Contains(out, "Cancel requested for job a1") {
		t.Errorf("jobs cancel: exit %d, sent %+v, printed %q", code, c, out)
	}
	out, errOut, code = f.cli("jobs", "logs", "a1")
	if code != 0 || errOut != "" || strings.Count(out, "\n") != 1 || !strings.Contains(out, "hello: from the trainer") {
		t.Errorf("jobs logs: exit %d, stderr %q, printed %q, want the one event", code, errOut, out)
	}
	_, errOut, code = f.cli("jobs", "status", "zz")
	if code != 1 || !strings.Contains(errOut, "Error: Not Found") {
		t.Errorf("jobs status of an unknown job: exit %d, stderr %q", code, errOut)
	}
}

// TestJobsSubmitDryRunShowsTheWorkerPool: a dry run for a target that may use workers
// counts them by status (when the caller may list them); one for local does not ask.
func TestJobsSubmitDryRunShowsTheWorkerPool(t *testing.T) {
	f := newFakeAPI(t, map[string]fakeAnswer{
		"POST /api/configs/demo/validate": {200, `{"valid":true}`},
		"GET /api/queue/stats":            {200, `{"local":{"available_gpus":[],"total_gpus":0,"running_jobs":0,"pending_jobs":0}}`},
		"GET /api/admin/workers":          {200, `{"workers":[{"worker_id":"worker-a","status":"idle"},{"worker_id":"worker-b","status":"busy"}],"total":2}`},
	})
	out, errOut, code := f.cli("jobs", "submit", "demo", "--dry-run", "--target", "worker")
	if code != 0 || errOut != "" || !strings.Contains(out, "Worker Pool:\n  Total: 2, idle: 1, busy: 1,") || !strings.Contains(out, "[+] Idle workers can take the job") {
		t.Errorf("dry run, target worker: exit %d, stderr %q, printed:\n%s", code, errOut, out)
	}
	n := f.count()
	out, _, _ = f.cli("jobs", "submit", "demo", "-n", "-t", "local")
	if strings.Contains(out, "Worker Pool") || f.last().Path == "/api/admin/workers" || f.count() != n+2 {
		t.Errorf("dry run, target local: asked for workers or printed them:\n%s", out)
	}
}
