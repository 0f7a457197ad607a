package runner

import (
	"context"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"simpletuner/internal/atomicfile"

	"simpletuner/plugins"
	"simpletuner/plugins/kit"
	"simpletuner/trainerproc/checkpoint"
	"simpletuner/trainerproc/data"
	"simpletuner/trainerproc/engine"
	"simpletuner/trainerproc/family"
	"simpletuner/trainerproc/optim"
	"simpletuner/trainerproc/safetensors"
)

// trainer is one run's state; it lives for one Run call.
type trainer struct {
	r    *Runner
	opts Options
	job  *kit.Job
	ev   *emitter
	s    *Settings
	// lastW, lastH are the size of the latest training batch: validation's default size.
	lastW, lastH int
	// conditioning is set when the dataloader pairs conditioning datasets with the image
	// datasets: the model then takes their images as extra tokens.
	conditioning bool

	be      engine.Backend
	e       *engine.Engine
	loader  *data.Loader
	sampler *data.Sampler
	// plan is the job's model as its family resolved it (setupData); model is that plan
	// built on the engine (setupModel). The run talks to nothing more concrete.
	plan  family.Plan
	model family.Model
	opt   optim.Optimizer
	sched optim.Schedule
	noise *engine.RNG
	mgr   *checkpoint.Manager
	// caches are the latent and text-embedding caches of a latent family (setupData).
	caches caches

	// Loop position. globalStep counts optimizer steps; completedEpochs counts finished
	// epochs; epochStep counts optimizer steps within the current epoch.
	globalStep, completedEpochs, epochStep int
	totalSteps, totalEpochs, stepsPerEpoch int
	lastLoss, lastLR                       float64
	lastCheckpointStep                     int
	lastValidationStep                     int

	// Background validation scripts: waited for at the end of a completed run, killed
	// (bgCancel) when the run ends otherwise.
	bg       sync.WaitGroup
	bgCtx    context.Context
	bgCancel context.CancelFunc
}

