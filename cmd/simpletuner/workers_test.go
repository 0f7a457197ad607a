package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"simpletuner/plugins"
	"simpletuner/plugins/workerproto"
)

// workerSim speaks the worker protocol by hand against the real daemon.
type workerSim struct {
	t     *testing.T
	base  string
	token string
	id    string
	c     *http.Client
}

func (w *workerSim) call(method, path string, body any) (int, map[string]any) {
	w.t.Helper()
	return call(w.t, w.c, method, w.base+path, body, map[string]string{workerproto.HeaderToken: w.token})
}

// stream opens the dispatch stream; events arrive on the channel as "type data".
func (w *workerSim) stream(ctx context.Context) <-chan [2]string {
	w.t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", w.base+"/api/workers/stream?worker_id="+w.id, nil)
	req.Header.Set(workerproto.HeaderToken, w.token)
	res, err := (&http.Client{}).Do(req)
	if err != nil || res.StatusCode != 200 {
		w.t.Fatalf("stream: %v %v", res, err)
	}
	ch := make(chan [2]string, 16)
	go func() {
		defer res.Body.Close()
		defer close(ch)
		sc := bufio.NewScanner(res.Body)
		typ := ""
		for sc.Scan() {
			line := sc.Text()
			if v, ok := strings.CutPrefix(line, "event: "); ok {
				typ = v
			} else if v, ok := strings.CutPrefix(line, "data: "); ok && typ != workerproto.EventPing {
				ch <- [2]string{typ, v}
			}
		}
	}()
	return ch
}

func nextEvent(t *testing.T, ch <-chan [2]string) [2]string {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("dispatch stream ended")
		}
		return ev
	case <-time.After(30 * time.Second):
		t.Fatal("no event on the dispatch stream within 30 s")
	}
	return [2]string{}
}

