package optim

import (
	"encoding/binary"
	"fmt"
	"math"
	"sort"
	"strconv"

	"simpletuner/trainerproc/engine"
	"simpletuner/trainerproc/engine/philox"
	"simpletuner/trainerproc/safetensors"
)

// decayThreshold is AdamWBF16's delayed weight decay threshold: decay owed to a parameter
// accumulates (weight_decay·lr per step) and is applied once it exceeds this, because a
// per-step decay of ~1e-6 would vanish entirely when rounded to bfloat16.
const decayThreshold = 5e-3

// bf16StateFormat marks adamw_bf16 state in the AdamWBF16 layout (bfloat16 exp_avg,
// exp_avg_sq and shift, accumulated decay per parameter). State written before it has no
// "format" key and float32 exp_avg/exp_avg_sq without a shift; LoadState refuses it.
const bf16StateFormat = "adamw_bf16/2"

// adamwBF16 is SimpleTuner's adamw_bf16 optimizer (its AdamWBF16 class): bfloat16 parameters
// updated by compensated summation, all state in bfloat16, so it costs 6 bytes per weight.
//
// Per parameter with a gradient, at step t and learning rate lr:
//
//	exp_avg    ← round(g + (1−β1)·round(exp_avg·β1))   (sic: the reference's stochastic add
//	                                                    applies its alpha to exp_avg, not g)
//	exp_avg_sq ← round(round(exp_avg_sq·β2) + (1−β2)·g·g)
//	shift      ← round(shift − lr·√(1−β2^t)·exp_avg / round(round(√exp_avg_sq) + eps))
//	p'         ← round(p + shift);  shift ← round(shift + round(p − p'))
//	decay      owed += weight_decay·lr; past decayThreshold: shift ← round(shift − owed·p')
//
// There is no β1 bias correction. round is bfloat16 rounding of a float32 result, stochastic
// where the reference uses its stochastic helpers (exp_avg, both shift adds, p) and to
// nearest elsewhere. Every arithmetic step is float32 with float32 scalars, rounded once, as
// torch computes bfloat16 tensor ops ("opmath") on CUDA; the adds with an alpha are fused
// multiply-adds as torch's kernels compile them.
type adamwBF16 struct {
	h      Hyper
	params []*engine.Parameter
	seed   uint64
	steps  int64
	// nearest replaces the stochastic roundings by round-to-nearest-even; only tests set it,
	// to compare with the reference run the same way.
	nearest bool
	// state holds each updated parameter's state, created on its first update.
	state map[string]*bf16State
}

// bf16State is one parameter's AdamWBF16 state.
type bf16State struct {
	// m, v, shift are exp_avg, exp_avg_sq and the compensation buffer (the part of the update
	// the bfloat16 parameter could not absorb yet), as bfloat16 bits.
	m, v, shift []uint16
	// count is the parameter's own step count (√(1−β2^t) uses it).
	count int64
	// decay is the weight decay owed and not yet applied (accumulated_decay).
	decay float64
}

func (o *adamwBF16) Name() string { return "adamw_bf16" }
func (o *adamwBF16) Hyper() Hyper { return o.h }
func (o *adamwBF16) Steps() int64 { return o.steps }

// newAdamWBF16 rounds the parameters to bfloat16 (the reference requires bfloat16 weights;
// they stay float32 buffers for the engine, holding bfloat16 values).
func newAdamWBF16(h Hyper, params []*engine.Parameter, seed uint64) (*adamwBF16, error) {
	for _, p := range params {
		if err := hostView(p.Tensor, true, func(w []float32) {
			parallel(len(w), func(lo, hi int) {
				for i := lo; i < hi; i++ {
					w[i] = bf(rne(w[i]))
				}
			})
		}); err != nil {
			return nil, err
		}
	}
	return &adamwBF16{h: h, params: params, seed: seed, state: map[string]*bf16State{}}, nil
}

// key is parameter pi's random stream: counter 0 draws its decay start, counter t<<32+k the
// roundings of elements 2k and 2k+1 at its step t.
func (o *adamwBF16) key(pi int) uint64 { return o.seed ^ (uint64(pi+1) * 0x9E3779B97F4A7C15) }

