// Package pixart is the model family "pixart_sigma" behind the family seam: diffusers'
// PixArtTransformer2DModel (trainerproc/model) trained on cached VAE latents and T5 caption
// states as SimpleTuner trains PixArt-Σ — ε-prediction on the DDPM schedule of the
// pipeline's scheduler config (trainerproc/diffusion), the loss on the first 4 of the 8
// predicted channels, its forced settings — sampled for validation with classifier-free
// guidance and one of diffusion's solvers, decoded by the pipeline's VAE, and saved in the
// diffusers pipeline layout that PixArtSigmaPipeline loads.
package pixart

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"simpletuner/plugins"
	"simpletuner/trainerproc/diffusion"
	"simpletuner/trainerproc/engine"
	"simpletuner/trainerproc/family"
	"simpletuner/trainerproc/model"
	"simpletuner/trainerproc/t5"
	"simpletuner/trainerproc/vae"
)

// Name is the family's --model_family value, SimpleTuner's spelling.
const Name = "pixart_sigma"

// DefaultFlavour is SimpleTuner's default PixArt-Σ flavour.
const DefaultFlavour = "900M-1024-v0.6"

// Settings SimpleTuner forces for PixArt-Σ (its check_user_config).
const (
	// CaptionLen is the T5 caption length: --tokenizer_max_length is always 300.
	CaptionLen = 300
	// Align is the bucket alignment in pixels (aspect_bucket_alignment 64).
	Align = 64
	// MaxGradNorm is the gradient clipping norm forced unless --i_know_what_i_am_doing.
	MaxGradNorm = 0.01
	// DefaultSampler is the validation sampler when --validation_noise_scheduler is unset.
	DefaultSampler = diffusion.DefaultSolver
)

// Pipeline component folders a PixArtSigmaPipeline directory holds besides transformer/.
const (
	transformerDir = "transformer"
	vaeDir         = "vae"
	schedulerDir   = "scheduler"
	modelIndex     = "model_index.json"
)

// captionPreprocessing names the caption rewriting the T5 encoder's inputs get (the
// pipeline's clean_caption=True, which SimpleTuner passes): it enters the text encoder's
// identity, so embeddings cached under another preprocessing are rebuilt.
const captionPreprocessing = "pixart-clean-caption"

// flavour is one of SimpleTuner's PixArt-Σ flavours: its Hub repo, and the transformer
// shape that sizes estimates before the repo's own config.json is at hand.
type flavour struct {
	repo       string
	layers     int
	sampleSize int // latent pixels
}

// flavours are SimpleTuner's HUGGINGFACE_PATHS for PixArt-Σ. Every one is PixArt-XL/2's
// width (16 heads of 72) with T5-XXL captions; 900M adds 14 blocks to the 600M model.
var flavours = map[string]flavour{
	"900M-1024-v0.6":        {repo: "terminusresearch/pixart-900m-1024-ft-v0.6", layers: 42, sampleSize: 128},
	"900M-1024-v0.7-stage1": {repo: "terminusresearch/pixart-900m-1024-ft-v0.7-stage1", layers: 42, sampleSize: 128},
	"900M-1024-v0.7-stage2": {repo: "terminusresearch/pixart-900m-1024-ft-v0.7-stage2", layers: 42, sampleSize: 128},
	"600M-512":              {repo: "PixArt-alpha/PixArt-Sigma-XL-2-512-MS", layers: 28, sampleSize: 64},
	"600M-1024":             {repo: "PixArt-alpha/PixArt-Sigma-XL-2-1024-MS", layers: 28, sampleSize: 128},
	"600M-2048":             {repo: "PixArt-alpha/PixArt-Sigma-XL-2-2K-MS", layers: 28, sampleSize: 256},
}

