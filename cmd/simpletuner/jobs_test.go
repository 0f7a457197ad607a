package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"simpletuner/plugins"
	"simpletuner/plugins/kit/kittest"
)

// fakeTrainerArgs makes the daemon launch this test binary as its CPU trainer.
func fakeTrainerArgs(steps, stepMS int) []string {
	return []string{"--trainer", os.Args[0], "--trainer-env", asTrainer + "=1",
		"--trainer-env", fmt.Sprintf("%s=%d", kittest.EnvSteps, steps), "--trainer-env", fmt.Sprintf("%s=%d", kittest.EnvStepMS, stepMS)}
}

// adminClient sets up the first admin from loopback and returns a client with its session.
func adminClient(t *testing.T, d *proc) *http.Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	d.waitReady(c)
	code, _ := call(t, c, "POST", d.base+"/api/auth/setup/first-admin", map[string]any{"email": "a@example.com", "username": "admin", "password": "your-secure-password"}, nil)
	if code != 200 {
		t.Fatalf("first admin: %d", code)
	}
	return c
}

// fastPathFields are the seed's fast-path fields with the dit family this trainer has.
// The data lies under the datasets root and the cache under the cache root, where a
// dataloader's folders must be.
func fastPathFields(t *testing.T, home string) [][2]string {
	data := filepath.Join(home, "datasets", "demo")
	os.MkdirAll(data, 0o755)
	os.WriteFile(filepath.Join(data, "a.txt"), []byte("a caption"), 0o644)
	os.MkdirAll(filepath.Join(home, "config"), 0o755)
	dl := fmt.Sprintf(`[{"id":"demo-images","type":"local","dataset_type":"image","instance_data_dir":%q,"caption_strategy":"textfile","resolution":32,"resolution_type":"pixel"},
{"id":"demo-text-embeds","type":"local","dataset_type":"text_embeds","default":true,"cache_dir":%q}]`, data, filepath.Join(home, "cache", "text"))
	if err := os.WriteFile(filepath.Join(home, "config", "multidatabackend-once.json"), []byte(dl), 0o644); err != nil {
		t.Fatal(err)
	}
	return [][2]string{{"__active_tab__", "model"}, {"--model_family", "dit"}, {"--model_type", "full"}, {"--model_flavour", "tiny"},
		{"--output_dir", filepath.Join(home, "out", "inline-demo")}, {"--data_backend_config", "config/multidatabackend-once.json"},
		{"--train_batch_size", "1"}, {"--learning_rate", "0.0001"}, {"--max_train_steps", "200"}, {"--num_train_epochs", "0"}}
}

func jobState(t *testing.T, c *http.Client, base, id string) map[string]any {
	t.Helper()
	code, j := call(t, c, "GET", base+"/api/jobs/"+id, nil, nil)
	if code != 200 {
		t.Fatalf("job %s: %d %v", id, code, j)
	}
	return j
}

// trainerSteps counts the steps the fake trainer of job id has logged to its trainer.log
// (which it writes whether or not a daemon runs).
func trainerSteps(home, id string) int {
	b, _ := os.ReadFile(filepath.Join(home, "jobs", id, plugins.LogFile))
	return strings.Count(string(b), "fake step done")
}

