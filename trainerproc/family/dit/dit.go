// Package dit is the model family "dit" behind the family seam: it adapts the pixel-space
// diffusion transformer of trainerproc/model (its flavours, its pretrained directories,
// its memory estimates, its loss and adapters) and the Euler sampler of
// trainerproc/validation to family.Family, family.Plan and family.Model. It adds no
// behaviour of its own: a run through the seam trains, samples and saves exactly as the
// model package does.
package dit

import (
	"context"
	"encoding/json"
	"fmt"
	"image"
	"slices"
	"strings"

	"simpletuner/plugins"
	"simpletuner/trainerproc/checkpoint"
	"simpletuner/trainerproc/data"
	"simpletuner/trainerproc/engine"
	"simpletuner/trainerproc/family"
	"simpletuner/trainerproc/model"
	"simpletuner/trainerproc/safetensors"
	"simpletuner/trainerproc/validation"
)

// Name is the family's --model_family value.
const Name = "dit"

// DefaultFlavour is the flavour of a job that names none: the smallest, which is also
// what the family's default resolution is sized for.
const DefaultFlavour = "tiny"

// Files a full-weights checkpoint holds besides the checkpoint package's transformer
// names: the caption encoder, whose parameters carry textEncoderPrefix in the model.
const (
	textEncoderWeightsFile = model.TextEncoderDir + "/" + model.TextEncoderWeights
	textEncoderPrefix      = "text_encoder."
)

// Family is the dit family. The zero value is ready to use.
type Family struct{}

var _ family.Family = Family{}

// Describe implements family.Family: the flavours of trainerproc/model, and a default
// resolution equal to the default flavour's sample size. Attention runs over every 2×2
// pixel patch, so SimpleTuner's 1024 px would be 262144 tokens, whose attention scores
// alone need hundreds of GiB.
func (Family) Describe() plugins.Family {
	res := 0
	if cfg, err := model.Flavour(DefaultFlavour); err == nil {
		res = cfg.SampleSize
	}
	return plugins.Family{Name: Name, Flavours: model.Flavours(), DefaultFlavour: DefaultFlavour, DefaultResolution: res}
}

// Overrides implements family.Family: dit reads one directory in its Save layout and has
// no VAE, so no component comes from elsewhere.
func (Family) Overrides() []string { return nil }

// Plan implements family.Family. The configuration is the pretrained directory's when it
// has a readable one, else the flavour's (an unknown flavour is an error either way, as
// the model is built from the flavour when the directory does not exist).
func (Family) Plan(s family.Spec) (family.Plan, error) {
	flavour := s.Flavour
	if flavour == "" {
		flavour = DefaultFlavour
	}
	if !slices.Contains(model.Flavours(), strings.ToLower(flavour)) {
		return nil, fmt.Errorf("%w %q of family %s (supported: %s)", family.ErrUnknownFlavour, flavour, Name, strings.Join(model.Flavours(), ", "))
	}
	fallback, err := model.Flavour(flavour)
	if err != nil {
		return nil, err
	}
	fallback.Conditioning = s.Conditioning
	cfg := fallback
	if s.Pretrained != "" {
		if c, err := model.ReadConfig(s.Pretrained); err == nil {
			cfg = c
		}
	}
	captionLen := cfg.MaxTokens
	if s.CaptionLen > 0 {
		captionLen = min(captionLen, s.CaptionLen)
	}
	return &plan{cfg: cfg, fallback: fallback, pretrained: s.Pretrained, conditioning: s.Conditioning, captionLen: captionLen}, nil
}

// plan is a resolved dit model.
type plan struct {
	// cfg sizes the estimates; fallback is what Build initialises when the pretrained
	// directory does not exist.
	cfg, fallback model.Config
	pretrained    string
	// conditioning: the batches carry reference images (conditioning datasets).
	conditioning bool
	captionLen   int
}

