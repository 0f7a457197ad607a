package optim

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"

	"simpletuner/trainerproc/engine"
	"simpletuner/trainerproc/engine/cpu"
	"simpletuner/trainerproc/safetensors"
)

// Sentinel errors at the package boundary.
var (
	// ErrUnsupported reports an optimizer or scheduler name this trainer does not implement.
	ErrUnsupported = errors.New("optim: unsupported")
	// ErrConfig reports invalid hyper-parameters.
	ErrConfig = errors.New("optim: invalid config")
	// ErrState reports optimizer state that does not match the optimizer or its parameters.
	ErrState = errors.New("optim: state mismatch")
)

// supported lists the optimizer names, in SimpleTuner's spelling.
var supported = []string{"adamw", "adamw_bf16", "optimi-adamw", "optimi-lion", "optimi-sgd"}

// Supported returns the optimizer names New accepts.
func Supported() []string { return append([]string(nil), supported...) }

// Hyper holds an optimizer's hyper-parameters.
type Hyper struct {
	Beta1, Beta2, Eps, WeightDecay, Momentum float64
}

// defaults are each optimizer's defaults (torch AdamW; SimpleTuner's AdamWBF16; torch-optimi).
var defaults = map[string]Hyper{
	"adamw":        {Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 1e-2},
	"adamw_bf16":   {Beta1: 0.9, Beta2: 0.999, Eps: 1e-6, WeightDecay: 1e-2},
	"optimi-adamw": {Beta1: 0.9, Beta2: 0.99, Eps: 1e-6, WeightDecay: 1e-2},
	"optimi-lion":  {Beta1: 0.9, Beta2: 0.99},
	"optimi-sgd":   {},
}

// Optimizer updates a fixed list of parameters from their accumulated gradients.
type Optimizer interface {
	// Name is the optimizer's SimpleTuner name.
	Name() string
	// Hyper returns the hyper-parameters in use.
	Hyper() Hyper
	// Step applies one update at learning rate lr. Parameters without a gradient are left
	// alone (their state does not advance either, as in PyTorch).
	Step(lr float64) error
	// Steps is the number of updates applied so far.
	Steps() int64
	// State returns the optimizer state as float32 tensors (exact) and metadata.
	State() ([]safetensors.Tensor, map[string]string, error)
	// LoadState restores a State; it fails with ErrState on any mismatch.
	LoadState(ts []safetensors.Tensor, meta map[string]string) error
}

// ParseConfig parses SimpleTuner's optimizer_config string ("beta1=0.9,weight_decay=0.01")
// into overrides for New.
func ParseConfig(s string) (map[string]float64, error) {
	out := map[string]float64{}
	for _, kv := range strings.Split(s, ",") {
		kv = strings.TrimSpace(kv)
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("%w: optimizer_config entry %q is not key=value", ErrConfig, kv)
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil {
			return nil, fmt.Errorf("%w: optimizer_config %s: %w", ErrConfig, k, err)
		}
		out[strings.TrimSpace(k)] = f
	}
	return out, nil
}

// New returns the named optimizer over params. overrides set hyper-parameters by name
// (beta1, beta2, eps/epsilon, weight_decay, momentum); seed drives adamw_bf16's stochastic
// rounding. adamw_bf16 rounds the parameters to bfloat16 on construction.
func New(name string, params []*engine.Parameter, overrides map[string]float64, seed uint64) (Optimizer, error) {
	h, ok := defaults[name]
	if !ok {
		return nil, fmt.Errorf("%w: optimizer %q (supported: %s)", ErrUnsupported, name, strings.Join(supported, ", "))
	}
	for k, v := range overrides {
		switch k {
		case "beta1":
			h.Beta1 = v
		case "beta2":
			h.Beta2 = v
		case "eps", "epsilon":
			h.Eps = v
		case "weight_decay":
			h.WeightDecay = v
		case "momentum":
			h.Momentum = v
		default:
			return nil, fmt.Errorf("%w: unknown optimizer option %q for %s", ErrConfig, k, name)
		}
	}
	if h.Beta1 < 0 || h.Beta1 >= 1 || h.Beta2 < 0 || h.Beta2 >= 1 || h.Eps < 0 || h.WeightDecay < 0 || h.Momentum < 0 {
		return nil, fmt.Errorf("%w: %s hyper-parameters %+v out of range", ErrConfig, name, h)
	}
	seen := map[string]bool{}
	for _, p := range params {
		if seen[p.Name] {
			return nil, fmt.Errorf("%w: duplicate parameter %q", ErrConfig, p.Name)
		}
		seen[p.Name] = true
	}
	if name == "adamw_bf16" {
		return newAdamWBF16(h, params, seed)
	}
	return &opt{name: name, h: h, params: params, seed: seed, state: map[string][][]float32{}, slots: stateSlots(name, h)}, nil
}

