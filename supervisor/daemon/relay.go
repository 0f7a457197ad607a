package daemon

import (
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"simpletuner/plugins"
	"simpletuner/store"
	"simpletuner/supervisor/events"
	"simpletuner/supervisor/hookrunner"
	"simpletuner/supervisor/jobs"
	"simpletuner/supervisor/webhooks"
)

// relay is the job manager's event sink: it stores and publishes through the hub, then
// hands each job's events to its webhooks and its hook scripts. Webhooks and hooks come
// from the job's resolved configuration, so they are set up on the first event or status
// of a job this daemon sees (after a restart too).
type relay struct {
	hub   *events.Hub
	hooks *hookrunner.Runner
	wh    *webhooks.Dispatcher
	db    *store.DB
	log   *slog.Logger
	pol   webhooks.Policy
	// read reads a --webhook_config file (configs.Service.ReadFile: confined, capped,
	// never blocking, so holding mu while it runs is safe).
	read func(path string) ([]byte, error)

	// mu guards configs: each known job's resolved configuration, and whether its
	// webhooks are registered.
	mu      sync.Mutex
	configs map[string]*jobHooks
}

type jobHooks struct {
	config     map[string]any
	registered bool
}

var _ jobs.EventSink = (*relay)(nil)

func newRelay(hub *events.Hub, hooks *hookrunner.Runner, wh *webhooks.Dispatcher, db *store.DB, pol webhooks.Policy, read func(string) ([]byte, error), log *slog.Logger) *relay {
	return &relay{hub: hub, hooks: hooks, wh: wh, db: db, pol: pol, read: read, log: log, configs: map[string]*jobHooks{}}
}

// Append implements jobs.EventSink.
func (r *relay) Append(jobID string, evs []plugins.Event) error {
	stored, err := r.hub.Append(jobID, evs)
	if err != nil {
		return err
	}
	jh := r.job(jobID, nil)
	if jh == nil {
		return nil
	}
	// Hooks read the trainer's own checkpoint paths and keep their own exactly-once
	// record; webhooks are clients like streams, so they get what streams get: the
	// events just stored, sanitised.
	r.hooks.HandleEvents(jobID, jh.config, evs)
	for _, e := range stored {
		r.wh.Publish(jobID, webhooks.Event{Seq: e.Seq, JobID: jobID, Type: e.Type, Severity: e.Severity,
			Timestamp: e.Time, Title: e.Title, Message: e.Message, Data: e.Data})
	}
	return nil
}

// JobStatus implements jobs.EventSink.
func (r *relay) JobStatus(j *store.Job) {
	r.hub.JobStatus(j)
	jh := r.job(j.ID, j)
	if jh == nil {
		return
	}
	data, _ := json.Marshal(map[string]any{"status": j.Status, "error": j.Error})
	sev := "info"
	if j.Status == jobs.StatusFailed || j.Status == jobs.StatusLost {
		sev = "error"
	}
	r.wh.Publish(j.ID, webhooks.Event{JobID: j.ID, Type: plugins.EventJobStatus, Severity: sev, Timestamp: time.Now().UTC(),
		Title: "Job " + j.Status, Message: j.Error, Data: data})
	if jobs.Terminal(j.Status) {
		r.mu.Lock()
		delete(r.configs, j.ID)
		r.mu.Unlock()
		r.wh.Unregister(j.ID) // drains what is queued, then forgets the job
	}
}

// job returns a job's hooks, loading its configuration and registering its webhooks the
// first time.
func (r *relay) job(id string, j *store.Job) *jobHooks {
	r.mu.Lock()
	defer r.mu.Unlock()
	if jh, ok := r.configs[id]; ok {
		return jh
	}
	if j == nil {
		var err error
		if j, err = r.db.Jobs().Get(id); err != nil {
			return nil
		}
	}
	var cfg map[string]any
	if json.Unmarshal(j.Config, &cfg) != nil {
		return nil
	}
	jh := &jobHooks{config: cfg}
	r.configs[id] = jh
	if raw, _ := cfg["--webhook_config"].(string); raw != "" && !jobs.Terminal(j.Status) {
		cfgs, err := webhooks.Load(raw, r.read)
		if err == nil {
			err = webhooks.Validate(cfgs, r.pol)
		}
		interval := time.Duration(0)
		if v, ok := cfg["--webhook_reporting_interval"].(float64); ok && v > 0 {
			interval = time.Duration(v * float64(time.Second))
		}
		if err == nil {
			err = r.wh.Register(id, cfgs, interval)
		}
		if err != nil {
			r.log.Warn("webhooks not registered", "job_id", id, "err", err)
		} else {
			jh.registered = true
		}
	}
	return jh
}
