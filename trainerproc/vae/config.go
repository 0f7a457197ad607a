package vae

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Sentinel errors. Every error the package returns wraps one of them (or an engine or
// safetensors sentinel), so callers test with errors.Is.
var (
	// ErrConfig reports a config.json this implementation cannot build: malformed JSON, an
	// unknown block or activation type, or inconsistent sizes.
	ErrConfig = errors.New("vae: invalid config")
	// ErrWeights reports weights that do not match the config: a missing, unknown or
	// misshapen tensor, or a dtype that cannot be loaded.
	ErrWeights = errors.New("vae: weights do not match the config")
	// ErrInput reports images or latents of the wrong shape.
	ErrInput = errors.New("vae: invalid input")
)

// ClassName is the config's _class_name.
const ClassName = "AutoencoderKL"

// The block types and activation diffusers' AutoencoderKL uses; nothing else is accepted.
const (
	downBlockType = "DownEncoderBlock2D"
	upBlockType   = "UpDecoderBlock2D"
	actSiLU       = "silu"
)

// Config is diffusers' AutoencoderKL config (config.json of a "vae/" folder). Fields absent
// from the file take diffusers' defaults (DefaultConfig).
type Config struct {
	ClassName            string   `json:"_class_name"`
	InChannels           int      `json:"in_channels"`
	OutChannels          int      `json:"out_channels"`
	DownBlockTypes       []string `json:"down_block_types"`
	UpBlockTypes         []string `json:"up_block_types"`
	BlockOutChannels     []int    `json:"block_out_channels"`
	LayersPerBlock       int      `json:"layers_per_block"`
	ActFn                string   `json:"act_fn"`
	LatentChannels       int      `json:"latent_channels"`
	NormNumGroups        int      `json:"norm_num_groups"`
	SampleSize           int      `json:"sample_size"`
	ScalingFactor        float64  `json:"scaling_factor"`
	ShiftFactor          *float64 `json:"shift_factor"` // null in SDXL's config: no shift
	ForceUpcast          bool     `json:"force_upcast"`
	UseQuantConv         bool     `json:"use_quant_conv"`
	UsePostQuantConv     bool     `json:"use_post_quant_conv"`
	MidBlockAddAttention bool     `json:"mid_block_add_attention"`
}

// DefaultConfig is diffusers' AutoencoderKL default: what a config.json that omits a field
// means.
func DefaultConfig() Config {
	return Config{
		ClassName:            ClassName,
		InChannels:           3,
		OutChannels:          3,
		DownBlockTypes:       []string{downBlockType},
		UpBlockTypes:         []string{upBlockType},
		BlockOutChannels:     []int{64},
		LayersPerBlock:       1,
		ActFn:                actSiLU,
		LatentChannels:       4,
		NormNumGroups:        32,
		SampleSize:           32,
		ScalingFactor:        0.18215,
		ForceUpcast:          true,
		UseQuantConv:         true,
		UsePostQuantConv:     true,
		MidBlockAddAttention: true,
	}
}

// SDXLConfig is the SDXL VAE's architecture (PixArt-Σ's VAE): four blocks of 128, 256, 512
// and 512 channels, two resnets per encoder block, 32 groups, 4 latent channels, scaling
// 0.13025. The benchmark builds it with random weights.
func SDXLConfig() Config {
	c := DefaultConfig()
	c.DownBlockTypes = []string{downBlockType, downBlockType, downBlockType, downBlockType}
	c.UpBlockTypes = []string{upBlockType, upBlockType, upBlockType, upBlockType}
	c.BlockOutChannels = []int{128, 256, 512, 512}
	c.LayersPerBlock = 2
	c.SampleSize = 1024
	c.ScalingFactor = 0.13025
	c.ForceUpcast = false
	return c
}

// ParseConfig decodes config.json over the defaults and validates it.
func ParseConfig(data []byte) (Config, error) {
	c := DefaultConfig()
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&c); err != nil {
		return Config{}, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// LoadConfig reads and checks the config.json of a VAE component directory. An unreadable
// file wraps ErrConfig; a bad one names the file.
func LoadConfig(dir string) (Config, error) {
	c, _, err := readConfig(dir)
	return c, err
}

// readConfig is LoadConfig that also returns the file's bytes (Save writes them back).
func readConfig(dir string) (Config, []byte, error) {
	path := filepath.Join(dir, ConfigFile)
	raw, err := os.ReadFile(path)
	if err != nil {
		return Config{}, nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	c, err := ParseConfig(raw)
	if err != nil {
		return Config{}, nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, raw, nil
}

// Shift is shift_factor, 0 when the config has none.
func (c Config) Shift() float64 {
	if c.ShiftFactor == nil {
		return 0
	}
	return *c.ShiftFactor
}

// Validate checks that the config describes an AutoencoderKL this package can build.
func (c Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, args...))
	}
	if c.ClassName != "" && c.ClassName != ClassName {
		return bad("_class_name %q, want %q", c.ClassName, ClassName)
	}
	n := len(c.BlockOutChannels)
	switch {
	case n == 0:
		return bad("block_out_channels is empty")
	case len(c.DownBlockTypes) != n || len(c.UpBlockTypes) != n:
		return bad("%d block_out_channels but %d down_block_types and %d up_block_types", n, len(c.DownBlockTypes), len(c.UpBlockTypes))
	case c.InChannels <= 0 || c.OutChannels <= 0 || c.LatentChannels <= 0:
		return bad("in_channels %d, out_channels %d, latent_channels %d must be positive", c.InChannels, c.OutChannels, c.LatentChannels)
	case c.LayersPerBlock <= 0:
		return bad("layers_per_block %d must be positive", c.LayersPerBlock)
	case c.NormNumGroups <= 0:
		return bad("norm_num_groups %d must be positive", c.NormNumGroups)
	case c.ActFn != actSiLU:
		return bad("act_fn %q is not supported (only %q)", c.ActFn, actSiLU)
	case c.ScalingFactor == 0:
		return bad("scaling_factor is 0")
	}
	for i, t := range c.DownBlockTypes {
		if t != downBlockType {
			return bad("down_block_types[%d] = %q, only %q is supported", i, t, downBlockType)
		}
	}
	for i, t := range c.UpBlockTypes {
		if t != upBlockType {
			return bad("up_block_types[%d] = %q, only %q is supported", i, t, upBlockType)
		}
	}
	for i, ch := range c.BlockOutChannels {
		if ch <= 0 || ch%c.NormNumGroups != 0 {
			return bad("block_out_channels[%d] = %d is not a positive multiple of norm_num_groups %d", i, ch, c.NormNumGroups)
		}
	}
	return nil
}

// Downscale is the ratio between image and latent sides: 2 per down block but the last.
func (c Config) Downscale() int { return 1 << (len(c.BlockOutChannels) - 1) }
