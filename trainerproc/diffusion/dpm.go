package diffusion

import (
	"fmt"
	"math"
	"sort"
)

// dpm is diffusers' DPMSolverMultistepScheduler with algorithm_type "dpmsolver++" (data
// prediction) of order 1 or 2, midpoint or Heun second-order form.
type dpm struct {
	timesteps []int
	sigmas    []float32 // one per step, then the final σ
	pred      string
	order     int
	heun      bool
	// lowerFinal is lower_order_final; eulerAtFinal and zeroFinal decide the last step's order.
	lowerFinal, eulerAtFinal, zeroFinal bool
	// prev is the previous step's data prediction; lower counts the steps taken (capped at
	// the order), next is the step Step expects.
	prev  []float32
	lower int
	next  int
}

func newDPM(s *Schedule, c SchedulerConfig, n int) (*dpm, error) {
	if err := checkSigmaOptions(c); err != nil {
		return nil, err
	}
	if c.AlgorithmType != "dpmsolver++" {
		return nil, fmt.Errorf("%w: algorithm_type %q for dpm++ (supported: dpmsolver++)", ErrUnsupported, c.AlgorithmType)
	}
	if c.SolverOrder != 1 && c.SolverOrder != 2 {
		return nil, fmt.Errorf("%w: solver_order %d (supported: 1, 2)", ErrUnsupported, c.SolverOrder)
	}
	if c.SolverType != "midpoint" && c.SolverType != "heun" {
		return nil, fmt.Errorf("%w: solver_type %q (supported: midpoint, heun)", ErrUnsupported, c.SolverType)
	}
	T := c.NumTrainTimesteps
	ab := zeroSNRAlphaBars(s, c)
	last := T - lambdaClippedIndex(ab, float64(c.LambdaMinClipped))
	var ts []int
	switch spacingOr(c, "linspace") {
	case "linspace":
		v := reversed(npLinspace(0, float64(last-1), n+1))
		for _, x := range v[:n] {
			ts = append(ts, int(roundEven(x)))
		}
	case "leading":
		ratio := last / (n + 1)
		for i := n; i >= 1; i-- {
			ts = append(ts, i*ratio+c.StepsOffset)
		}
	case "trailing":
		for _, x := range npArange(float64(last), 0, -float64(T)/float64(n)) {
			ts = append(ts, int(roundEven(x))-1)
		}
	}
	table := sigmaTable(ab)
	d := &dpm{timesteps: ts, pred: c.PredictionType, order: c.SolverOrder, heun: c.SolverType == "heun",
		lowerFinal: true, eulerAtFinal: c.EulerAtFinal, zeroFinal: c.FinalSigmasType == "zero"}
	if c.LowerOrderFinal != nil {
		d.lowerFinal = *c.LowerOrderFinal
	}
	for _, t := range ts {
		if t < 0 || t >= T {
			return nil, fmt.Errorf("%w: dpm++ timestep %d outside 0..%d (steps_offset %d)", ErrUnsupported, t, T-1, c.StepsOffset)
		}
		d.sigmas = append(d.sigmas, table[t])
	}
	d.sigmas = append(d.sigmas, finalSigma(c, ab))
	return d, nil
}

// lambdaClippedIndex is torch.searchsorted(flip(λ), clip): how many of the smallest
// λ_t = log √ᾱ − log √(1−ᾱ) lie below lambda_min_clipped (0 for the default −∞).
func lambdaClippedIndex(ab []float32, clip float64) int {
	if math.IsInf(clip, -1) {
		return 0
	}
	n := len(ab)
	lam := func(i int) float32 { // i-th value of the flipped table
		a := ab[n-1-i]
		return log32(sqrt32(a)) - log32(sqrt32(1-a))
	}
	return sort.Search(n, func(i int) bool { return float64(lam(i)) >= clip })
}

func (d *dpm) Name() string { return "dpm++" }

func (d *dpm) Timesteps() []float64 { return widen(d.timesteps) }

func (d *dpm) ScaleInput([]float32, int) {}

func (d *dpm) InitNoiseSigma() float64 { return 1 }

// alphaSigma converts σ to (α_t, σ_t) = (1/√(σ²+1), σ·α_t).
func alphaSigma(sg float32) (float32, float32) {
	a := 1 / sqrt32(sg*sg+1)
	return a, sg * a
}

// lambda is log α_t − log σ_t.
func lambda(a, s float32) float32 { return log32(a) - log32(s) }

func (d *dpm) PredictX0(out []float32, i int, x []float32) []float32 {
	a, s := alphaSigma(d.sigmas[i])
	x0 := make([]float32, len(x))
	for j := range x {
		switch d.pred {
		case "epsilon":
			x0[j] = (x[j] - s*out[j]) / a
		case "sample":
			x0[j] = out[j]
		case "v_prediction":
			x0[j] = a*x[j] - s*out[j]
		}
	}
	return x0
}

func (d *dpm) Step(out []float32, i int, x []float32) error {
	n := len(d.timesteps)
	if err := checkLens(out, x, i, n); err != nil {
		return err
	}
	if i != d.next {
		return fmt.Errorf("diffusion: dpm++ step %d out of order (expected step %d)", i, d.next)
	}
	lowerFinal := i == n-1 && (d.eulerAtFinal || (d.lowerFinal && n < 15) || d.zeroFinal)
	m0 := d.PredictX0(out, i, x)
	at, st := alphaSigma(d.sigmas[i+1])
	as0, ss0 := alphaSigma(d.sigmas[i])
	lt, ls0 := lambda(at, st), lambda(as0, ss0)
	h := lt - ls0
	ratio := st / ss0
	em1 := exp32(-h) - 1
	c0 := at * em1
	if d.order == 1 || d.lower < 1 || lowerFinal {
		for j := range x {
			x[j] = ratio*x[j] - c0*m0[j]
		}
	} else {
		as1, ss1 := alphaSigma(d.sigmas[i-1])
		h0 := ls0 - lambda(as1, ss1)
		r0 := h0 / h
		inv := 1 / r0
		c1 := 0.5 * c0
		if d.heun {
			c1 = -(at * (em1/h + 1))
		}
		m1 := d.prev
		for j := range x {
			d1 := inv * (m0[j] - m1[j])
			x[j] = ratio*x[j] - c0*m0[j] - c1*d1
		}
	}
	d.prev = m0
	d.lower = min(d.lower+1, d.order)
	d.next++
	return nil
}
