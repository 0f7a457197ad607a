package model

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"simpletuner/trainerproc/engine"
	"simpletuner/trainerproc/safetensors"
)

// PixArtClassName is the _class_name of diffusers' PixArt-Σ transformer config.
const PixArtClassName = "PixArtTransformer2DModel"

// PixArtCaptionLen is the caption length PixArt-Σ trains with (SimpleTuner forces
// tokenizer_max_length 300); memory estimates of a PixArt config default to it.
const PixArtCaptionLen = 300

// transformerWeightsBase is the weights file name of a diffusers model folder without its
// ".safetensors" extension.
const transformerWeightsBase = "diffusion_pytorch_model"

// pixartSource is what LoadTransformer read and SaveTransformer writes back unchanged.
type pixartSource struct {
	// config is transformer/config.json as read (its fields are kept verbatim).
	config []byte
	// dtypes is each tensor's stored dtype, by name.
	dtypes map[string]safetensors.DType
}

// pixartDefaults are the __init__ defaults of diffusers' PixArtTransformer2DModel for the
// fields a config may leave out (an absent field takes the default; an explicit null is
// None, which some fields resolve differently).
var pixartDefaults = map[string]any{
	"num_attention_heads": 16, "attention_head_dim": 72, "in_channels": 4, "out_channels": 8,
	"num_layers": 28, "dropout": 0.0, "cross_attention_dim": 1152, "attention_bias": true,
	"sample_size": 128, "patch_size": 2, "activation_fn": "gelu-approximate",
	"num_embeds_ada_norm": 1000, "upcast_attention": false, "norm_type": "ada_norm_single",
	"norm_elementwise_affine": false, "norm_eps": 1e-6, "interpolation_scale": nil,
	"use_additional_conditions": nil, "caption_channels": nil, "attention_type": "default",
}

// pixartFields reads a diffusers config's fields with the defaults above; a nil value is
// JSON null (or an absent field whose default is None).
type pixartFields map[string]json.RawMessage

// get decodes field name into dst and reports whether it is non-null.
func (f pixartFields) get(name string, dst any) (bool, error) {
	raw, ok := f[name]
	if !ok {
		def := pixartDefaults[name]
		if def == nil {
			return false, nil
		}
		raw, _ = json.Marshal(def)
	}
	if string(raw) == "null" {
		return false, nil
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return false, fmt.Errorf("%w: %s: field %s: %w", ErrConfig, ConfigFile, name, err)
	}
	return true, nil
}

// ReadTransformerConfig reads a diffusers PixArtTransformer2DModel transformer/config.json:
// dir is the transformer folder (the one holding config.json). Fields take diffusers'
// defaults when absent; interpolation_scale null is max(sample_size/64, 1) and out_channels
// null is in_channels, as diffusers resolves them. Settings this implementation does not
// compute are refused with ErrConfig: a norm_type other than ada_norm_single,
// use_additional_conditions (the resolution and aspect-ratio embedders; null means true for
// sample_size 128), a cross_attention_dim other than the width, an activation other than
// gelu-approximate, attention_bias false, norm_elementwise_affine true, dropout, no
// caption_channels.
func ReadTransformerConfig(dir string) (Config, error) {
	cfg, _, err := readTransformerConfig(dir)
	return cfg, err
}

// readTransformerConfig is ReadTransformerConfig that also returns the file's bytes.
func readTransformerConfig(dir string) (Config, []byte, error) {
	path := filepath.Join(dir, ConfigFile)
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, nil, fmt.Errorf("%w: %w", ErrWeights, err)
	}
	var f pixartFields
	if err := json.Unmarshal(data, &f); err != nil {
		return Config{}, nil, fmt.Errorf("%w: %s: %w", ErrConfig, path, err)
	}
	var class string
	if _, err := f.get("_class_name", &class); err != nil {
		return Config{}, nil, err
	}
	if class != PixArtClassName {
		return Config{}, nil, fmt.Errorf("%w: %s is a %q, want %q", ErrConfig, path, class, PixArtClassName)
	}
	cfg, err := pixartConfig(f)
	if err != nil {
		return Config{}, nil, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, data, nil
}

