package api

import (
	"bufio"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"simpletuner/plugins"
	"simpletuner/plugins/workerproto"
	"simpletuner/store"
	"simpletuner/supervisor/jobs"
	"simpletuner/supervisor/workers"
	"simpletuner/supervisor/workers/workerstest"
)

// workerHarness is an API harness with a worker registry over its store.
func workerHarness(t *testing.T) (*harness, *workers.Registry, *workerstest.Jobs, string) {
	t.Helper()
	h := newHarness(t, Config{})
	src := workerstest.New()
	reg, err := workers.New(workers.Config{PingEvery: time.Hour}, h.db, src, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	h.srv.cfg.Workers = reg
	_, key := h.setup()
	return h, reg, src, key
}

func TestWorkerAdminRoutes(t *testing.T) {
	h, _, _, key := workerHarness(t)
	res := h.do(req{method: "POST", path: "/api/admin/workers", key: key, header: map[string]string{"Host": "orchestrator:8001"},
		body: map[string]any{"name": "gpu-worker-1", "labels": map[string]string{"gpu_type": "a100-80gb"}}})
	if res.code != 200 {
		t.Fatalf("create: %d %s", res.code, res.body)
	}
	var c workers.Credentials
	res.json(t, &c)
	if !strings.HasPrefix(c.WorkerID, "worker-") || c.Token == "" ||
		c.ConnectionCommand != "simpletuner worker --orchestrator-url http://orchestrator:8001 --worker-token "+c.Token {
		t.Fatalf("credentials %+v", c)
	}
	for _, tc := range []struct {
		body   any
		code   int
		detail string
	}{
		{map[string]any{}, 400, "Name is required"},
		{map[string]any{"name": "x", "worker_type": "sometimes"}, 400, `Unknown worker_type "sometimes": use persistent or ephemeral`},
		{map[string]any{"name": "gpu-worker-1"}, 409, "gpu-worker-1"},
	} {
		if res := h.do(req{method: "POST", path: "/api/admin/workers", key: key, body: tc.body}); res.code != tc.code || !strings.Contains(res.detail(), tc.detail) {
			t.Errorf("create %v: %d %s, want %d %q", tc.body, res.code, res.body, tc.code, tc.detail)
		}
	}

	// The worker registers; the tutorial's jq reads name, status, gpu_name, gpu_count.
	res = h.do(req{method: "POST", path: "/api/workers/register", header: map[string]string{workerproto.HeaderToken: c.Token},
		body: workerproto.RegisterRequest{Name: "gpu-worker-1", Persistent: true, GPUInfo: workerproto.GPUInfo{Name: "NVIDIA A100-SXM4-80GB", Count: 8, VRAMGB: 80, Accelerator: "cuda"}}})
	if res.code != 200 {
		t.Fatalf("register: %d %s", res.code, res.body)
	}
	for _, f := range []struct{ filter, want string }{{"", "idle"}, {"idle", "idle"}, {"IDLE", "idle"}, {"busy", ""}} {
		res = h.do(req{method: "GET", path: "/api/admin/workers?status_filter=" + f.filter, key: key})
		var l struct {
			Workers []map[string]any `json:"workers"`
			Total   int              `json:"total"`
		}
		res.json(t, &l)
		if f.want == "" {
			if res.code != 200 || l.Total != 0 || len(l.Workers) != 0 {
				t.Errorf("filter %q: %d %s", f.filter, res.code, res.body)
			}
			continue
		}
		if res.code != 200 || l.Total != 1 || l.Workers[0]["name"] != "gpu-worker-1" || l.Workers[0]["status"] != f.want ||
			l.Workers[0]["gpu_name"] != "NVIDIA A100-SXM4-80GB" || l.Workers[0]["gpu_count"] != 8.0 || l.Workers[0]["connected"] != false {
			t.Errorf("filter %q: %d %s", f.filter, res.code, res.body)
		}
	}
	if res = h.do(req{method: "GET", path: "/api/admin/workers?status_filter=sleeping", key: key}); res.code != 400 || !strings.Contains(res.detail(), "connecting, idle, busy, offline, draining") {
		t.Errorf("bad filter: %d %s", res.code, res.body)
	}

	res = h.do(req{method: "POST", path: "/api/admin/workers/" + c.WorkerID + "/drain", key: key})
	if res.code != 200 || !strings.Contains(string(res.body), `"status":"draining"`) {
		t.Errorf("drain: %d %s", res.code, res.body)
	}
	res = h.do(req{method: "POST", path: "/api/admin/workers/" + c.WorkerID + "/token", key: key})
	var c2 workers.Credentials
	res.json(t, &c2)
	if res.code != 200 || c2.Token == "" || c2.Token == c.Token || c2.WorkerID != c.WorkerID {
		t.Fatalf("rotate: %d %s", res.code, res.body)
	}
	// The rotated-out token is refused; the new one works.
	hb := workerproto.Heartbeat{WorkerID: c.WorkerID, Status: "idle"}
	if res = h.do(req{method: "POST", path: "/api/workers/heartbeat", header: map[string]string{workerproto.HeaderToken: c.Token}, body: hb}); res.code != 401 || res.detail() != "Invalid worker token" {
		t.Errorf("old token: %d %s", res.code, res.body)
	}
	if res = h.do(req{method: "POST", path: "/api/workers/heartbeat", header: map[string]string{workerproto.HeaderToken: c2.Token}, body: hb}); res.code != 200 {
		t.Errorf("new token: %d %s", res.code, res.body)
	}
	if res = h.do(req{method: "DELETE", path: "/api/admin/workers/" + c.WorkerID + "?force=maybe", key: key}); res.code != 400 {
		t.Errorf("bad force: %d %s", res.code, res.body)
	}
	if res = h.do(req{method: "DELETE", path: "/api/admin/workers/" + c.WorkerID, key: key}); res.code != 200 || !strings.Contains(string(res.body), `"success":true`) {
		t.Errorf("delete: %d %s", res.code, res.body)
	}
	if res = h.do(req{method: "DELETE", path: "/api/admin/workers/" + c.WorkerID, key: key}); res.code != 404 {
		t.Errorf("delete twice: %d %s", res.code, res.body)
	}
	if res = h.do(req{method: "POST", path: "/api/workers/heartbeat", header: map[string]string{workerproto.HeaderToken: c2.Token}, body: hb}); res.code != 401 {
		t.Errorf("token of a deleted worker: %d %s", res.code, res.body)
	}
}

func TestWorkerAdminNeedsPermission(t *testing.T) {
	h, _, _, key := workerHarness(t)
	res1 := h.createUser(key, "res1", "researcher")
	lead := h.createUser(key, "lead1", "lead")
	for _, cookie := range []string{res1, lead} {
		for _, q := range []req{
			{method: "GET", path: "/api/admin/workers"},
			{method: "POST", path: "/api/admin/workers", body: map[string]any{"name": "sneaky"}},
			{method: "DELETE", path: "/api/admin/workers/worker-AAAAAAAAAAA"},
			{method: "POST", path: "/api/admin/workers/worker-AAAAAAAAAAA/drain"},
			{method: "POST", path: "/api/admin/workers/worker-AAAAAAAAAAA/token"},
		} {
			q.cookie = cookie
			if res := h.do(q); res.code != 403 || res.detail() != "Permission denied: admin.workers" {
				t.Errorf("%s %s as non-admin: %d %s", q.method, q.path, res.code, res.body)
			}
		}
	}
	if res := h.do(req{method: "GET", path: "/api/admin/workers"}); res.code != 401 {
		t.Errorf("anonymous: %d %s", res.code, res.body)
	}
	// A user's credentials are not a worker's: the protocol wants X-Worker-Token.
	if res := h.do(req{method: "POST", path: "/api/workers/register", key: key, body: map[string]any{"name": "x"}}); res.code != 401 || res.detail() != "Invalid worker token" {
		t.Errorf("register with an API key: %d %s", res.code, res.body)
	}
}

func TestWorkerProtocolRoutes(t *testing.T) {
	h, reg, src, key := workerHarness(t)
	create := func(name string) workers.Credentials {
		res := h.do(req{method: "POST", path: "/api/admin/workers", key: key, body: map[string]any{"name": name}})
		var c workers.Credentials
		res.json(t, &c)
		return c
	}
	w1, w2 := create("w1"), create("w2")
	tok := func(c workers.Credentials) map[string]string {
		return map[string]string{workerproto.HeaderToken: c.Token}
	}
	res := h.do(req{method: "POST", path: "/api/workers/register", header: tok(w1), body: workerproto.RegisterRequest{Name: "w1", GPUInfo: workerproto.GPUInfo{Count: 1}}})
	var rr workerproto.RegisterResponse
	res.json(t, &rr)
	if res.code != 200 || rr.WorkerID != w1.WorkerID || rr.SSEURL != "/api/workers/stream?worker_id="+w1.WorkerID || rr.ResumeJob != nil || rr.AbandonJob != nil {
		t.Fatalf("register: %d %s", res.code, res.body)
	}
	if res = h.do(req{method: "GET", path: "/api/workers/stream?worker_id=" + w2.WorkerID, header: tok(w1)}); res.code != 400 || res.detail() != "Worker ID mismatch" {
		t.Errorf("stream for another worker: %d %s", res.code, res.body)
	}
	if res = h.do(req{method: "POST", path: "/api/workers/heartbeat", header: tok(w1), body: workerproto.Heartbeat{WorkerID: w2.WorkerID}}); res.code != 400 || res.detail() != "Worker ID mismatch" {
		t.Errorf("heartbeat for another worker: %d %s", res.code, res.body)
	}

	// Serve for real to read the dispatch stream, then give w1 a job.
	ts := httptest.NewServer(h.h)
	defer ts.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sr, _ := http.NewRequestWithContext(ctx, "GET", ts.URL+rr.SSEURL, nil)
	sr.Header.Set(workerproto.HeaderToken, w1.Token)
	sresp, err := http.DefaultClient.Do(sr)
	if err != nil || sresp.StatusCode != 200 || sresp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %v %v", sresp, err)
	}
	defer sresp.Body.Close()
	src.Add(&store.Job{ID: "job1", Status: jobs.StatusStarting, NumGPUs: 1, Config: json.RawMessage(`{"--model_family":"dit"}`)})
	src.Add(&store.Job{ID: "job2", Status: jobs.StatusQueued, NumGPUs: 1})
	ex := reg.Executor()
	j, _ := src.Get("job1")
	// The handler opened the stream before it sent the headers: w1 is connected now.
	p, err := ex.Place(ctx, j)
	if err != nil || p.Outcome != jobs.PlaceStart || p.Where != w1.WorkerID {
		t.Fatalf("place: %+v %v", p, err)
	}
	if _, err := ex.Launch(ctx, j, p, src); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(sresp.Body)
	var lines []string
	for sc.Scan() && len(lines) < 2 {
		if sc.Text() != "" {
			lines = append(lines, sc.Text())
		}
	}
	if len(lines) != 2 || lines[0] != "event: job_submit" || !strings.HasPrefix(lines[1], `data: {"type":"job_submit","job_id":"job1","config":{"--model_family":"dit"}`) {
		t.Fatalf("stream lines %q", lines)
	}

	st := func(c workers.Credentials, job string, body any) resp {
		return h.do(req{method: "POST", path: "/api/workers/job/" + job + "/status", header: tok(c), body: body})
	}
	// An attacker holding another worker's token cannot report on the job.
	if res = st(w2, "job1", workerproto.JobStatus{Status: "completed"}); res.code != 403 || res.detail() != "Worker not assigned to this job" {
		t.Errorf("status from w2: %d %s", res.code, res.body)
	}
	if res = h.do(req{method: "POST", path: "/api/workers/job/job1/events", header: tok(w2), body: workerproto.EventBatch{Events: []plugins.Event{{Seq: 1}}}}); res.code != 403 {
		t.Errorf("events from w2: %d %s", res.code, res.body)
	}
	if res = st(w1, "job2", workerproto.JobStatus{Status: "running"}); res.code != 403 {
		t.Errorf("status of a job not given to w1: %d %s", res.code, res.body)
	}
	if res = st(w1, "nosuch", workerproto.JobStatus{Status: "running"}); res.code != 404 {
		t.Errorf("status of a missing job: %d %s", res.code, res.body)
	}
	if res = st(w1, "job1", workerproto.JobStatus{Status: "dancing"}); res.code != 400 {
		t.Errorf("unknown status: %d %s", res.code, res.body)
	}
	if res = st(w1, "job1", workerproto.JobStatus{Status: "training"}); res.code != 200 || string(res.body) != "{\"success\":true}\n" {
		t.Errorf("training: %d %s", res.code, res.body)
	}
	ev := func(from, to uint64) resp {
		var b workerproto.EventBatch
		for s := from; s <= to; s++ {
			b.Events = append(b.Events, plugins.Event{Seq: s, Type: "progress", Severity: "info"})
		}
		return h.do(req{method: "POST", path: "/api/workers/job/job1/events", header: tok(w1), body: b})
	}
	if res = ev(1, 3); res.code != 200 || string(res.body) != "{\"last_seq\":3}\n" {
		t.Errorf("events: %d %s", res.code, res.body)
	}
	var ack workerproto.EventAck
	if res = ev(6, 7); res.code != 409 {
		t.Errorf("gap: %d %s", res.code, res.body)
	}
	res.json(t, &ack)
	if ack.LastSeq != 3 {
		t.Errorf("gap ack %s", res.body)
	}
	if res = st(w1, "job1", workerproto.JobStatus{Status: "completed", LastSeq: 5}); res.code != 409 {
		t.Errorf("final status ahead of events: %d %s", res.code, res.body)
	}
	if res = ev(4, 5); res.code != 200 {
		t.Errorf("events 4..5: %d %s", res.code, res.body)
	}
	if res = st(w1, "job1", workerproto.JobStatus{Status: "completed", LastSeq: 5}); res.code != 200 {
		t.Errorf("final status: %d %s", res.code, res.body)
	}
	if res = h.do(req{method: "GET", path: "/api/admin/workers?status_filter=idle", key: key}); !strings.Contains(string(res.body), w1.WorkerID) {
		t.Errorf("w1 not idle after its job: %s", res.body)
	}
}