// stateSlots names the per-parameter state an optimizer keeps (one float32 per weight each).
func stateSlots(name string, h Hyper) []string {
	switch name {
	case "adamw", "optimi-adamw":
		return []string{"exp_avg", "exp_avg_sq"}
	case "adamw_bf16":
		return []string{"exp_avg", "exp_avg_sq", "shift"}
	case "optimi-lion":
		return []string{"exp_avg"}
	case "optimi-sgd":
		if h.Momentum > 0 {
			return []string{"momentum_buffer"}
		}
	}
	return nil
}

// StateBytesWith is the bytes of optimizer state the named optimizer keeps per trainable
// weight with New's overrides (momentum matters), for memory estimates: adamw and
// optimi-adamw 8 (two float32 moments), adamw_bf16 6 (three bfloat16 values), optimi-lion
// 4, optimi-sgd 0 (4 with momentum). It fails with ErrUnsupported on a name New does not
// accept.
func StateBytesWith(name string, overrides map[string]float64) (int, error) {
	return stateBytes(name, overrides)
}

func stateBytes(name string, overrides map[string]float64) (int, error) {
	h, ok := defaults[name]
	if !ok {
		return 0, fmt.Errorf("%w: optimizer %q (supported: %s)", ErrUnsupported, name, strings.Join(supported, ", "))
	}
	if m, ok := overrides["momentum"]; ok {
		h.Momentum = m
	}
	size := 4 // float32 per slot
	if name == "adamw_bf16" {
		size = 2 // bfloat16 per slot
	}
	return size * len(stateSlots(name, h)), nil
}

// opt implements every supported optimizer; the per-element rule is picked by name.
type opt struct {
	name   string
	h      Hyper
	params []*engine.Parameter
	slots  []string
	seed   uint64
	steps  int64
	// state holds, per parameter name, one float32 slice per slot, created on first update.
	state map[string][][]float32
	// count is the per-parameter step count (bias correction), as PyTorch keeps it.
	count map[string]int64
	bufs  hostBufs
}

func (o *opt) Name() string { return o.name }
func (o *opt) Hyper() Hyper { return o.h }
func (o *opt) Steps() int64 { return o.steps }

// hostView calls fn with a host slice of t's values and writes it back: zero-copy on the
// float32 CPU backend; elsewhere the values travel through *scratch, grown as needed and kept
// by the caller so that a step allocates nothing (nil scratch: a fresh slice).
func hostView(t *engine.Tensor, write bool, scratch *[]float32, fn func([]float32)) error {
	if _, ok := t.Engine().Backend().(*cpu.Backend[float32]); ok {
		fn(cpu.Data[float32](t.Buffer()))
		return nil
	}
	var v []float32
	if scratch != nil {
		if cap(*scratch) < t.Numel() {
			*scratch = make([]float32, t.Numel())
		}
		v = (*scratch)[:t.Numel()]
	} else {
		v = make([]float32, t.Numel())
	}
	if err := t.Engine().Backend().Download(v, t.Buffer()); err != nil {
		return fmt.Errorf("optim: read: %w: %w", engine.ErrBackend, err)
	}
	fn(v)
	if write {
		if err := t.Engine().Backend().Upload(t.Buffer(), v); err != nil {
			return fmt.Errorf("optim: write: %w: %w", engine.ErrBackend, err)
		}
	}
	return nil
}

// hostBufs are an optimizer's reusable host copies of a parameter and its gradient, for
// backends whose memory the host cannot address; only Step uses them (Steps do not overlap).
type hostBufs struct{ w, g []float32 }

// parallel runs fn over [0,n) in fixed chunks on up to GOMAXPROCS goroutines; results do not
// depend on the split because every element is independent.
func parallel(n int, fn func(lo, hi int)) {
	const chunk = 1 << 15
	workers := min(runtime.GOMAXPROCS(0), (n+chunk-1)/chunk)
	if workers <= 1 {
		fn(0, n)
		return
	}
	var wg sync.WaitGroup
	var next int64
	var mu sync.Mutex
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				lo := int(next)
				next += chunk
				mu.Unlock()
				if lo >= n {
					return
				}
				fn(lo, min(lo+chunk, n))
			}
		}()
	}
	wg.Wait()
}

