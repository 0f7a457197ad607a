package diffusion

import (
	"fmt"
	"math"
)

// Schedule is the discrete training schedule: β_t and ᾱ_t = Π(1 − β) for t in 0..T−1, as
// float32 tables computed the way diffusers' DDPMScheduler computes them on the CPU.
type Schedule struct {
	betas     []float32
	alphaBars []float32
	// prediction is the config's prediction_type, kept for the samplers' defaults.
	prediction string
}

// NewSchedule builds the β and ᾱ tables from c: trained_betas, or linear,
// scaled_linear or squaredcos_cap_v2, then the zero-terminal-SNR rescale when
// c.RescaleBetasZeroSNR is set. SimpleTuner builds its training DDPMScheduler with
// rescale_betas_zero_snr from its own --rescale_betas_zero_snr (default false), overriding
// the file's value, so a caller mirroring it sets c.RescaleBetasZeroSNR from the option first.
func NewSchedule(c SchedulerConfig) (*Schedule, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	n := c.NumTrainTimesteps
	var betas []float32
	switch {
	case len(c.TrainedBetas) > 0:
		betas = make([]float32, n)
		for i, b := range c.TrainedBetas {
			betas[i] = float32(b)
		}
	case c.BetaSchedule == "linear":
		betas = linspace32(float32(c.BetaStart), float32(c.BetaEnd), n)
	case c.BetaSchedule == "scaled_linear":
		// The square roots are taken in double precision, the ramp and its square in float32.
		betas = linspace32(float32(math.Sqrt(c.BetaStart)), float32(math.Sqrt(c.BetaEnd)), n)
		for i, b := range betas {
			betas[i] = b * b
		}
	case c.BetaSchedule == "squaredcos_cap_v2":
		betas = cosineBetas(n)
	}
	for i, b := range betas {
		if !(b > 0 && b <= 1) {
			return nil, fmt.Errorf("%w: beta[%d] = %g is outside (0, 1]", ErrConfig, i, b)
		}
	}
	if c.RescaleBetasZeroSNR {
		betas = rescaleZeroTerminalSNR(betas)
	}
	return &Schedule{betas: betas, alphaBars: cumprodAlphas(betas), prediction: c.PredictionType}, nil
}

// linspace32 is torch.linspace(start, end, n, dtype=float32) as torch's x86 CPU kernel (AVX2)
// computes it, bit for bit: step = (end − start)/(n − 1) in float32; values in the first half
// count up from start, the rest down from end. The kernel fills 16 values per iteration as two
// 8-lane vectors, each one base + k·step with the base fused-multiply-added
// (start + step·i, or end − step·(n−1−i)) and the k·step added in plain float32; the tail of
// fewer than 16 values is filled one by one with the fused form. Matching this to the last bit
// keeps the β table, and so every ᾱ, identical to the reference run's.
func linspace32(start, end float32, n int) []float32 {
	out := make([]float32, n)
	if n == 1 {
		out[0] = start
		return out
	}
	step := (end - start) / float32(n-1)
	half := n / 2
	base := func(i int) float32 {
		if i < half {
			return fma32(step, float32(i), start)
		}
		return fma32(-step, float32(n-1-i), end)
	}
	const lanes = 8
	i := 0
	for ; i+2*lanes <= n; i += 2 * lanes {
		for _, j := range [2]int{i, i + lanes} {
			b := base(j)
			for k := range lanes {
				out[j+k] = b + step*float32(k)
			}
		}
	}
	for ; i < n; i++ {
		out[i] = base(i)
	}
	return out
}

// fma32 is a float32 fused multiply-add, a·b + c rounded once.
func fma32(a, b, c float32) float32 {
	return float32(math.FMA(float64(a), float64(b), float64(c)))
}

// cumprodAlphas is torch.cumprod(1 − β) for float32 on the CPU, which accumulates in double
// and rounds each output to float32.
func cumprodAlphas(betas []float32) []float32 {
	out := make([]float32, len(betas))
	acc := 1.0
	for i, b := range betas {
		acc *= float64(1 - b)
		out[i] = float32(acc)
	}
	return out
}

// cosineBetas is diffusers' betas_for_alpha_bar with the cosine transform (the Improved-DDPM
// schedule), computed in double and stored as float32, β capped at 0.999.
func cosineBetas(n int) []float32 {
	alphaBar := func(t float64) float64 {
		c := math.Cos((t + 0.008) / 1.008 * math.Pi / 2)
		return c * c
	}
	out := make([]float32, n)
	for i := range out {
		t1 := float64(i) / float64(n)
		t2 := float64(i+1) / float64(n)
		out[i] = float32(math.Min(1-alphaBar(t2)/alphaBar(t1), 0.999))
	}
	return out
}

// rescaleZeroTerminalSNR shifts and scales √ᾱ so that the last timestep has zero SNR and the
// first keeps its value, then converts back to β (float32 throughout, as diffusers does).
func rescaleZeroTerminalSNR(betas []float32) []float32 {
	n := len(betas)
	sq := make([]float32, n)
	for i, a := range cumprodAlphas(betas) {
		sq[i] = sqrt32(a)
	}
	first, last := sq[0], sq[n-1]
	scale := first / (first - last)
	for i := range sq {
		sq[i] = (sq[i] - last) * scale
	}
	out := make([]float32, n)
	prev := float32(0)
	for i, s := range sq {
		ab := s * s
		if i == 0 {
			out[i] = 1 - ab
		} else {
			out[i] = 1 - ab/prev
		}
		prev = ab
	}
	return out
}

// sqrt32 is a correctly rounded float32 square root (what torch's float32 sqrt and x**0.5 give).
func sqrt32(x float32) float32 { return float32(math.Sqrt(float64(x))) }

// NumTimesteps is T, the number of training timesteps.
func (s *Schedule) NumTimesteps() int { return len(s.betas) }

// Beta is β_t as float32 widened to float64.
func (s *Schedule) Beta(t int) float64 { return float64(s.betas[t]) }

// AlphaBar is ᾱ_t (the float32 table value widened to float64).
func (s *Schedule) AlphaBar(t int) float64 { return float64(s.alphaBars[t]) }

// NoiseCoefficients returns √ᾱ_t and √(1 − ᾱ_t) in float32, so that
// x_t = signal·x₀ + noise·ε reproduces DDPMScheduler.add_noise on float32 tensors.
func (s *Schedule) NoiseCoefficients(t int) (signal, noise float32) {
	a := s.alphaBars[t]
	return sqrt32(a), sqrt32(1 - a)
}

// AddNoise writes x_t = √ᾱ_t·x₀ + √(1 − ᾱ_t)·ε into dst (which may alias x0 or eps); all three
// have the same length.
func (s *Schedule) AddNoise(dst, x0, eps []float32, t int) {
	a, b := s.NoiseCoefficients(t)
	for i := range dst {
		dst[i] = a*x0[i] + b*eps[i]
	}
}

// SNR is ᾱ_t/(1 − ᾱ_t) computed as SimpleTuner's compute_snr does: (√ᾱ / √(1 − ᾱ))² in
// float32.
func (s *Schedule) SNR(t int) float64 {
	a, b := s.NoiseCoefficients(t)
	r := a / b
	return float64(r * r)
}

// PredictionType is the config's prediction_type ("epsilon", "v_prediction" or "sample").
func (s *Schedule) PredictionType() string { return s.prediction }
