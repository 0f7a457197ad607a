package pixart

import (
	"context"
	"errors"
	"fmt"
	"image"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"simpletuner/internal/atomicfile"

	"simpletuner/trainerproc/checkpoint"
	"simpletuner/trainerproc/data"
	"simpletuner/trainerproc/diffusion"
	"simpletuner/trainerproc/engine"
	"simpletuner/trainerproc/family"
	"simpletuner/trainerproc/model"
	"simpletuner/trainerproc/safetensors"
	"simpletuner/trainerproc/vae"
	"simpletuner/trainerproc/validation"
)

// Sentinel errors of the model.
var (
	// ErrBatch reports a batch without what the loss reads: cached latents of 4 channels and
	// the captions' (and the empty caption's) T5 states.
	ErrBatch = errors.New("pixart: batch lacks cached latents or caption embeddings")
	// ErrSample reports a validation request the model cannot render.
	ErrSample = errors.New("pixart: cannot sample")
)

// Model is an allocated pixart_sigma model: the transformer being trained, the frozen VAE
// its validation decodes with, and the pipeline's DDPM schedule. It is used by one
// goroutine at a time.
type Model struct {
	m   *model.Model
	vae *vae.AutoencoderKL
	// sched is the training schedule; valSched and valCfg the validation sampler's
	// (the pipeline's scheduler config with SimpleTuner's inference overrides).
	sched    *diffusion.Schedule
	valSched *diffusion.Schedule
	valCfg   diffusion.SchedulerConfig
	// sampler is the validation sampler of the job (--validation_noise_scheduler or the
	// family's default).
	sampler string
	// pipeline is the base pipeline directory, transformer the transformer folder loaded.
	pipeline, transformer string
	// dtypes are the stored dtypes of the base's transformer tensors, by name: checkpoints
	// keep them.
	dtypes map[string]safetensors.DType
}

var _ family.Model = (*Model)(nil)

// Transformer is the trained transformer (tests and benchmarks read it).
func (x *Model) Transformer() *model.Model { return x.m }

// Trainable implements family.Model.
func (x *Model) Trainable() []*engine.Parameter { return x.m.Trainable() }

// AttachAdapters implements family.Model.
func (x *Model) AttachAdapters(ac family.AdapterConfig) error {
	return x.m.AttachAdapters(*adapters(&ac))
}

// HasAdapters implements family.Model.
func (x *Model) HasAdapters() bool { return x.m.HasAdapters() }

// AdapterTensors implements family.Model.
func (x *Model) AdapterTensors() ([]safetensors.Tensor, error) { return x.m.AdapterTensors() }

// LoadAdapterTensors implements family.Model.
func (x *Model) LoadAdapterTensors(ts []safetensors.Tensor) error { return x.m.LoadAdapterTensors(ts) }

// Free implements family.Model: the transformer's and the VAE's weights.
func (x *Model) Free() {
	x.m.Free()
	x.vae.Free()
}

// Loss implements family.Model as SimpleTuner trains PixArt-Σ. From rng, in this order: one
// uniform draw per sample mapped to a DDPM timestep (diffusion.Schedule.SampleTimesteps:
// uniform for a batch of one, one per stratum otherwise), ε ~ N(0, 1) of the latents'
// shape, and one uniform draw per sample for caption dropout (a dropped sample's caption
// states and mask become the empty caption's). x_t = √ᾱ_t·x₀ + √(1−ᾱ_t)·ε; the loss is the
// mean squared error of the prediction's first 4 channels (the learned-variance half is
// ignored) against ε — PixArt's prediction type is ε in SimpleTuner — each sample's mean
// weighted by min(SNR, γ)/SNR when o.SNRGamma > 0 (÷ (SNR+1) when the scheduler config says
// v_prediction, as SimpleTuner's divisor reads it there).
func (x *Model) Loss(b *data.Batch, rng *engine.RNG, o family.LossOptions) (*engine.Tensor, error) {
	ts, eps, drop, err := x.draw(b, rng)
	if err != nil {
		return nil, err
	}
	// Adapter dropout (--lora_dropout) draws from the same stream, after the noise.
	x.m.SetDropoutRNG(rng)
	defer x.m.SetDropoutRNG(nil)
	return x.loss(b, ts, eps, drop, o)
}

