package runner

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"

	"simpletuner/plugins"
	dl "simpletuner/plugins/dataloader"
	"simpletuner/trainerproc/data"
	"simpletuner/trainerproc/engine"
	"simpletuner/trainerproc/family"
	"simpletuner/trainerproc/family/encoders"
	"simpletuner/trainerproc/family/footprint"
	"simpletuner/trainerproc/t5"
	"simpletuner/trainerproc/vae"
	"simpletuner/trainerproc/validation"
)

// Stage keys of the encoder caches, as SimpleTuner's webhooks spell them.
const (
	stageTextEmbeds = "init_text_embed_cache"
	stageVAECache   = "init_vae_cache"
)

// latentBatchSize is the number of same-bucket images per VAE call (data's default).
const latentBatchSize = 4

// caches are the encoder caches a latent family trains from, prepared by setupData before
// its model is built; the encoders themselves are freed by then.
type caches struct {
	// latents holds the VAE posteriors of every sample; nil for pixel families.
	latents *data.LatentCache
	// scale and shift map a posterior sample z to the model's latent (z − shift)·scale,
	// the VAE config's scaling_factor and shift_factor.
	scale, shift float32
	// text holds the caption embeddings by image dataset id (each image dataset reads its
	// own text_embeds dataset); nil for families without text embeddings.
	text map[string]*data.TextEmbedCache
	// validation holds the validation prompts' and the negative prompt's embeddings (the
	// default text_embeds dataset's cache, which they were added to); nil for families
	// without text embeddings.
	validation *data.TextEmbedCache
}

// textEmbedDir is the cache directory of the text_embeds dataset an image dataset uses (its
// text_embeds, else the default one): "" keeps the embeddings in memory (a memory backend,
// or no text_embeds dataset at all).
func textEmbedDir(dcfg *data.Config, ds *data.DatasetConfig) (dir string, batch int) {
	te, ok := dcfg.DefaultTextEmbeds()
	if ds.TextEmbeds != "" {
		te, ok = dcfg.Dataset(ds.TextEmbeds)
	}
	if !ok || te.Type == dl.BackendMemory {
		if ok {
			return "", te.WriteBatchSize
		}
		return "", 0
	}
	return te.CacheDir, te.WriteBatchSize
}

// vaeDir is the VAE component directory of a job: the "vae" override, else the pipeline's
// vae/ ("" without either).
func vaeDir(s *Settings) string {
	if d := s.Components[componentVAE]; d != "" || s.Pretrained == "" {
		return d
	}
	return filepath.Join(s.Pretrained, "vae")
}

// encoderIssues refuses at submission a job whose family trains from encoder caches
// (latents, text embeddings) without a base model to take the encoders from.
func (r *Runner) encoderIssues(s *Settings) []plugins.Issue {
	if s.Cfg.String(optPretrained) != "" {
		return nil
	}
	p, err := r.plan(s, false)
	if err != nil {
		return nil // checkModel reports it
	}
	if c := p.Caches(); c.Latents || c.TextEmbeds {
		return []plugins.Issue{{Option: optPretrained, Severity: "error", Message: fmt.Sprintf(
			"%s trains on VAE latents and text embeddings, which the base model's VAE and text encoder make: name its pipeline", p.Name())}}
	}
	return nil
}

// textBatch is the largest write_batch_size of the text_embeds datasets the image datasets
// use: the most captions the text encoder takes at once.
func textBatch(dcfg *data.Config) int {
	batch := 0
	for i := range dcfg.Datasets {
		if ds := &dcfg.Datasets[i]; !ds.Disabled && ds.DatasetType == data.TypeImage {
			_, b := textEmbedDir(dcfg, ds)
			batch = max(batch, b)
		}
	}
	if batch == 0 {
		batch = 128 // data's default write_batch_size
	}
	return batch
}

