package model

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Sentinel errors at the package boundary.
var (
	// ErrConfig reports an invalid model configuration or an unknown flavour.
	ErrConfig = errors.New("model: invalid config")
	// ErrInput reports a batch that does not fit the model (shapes, token ids, resolution).
	ErrInput = errors.New("model: invalid input")
	// ErrWeights reports a model directory or weights file that cannot be loaded.
	ErrWeights = errors.New("model: cannot load weights")
)

// Config describes a dit model. JSON names follow diffusers' PixArtTransformer2DModel config
// where one exists, so transformer/config.json reads like a diffusers config.
type Config struct {
	// Flavour is the preset the config came from ("tiny", "small", "base", "xl") or "custom".
	Flavour string `json:"flavour"`
	// SampleSize is the training resolution in pixels (square side); it sets the base grid of
	// the position embedding (other resolutions are interpolated to it, as in PixArt).
	SampleSize int `json:"sample_size"`
	// InChannels is the number of image channels (3: RGB pixels).
	InChannels int `json:"in_channels"`
	// PatchSize is the side of a square patch in pixels.
	PatchSize int `json:"patch_size"`
	// NumLayers is the number of transformer blocks.
	NumLayers int `json:"num_layers"`
	// NumHeads is the number of attention heads; HeadDim·NumHeads is the width D.
	NumHeads int `json:"num_attention_heads"`
	// HeadDim is the per-head width.
	HeadDim int `json:"attention_head_dim"`
	// MLPRatio is the feed-forward expansion (4 in PixArt).
	MLPRatio int `json:"mlp_ratio"`
	// InterpolationScale divides the position grid (PixArt's interpolation_scale).
	InterpolationScale float64 `json:"interpolation_scale"`
	// NormEps is the layer-norm epsilon (1e-6 in PixArt).
	NormEps float64 `json:"norm_eps"`

	// VocabSize is the caption tokenizer's vocabulary size (256 bytes + specials).
	VocabSize int `json:"vocab_size"`
	// MaxTokens is the longest caption (the learned position table's length).
	MaxTokens int `json:"max_tokens"`
	// TextWidth is the caption encoder's width (PixArt's caption_channels).
	TextWidth int `json:"caption_channels"`
	// TextLayers is the number of caption encoder layers.
	TextLayers int `json:"text_layers"`
	// TextHeads is the number of caption encoder attention heads.
	TextHeads int `json:"text_heads"`

	// Conditioning adds a learned conditioning-token embedding ("cond_embed"): reference
	// images (conditioning datasets paired with the training images) are patchified with
	// the image patch embedding and appended to the image tokens, as Flux Kontext does.
	Conditioning bool `json:"conditioning,omitempty"`

	// OutChannels is the number of predicted channels; 0 means InChannels. PixArt-Σ predicts
	// 8 for its 4 latent channels: ε and the learned-variance output (diffusers'
	// out_channels).
	OutChannels int `json:"out_channels,omitempty"`
	// PixArt marks diffusers' PixArtTransformer2DModel (ReadTransformerConfig, New with such
	// a config): latent input, caption states of an external text encoder fed straight to
	// caption_projection (TextWidth is their width; there is no caption encoder, so
	// VocabSize, TextLayers and TextHeads are unused and MaxTokens is only the default
	// caption length of the memory estimates), and DDPM timesteps fed to the sinusoid as
	// they are. It is never written to a dit config (SaveTransformer writes diffusers' own).
	PixArt bool `json:"-"`
}

// Outputs is the number of channels the model predicts (OutChannels, else InChannels).
func (c Config) Outputs() int {
	if c.OutChannels > 0 {
		return c.OutChannels
	}
	return c.InChannels
}

// Width is the transformer width D.
func (c Config) Width() int { return c.NumHeads * c.HeadDim }

// flavours are the presets. Widths are chosen so heads divide them; xl has PixArt-XL's
// transformer dimensions (D=1152, 28 blocks, 16 heads of 72).
var flavours = map[string]Config{
	"tiny": {SampleSize: 16, PatchSize: 2, NumLayers: 2, NumHeads: 4, HeadDim: 16,
		VocabSize: 260, MaxTokens: 32, TextWidth: 64, TextLayers: 1, TextHeads: 4},
	"small": {SampleSize: 32, PatchSize: 2, NumLayers: 6, NumHeads: 8, HeadDim: 32,
		VocabSize: 260, MaxTokens: 77, TextWidth: 256, TextLayers: 2, TextHeads: 4},
	"base": {SampleSize: 64, PatchSize: 2, NumLayers: 12, NumHeads: 12, HeadDim: 64,
		VocabSize: 260, MaxTokens: 77, TextWidth: 512, TextLayers: 2, TextHeads: 8},
	"xl": {SampleSize: 64, PatchSize: 2, NumLayers: 28, NumHeads: 16, HeadDim: 72,
		VocabSize: 260, MaxTokens: 120, TextWidth: 768, TextLayers: 2, TextHeads: 12},
}

