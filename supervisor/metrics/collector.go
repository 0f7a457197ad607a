package metrics

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"simpletuner/plugins"
	"simpletuner/store"
	"simpletuner/supervisor/jobs"
)

// gpuQueryTimeout bounds the NVML queries of one scrape.
const gpuQueryTimeout = 5 * time.Second

// collector reads the job and GPU gauges at scrape time.
type collector struct {
	m *Metrics

	jobsByState, queueDepth                   *prometheus.Desc
	stepRate, loss, checkpointAge             *prometheus.Desc
	gpuUtil, gpuMemUsed, gpuMemTotal, gpuTemp *prometheus.Desc
}

func newCollector(m *Metrics) *collector {
	name := func(n string) string { return prometheus.BuildFQName(Namespace, "", n) }
	job := []string{"job_id"}
	dev := []string{"uuid", "index", "job_id"}
	return &collector{m: m,
		jobsByState:   prometheus.NewDesc(name("jobs"), "Jobs by state (every state is listed, 0 when none).", []string{"state"}, nil),
		queueDepth:    prometheus.NewDesc(name("queue_depth"), "Jobs waiting in the queue (state queued; jobs pending approval are not in it yet).", nil, nil),
		stepRate:      prometheus.NewDesc(name("job_step_rate_steps_per_second"), fmt.Sprintf("Training steps per second of a running job, averaged over the last %s of progress; 0 when it reported none for that long.", m.cfg.RateWindow), job, nil),
		loss:          prometheus.NewDesc(name("job_loss"), "The latest training loss a running job reported.", job, nil),
		checkpointAge: prometheus.NewDesc(name("job_checkpoint_age_seconds"), "Seconds since a running job's last checkpoint was saved (only once this daemon has seen one).", job, nil),
		gpuUtil:       prometheus.NewDesc(name("gpu_utilization_ratio"), "GPU utilization over NVML's last sample period, 0 to 1, by GPU with the job holding it (job_id empty when free); absent where the GPU does not report it.", dev, nil),
		gpuMemUsed:    prometheus.NewDesc(name("gpu_memory_used_bytes"), "GPU memory in use, by GPU with the job holding it.", dev, nil),
		gpuMemTotal:   prometheus.NewDesc(name("gpu_memory_total_bytes"), "GPU memory in all, by GPU with the job holding it.", dev, nil),
		gpuTemp:       prometheus.NewDesc(name("gpu_temperature_celsius"), "GPU die temperature, by GPU with the job holding it; absent where the GPU has no sensor.", dev, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.jobsByState, c.queueDepth, c.stepRate, c.loss, c.checkpointAge,
		c.gpuUtil, c.gpuMemUsed, c.gpuMemTotal, c.gpuTemp} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: one pass over the job records and one NVML
// query, at the scrape.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	now := c.m.cfg.Now()
	if c.m.cfg.Jobs != nil {
		c.collectJobs(ch, now)
	}
	if c.m.cfg.GPUs != nil {
		c.collectGPUs(ch)
	}
}

func (c *collector) collectJobs(ch chan<- prometheus.Metric, now time.Time) {
	all, err := c.m.cfg.Jobs.List()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.jobsByState, err)
		return
	}
	counts := countStates(all)
	for _, st := range slices.Sorted(maps.Keys(counts)) {
		ch <- prometheus.MustNewConstMetric(c.jobsByState, prometheus.GaugeValue, float64(counts[st]), st)
	}
	ch <- prometheus.MustNewConstMetric(c.queueDepth, prometheus.GaugeValue, float64(counts[jobs.StatusQueued]))
	for _, j := range all {
		if j.Status != jobs.StatusRunning {
			continue
		}
		if loss, ok := progressLoss(j.Progress); ok {
			ch <- prometheus.MustNewConstMetric(c.loss, prometheus.GaugeValue, loss, j.ID)
		}
		f := c.m.track.figures(j.ID, now)
		if f.rateOK {
			ch <- prometheus.MustNewConstMetric(c.stepRate, prometheus.GaugeValue, f.rate, j.ID)
		}
		if f.checkpointOK {
			ch <- prometheus.MustNewConstMetric(c.checkpointAge, prometheus.GaugeValue, f.checkpointAge, j.ID)
		}
	}
}

func (c *collector) collectGPUs(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), gpuQueryTimeout)
	defer cancel()
	gpus, err := c.m.cfg.GPUs.Inventory().List(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.gpuMemTotal, err)
		return
	}
	holder := holders(c.m.cfg.GPUs.Ledger().Holdings())
	for _, g := range gpus {
		if g.UUID == "" {
			continue // a device NVML could not identify has no series to belong to
		}
		labels := []string{g.UUID, strconv.Itoa(g.Index), holder[g.UUID]}
		ch <- prometheus.MustNewConstMetric(c.gpuMemUsed, prometheus.GaugeValue, float64(g.MemoryUsed), labels...)
		ch <- prometheus.MustNewConstMetric(c.gpuMemTotal, prometheus.GaugeValue, float64(g.MemoryTotal), labels...)
		if g.UtilizationGPU >= 0 {
			ch <- prometheus.MustNewConstMetric(c.gpuUtil, prometheus.GaugeValue, float64(g.UtilizationGPU)/100, labels...)
		}
		if g.Temperature >= 0 {
			ch <- prometheus.MustNewConstMetric(c.gpuTemp, prometheus.GaugeValue, float64(g.Temperature), labels...)
		}
	}
}

// jobStates are the states the jobs series always lists.
func jobStates() []string {
	return []string{jobs.StatusPendingApproval, jobs.StatusQueued, jobs.StatusStarting, jobs.StatusRunning,
		jobs.StatusCompleted, jobs.StatusFailed, jobs.StatusCancelled, jobs.StatusStopped, jobs.StatusLost}
}

// countStates counts jobs by status: every known state (0 when none), plus any other
// status a record carries.
func countStates(all []*store.Job) map[string]int {
	counts := map[string]int{}
	for _, s := range jobStates() {
		counts[s] = 0
	}
	for _, j := range all {
		counts[j.Status]++
	}
	return counts
}

// progressLoss is the loss of a job's stored progress; ok false when there is none yet.
func progressLoss(raw json.RawMessage) (float64, bool) {
	if len(raw) == 0 {
		return 0, false
	}
	var p plugins.Progress
	if json.Unmarshal(raw, &p) != nil || p.Step <= 0 {
		return 0, false
	}
	return p.Loss, true
}

// holders maps each held GPU's UUID to the job holding it (jobs joined by "," in the
// odd case of more than one, sorted, so the label is stable).
func holders(held map[string][]string) map[string]string {
	by := map[string][]string{}
	for job, uuids := range held {
		for _, u := range uuids {
			by[u] = append(by[u], job)
		}
	}
	out := make(map[string]string, len(by))
	for u, js := range by {
		slices.Sort(js)
		out[u] = strings.Join(js, ",")
	}
	return out
}