// draw takes the loss's random inputs from rng: timesteps, ε and the caption dropout draws.
func (x *Model) draw(b *data.Batch, rng *engine.RNG) (ts []int, eps, drop []float32, err error) {
	if err := x.checkBatch(b); err != nil {
		return nil, nil, nil, err
	}
	lat := b.Latents
	e := x.m.Engine()
	var u []float32
	var hostErr error
	err = engine.Catch(func() {
		s := e.Scope()
		defer s.Close()
		if u, hostErr = e.RandU(rng, 0, 1, b.B).ToHost(); hostErr != nil {
			return
		}
		if eps, hostErr = e.RandN(rng, 0, 1, b.B, lat.C, lat.H, lat.W).ToHost(); hostErr != nil {
			return
		}
		drop, hostErr = e.RandU(rng, 0, 1, b.B).ToHost()
	})
	if err == nil {
		err = hostErr
	}
	if err != nil {
		return nil, nil, nil, fmt.Errorf("pixart: sample noise: %w", err)
	}
	return x.sched.SampleTimesteps(u), eps, drop, nil
}

// checkBatch refuses a batch the loss cannot read.
func (x *Model) checkBatch(b *data.Batch) error {
	cfg := x.m.Config()
	switch {
	case b.Latents == nil:
		return fmt.Errorf("%w: no latents (the VAE cache was not filled)", ErrBatch)
	case b.Latents.C != cfg.InChannels || len(b.Latents.Values) != b.B*b.Latents.C*b.Latents.H*b.Latents.W:
		return fmt.Errorf("%w: latents of %d channels for %d samples, the transformer takes %d channels (is the VAE cache from another VAE?)",
			ErrBatch, b.Latents.C, b.B, cfg.InChannels)
	case b.Text == nil || b.Text.B != b.B:
		return fmt.Errorf("%w: no caption embeddings for the batch (the text-embedding cache was not filled)", ErrBatch)
	case b.Text.D != cfg.TextWidth:
		return fmt.Errorf("%w: caption states of width %d, the transformer's caption_channels is %d (is the cache from another text encoder?)",
			ErrBatch, b.Text.D, cfg.TextWidth)
	case b.EmptyText == nil || b.EmptyText.L != b.Text.L || b.EmptyText.D != b.Text.D:
		return fmt.Errorf("%w: no empty-caption embedding of the captions' shape (caption dropout needs it)", ErrBatch)
	}
	return nil
}

