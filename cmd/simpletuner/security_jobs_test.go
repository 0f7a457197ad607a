package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// Black-box tests of job ownership (rows H1, H8 and the checkpoint listing of H2 in
// docs/security.md): one researcher's job is invisible to another on every route that names or
// implies a job, status shows only jobs the caller may see, and the checkpoint listing
// tells nothing about paths outside the caller's jobs.

// withField returns fields with name set to value (replaced, not repeated).
func withField(fields [][2]string, name, value string) [][2]string {
	out := [][2]string{}
	for _, f := range fields {
		if f[0] != name {
			out = append(out, f)
		}
	}
	return append(out, [2]string{name, value})
}

// jobRoute is one route that names a job or implies "the current job", as /openapi.json
// lists it.
type jobRoute struct {
	method, path string
	// named is how a call names the job: "path" ({job_id}), "query" (?job_id=, or the
	// form field job_id for a cookie caller's POST), or "" (the route takes no job_id).
	named string
	// body is the JSON body the route needs, if any.
	body any
	// implied checks the answer to a call without job_id by a researcher who has no job
	// of their own; nil for routes that need a job id or that stream (the streams' own
	// per-owner filter is checked in supervisor/api).
	implied func(code int, body string) error
}

// notJobRoutes are the routes the ownership walk leaves out: the /api/training/ routes
// that take no job (they validate or create), and the worker protocol's job routes, which
// no user may call — a worker token answers for them, and only for the job its worker was
// given (row W2: TestWorkerProtocolRoutes in supervisor/api).
var notJobRoutes = []string{"POST /api/training/validate", "POST /api/training/configuration/check",
	"POST /api/training/start", "POST /api/training/configuration/run",
	"POST /api/workers/job/{job_id}/events", "POST /api/workers/job/{job_id}/status"}

