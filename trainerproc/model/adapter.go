package model

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"

	"simpletuner/options"
	"simpletuner/trainerproc/engine"
	"simpletuner/trainerproc/engine/philox"
	"simpletuner/trainerproc/safetensors"
)

// Adapter is a trainable low-rank (or Kronecker) update of one frozen Linear module.
type Adapter interface {
	// Apply returns the adapted module's output x·(W+ΔW)ᵀ + b (without activation).
	Apply(e *engine.Engine, x, w, b *engine.Tensor) *engine.Tensor
	// Params are the adapter's trainable weights, named as saved.
	Params() []*engine.Parameter
	// Extra are fixed tensors saved alongside the weights (LyCORIS' alpha).
	Extra() []safetensors.Tensor
}

// AdapterConfig selects and configures adapters (SimpleTuner's model_type=lora options).
type AdapterConfig struct {
	// Type is "standard" (PEFT LoRA) or "lycoris" (LoKr per Lycoris).
	Type string
	// Rank, Alpha and Dropout are lora_rank, lora_alpha (0 means Rank) and lora_dropout.
	Rank    int
	Alpha   float64
	Dropout float64
	// Targets are module-name suffixes to adapt for standard LoRA; empty means PixArt's
	// default (to_q, to_k, to_v, to_out.0 of every attention).
	Targets []string
	// Lycoris is the lycoris_config, checked by options.ParseLycoris (Type "lycoris").
	Lycoris options.LycorisConfig
	// Seed seeds the adapters' initialisation.
	Seed uint64
}

// defaultLoRATargets is SimpleTuner's PixArt LoRA target list.
var defaultLoRATargets = []string{"to_q", "to_k", "to_v", "to_out.0"}

// adapterSpec is one adapter AttachAdapters will add: the module it adapts, the module's
// weight shape and its kind ("Attention" or "FeedForward", LyCORIS' preset names).
type adapterSpec struct {
	module  string
	kind    string
	out, in int
	factor  int // LoKr factor of this module (lycoris only)
}

// adapterPlan lists the adapters c asks for, in the order AttachAdapters adds them, after
// checking c. It allocates nothing, so memory estimates use it too.
func (c Config) adapterPlan(ac AdapterConfig) ([]adapterSpec, error) {
	var specs []adapterSpec
	switch ac.Type {
	case "standard", "lora", "":
		if ac.Rank <= 0 {
			return nil, fmt.Errorf("%w: lora_rank must be positive, got %d", ErrConfig, ac.Rank)
		}
		if ac.Dropout < 0 || ac.Dropout >= 1 {
			return nil, fmt.Errorf("%w: lora_dropout %g outside [0,1)", ErrConfig, ac.Dropout)
		}
	case "lycoris":
		lc := ac.Lycoris
		// options.ParseLycoris refuses anything else; a config built in code that
		// skipped it must not reach newLoKr (a zero linear_dim divides by zero).
		if lc.Algo != options.TrainedLycorisAlgo || lc.LinearDim <= 0 {
			return nil, fmt.Errorf("%w: lycoris config not checked (algo %q, linear_dim %d): read it with options.ParseLycoris", ErrConfig, lc.Algo, lc.LinearDim)
		}
	default:
		return nil, fmt.Errorf("%w: lora_type %q (supported: standard, lycoris)", ErrConfig, ac.Type)
	}
	want := ac.Targets
	if len(want) == 0 {
		want = defaultLoRATargets
	}
	kinds := ac.Lycoris.ApplyPreset.TargetModule
	if len(kinds) == 0 {
		kinds = options.LycorisModules()
	}
	for _, sp := range c.paramShapes() {
		name, ok := strings.CutSuffix(sp.name, ".weight")
		if !ok || !strings.HasPrefix(name, "transformer_blocks.") {
			continue
		}
		kind := "Attention"
		if strings.Contains(name, ".ff.") {
			kind = "FeedForward"
		}
		a := adapterSpec{module: name, kind: kind, out: sp.shape[0], in: sp.shape[1]}
		if ac.Type == "lycoris" {
			if !slices.Contains(kinds, kind) {
				continue
			}
			a.factor = ac.Lycoris.Factor
			if f, ok := ac.Lycoris.ApplyPreset.ModuleAlgoMap[kind]; ok && f.Factor != 0 {
				a.factor = f.Factor
			}
		} else if !slices.ContainsFunc(want, func(s string) bool { return strings.HasSuffix(name, "."+s) }) {
			continue
		}
		specs = append(specs, a)
	}
	if len(specs) == 0 {
		return nil, fmt.Errorf("%w: no module matched the adapter targets", ErrConfig)
	}
	return specs, nil
}