func (p *plan) Name() string          { return Name + "/" + p.cfg.Flavour }
func (p *plan) Flavour() string       { return p.cfg.Flavour }
func (p *plan) Align() int            { return p.cfg.PatchSize }
func (p *plan) SampleSize() int       { return p.cfg.SampleSize }
func (p *plan) CaptionLen() int       { return p.captionLen }
func (p *plan) Caches() family.Caches { return family.Caches{Pixels: true, Tokens: true} }

func (p *plan) TrainableParams(ac *family.AdapterConfig) (int64, error) {
	return p.cfg.TrainableParams(adapters(ac))
}

func (p *plan) TrainingMemory(s family.TrainShape, ws engine.Workspacer) (family.Memory, error) {
	return p.cfg.TrainingMemory(model.TrainShape{Batch: s.Batch, Width: s.Width, Height: s.Height, CaptionLen: p.captionLen,
		Cond: s.Cond, Adapters: adapters(s.Adapters), OptimizerBytes: s.OptimizerBytes, Accumulation: s.Accumulation}, ws)
}

func (p *plan) SamplingMemory(s family.SampleShape, ws engine.Workspacer) (family.Memory, error) {
	return p.cfg.SamplingMemory(model.SampleShape{Width: s.Width, Height: s.Height, Batch: s.Batch, CaptionLen: p.captionLen},
		adapters(s.Adapters), ws)
}

func (p *plan) Build(e *engine.Engine, seed uint64) (family.Model, bool, error) {
	m, loaded, err := model.FromPretrained(e, p.pretrained, p.fallback, seed)
	if err != nil {
		return nil, false, err
	}
	return &Model{m: m, conditioning: p.conditioning, captionLen: p.captionLen}, loaded, nil
}

// adapters converts the seam's adapter configuration (nil: none) into the model's, whose
// targets stay PixArt's defaults.
func adapters(ac *family.AdapterConfig) *model.AdapterConfig {
	if ac == nil {
		return nil
	}
	return &model.AdapterConfig{Type: ac.Type, Rank: ac.Rank, Alpha: ac.Alpha, Dropout: ac.Dropout, Lycoris: ac.Lycoris, Seed: ac.Seed}
}

// Model is an allocated dit model.
type Model struct {
	m *model.Model
	// conditioning: batches' stacked reference images are passed to the loss.
	conditioning bool
	// captionLen is the token length of validation prompts: the data pipeline's.
	captionLen int
}

var _ family.Model = (*Model)(nil)

// Trainable implements family.Model.
func (d *Model) Trainable() []*engine.Parameter { return d.m.Trainable() }

// AttachAdapters implements family.Model.
func (d *Model) AttachAdapters(ac family.AdapterConfig) error {
	return d.m.AttachAdapters(*adapters(&ac))
}

// HasAdapters implements family.Model.
func (d *Model) HasAdapters() bool { return d.m.HasAdapters() }

// AdapterTensors implements family.Model (PEFT or LyCORIS names).
func (d *Model) AdapterTensors() ([]safetensors.Tensor, error) { return d.m.AdapterTensors() }

// LoadAdapterTensors implements family.Model.
func (d *Model) LoadAdapterTensors(ts []safetensors.Tensor) error { return d.m.LoadAdapterTensors(ts) }

// Save implements family.Model (model.Model.Save's diffusers layout).
func (d *Model) Save(dir string) error { return d.m.Save(dir) }

// Free implements family.Model.
func (d *Model) Free() { d.m.Free() }

// Loss implements family.Model: the rectified-flow loss of the batch's pixels and caption
// tokens, with the batch's complete reference images when the run is conditioned (a
// reference_loose batch missing some pairs trains without that input).
func (d *Model) Loss(b *data.Batch, rng *engine.RNG, o family.LossOptions) (*engine.Tensor, error) {
	e := d.m.Engine()
	x0 := e.FromHost(b.Pixels, b.B, 3, b.H, b.W)
	lo := model.LossOptions{CaptionDropout: o.CaptionDropout}
	if d.conditioning {
		for _, c := range b.Cond {
			if c.Stacked != nil {
				lo.Cond = append(lo.Cond, e.FromHost(c.Stacked, b.B, 3, c.H, c.W))
			}
		}
	}
	l, _, err := d.m.Loss(x0, model.Captions{Tokens: b.Tokens, Mask: b.Mask, Len: b.L}, rng, lo)
	return l, err
}

