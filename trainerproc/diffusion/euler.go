package diffusion

import "fmt"

// euler is diffusers' EulerDiscreteScheduler (no churn): the probability-flow ODE in
// σ = √((1−ᾱ)/ᾱ), with the model fed x/√(σ²+1).
type euler struct {
	timesteps []float32
	sigmas    []float32 // one per step, then the final σ
	pred      string
	initSigma float32
}

func newEuler(s *Schedule, c SchedulerConfig, n int) (*euler, error) {
	if err := checkSigmaOptions(c); err != nil {
		return nil, err
	}
	if c.InterpolationType != "linear" {
		return nil, fmt.Errorf("%w: interpolation_type %q (supported: linear)", ErrUnsupported, c.InterpolationType)
	}
	if c.TimestepType != "discrete" {
		return nil, fmt.Errorf("%w: timestep_type %q (supported: discrete)", ErrUnsupported, c.TimestepType)
	}
	T := c.NumTrainTimesteps
	spacing := spacingOr(c, "linspace")
	var ts []float32
	switch spacing {
	case "linspace":
		for _, v := range reversed(npLinspace(0, float64(T-1), n)) {
			ts = append(ts, float32(v))
		}
	case "leading":
		ratio := T / n
		for i := n - 1; i >= 0; i-- {
			ts = append(ts, float32(i*ratio)+float32(c.StepsOffset))
		}
	case "trailing":
		for _, v := range npArange(float64(T), 0, -float64(T)/float64(n)) {
			ts = append(ts, float32(roundEven(v))-1)
		}
	}
	ab := zeroSNRAlphaBars(s, c)
	table := sigmaTable(ab)
	e := &euler{timesteps: ts, pred: c.PredictionType}
	for _, t := range ts {
		e.sigmas = append(e.sigmas, float32(npInterp(float64(t), table)))
	}
	e.sigmas = append(e.sigmas, finalSigma(c, ab))
	for _, sg := range e.sigmas {
		e.initSigma = max(e.initSigma, sg)
	}
	if spacing == "leading" {
		e.initSigma = sqrt32(e.initSigma*e.initSigma + 1)
	}
	return e, nil
}

func (e *euler) Name() string { return "euler" }

func (e *euler) Timesteps() []float64 { return widen(e.timesteps) }

func (e *euler) InitNoiseSigma() float64 { return float64(e.initSigma) }

func (e *euler) ScaleInput(x []float32, i int) {
	sg := e.sigmas[i]
	d := sqrt32(sg*sg + 1)
	for j := range x {
		x[j] /= d
	}
}

// predict writes x̂₀ into x0.
func (e *euler) predict(out []float32, i int, x, x0 []float32) {
	sg := e.sigmas[i]
	c1 := -sg / sqrt32(sg*sg+1)
	c2 := sg*sg + 1
	for j := range x {
		switch e.pred {
		case "epsilon":
			x0[j] = x[j] - sg*out[j]
		case "sample":
			x0[j] = out[j]
		case "v_prediction":
			x0[j] = out[j]*c1 + x[j]/c2
		}
	}
}

func (e *euler) PredictX0(out []float32, i int, x []float32) []float32 {
	x0 := make([]float32, len(x))
	e.predict(out, i, x, x0)
	return x0
}

func (e *euler) Step(out []float32, i int, x []float32) error {
	if err := checkLens(out, x, i, len(e.timesteps)); err != nil {
		return err
	}
	x0 := make([]float32, len(x))
	e.predict(out, i, x, x0)
	sg := e.sigmas[i]
	dt := e.sigmas[i+1] - sg
	for j := range x {
		x[j] += (x[j] - x0[j]) / sg * dt
	}
	return nil
}
