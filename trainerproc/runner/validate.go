package runner

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"simpletuner/hooks"
	"simpletuner/options"
	"simpletuner/plugins"
	"simpletuner/trainerproc/checkpoint"
	"simpletuner/trainerproc/validation"
)

// ValidationDir is where validation PNGs go under output_dir.
const ValidationDir = "validation_images"

// externalTimeout bounds a blocking validation script.
const externalTimeout = 2 * time.Hour

// validate runs validation at the current step: the built-in sampler, or the external script
// when validation_method=external-script. Failing to write an image fails the run; a failing
// external script is reported and training goes on (SimpleTuner raises, but a broken hook
// must not cost a training run).
func (t *trainer) validate(ctx context.Context, final bool) error {
	t.lastValidationStep = t.globalStep
	if t.s.ValidationMethod == "external-script" {
		t.validateExternal(ctx)
		return nil
	}
	return t.validateLocal(ctx, final)
}

func (t *trainer) validateLocal(ctx context.Context, final bool) error {
	s := t.s
	prompts := validation.Prompts(s.ValidationPrompt, s.PromptLibrary)
	if len(prompts) == 0 {
		t.ev.warn("Validation skipped", "no --validation_prompt or --user_prompt_library is configured", nil)
		return nil
	}
	var res []validation.Resolution
	if s.ValidationResolution != "" {
		var err error
		if res, err = validation.ParseResolutions(s.ValidationResolution, t.plan.Align()); err != nil {
			return fmt.Errorf("%w: %w", ErrConfig, err)
		}
	}
	if len(res) == 0 {
		// Unset: sample at the size the model is being trained on.
		w, h := t.lastW, t.lastH
		if w == 0 || h == 0 {
			w, h = t.plan.SampleSize(), t.plan.SampleSize()
		}
		res = []validation.Resolution{{W: w, H: h}}
	}
	dir := filepath.Join(s.OutputDir, ValidationDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("validation images: %w", err)
	}
	for _, p := range prompts {
		var assets []validation.Asset
		var paths []string
		for _, r := range res {
			req := validation.Request{Prompt: p.Text, Negative: s.ValidationNegative, Resolution: r, Steps: s.ValidationSteps,
				Guidance: s.ValidationGuidance, Seed: s.ValidationSeed, PreviewEvery: s.ValidationPreviewSteps, Sampler: s.ValidationSampler}
			var err error
			if req.PromptEmbeds, req.NegativeEmbeds, err = t.caches.validationEmbeds(p.Text, s.ValidationNegative); err != nil {
				return fmt.Errorf("validation %q: %w", p.ShortName, err)
			}
			if s.ValidationPreview {
				req.Preview = func(pv validation.Preview) { t.emitPreview(p, r, pv) }
			}
			// Sampling takes a while (steps × 2 passes for guidance): say so on the stream.
			t.ev.stage("validation", "running", fmt.Sprintf("Running validation %q at %s (%d steps)", p.ShortName, r, s.ValidationSteps), nil, nil)
			img, err := t.model.Sample(ctx, req)
			if err != nil {
				t.ev.stage("validation", "failed", fmt.Sprintf("Validation %q at %s failed: %v", p.ShortName, r, err), nil, nil)
				return fmt.Errorf("validation %q at %s: %w", p.ShortName, r, err)
			}
			t.ev.stage("validation", "completed", fmt.Sprintf("Validation %q at %s done", p.ShortName, r), nil, nil)
			b, err := validation.EncodePNG(img)
			if err != nil {
				return err
			}
			path := filepath.Join(dir, validation.FileName(t.globalStep, p.ShortName, r))
			if err := writeFileAtomic(path, b); err != nil {
				return fmt.Errorf("validation image: %w", err)
			}
			assets = append(assets, validation.PNGAsset(b))
			paths = append(paths, path)
		}
		kind := "validation"
		if final {
			kind = "final"
		}
		t.job.Emit(plugins.EventTrainingValidation, "info", "Validation: "+p.ShortName, "Validation: "+p.ShortName, map[string]any{
			"step": t.globalStep, "shortname": p.ShortName, "prompt": p.Text, "resolutions": res, "paths": paths,
			"validation_type": kind, "images": assets})
	}
	return nil
}