// TestWorkerProtocolAgainstRealDaemon drives the daemon as a remote worker would: an
// administrator creates a worker, the worker registers and streams, a job whose labels
// match is dispatched to it, its events and final status are stored; after a daemon
// restart the worker is offline until it registers again and is told to resume from the
// stored seq. Then no worker token is anywhere in the state directory or the log.
func TestWorkerProtocolAgainstRealDaemon(t *testing.T) {
	home := t.TempDir()
	writeEnv(t, home, "demo")
	args := append(fakeTrainerArgs(5, 5), "--worker-heartbeat-timeout", "30s", "--log-level", "debug")
	d := start(t, home, args...)
	c := adminClient(t, d)
	code, cr := call(t, c, "POST", d.base+"/api/admin/workers", map[string]any{"name": "gpu-worker-1", "labels": map[string]string{"gpu_type": "a100-80gb"}}, nil)
	tok, _ := cr["token"].(string)
	if code != 200 || tok == "" || !strings.Contains(cr["connection_command"].(string), "--worker-token "+tok) {
		t.Fatalf("create worker: %d %v", code, cr)
	}
	w := &workerSim{t: t, base: d.base, token: tok, id: cr["worker_id"].(string), c: &http.Client{Timeout: 10 * time.Second}}
	if code, r := (&workerSim{t: t, base: d.base, token: "not-a-token", c: w.c}).call("POST", "/api/workers/register", map[string]any{"name": "x"}); code != 401 || r["detail"] != "Invalid worker token" {
		t.Fatalf("register with a wrong token: %d %v", code, r)
	}
	reg := map[string]any{"name": "gpu-worker-1", "persistent": true, "gpu_info": map[string]any{"name": "NVIDIA A100", "count": 1, "vram_gb": 80, "accelerator": "cuda"}}
	if code, r := w.call("POST", "/api/workers/register", reg); code != 200 || r["worker_id"] != w.id {
		t.Fatalf("register: %d %v", code, r)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := w.stream(ctx)
	code, l := call(t, c, "GET", d.base+"/api/admin/workers", nil, nil)
	if ws, _ := l["workers"].([]any); code != 200 || len(ws) != 1 || ws[0].(map[string]any)["status"] != "idle" || ws[0].(map[string]any)["gpu_count"] != 1.0 {
		t.Fatalf("workers: %d %v", code, l)
	}

	code, sub := call(t, c, "POST", d.base+"/api/queue/submit", map[string]any{"config_name": "demo", "worker_labels": map[string]string{"gpu_type": "a100*"}}, nil)
	jobID, _ := sub["job_id"].(string)
	if code != 200 || jobID == "" {
		t.Fatalf("submit: %d %v", code, sub)
	}
	ev := nextEvent(t, events)
	var js workerproto.JobSubmit
	if ev[0] != workerproto.EventJobSubmit || json.Unmarshal([]byte(ev[1]), &js) != nil || js.JobID != jobID || js.ConfigName != "demo" || len(js.Config) == 0 {
		t.Fatalf("dispatched %v", ev)
	}
	if code, r := w.call("POST", "/api/workers/job/"+jobID+"/status", map[string]any{"status": "training"}); code != 200 {
		t.Fatalf("status training: %d %v", code, r)
	}
	batch := func(from, to uint64) workerproto.EventBatch {
		var b workerproto.EventBatch
		for s := from; s <= to; s++ {
			b.Events = append(b.Events, plugins.Event{Seq: s, Type: "notification", Severity: "info", Time: time.Now().UTC(), Message: "step"})
		}
		return b
	}
	if code, r := w.call("POST", "/api/workers/job/"+jobID+"/events", batch(1, 4)); code != 200 || r["last_seq"] != 4.0 {
		t.Fatalf("events: %d %v", code, r)
	}
	if code, r := w.call("POST", "/api/workers/job/"+jobID+"/events", batch(7, 8)); code != 409 || r["last_seq"] != 4.0 {
		t.Fatalf("events with a gap: %d %v", code, r)
	}
	if j := jobState(t, c, d.base, jobID); j["status"] != "running" {
		t.Fatalf("job after training status: %v", j)
	}

	// The daemon restarts: the worker is offline until it registers again, then resumes.
	cancel()
	if err, _ := d.stop(); err != nil {
		t.Fatalf("stop: %v\n%s", err, d.stderr)
	}
	log1 := d.stderr.String()
	d = start(t, home, args...)
	d.waitReady(c)
	w.base = d.base
	code, l = call(t, c, "GET", d.base+"/api/admin/workers?status_filter=offline", nil, nil)
	if ws, _ := l["workers"].([]any); code != 200 || len(ws) != 1 {
		t.Fatalf("offline workers after restart: %d %v", code, l)
	}
	reg["current_job_id"] = jobID
	code, r := w.call("POST", "/api/workers/register", reg)
	if rj, _ := r["resume_job"].(map[string]any); code != 200 || rj["job_id"] != jobID || rj["last_seq"] != 4.0 || r["abandon_job"] != nil {
		t.Fatalf("register after restart: %d %v", code, r)
	}
	if code, r := w.call("POST", "/api/workers/job/"+jobID+"/status", map[string]any{"status": "completed", "last_seq": 6}); code != 409 || r["last_seq"] != 4.0 {
		t.Fatalf("final status before its events: %d %v", code, r)
	}
	if code, r := w.call("POST", "/api/workers/job/"+jobID+"/events", batch(3, 6)); code != 200 || r["last_seq"] != 6.0 {
		t.Fatalf("events after restart: %d %v", code, r)
	}
	if code, r := w.call("POST", "/api/workers/job/"+jobID+"/status", map[string]any{"status": "completed", "last_seq": 6}); code != 200 {
		t.Fatalf("final status: %d %v", code, r)
	}
	waitJob(t, c, d.base, jobID, 30*time.Second, "completed")
	code, evs := call(t, c, "GET", d.base+"/api/jobs/"+jobID+"/events?since_seq=0", nil, nil)
	if list, _ := evs["events"].([]any); code != 200 || len(list) != 6 {
		t.Fatalf("stored events: %d %v", code, evs)
	}

	// Rotate, then look for every token the daemon ever issued.
	code, rot := call(t, c, "POST", d.base+"/api/admin/workers/"+w.id+"/token", nil, nil)
	tok2, _ := rot["token"].(string)
	if code != 200 || tok2 == "" {
		t.Fatalf("rotate: %d %v", code, rot)
	}
	if code, _ := w.call("POST", "/api/workers/heartbeat", map[string]any{"worker_id": w.id, "status": "idle"}); code != 401 {
		t.Fatalf("heartbeat with the rotated-out token: %d", code)
	}
	if err, _ := d.stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	logs := log1 + d.stderr.String()
	for _, s := range []string{tok, tok2} {
		if strings.Contains(logs, s) {
			t.Error("a worker token is in the daemon's log")
		}
	}
	err := filepath.WalkDir(home, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		for _, s := range []string{tok, tok2} {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("%s holds a worker token in clear", p)
			}
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// heartbeats sends the worker's heartbeat every 200 ms (its agent sends one every 30 s;
// the tests run the daemon with a 1 s timeout) until the returned stop is called.
func (w *workerSim) heartbeats() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				_, _, _ = doJSON(w.c, "POST", w.base+"/api/workers/heartbeat", map[string]any{"worker_id": w.id, "status": "busy"},
					map[string]string{workerproto.HeaderToken: w.token})
			}
		}
	}()
	return func() { cancel(); <-done }
}