// loss is Loss for given timesteps, ε and dropout draws.
func (x *Model) loss(b *data.Batch, ts []int, eps, drop []float32, o family.LossOptions) (loss *engine.Tensor, err error) {
	lat := b.Latents
	n := lat.C * lat.H * lat.W
	xt := make([]float32, len(lat.Values))
	tf := make([]float32, b.B)
	w := make([]float32, b.B)
	for i, t := range ts {
		x.sched.AddNoise(xt[i*n:(i+1)*n], lat.Values[i*n:(i+1)*n], eps[i*n:(i+1)*n], t)
		tf[i] = float32(t)
		w[i] = 1
		if o.SNRGamma > 0 {
			// SimpleTuner's divisor follows the scheduler config's prediction_type.
			w[i] = float32(diffusion.MinSNRWeight(x.sched.SNR(t), o.SNRGamma, x.sched.PredictionType()))
		}
	}
	hidden, mask := captionStates(b, drop, o.CaptionDropout)
	e := x.m.Engine()
	cfg := x.m.Config()
	var ferr error
	err = engine.Catch(func() {
		s := e.Scope()
		defer s.Close()
		y := e.FromHost(hidden, b.B, b.Text.L, b.Text.D)
		pred, err := x.m.ForwardEmbeds(e.FromHost(xt, b.B, lat.C, lat.H, lat.W), tf, model.Embeds{Y: y, Mask: mask, Len: b.Text.L})
		if err != nil {
			ferr = err
			return
		}
		if pred.Dim(1) != cfg.InChannels {
			pred = e.Slice(pred, 1, 0, cfg.InChannels)
		}
		target := e.FromHost(eps, b.B, lat.C, lat.H, lat.W)
		if o.SNRGamma <= 0 {
			loss = s.Keep(e.MSELoss(pred, target))
			return
		}
		d := e.Sub(pred, target)
		perSample := e.Mean(e.Mul(d, d), false, 1, 2, 3)
		loss = s.Keep(e.Reshape(e.MeanAll(e.Mul(perSample, e.FromHost(w, b.B))), 1))
	})
	if err == nil {
		err = ferr
	}
	return loss, err
}

// captionStates are the batch's caption states [B,L,D] and mask [B·L], with each sample
// whose dropout draw falls under p replaced by the empty caption's.
func captionStates(b *data.Batch, drop []float32, p float64) (hidden, mask []float32) {
	hidden, mask = b.Text.Hidden, b.Text.Mask
	l, d := b.Text.L, b.Text.D
	cloned := false
	for i, u := range drop {
		if p <= 0 || float64(u) >= p {
			continue
		}
		if !cloned {
			hidden, mask = append([]float32(nil), hidden...), append([]float32(nil), mask...)
			cloned = true
		}
		copy(hidden[i*l*d:(i+1)*l*d], b.EmptyText.Hidden[:l*d])
		copy(mask[i*l:(i+1)*l], b.EmptyText.Mask[:l])
	}
	return hidden, mask
}