// jobRoutesOfDoc lists "METHOD path" of every operation in the served OpenAPI document
// that names a job (a {job_id} path segment, a job_id query parameter or form field) or
// lives under /api/training/: the set the route table of the ownership test must cover.
func jobRoutesOfDoc(t *testing.T, base string) []string {
	t.Helper()
	res, err := http.Get(base + "/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	type schema struct {
		Properties map[string]any `json:"properties"`
	}
	var doc struct {
		Paths map[string]map[string]struct {
			Parameters []struct {
				Name string `json:"name"`
			} `json:"parameters"`
			RequestBody struct {
				Content map[string]struct {
					Schema schema `json:"schema"`
				} `json:"content"`
			} `json:"requestBody"`
		} `json:"paths"`
	}
	if err := json.NewDecoder(res.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	var out []string
	for path, ops := range doc.Paths {
		for method, op := range ops {
			named := strings.Contains(path, "{job_id}") || strings.HasPrefix(path, "/api/training/")
			for _, p := range op.Parameters {
				named = named || p.Name == "job_id"
			}
			for _, c := range op.RequestBody.Content {
				_, has := c.Schema.Properties["job_id"]
				named = named || has
			}
			if named {
				out = append(out, strings.ToUpper(method)+" "+path)
			}
		}
	}
	sort.Strings(out)
	return out
}

// TestSecurityJobRoutesHideOthersJobs is row H1 of docs/security.md: a second researcher gets 404 —
// the very answer a job id that does not exist gets — on every route that names another
// user's job, by API key and by session cookie (a viewer gets the same answer as for a
// missing job); without job_id they act on nothing of the first researcher's; the job
// runs on untouched. Each researcher's "current job" is their own, even while another
// user's job is newer; a lead sees the job but may not stop it; an administrator may.
func TestSecurityJobRoutesHideOthersJobs(t *testing.T) {
	home := t.TempDir()
	d := start(t, home, fakeTrainerArgs(1000000, 100)...)
	tm := newTeam(t, d)
	b := d.base

	fields := fastPathFields(t, home)
	outA := filepath.Join(home, "out", "research1-run")
	jobA := ""
	noneOfA := func(body string) error {
		if jobA != "" && strings.Contains(body, jobA) || strings.Contains(body, outA) {
			return fmt.Errorf("mentions research1's job or its output directory")
		}
		return nil
	}
	jsonField := func(body, key string) any {
		var m map[string]any
		json.Unmarshal([]byte(body), &m)
		return m[key]
	}
	expect := func(wantCode int, key, want string) func(int, string) error {
		return func(code int, body string) error {
			if code != wantCode || fmt.Sprint(jsonField(body, key)) != want {
				return fmt.Errorf("got %d %s, want %d with %s %q", code, body, wantCode, key, want)
			}
			return noneOfA(body)
		}
	}
	routes := []jobRoute{
		{method: "GET", path: "/api/jobs/{job_id}", named: "path"},
		{method: "GET", path: "/api/jobs/{job_id}/events", named: "path"},
		{method: "GET", path: "/api/training/status", implied: func(code int, body string) error {
			if code != 200 || jsonField(body, "status") != "idle" || jsonField(body, "job_id") != nil {
				return fmt.Errorf("got %d %s, want idle", code, body)
			}
			return noneOfA(body)
		}},
		{method: "GET", path: "/api/training/checkpoints", named: "query", implied: expect(200, "error", "No output directory specified")},
		{method: "POST", path: "/api/training/checkpoints", named: "query", implied: expect(200, "error", "No output directory specified")},
		{method: "GET", path: "/api/training/events", named: "query", implied: func(code int, body string) error {
			if code != 200 || jsonField(body, "job_id") != nil {
				return fmt.Errorf("got %d %s, want job_id null", code, body)
			}
			return noneOfA(body)
		}},
		{method: "GET", path: "/api/training/events/stream", named: "query"},
		{method: "GET", path: "/api/events", named: "query"},
		{method: "POST", path: "/api/training/validation/run", named: "query", implied: expect(400, "detail", "No active training job")},
		{method: "POST", path: "/api/training/checkpoint/run", named: "query", implied: expect(400, "detail", "No active training job")},
		{method: "POST", path: "/api/queue/{job_id}/priority", named: "path", body: map[string]any{"priority": 30}},
		{method: "POST", path: "/api/queue/{job_id}/cancel", named: "path"},
		{method: "GET", path: "/api/cloud/jobs/{job_id}", named: "path"},
		{method: "GET", path: "/api/cloud/jobs/{job_id}/logs", named: "path"},
		{method: "GET", path: "/api/cloud/jobs/{job_id}/logs/stream", named: "path"},
		{method: "POST", path: "/api/cloud/jobs/{job_id}/cancel", named: "path"},
		{method: "DELETE", path: "/api/cloud/jobs/{job_id}", named: "path"},
		{method: "POST", path: "/api/training/stop", named: "query", implied: expect(200, "message", "No active training job to stop")},
		{method: "POST", path: "/api/training/cancel", named: "query", implied: expect(200, "message", "There is no active training job to cancel.")},
	}

	// The table covers every job route the server has, so a new one cannot be missed.
	var table []string
	for _, r := range routes {
		table = append(table, r.method+" "+r.path)
	}
	served := jobRoutesOfDoc(t, b)
	for _, r := range served {
		if !slices.Contains(table, r) && !slices.Contains(notJobRoutes, r) {
			t.Errorf("%s names or implies a job but is missing from this test's route table", r)
		}
	}
	for _, r := range table {
		if !slices.Contains(served, r) {
			t.Errorf("%s is in the route table but the server does not list it as a job route", r)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// Two jobs may run at once, so research2's job can be newer than research1's.
	if code, body := call(t, tm.admin.cookie, "POST", b+"/api/queue/concurrency", map[string]any{"local_job_max_concurrent": 2}, nil); code != 200 {
		t.Fatalf("concurrency: %d %v", code, body)
	}
	jobA = startRunning(t, d, tm.r1.cookie, withField(fields, "--output_dir", outA))
	before := jobState(t, tm.r1.cookie, b, jobA)

	// Everyone below research1 who is not research1: research2 by key and by cookie, and
	// the viewer (cookie only).
	callers := []struct {
		name string
		c    *http.Client
		hdr  map[string]string
		// want404: a researcher passes every route permission, so the job lookup answers;
		// the viewer may instead meet a route's own permission check, which answers the
		// same for every job id.
		want404 bool
	}{
		{"research2 (API key)", tm.anon, tm.r2.keyed(), true},
		{"research2 (cookie)", tm.r2.cookie, nil, true},
		{"viewer (cookie)", tm.view.cookie, nil, false},
	}
	send := func(c *http.Client, hdr map[string]string, r jobRoute, id string) (int, string) {
		path := r.path
		switch r.named {
		case "path":
			path = strings.ReplaceAll(path, "{job_id}", id)
		case "query":
			if id != "" && r.method == "POST" && hdr == nil && r.body == nil {
				// A cookie caller posts the form field, as the tutorial's curl -F does.
				return form(t, c, b+path, [][2]string{{"job_id", id}}, "application/json")
			}
			if id != "" {
				path += "?job_id=" + url.QueryEscape(id)
			}
		}
		h := map[string]string{"Accept": "application/json"}
		for k, v := range hdr {
			h[k] = v
		}
		return rawCall(t, c, r.method, b+path, jsonBytes(t, r.body), h)
	}
	for _, who := range callers {
		for _, r := range routes {
			if r.named == "" {
				continue
			}
			code, body := send(who.c, who.hdr, r, jobA)
			missingCode, missingBody := send(who.c, who.hdr, r, "0badc0de")
			switch {
			case code != missingCode || body != missingBody:
				t.Errorf("%s %s %s on research1's job: %d %s; on a job that does not exist: %d %s (must be the same)", who.name, r.method, r.path, code, body, missingCode, missingBody)
			case who.want404 && (code != 404 || !strings.Contains(body, "Job not found")):
				t.Errorf("%s %s %s on research1's job: %d %s, want 404 Job not found", who.name, r.method, r.path, code, body)
			case code < 400:
				t.Errorf("%s %s %s on research1's job: %d %s", who.name, r.method, r.path, code, body)
			}
		}
	}
	// Without job_id, "the current job" of a researcher with none is no job at all.
	for _, who := range callers[:2] {
		for _, r := range routes {
			if r.implied == nil {
				continue
			}
			code, body := send(who.c, who.hdr, r, "")
			if err := r.implied(code, body); err != nil {
				t.Errorf("%s %s %s without job_id: %v", who.name, r.method, r.path, err)
			}
		}
	}
	// SimpleTuner's job list shows research2 and the viewer nothing of research1's.
	for _, who := range callers {
		code, body := rawCall(t, who.c, "GET", b+"/api/cloud/jobs?limit=500", nil, who.hdr)
		if err := noneOfA(body); (code != 200 && code != 403) || err != nil {
			t.Errorf("%s GET /api/cloud/jobs: %d %s (%v)", who.name, code, body, err)
		}
	}
	if st := jobState(t, tm.r1.cookie, b, jobA); st["status"] != "running" || st["priority"] != before["priority"] {
		t.Fatalf("research1's job after research2's and the viewer's calls: %v at priority %v, want running at priority %v", st["status"], st["priority"], before["priority"])
	}

	// research2 now runs a newer job; research1's "current job" stays research1's own.
	jobB := startRunning(t, d, tm.r2.cookie, withField(fields, "--output_dir", filepath.Join(home, "out", "research2-run")))
	for _, path := range []string{"/api/training/validation/run", "/api/training/checkpoint/run"} {
		if code, r := call(t, tm.r1.cookie, "POST", b+path, nil, nil); code != 200 || r["job_id"] != jobA {
			t.Fatalf("research1 %s without job_id: %d %v, want job %s", path, code, r, jobA)
		}
	}
	if code, st := call(t, tm.r1.cookie, "GET", b+"/api/training/status", nil, nil); code != 200 || st["job_id"] != jobA || st["status"] != "running" {
		t.Fatalf("research1's status: %d %v, want running job %s", code, st, jobA)
	}
	if code, cp := call(t, tm.r1.cookie, "GET", b+"/api/training/checkpoints", nil, nil); code != 200 || cp["output_dir"] != outA {
		t.Fatalf("research1's checkpoints: %d %v, want %s", code, cp, outA)
	}
	// The trainer obeys commands in order: once research1's checkpoint has run, any
	// command research2 or the viewer had slipped in would have run before it.
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, evs := call(t, tm.r1.cookie, "GET", b+"/api/jobs/"+jobA+"/events", nil, nil)
		if code != 200 {
			t.Fatalf("research1's job events: %d %v", code, evs)
		}
		n := map[string]int{}
		for _, e := range evs["events"].([]any) {
			n[fmt.Sprint(e.(map[string]any)["type"])]++
		}
		if n["training.checkpoint"] > 0 {
			if n["training.checkpoint"] != 1 || n["training.validation"] != 1 {
				t.Fatalf("research1's job ran %d checkpoints and %d validations, want exactly its owner's one each", n["training.checkpoint"], n["training.validation"])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("research1's checkpoint never ran: %v", n)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// A lead sees every job but may not stop or cancel another user's.
	if st := jobState(t, tm.lead.cookie, b, jobA); st["owner"] != "research1" {
		t.Fatalf("lead's view of research1's job: %v", st)
	}
	if code, body := rawCall(t, tm.anon, "POST", b+"/api/training/stop?job_id="+jobA, nil, tm.lead.keyed()); code != 403 || !strings.Contains(body, "job.cancel.all") {
		t.Fatalf("lead stops research1's job: %d %s, want 403 job.cancel.all", code, body)
	}
	if code, body := rawCall(t, tm.anon, "POST", b+"/api/queue/"+jobA+"/cancel", nil, tm.lead.keyed()); code != 403 || !strings.Contains(body, "queue.cancel.all") {
		t.Fatalf("lead cancels research1's job: %d %s, want 403 queue.cancel.all", code, body)
	}

	for _, c := range []struct{ method, path, perm string }{
		{"POST", "/api/cloud/jobs/" + jobA + "/cancel", "job.cancel.all"},
		{"DELETE", "/api/cloud/jobs/" + jobA, "job.delete.all"},
	} {
		if code, body := rawCall(t, tm.anon, c.method, b+c.path, nil, tm.lead.keyed()); code != 403 || !strings.Contains(body, c.perm) {
			t.Fatalf("lead %s %s: %d %s, want 403 %s", c.method, c.path, code, body, c.perm)
		}
	}

	// research2 stops its own job without job_id; research1's job runs on.
	if code, r := call(t, tm.r2.cookie, "POST", b+"/api/training/stop", nil, nil); code != 200 || r["job_id"] != jobB {
		t.Fatalf("research2 stop without job_id: %d %v, want job %s", code, r, jobB)
	}
	waitJob(t, tm.r2.cookie, b, jobB, 30*time.Second, "stopped")
	if st := jobState(t, tm.r1.cookie, b, jobA); st["status"] != "running" {
		t.Fatalf("research1's job after research2's stop: %v", st["status"])
	}
	// An administrator may cancel anyone's job.
	if code, body := rawCall(t, tm.anon, "POST", b+"/api/queue/"+jobA+"/cancel", nil, tm.admin.keyed()); code != 200 {
		t.Fatalf("admin cancels research1's job: %d %s", code, body)
	}
	waitJob(t, tm.r1.cookie, b, jobA, 30*time.Second, "cancelled")
}

// TestSecurityStatusShowsOnlyVisibleJobs is row H8 of docs/security.md: GET /api/training/status
// shows a viewer and a second researcher "idle" while another user's job runs — not its
// config, prompts, paths or pid; its owner and a lead (job.view.all) see it.
func TestSecurityStatusShowsOnlyVisibleJobs(t *testing.T) {
	home := t.TempDir()
	d := start(t, home, fakeTrainerArgs(1000000, 100)...)
	tm := newTeam(t, d)
	out := filepath.Join(home, "out", "private-run")
	const prompt = "a private prompt of research1"
	fields := withField(withField(fastPathFields(t, home), "--output_dir", out), "--validation_prompt", prompt)
	id := startRunning(t, d, tm.r1.cookie, fields)
	pid := fmt.Sprint(jobState(t, tm.r1.cookie, d.base, id)["pid"])

	for _, who := range []struct {
		name string
		c    *http.Client
		hdr  map[string]string
	}{{"viewer (cookie)", tm.view.cookie, nil}, {"research2 (API key)", tm.anon, tm.r2.keyed()}} {
		code, body := rawCall(t, who.c, "GET", d.base+"/api/training/status", nil, who.hdr)
		var st map[string]any
		json.Unmarshal([]byte(body), &st)
		if code != 200 || st["status"] != "idle" || st["job_id"] != nil || st["job_info"] != nil {
			t.Errorf("%s's status while research1's job runs: %d %s, want idle", who.name, code, body)
		}
		for _, secret := range []string{id, prompt, out, home, `"pid":` + pid} {
			if strings.Contains(body, secret) {
				t.Errorf("%s's status shows research1's %q: %s", who.name, secret, body)
			}
		}
	}
	for _, who := range []struct {
		name string
		c    *http.Client
	}{{"research1", tm.r1.cookie}, {"lead", tm.lead.cookie}} {
		code, st := call(t, who.c, "GET", d.base+"/api/training/status", nil, nil)
		cfg, _ := st["config"].(map[string]any)
		if code != 200 || st["job_id"] != id || st["status"] != "running" || cfg["--validation_prompt"] != prompt {
			t.Errorf("%s's status: %d %v, want research1's running job with its config", who.name, code, st)
		}
	}
}

// TestSecurityCheckpointListingRevealsNoPaths is the checkpoint listing of docs/security.md row H2:
// an output_dir that is not the output directory of a job the caller may see gets one
// and the same 404, whether it is /etc/shadow, /etc, a path that does not exist, a path
// climbing out of the output root, or another user's output directory; the job's owner
// lists it, a lead (job.view.all) lists it but nothing outside the output root.
func TestSecurityCheckpointListingRevealsNoPaths(t *testing.T) {
	home := t.TempDir()
	d := start(t, home, fakeTrainerArgs(1000000, 100)...)
	tm := newTeam(t, d)
	out := filepath.Join(home, "out", "research1-run")
	if err := os.MkdirAll(filepath.Join(out, "checkpoint-5"), 0o755); err != nil {
		t.Fatal(err)
	}
	startRunning(t, d, tm.r1.cookie, withField(fastPathFields(t, home), "--output_dir", out))

	list := func(c *http.Client, hdr map[string]string, dir string) (int, string) {
		return rawCall(t, c, "GET", d.base+"/api/training/checkpoints?output_dir="+url.QueryEscape(dir), nil, hdr)
	}
	refused := map[string][]string{
		"research2": {"/etc/shadow", "/etc", "/etc/passwd", filepath.Join(home, "no", "such", "dir"), "../../../etc", out, filepath.Join(out, ".")},
		"lead":      {"/etc/shadow", "/etc", filepath.Join(home, "no", "such", "dir"), "../../../etc"},
	}
	var first string
	for _, who := range []struct {
		name string
		hdr  map[string]string
	}{{"research2", tm.r2.keyed()}, {"lead", tm.lead.keyed()}} {
		for _, dir := range refused[who.name] {
			code, body := list(tm.anon, who.hdr, dir)
			if first == "" {
				first = body
			}
			if code != 404 || body != first {
				t.Errorf("%s lists %s: %d %s; want 404 %s", who.name, dir, code, body, first)
			}
		}
	}
	// The POST form answers the same.
	for _, dir := range []string{"/etc/shadow", out} {
		code, body := form(t, tm.r2.cookie, d.base+"/api/training/checkpoints", [][2]string{{"output_dir", dir}}, "application/json")
		if code != 404 || body != first {
			t.Errorf("research2 posts output_dir=%s: %d %s; want 404 %s", dir, code, body, first)
		}
	}
	for _, who := range []struct {
		name string
		c    *http.Client
		hdr  map[string]string
	}{{"research1", tm.anon, tm.r1.keyed()}, {"lead", tm.anon, tm.lead.keyed()}} {
		code, body := list(who.c, who.hdr, out)
		if code != 200 || !strings.Contains(body, `"name":"checkpoint-5"`) {
			t.Errorf("%s lists research1's output directory: %d %s", who.name, code, body)
		}
	}
}
