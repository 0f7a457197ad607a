package jobs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"simpletuner/internal/procenv"
	"simpletuner/plugins"
	"simpletuner/store"
	"simpletuner/supervisor/gpu"
)

// EnvJobNonce is set in every trainer's environment so its processes can be recognised
// (and, if a launch was interrupted, found) by the daemon that launched them.
const EnvJobNonce = "SIMPLETUNER_JOB_NONCE"

// launch starts a trainer for j on the allocated devices. Called with m.mu held; the slow
// part runs in its own goroutine so the queue is not blocked by a slow start.
func (m *Manager) launch(j *store.Job, d gpu.Decision) {
	nonce := randomHex(16)
	dir := m.jobDir(j.ID)
	trainer := m.cfg.CPUTrainer
	if d.Outcome == gpu.Start && len(d.UUIDs) > 0 {
		trainer = m.cfg.GPUTrainer
	}
	now := time.Now().UTC()
	j, err := m.db.Jobs().Update(j.ID, func(j *store.Job) error {
		j.Status, j.GPUs, j.JobDir, j.Nonce, j.Trainer, j.StartedAt = StatusStarting, d.UUIDs, dir, nonce, trainer, &now
		j.Attempts++
		j.PID, j.Network, j.Addr, j.ProcStart, j.BootID = 0, "", "", 0, ""
		return nil
	})
	if err != nil {
		m.log.Error("mark job starting", "job_id", j.ID, "err", err)
		m.alloc.Ledger().Release(j.ID)
		return
	}
	m.statusChanged(j)
	if err := m.db.Sync(); err != nil {
		m.log.Warn("sync before launch", "err", err)
	}
	h := &handle{id: j.ID}
	m.running[j.ID] = h
	m.spawn(func() {
		if err := m.start(j, d, h); err != nil {
			m.log.Error("trainer launch failed", "job_id", j.ID, "err", err)
			m.finalize(j.ID, h, StatusFailed, "trainer launch failed: "+err.Error())
		}
	})
}

// start runs the launch sequence of docs/architecture.md §8.
func (m *Manager) start(j *store.Job, d gpu.Decision, h *handle) error {
	if err := os.MkdirAll(j.JobDir, 0o750); err != nil {
		return fmt.Errorf("create job dir: %w", err)
	}
	if err := os.WriteFile(filepath.Join(j.JobDir, "config.json"), j.Config, 0o600); err != nil {
		return fmt.Errorf("write resolved config: %w", err)
	}
	if _, err := os.Stat(j.Trainer); err != nil {
		return fmt.Errorf("trainer binary %s: %w", j.Trainer, err)
	}
	env := append([]string{}, m.cfg.TrainerEnv...)
	env = append(env, plugins.EnvJobDir+"="+j.JobDir, EnvJobNonce+"="+j.Nonce)
	if d.Outcome == gpu.Start {
		env = append(env, gpu.LaunchEnv(d)...)
	} else {
		// A CPU job must not pick up a GPU by accident.
		env = append(env, "CUDA_VISIBLE_DEVICES=")
	}
	m.failpoint("launch.before_spawn")
	h.watchOOM(0) // before the trainer exists: it starts in the daemon's cgroup
	client, err := plugins.Launch(plugins.LaunchConfig{Path: j.Trainer, Args: m.cfg.TrainerArgs, Env: env, Dir: j.JobDir, SocketDir: m.cfg.RunDir})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(m.ctx, 30*time.Second)
	defer cancel()
	st, err := client.Status(ctx)
	if err != nil {
		client.Shutdown()
		return fmt.Errorf("trainer status: %w", err)
	}
	att, err := client.Attachment()
	if err != nil {
		client.Shutdown()
		return err
	}
	start, _, err := procIdentity(st.PID)
	if err != nil {
		client.Shutdown()
		return fmt.Errorf("read trainer identity: %w", err)
	}
	// Identity first, then "running": a daemon that dies after this point finds the
	// trainer again; one that dies before it requeues the job.
	m.failpoint("launch.before_persist")
	_, err = m.db.Jobs().Update(j.ID, func(rec *store.Job) error {
		rec.PID, rec.Network, rec.Addr, rec.ProcStart, rec.BootID = st.PID, att.Network, att.Addr, start, m.boot
		return nil
	})
	if err != nil {
		client.Shutdown()
		return err
	}
	if err := m.db.Sync(); err != nil {
		m.log.Warn("sync after launch", "err", err)
	}
	h.cmdMu.Lock()
	h.client, h.pid, h.start = client, st.PID, start
	h.cmdMu.Unlock()
	m.failpoint("launch.before_start")
	if _, err := client.Start(ctx, plugins.StartRequest{JobID: j.ID, Config: j.Config, JobDir: j.JobDir, Nonce: j.Nonce}); err != nil {
		client.Shutdown()
		return fmt.Errorf("start job in trainer: %w", err)
	}
	running, err := m.db.Jobs().Update(j.ID, func(rec *store.Job) error {
		if rec.Status == StatusStarting {
			rec.Status = StatusRunning
		}
		return nil
	})
	if err != nil {
		return err
	}
	m.statusChanged(running)
	m.log.Info("job running", "job_id", j.ID, "pid", st.PID, "gpus", d.UUIDs, "trainer", j.Trainer)
	m.follow(j.ID, h, 0)
	return nil
}

// killGroup sends SIGKILL to a trainer's process group (its pid: trainers run setsid).
func killGroup(pid int) {
	if pid > 1 {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// failpoint lets a crash test stop the daemon at a named point of the launch sequence
// (docs/security.md row P9). Nothing happens unless Config.Failpoint is set.
func (m *Manager) failpoint(name string) {
	if m.cfg.Failpoint != nil {
		m.cfg.Failpoint(name)
	}
}

// killByNonce kills every process that carries this launch's nonce in its environment:
// a trainer a crashed daemon started but never recorded. The nonce is a per-launch secret,
// so nothing else can carry it.
func killByNonce(nonce string) int {
	if nonce == "" {
		return 0
	}
	n := 0
	for _, pid := range procenv.Find(EnvJobNonce + "=" + nonce) {
		if syscall.Kill(pid, syscall.SIGKILL) == nil {
			n++
		}
	}
	return n
}