// newState allocates a parameter's state; like the reference, each parameter starts its
// owed decay at a random point in [0, decayThreshold) so that not every weight decays at
// the same step. The draw comes from the seed, so runs repeat.
func (o *adamwBF16) newState(pi, n int) *bf16State {
	u := philox.Uniform01(philox.Block(o.key(pi), 0)[0])
	return &bf16State{
		m: make([]uint16, n), v: make([]uint16, n), shift: make([]uint16, n),
		decay: float64(u * float32(decayThreshold)),
	}
}

// Step implements Optimizer.
func (o *adamwBF16) Step(lr float64) error {
	err := eachUpdate(o.params, func(pi int, p *engine.Parameter, w, g []float32) {
		st := o.state[p.Name]
		if st == nil {
			st = o.newState(pi, p.Numel())
			o.state[p.Name] = st
		}
		o.update(pi, st, w, g, lr)
	})
	if err != nil {
		return err
	}
	o.steps++
	return nil
}

// update applies one AdamWBF16 step to a parameter's values w from its gradient g.
func (o *adamwBF16) update(pi int, st *bf16State, w, g []float32, lr float64) {
	h := o.h
	st.count++
	st.decay += h.WeightDecay * lr
	var decay float64
	if st.decay > decayThreshold {
		decay = st.decay
	}
	st.decay -= decay
	b1, b2 := float32(h.Beta1), float32(h.Beta2)
	a1, a2 := float32(1-h.Beta1), float32(1-h.Beta2)
	eps := float32(h.Eps)
	val := float32(-lr * math.Sqrt(1-math.Pow(h.Beta2, float64(st.count))))
	negDecay := float64(float32(-decay))
	key, ctr := o.key(pi), uint64(st.count)<<32
	nearest := o.nearest
	m, v, sh := st.m, st.v, st.shift
	parallel(len(w), func(lo, hi int) {
		var blk [4]uint32
		for i := lo; i < hi; i++ {
			var r0, r1, r2, r3 uint32
			if !nearest {
				if i == lo || i&1 == 0 {
					blk = philox.Block(key, ctr+uint64(i>>1))
				}
				a, b := blk[(i&1)*2], blk[(i&1)*2+1]
				r0, r1, r2, r3 = a&0xffff, a>>16, b&0xffff, b>>16
			}
			gi := g[i]
			mi := bf(rne(float32(bf(m[i]) * b1)))
			m[i] = round(fma32(mi, a1, gi), r0, nearest)
			vi := bf(rne(float32(bf(v[i]) * b2)))
			v[i] = rne(vi + float32(float32(a2*gi)*gi))
			d := bf(rne(bf(rne(float32(math.Sqrt(float64(bf(v[i])))))) + eps))
			s := bf(round(bf(sh[i])+float32(float32(val*bf(m[i]))/d), r1, nearest))
			old := bf(rne(w[i]))
			p := bf(round(s+old, r2, nearest))
			s = bf(round(bf(rne(old-p))+s, r3, nearest))
			if decay > 0 {
				s = bf(rne(float32(float64(s) + float64(p)*negDecay)))
			}
			sh[i], w[i] = rne(s), p
		}
	})
}

// fma32 is a·b+c rounded once to float32 (a·b is exact in float64; the float64 sum rounds
// before float32 does, which differs from a true float32 fused multiply-add only when the
// float64 sum lands exactly halfway between two float32 values).
func fma32(a, b, c float32) float32 { return float32(float64(a)*float64(b) + float64(c)) }

// rne rounds x to the nearest bfloat16 (ties to even), as a torch bfloat16 result is.
func rne(x float32) uint16 { return safetensors.Float32ToBF16(x) }

// bf widens bfloat16 bits to float32 exactly.
func bf(h uint16) float32 { return safetensors.BF16ToFloat32(h) }

// round rounds x to bfloat16 stochastically with the 16 random bits r (to nearest when
// nearest is set).
func round(x float32, r uint32, nearest bool) uint16 {
	if nearest || math.Float32bits(x)&0x7f800000 == 0x7f800000 {
		return rne(x) // Inf and NaN stay what they are
	}
	return uint16(math.Float32bits(stochasticBF16(x, r)) >> 16)
}

