package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"simpletuner/plugins"
	"simpletuner/trainerproc/checkpoint"
	"simpletuner/trainerproc/safetensors"
)

// Keys of this trainer's state in training_state.json.
const (
	samplerStateKey = "sampler"
	noiseRNGKey     = "noise"
)

// schedulerState is training_state.json's lr_scheduler: the schedule is a pure function of the
// step, so this records what it was, to warn when a resumed run changes it.
type schedulerState struct {
	Name     string  `json:"name"`
	BaseLR   float64 `json:"base_lr"`
	Warmup   int     `json:"warmup"`
	Total    int     `json:"total"`
	LastStep int     `json:"last_step"`
}

// extraState is training_state.json's extra: the rest of what an exact continuation needs.
type extraState struct {
	Seed            uint64 `json:"seed"`
	CompletedEpochs int    `json:"completed_epochs"`
	ModelType       string `json:"model_type"`
	Flavour         string `json:"flavour"`
}

// newManager opens the checkpoint manager of output_dir, turning its warnings into events.
func (t *trainer) newManager() *checkpoint.Manager {
	return checkpoint.New(t.s.OutputDir, checkpoint.Options{
		FS:        t.opts.CheckpointFS,
		Retention: checkpoint.Retention{TotalLimit: t.s.TotalLimit, RollingTotalLimit: t.s.RollingLimit},
		OnWarning: func(w checkpoint.Warning) {
			t.ev.warn("Checkpoint warning: "+string(w.Kind), w.String(), map[string]any{"kind": string(w.Kind), "name": w.Name, "path": w.Path})
		},
	})
}

// buildCheckpoint captures everything a bit-identical continuation needs.
func (t *trainer) buildCheckpoint(rolling bool) (checkpoint.Checkpoint, error) {
	ck := checkpoint.Checkpoint{Step: t.globalStep, Rolling: rolling}
	noiseSeed, noiseOff := t.noise.State()
	sched, _ := json.Marshal(schedulerState{Name: t.sched.Name, BaseLR: t.sched.BaseLR, Warmup: t.sched.Warmup, Total: t.sched.Total, LastStep: t.globalStep})
	extra, _ := json.Marshal(extraState{Seed: t.s.Seed, CompletedEpochs: t.completedEpochs, ModelType: t.s.ModelType, Flavour: t.plan.Flavour()})
	ck.State = checkpoint.TrainingState{
		GlobalStep: t.globalStep, EpochStep: t.epochStep, Epoch: t.completedEpochs + 1,
		ExhaustedBackends: []string{}, Repeats: map[string]int{},
		LearningRate: t.lastLR, LRScheduler: sched,
		RNG:           map[string][]uint64{noiseRNGKey: {noiseSeed, noiseOff}},
		SamplerStates: map[string]json.RawMessage{samplerStateKey: t.sampler.State()},
		Extra:         map[string]json.RawMessage{"trainer": extra},
	}
	if t.model.HasAdapters() {
		ts, err := t.model.AdapterTensors()
		if err != nil {
			return ck, err
		}
		ck.Tensors = append(ck.Tensors, checkpoint.TensorFile{Path: checkpoint.LoRAWeightsFile, Tensors: ts,
			Metadata: map[string]string{"format": "pt", "lora_type": t.s.Adapters.Type}})
	} else {
		ts, files, err := t.model.CheckpointWeights()
		if err != nil {
			return ck, err
		}
		ck.Tensors = append(ck.Tensors, ts...)
		ck.Files = append(ck.Files, files...)
	}
	ots, ometa, err := t.opt.State()
	if err != nil {
		return ck, err
	}
	ck.Tensors = append(ck.Tensors, checkpoint.TensorFile{Path: checkpoint.OptimizerFile, Tensors: ots, Metadata: ometa})
	ostate, _ := json.MarshalIndent(map[string]any{"optimizer": t.opt.Name(), "steps": t.opt.Steps(), "hyper": t.opt.Hyper()}, "", "  ")
	ck.Files = append(ck.Files, checkpoint.Blob{Path: checkpoint.OptimizerStateFile, Data: ostate})
	return ck, nil
}