// Flavours lists the flavour names in a stable order.
func Flavours() []string {
	names := make([]string, 0, len(flavours))
	for n := range flavours {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Repo is the Hub repo id of a flavour ("" for an unknown one): what
// --pretrained_model_name_or_path defaults to in SimpleTuner.
func Repo(flavour string) string { return flavours[flavour].repo }

// config is the transformer config a flavour's repo ships (estimates only; a job reads the
// repo's own transformer/config.json). interpolation_scale is diffusers' default for the
// sample size: sample_size/64, at least 1.
func (f flavour) config(name string) model.Config {
	return model.Config{Flavour: name, PixArt: true, SampleSize: f.sampleSize, InChannels: 4, OutChannels: 8, PatchSize: 2,
		NumLayers: f.layers, NumHeads: 16, HeadDim: 72, MLPRatio: 4, InterpolationScale: float64(max(f.sampleSize/64, 1)),
		NormEps: 1e-6, TextWidth: 4096, MaxTokens: CaptionLen}
}

// sdxlVAEFactor is the downscale of the SDXL-architecture VAE every flavour uses.
const sdxlVAEFactor = 8

// Family is the pixart_sigma family. The zero value is ready to use.
type Family struct{}

var (
	_ family.Family              = Family{}
	_ family.PretrainedDefaulter = Family{}
)

// Describe implements family.Family: SimpleTuner's flavours, and 1024 px as the default
// resolution (the default flavour's 128 latent pixels × 8).
func (Family) Describe() plugins.Family {
	f := flavours[DefaultFlavour]
	return plugins.Family{Name: Name, Flavours: Flavours(), DefaultFlavour: DefaultFlavour,
		DefaultResolution: f.sampleSize * sdxlVAEFactor}
}

// DefaultPretrained implements family.PretrainedDefaulter: a job without
// --pretrained_model_name_or_path trains from its flavour's repo, as in SimpleTuner.
func (Family) DefaultPretrained(flavour string) string {
	if flavour == "" {
		flavour = DefaultFlavour
	}
	return Repo(flavour)
}

// Overrides implements family.Family: the transformer may come from another repo or
// directory (--pretrained_transformer_model_name_or_path). The VAE is the pipeline's own,
// as SimpleTuner loads it (its vae_path is the base model unless set).
func (Family) Overrides() []string { return []string{transformerDir} }

// Plan implements family.Family. The transformer config is the pipeline's
// transformer/config.json (or the transformer override's) when there is one, else the
// flavour's; the VAE config is the pipeline's vae/config.json when there is one, else the
// SDXL VAE's.
func (Family) Plan(s family.Spec) (family.Plan, error) {
	name := s.Flavour
	if name == "" {
		name = DefaultFlavour
	}
	fl, ok := flavours[name]
	if !ok {
		return nil, fmt.Errorf("%w %q of family %s (supported: %s)", family.ErrUnknownFlavour, name, Name, strings.Join(Flavours(), ", "))
	}
	sampler := s.Sampler
	if sampler == "" {
		sampler = DefaultSampler
	}
	if names := diffusion.SolverNames(); !slices.Contains(names, sampler) {
		return nil, fmt.Errorf("%w %q for %s (supported: %s)", family.ErrUnknownSampler, sampler, Name, strings.Join(names, ", "))
	}
	p := &plan{flavour: name, spec: s, sampler: sampler, cfg: fl.config(name), vae: vae.SDXLConfig()}
	if s.Conditioning {
		return nil, fmt.Errorf("%w: %s trains without conditioning datasets (no ControlNet or edit input here); remove conditioning_data from the dataloader", family.ErrUnknownFlavour, Name)
	}
	if dir := p.transformerDir(); dir != "" {
		if _, err := os.Stat(filepath.Join(dir, model.ConfigFile)); err == nil {
			cfg, err := model.ReadTransformerConfig(dir)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", Name, err)
			}
			cfg.Flavour = name
			p.cfg, p.fromDir = cfg, true
		}
	}
	if dir := p.vaeDir(); dir != "" {
		if _, err := os.Stat(filepath.Join(dir, vae.ConfigFile)); err == nil {
			c, err := vae.LoadConfig(dir)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", Name, err)
			}
			p.vae = c
		}
	}
	return p, nil
}

// plan is a resolved pixart_sigma model.
type plan struct {
	flavour string
	spec    family.Spec
	sampler string
	// cfg is the transformer's config (fromDir: read from the pipeline), vae the VAE's.
	cfg     model.Config
	fromDir bool
	vae     vae.Config
}

var (
	_ family.Plan                = (*plan)(nil)
	_ family.CaptionPreprocessor = (*plan)(nil)
	_ family.SettingsForcer      = (*plan)(nil)
	_ family.CheckpointingPlan   = (*plan)(nil)
)

// componentDir is a pipeline component's folder: the run's override of it, else the
// pipeline's ("" without either).
func (p *plan) componentDir(name string) string {
	if d := p.spec.Components[name]; d != "" {
		return d
	}
	if p.spec.Pretrained == "" {
		return ""
	}
	return filepath.Join(p.spec.Pretrained, name)
}