// emitPreview sends one intermediate image as a validation.image event.
func (t *trainer) emitPreview(p validation.Prompt, r validation.Resolution, pv validation.Preview) {
	b, err := validation.EncodePNG(pv.Image)
	if err != nil {
		return
	}
	label := fmt.Sprintf("%d/%d", pv.Step, pv.Total)
	title := fmt.Sprintf("Validation (step %s): %s", label, p.ShortName)
	t.job.Emit(plugins.EventValidationImage, "info", title, title, map[string]any{
		"step": pv.Step, "timestep": pv.Timestep, "resolution": []int{r.W, r.H}, "validation_type": "intermediary",
		"prompt": p.Text, "shortname": p.ShortName, "step_label": label, "global_step": t.globalStep,
		"body": p.Text, "images": []validation.Asset{validation.PNGAsset(b)}})
}

// placeholderValues are the values of a validation script's placeholders, SimpleTuner's
// names (docs/compatibility.md §9).
func (t *trainer) placeholderValues(ckptPath string) map[string]string {
	s := t.s
	v := map[string]string{
		"local_checkpoint_path":  ckptPath,
		"remote_checkpoint_path": "",
		"global_step":            strconv.Itoa(t.globalStep),
		"tracker_run_name":       s.Cfg.String("--tracker_run_name"),
		"tracker_project_name":   s.Cfg.String("--tracker_project_name"),
		"model_family":           s.ModelFamily,
		"model_type":             s.ModelType,
		"lora_type":              s.Cfg.String("--lora_type"),
		"huggingface_path":       s.Cfg.String("--hub_model_id"),
	}
	for name, val := range s.Cfg.Values() {
		bare := strings.TrimPrefix(name, "--")
		if !strings.HasPrefix(bare, "validation_") {
			continue
		}
		str := ""
		if val != nil {
			str = options.FormatValue(val)
		}
		if str == "false" || str == "0" {
			str = "" // SimpleTuner passes falsy attributes as ""
		}
		v[bare] = str
	}
	return v
}

// validateExternal runs --validation_external_script on the newest checkpoint.
func (t *trainer) validateExternal(ctx context.Context) {
	refs, err := t.mgr.List()
	var latest *checkpoint.Ref
	for i := range refs {
		if refs[i].Complete {
			latest = &refs[i]
		}
	}
	if err != nil || latest == nil {
		t.ev.warn("Validation skipped", "validation_external_script needs a checkpoint and none exists yet", nil)
		return
	}
	vals := t.placeholderValues(latest.Path)
	argv, err := hooks.Expand(t.s.ExternalScript, vals)
	if err != nil {
		t.ev.warn("Validation script not run", err.Error(), nil)
		return
	}
	release, err := t.mgr.Lease(latest.Name)
	if err != nil {
		t.ev.warn("Validation script not run", err.Error(), nil)
		return
	}
	step := t.globalStep
	run := func(ctx context.Context) {
		defer release()
		res, err := hooks.Run(ctx, argv, hooks.RunOptions{Timeout: externalTimeout, Values: vals, Dir: t.s.OutputDir})
		data := map[string]any{"step": step, "validation_type": "external-script", "argv": argv, "exit_code": res.ExitCode,
			"output": string(res.Output), "checkpoint": latest.Path}
		if err != nil {
			t.job.Emit(plugins.EventTrainingValidation, "error", "Validation script failed", err.Error(), data)
			return
		}
		t.job.Emit(plugins.EventTrainingValidation, "info", "Validation: external script", "Validation script finished", data)
	}
	if t.s.ExternalBackground {
		t.bg.Add(1)
		go func() { defer t.bg.Done(); run(t.bgCtx) }()
		return
	}
	run(ctx)
}