// State implements Optimizer: per updated parameter three BF16 tensors "<param>.exp_avg",
// "<param>.exp_avg_sq" and "<param>.shift" (the state's own bits), and metadata with the
// layout ("format"), the step counts, the owed decay (exact decimal) and the
// hyper-parameters.
func (o *adamwBF16) State() ([]safetensors.Tensor, map[string]string, error) {
	meta := stateMeta(o.Name(), o.steps, o.seed, o.h)
	meta["format"] = bf16StateFormat
	names := make([]string, 0, len(o.state))
	for n := range o.state {
		names = append(names, n)
	}
	sort.Strings(names)
	ts := make([]safetensors.Tensor, 0, 3*len(names))
	for _, n := range names {
		st := o.state[n]
		meta["count."+n] = strconv.FormatInt(st.count, 10)
		meta["decay."+n] = strconv.FormatFloat(st.decay, 'g', -1, 64)
		for _, s := range bf16Slots(st) {
			data := make([]byte, 2*len(s.vals))
			for i, x := range s.vals {
				binary.LittleEndian.PutUint16(data[2*i:], x)
			}
			ts = append(ts, safetensors.Tensor{Name: n + "." + s.name, DType: safetensors.BF16, Shape: []int{len(s.vals)}, Data: data})
		}
	}
	return ts, meta, nil
}

// bf16Slot names one state slice.
type bf16Slot struct {
	name string
	vals []uint16
}

// bf16Slots lists a state's slices under the reference's names.
func bf16Slots(st *bf16State) []bf16Slot {
	return []bf16Slot{{"exp_avg", st.m}, {"exp_avg_sq", st.v}, {"shift", st.shift}}
}

// LoadState implements Optimizer. State saved by the earlier adamw_bf16 (plain AdamW moments
// in float32, no shift, no "format") is refused with ErrState: its moments mean something
// else (bias-corrected AdamW), so carrying them over would silently change the run.
func (o *adamwBF16) LoadState(ts []safetensors.Tensor, meta map[string]string) error {
	steps, err := stateSteps(meta, o.Name())
	if err != nil {
		return err
	}
	if f := meta["format"]; f != bf16StateFormat {
		if f == "" {
			return fmt.Errorf("%w: this adamw_bf16 state comes from an older trainer (float32 AdamW moments, no compensation buffer); "+
				"the current adamw_bf16 (AdamWBF16: bfloat16 moments, compensated summation) cannot continue it: "+
				"resume without the optimizer state or with the trainer version that wrote it", ErrState)
		}
		return fmt.Errorf("%w: adamw_bf16 state format %q, this trainer reads %q", ErrState, f, bf16StateFormat)
	}
	byName := map[string]safetensors.Tensor{}
	for _, t := range ts {
		byName[t.Name] = t
	}
	state := map[string]*bf16State{}
	used := 0
	for _, p := range o.params {
		cs, ok := meta["count."+p.Name]
		if !ok {
			continue // never updated
		}
		st := &bf16State{}
		if st.count, err = strconv.ParseInt(cs, 10, 64); err != nil {
			return fmt.Errorf("%w: count of %s: %w", ErrState, p.Name, err)
		}
		if st.decay, err = strconv.ParseFloat(meta["decay."+p.Name], 64); err != nil {
			return fmt.Errorf("%w: owed decay of %s: %w", ErrState, p.Name, err)
		}
		n := p.Numel()
		st.m, st.v, st.shift = make([]uint16, n), make([]uint16, n), make([]uint16, n)
		for _, s := range bf16Slots(st) {
			t, ok := byName[p.Name+"."+s.name]
			if !ok {
				return fmt.Errorf("%w: %s.%s missing", ErrState, p.Name, s.name)
			}
			if t.DType != safetensors.BF16 {
				return fmt.Errorf("%w: %s.%s is %s, want BF16", ErrState, p.Name, s.name, t.DType)
			}
			if len(t.Data) != 2*n {
				return fmt.Errorf("%w: %s.%s has %d bytes, parameter has %d weights (%d bytes)", ErrState, p.Name, s.name, len(t.Data), n, 2*n)
			}
			for i := range s.vals {
				s.vals[i] = binary.LittleEndian.Uint16(t.Data[2*i:])
			}
			used++
		}
		state[p.Name] = st
	}
	if used != len(ts) {
		return fmt.Errorf("%w: %d state tensors for parameters this run does not have", ErrState, len(ts)-used)
	}
	o.state, o.steps = state, steps
	return nil
}
