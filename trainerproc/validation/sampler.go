package validation

import (
	"context"
	"fmt"
	"image"

	"simpletuner/trainerproc/data"
	"simpletuner/trainerproc/engine"
	"simpletuner/trainerproc/model"
)

// Request is one image to sample.
type Request struct {
	Prompt string
	// Negative is the negative prompt used as the unconditional branch of guidance; "" uses
	// the null caption (all-zero mask), which is what caption dropout trains.
	Negative   string
	Resolution Resolution
	// Steps is validation_num_inference_steps.
	Steps int
	// Guidance is validation_guidance; ≤ 1 disables classifier-free guidance.
	Guidance float64
	// Seed seeds the initial noise (validation_seed).
	Seed uint64
	// PreviewEvery is validation_preview_steps; Preview, when set, receives the current
	// estimate of the clean image at PreviewSteps(Steps, PreviewEvery).
	PreviewEvery int
	Preview      func(p Preview)
	// Sampler is --validation_noise_scheduler ("" for the family's default); the dit
	// family's sampler is always this package's Euler method.
	Sampler string
	// PromptEmbeds and NegativeEmbeds are the text encoder's states of Prompt and Negative,
	// one caption each, taken from the text-embedding cache for families that train from
	// it (family.Caches.TextEmbeds): the runner adds the validation prompts and the negative
	// prompt to that cache with the training captions, so no text encoder is loaded at
	// validation, as SimpleTuner does. nil for the other families.
	PromptEmbeds, NegativeEmbeds *data.TextEmbedBatch
}

// Preview is an intermediate image of a sampling run.
type Preview struct {
	Step, Total int     // 1-based sampler step and the number of steps
	Timestep    float64 // the model time t·1000 the step started from
	Image       *image.RGBA
}

// Sampler draws images from a model with the Euler method on the rectified-flow ODE
// dx/dt = v(x, t), from pure noise at t = 1 to the image at t = 0, in equal steps of 1/Steps.
// With guidance g the velocity is v_u + g·(v_c − v_u), both branches run as one batch.
type Sampler struct {
	Model     Denoiser
	Tokenizer *data.Tokenizer
}

// Denoiser is the model a Sampler integrates: a velocity prediction on pixels with byte
// token captions, as trainerproc/model's dit model makes it. The runner never builds a
// Sampler: the dit family (trainerproc/family/dit) does, behind family.Model's Sample.
type Denoiser interface {
	// Engine is the engine the model's weights live on.
	Engine() *engine.Engine
	// Config gives the patch size images must be a multiple of.
	Config() model.Config
	// Forward predicts the velocity of xt [B,3,H,W] at times t for captions c.
	Forward(xt *engine.Tensor, t []float32, c model.Captions) (*engine.Tensor, error)
}

// Sample renders one image. It runs without recording a graph and frees every tensor it
// makes; the model's weights are not touched.
func (s *Sampler) Sample(ctx context.Context, req Request) (*image.RGBA, error) {
	m := s.Model
	e := m.Engine()
	cfg := m.Config()
	w, h := req.Resolution.W, req.Resolution.H
	if w <= 0 || h <= 0 || w%cfg.PatchSize != 0 || h%cfg.PatchSize != 0 {
		return nil, fmt.Errorf("%w: resolution %s is not a positive multiple of the patch size %d", ErrConfig, req.Resolution, cfg.PatchSize)
	}
	if req.Steps < 1 {
		return nil, fmt.Errorf("%w: %d inference steps", ErrConfig, req.Steps)
	}
	defer e.NoGrad()()
	cfgOn := req.Guidance > 1
	l := s.Tokenizer.MaxLen()
	caps := model.Captions{Len: l}
	ids, mask := s.Tokenizer.EncodeNew(req.Prompt)
	caps.Tokens, caps.Mask = append(caps.Tokens, ids...), append(caps.Mask, mask...)
	bsz := 1
	if cfgOn {
		bsz = 2
		if req.Negative != "" {
			ids, mask = s.Tokenizer.EncodeNew(req.Negative)
		} else {
			ids, mask = s.Tokenizer.Empty()
			mask = make([]float32, l) // the null caption: no key to attend to
		}
		caps.Tokens, caps.Mask = append(caps.Tokens, ids...), append(caps.Mask, mask...)
	}
	n := 3 * h * w
	var x []float32
	if err := engine.Catch(func() {
		sc := e.Scope()
		defer sc.Close()
		var err error
		x, err = e.RandN(engine.NewRNG(req.Seed), 0, 1, 1, 3, h, w).ToHost()
		if err != nil {
			panic(err)
		}
	}); err != nil {
		return nil, fmt.Errorf("%w: initial noise: %w", ErrSample, err)
	}
	in := make([]float32, bsz*n)
	v := make([]float32, n)
	for i := 0; i < req.Steps; i++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		t := 1 - float64(i)/float64(req.Steps)
		dt := 1 / float64(req.Steps)
		for b := range bsz {
			copy(in[b*n:], x)
		}
		ts := make([]float32, bsz)
		for b := range ts {
			ts[b] = float32(t)
		}
		out, err := s.velocity(e, in, ts, caps, bsz, h, w)
		if err != nil {
			return nil, err
		}
		for j := range v {
			if cfgOn {
				c, u := out[j], out[n+j]
				v[j] = u + float32(req.Guidance)*(c-u)
			} else {
				v[j] = out[j]
			}
		}
		if req.Preview != nil && IsPreviewStep(i+1, req.Steps, req.PreviewEvery) {
			// x₀ ≈ x_t − t·v, since x_t = x₀ + t·(ε − x₀) and v estimates ε − x₀.
			est := make([]float32, n)
			for j := range est {
				est[j] = x[j] - float32(t)*v[j]
			}
			req.Preview(Preview{Step: i + 1, Total: req.Steps, Timestep: t * 1000, Image: ToImage(est, w, h)})
		}
		for j := range x {
			x[j] -= float32(dt) * v[j]
		}
	}
	return ToImage(x, w, h), nil
}

func (s *Sampler) velocity(e *engine.Engine, in []float32, ts []float32, caps model.Captions, bsz, h, w int) ([]float32, error) {
	var host []float32
	var ferr error
	err := engine.Catch(func() {
		sc := e.Scope()
		defer sc.Close()
		xt := e.FromHost(in, bsz, 3, h, w)
		out, err := s.Model.Forward(xt, ts, caps)
		if err != nil {
			ferr = err
			return
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
