package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"

	"simpletuner/plugins/kit/kittest"
)

// workerHeartbeatTimeoutFlag is the daemon flag that sets how long a worker may go
// without a heartbeat before it is offline and its job requeued.
const workerHeartbeatTimeoutFlag = "--worker-heartbeat-timeout"

// The remote-worker end-to-end tests (issue 16's acceptance): the real daemon on loopback,
// `simpletuner worker` processes (this test binary re-executed as the CLI) that see fake
// GPUs through a fake libnvidia-ml, and fake trainers under them. This file holds the
// harness; the tests follow it.

// workerAgent is a `simpletuner worker` process that a test can kill -9 and start again
// with the same state: its home holds the agent's state dir and its trainers' job dirs.
type workerAgent struct {
	t    *testing.T
	name string
	home string
	args []string
	env  []string
	// log collects the output of every run of the agent (mu-free: syncBuffer locks).
	log *syncBuffer
	// cmd and exited are the current run; only the test goroutine touches them.
	cmd    *exec.Cmd
	exited chan struct{}
}

// workerSpec says how to start a worker agent.
type workerSpec struct {
	name       string
	url        string // the orchestrator's base URL (or a proxy's)
	token      string
	labels     map[string]string
	nvml       string   // fake libnvidia-ml path ("": no GPUs)
	trainerEnv []string // extra fake trainer settings (kittest.Env*)
	steps      int      // fake trainer steps
	stepMS     int      // fake trainer milliseconds per step
	heartbeat  string   // SIMPLETUNER_WORKER_HEARTBEAT ("": the agent's default)
}

