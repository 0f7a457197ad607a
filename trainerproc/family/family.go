// Package family is the seam between the trainer's run loop and the model it trains. The
// runner, its validation and its checkpoints talk to a Family, the Plan it resolves for a
// job and the Model the plan builds, never to a concrete model package; a Registry keyed by
// --model_family holds the families a trainer binary offers and feeds its Info, which is
// what the daemon validates configurations against (docs/architecture.md §4).
//
// A family is three steps, each costing more than the one before:
//
//   - Family: the static description (name, flavours, default flavour and resolution).
//   - Plan: the model a job asks for, resolved from its flavour or its pretrained directory
//     without allocating anything: alignment, caption length, the caches the data pipeline
//     must prepare and memory estimates, so that a job is refused before it loads data.
//   - Model: the allocated weights on an engine: trainable parameters, adapters, the loss of
//     a batch, sampling, saving and checkpointing.
//
// The pixel-space transformer "dit" is trainerproc/family/dit.
package family

import (
	"context"
	"errors"
	"fmt"
	"image"
	"slices"
	"strings"

	"simpletuner/options"
	"simpletuner/plugins"
	"simpletuner/trainerproc/checkpoint"
	"simpletuner/trainerproc/data"
	"simpletuner/trainerproc/engine"
	"simpletuner/trainerproc/family/footprint"
	"simpletuner/trainerproc/safetensors"
	"simpletuner/trainerproc/validation"
)

// Sentinel errors of the seam.
var (
	// ErrUnknownFamily: --model_family names no family of this trainer.
	ErrUnknownFamily = errors.New("unknown model family")
	// ErrUnknownFlavour: --model_flavour names no flavour of the family.
	ErrUnknownFlavour = errors.New("unknown model flavour")
	// ErrInvalidRegistry: a registry was built from families that clash.
	ErrInvalidRegistry = errors.New("invalid model family registry")
	// ErrUnknownSampler: --validation_noise_scheduler names a sampler the family does not
	// have.
	ErrUnknownSampler = errors.New("unknown validation sampler")
)

// Memory is a memory estimate in bytes by what holds it (footprint.Memory).
type Memory = footprint.Memory

// Family is a model family a trainer can train.
type Family interface {
	// Describe is the family's static description: Info reports it, and the options
	// registries of the trainer and the daemon validate --model_family, --model_flavour
	// and new environments' --resolution with it.
	Describe() plugins.Family
	// Plan resolves the model a job asks for. It allocates nothing and reads at most the
	// pretrained directory's configuration.
	Plan(Spec) (Plan, error)
	// Overrides are the pipeline components ("transformer", "vae") the family can load
	// from elsewhere than --pretrained_model_name_or_path, through the per-component
	// options (--pretrained_vae_model_name_or_path, …); nil when it loads one directory.
	Overrides() []string
}

// Spec is what a job says about its model.
type Spec struct {
	// Flavour is --model_flavour; "" is the family's default flavour.
	Flavour string
	// Pretrained is a local directory in the diffusers pipeline layout, or "" for weights
	// initialised from the seed. A path that does not exist is a fresh start too (as
	// SimpleTuner's own dit-style presets are).
	Pretrained string
	// Conditioning is set when the dataloader pairs conditioning datasets with the image
	// datasets: the model then takes their images as an extra input.
	Conditioning bool
	// CaptionLen is --tokenizer_max_length; 0 keeps the family's own caption length.
	CaptionLen int
	// Components are the directories of the per-component overrides the run resolved
	// (Family.Overrides: "transformer", "vae"), by component; a component absent here
	// comes from Pretrained.
	Components map[string]string
	// Variant is --variant: the weight files' variant to prefer ("fp16"), "" for the
	// plain ones.
	Variant string
	// BF16Weights: the trained weights are held at bf16 precision (--base_model_precision
	// bf16, or the adamw_bf16 optimizer), so a family that loads them rounds them.
	BF16Weights bool
	// GradientCheckpointing is --gradient_checkpointing: a family that implements it
	// (CheckpointingPlan) recomputes its blocks in the backward pass and sizes its
	// estimates so.
	GradientCheckpointing bool
	// Sampler is --validation_noise_scheduler, "" for the family's default; a family
	// that cannot run the named sampler refuses the plan with ErrUnknownSampler.
	Sampler string
}

// Caches are the inputs the data pipeline must prepare for a family's batches.
type Caches struct {
	// Pixels: decoded, cropped images in [-1, 1] (data.Batch.Pixels).
	Pixels bool
	// Tokens: captions as the pipeline's byte-level token ids and mask (data.Batch.Tokens,
	// data.Tokenizer), for a family that encodes captions itself.
	Tokens bool
	// Latents: VAE latents of the images, cached in the dataset's cache_dir_vae.
	Latents bool
	// TextEmbeds: a text encoder's outputs per caption, cached in the text_embeds backend.
	TextEmbeds bool
}

