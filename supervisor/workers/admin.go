package workers

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"simpletuner/plugins/workerproto"
	"simpletuner/store"
	"simpletuner/supervisor/jobs"
)

// CreateRequest is POST /api/admin/workers.
type CreateRequest struct {
	Name string `json:"name"`
	// WorkerType is persistent (default) or ephemeral.
	WorkerType string            `json:"worker_type"`
	Labels     map[string]string `json:"labels"`
}

// Credentials answer a creation or a token rotation: the token is shown this once.
type Credentials struct {
	WorkerID          string `json:"worker_id"`
	Token             string `json:"token"`
	ConnectionCommand string `json:"connection_command"`
}

// View is a worker as GET /api/admin/workers shows it: SimpleTuner's fields, plus flat
// gpu_name and gpu_count (the tutorial reads those) and bound_job_id.
type View struct {
	WorkerID      string              `json:"worker_id"`
	Name          string              `json:"name"`
	WorkerType    string              `json:"worker_type"`
	Status        string              `json:"status"`
	GPUInfo       workerproto.GPUInfo `json:"gpu_info"`
	GPUName       string              `json:"gpu_name"`
	GPUCount      int                 `json:"gpu_count"`
	Provider      *string             `json:"provider"`
	Labels        map[string]string   `json:"labels"`
	CurrentJobID  *string             `json:"current_job_id"`
	LastHeartbeat *time.Time          `json:"last_heartbeat"`
	ConnectedAt   *time.Time          `json:"connected_at"`
	CreatedAt     time.Time           `json:"created_at"`
	Connected     bool                `json:"connected"`
	UptimeSeconds *float64            `json:"uptime_seconds"`
	// BoundJobID is the job a Slurm-started worker is bound to.
	BoundJobID *string `json:"bound_job_id,omitempty"`
}

// ConnectionCommand is the command that starts a worker with this token against base
// (the orchestrator's URL: Config.PublicURL when set, else what the caller passes).
func (r *Registry) ConnectionCommand(base, token string) string {
	if r.cfg.PublicURL != "" {
		base = r.cfg.PublicURL
	}
	return "simpletuner worker --orchestrator-url " + strings.TrimRight(base, "/") + " --worker-token " + token
}

// Create adds a worker (status connecting) and returns its one-time token.
func (r *Registry) Create(req CreateRequest) (*store.Worker, string, error) {
	if err := validateName(req.Name); err != nil {
		return nil, "", fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	switch req.WorkerType {
	case "":
		req.WorkerType = TypePersistent
	case TypePersistent, TypeEphemeral:
	default:
		return nil, "", fmt.Errorf("%w: unknown worker_type %q: use %s or %s", ErrInvalid, req.WorkerType, TypePersistent, TypeEphemeral)
	}
	if err := validateWorkerLabels(req.Labels); err != nil {
		return nil, "", fmt.Errorf("%w: labels: %w", ErrInvalid, err)
	}
	token, hash := newToken()
	w := &store.Worker{ID: newWorkerID(), Name: req.Name, Type: req.WorkerType, Labels: req.Labels,
		Status: workerproto.StatusConnecting, CreatedAt: r.now().UTC(), TokenHash: hash}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, o := range r.workers {
		if o.Name == req.Name {
			return nil, "", fmt.Errorf("%w: a worker named %q exists (%s); delete it or pick another name", ErrExists, req.Name, o.ID)
		}
	}
	if err := r.saveLocked(w); err != nil {
		return nil, "", err
	}
	r.workers[w.ID] = w
	r.log.Info("worker created", "worker_id", w.ID, "worker", w.Name, "worker_type", w.Type)
	c := *w
	return &c, token, nil
}

// ParseStatusFilter checks a status_filter value (case does not matter); "" is none.
func ParseStatusFilter(s string) (string, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" || slices.Contains(statuses, s) {
		return s, nil
	}
	return "", fmt.Errorf("%w: status_filter must be one of %s, not %q", ErrInvalid, statusList(), s)
}

// List returns the workers (only those in status, when set), oldest first.
func (r *Registry) List(status string) []View {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	out := make([]View, 0, len(r.workers))
	for _, w := range r.workers {
		if status != "" && w.Status != status {
			continue
		}
		out = append(out, r.viewLocked(w, now))
	}
	slices.SortFunc(out, func(a, b View) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.WorkerID, b.WorkerID)
	})
	return out
}