// startAgent starts a persistent worker agent; it is killed (and its trainers with it)
// when the test ends.
func startAgent(t *testing.T, s workerSpec) *workerAgent {
	t.Helper()
	home := t.TempDir()
	// With fake GPUs the worker launches its GPU trainer, found in --plugins-dir: this test
	// binary again, as the fake trainer.
	plugins := filepath.Join(home, "plugins")
	if err := os.MkdirAll(plugins, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(os.Args[0], filepath.Join(plugins, "simpletuner-trainer-cuda")); err != nil {
		t.Fatal(err)
	}
	args := []string{"worker", "--orchestrator-url", s.url, "--name", s.name, "--persistent",
		"--state-dir", filepath.Join(home, "worker"), "--plugins-dir", plugins,
		"--trainer", os.Args[0], "--trainer-env", asTrainer + "=1",
		"--trainer-env", fmt.Sprintf("%s=%d", kittest.EnvSteps, s.steps),
		"--trainer-env", fmt.Sprintf("%s=%d", kittest.EnvStepMS, s.stepMS)}
	for _, e := range s.trainerEnv {
		args = append(args, "--trainer-env", e)
	}
	if len(s.labels) > 0 {
		var kv []string
		for k, v := range s.labels {
			kv = append(kv, k+"="+v)
		}
		args = append(args, "--labels", strings.Join(kv, ","))
	}
	// The token goes in the environment, not argv, as an operator's unit file would pass it.
	env := []string{asDaemon + "=1", "SIMPLETUNER_HOME=" + home, "SIMPLETUNER_STATE_DIR=", "SIMPLETUNER_WORKER_TOKEN=" + s.token,
		"SIMPLETUNER_NVML_LIBRARY=" + s.nvml}
	if s.heartbeat != "" {
		env = append(env, "SIMPLETUNER_WORKER_HEARTBEAT="+s.heartbeat)
	}
	w := &workerAgent{t: t, name: s.name, home: home, args: args, env: env, log: &syncBuffer{}}
	t.Cleanup(func() {
		w.kill9()
		killTrainersUnder(home)
	})
	w.start()
	return w
}

// start runs the agent (again, after kill9).
func (w *workerAgent) start() {
	w.t.Helper()
	cmd := exec.Command(os.Args[0], w.args...)
	cmd.Env = append(os.Environ(), w.env...)
	fmt.Fprintf(w.log, "=== start %s\n", w.name)
	cmd.Stdout, cmd.Stderr = w.log, w.log
	if err := cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	w.cmd, w.exited = cmd, exited
}

// kill9 kills the agent with SIGKILL and waits for it; its trainers live on (they run in
// their own sessions, as under the daemon).
func (w *workerAgent) kill9() {
	if w.cmd == nil {
		return
	}
	select {
	case <-w.exited:
	default:
		w.cmd.Process.Signal(syscall.SIGKILL)
		<-w.exited
	}
}

// running says whether the agent's current run has not exited.
func (w *workerAgent) running() bool {
	select {
	case <-w.exited:
		return false
	default:
		return true
	}
}

// createWorker registers a persistent worker through POST /api/admin/workers and returns
// its id and its token (shown once).
func createWorker(t *testing.T, c *http.Client, base, name string, labels map[string]string) (id, token string) {
	t.Helper()
	code, r := call(t, c, "POST", base+"/api/admin/workers", map[string]any{"name": name, "worker_type": "persistent", "labels": labels}, nil)
	id, _ = r["worker_id"].(string)
	token, _ = r["token"].(string)
	if code != 200 || id == "" || token == "" {
		t.Fatalf("create worker %s: %d %v", name, code, r)
	}
	return id, token
}

// workerRecord is one worker of GET /api/admin/workers.
func workerRecord(t *testing.T, c *http.Client, base, id string) map[string]any {
	t.Helper()
	code, r := call(t, c, "GET", base+"/api/admin/workers", nil, nil)
	if code != 200 {
		t.Fatalf("GET /api/admin/workers: %d %v", code, r)
	}
	ws, _ := r["workers"].([]any)
	for _, w := range ws {
		if w, _ := w.(map[string]any); w["worker_id"] == id {
			return w
		}
	}
	return nil
}

// waitWorker waits until GET /api/admin/workers reports worker id in one of the statuses.
func waitWorker(t *testing.T, c *http.Client, base, id string, within time.Duration, want ...string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		w := workerRecord(t, c, base, id)
		for _, s := range want {
			if w != nil && w["status"] == s {
				return w
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("worker %s is %v, want %v", id, w, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// submitQueued posts to /api/queue/submit and returns the job id and the answer.
func submitQueued(t *testing.T, c *http.Client, base string, body map[string]any) (string, map[string]any) {
	t.Helper()
	code, r := call(t, c, "POST", base+"/api/queue/submit", body, nil)
	id, _ := r["job_id"].(string)
	if code != 200 || id == "" {
		t.Fatalf("submit %v: %d %v", body, code, r)
	}
	return id, r
}

// storedEvent is a trainer event of GET /api/jobs/{id}/events.
type storedEvent struct {
	Seq   uint64          `json:"seq"`
	Type  string          `json:"type"`
	Title string          `json:"title"`
	Data  json.RawMessage `json:"data"`
}

// jobEvents reads every stored trainer event of job id, page by page (since_seq).
func jobEvents(t *testing.T, c *http.Client, base, id string) []storedEvent {
	t.Helper()
	var all []storedEvent
	var since uint64
	for {
		code, text, err := doJSON(c, "GET", fmt.Sprintf("%s/api/jobs/%s/events?since_seq=%d", base, id, since), nil, nil)
		if err != nil || code != 200 {
			t.Fatalf("events of %s: %d %v %s", id, code, err, text)
		}
		var page struct {
			Events  []storedEvent `json:"events"`
			NextSeq uint64        `json:"next_seq"`
		}
		if err := json.Unmarshal([]byte(text), &page); err != nil {
			t.Fatalf("events of %s: %v", id, err)
		}
		all = append(all, page.Events...)
		if len(page.Events) == 0 || page.NextSeq <= since {
			return all
		}
		since = page.NextSeq
	}
}

// seqProblem says what breaks the rule "seqs are exactly 1..N, in order" (the first gap,
// double or disorder), or "" when nothing does. A pure function for the tests below.
func seqProblem(seqs []uint64) string {
	for i, s := range seqs {
		want := uint64(i) + 1
		switch {
		case s == want:
		case i > 0 && s == seqs[i-1]:
			return fmt.Sprintf("seq %d stored twice (position %d)", s, i+1)
		case s > want:
			return fmt.Sprintf("gap: seq %d follows %d", s, want-1)
		default:
			return fmt.Sprintf("seq %d out of order at position %d", s, i+1)
		}
	}
	return ""
}

// checkSeqs fails the test unless the job's stored events are seqs 1..N with N ≥ min.
func checkSeqs(t *testing.T, evs []storedEvent, min int) {
	t.Helper()
	seqs := make([]uint64, len(evs))
	for i, e := range evs {
		seqs[i] = e.Seq
	}
	if p := seqProblem(seqs); p != "" {
		t.Fatalf("stored events: %s (%d events)", p, len(evs))
	}
	if len(evs) < min {
		t.Fatalf("%d events stored, want at least %d", len(evs), min)
	}
}

func TestSeqProblem(t *testing.T) {
	for _, tc := range []struct {
		seqs []uint64
		want string
	}{
		{nil, ""},
		{[]uint64{1, 2, 3}, ""},
		{[]uint64{2, 3}, "gap: seq 2 follows 0"},
		{[]uint64{1, 2, 4}, "gap: seq 4 follows 2"},
		{[]uint64{1, 2, 2, 3}, "seq 2 stored twice (position 3)"},
		{[]uint64{1, 3, 2}, "gap: seq 3 follows 1"},
		{[]uint64{1, 1}, "seq 1 stored twice (position 2)"},
	} {
		if got := seqProblem(tc.seqs); got != tc.want {
			t.Errorf("seqProblem(%v) = %q, want %q", tc.seqs, got, tc.want)
		}
	}
}

// cutProxy is a TCP proxy between worker agents and the daemon that cuts event uploads
// (POST …/events) a given number of times, alternating two ways: in the middle of the
// request (the daemon never sees all of it), and after the whole request went through but
// before the answer comes back (the daemon stored the batch; the worker does not know).
type cutProxy struct {
	ln     net.Listener
	target string
	// mu guards cuts and the counters.
	mu       sync.Mutex
	cuts     int // cuts still to make
	midCuts  int // made in the middle of a request
	lateCuts int // made after the request, before the answer
}

// eventsMarker ends the request line of an event upload.
var eventsMarker = []byte("/events HTTP/1.1\r\n")

// startCutProxy listens on loopback and forwards to target (host:port), cutting n uploads.
func startCutProxy(t *testing.T, target string, n int) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target, cuts: n}
	var wg sync.WaitGroup
	var connsMu sync.Mutex
	conns := map[net.Conn]bool{}
	track := func(c net.Conn, on bool) {
		connsMu.Lock()
		defer connsMu.Unlock()
		if on {
			conns[c] = true
		} else {
			delete(conns, c)
		}
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				track(c, true)
				defer track(c, false)
				p.serve(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		connsMu.Lock()
		for c := range conns {
			c.Close()
		}
		connsMu.Unlock()
		wg.Wait()
	})
	return p
}

// URL is the proxy's base URL.
func (p *cutProxy) URL() string { return "http://" + p.ln.Addr().String() }

// made reports the cuts made so far.
func (p *cutProxy) made() (mid, late int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.midCuts, p.lateCuts
}

// take decides whether the upload just seen is cut, and how.
func (p *cutProxy) take() (cut, mid bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cuts == 0 {
		return false, false
	}
	p.cuts--
	if (p.midCuts+p.lateCuts)%2 == 0 {
		p.midCuts++
		return true, true
	}
	p.lateCuts++
	return true, false
}

// serve forwards one client connection. Requests are found by their request line in the
// client's stream (HTTP/1.1, which Go's client speaks on plain loopback).
func (p *cutProxy) serve(c net.Conn) {
	defer c.Close()
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer up.Close()
	// dropAnswer is set once a request went through whole and its answer must be lost.
	var dropMu sync.Mutex
	dropAnswer := false
	answers := make(chan struct{})
	go func() {
		defer close(answers)
		buf := make([]byte, 32<<10)
		for {
			n, err := up.Read(buf)
			if n > 0 {
				dropMu.Lock()
				drop := dropAnswer
				dropMu.Unlock()
				if drop {
					// The daemon answered (it processed the request): the worker never hears.
					c.Close()
					return
				}
				if _, err := c.Write(buf[:n]); err != nil {
					return
				}
			}
			if err != nil {
				c.Close()
				return
			}
		}
	}()
	defer func() { up.Close(); <-answers }()
	buf := make([]byte, 32<<10)
	// tail is the end of what was scanned before, one byte short of a marker: a marker
	// split across reads is found, and none is found twice.
	var tail []byte
	for {
		n, err := c.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			scan := append(append([]byte{}, tail...), chunk...)
			if i := bytes.Index(scan, eventsMarker); i >= 0 {
				if cut, mid := p.take(); cut {
					if mid {
						// Forward the request line, the headers and part of the body, then cut.
						end := i + len(eventsMarker) - len(tail)
						end += (n - end) / 2
						up.Write(chunk[:end])
						return
					}
					dropMu.Lock()
					dropAnswer = true
					dropMu.Unlock()
				}
			}
			if _, err := up.Write(chunk); err != nil {
				return
			}
			tail = scan[max(0, len(scan)-len(eventsMarker)+1):]
		}
		if err != nil {
			if err == io.EOF {
				up.(*net.TCPConn).CloseWrite()
				<-answers
			}
			return
		}
	}
}

func TestCutProxyCutsUploadsBothWays(t *testing.T) {
	var mu sync.Mutex
	whole := 0
	srv := http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			return
		}
		mu.Lock()
		whole++
		mu.Unlock()
		io.WriteString(w, "{}")
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	p := startCutProxy(t, ln.Addr().String(), 2)
	c := &http.Client{Timeout: 10 * time.Second}
	body := bytes.Repeat([]byte("x"), 256<<10)
	post := func() error {
		res, err := c.Post(p.URL()+"/api/workers/job/j1/events", "application/json", bytes.NewReader(body))
		if err == nil {
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
		}
		return err
	}
	if err := post(); err == nil {
		t.Fatal("first upload went through: want it cut in the middle")
	}
	if err := post(); err == nil {
		t.Fatal("second upload was answered: want the answer lost")
	}
	if err := post(); err != nil {
		t.Fatalf("third upload: %v", err)
	}
	if res, err := c.Get(p.URL() + "/health"); err != nil {
		t.Fatalf("other requests: %v", err)
	} else {
		res.Body.Close()
	}
	mu.Lock()
	got := whole
	mu.Unlock()
	// The server read the second and the third upload whole (and the GET), never the first.
	if got != 3 {
		t.Errorf("server read %d requests whole, want 3", got)
	}
	if mid, late := p.made(); mid != 1 || late != 1 {
		t.Errorf("cuts made: %d mid-request, %d before the answer", mid, late)
	}
}

// The rest of the tutorial's worker commands (section "リモートワーカーにジョブをディスパッチ";
// its three submissions are in tutorial_dispatch_test.go), verbatim; the tests replace only
// http://localhost:8001.
const (
	tutorialConfig       = "my-training-config"
	tutorialListWorkers  = `curl -s http://localhost:8001/api/admin/workers | jq '.workers[] | {name, status, gpu_name, gpu_count}'`
	tutorialSubmitLabels = `curl -s -X POST http://localhost:8001/api/queue/submit \
  -H 'Content-Type: application/json' \
  -d '{
    "config_name": "my-training-config",
    "target": "worker",
    "worker_labels": {"gpu_type": "a100*", "team": "nlp"}
  }'`
)

// workerDaemon starts the daemon for the worker tests: open on loopback (no admin yet, as
// in the tutorial), the fake trainer for local jobs, the stored environment "demo", and
// extra flags. It returns the daemon and a client.
func workerDaemon(t *testing.T, home string, extra ...string) (*proc, *http.Client) {
	t.Helper()
	writeEnv(t, home, "demo")
	d := start(t, home, append(fakeTrainerArgs(20, 20), extra...)...)
	c := &http.Client{Timeout: 30 * time.Second}
	d.waitReady(c)
	return d, c
}

// trainerLogSteps lists the steps the fake trainers under home logged ("fake step done"
// lines of every trainer.log), in the order each log has them.
func trainerLogSteps(t *testing.T, home string) []int {
	t.Helper()
	var steps []int
	filepath.WalkDir(home, func(p string, e os.DirEntry, err error) error {
		if err != nil || e.IsDir() || e.Name() != "trainer.log" {
			return nil
		}
		b, _ := os.ReadFile(p)
		for _, line := range strings.Split(string(b), "\n") {
			var l struct {
				Msg  string `json:"msg"`
				Step int    `json:"step"`
			}
			if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "fake step done" {
				steps = append(steps, l.Step)
			}
		}
		return nil
	})
	return steps
}

// progressSteps are the steps of the stored training.progress events of a training step
// (the burst's events, step 0, are left out).
func progressSteps(evs []storedEvent) []int {
	var steps []int
	for _, e := range evs {
		var p struct {
			Step int `json:"step"`
		}
		if e.Type == "training.progress" && json.Unmarshal(e.Data, &p) == nil && p.Step > 0 {
			steps = append(steps, p.Step)
		}
	}
	return steps
}

// TestWorkersRunJobsByLabels is issue 16's first acceptance: two workers with the
// tutorial's gpu_type labels register with fake GPUs; a job submitted with worker_labels
// {"gpu_type":"h100*"} runs on the H100 worker and one with "a100*" on the A100 worker,
// each to completion with its events stored exactly once; the tutorial's
// `curl … /api/admin/workers | jq '.workers[] | {name, status, gpu_name, gpu_count}'` shows
// both. No worker token is in the daemon's log, events or state dir in clear.
func TestWorkersRunJobsByLabels(t *testing.T) {
	needTools(t)
	nvml := fakeNVMLLibrary(t)
	home := t.TempDir()
	d, c := workerDaemon(t, home)
	writeEnv(t, home, tutorialConfig)
	a100 := map[string]string{"gpu_type": "a100-80gb", "team": "nlp"}
	idA, tokA := createWorker(t, c, d.base, "gpu-a100", a100)
	idH, tokH := createWorker(t, c, d.base, "gpu-h100", map[string]string{"gpu_type": "h100-sxm"})
	startAgent(t, workerSpec{name: "gpu-a100", url: d.base, token: tokA, labels: a100, nvml: nvml, steps: 20, stepMS: 10})
	startAgent(t, workerSpec{name: "gpu-h100", url: d.base, token: tokH, labels: map[string]string{"gpu_type": "h100-sxm"}, nvml: nvml, steps: 20, stepMS: 10})
	waitWorker(t, c, d.base, idA, 30*time.Second, "idle")
	waitWorker(t, c, d.base, idH, 30*time.Second, "idle")

	out := pixartShell(t, home, strings.ReplaceAll(tutorialListWorkers, "http://localhost:8001", d.base))
	dec := json.NewDecoder(strings.NewReader(out))
	seen := map[string]bool{}
	for dec.More() {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			t.Fatalf("jq printed %q: %v", out, err)
		}
		var keys map[string]any
		var w struct {
			Name     string `json:"name"`
			Status   string `json:"status"`
			GPUName  string `json:"gpu_name"`
			GPUCount int    `json:"gpu_count"`
		}
		json.Unmarshal(raw, &keys)
		json.Unmarshal(raw, &w)
		if len(keys) != 4 || w.Status != "idle" || w.GPUName != "NVIDIA H100 80GB HBM3" || w.GPUCount != 2 {
			t.Errorf("jq printed %s, want the worker idle with its 2 fake H100s", raw)
		}
		seen[w.Name] = true
	}
	if !seen["gpu-a100"] || !seen["gpu-h100"] || len(seen) != 2 {
		t.Fatalf("the tutorial's jq listed %v:\n%s", seen, out)
	}

	// The tutorial's submit commands as written (the host aside): the labelled one runs on
	// the A100 worker; auto prefers an idle worker; worker runs on one; local runs here. Then
	// the H100 glob through the API. One job at a time, so every worker is idle for the next.
	type run struct {
		how, executor string
		workers       []string
		body          map[string]any
	}
	runs := []run{
		{how: tutorialSubmitLabels, executor: "worker", workers: []string{idA}},
		{how: tutorialSubmitAuto, executor: "worker", workers: []string{idA, idH}},
		{how: tutorialSubmitWorker, executor: "worker", workers: []string{idA, idH}},
		{how: tutorialSubmitLocal, executor: "local", workers: []string{""}},
		{how: "h100* through the API", executor: "worker", workers: []string{idH},
			body: map[string]any{"config_name": tutorialConfig, "target": "worker", "worker_labels": map[string]string{"gpu_type": "h100*"}}},
	}
	for _, r := range runs {
		var id string
		if r.body != nil {
			id, _ = submitQueued(t, c, d.base, r.body)
		} else {
			out := pixartShell(t, home, strings.ReplaceAll(r.how, "http://localhost:8001", d.base))
			id, _ = object(out)["job_id"].(string)
			if id == "" {
				t.Fatalf("%s\nanswered %s", r.how, out)
			}
		}
		j := waitJob(t, c, d.base, id, 60*time.Second, "completed", "failed", "cancelled")
		wid, _ := j["worker_id"].(string)
		if j["status"] != "completed" || j["executor"] != r.executor || !slices.Contains(r.workers, wid) {
			t.Fatalf("%s\nran %v with executor %v on worker %q, want completed with %s on one of %q: %v", r.how, j["status"], j["executor"], wid, r.executor, r.workers, j["error"])
		}
		evs := jobEvents(t, c, d.base, id)
		checkSeqs(t, evs, 20)
		if steps := progressSteps(evs); len(steps) != 20 || steps[0] != 1 || steps[19] != 20 {
			t.Errorf("job %s stored progress steps %v, want 1..20", id, steps)
		}
		waitWorker(t, c, d.base, idA, 30*time.Second, "idle")
		waitWorker(t, c, d.base, idH, 30*time.Second, "idle")
	}

	// (e) The tokens are nowhere in clear: not in the daemon's log, the job events, or any
	// file or record of its state.
	if err, _ := d.stop(); err != nil {
		t.Fatalf("SIGTERM: %v\n%s", err, d.stderr)
	}
	noSecretsUnder(t, home, d.stderr.String(), tokA, tokH)
}

