// Package foreground runs one training job in the foreground, without a server: the
// `simpletuner train` command. It launches the trainer plugin like the daemon does,
// starts the job, renders the event stream for a person (render.go: on a terminal one
// redrawn progress line with step, loss, it/s and ETA; elsewhere plain lines at a bounded
// rate; each message once), and turns Ctrl-C into "save a checkpoint and stop" (a second
// Ctrl-C cancels).
package foreground

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"simpletuner/plugins"
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

// Run trains config (resolved, "--flag" keys) until the job ends. Each value received on
// interrupts escalates: first stop (checkpoint, then end), then cancel, then kill.
func Run(ctx context.Context, cfg Config, jobID string, config json.RawMessage, out io.Writer, interrupts <-chan os.Signal) (Result, error) {
	res := Result{JobID: jobID}
	for _, d := range []string{cfg.JobDir, cfg.RunDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return res, err
		}
	}
	if err := os.WriteFile(filepath.Join(cfg.JobDir, "config.json"), config, 0o600); err != nil {
		return res, err
	}
	env := append(append([]string{}, cfg.Env...), plugins.EnvJobDir+"="+cfg.JobDir)
	client, err := plugins.Launch(plugins.LaunchConfig{Path: cfg.Trainer, Env: env, Dir: cfg.JobDir, SocketDir: cfg.RunDir})
	if err != nil {
		return res, fmt.Errorf("start trainer %s: %w", cfg.Trainer, err)
	}
	defer client.Shutdown()
	info, err := client.Info(ctx)
	if err != nil {
		return res, err
	}
	fmt.Fprintf(out, "Trainer %s (%s backend); log: %s\n", info.Version, info.Backend, filepath.Join(cfg.JobDir, plugins.LogFile))
	if _, err := client.Start(ctx, plugins.StartRequest{JobID: jobID, Config: config, JobDir: cfg.JobDir, Nonce: jobID}); err != nil {
		return res, err
	}
	p := newRenderer(out, terminalWidth(out))
	done := make(chan error, 1)
	go func() {
		done <- client.Events(ctx, 0, func(evs []plugins.Event) error {
			for _, e := range evs {
				p.event(e, &res)
			}
			return nil
		})
	}()
	presses := 0
	for {
		select {
		case err := <-done:
			p.finish()
			if err != nil {
				return res, err
			}
			if res.State == "" {
				if rec, rerr := plugins.ReadExitRecord(cfg.JobDir); rerr == nil {
					res.State, res.Error = rec.State, rec.Error
				}
			}
			return res, nil
		case <-interrupts:
			presses++
			switch presses {
			case 1:
				p.say("Interrupted: saving a checkpoint, then stopping (Ctrl-C again to cancel without saving)")
				client.Command(ctx, plugins.CommandStop)
			case 2:
				p.say("Cancelling without saving (Ctrl-C again to kill the trainer)")
				client.Command(ctx, plugins.CommandCancel)
			default:
				p.finish()
				fmt.Fprintln(out, "Killing the trainer")
				client.Shutdown()
				return Result{JobID: jobID, State: plugins.StateCancelled, Error: "killed"}, nil
			}
		}
	}
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