// encodeNeeds are the encode phases of a family that trains from encoder caches, for
// memoryIssue: the text encoder over a write_batch_size of captions (the largest of the
// text_embeds datasets used), and the VAE over a batch of each dataset's largest bucket.
// Encoders it cannot read the config of are left to the run, which reports them. Host
// staging counts only on a device backend.
func encodeNeeds(s *Settings, p family.Plan, dcfg *data.Config, plans []data.BatchPlan, e *engine.Engine, device bool, fits func(footprint.Memory) bool) []need {
	c := p.Caches()
	if s.Pretrained == "" || !c.Latents && !c.TextEmbeds {
		return nil
	}
	var out []need
	if c.TextEmbeds {
		batch := textBatch(dcfg)
		if m, err := encoders.T5Memory(s.Pretrained, batch, p.CaptionLen()); err == nil {
			mem := footprint.Memory{Weights: m.Weights, Activations: m.Activations}
			if device {
				mem.HostCache = m.HostStaging
			}
			lower := "lower write_batch_size of the text_embeds dataset (--data_backend_config)"
			if !fits(mem) {
				lower += textBatchHint(s.Pretrained, batch, p.CaptionLen(), device, fits)
			}
			out = append(out, need{mem: mem, option: "--data_backend_config",
				what:  fmt.Sprintf("encoding captions with the text encoder (batch %d of %d tokens)", batch, p.CaptionLen()),
				lower: lower})
		}
	}
	if c.Latents {
		cfg, err := vae.LoadConfig(vaeDir(s))
		if err != nil {
			return out
		}
		encode := func(w, h int) footprint.Memory {
			wb, ab := vae.EncodeMemory(e, cfg, latentBatchSize, h, w)
			return footprint.Memory{Weights: wb, Activations: ab}
		}
		for _, bp := range plans {
			opt, lower := "--data_backend_config", fmt.Sprintf("lower the resolution of dataset %q in the dataloader (--data_backend_config)", bp.DatasetID)
			if bp.FromOptions {
				opt, lower = "--resolution", "lower --resolution"
			}
			out = append(out, need{mem: encode(bp.W, bp.H), option: opt, lower: lower, edge: max(bp.W, bp.H),
				what: fmt.Sprintf("encoding dataset %q with the VAE at %dx%d, batch %d", bp.DatasetID, bp.W, bp.H, latentBatchSize),
				fit: func(edge int) bool {
					w, h := scaleEdge(bp.W, bp.H, edge, p.Align())
					return fits(encode(w, h))
				}})
		}
	}
	return out
}

// textBatchHint says how far to lower write_batch_size: the largest batch below batch whose
// text-encoder pass fits (the weights do not shrink with it, so it may be none).
func textBatchHint(dir string, batch, maxLen int, device bool, fits func(footprint.Memory) bool) string {
	cfg, err := t5.LoadConfig(filepath.Join(dir, t5.TextEncoderDir)) // read once, probed many times
	if err != nil {
		return ""
	}
	ok := func(b int) bool {
		m := cfg.Memory(b, maxLen)
		mem := footprint.Memory{Weights: m.Weights, Activations: m.Activations}
		if device {
			mem.HostCache = m.HostStaging
		}
		return fits(mem)
	}
	if !ok(1) {
		return " (even a batch of 1 does not fit: the encoder's weights alone are too large)"
	}
	lo, hi := 1, batch // ok(lo), !ok(hi)
	for hi-lo > 1 {
		if mid := (lo + hi) / 2; ok(mid) {
			lo = mid
		} else {
			hi = mid
		}
	}
	return fmt.Sprintf(" (up to %d fits)", lo)
}

