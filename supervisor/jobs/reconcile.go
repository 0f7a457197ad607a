package jobs

import (
	"context"
	"errors"
	"os"
	"time"

	"simpletuner/plugins"
	"simpletuner/store"
)

// Reconcile brings every non-terminal job up to date after a (re)start: reattach, finish
// from the exit record, requeue an interrupted launch, or mark lost. It must run before
// the manager admits new work; each step is bounded so one hung trainer cannot stall it.
func (m *Manager) Reconcile(ctx context.Context) error {
	defer close(m.ready)
	all, err := m.db.Jobs().List()
	if err != nil {
		return err
	}
	for _, j := range all {
		if Terminal(j.Status) || j.Status == StatusQueued || j.Status == StatusPendingApproval {
			continue
		}
		proc := classifyProc(j.PID, j.ProcStart, j.BootID, m.boot)
		var exit *plugins.ExitRecord
		if j.JobDir != "" {
			if rec, err := plugins.ReadExitRecord(j.JobDir); err == nil && rec.Nonce == j.Nonce {
				exit = &rec
			} else if err != nil && !errors.Is(err, os.ErrNotExist) {
				m.log.Warn("unreadable exit record", "job_id", j.ID, "err", err)
			}
		}
		act := decideReconcile(j.Status, j.PID > 0, proc, exit)
		m.log.Info("reconcile", "job_id", j.ID, "status", j.Status, "pid", j.PID, "process", proc.String(), "action", act.String())
		switch act {
		case actReattach:
			m.reattach(ctx, j)
		case actFinishExit:
			m.ingestSpool(j)
			m.finalize(j.ID, nil, exit.State, exit.Error)
		case actRequeue:
			// The daemon died mid-launch before recording the trainer: a trainer may exist
			// that nobody can reach. It carries the launch nonce; end it before relaunching.
			if n := killByNonce(j.Nonce); n > 0 {
				m.log.Warn("killed the unrecorded trainer of an interrupted launch", "job_id", j.ID, "processes", n)
			}
			rec, err := m.db.Jobs().Update(j.ID, func(rec *store.Job) error {
				rec.Status, rec.GPUs = StatusQueued, nil
				return nil
			})
			if err != nil {
				return err
			}
			m.statusChanged(rec)
		case actLost:
			m.ingestSpool(j)
			m.finalize(j.ID, nil, StatusLost, "trainer process is gone and left no exit record (host reboot or killed while the daemon was down)")
		}
	}
	m.kick()
	return nil
}

// reattach takes control of a trainer a previous daemon launched. The process identity
// already matched; the nonce over Status proves the socket leads to it. If the socket is
// unreachable the job stays running and is polled until the process ends (never failed
// while its process lives).
func (m *Manager) reattach(ctx context.Context, j *store.Job) {
	if err := m.alloc.Ledger().Adopt(j.ID, j.GPUs); err != nil {
		m.log.Warn("re-take GPUs", "job_id", j.ID, "err", err)
	}
	h := &handle{id: j.ID, pid: j.PID, start: j.ProcStart}
	h.watchOOM(j.PID) // OOM kills before the restart are not counted
	m.mu.Lock()
	m.running[j.ID] = h
	m.mu.Unlock()
	client, err := plugins.Reattach(plugins.Attachment{Network: j.Network, Addr: j.Addr, PID: j.PID}, nil)
	if err == nil {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		st, serr := client.Status(sctx)
		cancel()
		switch {
		case serr != nil:
			err = serr
		case st.State == plugins.StateIdle && st.JobID == "":
			// Our process (its identity matched) that never got its Start: the previous
			// daemon died mid-launch. Kill it and launch the job again.
			h.client = client
			m.letGo(j.ID, h)
			rec, err := m.db.Jobs().Update(j.ID, func(rec *store.Job) error {
				rec.Status, rec.GPUs, rec.PID = StatusQueued, nil, 0
				return nil
			})
			if err != nil {
				m.log.Error("requeue interrupted launch", "job_id", j.ID, "err", err)
			} else {
				m.statusChanged(rec)
			}
			m.log.Warn("trainer was launched but never started its job; requeued", "job_id", j.ID, "pid", j.PID)
			return
		case st.Nonce != j.Nonce || st.JobID != j.ID:
			// Something answers on that socket, but it is not our trainer.
			m.log.Error("reattach: identity mismatch; not touching it", "job_id", j.ID, "pid", j.PID)
			client = nil
			err = errors.New("identity mismatch")
		}
	}
	if err != nil {
		m.log.Warn("reattach failed; following the process only", "job_id", j.ID, "err", err)
	} else {
		h.client = client
		m.log.Info("reattached", "job_id", j.ID, "pid", j.PID, "resume_after_seq", j.LastSeq)
	}
	m.follow(j.ID, h, j.LastSeq)
}
