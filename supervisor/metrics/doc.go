// Package metrics exports the daemon's Prometheus metrics (issue 17): jobs by state,
// the queue, every GPU with the job holding it, each running job's step rate, loss and
// checkpoint age, webhook and hook outcomes, and HTTP request durations by route.
//
// Each daemon builds its own Metrics with its own registry (never Prometheus's global
// one). Job and GPU figures are read at scrape time from the job manager and the GPU
// allocator (a prometheus.Collector), so nothing polls in the background; the step rate
// and the checkpoint time come from the job's events as they pass through the event sink
// (Sink). Counters and histograms start at zero when the daemon starts, as Prometheus
// expects of a restarted process.
//
// GET /metrics is served by supervisor/api: loopback callers only, unless the operator
// sets a scrape token.
package metrics