// prepareTextEmbeds loads the text encoder of the pipeline directory, completes the
// text-embedding cache of every text_embeds dataset the image datasets use with their
// captions and the empty caption, and frees the encoder.
func (t *trainer) prepareTextEmbeds(ctx context.Context, dcfg *data.Config) error {
	t.ev.stage(stageTextEmbeds, "running", "Loading text embedding cache(s)...", nil, nil)
	fail := func(err error) error { return t.cacheFailed(stageTextEmbeds, "Text embedding cache", err) }
	dir := t.s.Pretrained
	if dir == "" {
		return fail(fmt.Errorf("%w: %s encodes captions with its pipeline's text encoder: set --pretrained_model_name_or_path", ErrConfig, t.plan.Name()))
	}
	byDir := map[string]int{} // cache dir → write_batch_size
	var order []string
	users := map[string]string{} // image dataset → cache dir
	for i := range dcfg.Datasets {
		ds := &dcfg.Datasets[i]
		if ds.Disabled || ds.DatasetType != data.TypeImage {
			continue
		}
		d, batch := textEmbedDir(dcfg, ds)
		if _, ok := byDir[d]; !ok {
			order = append(order, d)
		}
		byDir[d] = max(byDir[d], batch)
		users[ds.ID] = d
	}
	maxLen := t.plan.CaptionLen()
	captions := t.loader.Captions()
	// The validation prompts and the negative prompt go into one cache (the default
	// text_embeds dataset's, else the first), as SimpleTuner caches them, so sampling needs
	// no text encoder.
	var valDir string
	if len(order) > 0 {
		valDir = order[0]
	}
	if te, ok := dcfg.DefaultTextEmbeds(); ok && te.Type != dl.BackendMemory {
		if _, used := byDir[te.CacheDir]; used {
			valDir = te.CacheDir
		}
	}
	valCaptions := t.validationCaptions()
	largest := min(textBatch(dcfg), len(captions)+len(valCaptions)+1) // the empty caption is encoded too
	mem, err := encoders.T5Memory(dir, largest, maxLen)
	if err != nil {
		return fail(fmt.Errorf("%w: text encoder: %w", ErrConfig, err))
	}
	if err := t.checkEncodeMemory(footprint.Memory{Weights: mem.Weights, Activations: mem.Activations, HostCache: mem.HostStaging},
		fmt.Sprintf("encoding captions with the text encoder (batch %d of %d tokens)", largest, maxLen), "lower write_batch_size of the text_embeds dataset"); err != nil {
		return fail(err)
	}
	var topts encoders.T5Options
	if pp, ok := t.plan.(family.CaptionPreprocessor); ok {
		topts.PreprocessName, topts.Preprocess = pp.CaptionPreprocess()
	}
	enc, err := encoders.LoadT5(t.e, dir, topts)
	if err != nil {
		return fail(fmt.Errorf("load text encoder: %w", err))
	}
	built := map[string]*data.TextEmbedCache{}
	var stats data.EncodeStats
	_, err = watchingCommands(t, ctx, "the text embedding cache is being built", func(ctx context.Context) (struct{}, error) {
		for i, d := range order {
			caps := captions
			if d == valDir && len(valCaptions) > 0 {
				caps = append(slices.Clone(captions), valCaptions...)
			}
			c, err := data.EnsureTextEmbeds(ctx, d, caps, maxLen, enc, data.EncodeOptions{BatchSize: byDir[d], Workers: t.opts.Threads,
				Progress: everyPercent(func(p data.EncodeProgress) {
					t.ev.stage(stageTextEmbeds, "running", fmt.Sprintf("Encoding captions: %d of %d", p.Hits+p.Encoded, p.Total),
						progressOf(p), map[string]any{"cache_dir": d, "backend": i + 1, "backends": len(order)})
				})})
			if err != nil {
				return struct{}{}, fmt.Errorf("text embedding cache %s: %w", cacheName(d), err)
			}
			built[d] = c
			st := c.Stats()
			stats.Hits += st.Hits
			stats.Built += st.Built
			stats.Stale += st.Stale
			stats.Corrupt += st.Corrupt
		}
		return struct{}{}, nil
	})
	if err != nil {
		enc.Free()
		return fail(err)
	}
	enc.Free() // before the model is built: the caches hold no reference to it
	t.caches.text = map[string]*data.TextEmbedCache{}
	for id, d := range users {
		t.caches.text[id] = built[d]
	}
	t.caches.validation = built[valDir]
	t.ev.stage(stageTextEmbeds, "completed", "Text embedding cache initialisation complete", &stageProgress{Current: int64(stats.Hits + stats.Built),
		Total: int64(stats.Hits + stats.Built), Percent: 100}, map[string]any{"hits": stats.Hits, "built": stats.Built, "stale": stats.Stale, "corrupt": stats.Corrupt})
	return nil
}

// validationCaptions are the prompts built-in validation renders and its negative prompt
// (the empty caption is always cached); none without built-in validation.
func (t *trainer) validationCaptions() []string {
	s := t.s
	if !s.HasValidation() || s.ValidationMethod == "external-script" {
		return nil
	}
	var out []string
	for _, p := range validation.Prompts(s.ValidationPrompt, s.PromptLibrary) {
		out = append(out, p.Text)
	}
	return append(out, s.ValidationNegative)
}