// eachUpdate calls fn for every parameter with a gradient, in order, with host views of its
// values (written back afterwards) and of its gradient, copied through bufs where needed.
func eachUpdate(params []*engine.Parameter, bufs *hostBufs, fn func(pi int, p *engine.Parameter, w, g []float32)) error {
	for pi, p := range params {
		if p.Grad() == nil {
			continue
		}
		var err error
		gerr := hostView(p.Grad(), false, &bufs.g, func(g []float32) {
			err = hostView(p.Tensor, true, &bufs.w, func(w []float32) { fn(pi, p, w, g) })
		})
		if gerr != nil {
			return gerr
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (o *opt) Step(lr float64) error {
	if o.count == nil {
		o.count = map[string]int64{}
	}
	h := o.h
	err := eachUpdate(o.params, &o.bufs, func(_ int, p *engine.Parameter, w, g []float32) {
		st := o.state[p.Name]
		if st == nil {
			st = make([][]float32, len(o.slots))
			for i := range st {
				st[i] = make([]float32, p.Numel())
			}
			o.state[p.Name] = st
		}
		o.count[p.Name]++
		step := o.count[p.Name]
		decay := float32(1 - lr*h.WeightDecay)
		switch o.name {
		case "adamw", "optimi-adamw":
			bc1 := 1 - math.Pow(h.Beta1, float64(step))
			bc2 := 1 - math.Pow(h.Beta2, float64(step))
			b1, b2, eps := float32(h.Beta1), float32(h.Beta2), float32(h.Eps)
			stepSize := float32(lr / bc1)
			sqrtBC2 := float32(math.Sqrt(bc2))
			invBC2 := float32(1 / bc2)
			m, v := st[0], st[1]
			optimi := o.name == "optimi-adamw"
			parallel(len(w), func(lo, hi int) {
				for i := lo; i < hi; i++ {
					gi := g[i]
					wi := w[i] * decay
					var denom float32
					if optimi {
						m[i] += (gi - m[i]) * (1 - b1) // lerp, as torch-optimi
						v[i] = v[i]*b2 + (1-b2)*gi*gi
						denom = float32(math.Sqrt(float64(v[i]*invBC2))) + eps
					} else {
						m[i] = m[i]*b1 + (1-b1)*gi
						v[i] = v[i]*b2 + (1-b2)*gi*gi
						denom = float32(math.Sqrt(float64(v[i])))/sqrtBC2 + eps
					}
					w[i] = wi - stepSize*m[i]/denom
				}
			})
		case "optimi-lion":
			b1, b2, l := float32(h.Beta1), float32(h.Beta2), float32(lr)
			m := st[0]
			parallel(len(w), func(lo, hi int) {
				for i := lo; i < hi; i++ {
					c := m[i] + (g[i]-m[i])*(1-b1)
					w[i] = w[i]*decay - l*sign(c)
					m[i] += (g[i] - m[i]) * (1 - b2)
				}
			})
		case "optimi-sgd":
			l, mom := float32(lr), float32(h.Momentum)
			parallel(len(w), func(lo, hi int) {
				for i := lo; i < hi; i++ {
					d := g[i]
					if len(st) > 0 {
						st[0][i] = st[0][i]*mom + g[i]
						d = st[0][i]
					}
					w[i] = w[i]*decay - l*d
				}
			})
		}
	})
	if err != nil {
		return err
	}
	o.steps++
	return nil
}

func sign(x float32) float32 {
	switch {
	case x > 0:
		return 1
	case x < 0:
		return -1
	}
	return 0
}

// State implements Optimizer: one F32 tensor "<param>.<slot>" per state slice, and metadata
// with the optimizer name, step counts and hyper-parameters (exact decimal round-trips). The
// tensors fill their bytes from the live state when written (safetensors.Tensor.Fill), so
// they must be written before the next Step; no copy of the state is made.
func (o *opt) State() ([]safetensors.Tensor, map[string]string, error) {
	meta := stateMeta(o.name, o.steps, o.seed, o.h)
	var ts []safetensors.Tensor
	names := make([]string, 0, len(o.state))
	for n := range o.state {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		meta["count."+n] = strconv.FormatInt(o.count[n], 10)
		for i, slot := range o.slots {
			v := o.state[n][i]
			ts = append(ts, safetensors.Tensor{Name: n + "." + slot, DType: safetensors.F32, Shape: []int{len(v)},
				Fill: func(dst []byte) error { return safetensors.PutFloat32(dst, safetensors.F32, v) }})
		}
	}
	return ts, meta, nil
}

// stateMeta is the metadata every optimizer's State starts with: its name, step count, seed
// and hyper-parameters (exact decimal round trips).
func stateMeta(name string, steps int64, seed uint64, h Hyper) map[string]string {
	return map[string]string{
		"optimizer": name,
		"steps":     strconv.FormatInt(steps, 10),
		"seed":      strconv.FormatUint(seed, 10),
		"hyper":     fmt.Sprintf("%v,%v,%v,%v,%v", h.Beta1, h.Beta2, h.Eps, h.WeightDecay, h.Momentum),
	}
}

// stateSteps checks that meta is the named optimizer's state and returns its step count.
func stateSteps(meta map[string]string, name string) (int64, error) {
	if meta["optimizer"] != name {
		return 0, fmt.Errorf("%w: state of optimizer %q, this run uses %q", ErrState, meta["optimizer"], name)
	}
	steps, err := strconv.ParseInt(meta["steps"], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: steps: %w", ErrState, err)
	}
	return steps, nil
}

// LoadState implements Optimizer.
func (o *opt) LoadState(ts []safetensors.Tensor, meta map[string]string) error {
	steps, err := stateSteps(meta, o.name)
	if err != nil {
		return err
	}
	byName := map[string]safetensors.Tensor{}
	for _, t := range ts {
		byName[t.Name] = t
	}
	state := map[string][][]float32{}
	count := map[string]int64{}
	used := 0
	for _, p := range o.params {
		cs, ok := meta["count."+p.Name]
		if !ok {
			continue // never updated
		}
		c, err := strconv.ParseInt(cs, 10, 64)
		if err != nil {
			return fmt.Errorf("%w: count of %s: %w", ErrState, p.Name, err)
		}
		count[p.Name] = c
		st := make([][]float32, len(o.slots))
		for i, slot := range o.slots {
			t, ok := byName[p.Name+"."+slot]
			if !ok {
				return fmt.Errorf("%w: %s.%s missing", ErrState, p.Name, slot)
			}
			if t.DType != safetensors.F32 {
				return fmt.Errorf("%w: %s.%s is %s, want F32", ErrState, p.Name, slot, t.DType)
			}
			v, err := t.Float32()
			if err != nil {
				return fmt.Errorf("%w: %s.%s: %w", ErrState, p.Name, slot, err)
			}
			if len(v) != p.Numel() {
				return fmt.Errorf("%w: %s.%s has %d values, parameter has %d", ErrState, p.Name, slot, len(v), p.Numel())
			}
			st[i] = v
			used++
		}
		state[p.Name] = st
	}
	if used != len(ts) {
		return fmt.Errorf("%w: %d state tensors for parameters this run does not have", ErrState, len(ts)-used)
	}
	o.state, o.count, o.steps = state, count, steps
	return nil
}

// ClipGradNorm scales the gradients of params so that their global L2 norm is at most
// maxNorm (torch.nn.utils.clip_grad_norm_: coefficient maxNorm/(norm+1e-6), capped at 1) and
// returns the norm before clipping. maxNorm ≤ 0 only measures. The sum runs in float64 in
// parameter order, so the result does not depend on threads.
func ClipGradNorm(params []*engine.Parameter, maxNorm float64) (float64, error) {
	var sum float64
	for _, p := range params {
		if p.Grad() == nil {
			continue
		}
		if err := hostView(p.Grad(), false, nil, func(g []float32) {
			for _, v := range g {
				sum += float64(v) * float64(v)
			}
		}); err != nil {
			return 0, err
		}
	}
	norm := math.Sqrt(sum)
	if maxNorm <= 0 || math.IsNaN(norm) || math.IsInf(norm, 0) {
		return norm, nil
	}
	coef := maxNorm / (norm + 1e-6)
	if coef >= 1 {
		return norm, nil
	}
	c := float32(coef)
	for _, p := range params {
		if p.Grad() == nil {
			continue
		}
		if err := hostView(p.Grad(), true, nil, func(g []float32) {
			for i := range g {
				g[i] *= c
			}
		}); err != nil {
			return 0, err
		}
	}
	return norm, nil
}