// viewLocked renders one worker. Callers hold r.mu.
func (r *Registry) viewLocked(w *store.Worker, now time.Time) View {
	v := View{WorkerID: w.ID, Name: w.Name, WorkerType: w.Type, Status: w.Status,
		GPUInfo: w.GPU,
		GPUName: w.GPU.Name, GPUCount: w.GPU.Count, Provider: w.Provider, Labels: w.Labels,
		LastHeartbeat: w.LastSeen, ConnectedAt: w.ConnectedAt, CreatedAt: w.CreatedAt, Connected: r.connectedLocked(w.ID)}
	if v.Labels == nil {
		v.Labels = map[string]string{}
	}
	if w.CurrentJobID != "" {
		id := w.CurrentJobID
		v.CurrentJobID = &id
	}
	if w.BoundJob != "" {
		id := w.BoundJob
		v.BoundJobID = &id
	}
	if v.Connected && w.ConnectedAt != nil {
		up := now.Sub(*w.ConnectedAt).Seconds()
		v.UptimeSeconds = &up
	}
	return v
}

// Delete removes a worker. One that runs a job is refused unless force, when its job is
// lost (and requeued). The worker is told to shut down, and its token stops working.
func (r *Registry) Delete(id string, force bool) error {
	r.mu.Lock()
	w := r.workers[id]
	if w == nil {
		r.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if w.BoundJob != "" && !force {
		r.mu.Unlock()
		return fmt.Errorf("%w: worker %s is bound to Slurm job %s; cancel that job instead, or pass force=true", ErrBusy, w.Name, w.BoundJob)
	}
	t := r.assignedLocked(id)
	if t != nil && !force {
		r.mu.Unlock()
		return fmt.Errorf("%w: worker %s is running job %s; drain it first, or pass force=true", ErrBusy, w.Name, t.jobID)
	}
	if err := r.db.Workers().Delete(id); err != nil {
		r.mu.Unlock()
		return fmt.Errorf("delete worker %s: %w", id, err)
	}
	delete(r.workers, id)
	delete(r.reserved, id)
	kick := false
	if t != nil {
		kick = r.finishLocked(t, jobs.Exit{Retry: true, Lost: true, Error: fmt.Sprintf("worker %s was deleted", w.Name)})
	}
	r.pushLocked(id, workerproto.EventShutdown, workerproto.Notice{Type: workerproto.EventShutdown,
		Data: map[string]string{"reason": "worker_deleted"}}, "")
	if l := r.links[id]; l != nil && l.stream != nil {
		l.stream.flushThenClose = true
		select {
		case l.wake <- struct{}{}:
		default:
		}
	} else {
		delete(r.links, id)
	}
	r.mu.Unlock()
	r.log.Info("worker deleted", "worker_id", id, "worker", w.Name, "force", force)
	if kick {
		r.kick()
	}
	return nil
}

// Drain stops giving a worker new jobs; it finishes the one it runs. The worker hears
// "drain" on its stream.
func (r *Registry) Drain(id string) (*store.Worker, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	w := r.workers[id]
	if w == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	prev := w.Status
	w.Status = workerproto.StatusDraining
	if err := r.saveLocked(w); err != nil {
		w.Status = prev
		return nil, err
	}
	r.pushLocked(id, workerproto.EventDrain, workerproto.Notice{Type: workerproto.EventDrain, Data: map[string]string{}}, "")
	r.log.Info("worker draining", "worker_id", id, "worker", w.Name)
	c := *w
	return &c, nil
}

// RotateToken gives a worker a new token; the old one stops working at once and the
// stream opened with it ends.
func (r *Registry) RotateToken(id string) (string, error) {
	token, hash := newToken()
	r.mu.Lock()
	defer r.mu.Unlock()
	w := r.workers[id]
	if w == nil {
		return "", fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	prev := w.TokenHash
	w.TokenHash = hash
	if err := r.saveLocked(w); err != nil {
		w.TokenHash = prev
		return "", err
	}
	r.closeStreamLocked(id)
	r.log.Info("worker token rotated", "worker_id", id, "worker", w.Name)
	return token, nil
}
