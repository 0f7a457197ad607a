package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"simpletuner/supervisor/gpu"
)

// scrape reads GET /metrics as a client with hdr and host (empty: the address's own).
func scrape(t *testing.T, base, host string, hdr map[string]string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", base+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// series is one sample of a scrape: its labels and value.
type series struct {
	labels map[string]string
	value  float64
}

// parseScrape reads Prometheus's text format into name → samples (histograms as their
// sample count).
func parseScrape(t *testing.T, text string) map[string][]series {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("scrape does not parse: %v\n%s", err, text)
	}
	out := map[string][]series{}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			s := series{labels: map[string]string{}}
			for _, l := range m.GetLabel() {
				s.labels[l.GetName()] = l.GetValue()
			}
			switch f.GetType() {
			case dto.MetricType_HISTOGRAM:
				s.value = float64(m.GetHistogram().GetSampleCount())
			case dto.MetricType_COUNTER:
				s.value = m.GetCounter().GetValue()
			default:
				s.value = m.GetGauge().GetValue()
			}
			out[name] = append(out[name], s)
		}
	}
	return out
}

// find returns the samples of name whose labels include want.
func find(got map[string][]series, name string, want map[string]string) []series {
	var out []series
	for _, s := range got[name] {
		ok := true
		for k, v := range want {
			if s.labels[k] != v {
				ok = false
			}
		}
		if ok {
			out = append(out, s)
		}
	}
	return out
}

