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
const EnvJobNonce = plugins.EnvJobNonce

// Launch runs the launch sequence of docs/architecture.md §8 for j on the devices p
// holds: the nonce is saved in the job's handle, the trainer is started with setsid, its
// identity {socket, pid, process start time, boot id} is saved, and only then is the job
// started in it and reported running. It returns once the job runs; the task follows it.
// A launch that fails releases the job's GPUs and leaves no trainer behind.
func (l *Local) Launch(ctx context.Context, j *store.Job, p Placement, r Reporter) (Task, error) {
	t, err := l.launch(ctx, j, p, r)
	if err != nil {
		l.release(j.ID)
		return nil, err
	}
	return t, nil
}

func (l *Local) launch(ctx context.Context, j *store.Job, p Placement, r Reporter) (*localTask, error) {
	d := p.GPU
	proc := localProc{Nonce: randomHex(16), Trainer: l.cfg.CPUTrainer}
	if d.Outcome == gpu.Start && len(d.UUIDs) > 0 {
		proc.Trainer = l.cfg.GPUTrainer
	}
	dir := l.jobDir(j)
	// The nonce first: a daemon that dies from here on finds (and ends) the trainer by it.
	if err := l.saveHandle(r, j.ID, proc); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("create job dir: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), j.Config, 0o600); err != nil {
		return nil, fmt.Errorf("write resolved config: %w", err)
	}
	if _, err := os.Stat(proc.Trainer); err != nil {
		return nil, fmt.Errorf("trainer binary %s: %w", proc.Trainer, err)
	}
	env := append([]string{}, l.cfg.TrainerEnv...)
	env = append(env, plugins.EnvJobDir+"="+dir, EnvJobNonce+"="+proc.Nonce, fmt.Sprintf("%s=%d", plugins.EnvSeqBase, j.LastSeq))
	switch {
	case d.Outcome == gpu.Start:
		env = append(env, gpu.LaunchEnv(d)...)
	case !l.cfg.KeepGPUEnv:
		// A CPU job must not pick up a GPU by accident.
		env = append(env, "CUDA_VISIBLE_DEVICES=")
	}
	t := l.newTask(j, dir, proc.Nonce, r)
	l.failpoint("launch.before_spawn")
	t.watchOOM(0) // before the trainer exists: it starts in the daemon's cgroup
	client, err := plugins.Launch(plugins.LaunchConfig{Path: proc.Trainer, Args: l.cfg.TrainerArgs, Env: env, Dir: dir, SocketDir: l.cfg.RunDir})
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	st, err := client.Status(sctx)
	if err != nil {
		client.Shutdown()
		return nil, fmt.Errorf("trainer status: %w", err)
	}
	att, err := client.Attachment()
	if err != nil {
		client.Shutdown()
		return nil, err
	}
	start, _, err := procIdentity(st.PID)
	if err != nil {
		client.Shutdown()
		return nil, fmt.Errorf("read trainer identity: %w", err)
	}
	// Identity first, then "running": a daemon that dies after this point finds the
	// trainer again; one that dies before it finds it through bootstrap.json or ends it
	// by its nonce, and requeues the job.
	l.failpoint("launch.before_persist")
	proc.PID, proc.ProcStart, proc.BootID, proc.Network, proc.Addr = st.PID, start, l.boot, att.Network, att.Addr
	if err := l.saveHandle(r, j.ID, proc); err != nil {
		client.Shutdown()
		return nil, err
	}
	t.attach(client, proc)
	l.failpoint("launch.before_start")
	if _, err := client.Start(sctx, plugins.StartRequest{JobID: j.ID, Config: j.Config, JobDir: dir, Nonce: proc.Nonce}); err != nil {
		client.Shutdown()
		return nil, fmt.Errorf("start job in trainer: %w", err)
	}
	r.Running(j.ID)
	l.log.Info("job running", "job_id", j.ID, "pid", st.PID, "gpus", d.UUIDs, "trainer", proc.Trainer)
	t.follow(j.LastSeq)
	return t, nil
}

// saveHandle stores proc as the job's handle through the reporter (which syncs it).
func (l *Local) saveHandle(r Reporter, id string, proc localProc) error {
	h, err := NewHandle(KindLocal, localHandleVersion, proc)
	if err != nil {
		return err
	}
	if err := r.SaveHandle(id, h); err != nil {
		return fmt.Errorf("save the trainer's handle: %w", err)
	}
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
// (docs/security.md row P9). Nothing happens unless LocalConfig.Failpoint is set.
func (l *Local) failpoint(name string) {
	if l.cfg.Failpoint != nil {
		l.cfg.Failpoint(name)
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