// Flavours lists the preset names in a stable order.
func Flavours() []string {
	names := make([]string, 0, len(flavours))
	for n := range flavours {
		names = append(names, n)
	}
	order := map[string]int{"tiny": 0, "small": 1, "base": 2, "xl": 3}
	sort.Slice(names, func(i, j int) bool { return order[names[i]] < order[names[j]] })
	return names
}

// Flavour returns the preset config for name with the defaults filled in.
func Flavour(name string) (Config, error) {
	c, ok := flavours[strings.ToLower(name)]
	if !ok {
		return Config{}, fmt.Errorf("%w: unknown dit flavour %q (supported: %s)", ErrConfig, name, strings.Join(Flavours(), ", "))
	}
	c.Flavour = strings.ToLower(name)
	c.fillDefaults()
	return c, c.Validate()
}

func (c *Config) fillDefaults() {
	if c.InChannels == 0 {
		c.InChannels = 3
	}
	if c.MLPRatio == 0 {
		c.MLPRatio = 4
	}
	if c.InterpolationScale == 0 {
		c.InterpolationScale = 1
	}
	if c.NormEps == 0 {
		c.NormEps = 1e-6
	}
	if c.PixArt && c.MaxTokens == 0 {
		c.MaxTokens = PixArtCaptionLen
	}
	if c.Flavour == "" {
		c.Flavour = "custom"
	}
}

// Validate checks that the dimensions are positive and consistent.
func (c Config) Validate() error {
	pos := map[string]int{
		"sample_size": c.SampleSize, "in_channels": c.InChannels, "patch_size": c.PatchSize,
		"num_layers": c.NumLayers, "num_attention_heads": c.NumHeads, "attention_head_dim": c.HeadDim,
		"mlp_ratio": c.MLPRatio, "max_tokens": c.MaxTokens, "caption_channels": c.TextWidth,
	}
	if !c.PixArt {
		pos["vocab_size"], pos["text_layers"], pos["text_heads"] = c.VocabSize, c.TextLayers, c.TextHeads
	}
	for k, v := range pos {
		if v <= 0 {
			return fmt.Errorf("%w: %s must be positive, got %d", ErrConfig, k, v)
		}
	}
	if c.OutChannels < 0 {
		return fmt.Errorf("%w: out_channels must be positive, got %d", ErrConfig, c.OutChannels)
	}
	if c.PixArt {
		if c.Conditioning {
			return fmt.Errorf("%w: a PixArt transformer has no conditioning input", ErrConfig)
		}
		if c.NormEps <= 0 || c.InterpolationScale <= 0 {
			return fmt.Errorf("%w: norm_eps and interpolation_scale must be positive", ErrConfig)
		}
		if c.SampleSize%c.PatchSize != 0 || c.Width()%4 != 0 {
			return fmt.Errorf("%w: sample_size %d must be a multiple of patch_size %d and the width %d of 4", ErrConfig, c.SampleSize, c.PatchSize, c.Width())
		}
		return nil
	}
	if c.SampleSize%c.PatchSize != 0 {
		return fmt.Errorf("%w: sample_size %d is not a multiple of patch_size %d", ErrConfig, c.SampleSize, c.PatchSize)
	}
	if c.Width()%4 != 0 {
		return fmt.Errorf("%w: width %d must be a multiple of 4 for the 2-D position embedding", ErrConfig, c.Width())
	}
	if c.TextWidth%c.TextHeads != 0 {
		return fmt.Errorf("%w: caption_channels %d not divisible by text_heads %d", ErrConfig, c.TextWidth, c.TextHeads)
	}
	if c.NormEps <= 0 || c.InterpolationScale <= 0 {
		return fmt.Errorf("%w: norm_eps and interpolation_scale must be positive", ErrConfig)
	}
	return nil
}

// ParamCount is the number of trainable parameters of a full model with this config,
// computed from the shapes (no allocation).
func (c Config) ParamCount() int {
	n := 0
	for _, s := range c.paramShapes() {
		k := 1
		for _, d := range s.shape {
			k *= d
		}
		n += k
	}
	return n
}
