package metrics

import (
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"simpletuner/plugins"
	"simpletuner/store"
	"simpletuner/supervisor/gpu"
	"simpletuner/supervisor/hookrunner"
	"simpletuner/supervisor/jobs"
	"simpletuner/supervisor/webhooks"
)

// Namespace prefixes every series this package defines.
const Namespace = "simpletuner"

// DefaultRateWindow is the span the step rate is averaged over, and how long a job may
// report no progress before its rate reads 0.
const DefaultRateWindow = 30 * time.Second

// JobLister lists every job record (store.Jobs and jobs.Manager both do).
type JobLister interface {
	List() ([]*store.Job, error)
}

// Config says where the scrape-time figures come from.
type Config struct {
	// Jobs lists the jobs for the job, queue and per-job series; nil leaves them out.
	Jobs JobLister
	// GPUs lists the GPUs and who holds them; nil leaves the GPU series out.
	GPUs *gpu.Allocator
	// Log receives scrape errors (a job list or GPU query that failed).
	Log *slog.Logger
	// Now is the clock for ages and rates (default time.Now).
	Now func() time.Time
	// RateWindow overrides DefaultRateWindow.
	RateWindow time.Duration
}

// Metrics is one daemon's metrics: its own registry, the counters and histograms that
// other packages feed, and the scrape-time collector. It is safe for concurrent use.
type Metrics struct {
	cfg      Config
	reg      *prometheus.Registry
	track    *tracker
	http     *prometheus.HistogramVec
	wait     prometheus.Histogram
	webhooks *prometheus.CounterVec
	hooks    *prometheus.CounterVec
}

// New builds the metrics and registers every series in a fresh registry, with the Go
// runtime's and the process's standard collectors.
func New(cfg Config) (*Metrics, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.RateWindow <= 0 {
		cfg.RateWindow = DefaultRateWindow
	}
	m := &Metrics{cfg: cfg, reg: prometheus.NewRegistry(), track: newTracker(cfg.RateWindow, cfg.Now())}
	m.http = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Name: "http_request_duration_seconds",
		Help:    "Time to answer an API request, by route template (the route table's path, never the raw URL), method and status code. Event and log streams are left out.",
		Buckets: prometheus.DefBuckets}, []string{"route", "method", "code"})
	m.wait = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Name: "queue_wait_seconds",
		Help:    "Time from a job's submission to its first launch (approval waits included).",
		Buckets: prometheus.ExponentialBuckets(0.1, 4, 11)})
	m.webhooks = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "webhook_deliveries_total",
		Help: "Job events handed to webhooks, by result: delivered, failed (after the retries), blocked (by the destination policy) or dropped (a full queue)."}, []string{"result"})
	m.hooks = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "hook_runs_total",
		Help: "Hook script runs (post-checkpoint and post-upload hooks), by result: succeeded or failed."}, []string{"result"})
	for _, c := range []prometheus.Collector{m.http, m.wait, m.webhooks, m.hooks, newCollector(m),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		if err := m.reg.Register(c); err != nil {
			return nil, fmt.Errorf("metrics: register: %w", err)
		}
	}
	// Every result shows from the first scrape, so that rate() and alerts see a 0 rather
	// than no series before the first failure.
	for _, r := range webhookResults() {
		m.webhooks.WithLabelValues(r)
	}
	for _, r := range hookResults() {
		m.hooks.WithLabelValues(r)
	}
	return m, nil
}

// Registry is the registry behind Handler (tests gather from it).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in Prometheus's text format (or OpenMetrics when the
// scraper asks). A collector that fails is logged and left out; the rest is served.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:            logAdapter{m.cfg.Log},
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
		Timeout:             20 * time.Second,
	})
}

// ObserveRequest records one answered API request (the API server's middleware calls
// it). route must be a route template, never a raw path.
func (m *Metrics) ObserveRequest(route, method string, code int, d time.Duration) {
	m.http.WithLabelValues(route, MethodLabel(method), CodeLabel(code)).Observe(d.Seconds())
}

// WebhookResult counts one webhook outcome (webhooks.Options.OnResult).
func (m *Metrics) WebhookResult(result string) {
	m.webhooks.WithLabelValues(oneOf(result, webhookResults())).Inc()
}

// HookResult counts one hook run (hookrunner.Options.OnResult).
func (m *Metrics) HookResult(result string) {
	m.hooks.WithLabelValues(oneOf(result, hookResults())).Inc()
}

// Sink wraps the job manager's event sink: every batch and status change goes to next
// first, then feeds the step rate, the checkpoint age and the queue wait.
func (m *Metrics) Sink(next jobs.EventSink) jobs.EventSink { return &sink{next: next, m: m} }

// sink is the jobs.EventSink that Sink returns.
type sink struct {
	next jobs.EventSink
	m    *Metrics
}

// Append implements jobs.EventSink.
func (s *sink) Append(jobID string, evs []plugins.Event) error {
	if err := s.next.Append(jobID, evs); err != nil {
		return err
	}
	s.m.track.events(jobID, evs, s.m.cfg.Now())
	return nil
}

// JobStatus implements jobs.EventSink.
func (s *sink) JobStatus(j *store.Job) {
	s.next.JobStatus(j)
	if wait, ok := s.m.track.status(j); ok {
		s.m.wait.Observe(wait.Seconds())
	}
}

// webhookResults and hookResults are the label values the counters take; anything else
// a caller passes is counted as "other" (label values stay a fixed set).
func webhookResults() []string {
	return []string{webhooks.ResultDelivered, webhooks.ResultFailed, webhooks.ResultBlocked, webhooks.ResultDropped}
}

func hookResults() []string { return []string{hookrunner.ResultSucceeded, hookrunner.ResultFailed} }

func oneOf(v string, set []string) string {
	for _, s := range set {
		if v == s {
			return v
		}
	}
	return "other"
}

// MethodLabel is the method label of a request: the standard methods as sent, anything
// else "other", so that invented methods cannot multiply the series.
func MethodLabel(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return method
	}
	return "other"
}

// CodeLabel is the status code label: the code for a valid HTTP status, "other" for
// anything outside 100–599.
func CodeLabel(code int) string {
	if code < 100 || code > 599 {
		return "other"
	}
	return strconv.Itoa(code)
}

// logAdapter lets promhttp report through the daemon's logger.
type logAdapter struct{ log *slog.Logger }

func (l logAdapter) Println(v ...any) { l.log.Warn("metrics scrape", "err", fmt.Sprint(v...)) }
