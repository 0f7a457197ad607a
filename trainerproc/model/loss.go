package model

import (
	"fmt"
	"math"

	"simpletuner/trainerproc/engine"
)

// LossOptions configures the sampling of the rectified-flow objective.
type LossOptions struct {
	// LogitMean and LogitStd parameterise the logit-normal timestep density:
	// t = sigmoid(LogitMean + LogitStd·u), u ~ N(0,1). LogitStd 0 means 1.
	LogitMean, LogitStd float64
	// CaptionDropout is the probability that a sample's caption is replaced by the null
	// caption (all-zero mask), for classifier-free guidance.
	CaptionDropout float64
	// Cond are reference images appended as extra tokens (see ForwardCond); nil for none.
	Cond []*engine.Tensor
}

// StepNoise is the randomness Loss drew for one batch, returned so callers can log or replay
// it (FlowLoss with the same values gives the same loss).
type StepNoise struct {
	// T is the time of each sample in (0,1).
	T []float32
	// Dropped marks samples whose caption was dropped.
	Dropped []bool
}

// Loss computes the rectified-flow loss of clean images x0 [B,C,H,W] with captions c, drawing
// from rng, in this order: u [B] normal (t = sigmoid(mean+std·u)), ε like x0 normal, and a
// uniform [B] for caption dropout (always drawn, so the stream layout does not depend on the
// dropout probability). LoRA dropout, when configured, draws from rng during the forward pass.
// The returned loss is a [1] tensor in the caller's scope; the StepNoise's Eps is not kept.
func (m *Model) Loss(x0 *engine.Tensor, c Captions, rng *engine.RNG, o LossOptions) (loss *engine.Tensor, noise StepNoise, err error) {
	if x0.Rank() != 4 {
		return nil, noise, fmt.Errorf("%w: image %v, want [B,C,H,W]", ErrInput, x0.Shape())
	}
	bsz := x0.Dim(0)
	std := o.LogitStd
	if std == 0 {
		std = 1
	}
	var eps *engine.Tensor
	var u, drop []float32
	var hostErr error
	err = engine.Catch(func() {
		e := m.e
		s := e.Scope()
		defer s.Close()
		if u, hostErr = e.RandN(rng, 0, 1, bsz).ToHost(); hostErr != nil {
			return
		}
		eps = s.Keep(e.RandN(rng, 0, 1, x0.Shape()...))
		drop, hostErr = e.RandU(rng, 0, 1, bsz).ToHost()
	})
	if err == nil {
		err = hostErr
	}
	if err != nil {
		if eps != nil {
			eps.Free()
		}
		return nil, noise, fmt.Errorf("model: sample noise: %w", err)
	}
	defer eps.Free()
	noise.T = make([]float32, bsz)
	noise.Dropped = make([]bool, bsz)
	for i := range u {
		noise.T[i] = float32(1 / (1 + math.Exp(-(o.LogitMean + std*float64(u[i])))))
	}
	if o.CaptionDropout > 0 && c.Len > 0 && len(c.Mask) == bsz*c.Len {
		mask := append([]float32(nil), c.Mask...)
		for i := range drop {
			if float64(drop[i]) < o.CaptionDropout {
				noise.Dropped[i] = true
				clear(mask[i*c.Len : (i+1)*c.Len])
			}
		}
		c.Mask = mask
	}
	if err := m.checkCond(x0, o.Cond); err != nil {
		return nil, noise, err
	}
	m.dropRNG, m.cond = rng, o.Cond
	defer func() { m.dropRNG, m.cond = nil, nil }()
	loss, err = m.FlowLoss(x0, eps, noise.T, c)
	return loss, noise, err
}

// FlowLoss is the rectified-flow loss for given times t and noise eps:
// mean((model(x_t, t) − (ε − x₀))²) with x_t = x₀ + t·(ε − x₀) = (1−t)·x₀ + t·ε.
func (m *Model) FlowLoss(x0, eps *engine.Tensor, t []float32, c Captions) (loss *engine.Tensor, err error) {
	if err := m.checkInputs(x0, t, c); err != nil {
		return nil, err
	}
	err = engine.Catch(func() {
		e := m.e
		s := e.Scope()
		defer s.Close()
		target := e.Sub(eps, x0)
		xt := e.Add(x0, e.Mul(e.FromHost(t, len(t), 1, 1, 1), target))
		loss = s.Keep(e.MSELoss(m.forward(xt, t, c), target))
	})
	return loss, err
}