// validationEmbeds are the cached states of a validation prompt and of the negative
// prompt, for families that sample from text embeddings; nil, nil for the others.
func (c *caches) validationEmbeds(prompt, negative string) (p, n *data.TextEmbedBatch, err error) {
	if c.validation == nil {
		return nil, nil, nil
	}
	if p, err = c.validation.Load([]string{prompt}); err != nil {
		return nil, nil, fmt.Errorf("validation prompt embedding: %w", err)
	}
	if n, err = c.validation.Load([]string{negative}); err != nil {
		return nil, nil, fmt.Errorf("negative prompt embedding: %w", err)
	}
	return p, n, nil
}

// prepareLatents loads the VAE (the pipeline's vae/, or the "vae" component override),
// completes the latent cache of every sample in its dataset's cache_dir_vae, drops the
// samples it could not encode, and frees the VAE.
func (t *trainer) prepareLatents(ctx context.Context) error {
	t.ev.stage(stageVAECache, "running", "VAE Cache initialising", nil, nil)
	fail := func(err error) error { return t.cacheFailed(stageVAECache, "VAE cache", err) }
	dir := vaeDir(t.s)
	if dir == "" {
		return fail(fmt.Errorf("%w: %s trains on VAE latents: set --pretrained_model_name_or_path", ErrConfig, t.plan.Name()))
	}
	cfg, err := vae.LoadConfig(dir)
	if err != nil {
		return fail(fmt.Errorf("%w: vae: %w", ErrConfig, err))
	}
	items := t.loader.LatentItems()
	batch := min(latentBatchSize, len(items))
	var worst footprint.Memory
	var worstWH [2]int
	seen := map[[2]int]bool{} // a size's estimate once, not once per image
	for _, it := range items {
		if seen[[2]int{it.W, it.H}] {
			continue
		}
		seen[[2]int{it.W, it.H}] = true
		w, a := vae.EncodeMemory(t.e, cfg, batch, it.H, it.W)
		if m := (footprint.Memory{Weights: w, Activations: a}); m.Total() > worst.Total() {
			worst, worstWH = m, [2]int{it.W, it.H}
		}
	}
	if err := t.checkEncodeMemory(worst, fmt.Sprintf("encoding %dx%d images with the VAE (batch %d)", worstWH[0], worstWH[1], batch),
		"lower the datasets' resolution"); err != nil {
		return fail(err)
	}
	enc, err := encoders.LoadVAE(t.e, dir, t.s.Cfg.String(optVariant))
	if err != nil {
		return fail(fmt.Errorf("load vae: %w", err))
	}
	warnings := 0 // EnsureLatents serialises Warn
	c, err := watchingCommands(t, ctx, "the VAE cache is being built", func(ctx context.Context) (*data.LatentCache, error) {
		return data.EnsureLatents(ctx, items, enc, data.EncodeOptions{BatchSize: latentBatchSize, Workers: t.opts.Threads,
			Warn: func(w data.Warning) {
				if warnings++; warnings <= 50 { // as setupData: a folder of bad files must not flood the stream
					t.ev.warn("Dataset warning", w.String(), map[string]any{"dataset_id": w.DatasetID, "path": w.Path, "reason": w.Reason})
				}
			},
			Progress: everyPercent(func(p data.EncodeProgress) {
				t.ev.stage(stageVAECache, "running", fmt.Sprintf("Encoding images: %d of %d", p.Hits+p.Encoded, p.Total), progressOf(p), nil)
			})})
	})
	enc.Free() // before the model is built
	if err != nil {
		return fail(fmt.Errorf("latent cache: %w", err))
	}
	dropped, err := t.loader.DropUncached(c)
	if err != nil {
		return fail(fmt.Errorf("latent cache: %w", err))
	}
	t.caches.latents = c
	t.caches.scale, t.caches.shift = float32(cfg.ScalingFactor), float32(cfg.Shift())
	st := c.Stats()
	t.ev.stage(stageVAECache, "completed", "VAE cache initialization complete", &stageProgress{Current: int64(st.Hits + st.Built),
		Total: int64(st.Hits + st.Built), Percent: 100}, map[string]any{"hits": st.Hits, "built": st.Built, "stale": st.Stale,
		"corrupt": st.Corrupt, "skipped": st.Skipped, "dropped": dropped})
	return nil
}

