package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"simpletuner/plugins"
	"simpletuner/supervisor/gpu"
)

// validateTimeout bounds one trainer consultation (launch, handshake, Validate).
const validateTimeout = 30 * time.Second

// maxValidations bounds the trainers launched for Validate at once; more callers wait.
const maxValidations = 2

// Validate asks the trainer a job with config would run on whether it can run it
// (plugins.Trainer.Validate): what only the trainer knows, such as whether the job fits the
// machine's memory. It launches that trainer binary as a job would be launched (the same
// choice of binary, environment and devices: the GPUs req would get on an idle machine),
// asks, and shuts it down; it takes about as long as a trainer takes to start. ok is false
// when the trainer was not consulted: its binary is missing (starting the job says so) or
// req cannot run here at all (submission says why).
func (m *Manager) Validate(ctx context.Context, config json.RawMessage, req gpu.Request) (issues []plugins.Issue, ok bool, err error) {
	gpus, err := m.alloc.Inventory().List(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("list GPUs: %w", err)
	}
	d := gpu.Decide(req, gpus, nil, m.alloc.Ledger().Limits())
	trainer := m.cfg.CPUTrainer
	env := append([]string{}, m.cfg.TrainerEnv...)
	switch d.Outcome {
	case gpu.Start:
		trainer = m.cfg.GPUTrainer
		env = append(env, gpu.LaunchEnv(d)...)
	case gpu.StartCPU:
		env = append(env, "CUDA_VISIBLE_DEVICES=")
	default:
		return nil, false, nil
	}
	if _, err := os.Stat(trainer); err != nil {
		return nil, false, nil
	}
	select {
	case m.validating <- struct{}{}:
		defer func() { <-m.validating }()
	case <-ctx.Done():
		return nil, false, ctx.Err()
	}
	ctx, cancel := context.WithTimeout(ctx, validateTimeout)
	defer cancel()
	client, err := plugins.Launch(plugins.LaunchConfig{Path: trainer, Args: m.cfg.TrainerArgs, Env: env, Dir: m.cfg.RunDir,
		SocketDir: m.cfg.RunDir, StartTimeout: validateTimeout})
	if err != nil {
		return nil, false, fmt.Errorf("start %s: %w", trainer, err)
	}
	defer client.Shutdown()
	issues, err = client.Validate(ctx, config)
	if err != nil {
		return nil, false, fmt.Errorf("%s: %w", trainer, err)
	}
	return issues, true, nil
}