// checkpoint saves a checkpoint at the current step (once per step) and reports it. A failed
// save is reported and training goes on (the previous checkpoint stays the latest); the
// error is returned for callers that must not go on (stop).
func (t *trainer) checkpoint(ctx context.Context, rolling bool) error {
	if t.lastCheckpointStep == t.globalStep && t.globalStep > 0 {
		return nil
	}
	name := plugins.CheckpointName(t.globalStep, rolling)
	dir := filepath.Join(t.s.OutputDir, name)
	t.ev.stage("checkpoint_save", "running", "Saving checkpoint to "+dir, nil, map[string]any{"path": dir, "step": t.globalStep})
	ck, err := t.buildCheckpoint(rolling)
	var saved checkpoint.Saved
	if err == nil {
		saved, err = t.mgr.Save(ctx, ck)
	}
	if err != nil {
		t.ev.stage("checkpoint_save", "failed", "Saving checkpoint failed: "+err.Error(), nil, map[string]any{"path": dir, "step": t.globalStep})
		t.job.Emit(plugins.EventNotification, "error", "checkpoint_failed", fmt.Sprintf("Checkpoint at step %d failed: %v", t.globalStep, err),
			map[string]any{"status": "checkpoint_failed", "step": t.globalStep, "path": dir, "error": err.Error()})
		return fmt.Errorf("checkpoint at step %d: %w", t.globalStep, err)
	}
	t.lastCheckpointStep = t.globalStep
	p := saved.Ref.Path
	t.ev.stage("checkpoint_save", "completed", "Saved checkpoint to "+p, nil, map[string]any{"path": p, "step": t.globalStep})
	label := "Checkpoint saved to " + p
	cd := plugins.CheckpointData{Path: p, Step: int64(t.globalStep), Rolling: rolling, Pruned: saved.Pruned,
		Checkpoint: &plugins.CheckpointInfo{Path: p, Label: label}}
	if !rolling {
		local := p
		if !filepath.IsAbs(local) {
			local = filepath.Join(t.s.OutputDir, local)
		}
		// Uploaded before the event, so the one event says where it went and the daemon
		// runs post_upload_script for it (SimpleTuner uploads rolling checkpoints never).
		if remote := t.uploadCheckpoint(ctx, local, name); remote != "" {
			cd.Uploaded, cd.RemotePath = true, remote
		}
	}
	t.job.Emit(plugins.EventTrainingCheckpoint, "info", label, label, cd)
	return nil
}

// resume garbage-collects what a crash left, then restores the checkpoint
// resume_from_checkpoint asks for (or starts fresh).
func (t *trainer) resume() error {
	t.mgr = t.newManager()
	t.ev.stage("init_resume_checkpoint", "running", "Checking for checkpoints to resume", nil, nil)
	if removed, err := t.mgr.Cleanup(); err != nil {
		t.ev.warn("Checkpoint cleanup failed", err.Error(), nil)
	} else if len(removed) > 0 {
		t.ev.warn("Removed leftovers of an interrupted save", strings.Join(removed, ", "), map[string]any{"removed": removed})
	}
	spec, err := checkpoint.ParseResumeSpec(t.s.Resume)
	if err != nil {
		t.ev.stage("init_resume_checkpoint", "failed", err.Error(), nil, nil)
		return fmt.Errorf("%w: resume_from_checkpoint: %w", ErrConfig, err)
	}
	if spec.Kind == checkpoint.ResumeNone {
		t.ev.stage("init_resume_checkpoint", "completed", "No model to resume. Beginning fresh training run.", nil, nil)
		return nil
	}
	l, err := t.mgr.Resume(t.s.Resume)
	if errors.Is(err, checkpoint.ErrNotFound) && spec.Kind == checkpoint.ResumeLatest {
		t.ev.stage("init_resume_checkpoint", "completed", "No model to resume. Beginning fresh training run.", nil, nil)
		return nil
	}
	if err != nil {
		t.ev.stage("init_resume_checkpoint", "failed", "Resuming failed: "+err.Error(), nil, nil)
		return fmt.Errorf("resume: %w", err)
	}
	t.ev.stage("init_resume_checkpoint", "running", "Resuming model: "+l.Ref.Path, nil, map[string]any{"path": l.Ref.Path})
	if err := t.restore(l); err != nil {
		t.ev.stage("init_resume_checkpoint", "failed", "Resuming failed: "+err.Error(), nil, nil)
		return fmt.Errorf("resume from %s: %w", l.Ref.Path, err)
	}
	t.lastCheckpointStep = t.globalStep
	t.lastValidationStep = t.globalStep
	t.ev.stage("init_resume_checkpoint", "completed", fmt.Sprintf("Resumed from global_step %d", t.globalStep), nil,
		map[string]any{"path": l.Ref.Path, "global_step": t.globalStep})
	return nil
}

