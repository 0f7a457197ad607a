// Package encoders adapts the frozen encoders of latent model families to the caches of
// trainerproc/data: the VAE (trainerproc/vae) as a data.LatentEncoder and the T5 caption
// pipeline (trainerproc/t5) as a data.TextEncoder. The data package must not import the
// model packages, nor they it, so the adapters live here.
//
// Each adapter's Identity names what its outputs depend on: the config, the weight files
// (by their Hugging Face cache blob, else their safetensors header, size and mtime), the
// variant, and for T5 the tokenizer model and the caption preprocessing. A cache entry made
// under another identity is stale.
package encoders

import (
	"fmt"
	"path/filepath"

	"simpletuner/trainerproc/data"
	"simpletuner/trainerproc/engine"
	"simpletuner/trainerproc/t5"
	"simpletuner/trainerproc/vae"
)

// VAE is an AutoencoderKL as the latent cache's encoder. It is driven by one goroutine at a
// time, like its engine.
type VAE struct {
	// Model is the loaded VAE, owned by the adapter: Free frees it.
	Model *vae.AutoencoderKL
	e     *engine.Engine
	id    string
}

var _ data.LatentEncoder = (*VAE)(nil)

// VAEIdentity is the identity of the VAE component directory dir loaded with variant.
func VAEIdentity(dir, variant string) (string, error) {
	id, sum := newIdentity("vae")
	id.str(variant)
	if err := id.content(vae.ConfigFile, filepath.Join(dir, vae.ConfigFile)); err != nil {
		return "", err
	}
	if err := id.weights(dir, vae.WeightsBase); err != nil {
		return "", err
	}
	return sum(), nil
}

// LoadVAE loads the VAE component directory dir (config.json and diffusion_pytorch_model
// weights, variant preferred) on e.
func LoadVAE(e *engine.Engine, dir, variant string) (*VAE, error) {
	id, err := VAEIdentity(dir, variant)
	if err != nil {
		return nil, err
	}
	m, err := vae.Load(e, dir, vae.LoadOptions{Variant: variant})
	if err != nil {
		return nil, err
	}
	return &VAE{Model: m, e: e, id: id}, nil
}

// Identity implements data.LatentEncoder.
func (v *VAE) Identity() string { return v.id }

// Encode implements data.LatentEncoder: the raw posterior (mean, clamped log-variance) of b
// images of h×w pixels in [−1, 1].
func (v *VAE) Encode(pixels []float32, b, h, w int) (*data.Posterior, error) {
	var x *engine.Tensor
	if err := engine.Catch(func() { x = v.e.FromHost(pixels, b, v.Model.Config().InChannels, h, w) }); err != nil {
		return nil, fmt.Errorf("encoders: vae input: %w", err)
	}
	mean, logvar, err := v.Model.Encode(x)
	x.Free()
	if err != nil {
		return nil, err
	}
	defer mean.Free()
	defer logvar.Free()
	shape := mean.Shape()
	p := &data.Posterior{B: shape[0], C: shape[1], H: shape[2], W: shape[3]}
	if p.Mean, err = mean.ToHost(); err == nil {
		p.LogVar, err = logvar.ToHost()
	}
	if err != nil {
		return nil, fmt.Errorf("encoders: vae output: %w", err)
	}
	return p, nil
}

// Free frees the VAE's weights.
func (v *VAE) Free() { v.Model.Free() }

// T5Options tunes LoadT5.
type T5Options struct {
	// Preprocess rewrites each caption before tokenization (PixArt: t5.PixArtPrompt); nil
	// keeps captions as they are.
	Preprocess func(string) string
	// PreprocessName names Preprocess in the identity ("pixart-clean"): changing the
	// preprocessing changes every embedding. Required when Preprocess is set.
	PreprocessName string
	// Map reads the weights through a memory mapping (t5.LoadOptions).
	Map bool
}

// T5 is the T5 caption pipeline as the text-embedding cache's encoder. It is driven by one
// goroutine at a time.
type T5 struct {
	// Pipeline is owned by the adapter: Free frees it.
	Pipeline *t5.Pipeline
	id       string
}

var _ data.TextEncoder = (*T5)(nil)

// T5Identity is the identity of the caption pipeline of the diffusers pipeline directory
// dir (text_encoder/ and tokenizer/spiece.model) with the named preprocessing.
func T5Identity(dir, preprocess string) (string, error) {
	id, sum := newIdentity("t5")
	id.str(preprocess)
	enc := filepath.Join(dir, t5.TextEncoderDir)
	if err := id.content("config.json", filepath.Join(enc, "config.json")); err != nil {
		return "", err
	}
	if err := id.weights(enc, "model"); err != nil {
		return "", err
	}
	if err := id.content(t5.TokenizerModel, filepath.Join(dir, filepath.FromSlash(t5.TokenizerModel))); err != nil {
		return "", err
	}
	return sum(), nil
}

// LoadT5 loads the caption pipeline of the diffusers pipeline directory dir on e.
func LoadT5(e *engine.Engine, dir string, o T5Options) (*T5, error) {
	if o.Preprocess != nil && o.PreprocessName == "" {
		return nil, fmt.Errorf("%w: a caption preprocessing without a name", ErrIdentity)
	}
	id, err := T5Identity(dir, o.PreprocessName)
	if err != nil {
		return nil, err
	}
	p, err := t5.LoadPipeline(e, dir, t5.LoadOptions{Map: o.Map})
	if err != nil {
		return nil, err
	}
	p.Preprocess = o.Preprocess
	return &T5{Pipeline: p, id: id}, nil
}

// T5Memory is the estimate of loading the pipeline of dir and encoding batch captions of
// maxLen tokens (t5.Config.Memory), read from its config without loading it.
func T5Memory(dir string, batch, maxLen int) (t5.Memory, error) {
	cfg, err := t5.LoadConfig(filepath.Join(dir, t5.TextEncoderDir))
	if err != nil {
		return t5.Memory{}, err
	}
	return cfg.Memory(batch, maxLen), nil
}

// Identity implements data.TextEncoder. The max length is not part of it: it is an
// argument of Encode, and the text-embedding cache keys every entry by it.
func (t *T5) Identity() string { return t.id }

// Encode implements data.TextEncoder: the hidden states [B,maxLen,D] of captions padded or
// cut to maxLen tokens, and each caption's number of real tokens (</s> included).
func (t *T5) Encode(captions []string, maxLen int) (*data.TextEmbeddings, error) {
	out, err := t.Pipeline.Encode(captions, maxLen)
	if err != nil {
		return nil, err
	}
	defer out.Free()
	shape := out.Hidden.Shape()
	te := &data.TextEmbeddings{B: shape[0], L: shape[1], D: shape[2], Lengths: make([]int, shape[0])}
	mask, err := out.Mask.ToHost()
	if err == nil {
		te.Hidden, err = out.Hidden.ToHost()
	}
	if err != nil {
		return nil, fmt.Errorf("encoders: t5 output: %w", err)
	}
	for i := range te.B {
		for _, m := range mask[i*te.L : (i+1)*te.L] {
			if m != 0 {
				te.Lengths[i]++
			}
		}
	}
	return te, nil
}

// Free frees the encoder's weights.
func (t *T5) Free() { t.Pipeline.Free() }