// TestSilentWorkerJobGoesToAnotherWorker: the worker running a job stops sending
// heartbeats; after the heartbeat timeout it is offline, and its job is requeued and
// dispatched to the other worker, resuming from the latest checkpoint. When the first
// worker comes back still running the job, it is told to abandon it.
func TestSilentWorkerJobGoesToAnotherWorker(t *testing.T) {
	home := t.TempDir()
	writeEnv(t, home, "demo")
	d := start(t, home, append(fakeTrainerArgs(5, 5), "--worker-heartbeat-timeout", "1s")...)
	c := adminClient(t, d)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	join := func(name string) (*workerSim, <-chan [2]string, func()) {
		code, cr := call(t, c, "POST", d.base+"/api/admin/workers", map[string]any{"name": name}, nil)
		if code != 200 {
			t.Fatalf("create %s: %d %v", name, code, cr)
		}
		w := &workerSim{t: t, base: d.base, token: cr["token"].(string), id: cr["worker_id"].(string), c: &http.Client{Timeout: 10 * time.Second}}
		if code, r := w.call("POST", "/api/workers/register", map[string]any{"name": name, "persistent": true, "gpu_info": map[string]any{"count": 1}}); code != 200 {
			t.Fatalf("register %s: %d %v", name, code, r)
		}
		stop := w.heartbeats()
		t.Cleanup(stop)
		return w, w.stream(ctx), stop
	}
	// w1 is the only worker: the job goes there.
	w1, s1, stop1 := join("w1")
	code, sub := call(t, c, "POST", d.base+"/api/queue/submit", map[string]any{"config_name": "demo"}, nil)
	jobID, _ := sub["job_id"].(string)
	if code != 200 || jobID == "" {
		t.Fatalf("submit: %d %v", code, sub)
	}
	if ev := nextEvent(t, s1); ev[0] != workerproto.EventJobSubmit || !strings.Contains(ev[1], jobID) {
		t.Fatalf("first dispatch %v", ev)
	}
	if code, r := w1.call("POST", "/api/workers/job/"+jobID+"/status", map[string]any{"status": "running"}); code != 200 {
		t.Fatalf("running: %d %v", code, r)
	}
	// w2 joins; w1 falls silent: the job is lost and dispatched to w2 with the resume flag.
	w2, s2, _ := join("w2")
	stop1()
	ev := nextEvent(t, s2)
	var js workerproto.JobSubmit
	if ev[0] != workerproto.EventJobSubmit || json.Unmarshal([]byte(ev[1]), &js) != nil || js.JobID != jobID {
		t.Fatalf("second dispatch %v", ev)
	}
	if !strings.Contains(string(js.Config), `"--resume_from_checkpoint":"latest"`) {
		t.Errorf("the requeued job does not resume from its latest checkpoint: %s", js.Config)
	}
	code, l := call(t, c, "GET", d.base+"/api/admin/workers?status_filter=offline", nil, nil)
	if ws, _ := l["workers"].([]any); code != 200 || len(ws) != 1 || ws[0].(map[string]any)["name"] != "w1" {
		t.Errorf("offline workers: %d %v", code, l)
	}
	// w1 comes back still running it: abandon; its reports on the job are refused.
	code, r := w1.call("POST", "/api/workers/register", map[string]any{"name": "w1", "persistent": true, "gpu_info": map[string]any{"count": 1}, "current_job_id": jobID})
	if code != 200 || r["abandon_job"] != jobID || r["resume_job"] != nil {
		t.Fatalf("w1 back: %d %v", code, r)
	}
	if code, r := w1.call("POST", "/api/workers/job/"+jobID+"/status", map[string]any{"status": "completed"}); code != 403 {
		t.Fatalf("status from the worker that lost the job: %d %v", code, r)
	}
	if code, r := w2.call("POST", "/api/workers/job/"+jobID+"/status", map[string]any{"status": "completed"}); code != 200 {
		t.Fatalf("completed on w2: %d %v", code, r)
	}
	waitJob(t, c, d.base, jobID, 30*time.Second, "completed")
}