// waitTrainerSteps waits until the fake trainer of job id has logged n steps.
func waitTrainerSteps(t *testing.T, home, id string, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for trainerSteps(home, id) < n {
		if time.Now().After(deadline) {
			t.Fatalf("the trainer logged %d steps, want %d", trainerSteps(home, id), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitStep waits until the job's stored progress has reached step.
func waitStep(t *testing.T, c *http.Client, base, id string, step float64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		j := jobState(t, c, base, id)
		p, _ := j["progress"].(map[string]any)
		if s, _ := p["step"].(float64); s >= step {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s is %v at progress %v, want step %v", id, j["status"], j["progress"], step)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitJob(t *testing.T, c *http.Client, base, id string, within time.Duration, want ...string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		j := jobState(t, c, base, id)
		for _, w := range want {
			if j["status"] == w {
				return j
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s is %v, want %v (%v)", id, j["status"], want, j["error"])
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// submitRunning queues the stored environment env through the API and waits until its
// job runs; it returns the job's id.
func submitRunning(t *testing.T, c *http.Client, base, env string) string {
	t.Helper()
	code, sub := call(t, c, "POST", base+"/api/queue/submit", map[string]any{"config_name": env}, nil)
	jobID, _ := sub["job_id"].(string)
	if code != 200 || jobID == "" {
		t.Fatalf("submit: %d %v", code, sub)
	}
	waitJob(t, c, base, jobID, 30*time.Second, "running")
	return jobID
}

func TestFastPathAgainstDaemonAndFakeTrainer(t *testing.T) {
	home := t.TempDir()
	d := start(t, home, fakeTrainerArgs(100000, 20)...)
	c := adminClient(t, d)
	fields := fastPathFields(t, home)

	code, body := form(t, c, d.base+"/api/training/validate", fields, "")
	if code != 200 || !strings.Contains(body, "Configuration Valid") {
		t.Fatalf("validate: %d %s", code, body)
	}
	bad := append(append([][2]string{}, fields...), [2]string{"--num_train_epochs", "3"})
	if _, body := form(t, c, d.base+"/api/training/validate", bad, ""); !strings.Contains(body, "cannot both be set") {
		t.Fatalf("validate with epochs and steps: %s", body)
	}
	// validate reports what start would refuse: a webhook to a metadata address, a hook
	// script that is not an absolute path.
	for _, f := range [][2]string{
		{"--webhook_config", `[{"webhook_type":"raw","callback_url":"http://169.254.169.254/latest/meta-data/"}]`},
		{"--post_checkpoint_script", "run_eval.sh {global_step}"},
	} {
		withBad := append(append([][2]string{}, fields...), f)
		if code, body := form(t, c, d.base+"/api/training/validate", withBad, "application/json"); code != 200 || !strings.Contains(body, `"valid":false`) || !strings.Contains(body, f[0]) {
			t.Fatalf("validate with %s %s: %d %s", f[0], f[1], code, body)
		}
	}
	if code, _ := call(t, c, "POST", d.base+"/api/training/checkpoint/run", nil, nil); code != 400 {
		t.Fatalf("checkpoint with no job: %d", code)
	}
	// An output directory outside the output root, or one whose name ends in a space,
	// is refused before any job exists.
	for _, tc := range []struct{ dir, want string }{
		{"../elsewhere", "climbs out of the output root"},
		{"run /.", "ends in white space"},
	} {
		withDir := append(append([][2]string{}, fields...), [2]string{"--output_dir", tc.dir})
		if code, body := form(t, c, d.base+"/api/training/start", withDir, "application/json"); code != 422 || !strings.Contains(body, tc.want) {
			t.Fatalf("start with --output_dir %q: %d %s", tc.dir, code, body)
		}
	}
	if code, q := call(t, c, "GET", d.base+"/api/queue", nil, nil); code != 200 || len(q["entries"].([]any)) != 0 {
		t.Fatalf("refused starts left a job: %d %v", code, q)
	}

	code, body = form(t, c, d.base+"/api/training/start", append(fields, [2]string{"--validation_prompt", "test shot of <token>"}), "application/json")
	var st struct {
		Success bool   `json:"success"`
		JobID   string `json:"job_id"`
		Status  string `json:"status"`
	}
	json.Unmarshal([]byte(body), &st)
	if code != 200 || !st.Success || st.JobID == "" {
		t.Fatalf("start: %d %s", code, body)
	}
	waitJob(t, c, d.base, st.JobID, 20*time.Second, "running")
	code, status := call(t, c, "GET", d.base+"/api/training/status", nil, nil)
	if code != 200 || status["status"] != "running" || status["job_id"] != st.JobID {
		t.Fatalf("status: %v", status)
	}
	for _, path := range []string{"/api/training/validation/run", "/api/training/checkpoint/run"} {
		code, r := call(t, c, "POST", d.base+path, nil, nil)
		if code != 200 || r["job_id"] != st.JobID || !strings.Contains(fmt.Sprint(r["message"]), "next gradient sync") {
			t.Fatalf("%s: %d %v", path, code, r)
		}
	}
	code, r := call(t, c, "POST", d.base+"/api/training/stop", nil, nil)
	if code != 200 || !strings.Contains(fmt.Sprint(r["message"]), "stop requested") {
		t.Fatalf("stop: %d %v", code, r)
	}
	waitJob(t, c, d.base, st.JobID, 20*time.Second, "stopped")
	code, evs := call(t, c, "GET", d.base+"/api/jobs/"+st.JobID+"/events", nil, nil)
	kinds := fmt.Sprint(evs["events"])
	for _, want := range []string{"training.validation", "training.checkpoint", "stopped"} {
		if !strings.Contains(kinds, want) {
			t.Errorf("events lack %q: %d", want, code)
		}
	}

	// Cancel through the form, as the seed does, on a second job.
	_, body = form(t, c, d.base+"/api/training/start", fields, "application/json")
	json.Unmarshal([]byte(body), &st)
	waitJob(t, c, d.base, st.JobID, 20*time.Second, "running")
	if _, body := form(t, c, d.base+"/api/training/cancel", [][2]string{{"job_id", st.JobID}}, ""); !strings.Contains(body, "Training Cancelled") {
		t.Fatalf("cancel: %s", body)
	}
	waitJob(t, c, d.base, st.JobID, 20*time.Second, "cancelled")

	// Queue endpoints.
	code, stats := call(t, c, "GET", d.base+"/api/queue/stats", nil, nil)
	if code != 200 || stats["local"] == nil {
		t.Fatalf("queue stats: %d %v", code, stats)
	}
	code, conc := call(t, c, "POST", d.base+"/api/queue/concurrency", map[string]any{"local_gpu_max_concurrent": nil, "local_job_max_concurrent": 2}, nil)
	if code != 200 || conc["local_job_max_concurrent"] != float64(2) || conc["local_gpu_max_concurrent"] != nil {
		t.Fatalf("concurrency: %d %v", code, conc)
	}
	code, sys := call(t, c, "GET", d.base+"/api/system/status?include_allocation=true", nil, nil)
	if code != 200 || sys["gpu_allocation"] == nil {
		t.Fatalf("system status: %d %v", code, sys)
	}
	code, sub := call(t, c, "POST", d.base+"/api/queue/submit", map[string]any{"config_name": "nope", "target": "local"}, nil)
	if code != 200 || sub["success"] != false || !strings.Contains(fmt.Sprint(sub["error"]), "not found") {
		t.Fatalf("submit unknown env: %d %v", code, sub)
	}
	writeEnv(t, home, "x")
	code, sub = call(t, c, "POST", d.base+"/api/queue/submit", map[string]any{"config_name": "x", "target": "worker"}, nil)
	if code != 400 || !strings.Contains(fmt.Sprint(sub["detail"]), "target=worker") {
		t.Fatalf("submit to worker with none registered: %d %v, want 400 naming the target", code, sub)
	}
}

// TestDaemonKill9TenTimesReattachesSameTrainer is row P5: the daemon is SIGKILLed while a
// job runs, ten times; each new daemon reattaches to the same trainer pid, which stays
// controllable.
func TestDaemonKill9TenTimesReattachesSameTrainer(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts the daemon ten times")
	}
	home := t.TempDir()
	args := fakeTrainerArgs(1000000, 20)
	d := start(t, home, args...)
	c := adminClient(t, d)
	fields := fastPathFields(t, home)
	_, body := form(t, c, d.base+"/api/training/start", fields, "application/json")
	var st struct {
		JobID string `json:"job_id"`
	}
	json.Unmarshal([]byte(body), &st)
	j := waitJob(t, c, d.base, st.JobID, 20*time.Second, "running")
	pid := int(j["pid"].(float64))
	for i := range 10 {
		d.cmd.Process.Signal(syscall.SIGKILL)
		<-d.done
		if err := syscall.Kill(pid, 0); err != nil {
			t.Fatalf("round %d: trainer %d died with the daemon", i, pid)
		}
		d = start(t, home, args...)
		d.waitReady(c)
		j = waitJob(t, c, d.base, st.JobID, 20*time.Second, "running")
		if got := int(j["pid"].(float64)); got != pid || j["attempts"].(float64) != 1 {
			t.Fatalf("round %d: pid %d attempts %v, want the same trainer %d launched once", i, got, j["attempts"], pid)
		}
	}
	code, r := call(t, c, "POST", d.base+"/api/training/stop", nil, nil)
	if code != 200 {
		t.Fatalf("stop after 10 restarts: %d %v", code, r)
	}
	waitJob(t, c, d.base, st.JobID, 20*time.Second, "stopped")
	// Every event made it into the store exactly once, across all ten restarts.
	code, evs := call(t, c, "GET", d.base+"/api/jobs/"+st.JobID+"/events?since_seq=0", nil, nil)
	list, _ := evs["events"].([]any)
	for i, e := range list {
		if seq := e.(map[string]any)["seq"].(float64); int(seq) != i+1 {
			t.Fatalf("event %d has seq %v (code %d)", i, seq, code)
		}
	}
}

func TestHookOptionsNeedJobHooksPermission(t *testing.T) {
	home := t.TempDir()
	d := start(t, home, fakeTrainerArgs(5, 5)...)
	admin := adminClient(t, d)
	code, _ := call(t, admin, "POST", d.base+"/api/users", map[string]any{"email": "r@example.com", "username": "researcher", "password": "their-password", "level_names": []string{"researcher"}}, nil)
	if code != 201 {
		t.Fatalf("create researcher: %d", code)
	}
	jar, _ := cookiejar.New(nil)
	rs := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	if code, _ := call(t, rs, "POST", d.base+"/api/auth/login", map[string]any{"username": "researcher", "password": "their-password"}, nil); code != 200 {
		t.Fatalf("login: %d", code)
	}
	script := filepath.Join(home, "run_eval.sh")
	os.WriteFile(script, []byte("#!/bin/sh\n"), 0o755)
	fields := append(fastPathFields(t, home), [2]string{"--post_checkpoint_script", script + " {local_checkpoint_path} {global_step}"})
	code, body := form(t, rs, d.base+"/api/training/start", fields, "application/json")
	if code != 403 || !strings.Contains(body, "job.hooks") {
		t.Fatalf("researcher with a hook script: %d %s", code, body)
	}
	code, body = form(t, admin, d.base+"/api/training/start", fields, "application/json")
	if code != 200 || !strings.Contains(body, `"success":true`) {
		t.Fatalf("admin with a hook script: %d %s", code, body)
	}
	// A hook that is not an absolute path to a safe executable is refused at submission.
	relative := append(fastPathFields(t, home), [2]string{"--post_checkpoint_script", "run_eval.sh {global_step}"})
	if code, body := form(t, admin, d.base+"/api/training/start", relative, "application/json"); code != 422 || !strings.Contains(body, "absolute path") {
		t.Fatalf("relative hook: %d %s", code, body)
	}
	// Without the hook the researcher may start.
	code, body = form(t, rs, d.base+"/api/training/start", fastPathFields(t, home), "application/json")
	if code != 200 || !strings.Contains(body, `"success":true`) {
		t.Fatalf("researcher without hooks: %d %s", code, body)
	}
}

// TestSeedWebhookExampleAndCheckpointHook runs the seed's webhook example against a
// loopback receiver, and a post_checkpoint_script once per checkpoint.
func TestSeedWebhookExampleAndCheckpointHook(t *testing.T) {
	var mu sync.Mutex
	var got []map[string]any
	var raw strings.Builder // every body received, for the secret sweep
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var m map[string]any
		json.Unmarshal(b, &m)
		mu.Lock()
		got = append(got, m)
		raw.Write(b)
		mu.Unlock()
	}))
	defer recv.Close()
	home := t.TempDir()
	// The trainer's notification carries canary secrets: webhooks, like streams, must
	// get it redacted.
	secret := "\x1b[31m HF_TOKEN=CanaryEnvSecret42 st_CanaryKey0123456789"
	d := start(t, home, append(fakeTrainerArgs(100, 25), "--trainer-env", kittest.EnvMessage+"="+secret)...)
	c := adminClient(t, d)
	hookOut := filepath.Join(home, "hook.log")
	script := filepath.Join(home, "hook.sh")
	os.WriteFile(script, []byte("#!/bin/sh\necho \"$1 $2\" >> "+hookOut+"\n"), 0o755)
	wh := fmt.Sprintf(`[{"webhook_type":"raw","callback_url":"%s/simpletuner","log_level":"info","ssl_no_verify":false}]`, recv.URL)
	fields := append(fastPathFields(t, home), [2]string{"--webhook_config", wh}, [2]string{"--webhook_reporting_interval", "10"},
		[2]string{"--post_checkpoint_script", script + " {local_checkpoint_path} {global_step}"})
	_, body := form(t, c, d.base+"/api/training/start", fields, "application/json")
	var st struct {
		JobID string `json:"job_id"`
	}
	json.Unmarshal([]byte(body), &st)
	if st.JobID == "" {
		t.Fatalf("start: %s", body)
	}
	waitJob(t, c, d.base, st.JobID, 20*time.Second, "running")
	waitStep(t, c, d.base, st.JobID, 1) // the training loop runs: the command reaches it
	if code, _ := call(t, c, "POST", d.base+"/api/training/checkpoint/run", nil, nil); code != 200 {
		t.Fatalf("checkpoint/run: %d", code)
	}
	waitJob(t, c, d.base, st.JobID, 30*time.Second, "completed")
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		done := false
		for _, m := range got {
			if m["type"] == "job.status" && fmt.Sprint(m["data"]) != "" && strings.Contains(fmt.Sprint(m["data"]), "completed") {
				done = true
			}
		}
		mu.Unlock()
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("receiver got %d events, none completed", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	progress := 0
	for _, m := range got {
		if m["type"] == "training.progress" {
			progress++
		}
	}
	mu.Unlock()
	// 100 steps of 25 ms in a few seconds with a 10 s reporting interval: progress is
	// throttled to very few deliveries, lifecycle events all arrive.
	if progress > 3 {
		t.Fatalf("%d progress deliveries: reporting interval not applied", progress)
	}
	mu.Lock()
	bodies := raw.String()
	mu.Unlock()
	for _, leak := range []string{"CanaryEnvSecret42", "st_CanaryKey0123456789"} {
		if strings.Contains(bodies, leak) {
			t.Errorf("a webhook body carries %q", leak)
		}
	}
	note := false
	mu.Lock()
	for _, m := range got {
		if m["type"] == "notification" {
			note = true
			if text := fmt.Sprint(m["title"], m["message"]); strings.Contains(text, "\x1b") {
				t.Errorf("an escape sequence reached a webhook: %q", text)
			}
		}
	}
	mu.Unlock()
	if !note {
		t.Errorf("the trainer's notification was not delivered")
	}
	var b []byte
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		if b, _ = os.ReadFile(hookOut); len(b) > 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "checkpoint-") {
		t.Fatalf("hook runs: %q", b)
	}
	// A metadata address is refused at submission.
	bad := append(fastPathFields(t, home), [2]string{"--webhook_config", `[{"webhook_type":"raw","callback_url":"http://169.254.169.254/latest/meta-data/","log_level":"info"}]`})
	code, body := form(t, c, d.base+"/api/training/start", bad, "application/json")
	if code != 422 || !strings.Contains(body, "webhook") {
		t.Fatalf("metadata webhook: %d %s", code, body)
	}
}

// TestDaemonCrashAtEachLaunchFailpoint is row P9: the daemon dies at each point of the
// launch sequence; after a restart the job runs exactly once (at most one trainer, no
// orphan), and a client retrying with the same Idempotency-Key gets the same job. A
// trainer that was already spawned is reattached through its bootstrap.json and runs
// the job (attempt 1).
func TestDaemonCrashAtEachLaunchFailpoint(t *testing.T) {
	for _, fp := range []string{"launch.before_spawn", "launch.before_persist", "launch.before_start"} {
		t.Run(fp, func(t *testing.T) {
			home := t.TempDir()
			args := fakeTrainerArgs(30, 20)
			d := startEnv(t, home, []string{"SIMPLETUNER_FAILPOINTS=" + fp}, args...)
			c := adminClient(t, d)
			fields := fastPathFields(t, home)
			post := func(c *http.Client, base string) (string, error) {
				var buf bytes.Buffer
				mw := multipart.NewWriter(&buf)
				for _, f := range fields {
					mw.WriteField(f[0], f[1])
				}
				mw.Close()
				req, _ := http.NewRequest("POST", base+"/api/training/start", &buf)
				req.Header.Set("Content-Type", mw.FormDataContentType())
				req.Header.Set("Accept", "application/json")
				req.Header.Set("Idempotency-Key", "retry-me-1")
				res, err := c.Do(req)
				if err != nil {
					return "", err
				}
				defer res.Body.Close()
				var st struct {
					JobID string `json:"job_id"`
				}
				json.NewDecoder(res.Body).Decode(&st)
				return st.JobID, nil
			}
			post(c, d.base) // the daemon dies while launching: the answer may never come
			select {
			case <-d.done:
			case <-time.After(30 * time.Second):
				t.Fatalf("failpoint %s never fired", fp)
			}
			d2 := start(t, home, args...)
			d2.waitReady(c)
			id, err := post(c, d2.base)
			if err != nil || id == "" {
				t.Fatalf("retry: %q %v", id, err)
			}
			code, list := call(t, c, "GET", d2.base+"/api/jobs", nil, nil)
			if n := list["total"]; code != 200 || n != float64(1) {
				t.Fatalf("jobs after the retry: %d %v (the retry created another job)", code, n)
			}
			deadline := time.Now().Add(30 * time.Second)
			for {
				if n := len(trainersUnder(home)); n > 1 {
					t.Fatalf("%d trainers for one job", n)
				}
				j := jobState(t, c, d2.base, id)
				if j["status"] == "completed" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("job is %v: %v", j["status"], j["error"])
				}
				time.Sleep(50 * time.Millisecond)
			}
			// Once the trainer was spawned it published bootstrap.json: the restarted daemon
			// reattached to it and completed the launch, rather than killing it and
			// launching again (docs/architecture.md §8).
			if fp != "launch.before_spawn" {
				q := jobState(t, c, d2.base, id)
				b, err := plugins.ReadBootstrap(filepath.Join(home, "jobs", id))
				if err != nil || q["attempts"] != float64(1) || q["pid"] != float64(b.PID) {
					t.Fatalf("after %s: attempts %v pid %v (bootstrap %+v, %v): want the first trainer, attempt 1", fp, q["attempts"], q["pid"], b, err)
				}
			}
			// A trainer lingers briefly after its job; it must then exit by itself.
			waitDead := time.Now().Add(30 * time.Second)
			for len(trainersUnder(home)) > 0 && time.Now().Before(waitDead) {
				time.Sleep(50 * time.Millisecond)
			}
			if n := len(trainersUnder(home)); n != 0 {
				t.Fatalf("%d trainers left after the job completed", n)
			}
		})
	}
}

// TestLogLinesWrittenWhileDaemonIsDownAreRelayed is row P6: the trainer keeps working and
// logging while no daemon runs; after a restart every line and event is there.
func TestLogLinesWrittenWhileDaemonIsDownAreRelayed(t *testing.T) {
	home := t.TempDir()
	args := fakeTrainerArgs(40, 40)
	d := start(t, home, args...)
	c := adminClient(t, d)
	_, body := form(t, c, d.base+"/api/training/start", fastPathFields(t, home), "application/json")
	var st struct {
		JobID string `json:"job_id"`
	}
	json.Unmarshal([]byte(body), &st)
	waitJob(t, c, d.base, st.JobID, 20*time.Second, "running")
	waitStep(t, c, d.base, st.JobID, 3) // the first daemon has relayed some of the log
	d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.done
	// The trainer goes on alone: wait until it has logged more steps (or all 40).
	waitTrainerSteps(t, home, st.JobID, min(trainerSteps(home, st.JobID)+5, 40))
	d = start(t, home, args...)
	d.waitReady(c)
	waitJob(t, c, d.base, st.JobID, 20*time.Second, "completed")
	// The relay reads trainer.log on its own schedule: wait for the lines, within a
	// generous bound, instead of sleeping a fixed time.
	steps := map[string]bool{}
	var since float64
	for deadline := time.Now().Add(20 * time.Second); len(steps) < 40 && time.Now().Before(deadline); {
		code, page := call(t, c, "GET", fmt.Sprintf("%s/api/training/events?job_id=%s&types=log&since_index=%d&limit=1000", d.base, st.JobID, int(since)), nil, nil)
		if code != 200 {
			t.Fatalf("events: %d %v", code, page)
		}
		evs, _ := page["events"].([]any)
		for _, e := range evs {
			msg := fmt.Sprint(e.(map[string]any)["message"])
			if i := strings.Index(msg, `"step":`); i >= 0 && strings.Contains(msg, "fake step done") {
				steps[strings.TrimRight(strings.Fields(msg[i+7:])[0], ",}")] = true
			}
		}
		if next, _ := page["next_index"].(float64); next > since {
			since = next
		} else if len(evs) == 0 {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if len(steps) != 40 {
		t.Fatalf("%d of 40 step log lines relayed", len(steps))
	}
	// And every trainer event, in order, exactly once.
	code, evs := call(t, c, "GET", d.base+"/api/jobs/"+st.JobID+"/events?since_seq=0", nil, nil)
	list, _ := evs["events"].([]any)
	for i, e := range list {
		if seq := e.(map[string]any)["seq"].(float64); int(seq) != i+1 {
			t.Fatalf("event %d has seq %v (code %d)", i, seq, code)
		}
	}
}