// TestMetricsDuringFakeTrainerJob is issue 17's metrics acceptance: a scrape of the real
// daemon during a job on the fake trainer, with two fake GPUs (the fake NVML library),
// a webhook and a checkpoint hook, shows every series with the right labels, and
// promtool accepts it. Then the attacker's side: only loopback callers or the token.
func TestMetricsDuringFakeTrainerJob(t *testing.T) {
	home := t.TempDir()
	lib := fakeNVMLLibrary(t)
	// With GPUs the daemon launches the CUDA trainer from --plugins-dir: there, it is
	// this test binary too.
	plugins := t.TempDir()
	if err := os.Symlink(os.Args[0], filepath.Join(plugins, "simpletuner-trainer-cuda")); err != nil {
		t.Fatal(err)
	}
	var hits atomic.Int64
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer recv.Close()
	const token = "metrics-token-0123456789abcdef"
	d := startEnv(t, home, []string{"SIMPLETUNER_NVML_LIBRARY=" + lib, "FAKE_NVML_COUNT=2", "SIMPLETUNER_METRICS_TOKEN=" + token},
		append(fakeTrainerArgs(100000, 20), "--plugins-dir", plugins, "--trusted-proxy", "127.0.0.1")...)
	c := adminClient(t, d)

	script := filepath.Join(home, "hook.sh")
	os.WriteFile(script, []byte("#!/bin/sh\nexit 0\n"), 0o755)
	wh := fmt.Sprintf(`[{"webhook_type":"raw","callback_url":"%s/hook","log_level":"info"}]`, recv.URL)
	fields := append(fastPathFields(t, home), [2]string{"--webhook_config", wh},
		[2]string{"--post_checkpoint_script", script + " {local_checkpoint_path}"})
	jobID := startRunning(t, d, c, fields)
	waitStep(t, c, d.base, jobID, 3)
	if code, _ := call(t, c, "POST", d.base+"/api/training/checkpoint/run", nil, nil); code != 200 {
		t.Fatalf("checkpoint/run: %d", code)
	}

	// Scrape until the checkpoint, its hook and a webhook delivery show (they happen
	// after the command reaches the trainer); the job runs on throughout.
	job := map[string]string{"job_id": jobID}
	var got map[string][]series
	var text string
	for deadline := time.Now().Add(60 * time.Second); ; {
		code, b := scrape(t, d.base, "", nil)
		if code != 200 {
			t.Fatalf("scrape from loopback: %d %s", code, b)
		}
		text, got = b, parseScrape(t, b)
		ready := len(find(got, "simpletuner_job_checkpoint_age_seconds", job)) == 1 &&
			len(find(got, "simpletuner_job_step_rate_steps_per_second", job)) == 1 &&
			sum(find(got, "simpletuner_hook_runs_total", map[string]string{"result": "succeeded"})) >= 1 &&
			sum(find(got, "simpletuner_webhook_deliveries_total", map[string]string{"result": "delivered"})) >= 1
		if ready {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the scrape never showed the checkpoint, rate, hook run and webhook delivery:\n%s\n%s", text, d.stderr)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if s := jobState(t, c, d.base, jobID)["status"]; s != "running" {
		t.Fatalf("the job is %v, want it running during the scrape", s)
	}

	// Jobs by state, every state listed; the queue.
	if v := find(got, "simpletuner_jobs", map[string]string{"state": "running"}); len(v) != 1 || v[0].value != 1 {
		t.Errorf("simpletuner_jobs{state=running} = %v", v)
	}
	for _, s := range []string{"queued", "pending_approval", "completed", "failed", "cancelled", "stopped", "lost", "starting"} {
		if v := find(got, "simpletuner_jobs", map[string]string{"state": s}); len(v) != 1 || v[0].value != 0 {
			t.Errorf("simpletuner_jobs{state=%s} = %v", s, v)
		}
	}
	if v := got["simpletuner_queue_depth"]; len(v) != 1 || v[0].value != 0 || len(v[0].labels) != 0 {
		t.Errorf("simpletuner_queue_depth = %v", v)
	}
	if v := got["simpletuner_queue_wait_seconds"]; len(v) != 1 || v[0].value != 1 {
		t.Errorf("simpletuner_queue_wait_seconds: %v, want one observation (the job's launch)", v)
	}
	// Per job: rate, loss (the fake's loss is 1/step), checkpoint age.
	if v := find(got, "simpletuner_job_step_rate_steps_per_second", job); len(v) != 1 || v[0].value <= 0 || v[0].value > 1000 {
		t.Errorf("step rate %v: the fake trainer steps every 20 ms", v)
	}
	if v := find(got, "simpletuner_job_loss", job); len(v) != 1 || v[0].value <= 0 || v[0].value > 1.0/3 {
		t.Errorf("loss %v: want 1/step with step >= 3", v)
	}
	if v := find(got, "simpletuner_job_checkpoint_age_seconds", job); len(v) != 1 || v[0].value < 0 || v[0].value > 60 {
		t.Errorf("checkpoint age %v", v)
	}
	// GPUs by UUID with the job holding them: the fake library's device 1 reports neither
	// utilization nor temperature (those series are left out), device 0 both.
	held := ""
	for _, name := range []string{"simpletuner_gpu_memory_used_bytes", "simpletuner_gpu_memory_total_bytes"} {
		if v := got[name]; len(v) != 2 {
			t.Errorf("%s: %v, want both GPUs", name, v)
		}
	}
	for i := range 2 {
		v := find(got, "simpletuner_gpu_memory_total_bytes", map[string]string{"uuid": gpu.FakeUUID(i), "index": fmt.Sprint(i)})
		if len(v) != 1 || v[0].value != gpu.H100Memory {
			t.Fatalf("GPU %d memory total: %v", i, v)
		}
		if id := v[0].labels["job_id"]; id != "" {
			if id != jobID || held != "" {
				t.Errorf("GPU %d held by %q (already held: %q)", i, id, held)
			}
			held = gpu.FakeUUID(i)
		}
		if v := find(got, "simpletuner_gpu_memory_used_bytes", map[string]string{"uuid": gpu.FakeUUID(i)}); len(v) != 1 || v[0].value != float64(uint64(i+1)<<30) {
			t.Errorf("GPU %d memory used: %v", i, v)
		}
	}
	if held == "" {
		t.Errorf("no GPU series carries job_id=%s; the job holds a GPU", jobID)
	}
	if v := find(got, "simpletuner_gpu_utilization_ratio", map[string]string{"uuid": gpu.FakeUUID(0)}); len(v) != 1 || v[0].value != 0.42 {
		t.Errorf("GPU 0 utilization: %v", v)
	}
	if v := find(got, "simpletuner_gpu_temperature_celsius", map[string]string{"uuid": gpu.FakeUUID(0)}); len(v) != 1 || v[0].value != 31 {
		t.Errorf("GPU 0 temperature: %v", v)
	}
	for _, name := range []string{"simpletuner_gpu_utilization_ratio", "simpletuner_gpu_temperature_celsius"} {
		if v := find(got, name, map[string]string{"uuid": gpu.FakeUUID(1)}); len(v) != 0 {
			t.Errorf("%s for GPU 1, which does not report it: %v", name, v)
		}
	}
	// HTTP durations by route template, never the raw URL.
	if v := find(got, "simpletuner_http_request_duration_seconds", map[string]string{"route": "/api/jobs/{job_id}", "method": "GET", "code": "200"}); len(v) != 1 || v[0].value < 1 {
		t.Errorf("GET /api/jobs/{job_id} durations: %v", v)
	}
	for _, s := range got["simpletuner_http_request_duration_seconds"] {
		if strings.Contains(s.labels["route"], jobID) {
			t.Errorf("a raw URL became a route label: %v", s.labels)
		}
	}
	if v := find(got, "simpletuner_webhook_deliveries_total", map[string]string{"result": "failed"}); len(v) != 1 {
		t.Errorf("webhook failures not listed at 0: %v", v)
	}
	if v := find(got, "simpletuner_hook_runs_total", map[string]string{"result": "failed"}); len(v) != 1 {
		t.Errorf("hook failures not listed at 0: %v", v)
	}

	t.Run("promtool", func(t *testing.T) { promtoolCheck(t, text) })

	// The attacker's side. A caller that is not on this machine (here: a client behind
	// the trusted proxy) needs the token; a wrong token is refused from anywhere; a
	// loopback peer naming the server by a foreign name (DNS rebinding) is not local.
	remote := map[string]string{"X-Forwarded-For": "203.0.113.9"}
	withTok := func(h map[string]string, tok string) map[string]string {
		out := map[string]string{"Authorization": "Bearer " + tok}
		for k, v := range h {
			out[k] = v
		}
		return out
	}
	for _, tc := range []struct {
		name, host string
		hdr        map[string]string
		code       int
		detail     string
	}{
		{"remote without token", "", remote, 403, "--metrics-token"},
		{"remote with wrong token", "", withTok(remote, token+"x"), 403, "Wrong metrics token"},
		{"remote with a prefix of the token", "", withTok(remote, token[:len(token)-1]), 403, "Wrong metrics token"},
		{"loopback with wrong token", "", withTok(nil, "not-the-token-at-all"), 403, "Wrong metrics token"},
		{"loopback named by a foreign host", "attacker.example:8001", nil, 403, "needs the scrape token"},
		{"remote with the token", "", withTok(remote, token), 200, "simpletuner_jobs"},
	} {
		code, b := scrape(t, d.base, tc.host, tc.hdr)
		if code != tc.code || !strings.Contains(b, tc.detail) {
			t.Errorf("%s: %d %.300s", tc.name, code, b)
		}
		if code != 200 && strings.Contains(b, "simpletuner_") {
			t.Errorf("%s: a refusal carries metrics: %.300s", tc.name, b)
		}
	}
	if strings.Contains(d.stderr.String(), token) {
		t.Errorf("the metrics token reached the daemon's log")
	}
}

func sum(ss []series) float64 {
	var n float64
	for _, s := range ss {
		n += s.value
	}
	return n
}

// promtoolCheck runs `promtool check metrics` (Debian's prometheus package; make
// metrics-deps installs it) over a scrape. Without promtool it skips, except under CI.
func promtoolCheck(t *testing.T, text string) {
	if _, err := exec.LookPath("promtool"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("promtool not found under CI: make metrics-deps installs Debian's prometheus package")
		}
		t.Skip("promtool not found: install Debian's prometheus package (make metrics-deps) to check the scrape with it")
	}
	cmd := exec.Command("promtool", "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		sort.Strings(lines)
		t.Fatalf("promtool check metrics: %v\n%s", err, strings.Join(lines, "\n"))
	}
}
