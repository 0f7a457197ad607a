// Package foreground runs one training job in the foreground, without a server: the
// `simpletuner train` command. It launches the trainer and starts the job through the
// daemon's own local executor (supervisor/jobs.Local), renders the event stream for a
// person (render.go: on a terminal one
// redrawn progress line with step, loss, it/s and ETA; elsewhere plain lines at a bounded
// rate; each message once), and turns Ctrl-C into "save a checkpoint and stop" (a second
// Ctrl-C cancels).
package foreground

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"simpletuner/plugins"
	"simpletuner/store"
	"simpletuner/supervisor/gpu"
	"simpletuner/supervisor/jobs"
)

// Config says where the trainer and the job's files are.
type Config struct {
	Trainer string   // trainer binary
	JobDir  string   // created if missing
	RunDir  string   // plugin socket directory
	Env     []string // the trainer's whole environment
}

// Result is how the job ended.
type Result struct {
	JobID string
	State string
	Error string
}

// ExitCode maps a result to the command's exit status: 0 completed or stopped, 130
// cancelled (as for an interrupted command), 1 otherwise.
func (r Result) ExitCode() int {
	switch r.State {
	case plugins.StateCompleted, plugins.StateStopped:
		return 0
	case plugins.StateCancelled:
		return 130
	}
	return 1
}

// Run trains config (resolved, "--flag" keys) until the job ends, through the daemon's
// own local executor (jobs.Local: the same launch sequence, event following and crash
// diagnosis). Each value received on interrupts escalates: first stop (checkpoint, then
// end), then cancel, then kill.
func Run(ctx context.Context, cfg Config, jobID string, config json.RawMessage, out io.Writer, interrupts <-chan os.Signal) (Result, error) {
	res := Result{JobID: jobID}
	for _, d := range []string{cfg.JobDir, cfg.RunDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return res, err
		}
	}
	local := jobs.NewLocal(jobs.LocalConfig{RunDir: cfg.RunDir, CPUTrainer: cfg.Trainer, GPUTrainer: cfg.Trainer, TrainerEnv: cfg.Env,
		KeepGPUEnv: true}, nil, slog.New(slog.DiscardHandler))
	defer local.Close()
	p := newRenderer(out, terminalWidth(out))
	rep := &reporter{p: p, res: &res}
	// This machine, no allocator: the trainer sees the GPUs the environment shows it.
	place := jobs.Placement{Outcome: jobs.PlaceStart, GPU: gpu.Decision{Outcome: gpu.StartCPU}}
	task, err := local.Launch(ctx, &store.Job{ID: jobID, Config: config, JobDir: cfg.JobDir}, place, rep)
	if err != nil {
		return res, fmt.Errorf("start trainer %s: %w", cfg.Trainer, err)
	}
	if t, ok := task.(interface {
		Info(context.Context) (plugins.Info, error)
	}); ok {
		if info, err := t.Info(ctx); err == nil {
			p.say(fmt.Sprintf("Trainer %s (%s backend); log: %s", info.Version, info.Backend, filepath.Join(cfg.JobDir, plugins.LogFile)))
		}
	}
	done := make(chan jobs.Exit, 1)
	waitErr := make(chan error, 1)
	go func() {
		exit, err := task.Wait(ctx)
		if err != nil {
			waitErr <- err
			return
		}
		done <- exit
	}()
	presses := 0
	for {
		select {
		case err := <-waitErr:
			p.finish()
			return res, err
		case exit := <-done:
			p.finish()
			rep.mu.Lock()
			defer rep.mu.Unlock()
			if res.State == "" || exit.State != "" {
				res.State, res.Error = exit.State, exit.Error
			}
			if res.State == "" { // a crash: no final status, only its cause
				res.State, res.Error = plugins.StateFailed, exit.Error
			}
			return res, nil
		case <-interrupts:
			presses++
			switch presses {
			case 1:
				p.say("Interrupted: saving a checkpoint, then stopping (Ctrl-C again to cancel without saving)")
				task.Command(ctx, plugins.CommandStop)
			case 2:
				p.say("Cancelling without saving (Ctrl-C again to kill the trainer)")
				task.Command(ctx, plugins.CommandCancel)
			default:
				p.finish()
				fmt.Fprintln(out, "Killing the trainer")
				if k, ok := task.(interface{ Kill() }); ok {
					k.Kill()
				}
				return Result{JobID: jobID, State: plugins.StateCancelled, Error: "killed"}, nil
			}
		}
	}
}

// reporter renders the job's events as the local executor delivers them. mu guards res
// and last.
type reporter struct {
	p    *renderer
	mu   sync.Mutex
	res  *Result
	last uint64 // the last event rendered: a replay from the spool is not shown twice
}

// SaveHandle keeps nothing: a foreground job is not recovered after the command ends.
func (r *reporter) SaveHandle(string, jobs.Handle) error { return nil }

// Running needs no record: the progress line shows that the job runs.
func (r *reporter) Running(string) {}

// Note has no place to show outside the progress line.
func (r *reporter) Note(string, string) {}

// Events renders the events after the last one rendered.
func (r *reporter) Events(_ string, evs []plugins.Event) (uint64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range evs {
		if e.Seq <= r.last {
			continue
		}
		r.last = e.Seq
		r.p.event(e, r.res)
	}
	return r.last, nil
}

// progressLine renders "step 120/500 [#####.....] 24% loss 0.1234 3.1 it/s ETA 2m03s".
// elapsed and steps measure the rate since the first progress event seen.
func progressLine(pr plugins.Progress, elapsed time.Duration, steps int64) string {
	const width = 20
	frac := 0.0
	if pr.TotalSteps > 0 {
		frac = min(float64(pr.Step)/float64(pr.TotalSteps), 1)
	}
	filled := int(frac * width)
	bar := strings.Repeat("#", filled) + strings.Repeat(".", width-filled)
	rate, eta := "  - it/s", "ETA -"
	if elapsed > 0 && steps > 0 {
		r := float64(steps) / elapsed.Seconds()
		rate = fmt.Sprintf("%.2f it/s", r)
		if pr.TotalSteps > pr.Step {
			eta = "ETA " + (time.Duration(float64(pr.TotalSteps-pr.Step)/r) * time.Second).Round(time.Second).String()
		}
	}
	return fmt.Sprintf("step %d/%d [%s] %3.0f%% loss %.4f lr %.3g %s %s   ", pr.Step, pr.TotalSteps, bar, frac*100, pr.Loss, pr.LearningRate, rate, eta)
}