// pixartConfig maps diffusers' fields to a Config and refuses what is not implemented.
func pixartConfig(f pixartFields) (Config, error) {
	c := Config{Flavour: "custom", PixArt: true, MLPRatio: 4}
	ints := []struct {
		name string
		dst  *int
	}{
		{"num_layers", &c.NumLayers}, {"num_attention_heads", &c.NumHeads},
		{"attention_head_dim", &c.HeadDim}, {"in_channels", &c.InChannels},
		{"patch_size", &c.PatchSize}, {"sample_size", &c.SampleSize},
	}
	for _, it := range ints {
		if ok, err := f.get(it.name, it.dst); err != nil {
			return Config{}, err
		} else if !ok {
			return Config{}, fmt.Errorf("%w: %s must not be null", ErrConfig, it.name)
		}
	}
	if ok, err := f.get("out_channels", &c.OutChannels); err != nil {
		return Config{}, err
	} else if !ok {
		c.OutChannels = c.InChannels
	}
	if ok, err := f.get("caption_channels", &c.TextWidth); err != nil {
		return Config{}, err
	} else if !ok {
		return Config{}, fmt.Errorf("%w: caption_channels is null: a PixArt transformer without caption_projection is not supported", ErrConfig)
	}
	if ok, err := f.get("interpolation_scale", &c.InterpolationScale); err != nil {
		return Config{}, err
	} else if !ok {
		c.InterpolationScale = float64(max(c.SampleSize/64, 1))
	}
	if ok, err := f.get("norm_eps", &c.NormEps); err != nil {
		return Config{}, err
	} else if !ok {
		return Config{}, fmt.Errorf("%w: norm_eps must not be null", ErrConfig)
	}
	var normType, act, attnType string
	var extra bool
	var cross, adaEmbeds int
	var bias, affine, upcast bool
	var dropout float64
	checks := []struct {
		name string
		dst  any
		bad  func(set bool) string // "" when the value is supported
	}{
		{"norm_type", &normType, func(set bool) string {
			if normType != "ada_norm_single" {
				return fmt.Sprintf("norm_type %q (only ada_norm_single is implemented)", normType)
			}
			return ""
		}},
		{"use_additional_conditions", &extra, func(set bool) string {
			if !set {
				extra = c.SampleSize == 128 // diffusers' resolution of null
			}
			if extra {
				return "use_additional_conditions true (or null with sample_size 128): the resolution and aspect-ratio embedders are not implemented"
			}
			return ""
		}},
		{"cross_attention_dim", &cross, func(set bool) string {
			if !set || cross != c.NumHeads*c.HeadDim {
				return fmt.Sprintf("cross_attention_dim must equal the width %d", c.NumHeads*c.HeadDim)
			}
			return ""
		}},
		{"activation_fn", &act, func(bool) string {
			if act != "gelu-approximate" {
				return fmt.Sprintf("activation_fn %q (only gelu-approximate is implemented)", act)
			}
			return ""
		}},
		{"attention_bias", &bias, func(bool) string {
			if !bias {
				return "attention_bias false (the attention projections have biases here)"
			}
			return ""
		}},
		{"norm_elementwise_affine", &affine, func(bool) string {
			if affine {
				return "norm_elementwise_affine true (the block norms have no parameters here)"
			}
			return ""
		}},
		{"num_embeds_ada_norm", &adaEmbeds, func(set bool) string {
			if !set {
				return "num_embeds_ada_norm null (diffusers refuses it with ada_norm_single)"
			}
			return ""
		}},
		{"dropout", &dropout, func(bool) string {
			if dropout != 0 {
				return fmt.Sprintf("dropout %g (not implemented)", dropout)
			}
			return ""
		}},
		{"attention_type", &attnType, func(bool) string {
			if attnType != "default" {
				return fmt.Sprintf("attention_type %q (only default is implemented)", attnType)
			}
			return ""
		}},
		// upcast_attention only changes the precision of half-precision attention; every
		// score is float32 here, so either value gives this model.
		{"upcast_attention", &upcast, func(bool) string { return "" }},
	}
	for _, ck := range checks {
		set, err := f.get(ck.name, ck.dst)
		if err != nil {
			return Config{}, err
		}
		if msg := ck.bad(set); msg != "" {
			return Config{}, fmt.Errorf("%w: %s", ErrConfig, msg)
		}
	}
	c.fillDefaults()
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// pixartConfigJSON is the config.json SaveTransformer writes for a model that was not
// loaded from disk: diffusers' fields for this configuration.
func (c Config) pixartConfigJSON() ([]byte, error) {
	v := map[string]any{}
	for k, d := range pixartDefaults {
		v[k] = d
	}
	for k, x := range map[string]any{
		"_class_name": PixArtClassName, "num_layers": c.NumLayers, "num_attention_heads": c.NumHeads,
		"attention_head_dim": c.HeadDim, "in_channels": c.InChannels, "out_channels": c.Outputs(),
		"patch_size": c.PatchSize, "sample_size": c.SampleSize, "caption_channels": c.TextWidth,
		"cross_attention_dim": c.Width(), "interpolation_scale": c.InterpolationScale,
		"norm_eps": c.NormEps, "use_additional_conditions": false,
	} {
		v[k] = x
	}
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("model: encode config: %w", err)
	}
	return append(data, '\n'), nil
}