// Sample implements family.Model with validation's Euler sampler, prompts encoded by the
// data pipeline's byte tokenizer at the training caption length.
func (d *Model) Sample(ctx context.Context, req validation.Request) (*image.RGBA, error) {
	tok, err := data.NewTokenizer(d.captionLen)
	if err != nil {
		return nil, err
	}
	return (&validation.Sampler{Model: d.m, Tokenizer: tok}).Sample(ctx, req)
}

// CheckpointWeights implements family.Model: transformer and caption encoder in float32 in
// the diffusers layout, with transformer/config.json.
func (d *Model) CheckpointWeights() ([]checkpoint.TensorFile, []checkpoint.Blob, error) {
	var tr, te []safetensors.Tensor
	for _, p := range d.m.Params() {
		v, err := p.ToHost()
		if err != nil {
			return nil, nil, fmt.Errorf("read %s: %w", p.Name, err)
		}
		name, isText := strings.CutPrefix(p.Name, textEncoderPrefix)
		st, err := safetensors.FromFloat32(name, safetensors.F32, p.Shape(), v)
		if err != nil {
			return nil, nil, err
		}
		if isText {
			te = append(te, st)
		} else {
			tr = append(tr, st)
		}
	}
	cfg, err := transformerConfigJSON(d.m.Config())
	if err != nil {
		return nil, nil, err
	}
	meta := map[string]string{"format": "pt", "flavour": d.m.Config().Flavour}
	return []checkpoint.TensorFile{
			{Path: checkpoint.TransformerWeightsFile, Tensors: tr, Metadata: meta},
			{Path: textEncoderWeightsFile, Tensors: te, Metadata: meta}},
		[]checkpoint.Blob{{Path: checkpoint.TransformerConfigFile, Data: cfg}}, nil
}

// RestoreWeights implements family.Model: every parameter from CheckpointWeights' files,
// each with the model's shape.
func (d *Model) RestoreWeights(l *checkpoint.Loaded) error {
	tr, _, err := l.ReadTensors(checkpoint.TransformerWeightsFile)
	if err != nil {
		return err
	}
	te, _, err := l.ReadTensors(textEncoderWeightsFile)
	if err != nil {
		return err
	}
	for _, p := range d.m.Params() {
		src := tr
		name, isText := strings.CutPrefix(p.Name, textEncoderPrefix)
		if isText {
			src = te
		}
		if err := uploadParam(d.m.Engine(), p, src[name]); err != nil {
			return err
		}
	}
	return nil
}

// uploadParam overwrites a parameter with a checkpoint tensor of the same shape.
func uploadParam(e *engine.Engine, p *engine.Parameter, st safetensors.Tensor) error {
	if st.Name == "" {
		return fmt.Errorf("%w: weight %s missing", checkpoint.ErrCorrupt, p.Name)
	}
	shape := p.Shape()
	if len(shape) != len(st.Shape) {
		return fmt.Errorf("%w: %s has shape %v, model wants %v", checkpoint.ErrCorrupt, p.Name, st.Shape, shape)
	}
	for i := range shape {
		if shape[i] != st.Shape[i] {
			return fmt.Errorf("%w: %s has shape %v, model wants %v", checkpoint.ErrCorrupt, p.Name, st.Shape, shape)
		}
	}
	v, err := st.Float32()
	if err != nil {
		return fmt.Errorf("%w: %s: %w", checkpoint.ErrCorrupt, p.Name, err)
	}
	if err := e.Backend().Upload(p.Buffer(), v); err != nil {
		return fmt.Errorf("upload %s: %w", p.Name, err)
	}
	return nil
}

// transformerConfigJSON renders transformer/config.json as model.Save does (diffusers style:
// the config's fields at the top level beside _class_name).
func transformerConfigJSON(c model.Config) ([]byte, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	m["_class_name"] = model.ClassName
	return json.MarshalIndent(m, "", "  ")
}