// AttachAdapters freezes every base weight and adds adapters to the transformer's Linear
// modules; afterwards Trainable returns only adapter weights.
func (m *Model) AttachAdapters(c AdapterConfig) (err error) {
	if len(m.adapters) > 0 {
		return fmt.Errorf("%w: adapters already attached", ErrConfig)
	}
	specs, err := m.cfg.adapterPlan(c)
	if err != nil {
		return err
	}
	rng := engine.NewRNG(c.Seed)
	var made []Adapter
	err = engine.Catch(func() {
		alpha := c.Alpha
		if alpha == 0 {
			alpha = float64(c.Rank)
		}
		for _, sp := range specs {
			var a Adapter
			if c.Type == "lycoris" {
				a = newLoKr(m, sp.module, sp.out, sp.in, sp.factor, c.Lycoris, rng)
			} else {
				a = newLoRA(m, sp.module, sp.out, sp.in, c.Rank, alpha, c.Dropout, rng)
			}
			m.addAdapter(sp.module, a)
			made = append(made, a)
		}
	})
	if err != nil {
		for _, a := range made {
			for _, p := range a.Params() {
				p.Free()
			}
		}
		m.adapters, m.adapterOrder = map[string]Adapter{}, nil
		return err
	}
	for _, p := range m.params {
		p.SetRequiresGrad(false)
		p.ZeroGrad()
	}
	return nil
}

func (m *Model) addAdapter(module string, a Adapter) {
	m.adapters[module] = a
	m.adapterOrder = append(m.adapterOrder, module)
}

// HasAdapters reports whether adapters are attached (a LoRA/LyCORIS run).
func (m *Model) HasAdapters() bool { return len(m.adapters) > 0 }

// AdapterTensors returns the adapter weights as saved in pytorch_lora_weights.safetensors
// (float32), in a fixed order.
func (m *Model) AdapterTensors() ([]safetensors.Tensor, error) {
	var out []safetensors.Tensor
	for _, name := range m.adapterOrder {
		a := m.adapters[name]
		for _, p := range a.Params() {
			v, err := p.ToHost()
			if err != nil {
				return nil, fmt.Errorf("model: read %s: %w", p.Name, err)
			}
			t, err := safetensors.FromFloat32(p.Name, safetensors.F32, p.Shape(), v)
			if err != nil {
				return nil, fmt.Errorf("model: encode %s: %w", p.Name, err)
			}
			out = append(out, t)
		}
		out = append(out, a.Extra()...)
	}
	return out, nil
}

// LoadAdapterTensors overwrites the attached adapters' weights from tensors as written by
// AdapterTensors. Every adapter weight must be present with its shape.
func (m *Model) LoadAdapterTensors(ts []safetensors.Tensor) error {
	byName := map[string]safetensors.Tensor{}
	for _, t := range ts {
		byName[t.Name] = t
	}
	for _, name := range m.adapterOrder {
		for _, p := range m.adapters[name].Params() {
			if err := uploadParam(m.e, p, byName); err != nil {
				return err
			}
		}
	}
	return nil
}

// lora is PEFT's LoRA: y = x·Wᵀ + b + (α/r)·B·A·dropout(x); A is kaiming-uniform, B zero.
type lora struct {
	m       *Model
	a, b    *engine.Parameter
	scale   float32
	dropout float64
}

func newLoRA(m *Model, module string, out, in, rank int, alpha, dropout float64, rng *engine.RNG) *lora {
	e := m.e
	bound := float32(1 / math.Sqrt(float64(in))) // kaiming_uniform(a=√5)
	prefix := "transformer." + module
	return &lora{
		m:       m,
		a:       e.NewParameter(prefix+".lora_A.weight", e.RandU(rng, -bound, bound, rank, in)),
		b:       e.NewParameter(prefix+".lora_B.weight", e.Zeros(out, rank)),
		scale:   float32(alpha / float64(rank)),
		dropout: dropout,
	}
}

func (l *lora) Params() []*engine.Parameter { return []*engine.Parameter{l.a, l.b} }
func (l *lora) Extra() []safetensors.Tensor { return nil }

func (l *lora) Apply(e *engine.Engine, x, w, b *engine.Tensor) *engine.Tensor {
	xin := x
	if l.dropout > 0 && l.m.dropRNG != nil && e.GradEnabled() {
		xin = e.Mul(x, dropoutMask(e, l.m.dropRNG, l.dropout, x.Shape()))
	}
	delta := e.Linear(e.Linear(xin, l.a.Tensor, nil), l.b.Tensor, nil)
	return e.Add(e.LinearAct(x, w, b, engine.ActNone), e.Scale(delta, l.scale))
}

// dropoutMask returns an inverted-dropout mask (0 or 1/(1−p)) drawn from rng with the
// uniform stream layout of package philox, built on the host so any backend can use it.
func dropoutMask(e *engine.Engine, rng *engine.RNG, p float64, shape []int) *engine.Tensor {
	n := 1
	for _, d := range shape {
		n *= d
	}
	seed, off := rng.State()
	mask := make([]float32, n)
	keep := float32(1 / (1 - p))
	var blk [4]uint32
	for i := range mask {
		if i%4 == 0 {
			blk = philox.Block(seed, off+uint64(i/4))
		}
		if float64(philox.Uniform01(blk[i%4])) >= p {
			mask[i] = keep
		}
	}
	rng.SetState(seed, off+philox.UniformBlocks(n))
	return e.FromHost(mask, shape...)
}

