// Package kittest provides a fake trainer Runner for tests of the daemon and of the kit:
// it "trains" by sleeping per step, emits the same events a real trainer does, obeys
// commands, and can be told to crash, hang, fail or ignore SIGTERM. Tests re-execute their
// own binary with Env set and call kit.Main(FromEnv()) to get a real trainer process.
package kittest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"

	"simpletuner/plugins"
	"simpletuner/plugins/kit"
)

// Environment variables that configure the fake (all optional).
const (
	EnvSteps      = "FAKE_TRAINER_STEPS"       // total steps (default 20)
	EnvStepMS     = "FAKE_TRAINER_STEP_MS"     // milliseconds per step (default 20)
	EnvFailAt     = "FAKE_TRAINER_FAIL_AT"     // step at which Run returns an error
	EnvCrashAt    = "FAKE_TRAINER_CRASH_AT"    // step at which the process kills itself (SIGKILL)
	EnvIgnoreTerm = "FAKE_TRAINER_IGNORE_TERM" // "1": ignore SIGTERM
	EnvInitMS     = "FAKE_TRAINER_INIT_MS"     // simulated start-up before the first step
	EnvHangAt     = "FAKE_TRAINER_HANG_AT"     // step at which the loop hangs, alive and silent
)

// Fake is a configurable fake Runner.
type Fake struct {
	Steps, StepMS, FailAt, CrashAt, InitMS, HangAt int
}

// FromEnv builds a Fake from the environment.
func FromEnv() *Fake {
	f := &Fake{Steps: 20, StepMS: 20, FailAt: -1, CrashAt: -1, HangAt: -1}
	geti := func(k string, dst *int) {
		if v, err := strconv.Atoi(os.Getenv(k)); err == nil {
			*dst = v
		}
	}
	geti(EnvSteps, &f.Steps)
	geti(EnvStepMS, &f.StepMS)
	geti(EnvFailAt, &f.FailAt)
	geti(EnvCrashAt, &f.CrashAt)
	geti(EnvInitMS, &f.InitMS)
	geti(EnvHangAt, &f.HangAt)
	if os.Getenv(EnvIgnoreTerm) == "1" {
		signalIgnoreTerm()
	}
	return f
}

// Info implements kit.Runner.
func (f *Fake) Info(context.Context) (plugins.Info, error) {
	return plugins.Info{Version: "fake", Backend: "cpu", Devices: []string{"fake cpu"},
		Families: []plugins.Family{{Name: "dit", Flavours: []string{"tiny", "small", "base", "xl"}, DefaultFlavour: "tiny"}}}, nil
}

// Validate implements kit.Runner: it rejects a config whose --learning_rate is negative.
func (f *Fake) Validate(_ context.Context, cfg json.RawMessage) ([]plugins.Issue, error) {
	var m map[string]any
	if err := json.Unmarshal(cfg, &m); err != nil {
		return nil, fmt.Errorf("%w: %w", plugins.ErrInvalidConfig, err)
	}
	if lr, ok := m["--learning_rate"].(float64); ok && lr < 0 {
		return []plugins.Issue{{Option: "--learning_rate", Severity: "error", Message: "learning rate must be positive"}}, nil
	}
	return nil, nil
}

// Run implements kit.Runner.
func (f *Fake) Run(ctx context.Context, job *kit.Job) error {
	job.Emit("lifecycle.stage", "info", "Loading", "", map[string]any{"stage": "init", "status": "running"})
	time.Sleep(time.Duration(f.InitMS) * time.Millisecond)
	job.SetRunning()
	job.Emit("training.status", "info", "Training started", "", map[string]any{"status": "running",
		"cuda_visible_devices": os.Getenv("CUDA_VISIBLE_DEVICES"), "cuda_device_order": os.Getenv("CUDA_DEVICE_ORDER"), "pid": os.Getpid()})
	for step := 1; step <= f.Steps; step++ {
		time.Sleep(time.Duration(f.StepMS) * time.Millisecond)
		if step == f.CrashAt {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
		}
		if step == f.HangAt {
			select {} // a deadlocked trainer: alive, silent
		}
		if step == f.FailAt {
			return errors.New("simulated failure")
		}
		p := plugins.Progress{Step: int64(step), TotalSteps: int64(f.Steps), Epoch: 1, TotalEpochs: 1, Loss: 1 / float64(step), LearningRate: 1e-4}
		job.SetProgress(p)
		job.Emit("training.progress", "info", "", "", p)
		for {
			select {
			case c := <-job.Commands():
				switch c {
				case plugins.CommandCheckpoint:
					job.Emit("training.checkpoint", "info", "Checkpoint saved", "", map[string]any{"step": step, "path": fmt.Sprintf("checkpoint-%d", step)})
				case plugins.CommandValidation:
					job.Emit("training.validation", "info", "Validation ran", "", map[string]any{"step": step})
				case plugins.CommandStop:
					job.Emit("training.checkpoint", "info", "Checkpoint saved", "", map[string]any{"step": step, "path": fmt.Sprintf("checkpoint-%d", step)})
					return kit.ErrStopped
				case plugins.CommandCancel:
					return kit.ErrCancelled
				}
				continue
			case <-ctx.Done():
				return ctx.Err()
			default:
			}
			break
		}
	}
	return nil
}