// variantName inserts variant before the extension of a weights file name as diffusers does
// ("diffusion_pytorch_model.safetensors" → "diffusion_pytorch_model.bf16.safetensors",
// "….safetensors.index.json" → "….safetensors.index.bf16.json").
func variantName(name, variant string) string {
	if variant == "" {
		return name
	}
	i := strings.LastIndex(name, ".")
	return name[:i] + "." + variant + name[i:]
}

// openTransformerWeights opens dir's single weights file for variant, or its sharded index.
func openTransformerWeights(dir, variant string) (safetensors.Checkpoint, error) {
	single := filepath.Join(dir, variantName(TransformerWeights, variant))
	if _, err := os.Stat(single); err == nil {
		return safetensors.Open(single)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	index := filepath.Join(dir, variantName(transformerWeightsBase+safetensors.IndexSuffix, variant))
	if _, err := os.Stat(index); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("neither %s nor %s exists (is --variant right?): %w", single, index, err)
		}
		return nil, err
	}
	return safetensors.OpenSharded(index, safetensors.ShardOptions{})
}

// LoadTransformer loads a diffusers PixArtTransformer2DModel folder dir (config.json and
// diffusion_pytorch_model.safetensors, or the sharded .safetensors.index.json; the
// ".<variant>." files when variant is not empty) on e. Weights of any stored float dtype
// (F32, F16, BF16) become float32 parameters, read one tensor at a time; every tensor the
// config needs must be present with its shape, and no other may be (a mismatched folder is
// an error, not a partial load). RoundBF16 then rounds them for bf16 training.
func LoadTransformer(e *engine.Engine, dir, variant string) (*Model, error) {
	cfg, raw, err := readTransformerConfig(dir)
	if err != nil {
		return nil, err
	}
	src, err := openTransformerWeights(dir, variant)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrWeights, err)
	}
	defer src.Close()
	specs := cfg.paramShapes()
	want := make(map[string]bool, len(specs))
	for _, sp := range specs {
		want[sp.name] = true
	}
	for _, name := range src.Names() {
		if !want[name] {
			return nil, fmt.Errorf("%w: %s holds tensor %q, which this config has no place for", ErrWeights, dir, name)
		}
	}
	m := &Model{e: e, cfg: cfg, byName: map[string]*engine.Parameter{}, adapters: map[string]Adapter{}, pos: map[[2]int][]float32{},
		source: &pixartSource{config: raw, dtypes: map[string]safetensors.DType{}}}
	err = engine.Catch(func() {
		for _, sp := range specs {
			p := e.NewParameter(sp.name, e.Zeros(sp.shape...))
			m.params = append(m.params, p)
			m.byName[p.Name] = p
		}
	})
	for _, p := range m.params {
		if err != nil {
			break
		}
		ti, ok := src.Info(p.Name)
		switch {
		case !ok:
			err = fmt.Errorf("%w: %s: tensor %s missing", ErrWeights, dir, p.Name)
		case !slices.Equal(ti.Shape, p.Shape()):
			err = fmt.Errorf("%w: tensor %s has shape %v, want %v", ErrWeights, p.Name, ti.Shape, p.Shape())
		case ti.DType != safetensors.F32 && ti.DType != safetensors.F16 && ti.DType != safetensors.BF16:
			err = fmt.Errorf("%w: tensor %s is %s; F32, F16 or BF16 expected", ErrWeights, p.Name, ti.DType)
		default:
			m.source.dtypes[p.Name] = ti.DType
			v := make([]float32, ti.Numel())
			if err = src.Float32Into(p.Name, v); err != nil {
				err = fmt.Errorf("%w: tensor %s: %w", ErrWeights, p.Name, err)
			} else if err = e.Backend().Upload(p.Buffer(), v); err != nil {
				err = fmt.Errorf("model: upload %s: %w", p.Name, err)
			}
		}
	}
	if err != nil {
		m.Free()
		return nil, err
	}
	return m, nil
}