// lokr is LyCORIS LoKr: ΔW = scale·kron(W1, W2), W1 [outL, inM] kaiming-uniform, W2
// [outK, inN] zero (or W2a·W2b, rank linear_dim, when the full matrix is not requested and
// the rank is small enough to save parameters).
type lokr struct {
	w1, w2, w2a, w2b     *engine.Parameter
	outL, outK, inM, inN int
	scale                float32
	alpha                float32
	prefix               string
}

// factorization is LyCORIS' factorization(dimension, factor): the pair (m, n), m ≤ n,
// m·n = dimension, with m = factor when it divides, otherwise the most balanced split whose
// smaller factor does not exceed factor.
func factorization(dimension, factor int) (int, int) {
	if factor > 0 && dimension%factor == 0 {
		m, n := factor, dimension/factor
		if m > n {
			m, n = n, m
		}
		return m, n
	}
	if factor < 0 {
		factor = dimension
	}
	m, n := 1, dimension
	length := m + n
	for m < n {
		nm := m + 1
		for dimension%nm != 0 {
			nm++
		}
		nn := dimension / nm
		if nm+nn > length || nm > factor {
			break
		}
		m, n = nm, nn
	}
	if m > n {
		m, n = n, m
	}
	return m, n
}

// lokrShape is the factorisation LoKr uses for an out×in weight: W1 is [outL, inM]; W2 is
// [outK, inN] when full, else W2a [outK, linear_dim] · W2b [linear_dim, inN].
func lokrShape(out, in, factor int, c options.LycorisConfig) (outL, outK, inM, inN int, full bool) {
	inM, inN = factorization(in, factor)
	outL, outK = factorization(out, factor)
	return outL, outK, inM, inN, c.FullMatrix || 2*c.LinearDim >= max(outK, inN)
}

func newLoKr(m *Model, module string, out, in, factor int, c options.LycorisConfig, rng *engine.RNG) *lokr {
	e := m.e
	outL, outK, inM, inN, full := lokrShape(out, in, factor, c)
	k := &lokr{outL: outL, outK: outK, inM: inM, inN: inN, prefix: "lycoris_" + strings.ReplaceAll(module, ".", "_")}
	dim := c.LinearDim
	alpha := c.LinearAlpha
	bound := func(fanIn int) float32 { return float32(1 / math.Sqrt(float64(fanIn))) }
	k.w1 = e.NewParameter(k.prefix+".lokr_w1", e.RandU(rng, -bound(inM), bound(inM), outL, inM))
	if full {
		k.w2 = e.NewParameter(k.prefix+".lokr_w2", e.Zeros(outK, inN))
		alpha = float64(dim) // both factors full: LyCORIS sets alpha = dim, so scale = 1
	} else {
		k.w2a = e.NewParameter(k.prefix+".lokr_w2_a", e.RandU(rng, -bound(dim), bound(dim), outK, dim))
		k.w2b = e.NewParameter(k.prefix+".lokr_w2_b", e.Zeros(dim, inN))
	}
	mult := c.Multiplier
	if mult == 0 {
		mult = 1
	}
	k.alpha = float32(alpha)
	k.scale = float32(alpha / float64(dim) * mult)
	return k
}

func (k *lokr) Params() []*engine.Parameter {
	if k.w2 != nil {
		return []*engine.Parameter{k.w1, k.w2}
	}
	return []*engine.Parameter{k.w1, k.w2a, k.w2b}
}

func (k *lokr) Extra() []safetensors.Tensor {
	t, _ := safetensors.FromFloat32(k.prefix+".alpha", safetensors.F32, []int{}, []float32{k.alpha})
	return []safetensors.Tensor{t}
}

// Apply merges ΔW into the weight: W[(i·outK+j), (p·inN+q)] += scale·W1[i,p]·W2[j,q] is a
// broadcast product of W1 as [outL,1,inM,1] and W2 as [1,outK,1,inN].
func (k *lokr) Apply(e *engine.Engine, x, w, b *engine.Tensor) *engine.Tensor {
	w2 := func() *engine.Tensor {
		if k.w2 != nil {
			return k.w2.Tensor
		}
		return e.MatMul(k.w2a.Tensor, k.w2b.Tensor, false, false)
	}()
	kron := e.Mul(e.Reshape(k.w1.Tensor, k.outL, 1, k.inM, 1), e.Reshape(w2, 1, k.outK, 1, k.inN))
	dw := e.Scale(e.Reshape(kron, k.outL*k.outK, k.inM*k.inN), k.scale)
	return e.LinearAct(x, e.Add(w, dw), b, engine.ActNone)
}

// adapterNames lists the saved names of the attached adapters' weights (sorted), for tests and
// diagnostics.
func (m *Model) adapterNames() []string {
	var names []string
	for _, a := range m.adapters {
		for _, p := range a.Params() {
			names = append(names, p.Name)
		}
	}
	sort.Strings(names)
	return names
}
