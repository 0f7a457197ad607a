package jobs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"simpletuner/internal/procenv"
	"simpletuner/plugins"
	"simpletuner/store"
)

// Recover takes back a job a previous daemon launched on this machine, from its handle
// (or, for a record written before the executor seam, its process fields): reattach to
// a trainer that is provably ours, finish from the exit record, requeue an interrupted
// launch (ErrRequeue), or report the job lost. A process whose identity does not match
// is never reattached nor signalled.
func (l *Local) Recover(ctx context.Context, j *store.Job, r Reporter) (Task, error) {
	p, err := localProcOf(j)
	if err != nil {
		return nil, err
	}
	dir := l.jobDir(j)
	if p.PID == 0 && j.Status == StatusStarting {
		p = l.fromBootstrap(j, dir, p, r)
	}
	proc := classifyProc(p.PID, p.ProcStart, p.BootID, l.boot)
	var exit *plugins.ExitRecord
	if j.JobDir != "" {
		if rec, err := plugins.ReadExitRecord(j.JobDir); err == nil && rec.Nonce == p.Nonce {
			exit = &rec
		} else if err != nil && !errors.Is(err, os.ErrNotExist) {
			l.log.Warn("unreadable exit record", "job_id", j.ID, "err", err)
		}
	}
	act := decideReconcile(j.Status, p.PID > 0, proc, exit)
	l.log.Info("reconcile", "job_id", j.ID, "status", j.Status, "pid", p.PID, "process", proc.String(), "action", act.String())
	t := l.newTask(j, dir, p.Nonce, r)
	t.proc = p
	switch act {
	case actReattach:
		return l.reattach(ctx, j, t)
	case actFinishExit:
		t.ingestSpool()
		t.end(Exit{State: exit.State, Error: exit.Error})
		return t, nil
	case actRequeue:
		// The daemon died mid-launch before recording the trainer: a trainer may exist
		// that nobody can reach. It carries the launch nonce; end it before relaunching.
		if n := killByNonce(p.Nonce); n > 0 {
			l.log.Warn("killed the unrecorded trainer of an interrupted launch", "job_id", j.ID, "processes", n)
		}
		return nil, ErrRequeue
	case actLost:
		t.ingestSpool()
		t.end(Exit{State: StatusLost, Error: "trainer process is gone and left no exit record (host reboot or killed while the daemon was down)"})
		return t, nil
	}
	return nil, fmt.Errorf("job %s is %s: nothing to recover", j.ID, j.Status)
}

// reattach takes control of a trainer a previous daemon launched. The process identity
// already matched; the nonce over Status proves the socket leads to it. If the socket is
// unreachable the job stays running and is polled until the process ends (never failed
// while its process lives).
func (l *Local) reattach(ctx context.Context, j *store.Job, t *localTask) (Task, error) {
	if l.alloc != nil {
		if err := l.alloc.Ledger().Adopt(j.ID, j.GPUs); err != nil {
			l.log.Warn("re-take GPUs", "job_id", j.ID, "err", err)
		}
	}
	p := t.proc
	t.watchOOM(p.PID) // OOM kills before the restart are not counted
	client, err := plugins.Reattach(plugins.Attachment{Network: p.Network, Addr: p.Addr, PID: p.PID}, nil)
	if err == nil {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		st, serr := client.Status(sctx)
		cancel()
		switch {
		case serr != nil:
			err = serr
		case st.State == plugins.StateIdle && st.JobID == "" && carriesNonce(p.PID, p.Nonce):
			// The trainer of this very launch (it carries the launch's nonce) that never
			// got its Start: the previous daemon died mid-launch. The launch goes on.
			if _, serr := client.Start(ctx, plugins.StartRequest{JobID: j.ID, Config: j.Config, JobDir: t.jobDir, Nonce: p.Nonce}); serr != nil {
				t.attach(client, p)
				t.letGo()
				l.log.Warn("could not start the job in the trainer of an interrupted launch; requeued", "job_id", j.ID, "err", serr)
				return nil, ErrRequeue
			}
			t.attach(client, p)
			t.r.Running(j.ID)
			l.log.Info("interrupted launch completed in its trainer", "job_id", j.ID, "pid", p.PID)
			t.follow(j.LastSeq)
			return t, nil
		case st.State == plugins.StateIdle && st.JobID == "":
			// Our process (its identity matched) that never got its Start, and nothing
			// proves which launch it belongs to. Kill it and launch the job again.
			t.attach(client, p)
			t.letGo()
			l.log.Warn("trainer was launched but never started its job; requeued", "job_id", j.ID, "pid", p.PID)
			return nil, ErrRequeue
		case st.Nonce != p.Nonce || st.JobID != j.ID:
			// Something answers on that socket, but it is not our trainer.
			l.log.Error("reattach: identity mismatch; not touching it", "job_id", j.ID, "pid", p.PID)
			client = nil
			err = errors.New("identity mismatch")
		}
	}
	if err != nil {
		l.log.Warn("reattach failed; following the process only", "job_id", j.ID, "err", err)
	} else {
		t.attach(client, p)
		l.log.Info("reattached", "job_id", j.ID, "pid", p.PID, "resume_after_seq", j.LastSeq)
	}
	t.follow(j.LastSeq)
	return t, nil
}

// fromBootstrap completes the identity of a trainer whose launch was interrupted before
// the daemon recorded it, from the bootstrap file the trainer published: only when the
// file's nonce is the launch's, the process carries that nonce and its start time
// matches. The identity found is saved in the job's handle; p is returned unchanged
// otherwise (the launch is then requeued and the trainer killed by its nonce).
func (l *Local) fromBootstrap(j *store.Job, dir string, p localProc, r Reporter) localProc {
	if p.Nonce == "" {
		return p
	}
	b, err := plugins.ReadBootstrap(dir)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			l.log.Warn("unreadable bootstrap file", "job_id", j.ID, "err", err)
		}
		return p
	}
	if b.Nonce != p.Nonce || !carriesNonce(b.PID, p.Nonce) {
		return p
	}
	start, _, err := procIdentity(b.PID)
	if err != nil || (b.ProcStart != 0 && b.ProcStart != start) {
		return p
	}
	p.PID, p.ProcStart, p.BootID, p.Network, p.Addr = b.PID, start, l.boot, b.Network, b.Addr
	if err := l.saveHandle(r, j.ID, p); err != nil {
		l.log.Warn("save the handle found in the bootstrap file", "job_id", j.ID, "err", err)
	}
	l.log.Info("found the trainer of an interrupted launch through its bootstrap file", "job_id", j.ID, "pid", b.PID)
	return p
}

// carriesNonce reports whether process pid has the launch nonce in its environment.
func carriesNonce(pid int, nonce string) bool {
	if pid <= 0 || nonce == "" {
		return false
	}
	for _, q := range procenv.Find(EnvJobNonce + "=" + nonce) {
		if q == pid {
			return true
		}
	}
	return false
}