// restore loads a verified checkpoint into the model, optimizer, sampler and RNG.
func (t *trainer) restore(l *checkpoint.Loaded) error {
	st := l.State
	var extra extraState
	if raw, ok := st.Extra["trainer"]; ok {
		if err := json.Unmarshal(raw, &extra); err != nil {
			return fmt.Errorf("%w: trainer state: %w", checkpoint.ErrCorrupt, err)
		}
	}
	if extra.ModelType != "" && extra.ModelType != t.s.ModelType {
		return fmt.Errorf("%w: checkpoint is a %s run, this run is %s", ErrConfig, extra.ModelType, t.s.ModelType)
	}
	if extra.Seed != t.s.Seed {
		if t.s.SeedSet {
			t.ev.warn("Seed changed since the checkpoint", fmt.Sprintf("saved with seed %d, now %d: the continuation is not identical", extra.Seed, t.s.Seed), nil)
		}
	}
	if t.model.HasAdapters() {
		ts, _, err := l.ReadTensors(checkpoint.LoRAWeightsFile)
		if err != nil {
			return err
		}
		list := make([]safetensors.Tensor, 0, len(ts))
		for _, v := range ts {
			list = append(list, v)
		}
		if err := t.model.LoadAdapterTensors(list); err != nil {
			return err
		}
	} else if err := t.model.RestoreWeights(l); err != nil {
		return err
	}
	ots, ometa, err := l.ReadTensors(checkpoint.OptimizerFile)
	if err != nil {
		return err
	}
	list := make([]safetensors.Tensor, 0, len(ots))
	for _, v := range ots {
		list = append(list, v)
	}
	if err := t.opt.LoadState(list, ometa); err != nil {
		return err
	}
	if s, ok := st.SamplerStates[samplerStateKey]; ok {
		if err := t.sampler.Restore(s); err != nil {
			return err
		}
	} else {
		return fmt.Errorf("%w: no sampler state", checkpoint.ErrCorrupt)
	}
	if w := st.RNG[noiseRNGKey]; len(w) == 2 {
		t.noise.SetState(w[0], w[1])
	} else {
		return fmt.Errorf("%w: no noise RNG state", checkpoint.ErrCorrupt)
	}
	var ss schedulerState
	if len(st.LRScheduler) > 0 && json.Unmarshal(st.LRScheduler, &ss) == nil {
		if ss.Name != t.sched.Name || ss.Total != t.sched.Total || ss.Warmup != t.sched.Warmup || ss.BaseLR != t.sched.BaseLR {
			t.ev.warn("Learning-rate schedule changed since the checkpoint",
				fmt.Sprintf("saved with %s lr=%g warmup=%d total=%d, now %s lr=%g warmup=%d total=%d",
					ss.Name, ss.BaseLR, ss.Warmup, ss.Total, t.sched.Name, t.sched.BaseLR, t.sched.Warmup, t.sched.Total), nil)
		}
	}
	t.globalStep, t.epochStep = st.GlobalStep, st.EpochStep
	t.completedEpochs = extra.CompletedEpochs
	if extra.CompletedEpochs == 0 && st.Epoch > 1 {
		t.completedEpochs = st.Epoch - 1
	}
	t.lastLR = st.LearningRate
	return nil
}
