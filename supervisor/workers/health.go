package workers

import (
	"context"
	"fmt"
	"time"

	"simpletuner/plugins/workerproto"
	"simpletuner/supervisor/jobs"
)

// Run checks the workers' health every Config.CheckEvery until ctx ends.
func (r *Registry) Run(ctx context.Context) {
	t := time.NewTicker(r.cfg.CheckEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.Check()
		}
	}
}

// Check runs the health check once (decideHealth on every worker, then taskLost on
// every task): silent workers go offline, workers that never came or stayed away are
// removed, and the jobs of lost workers end with a lost exit, which the job manager
// requeues to resume from their latest checkpoint.
func (r *Registry) Check() {
	now := r.now().UTC()
	lim := healthLimits{heartbeat: r.cfg.HeartbeatTimeout, connecting: r.cfg.ConnectingTimeout, offlineEphemeral: r.cfg.OfflineEphemeralTTL}
	r.mu.Lock()
	for id, w := range r.workers {
		switch decideHealth(w, now, lim) {
		case markOffline:
			w.Status, w.OfflineSince = workerproto.StatusOffline, &now
			r.closeStreamLocked(id)
			delete(r.reserved, id)
			r.logSave(w)
			r.log.Warn("worker offline: no heartbeat", "worker_id", id, "worker", w.Name, "timeout", r.cfg.HeartbeatTimeout)
		case remove:
			if err := r.db.Workers().Delete(id); err != nil {
				r.log.Error("remove worker", "worker_id", id, "err", err)
				continue
			}
			delete(r.workers, id)
			delete(r.reserved, id)
			r.closeStreamLocked(id)
			delete(r.links, id)
			r.log.Info("worker removed", "worker_id", id, "worker", w.Name, "status", w.Status, "worker_type", w.Type)
		}
	}
	kick := false
	for _, t := range r.tasks {
		if t.ended() {
			continue
		}
		w := r.workers[t.workerID]
		lost, silent := taskLost(w, t.since, now, r.cfg.HeartbeatTimeout)
		if !lost {
			continue
		}
		msg := fmt.Sprintf("worker %s is no longer registered", t.workerID)
		if w != nil {
			msg = fmt.Sprintf("worker %s went offline: no heartbeat for %s", w.Name, silent.Round(time.Second))
		}
		r.log.Warn("worker job lost", "job_id", t.jobID, "worker_id", t.workerID, "cause", msg)
		kick = r.finishLocked(t, jobs.Exit{Retry: true, Lost: true, Error: msg}) || kick
	}
	r.mu.Unlock()
	if kick {
		r.kick()
	}
}