// noSecretsUnder fails the test when any secret (a password, an API key, a worker token)
// is in log, in a file under home (raw bytes), or in a key or value of the daemon's badger
// store (decoded).
func noSecretsUnder(t *testing.T, home, log string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if strings.Contains(log, s) {
			t.Errorf("the daemon's log contains a secret")
		}
	}
	filepath.WalkDir(home, func(p string, e os.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return nil
		}
		b, _ := os.ReadFile(p)
		for _, s := range secrets {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("%s contains a secret in clear", p)
			}
		}
		return nil
	})
	db, err := badger.Open(badger.DefaultOptions(filepath.Join(home, "state", "badger")).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	values := 0
	err = db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			values++
			for _, s := range secrets {
				if bytes.Contains(v, []byte(s)) || bytes.Contains(it.Item().Key(), []byte(s)) {
					t.Errorf("record %q holds a secret in clear", it.Item().Key())
				}
			}
		}
		return nil
	})
	if err != nil || values < 5 {
		t.Fatalf("scanned %d records: %v", values, err)
	}
}

// TestWorkerKilledMidJobReattaches: a worker agent killed with SIGKILL in the middle of a
// job leaves its trainer running; the restarted agent reattaches it (the same trainer, no
// second launch), uploads what the trainer emitted meanwhile, and the job completes with
// its events stored exactly once, seqs 1..N.
func TestWorkerKilledMidJobReattaches(t *testing.T) {
	nvml := fakeNVMLLibrary(t)
	home := t.TempDir()
	d, c := workerDaemon(t, home)
	id0, tok := createWorker(t, c, d.base, "gpu-1", nil)
	const steps = 120
	w := startAgent(t, workerSpec{name: "gpu-1", url: d.base, token: tok, nvml: nvml, steps: steps, stepMS: 40, heartbeat: "500ms"})
	waitWorker(t, c, d.base, id0, 30*time.Second, "idle")
	id, _ := submitQueued(t, c, d.base, map[string]any{"config_name": "demo", "target": "worker"})
	waitStep(t, c, d.base, id, 10)

	w.kill9()
	trainers := trainersUnder(w.home)
	if len(trainers) != 1 {
		t.Fatalf("after kill -9 of the agent: %d trainers alive, want its one", len(trainers))
	}
	// The trainer goes on alone; the agent comes back while it still runs.
	before := len(trainerLogSteps(t, w.home))
	deadline := time.Now().Add(30 * time.Second)
	for len(trainerLogSteps(t, w.home)) < before+5 {
		if time.Now().After(deadline) {
			t.Fatal("the trainer made no progress without its agent")
		}
		time.Sleep(20 * time.Millisecond)
	}
	w.start()
	j := waitJob(t, c, d.base, id, 60*time.Second, "completed", "failed", "cancelled")
	if j["status"] != "completed" || j["worker_id"] != id0 {
		t.Fatalf("job %v on %v: %v\n%s", j["status"], j["worker_id"], j["error"], w.log)
	}
	evs := jobEvents(t, c, d.base, id)
	checkSeqs(t, evs, steps)
	ps := progressSteps(evs)
	for i, s := range ps {
		if s != i+1 {
			t.Fatalf("stored progress steps %v, want 1..%d once each", ps, steps)
		}
	}
	if len(ps) != steps {
		t.Fatalf("%d progress events stored, want %d", len(ps), steps)
	}
	started := 0
	for _, e := range evs {
		if e.Title == "Training started" {
			started++
		}
	}
	if started != 1 {
		t.Errorf("%d trainers started the job, want the one reattached", started)
	}
	if !w.running() {
		t.Errorf("the persistent agent exited after the job\n%s", w.log)
	}
}