// Sample implements family.Model: the initial latent noise from the request's seed (scaled
// by the solver's initial sigma), then at each of the solver's timesteps one transformer
// pass over [prompt, negative] (classifier-free guidance ε = ε_neg + g·(ε_prompt − ε_neg)
// when the guidance is above 1, the prompt alone otherwise), the first 4 predicted channels
// being ε, and a solver step; the final latents are decoded by the pipeline's VAE (divided
// by scaling_factor, plus shift_factor). The caption states are the request's, from the
// text-embedding cache: the T5 encoder is not loaded at validation. Previews decode the
// solver's x₀ estimate with the same VAE (no tiny preview autoencoder).
func (x *Model) Sample(ctx context.Context, req validation.Request) (*image.RGBA, error) {
	e := x.m.Engine()
	cfg := x.m.Config()
	f := x.vae.Config().Downscale()
	unit := f * cfg.PatchSize
	rw, rh := req.Resolution.W, req.Resolution.H
	if rw <= 0 || rh <= 0 || rw%unit != 0 || rh%unit != 0 {
		return nil, fmt.Errorf("%w: resolution %s is not a positive multiple of %d (VAE factor %d × patch size %d)", ErrSample, req.Resolution, unit, f, cfg.PatchSize)
	}
	if req.Steps < 1 {
		return nil, fmt.Errorf("%w: %d inference steps", ErrSample, req.Steps)
	}
	if req.PromptEmbeds == nil || (req.Guidance > 1 && req.NegativeEmbeds == nil) {
		return nil, fmt.Errorf("%w: the prompt's caption states are not in the request (the runner takes them from the text-embedding cache)", ErrSample)
	}
	name := req.Sampler
	if name == "" {
		name = x.sampler
	}
	solver, err := diffusion.NewSolver(name, x.valSched, x.valCfg, req.Steps)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSample, err)
	}
	defer e.NoGrad()()
	w, h := rw/f, rh/f
	c := cfg.InChannels
	n := c * h * w
	embeds := []*data.TextEmbedBatch{req.PromptEmbeds}
	guided := req.Guidance > 1
	if guided {
		embeds = append(embeds, req.NegativeEmbeds)
	}
	hidden, mask, l, d, err := stackEmbeds(embeds, cfg.TextWidth)
	if err != nil {
		return nil, err
	}
	bsz := len(embeds)
	var lat []float32
	if err := engine.Catch(func() {
		s := e.Scope()
		defer s.Close()
		var herr error
		if lat, herr = e.RandN(engine.NewRNG(req.Seed), 0, 1, 1, c, h, w).ToHost(); herr != nil {
			panic(herr)
		}
	}); err != nil {
		return nil, fmt.Errorf("%w: initial noise: %w", ErrSample, err)
	}
	if sigma := float32(solver.InitNoiseSigma()); sigma != 1 {
		for i := range lat {
			lat[i] *= sigma
		}
	}
	steps := solver.Timesteps()
	in := make([]float32, bsz*n)
	eps := make([]float32, n)
	for i, t := range steps {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		copy(in, lat)
		solver.ScaleInput(in[:n], i)
		for k := 1; k < bsz; k++ {
			copy(in[k*n:], in[:n])
		}
		out, err := x.predict(in, t, bsz, c, h, w, hidden, mask, l, d)
		if err != nil {
			return nil, err
		}
		for j := range eps {
			if guided {
				cond, uncond := out[j], out[n+j]
				eps[j] = uncond + float32(req.Guidance)*(cond-uncond)
			} else {
				eps[j] = out[j]
			}
		}
		if req.Preview != nil && validation.IsPreviewStep(i+1, len(steps), req.PreviewEvery) {
			img, err := x.decode(solver.PredictX0(eps, i, lat), c, h, w)
			if err != nil {
				return nil, err
			}
			req.Preview(validation.Preview{Step: i + 1, Total: len(steps), Timestep: t, Image: img})
		}
		if err := solver.Step(eps, i, lat); err != nil {
			return nil, fmt.Errorf("%w: %s step %d: %w", ErrSample, solver.Name(), i+1, err)
		}
	}
	return x.decode(lat, c, h, w)
}

// stackEmbeds stacks one-caption embeddings into [B,L,D] states and a [B·L] mask.
func stackEmbeds(bs []*data.TextEmbedBatch, width int) (hidden, mask []float32, l, d int, err error) {
	l, d = bs[0].L, bs[0].D
	for _, b := range bs {
		if b.B != 1 || b.L != l || b.D != d || d != width {
			return nil, nil, 0, 0, fmt.Errorf("%w: caption states [%d,%d,%d], want [1,%d,%d]", ErrSample, b.B, b.L, b.D, l, width)
		}
		hidden = append(hidden, b.Hidden...)
		mask = append(mask, b.Mask...)
	}
	return hidden, mask, l, d, nil
}

// predict runs the transformer on host latents in [bsz,c,h,w] at timestep t and returns
// its first c output channels of every sample, [bsz,c,h,w] on the host.
func (x *Model) predict(in []float32, t float64, bsz, c, h, w int, hidden, mask []float32, l, d int) ([]float32, error) {
	e := x.m.Engine()
	var host []float32
	var ferr error
	err := engine.Catch(func() {
		s := e.Scope()
		defer s.Close()
		ts := make([]float32, bsz)
		for i := range ts {
			ts[i] = float32(t)
		}
		y := e.FromHost(hidden, bsz, l, d)
		out, err := x.m.ForwardEmbeds(e.FromHost(in, bsz, c, h, w), ts, model.Embeds{Y: y, Mask: mask, Len: l})
		if err != nil {
			ferr = err
			return
		}
		if out.Dim(1) != c {
			out = e.Slice(out, 1, 0, c)
		}
		host, ferr = out.ToHost()
	})
	if err == nil {
		err = ferr
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSample, err)
	}
	return host, nil
}