// cacheFailed ends a cache stage: a stop or cancel while the cache was being built (what
// was written stays valid for the next run), or a failure with its cause.
func (t *trainer) cacheFailed(stage, what string, err error) error {
	if isUserEnding(err) {
		t.ev.stage("training_abort", "completed", "Training ended while building the caches ("+what+"); a later run reuses what was written", nil, nil)
		return err
	}
	t.ev.stage(stage, "failed", what+" failed: "+err.Error(), nil, nil)
	return err
}

// progressOf is a cache's filling as a stage's progress.
func progressOf(p data.EncodeProgress) *stageProgress {
	done, pct := p.Hits+p.Encoded, 100.0
	if p.Total > 0 {
		pct = 100 * float64(done) / float64(p.Total)
	}
	return &stageProgress{Current: int64(done), Total: int64(p.Total), Percent: pct}
}

// everyPercent wraps a progress callback so that it runs at the check, then once per whole
// percent gained, and at the end: a cache of a hundred thousand images reports a hundred
// events, not one per batch. The data package serialises the calls.
func everyPercent(f func(data.EncodeProgress)) func(data.EncodeProgress) {
	last := -1
	return func(p data.EncodeProgress) {
		pct := 100
		if p.Total > 0 {
			pct = 100 * (p.Hits + p.Encoded) / p.Total
		}
		if last < 0 || pct > last || p.Encoded == p.ToEncode {
			last = pct
			f(p)
		}
	}
}

// cacheName is how messages name a text-embedding cache directory.
func cacheName(dir string) string {
	if dir == "" {
		return "(in memory)"
	}
	return dir
}

// checkEncodeMemory refuses an encode phase whose estimate exceeds the machine, as the
// training check does (memoryIssue). m's device part (weights, activations) is compared
// with the device's memory on a device backend, with the host's otherwise; its HostCache is
// the host staging a load through a device backend needs, which a host backend does not.
func (t *trainer) checkEncodeMemory(m footprint.Memory, what, lower string) error {
	capa, err := readCapacity(t.be, t.r.opts.Memory)
	if err != nil {
		return err
	}
	if capa.device == 0 {
		m.HostCache = 0 // nothing to stage on a host backend
	}
	need, has := m.Device(), capa.host.String()
	over := false
	switch {
	case capa.device > 0 && need > capa.device:
		over, has = true, fmt.Sprintf("%s has %s", capa.deviceName, footprint.FormatBytes(capa.device))
	case capa.device > 0 && m.Host() > capa.host.Capacity():
		over, need, has = true, m.Host(), "its host staging exceeds the machine's "+has
	case capa.device == 0 && need > capa.host.Capacity():
		over, has = true, "the machine has "+has
	}
	if over {
		return fmt.Errorf("%w: %s needs about %s (%s), but %s; %s", ErrConfig, what, footprint.FormatBytes(need), m, has, lower)
	}
	return nil
}

// fill adds to a batch of a latent family what its loss reads from the caches: a sample of
// each item's posterior drawn from rng, scaled for the model, and the captions' embeddings
// with the empty caption's (caption dropout). Pixel families' batches are left as they are.
func (c *caches) fill(e *engine.Engine, b *data.Batch, rng *engine.RNG) error {
	if c.latents != nil {
		lb, err := c.latents.Load(b.Items)
		if err != nil {
			return err
		}
		var noise []float32
		if err := engine.Catch(func() {
			n := e.RandN(rng, 0, 1, len(lb.Mean))
			defer n.Free()
			noise, err = n.ToHost()
		}); err != nil {
			return err
		}
		if err != nil {
			return err
		}
		z := make([]float32, len(lb.Mean))
		lb.Sample(z, noise)
		for i, v := range z {
			z[i] = (v - c.shift) * c.scale
		}
		b.Latents = &data.Latents{C: lb.C, H: lb.H, W: lb.W, Values: z}
	}
	if c.text != nil {
		tc := c.text[b.DatasetID]
		if tc == nil {
			return fmt.Errorf("%w: no text embedding cache for dataset %q", data.ErrNotCached, b.DatasetID)
		}
		var err error
		if b.Text, err = tc.Load(b.Captions); err != nil {
			return err
		}
		if b.EmptyText, err = tc.Load([]string{""}); err != nil {
			return err
		}
	}
	return nil
}