// streamSeed derives an independent Philox seed for a named purpose from --seed, so adding a
// stream never shifts another.
func streamSeed(seed uint64, name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	x := seed ^ h.Sum64()
	// splitmix64 finaliser
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

func (t *trainer) close() {
	t.bgCancel()
	t.bg.Wait()
	if t.model != nil {
		t.model.Free()
	}
	if t.be != nil {
		_ = t.be.Close()
	}
}

func (t *trainer) run(ctx context.Context) error {
	s := t.s
	t.ev.job.Emit(plugins.EventNotification, "info", "Training job has started, configuration has begun.",
		"Training job has started, configuration has begun.", nil)
	for _, f := range s.Forced { // applied by ParseSettings; said once more where the run's log shows it
		t.ev.warn("Setting overridden by the model family", f.Message, map[string]any{"option": f.Option, "value": f.Value})
	}
	if err := t.resolveWeights(ctx); err != nil { // before anything reads the model's config
		return err
	}
	if err := t.checkMemory(); err != nil {
		return err
	}
	if err := t.setupData(ctx); err != nil {
		return err
	}
	if err := t.setupModel(); err != nil {
		return err
	}
	if err := t.setupOptimizer(); err != nil {
		return err
	}
	if err := t.resume(); err != nil {
		return err
	}
	t.job.SetRunning()
	remaining := t.totalSteps - t.globalStep
	summary := fmt.Sprintf("***** Running training *****\n-  Num batches = %d\n-  Num Epochs = %d\n  - Current Epoch = %d\n-  Total train batch size (w. parallel, distributed & accumulation) = %d\n  - Instantaneous batch size per device = %d\n  - Gradient Accumulation steps = %d\n-  Total optimization steps = %d\n  - Steps completed: %d\n-  Total optimization steps remaining = %d",
		t.sampler.EpochBatches(), t.totalEpochs, t.completedEpochs+1, s.BatchSize*s.Accum, s.BatchSize, s.Accum, t.totalSteps, t.globalStep, remaining)
	t.job.Emit(plugins.EventTrainingStatus, "info", "***** Running training *****", summary, map[string]any{
		"status": "running", "total_num_batches": t.sampler.EpochBatches(), "total_num_epochs": t.totalEpochs,
		"total_num_steps": t.totalSteps, "current_epoch": t.completedEpochs + 1, "total_batch_size": s.BatchSize * s.Accum,
		"micro_batch_size": s.BatchSize, "global_step": t.globalStep, "remaining_num_steps": remaining,
		"seed": s.Seed, "backend": t.be.Describe()})

	if err := t.loop(ctx); err != nil {
		return err
	}
	if s.HasValidation() && t.lastValidationStep != t.globalStep {
		t.ev.stage("final_validation", "running", "Running final validation", nil, nil)
		if err := t.validate(ctx, true); err != nil {
			t.ev.stage("final_validation", "failed", "Final validation failed: "+err.Error(), nil, nil)
			return err
		}
		t.ev.stage("final_validation", "completed", "Final validation completed", nil, nil)
	}
	if err := t.saveFinal(); err != nil {
		return err
	}
	t.ev.stage("training_complete", "completed", "Training complete.", &stageProgress{Current: int64(t.globalStep),
		Total: int64(t.totalSteps), Percent: 100, Metrics: map[string]any{"loss": t.lastLoss, "learning_rate": t.lastLR, "epoch": t.completedEpochs}},
		map[string]any{"state": "completed", "final_epoch": t.completedEpochs})
	return nil
}

func (t *trainer) setupData(ctx context.Context) error {
	s := t.s
	t.ev.stage("init_data_backend", "running", "Configuring data backends... (this may take a while!)", nil, nil)
	fail := func(err error) error {
		t.ev.stage("init_data_backend", "failed", "Configuring data backends failed: "+err.Error(), nil, nil)
		return err
	}
	dcfg, err := data.ParseConfig(s.DataConfig, dataDefaults(s))
	if err != nil {
		return fail(fmt.Errorf("%w: data_backend_config: %w", ErrConfig, err))
	}
	t.conditioning = hasConditioning(dcfg)
	if t.plan, err = t.r.plan(s, t.conditioning); err != nil {
		return fail(fmt.Errorf("%w: %w", ErrConfig, err))
	}
	want := t.plan.Caches()
	if missing := want.Missing(pipelineCaches); len(missing) > 0 {
		return fail(fmt.Errorf("%w: %s needs %s, which this trainer's data pipeline does not prepare", ErrConfig, t.plan.Name(), strings.Join(missing, " and ")))
	}
	warnings := 0
	t.loader, err = data.Open(ctx, dcfg, data.Options{Align: t.plan.Align(), MaxTokens: t.plan.CaptionLen(), Workers: t.opts.Threads,
		Latents: want.Latents,
		Warn: func(w data.Warning) {
			warnings++
			if warnings <= 50 { // a folder of bad files must not flood the stream
				t.ev.warn("Dataset warning", w.String(), map[string]any{"dataset_id": w.DatasetID, "path": w.Path, "reason": w.Reason})
			}
		}})
	if err != nil {
		return fail(fmt.Errorf("open datasets: %w", err))
	}
	// The encoders run here, before the model is built, and are freed when their cache is
	// complete: a run never holds them and the model at once.
	if want.TextEmbeds {
		if err := t.prepareTextEmbeds(ctx, dcfg); err != nil {
			return fail(err)
		}
	}
	if want.Latents {
		if err := t.prepareLatents(ctx); err != nil {
			return fail(err)
		}
	}
	t.sampler, err = t.loader.NewSampler(data.SamplerOptions{Seed: streamSeed(s.Seed, "sampler"), BatchSize: s.BatchSize})
	if err != nil {
		return fail(fmt.Errorf("open datasets: %w", err))
	}
	nb := t.sampler.EpochBatches()
	t.stepsPerEpoch = (nb + s.Accum - 1) / s.Accum
	if s.MaxSteps > 0 {
		t.totalSteps = s.MaxSteps
		t.totalEpochs = (s.MaxSteps + t.stepsPerEpoch - 1) / t.stepsPerEpoch
	} else {
		t.totalEpochs = s.Epochs
		t.totalSteps = s.Epochs * t.stepsPerEpoch
	}
	var stats []map[string]any
	for _, st := range t.loader.Stats() {
		stats = append(stats, map[string]any{"dataset_id": st.DatasetID, "samples": st.Samples, "skipped": st.Skipped,
			"cache_hits": st.CacheHits, "cache_misses": st.CacheMisses})
	}
	t.ev.stage("init_data_backend", "completed", fmt.Sprintf("Configured data backends: %d batches per epoch", nb), nil,
		map[string]any{"datasets": stats})
	return nil
}

// pipelineCaches are the inputs the data pipeline prepares: decoded pixels and the byte
// tokenizer's ids (trainerproc/data), and VAE latents and text embeddings from the
// pipeline's encoders (caches.go). A family that needs more is refused before any data is
// read.
var pipelineCaches = family.Caches{Pixels: true, Tokens: true, Latents: true, TextEmbeds: true}

// hasConditioning reports whether image datasets are paired with conditioning datasets:
// the model then takes reference images as extra tokens.
func hasConditioning(dcfg *data.Config) bool {
	for _, ds := range dcfg.Datasets {
		if !ds.Disabled && len(ds.ConditioningData) > 0 {
			return true
		}
	}
	return false
}

// checkMemory opens the run's backend and refuses the job, before anything big is
// allocated, when its estimate exceeds the machine (memoryIssue): a queued job meets a
// machine validate never saw.
func (t *trainer) checkMemory() error {
	s := t.s
	be, err := t.r.newBackend(s.Cfg.String("--mixed_precision"))
	if err != nil {
		return fmt.Errorf("backend: %w", err)
	}
	t.be, t.e = be, engine.New(be)
	dcfg, err := data.ParseConfig(s.DataConfig, dataDefaults(s))
	if err != nil {
		return nil // setupData reports it, in its stage
	}
	is, err := t.r.checkMemory(s, dcfg, be)
	if err != nil {
		return err
	}
	if is != nil {
		return fmt.Errorf("%w: %s: %s", ErrConfig, is.Option, is.Message)
	}
	return nil
}

func (t *trainer) setupModel() error {
	s := t.s
	t.ev.stage("init_load_base_model", "running", "Loading base model", nil, nil)
	fail := func(err error) error {
		t.ev.stage("init_load_base_model", "failed", "Loading base model failed: "+err.Error(), nil, nil)
		return err
	}
	be := t.be
	m, loaded, err := t.plan.Build(t.e, streamSeed(s.Seed, "model"))
	if err != nil {
		return fail(err)
	}
	t.model = m
	from := "initialised from seed"
	if loaded {
		from = "loaded from " + s.Pretrained
	}
	if s.ModelType == "lora" {
		ac := s.Adapters
		ac.Seed = streamSeed(s.Seed, "adapters")
		if err := m.AttachAdapters(ac); err != nil {
			return fail(fmt.Errorf("%w: %w", ErrConfig, err))
		}
	}
	n := 0
	for _, p := range m.Trainable() {
		n += p.Numel()
	}
	t.ev.stage("init_load_base_model", "completed", fmt.Sprintf("Loaded %s (%s), %d trainable parameters on %s",
		t.plan.Name(), from, n, be.Describe()), nil, map[string]any{"trainable_parameters": n, "backend": be.Describe()})
	return nil
}

func (t *trainer) setupOptimizer() error {
	s := t.s
	t.ev.stage("init_prepare_models", "running", "Preparing optimizer and schedule", nil, nil)
	opt, err := optim.New(s.Optimizer, t.model.Trainable(), s.OptimizerOverrides, streamSeed(s.Seed, "optimizer"))
	if err != nil {
		t.ev.stage("init_prepare_models", "failed", err.Error(), nil, nil)
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	sched, err := optim.NewSchedule(s.Scheduler, s.LearningRate, s.Warmup, t.totalSteps)
	if err != nil {
		t.ev.stage("init_prepare_models", "failed", err.Error(), nil, nil)
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	sched.NumCycles, sched.Power = float64(s.NumCycles), s.Power
	if s.Scheduler == "cosine" {
		sched.NumCycles = 0 // lr_num_cycles counts restarts; plain cosine keeps its half wave
	}
	t.opt, t.sched = opt, sched
	t.noise = engine.NewRNG(streamSeed(s.Seed, "noise"))
	t.ev.stage("init_prepare_models", "completed", fmt.Sprintf("Optimizer %s, schedule %s", s.Optimizer, s.Scheduler), nil, nil)
	return nil
}

// loop runs optimizer steps until the run is complete, a command ends it, or it fails.
func (t *trainer) loop(ctx context.Context) error {
	s := t.s
	started := time.Now()
	startStep := t.globalStep
	params := t.model.Trainable()
	lossOpts := family.LossOptions{CaptionDropout: s.CaptionDropout, SNRGamma: s.SNRGamma}
	for t.globalStep < t.totalSteps {
		if err := ctx.Err(); err != nil {
			return err
		}
		var lossSum float64
		micro := 0
		epochDone := false
		epoch := t.completedEpochs + 1
		for {
			b, err := t.sampler.Next()
			if err != nil {
				return fmt.Errorf("load batch: %w", err)
			}
			epoch = b.Epoch
			t.lastW, t.lastH = b.W, b.H
			if err := t.caches.fill(t.e, b, t.noise); err != nil {
				return fmt.Errorf("load batch: %w", err)
			}
			l, err := t.microStep(b, lossOpts)
			if err != nil {
				return fmt.Errorf("step %d: %w", t.globalStep+1, err)
			}
			lossSum += l
			micro++
			if b.Index == b.EpochBatches-1 {
				// accelerate syncs at the end of the dataloader: an epoch never shares an
				// optimizer step with the next one.
				epochDone = true
				break
			}
			if micro == s.Accum {
				break
			}
		}
		gradNorm, err := optim.ClipGradNorm(params, s.MaxGradNorm)
		if err != nil {
			return fmt.Errorf("clip gradients: %w", err)
		}
		lr := t.sched.LR(t.globalStep)
		if err := t.opt.Step(lr); err != nil {
			return fmt.Errorf("optimizer step: %w", err)
		}
		engine.ZeroGrads(params)
		t.globalStep++
		t.epochStep++
		t.lastLoss, t.lastLR = lossSum/float64(micro), lr
		if epochDone {
			t.completedEpochs = epoch
			t.epochStep = 0
		}
		itps := float64(t.globalStep-startStep) / time.Since(started).Seconds()
		t.ev.step(stepReport{step: t.globalStep, total: t.totalSteps, epoch: epoch, totalEpochs: t.totalEpochs,
			loss: t.lastLoss, lr: lr, gradNorm: gradNorm, itPerSec: itps, effectiveBatch: s.BatchSize * s.Accum})
		if s.MaxSteps <= 0 && t.completedEpochs >= s.Epochs {
			t.totalSteps = t.globalStep // epochs decide; never overshoot a shorter last epoch
		}

		// Scheduled work at this gradient sync.
		if s.CheckpointSteps > 0 && t.globalStep%s.CheckpointSteps == 0 ||
			epochDone && s.CheckpointEpochs > 0 && t.completedEpochs%s.CheckpointEpochs == 0 {
			t.checkpoint(ctx, false)
		} else if s.RollingSteps > 0 && t.globalStep%s.RollingSteps == 0 {
			t.checkpoint(ctx, true)
		}
		if s.HasValidation() && s.ValidationInterval > 0 && t.globalStep%s.ValidationInterval == 0 && t.globalStep < t.totalSteps {
			if err := t.validate(ctx, false); err != nil {
				return err
			}
		}
		// The daemon's commands act after the gradient sync.
		if err := t.commands(ctx); err != nil {
			return err
		}
	}
	return nil
}

// microStep runs forward and backward for one micro-batch, accumulating gradients scaled by
// 1/gradient_accumulation_steps, and returns the unscaled loss.
func (t *trainer) microStep(b *data.Batch, o family.LossOptions) (float64, error) {
	var loss float64
	var inner error
	err := engine.Catch(func() {
		e := t.e
		sc := e.Scope()
		defer sc.Close()
		l, err := t.model.Loss(b, t.noise, o)
		if err != nil {
			inner = err
			return
		}
		v, err := l.Item()
		if err != nil {
			inner = err
			return
		}
		loss = float64(v)
		inner = e.Backward(e.Scale(l, 1/float32(t.s.Accum)))
	})
	if err == nil {
		err = inner
	}
	return loss, err
}

// commands drains the daemon's commands without blocking.
func (t *trainer) commands(ctx context.Context) error {
	for {
		select {
		case c := <-t.job.Commands():
			switch c {
			case plugins.CommandCheckpoint:
				t.checkpoint(ctx, false)
			case plugins.CommandValidation:
				if err := t.validate(ctx, false); err != nil {
					return err
				}
			case plugins.CommandStop:
				if err := t.checkpoint(ctx, false); err != nil {
					return fmt.Errorf("stop: %w", err)
				}
				t.ev.stage("training_abort", "completed", fmt.Sprintf("Training stopped at step %d; checkpoint saved", t.globalStep), nil, nil)
				return kit.ErrStopped
			case plugins.CommandCancel:
				t.ev.stage("training_abort", "completed", fmt.Sprintf("Training cancelled at step %d", t.globalStep), nil, nil)
				return kit.ErrCancelled
			}
		default:
			return nil
		}
	}
}

// saveFinal writes the trained model into output_dir: the diffusers layout for a full
// fine-tune, pytorch_lora_weights.safetensors for adapters.
func (t *trainer) saveFinal() error {
	dir := t.s.OutputDir
	t.ev.stage("model_save", "running", "Finalizing model and saving to "+dir, nil, nil)
	var err error
	if t.model.HasAdapters() {
		err = t.saveAdapters(filepath.Join(dir, checkpoint.LoRAWeightsFile))
	} else {
		err = t.model.Save(dir)
	}
	if err != nil {
		t.ev.stage("model_save", "failed", "Saving the model failed: "+err.Error(), nil, nil)
		return fmt.Errorf("save final model: %w", err)
	}
	t.ev.stage("model_save", "completed", "Model saved to "+dir, nil, map[string]any{"path": dir})
	return nil
}

func (t *trainer) saveAdapters(path string) error {
	ts, err := t.model.AdapterTensors()
	if err != nil {
		return err
	}
	b, err := safetensors.Marshal(ts, map[string]string{"format": "pt", "lora_type": t.s.Adapters.Type})
	if err != nil {
		return err
	}
	return writeFileAtomic(path, b)
}

// writeFileAtomic creates path's folder and replaces path with b through
// internal/atomicfile, so a crash never leaves a half file under the final name.
func writeFileAtomic(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return atomicfile.Write(path, b, 0o600)
}