// decode turns model latents [1,c,h,w] into an image with the VAE.
func (x *Model) decode(lat []float32, c, h, w int) (*image.RGBA, error) {
	e := x.m.Engine()
	var px []float32
	var ferr error
	err := engine.Catch(func() {
		s := e.Scope()
		defer s.Close()
		out, err := x.vae.Decode(e.FromHost(lat, 1, c, h, w))
		if err != nil {
			ferr = err
			return
		}
		px, ferr = out.ToHost()
	})
	if err == nil {
		err = ferr
	}
	if err != nil {
		return nil, fmt.Errorf("%w: vae decode: %w", ErrSample, err)
	}
	f := x.vae.Config().Downscale()
	return validation.ToImage(px, w*f, h*f), nil
}

// linkedComponents are the pipeline folders Save links from the base: everything
// PixArtSigmaPipeline loads besides the trained transformer.
var linkedComponents = []string{"vae", "text_encoder", "tokenizer", schedulerDir}

// Save implements family.Model: the diffusers pipeline layout in dir, which
// PixArtSigmaPipeline.from_pretrained(dir) loads. transformer/ is written with the base's
// config.json and the base's tensor names, shapes and dtypes (model.SaveTransformer); the
// frozen components are links to the base's resolved files (each file a symbolic link to
// its final target, e.g. the Hub cache's blob, so the link survives a snapshot's removal
// of the symlink chain), copied where links cannot be made; model_index.json is the base's.
func (x *Model) Save(dir string) error {
	if err := x.m.SaveTransformer(filepath.Join(dir, transformerDir)); err != nil {
		return err
	}
	for _, comp := range linkedComponents {
		src := filepath.Join(x.pipeline, comp)
		if _, err := os.Stat(src); errors.Is(err, os.ErrNotExist) {
			continue // a pipeline without that component (no tokenizer folder, say)
		}
		if err := linkTree(src, filepath.Join(dir, comp)); err != nil {
			return fmt.Errorf("pixart: save %s: %w", comp, err)
		}
	}
	b, err := os.ReadFile(filepath.Join(x.pipeline, modelIndex))
	if err != nil {
		return fmt.Errorf("pixart: save: %w", err)
	}
	return writeFile(filepath.Join(dir, modelIndex), b)
}

// linkTree makes dst mirror the folder src: its folders as folders, its files as links to
// their resolved targets (copies when the file system refuses links). A file already at
// dst is replaced.
func linkTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, de os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		out := filepath.Join(dst, rel)
		info, err := os.Stat(p) // follows links: a snapshot's files are links to blobs
		if err != nil {
			return err
		}
		if info.IsDir() {
			return os.MkdirAll(out, 0o755)
		}
		target, err := filepath.EvalSymlinks(p)
		if err != nil {
			return err
		}
		if target, err = filepath.Abs(target); err != nil {
			return err
		}
		if err := os.Remove(out); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		if err := os.Symlink(target, out); err == nil {
			return nil
		}
		return copyFile(target, out)
	})
}

// copyFile copies src to dst (written whole, then renamed into place).
func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return writeFile(dst, b)
}

// writeFile writes b to path through internal/atomicfile, creating its folder.
func writeFile(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return atomicfile.Write(path, b, 0o644)
}