func (p *plan) transformerDir() string { return p.componentDir(transformerDir) }
func (p *plan) vaeDir() string         { return p.componentDir(vaeDir) }

func (p *plan) Name() string    { return Name + "/" + p.flavour }
func (p *plan) Flavour() string { return p.flavour }

// Align implements family.Plan: SimpleTuner forces aspect_bucket_alignment 64 for PixArt
// (a multiple of the VAE factor times the patch size for every flavour).
func (p *plan) Align() int { return Align }

// SampleSize implements family.Plan: the transformer's sample_size in latent pixels times
// the VAE's downscale.
func (p *plan) SampleSize() int { return p.cfg.SampleSize * p.vae.Downscale() }

// CaptionLen implements family.Plan: always 300 tokens (forced; see Force).
func (p *plan) CaptionLen() int { return CaptionLen }

// Caches implements family.Plan: the transformer trains on VAE latents and T5 states.
func (p *plan) Caches() family.Caches { return family.Caches{Latents: true, TextEmbeds: true} }

// CaptionPreprocess implements family.CaptionPreprocessor: PixArt's pipeline cleans each
// caption twice before T5 tokenizes it (clean_caption=True).
func (p *plan) CaptionPreprocess() (string, func(string) string) {
	return captionPreprocessing, func(c string) string { return t5.PixArtPrompt(c, true) }
}

// SupportsGradientCheckpointing implements family.CheckpointingPlan.
func (p *plan) SupportsGradientCheckpointing() bool { return true }

// Force implements family.SettingsForcer with SimpleTuner's check_user_config for PixArt:
// the caption length is 300 tokens whatever --tokenizer_max_length says, and
// --max_grad_norm above 0.01 becomes 0.01 unless --i_know_what_i_am_doing. (The bucket
// alignment of 64 is Align; this trainer has no option to set it otherwise.)
func (p *plan) Force(u family.UserSettings) (family.UserSettings, []family.Forced) {
	var out []family.Forced
	if u.TokenizerMaxLength != 0 && u.TokenizerMaxLength != CaptionLen {
		out = append(out, family.Forced{Option: "--tokenizer_max_length", Value: CaptionLen, Message: fmt.Sprintf(
			"PixArt Sigma supports a max length of %d tokens: --tokenizer_max_length %d is ignored", CaptionLen, u.TokenizerMaxLength)})
		u.TokenizerMaxLength = CaptionLen
	}
	if u.MaxGradNorm > MaxGradNorm && !u.IKnowWhatIAmDoing {
		out = append(out, family.Forced{Option: "--max_grad_norm", Value: MaxGradNorm, Message: fmt.Sprintf(
			"PixArt Sigma requires --max_grad_norm=%g: %g is overridden (set --i_know_what_i_am_doing to keep it)", MaxGradNorm, u.MaxGradNorm)})
		u.MaxGradNorm = MaxGradNorm
	}
	return u, out
}

// TrainableParams implements family.Plan.
func (p *plan) TrainableParams(ac *family.AdapterConfig) (int64, error) {
	return p.cfg.TrainableParams(adapters(ac))
}

// latent converts a pixel size to latent pixels.
func (p *plan) latent(w, h int) (int, int) {
	f := p.vae.Downscale()
	return w / f, h / f
}

// vaeWeights is the VAE's weight bytes on the engine (loaded with the transformer for
// validation, so it counts in both estimates).
func (p *plan) vaeWeights() int64 {
	w, _ := vae.DecodeMemory(nil, p.vae, 1, 1, 1)
	return w
}

// TrainingMemory implements family.Plan: the transformer's training step on latents of
// the batch's size with 300-token captions (gradient checkpointing as the job sets it),
// plus the VAE kept for validation.
func (p *plan) TrainingMemory(s family.TrainShape, ws engine.Workspacer) (family.Memory, error) {
	w, h := p.latent(s.Width, s.Height)
	m, err := p.cfg.TrainingMemory(model.TrainShape{Batch: s.Batch, Width: w, Height: h, CaptionLen: CaptionLen,
		Adapters: adapters(s.Adapters), OptimizerBytes: s.OptimizerBytes, Accumulation: s.Accumulation,
		Checkpointing: p.spec.GradientCheckpointing}, ws)
	if err != nil {
		return m, err
	}
	m.Weights += p.vaeWeights()
	return m, nil
}

