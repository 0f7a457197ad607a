package diffusion

import "fmt"

// ddim is diffusers' DDIMScheduler with η = 0: x_prev = √ᾱ_prev·x̂₀ + √(1−ᾱ_prev)·ε̂.
type ddim struct {
	ab         []float32
	final      float32 // ᾱ after the last step: 1 (set_alpha_to_one) or ᾱ_0
	stride     int     // T // N: DDIM's previous timestep is t − stride whatever the spacing
	timesteps  []int
	pred       string
	clip       bool
	clipRange  float32
	trainSteps int
}

func newDDIM(s *Schedule, c SchedulerConfig, n int) (*ddim, error) {
	T := c.NumTrainTimesteps
	var ts []int
	switch spacingOr(c, "leading") {
	case "linspace":
		for _, v := range reversed(npLinspace(0, float64(T-1), n)) {
			ts = append(ts, int(roundEven(v)))
		}
	case "leading":
		ratio := T / n
		for i := n - 1; i >= 0; i-- {
			ts = append(ts, i*ratio+c.StepsOffset)
		}
	case "trailing":
		for _, v := range npArange(float64(T), 0, -float64(T)/float64(n)) {
			ts = append(ts, int(roundEven(v))-1)
		}
	}
	for _, t := range ts {
		if t < 0 || t >= T {
			return nil, fmt.Errorf("%w: ddim timestep %d outside 0..%d (steps_offset %d)", ErrUnsupported, t, T-1, c.StepsOffset)
		}
	}
	d := &ddim{ab: s.alphaBars, stride: T / n, timesteps: ts, pred: c.PredictionType, clip: true,
		clipRange: float32(c.ClipSampleRange), trainSteps: T, final: 1}
	if c.ClipSample != nil {
		d.clip = *c.ClipSample
	}
	if c.SetAlphaToOne != nil && !*c.SetAlphaToOne {
		d.final = s.alphaBars[0]
	}
	return d, nil
}

func (d *ddim) Name() string { return "ddim" }

func (d *ddim) Timesteps() []float64 { return widen(d.timesteps) }

func (d *ddim) ScaleInput([]float32, int) {}

func (d *ddim) InitNoiseSigma() float64 { return 1 }

// alphas returns ᾱ at step i's timestep and at its previous timestep.
func (d *ddim) alphas(i int) (a, prev float32) {
	t := d.timesteps[i]
	a, prev = d.ab[t], d.final
	if p := t - d.stride; p >= 0 {
		prev = d.ab[p]
	}
	return a, prev
}

// predict writes x̂₀ (clipped when clip_sample is on) into x0 and ε̂ into e.
func (d *ddim) predict(out []float32, i int, x, x0, e []float32) {
	a, _ := d.alphas(i)
	sa, sb := sqrt32(a), sqrt32(1-a)
	for j := range x {
		switch d.pred {
		case "epsilon":
			x0[j] = (x[j] - sb*out[j]) / sa
			e[j] = out[j]
		case "sample":
			x0[j] = out[j]
			e[j] = (x[j] - sa*out[j]) / sb
		case "v_prediction":
			x0[j] = sa*x[j] - sb*out[j]
			e[j] = sa*out[j] + sb*x[j]
		}
		if d.clip {
			x0[j] = min(max(x0[j], -d.clipRange), d.clipRange)
		}
	}
}

func (d *ddim) PredictX0(out []float32, i int, x []float32) []float32 {
	x0 := make([]float32, len(x))
	d.predict(out, i, x, x0, make([]float32, len(x)))
	return x0
}

func (d *ddim) Step(out []float32, i int, x []float32) error {
	if err := checkLens(out, x, i, len(d.timesteps)); err != nil {
		return err
	}
	x0, e := make([]float32, len(x)), make([]float32, len(x))
	d.predict(out, i, x, x0, e)
	_, prev := d.alphas(i)
	sp, dir := sqrt32(prev), sqrt32(1-prev)
	for j := range x {
		x[j] = sp*x0[j] + dir*e[j]
	}
	return nil
}