// RoundBF16 rounds every base weight to the nearest bfloat16 value (ties to even), so that
// float32 training starts from what --base_model_precision bf16 (or adamw_bf16's bf16
// parameters) would hold. Weights stored as BF16 are unchanged.
func (m *Model) RoundBF16() error {
	for _, p := range m.params {
		v, err := p.ToHost()
		if err != nil {
			return fmt.Errorf("model: round %s: %w", p.Name, err)
		}
		for i, x := range v {
			v[i] = safetensors.BF16ToFloat32(safetensors.Float32ToBF16(x))
		}
		if err := m.e.Backend().Upload(p.Buffer(), v); err != nil {
			return fmt.Errorf("model: round %s: %w", p.Name, err)
		}
	}
	return nil
}

// SaveTransformer writes dir/config.json and dir/diffusion_pytorch_model.safetensors in
// diffusers' layout, creating dir. A model loaded by LoadTransformer keeps its config.json
// byte for byte and each tensor's stored dtype (a BF16 base saves BF16, rounding to nearest
// even); a model built by New saves float32 with a generated config. Weights stream to disk
// one tensor at a time (only that tensor's host copy is held) through a temporary file
// renamed into place, so a crash leaves no half file under the final name.
func (m *Model) SaveTransformer(dir string) error {
	if !m.cfg.PixArt {
		return fmt.Errorf("%w: SaveTransformer writes a PixArt transformer; this is a dit model (use Save)", ErrConfig)
	}
	var cfgJSON []byte
	if m.source != nil {
		cfgJSON = m.source.config
	} else {
		var err error
		if cfgJSON, err = m.cfg.pixartConfigJSON(); err != nil {
			return err
		}
	}
	specs := make([]safetensors.Spec, len(m.params))
	for i, p := range m.params {
		dt := safetensors.F32
		if m.source != nil {
			dt = m.source.dtypes[p.Name]
		}
		specs[i] = safetensors.Spec{Name: p.Name, DType: dt, Shape: p.Shape()}
	}
	if err := writeFileAtomic(filepath.Join(dir, ConfigFile), cfgJSON); err != nil {
		return err
	}
	path := filepath.Join(dir, TransformerWeights)
	w, err := safetensors.Create(path, specs, map[string]string{"format": "pt"})
	if err != nil {
		return fmt.Errorf("model: %s: %w", path, err)
	}
	for _, p := range m.params {
		v, err := p.ToHost()
		if err == nil {
			err = w.WriteFloat32(p.Name, v)
		}
		if err != nil {
			w.Abort()
			return fmt.Errorf("model: write %s: %w", p.Name, err)
		}
	}
	if err := w.Commit(); err != nil {
		return fmt.Errorf("model: %w", err)
	}
	return nil
}

