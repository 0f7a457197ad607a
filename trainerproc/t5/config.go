package t5

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Sentinel errors. Every error the package returns wraps one of them (or an error of the
// packages it reads files with), so callers test with errors.Is.
var (
	// ErrConfig reports a config.json the encoder cannot be built from: a missing or
	// non-positive size, or a feed_forward_proj / dense_act_fn that is not supported.
	ErrConfig = errors.New("t5: invalid config")
	// ErrMissingTensor reports a weight the config needs that the checkpoint lacks.
	ErrMissingTensor = errors.New("t5: tensor missing from checkpoint")
	// ErrTensorShape reports a weight whose shape or type does not match the config.
	ErrTensorShape = errors.New("t5: tensor shape mismatch")
	// ErrInput reports encoder inputs that do not fit the model: token ids outside the
	// vocabulary, a mask of the wrong length, an empty batch.
	ErrInput = errors.New("t5: invalid input")
)

// Config file names inside a component directory.
const (
	// ConfigFile is the transformers config of the encoder.
	ConfigFile = "config.json"
	// WeightsBase is the base name of the weights: WeightsBase+".safetensors", or the sharded
	// WeightsBase+".safetensors.index.json".
	WeightsBase = "model"
)

// Activation is the nonlinearity of the feed-forward's first projection, by the name
// transformers' ACT2FN uses.
type Activation string

// The activations a T5 feed-forward may use.
const (
	// ActReLU is max(x, 0) (the original T5, feed_forward_proj "relu").
	ActReLU Activation = "relu"
	// ActGELUTanh is GELU's tanh approximation (T5 v1.1, feed_forward_proj "gated-gelu",
	// which transformers maps to "gelu_new").
	ActGELUTanh Activation = "gelu_new"
	// ActGELU is the exact GELU x·Φ(x) (feed_forward_proj "gelu" or "gated-gelu" spelled
	// with an explicit dense_act_fn "gelu").
	ActGELU Activation = "gelu"
	// ActSiLU is x·σ(x) (feed_forward_proj "gated-silu").
	ActSiLU Activation = "silu"
)

// activationAliases maps the ACT2FN names that denote the same function onto one Activation.
// It is a read-only lookup table.
var activationAliases = map[string]Activation{
	"relu":              ActReLU,
	"gelu_new":          ActGELUTanh,
	"gelu_pytorch_tanh": ActGELUTanh,
	"gelu":              ActGELU,
	"silu":              ActSiLU,
	"swish":             ActSiLU,
}

// Config is the part of a transformers T5Config that the encoder needs.
type Config struct {
	VocabSize int `json:"vocab_size"`
	// DModel is the width of the residual stream.
	DModel int `json:"d_model"`
	// DKV is the width of one attention head; the attention's inner width is NumHeads·DKV,
	// which need not equal DModel.
	DKV      int `json:"d_kv"`
	NumHeads int `json:"num_heads"`
	// DFF is the feed-forward's hidden width.
	DFF       int `json:"d_ff"`
	NumLayers int `json:"num_layers"`
	// RelativeAttentionNumBuckets and RelativeAttentionMaxDistance shape the relative
	// position buckets (see RelativePositionBucket).
	RelativeAttentionNumBuckets  int     `json:"relative_attention_num_buckets"`
	RelativeAttentionMaxDistance int     `json:"relative_attention_max_distance"`
	LayerNormEpsilon             float64 `json:"layer_norm_epsilon"`
	// FeedForwardProj is "relu", "gated-gelu", "gated-silu" or generally "[gated-]ACT".
	FeedForwardProj string `json:"feed_forward_proj"`
	PadTokenID      int    `json:"pad_token_id"`
	EOSTokenID      int    `json:"eos_token_id"`
	// TorchDType is the dtype the checkpoint was saved in, informational only: each tensor's
	// own dtype in the file is what loading and saving follow.
	TorchDType string `json:"torch_dtype,omitempty"`

	// Act and Gated are derived from FeedForwardProj as transformers derives dense_act_fn and
	// is_gated_act (an explicit dense_act_fn / is_gated_act in the file wins, as it does
	// there, because the file's keys are set after the derivation).
	Act   Activation `json:"-"`
	Gated bool       `json:"-"`

	// raw is the file the config was parsed from, written back unchanged by Save.
	raw []byte
}

// InnerDim is the attention's inner width, NumHeads·DKV.
func (c Config) InnerDim() int { return c.NumHeads * c.DKV }

// configFile is config.json with the optional keys as pointers, so that absent keys take
// transformers' defaults.
type configFile struct {
	VocabSize                    *int     `json:"vocab_size"`
	DModel                       *int     `json:"d_model"`
	DKV                          *int     `json:"d_kv"`
	NumHeads                     *int     `json:"num_heads"`
	DFF                          *int     `json:"d_ff"`
	NumLayers                    *int     `json:"num_layers"`
	RelativeAttentionNumBuckets  *int     `json:"relative_attention_num_buckets"`
	RelativeAttentionMaxDistance *int     `json:"relative_attention_max_distance"`
	LayerNormEpsilon             *float64 `json:"layer_norm_epsilon"`
	FeedForwardProj              *string  `json:"feed_forward_proj"`
	DenseActFn                   *string  `json:"dense_act_fn"`
	IsGatedAct                   *bool    `json:"is_gated_act"`
	PadTokenID                   *int     `json:"pad_token_id"`
	EOSTokenID                   *int     `json:"eos_token_id"`
	TorchDType                   string   `json:"torch_dtype"`
}

// LoadConfig reads dir/config.json.
func LoadConfig(dir string) (Config, error) {
	path := filepath.Join(dir, ConfigFile)
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("t5: %w", err)
	}
	c, err := ParseConfig(data)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// ParseConfig parses a transformers T5 config.json. Absent keys take T5Config's defaults
// (vocab 32128, d_model 512, d_kv 64, d_ff 2048, 6 layers, 8 heads, 32 buckets, max
// distance 128, eps 1e-6, feed_forward_proj "relu", pad 0, eos 1).
func ParseConfig(data []byte) (Config, error) {
	var f configFile
	if err := json.Unmarshal(data, &f); err != nil {
		return Config{}, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	pick := func(p *int, def int) int {
		if p != nil {
			return *p
		}
		return def
	}
	c := Config{
		VocabSize:                    pick(f.VocabSize, 32128),
		DModel:                       pick(f.DModel, 512),
		DKV:                          pick(f.DKV, 64),
		NumHeads:                     pick(f.NumHeads, 8),
		DFF:                          pick(f.DFF, 2048),
		NumLayers:                    pick(f.NumLayers, 6),
		RelativeAttentionNumBuckets:  pick(f.RelativeAttentionNumBuckets, 32),
		RelativeAttentionMaxDistance: pick(f.RelativeAttentionMaxDistance, 128),
		LayerNormEpsilon:             1e-6,
		FeedForwardProj:              "relu",
		PadTokenID:                   pick(f.PadTokenID, 0),
		EOSTokenID:                   pick(f.EOSTokenID, 1),
		TorchDType:                   f.TorchDType,
		raw:                          append([]byte(nil), data...),
	}
	if f.LayerNormEpsilon != nil {
		c.LayerNormEpsilon = *f.LayerNormEpsilon
	}
	if f.FeedForwardProj != nil {
		c.FeedForwardProj = *f.FeedForwardProj
	}
	act, gated, err := parseFeedForwardProj(c.FeedForwardProj)
	if err != nil {
		return Config{}, err
	}
	if f.DenseActFn != nil {
		act = *f.DenseActFn
	}
	if f.IsGatedAct != nil {
		gated = *f.IsGatedAct
	}
	a, ok := activationAliases[act]
	if !ok {
		return Config{}, fmt.Errorf("%w: activation %q (feed_forward_proj %q) is not supported", ErrConfig, act, c.FeedForwardProj)
	}
	c.Act, c.Gated = a, gated
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// parseFeedForwardProj splits "[gated-]ACT" as T5Config does: the activation is the last
// part, gated when the first part is "gated", anything else with a dash is invalid.
// "gated-gelu" is the historical spelling of the tanh approximation.
func parseFeedForwardProj(s string) (act string, gated bool, err error) {
	parts := strings.Split(s, "-")
	if len(parts) > 2 || (len(parts) == 2 && parts[0] != "gated") || parts[len(parts)-1] == "" {
		return "", false, fmt.Errorf("%w: feed_forward_proj %q is not of the form \"gated-ACT\" or \"ACT\"", ErrConfig, s)
	}
	act, gated = parts[len(parts)-1], len(parts) == 2
	if s == "gated-gelu" {
		act = string(ActGELUTanh)
	}
	return act, gated, nil
}

// Validate checks that every size is positive and the activation is known.
func (c Config) Validate() error {
	for _, f := range []struct {
		name string
		v    int
	}{
		{"vocab_size", c.VocabSize}, {"d_model", c.DModel}, {"d_kv", c.DKV}, {"num_heads", c.NumHeads},
		{"d_ff", c.DFF}, {"num_layers", c.NumLayers},
		{"relative_attention_num_buckets", c.RelativeAttentionNumBuckets},
		{"relative_attention_max_distance", c.RelativeAttentionMaxDistance},
	} {
		if f.v <= 0 {
			return fmt.Errorf("%w: %s is %d", ErrConfig, f.name, f.v)
		}
	}
	if c.RelativeAttentionNumBuckets < 4 {
		// Bidirectional buckets split in two halves, each with an exact half and a
		// logarithmic half: fewer than 4 leaves one of them empty.
		return fmt.Errorf("%w: relative_attention_num_buckets %d < 4", ErrConfig, c.RelativeAttentionNumBuckets)
	}
	if !(c.LayerNormEpsilon > 0) {
		return fmt.Errorf("%w: layer_norm_epsilon %g", ErrConfig, c.LayerNormEpsilon)
	}
	switch c.Act {
	case ActReLU, ActGELUTanh, ActGELU, ActSiLU:
	default:
		return fmt.Errorf("%w: activation %q", ErrConfig, c.Act)
	}
	return nil
}

// JSON returns the config as a config.json: the file it was parsed from, unchanged, or a
// minimal transformers config for one built in code.
func (c Config) JSON() ([]byte, error) {
	if c.raw != nil {
		return append([]byte(nil), c.raw...), nil
	}
	out := struct {
		Config
		Architectures []string   `json:"architectures"`
		ModelType     string     `json:"model_type"`
		DenseActFn    Activation `json:"dense_act_fn"`
		IsGatedAct    bool       `json:"is_gated_act"`
	}{c, []string{"T5EncoderModel"}, "t5", c.Act, c.Gated}
	data, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("t5: encode config: %w", err)
	}
	return append(data, '\n'), nil
}