// Missing lists what c asks for that have does not provide, by name ("latents").
func (c Caches) Missing(have Caches) []string {
	var out []string
	for _, x := range []struct {
		want, have bool
		name       string
	}{{c.Pixels, have.Pixels, "pixels"}, {c.Tokens, have.Tokens, "tokens"}, {c.Latents, have.Latents, "latents"}, {c.TextEmbeds, have.TextEmbeds, "text embeddings"}} {
		if x.want && !x.have {
			out = append(out, x.name)
		}
	}
	return out
}

// AdapterConfig selects and configures LoRA/LyCORIS adapters (--model_type=lora).
type AdapterConfig struct {
	// Type is --lora_type: "standard" (PEFT LoRA) or "lycoris".
	Type string
	// Rank, Alpha and Dropout are --lora_rank, --lora_alpha (0 means Rank) and
	// --lora_dropout.
	Rank    int
	Alpha   float64
	Dropout float64
	// Lycoris is the parsed --lycoris_config (Type "lycoris").
	Lycoris options.LycorisConfig
	// Seed seeds the adapters' initialisation.
	Seed uint64
}

// TrainShape is one training micro-batch as a memory estimate sees it.
type TrainShape struct {
	// Batch is --train_batch_size; Width and Height the largest bucket's pixels.
	Batch, Width, Height int
	// Cond are the (width, height) of each reference image a sample carries.
	Cond [][2]int
	// Adapters is nil for a full fine-tune.
	Adapters *AdapterConfig
	// OptimizerBytes is the bytes of optimizer state per trainable weight
	// (optim.StateBytesWith).
	OptimizerBytes int
	// Accumulation is --gradient_accumulation_steps.
	Accumulation int
}

// SampleShape is one validation image as a memory estimate sees it.
type SampleShape struct {
	// Width and Height are the image's pixels; Batch is 2 with classifier-free guidance.
	Width, Height, Batch int
	// Adapters is nil for a full fine-tune.
	Adapters *AdapterConfig
}

// Plan is the model a job trains, resolved but not allocated.
type Plan interface {
	// Name is "family/flavour" for messages ("dit/tiny").
	Name() string
	// Flavour is the resolved flavour ("custom" for a pretrained configuration that
	// matches none); checkpoints record it.
	Flavour() string
	// Align is the multiple image edges must be (buckets and validation resolutions).
	Align() int
	// SampleSize is the edge in pixels the model was built for: validation's size before
	// any batch has been seen.
	SampleSize() int
	// CaptionLen is the caption length in tokens the data pipeline pads to.
	CaptionLen() int
	// Caches are the inputs the data pipeline must prepare.
	Caches() Caches
	// TrainableParams counts the weights a run trains (adapters only when given).
	TrainableParams(adapters *AdapterConfig) (int64, error)
	// TrainingMemory is the peak of one training step on a backend with workspace ws
	// (nil: none).
	TrainingMemory(s TrainShape, ws engine.Workspacer) (Memory, error)
	// SamplingMemory is the peak of rendering one validation image, weights included and
	// optimizer state excluded.
	SamplingMemory(s SampleShape, ws engine.Workspacer) (Memory, error)
	// Build allocates the model on e: loaded from the pretrained directory when the spec
	// named one that exists (loaded is then true), else initialised from seed.
	Build(e *engine.Engine, seed uint64) (m Model, loaded bool, err error)
}

// CaptionPreprocessor is implemented by a plan whose text encoder takes captions rewritten
// before tokenization (PixArt cleans them as its pipeline does). The name enters the text
// encoder's identity: embeddings cached under another preprocessing are stale.
type CaptionPreprocessor interface {
	CaptionPreprocess() (name string, rewrite func(string) string)
}

// PretrainedDefaulter is implemented by a family whose flavours are published models: a
// job that sets no --pretrained_model_name_or_path trains from its flavour's (SimpleTuner's
// HUGGINGFACE_PATHS), which the runner then fetches like any repo id.
type PretrainedDefaulter interface {
	// DefaultPretrained is the Hub repo id of flavour ("" is the default flavour), or ""
	// when it has none.
	DefaultPretrained(flavour string) string
}

// CheckpointingPlan is implemented by a plan whose model implements gradient
// checkpointing (Spec.GradientCheckpointing); the runner tells the user that the option
// does nothing for the others.
type CheckpointingPlan interface {
	SupportsGradientCheckpointing() bool
}

