package metrics

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"

	"simpletuner/plugins"
	"simpletuner/store"
	"simpletuner/supervisor/gpu"
	"simpletuner/supervisor/jobs"
)

// fixture is a Metrics over an in-memory store and two fake GPUs.
type fixture struct {
	m     *Metrics
	db    *store.DB
	inv   *gpu.Fake
	alloc *gpu.Allocator
	now   time.Time
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	db, err := store.OpenInMemory(slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	gpus := gpu.FakeH100(2)
	gpus[1].UtilizationGPU, gpus[1].Temperature = -1, -1 // a board without those readings
	gpus[0].UtilizationGPU = 75
	inv := gpu.NewFake(gpus...)
	f := &fixture{db: db, inv: inv, alloc: gpu.NewAllocator(inv, gpu.Limits{}), now: at(1000)}
	f.m, err = New(Config{Jobs: db.Jobs(), GPUs: f.alloc, Now: func() time.Time { return f.now }})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) job(t *testing.T, id, status string, progress *plugins.Progress) {
	t.Helper()
	j := &store.Job{ID: id, Status: status, CreatedAt: at(0)}
	if progress != nil {
		j.Progress, _ = json.Marshal(progress)
	}
	if err := f.db.Jobs().Create(j); err != nil {
		t.Fatal(err)
	}
}

// nopSink is the event sink under Metrics.Sink in tests.
type nopSink struct{ err error }

func (s nopSink) Append(string, []plugins.Event) error { return s.err }
func (nopSink) JobStatus(*store.Job)                   {}

func TestCollectorSeries(t *testing.T) {
	f := newFixture(t)
	f.job(t, "run1", jobs.StatusRunning, &plugins.Progress{Step: 40, Loss: 0.25})
	f.job(t, "run2", jobs.StatusRunning, nil) // no progress yet: no loss, no rate
	f.job(t, "q1", jobs.StatusQueued, nil)
	f.job(t, "q2", jobs.StatusQueued, nil)
	f.job(t, "done", jobs.StatusCompleted, &plugins.Progress{Step: 9, Loss: 1})
	if err := f.alloc.Ledger().Adopt("run1", []string{gpu.FakeUUID(1)}); err != nil {
		t.Fatal(err)
	}
	sink := f.m.Sink(nopSink{})
	ev := func(seq uint64, typ string, sec float64, data any) plugins.Event {
		b, _ := json.Marshal(data)
		return plugins.Event{Seq: seq, Type: typ, Time: at(sec), Data: b}
	}
	if err := sink.Append("run1", []plugins.Event{ev(1, plugins.EventTrainingProgress, 990, plugins.Progress{Step: 20}),
		ev(2, plugins.EventTrainingCheckpoint, 994, plugins.CheckpointData{Step: 30}),
		ev(3, plugins.EventTrainingProgress, 995, plugins.Progress{Step: 40})}); err != nil {
		t.Fatal(err)
	}
	// The done job's events are known but it does not run: no per-job series.
	sink.Append("done", []plugins.Event{ev(1, plugins.EventTrainingProgress, 1, plugins.Progress{Step: 1}), ev(2, plugins.EventTrainingProgress, 2, plugins.Progress{Step: 9})})

	want := `
# HELP simpletuner_job_checkpoint_age_seconds Seconds since a running job's last checkpoint was saved (only once this daemon has seen one).
# TYPE simpletuner_job_checkpoint_age_seconds gauge
simpletuner_job_checkpoint_age_seconds{job_id="run1"} 6
# HELP simpletuner_job_loss The latest training loss a running job reported.
# TYPE simpletuner_job_loss gauge
simpletuner_job_loss{job_id="run1"} 0.25
# HELP simpletuner_job_step_rate_steps_per_second Training steps per second of a running job, averaged over the last 30s of progress; 0 when it reported none for that long.
# TYPE simpletuner_job_step_rate_steps_per_second gauge
simpletuner_job_step_rate_steps_per_second{job_id="run1"} 4
# HELP simpletuner_queue_depth Jobs waiting in the queue (state queued; jobs pending approval are not in it yet).
# TYPE simpletuner_queue_depth gauge
simpletuner_queue_depth 2
`
	if err := testutil.GatherAndCompare(f.m.Registry(), strings.NewReader(want), "simpletuner_job_checkpoint_age_seconds",
		"simpletuner_job_loss", "simpletuner_job_step_rate_steps_per_second", "simpletuner_queue_depth"); err != nil {
		t.Error(err)
	}
	u0, u1 := gpu.FakeUUID(0), gpu.FakeUUID(1)
	wantGPU := fmt.Sprintf(`
# HELP simpletuner_gpu_temperature_celsius GPU die temperature, by GPU with the job holding it; absent where the GPU has no sensor.
# TYPE simpletuner_gpu_temperature_celsius gauge
simpletuner_gpu_temperature_celsius{index="0",job_id="",uuid="%[1]s"} 31
# HELP simpletuner_gpu_utilization_ratio GPU utilization over NVML's last sample period, 0 to 1, by GPU with the job holding it (job_id empty when free); absent where the GPU does not report it.
# TYPE simpletuner_gpu_utilization_ratio gauge
simpletuner_gpu_utilization_ratio{index="0",job_id="",uuid="%[1]s"} 0.75
# HELP simpletuner_gpu_memory_used_bytes GPU memory in use, by GPU with the job holding it.
# TYPE simpletuner_gpu_memory_used_bytes gauge
simpletuner_gpu_memory_used_bytes{index="0",job_id="",uuid="%[1]s"} 4.194304e+06
simpletuner_gpu_memory_used_bytes{index="1",job_id="run1",uuid="%[2]s"} 4.194304e+06
`, u0, u1)
	if err := testutil.GatherAndCompare(f.m.Registry(), strings.NewReader(wantGPU), "simpletuner_gpu_temperature_celsius",
		"simpletuner_gpu_utilization_ratio", "simpletuner_gpu_memory_used_bytes"); err != nil {
		t.Error(err)
	}
	for state, n := range map[string]float64{"running": 2, "queued": 2, "completed": 1, "failed": 0, "pending_approval": 0, "lost": 0} {
		if got := gaugeValue(t, f.m.Registry(), "simpletuner_jobs", "state", state); got != n {
			t.Errorf("simpletuner_jobs{state=%q} = %v, want %v", state, got, n)
		}
	}
	// The exposition passes Prometheus's own lint (what promtool check metrics runs).
	problems, err := testutil.GatherAndLint(f.m.Registry())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

// gaugeValue reads one gauge sample by a label.
func gaugeValue(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	t.Fatalf("no %s{%s=%q}", name, label, value)
	return 0
}

// TestScrapeWithFailingSources: a GPU query or job list that fails leaves its series out
// and the rest is served.
func TestScrapeWithFailingSources(t *testing.T) {
	f := newFixture(t)
	f.job(t, "q1", jobs.StatusQueued, nil)
	f.inv.SetError(errors.New("nvml: GPU is lost"))
	rec := httptest.NewRecorder()
	f.m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	if rec.Code != http.StatusOK || !strings.Contains(body, "simpletuner_queue_depth 1") || strings.Contains(body, "simpletuner_gpu_memory_total_bytes{") {
		t.Errorf("%d\n%s", rec.Code, body)
	}
}

// TestCountersAndHistograms: webhook and hook results (unknown ones as "other"), queue
// waits through the sink, request durations.
func TestCountersAndHistograms(t *testing.T) {
	f := newFixture(t)
	for _, r := range []string{"delivered", "delivered", "failed", "blocked", "dropped", "surprise"} {
		f.m.WebhookResult(r)
	}
	f.m.HookResult("succeeded")
	f.m.HookResult("failed")
	for r, n := range map[string]float64{"delivered": 2, "failed": 1, "blocked": 1, "dropped": 1, "other": 1} {
		if got := testutil.ToFloat64(f.m.webhooks.WithLabelValues(r)); got != n {
			t.Errorf("webhook %s = %v, want %v", r, got, n)
		}
	}
	if got := testutil.ToFloat64(f.m.hooks.WithLabelValues("failed")); got != 1 {
		t.Errorf("hook failed = %v", got)
	}
	sink := f.m.Sink(nopSink{})
	start := f.now.Add(time.Second)
	sink.JobStatus(&store.Job{ID: "a", Status: jobs.StatusStarting, Attempts: 1, CreatedAt: f.now.Add(-time.Minute), StartedAt: &start})
	sink.JobStatus(&store.Job{ID: "a", Status: jobs.StatusStarting, Attempts: 1, CreatedAt: f.now.Add(-time.Minute), StartedAt: &start})
	if n := testutil.CollectAndCount(f.m.wait); n != 1 {
		t.Fatalf("queue wait series %d", n)
	}
	if err := testutil.CollectAndCompare(f.m.wait, strings.NewReader(`
# HELP simpletuner_queue_wait_seconds Time from a job's submission to its first launch (approval waits included).
# TYPE simpletuner_queue_wait_seconds histogram
simpletuner_queue_wait_seconds_bucket{le="0.1"} 0
simpletuner_queue_wait_seconds_bucket{le="0.4"} 0
simpletuner_queue_wait_seconds_bucket{le="1.6"} 0
simpletuner_queue_wait_seconds_bucket{le="6.4"} 0
simpletuner_queue_wait_seconds_bucket{le="25.6"} 0
simpletuner_queue_wait_seconds_bucket{le="102.4"} 1
simpletuner_queue_wait_seconds_bucket{le="409.6"} 1
simpletuner_queue_wait_seconds_bucket{le="1638.4"} 1
simpletuner_queue_wait_seconds_bucket{le="6553.6"} 1
simpletuner_queue_wait_seconds_bucket{le="26214.4"} 1
simpletuner_queue_wait_seconds_bucket{le="104857.6"} 1
simpletuner_queue_wait_seconds_bucket{le="+Inf"} 1
simpletuner_queue_wait_seconds_sum 61
simpletuner_queue_wait_seconds_count 1
`)); err != nil {
		t.Error(err)
	}
	// A sink error is passed on and records nothing.
	failing := f.m.Sink(nopSink{err: errors.New("disk full")})
	d, _ := json.Marshal(plugins.Progress{Step: 1})
	if err := failing.Append("x", []plugins.Event{{Seq: 1, Type: plugins.EventTrainingProgress, Time: f.now, Data: d}}); err == nil {
		t.Error("the sink's error was swallowed")
	}
	if _, ok := f.m.track.jobs["x"]; ok {
		t.Error("events the sink refused were recorded")
	}

	f.m.ObserveRequest("/api/jobs/{job_id}", "GET", 200, 30*time.Millisecond)
	f.m.ObserveRequest("unmatched", "BREW", 1000, time.Millisecond)
	if n := testutil.CollectAndCount(f.m.http); n != 2 {
		t.Errorf("http series %d", n)
	}
	if got := testutil.CollectAndCount(f.m.http, "simpletuner_http_request_duration_seconds"); got != 2 {
		t.Errorf("%d", got)
	}
	problems, err := promlint.NewWithMetricFamilies(mustGather(t, f.m.Registry())).Lint()
	if err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", err, problems)
	}
}

func mustGather(t *testing.T, reg *prometheus.Registry) []*dto.MetricFamily {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

func TestLabels(t *testing.T) {
	for in, want := range map[string]string{"GET": "GET", "DELETE": "DELETE", "BREW": "other", "get": "other", "": "other"} {
		if got := MethodLabel(in); got != want {
			t.Errorf("MethodLabel(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[int]string{200: "200", 404: "404", 599: "599", 99: "other", 600: "other", 0: "other"} {
		if got := CodeLabel(in); got != want {
			t.Errorf("CodeLabel(%d) = %q, want %q", in, got, want)
		}
	}
}

// TestOwnRegistry: two daemons in one process do not share series (no global state).
func TestOwnRegistry(t *testing.T) {
	a, b := newFixture(t), newFixture(t)
	a.m.HookResult("failed")
	if got := testutil.ToFloat64(b.m.hooks.WithLabelValues("failed")); got != 0 {
		t.Errorf("a second Metrics sees the first one's counts: %v", got)
	}
}