// SamplingMemory implements family.Plan: the transformer's sampling pass and then the VAE
// decode of one image at the validation size; the larger of their activations is the peak,
// as the decode starts after the last transformer pass has freed its tensors.
func (p *plan) SamplingMemory(s family.SampleShape, ws engine.Workspacer) (family.Memory, error) {
	w, h := p.latent(s.Width, s.Height)
	m, err := p.cfg.SamplingMemory(model.SampleShape{Width: w, Height: h, Batch: s.Batch, CaptionLen: CaptionLen},
		adapters(s.Adapters), ws)
	if err != nil {
		return m, err
	}
	var e *engine.Engine
	if be, ok := ws.(engine.Backend); ok {
		e = engine.New(be)
	}
	vw, va := vae.DecodeMemory(e, p.vae, 1, h, w)
	m.Weights += vw
	m.Activations = max(m.Activations, va)
	return m, nil
}

// Build implements family.Plan: the transformer from the pipeline (weights rounded to bf16
// for a bf16 run; gradient checkpointing as the job sets it), the scheduler config and the
// VAE for validation. A PixArt job always has a pipeline: its latents and caption states
// come from the pipeline's encoders.
func (p *plan) Build(e *engine.Engine, seed uint64) (family.Model, bool, error) {
	if p.spec.Pretrained == "" {
		return nil, false, fmt.Errorf("%w: %s loads its weights from a pipeline: set --pretrained_model_name_or_path (e.g. %s)",
			ErrPipeline, Name, Repo(p.flavour))
	}
	sc, err := diffusion.ReadSchedulerConfig(filepath.Join(p.spec.Pretrained, schedulerDir))
	if err != nil {
		return nil, false, fmt.Errorf("%w: %w", ErrPipeline, err)
	}
	// SimpleTuner builds its training DDPMScheduler with rescale_betas_zero_snr from
	// --rescale_betas_zero_snr (false: this trainer has no such option), and its
	// validation scheduler from the same config with its inference overrides.
	sc.RescaleBetasZeroSNR = false
	sched, err := diffusion.NewSchedule(sc)
	if err != nil {
		return nil, false, fmt.Errorf("%w: %w", ErrPipeline, err)
	}
	vc := diffusion.ValidationConfig(sc, "", false, "")
	vsched, err := diffusion.NewSchedule(vc)
	if err != nil {
		return nil, false, fmt.Errorf("%w: %w", ErrPipeline, err)
	}
	tdir := p.transformerDir()
	variant := transformerVariant(tdir, p.spec.Variant)
	tm, err := model.LoadTransformer(e, tdir, variant)
	if err != nil {
		return nil, false, err
	}
	ok := false
	defer func() {
		if !ok {
			tm.Free()
		}
	}()
	if p.spec.BF16Weights {
		if err := tm.RoundBF16(); err != nil {
			return nil, false, err
		}
	}
	tm.SetGradientCheckpointing(p.spec.GradientCheckpointing)
	dtypes, err := storedDTypes(tdir, variant)
	if err != nil {
		return nil, false, err
	}
	dec, err := vae.Load(e, p.vaeDir(), vae.LoadOptions{Variant: p.spec.Variant})
	if err != nil {
		return nil, false, fmt.Errorf("%w: vae: %w", ErrPipeline, err)
	}
	ok = true
	return &Model{m: tm, vae: dec, sched: sched, valSched: vsched, valCfg: vc, sampler: p.sampler, pipeline: p.spec.Pretrained,
		transformer: tdir, dtypes: dtypes}, true, nil
}

// ErrPipeline reports a pipeline directory this family cannot train from: no base model,
// or a scheduler or VAE folder missing or unreadable.
var ErrPipeline = errors.New("pixart: unusable pipeline")

// adapters converts the seam's adapter configuration (nil: none) into the model's, whose
// targets are PixArt's default LoRA targets.
func adapters(ac *family.AdapterConfig) *model.AdapterConfig {
	if ac == nil {
		return nil
	}
	return &model.AdapterConfig{Type: ac.Type, Rank: ac.Rank, Alpha: ac.Alpha, Dropout: ac.Dropout, Lycoris: ac.Lycoris, Seed: ac.Seed}
}