// UserSettings are the job's settings a family may force (SettingsForcer).
type UserSettings struct {
	// TokenizerMaxLength is --tokenizer_max_length, 0 when unset.
	TokenizerMaxLength int
	// MaxGradNorm is --max_grad_norm.
	MaxGradNorm float64
	// IKnowWhatIAmDoing is --i_know_what_i_am_doing: the user opts out of the safeguards
	// a family forces.
	IKnowWhatIAmDoing bool
}

// Forced is a setting a family overrides whatever the job says, as SimpleTuner's models
// do in their check_user_config.
type Forced struct {
	// Option is the option's name ("--max_grad_norm").
	Option string
	// Value is the value the run uses instead, for the user (events carry it).
	Value any
	// Message says why, for the user.
	Message string
}

// SettingsForcer is implemented by a plan that forces settings. Force returns the settings
// the run uses and what it changed; the runner applies the first and reports each of the
// second as a warning, at validation and when the run starts.
type SettingsForcer interface {
	Force(UserSettings) (UserSettings, []Forced)
}

// LossOptions configure the loss of one batch.
type LossOptions struct {
	// CaptionDropout is --caption_dropout_probability.
	CaptionDropout float64
	// SNRGamma is --snr_gamma: a family with a noise schedule weighs each sample's loss by
	// min-SNR (min(SNR, γ)/SNR for ε-prediction); 0 disables it.
	SNRGamma float64
}

// Model is an allocated model of a family. It is used by one goroutine at a time.
type Model interface {
	// Trainable are the parameters the optimizer updates: every weight of a full
	// fine-tune, the adapters' once attached.
	Trainable() []*engine.Parameter
	// AttachAdapters freezes the base weights and adds adapters.
	AttachAdapters(AdapterConfig) error
	// HasAdapters reports whether adapters are attached.
	HasAdapters() bool
	// AdapterTensors are the adapters' weights under their saved names.
	AdapterTensors() ([]safetensors.Tensor, error)
	// LoadAdapterTensors overwrites the adapters with saved weights.
	LoadAdapterTensors([]safetensors.Tensor) error
	// Loss is the training loss of a batch, a [1] tensor in the caller's engine scope with
	// its graph recorded, drawing its noise from rng.
	Loss(b *data.Batch, rng *engine.RNG, o LossOptions) (*engine.Tensor, error)
	// Sample renders one validation image without recording a graph or touching the
	// weights; it is deterministic for a request's seed.
	Sample(ctx context.Context, req validation.Request) (*image.RGBA, error)
	// Save writes the full weights into dir in the diffusers layout.
	Save(dir string) error
	// CheckpointWeights are the full weights' files of a checkpoint (paths relative to
	// the checkpoint folder); RestoreWeights reads them back from a loaded checkpoint.
	CheckpointWeights() ([]checkpoint.TensorFile, []checkpoint.Blob, error)
	RestoreWeights(l *checkpoint.Loaded) error
	// Free releases the weights.
	Free()
}

// Registry holds the families of one trainer binary, keyed by name. It is built once at
// start-up and read-only afterwards, so it is safe for concurrent use.
type Registry struct {
	byName map[string]Family
	names  []string // sorted
}

// NewRegistry builds a registry of fams; their names must be unique and non-empty.
func NewRegistry(fams ...Family) (*Registry, error) {
	r := &Registry{byName: map[string]Family{}}
	for _, f := range fams {
		name := f.Describe().Name
		if name == "" {
			return nil, fmt.Errorf("%w: a family without a name", ErrInvalidRegistry)
		}
		if _, dup := r.byName[name]; dup {
			return nil, fmt.Errorf("%w: family %q registered twice", ErrInvalidRegistry, name)
		}
		r.byName[name] = f
		r.names = append(r.names, name)
	}
	slices.Sort(r.names)
	return r, nil
}

// Get returns the family --model_family names, or an ErrUnknownFamily error that lists
// the known ones.
func (r *Registry) Get(name string) (Family, error) {
	if f, ok := r.byName[name]; ok {
		return f, nil
	}
	return nil, fmt.Errorf("%w: %q (this trainer trains: %s)", ErrUnknownFamily, name, strings.Join(r.names, ", "))
}

// Overrides are the pipeline components family name can load from per-component options
// (Family.Overrides); none for an unknown family, which Get reports.
func (r *Registry) Overrides(name string) []string {
	if f, ok := r.byName[name]; ok {
		return f.Overrides()
	}
	return nil
}

// Describe lists the families' descriptions in name order, as Info reports them.
func (r *Registry) Describe() []plugins.Family {
	out := make([]plugins.Family, 0, len(r.names))
	for _, n := range r.names {
		out = append(out, r.byName[n].Describe())
	}
	return out
}