// TestWorkerLostJobResumesElsewhere: a worker that stops for good (agent and trainer
// killed, never restarted) misses its heartbeats; the daemon marks it offline and requeues
// its job, which the other worker (labels allow both) runs from the latest checkpoint the
// first one saved (the shared --output_dir) to completion.
func TestWorkerLostJobResumesElsewhere(t *testing.T) {
	nvml := fakeNVMLLibrary(t)
	home := t.TempDir()
	d, c := workerDaemon(t, home, workerHeartbeatTimeoutFlag, "2s")
	labels := map[string]string{"pool": "shared"}
	const steps = 150
	spec := workerSpec{url: d.base, labels: labels, nvml: nvml, steps: steps, stepMS: 30, heartbeat: "300ms",
		trainerEnv: []string{kittest.EnvCheckpointEvery + "=5"}}
	ids := map[string]string{}
	agents := map[string]*workerAgent{}
	for _, name := range []string{"gpu-1", "gpu-2"} {
		id, tok := createWorker(t, c, d.base, name, labels)
		s := spec
		s.name, s.token = name, tok
		agents[id] = startAgent(t, s)
		ids[name] = id
		waitWorker(t, c, d.base, id, 30*time.Second, "idle")
	}
	id, _ := submitQueued(t, c, d.base, map[string]any{"config_name": "demo", "target": "worker", "worker_labels": map[string]string{"pool": "shar*"}})
	waitStep(t, c, d.base, id, 12)
	first, _ := jobState(t, c, d.base, id)["worker_id"].(string)
	lost := agents[first]
	if lost == nil {
		t.Fatalf("job runs on %q, not on one of %v", first, ids)
	}
	// The machine is gone: the agent and its trainer die, and nothing restarts them.
	lost.kill9()
	killTrainersUnder(lost.home)
	waitWorker(t, c, d.base, first, 30*time.Second, "offline")
	j := waitJob(t, c, d.base, id, 60*time.Second, "completed", "failed", "cancelled")
	var other string
	for _, wid := range ids {
		if wid != first {
			other = wid
		}
	}
	if j["status"] != "completed" || j["worker_id"] != other {
		t.Fatalf("job %v on %v (want completed on %s): %v", j["status"], j["worker_id"], other, j["error"])
	}
	// The second worker's trainer began after a checkpoint of the first, not at step 1.
	resumed := trainerLogSteps(t, agents[other].home)
	if len(resumed) == 0 || resumed[0] <= 5 || resumed[len(resumed)-1] != steps {
		t.Fatalf("the retried run logged steps %v, want from after a checkpoint (>5) to %d", resumed, steps)
	}
	// Both attempts' events are stored in one sequence: the second worker's trainer
	// numbered its events after the daemon's last (workerproto.JobSubmit.LastSeq), so its
	// own start event is not dropped as a replay.
	evs := jobEvents(t, c, d.base, id)
	checkSeqs(t, evs, steps/2)
	starts := 0
	for _, e := range evs {
		if e.Title == "Trainer started" {
			starts++
		}
	}
	if starts != 2 {
		t.Fatalf("%d attempts' start events stored, want 2 (one per worker)", starts)
	}
}