// Embeds is a caption batch as text-encoder states: Y [B, L, CaptionChannels] on the
// model's engine, Mask [B·L] row-major (1 real token, 0 padding) and Len L. Padded
// positions are ignored by cross-attention, whatever their states hold.
type Embeds struct {
	Y    *engine.Tensor
	Mask []float32
	Len  int
}

// ForwardEmbeds predicts [B, Outputs(), H, W] (ε in the first InChannels channels, then
// PixArt's learned-variance output) for latents xt [B, InChannels, H, W] at DDPM timesteps
// (host, one per sample: 0..999, fed to the sinusoid as they are) with captions c. H and W
// must be multiples of the patch size. Invalid inputs wrap ErrInput; engine failures come
// back as errors wrapping the engine's sentinels.
func (m *Model) ForwardEmbeds(xt *engine.Tensor, timesteps []float32, c Embeds) (out *engine.Tensor, err error) {
	if err := m.checkEmbeds(xt, timesteps, c); err != nil {
		return nil, err
	}
	err = engine.Catch(func() {
		// The forward pass's temporaries that the graph does not save are freed on return
		// (only the prediction stays in the caller's scope), so a training step holds only
		// what its backward pass needs.
		s := m.e.Scope()
		defer s.Close()
		mask := m.e.FromHost(c.Mask, xt.Dim(0), c.Len)
		out = s.Keep(m.transformer(xt, ddpmTimestepEmbedding(timesteps, timeFreqDim), c.Y, mask))
	})
	return out, err
}

// checkEmbeds validates a ForwardEmbeds batch against the model.
func (m *Model) checkEmbeds(xt *engine.Tensor, ts []float32, c Embeds) error {
	cfg := m.cfg
	if !cfg.PixArt {
		return fmt.Errorf("%w: this dit model encodes its own captions: call Forward with tokens", ErrInput)
	}
	if xt == nil || xt.Rank() != 4 || xt.Dim(1) != cfg.InChannels || xt.Dim(2)%cfg.PatchSize != 0 || xt.Dim(3)%cfg.PatchSize != 0 {
		var shape []int
		if xt != nil {
			shape = xt.Shape()
		}
		return fmt.Errorf("%w: latents %v, want [B,%d,H,W] with H and W multiples of %d", ErrInput, shape, cfg.InChannels, cfg.PatchSize)
	}
	bsz := xt.Dim(0)
	if len(ts) != bsz {
		return fmt.Errorf("%w: %d timesteps for batch %d", ErrInput, len(ts), bsz)
	}
	for _, t := range ts {
		if math.IsNaN(float64(t)) || math.IsInf(float64(t), 0) || t < 0 {
			return fmt.Errorf("%w: timestep %g (DDPM timesteps are 0..999)", ErrInput, t)
		}
	}
	if c.Y == nil || c.Y.Rank() != 3 || c.Y.Dim(0) != bsz || c.Y.Dim(1) != c.Len || c.Y.Dim(2) != cfg.TextWidth {
		var shape []int
		if c.Y != nil {
			shape = c.Y.Shape()
		}
		return fmt.Errorf("%w: caption states %v, want [%d,%d,%d] (batch, Len, caption_channels)", ErrInput, shape, bsz, c.Len, cfg.TextWidth)
	}
	if c.Len <= 0 || len(c.Mask) != bsz*c.Len {
		return fmt.Errorf("%w: caption mask of %d values for batch %d of length %d", ErrInput, len(c.Mask), bsz, c.Len)
	}
	return nil
}

// SetDropoutRNG sets the stream adapter dropout (--lora_dropout) draws from in the forward
// passes that record a graph (ForwardEmbeds in training); nil turns dropout off, as at
// inference. Loss sets it for its own call; a PixArt family's loss sets it around
// ForwardEmbeds. Checkpointed blocks replay the same draws when they are recomputed.
func (m *Model) SetDropoutRNG(rng *engine.RNG) { m.dropRNG = rng }