// CheckpointWeights implements family.Model: transformer/ as the final model has it — the
// base's config.json and its tensors in the base's dtypes (a bf16 base checkpoints bf16, so
// the weights are what a bf16 run holds). checkpoint.TensorFile holds every tensor's bytes,
// so the encoded copy (half the float32 weights' size for bf16) is in memory beside the
// weights while the checkpoint is written.
func (x *Model) CheckpointWeights() ([]checkpoint.TensorFile, []checkpoint.Blob, error) {
	var ts []safetensors.Tensor
	for _, p := range x.m.Params() {
		v, err := p.ToHost()
		if err != nil {
			return nil, nil, fmt.Errorf("pixart: read %s: %w", p.Name, err)
		}
		dt, ok := x.dtypes[p.Name]
		if !ok {
			dt = safetensors.F32
		}
		st, err := safetensors.FromFloat32(p.Name, dt, p.Shape(), v)
		if err != nil {
			return nil, nil, fmt.Errorf("pixart: %s: %w", p.Name, err)
		}
		ts = append(ts, st)
	}
	cfg, err := os.ReadFile(filepath.Join(x.transformer, model.ConfigFile))
	if err != nil {
		return nil, nil, fmt.Errorf("pixart: checkpoint config: %w", err)
	}
	return []checkpoint.TensorFile{{Path: checkpoint.TransformerWeightsFile, Tensors: ts, Metadata: map[string]string{"format": "pt"}}},
		[]checkpoint.Blob{{Path: checkpoint.TransformerConfigFile, Data: cfg}}, nil
}

// RestoreWeights implements family.Model: every transformer parameter from the
// checkpoint's transformer/, read one tensor at a time, each with the model's shape.
func (x *Model) RestoreWeights(l *checkpoint.Loaded) error {
	tr, err := l.OpenTensors(checkpoint.TransformerWeightsFile)
	if err != nil {
		return err
	}
	defer tr.Close()
	e := x.m.Engine()
	for _, p := range x.m.Params() {
		v, shape, err := safetensors.ReadFloat32(tr, p.Name)
		if err != nil {
			return fmt.Errorf("%w: %s: %w", checkpoint.ErrCorrupt, p.Name, err)
		}
		if want := p.Shape(); !slices.Equal(shape, want) {
			return fmt.Errorf("%w: %s has shape %v, model wants %v", checkpoint.ErrCorrupt, p.Name, shape, want)
		}
		if err := e.Backend().Upload(p.Buffer(), v); err != nil {
			return fmt.Errorf("pixart: upload %s: %w", p.Name, err)
		}
	}
	return nil
}

// Weight file names of a diffusers component for a variant v: diffusers puts the variant
// before ".safetensors" in a single file and before ".json" in a sharded index.
func variantWeights(v string) (single, index string) {
	base := strings.TrimSuffix(model.TransformerWeights, ".safetensors")
	if v == "" {
		return model.TransformerWeights, model.TransformerWeights + ".index.json"
	}
	return base + "." + v + ".safetensors", model.TransformerWeights + ".index." + v + ".json"
}

// transformerVariant is the variant the transformer in dir is loaded with: variant when
// dir holds its files, else "" (the plain weights, as the Hub client falls back for a
// component without that variant).
func transformerVariant(dir, variant string) string {
	if variant == "" {
		return ""
	}
	single, index := variantWeights(variant)
	for _, f := range []string{single, index} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			return variant
		}
	}
	return ""
}

// storedDTypes reads the dtypes of the transformer's weight files in dir for variant
// (transformerVariant's), as model.LoadTransformer opens them.
func storedDTypes(dir, variant string) (map[string]safetensors.DType, error) {
	single, index := variantWeights(variant)
	var ck safetensors.Checkpoint
	var err error
	if _, serr := os.Stat(filepath.Join(dir, single)); serr == nil {
		ck, err = safetensors.Open(filepath.Join(dir, single))
	} else {
		ck, err = safetensors.OpenSharded(filepath.Join(dir, index), safetensors.ShardOptions{})
	}
	if err != nil {
		return nil, fmt.Errorf("pixart: transformer weights: %w", err)
	}
	defer ck.Close()
	out := map[string]safetensors.DType{}
	for _, n := range ck.Names() {
		if ti, ok := ck.Info(n); ok {
			out[n] = ti.DType
		}
	}
	return out, nil
}