// TestWorkerEventUploadSurvivesCutConnections: a proxy between the worker and the daemon
// cuts event uploads four times, in the middle of a request and after the daemon stored a
// batch but before the worker heard back; the job's stored events are still exactly seqs
// 1..N and every burst event is stored once. (Four cuts: the agent backs off 1, 2, 4, 8 s.)
func TestWorkerEventUploadSurvivesCutConnections(t *testing.T) {
	nvml := fakeNVMLLibrary(t)
	home := t.TempDir()
	d, c := workerDaemon(t, home)
	proxy := startCutProxy(t, strings.TrimPrefix(d.base, "http://"), 4)
	wid, tok := createWorker(t, c, d.base, "gpu-1", nil)
	const burst = 3000
	w := startAgent(t, workerSpec{name: "gpu-1", url: proxy.URL(), token: tok, nvml: nvml, steps: 10, stepMS: 10, heartbeat: "500ms",
		trainerEnv: []string{fmt.Sprintf("%s=%d", kittest.EnvBurst, burst)}})
	waitWorker(t, c, d.base, wid, 30*time.Second, "idle")
	id, _ := submitQueued(t, c, d.base, map[string]any{"config_name": "demo", "target": "worker"})
	defer func() {
		if t.Failed() {
			mid, late := proxy.made()
			t.Logf("cuts: %d mid-request, %d before the answer; stored last_seq %v\nworker log:\n%s", mid, late, jobState(t, c, d.base, id)["last_seq"], w.log)
		}
	}()
	j := waitJob(t, c, d.base, id, 60*time.Second, "completed", "failed", "cancelled")
	if j["status"] != "completed" {
		t.Fatalf("job %v: %v", j["status"], j["error"])
	}
	if mid, late := proxy.made(); mid == 0 || late == 0 {
		t.Fatalf("the proxy cut %d uploads mid-request and %d before the answer; want both kinds", mid, late)
	}
	evs := jobEvents(t, c, d.base, id)
	checkSeqs(t, evs, burst+10)
	got := make([]int, burst+1)
	for _, e := range evs {
		var b struct {
			Burst int `json:"burst"`
		}
		if e.Type == "training.progress" && json.Unmarshal(e.Data, &b) == nil && b.Burst > 0 {
			got[b.Burst]++
		}
	}
	for i := 1; i <= burst; i++ {
		if got[i] != 1 {
			t.Fatalf("burst event %d stored %d times", i, got[i])
		}
	}
}
