package t5

import (
	"fmt"
	"math"

	"simpletuner/trainerproc/engine"
	"simpletuner/trainerproc/safetensors"
)

// block holds the weights of one encoder block.
type block struct {
	attnNorm, q, k, v, o *engine.Parameter
	ffNorm, wi0, wi1, wo *engine.Parameter // wi1 is nil for a non-gated feed-forward
}

// Encoder is a frozen T5 encoder on an engine. It is driven by the goroutine that drives
// its engine (engines are single-goroutine), so no lock guards it.
type Encoder struct {
	e   *engine.Engine
	cfg Config

	embed, relBias, finalNorm *engine.Parameter
	blocks                    []block
	// params are every weight in load order; byName indexes them by their file name.
	params []*engine.Parameter
	byName map[string]*engine.Parameter
	// dtypes is each weight's type on disk (F32 for a random encoder), which Save writes
	// back.
	dtypes map[string]safetensors.DType
	// aliases are further file names of a weight (EmbedTokensName beside SharedName), saved
	// as copies of it so that a file that stored both round-trips.
	aliases map[string]string
	// Ignored lists tensors of the loaded checkpoint the encoder does not use (a decoder,
	// an LM head): loading skips them and Save does not write them.
	Ignored []string
}

// newEncoder builds the weights of cfg, the token embedding under embedName, each from
// init (which returns a fresh leaf tensor of the spec's shape).
func newEncoder(e *engine.Engine, cfg Config, embedName string, init func(tensorSpec) *engine.Tensor) (m *Encoder, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m = &Encoder{e: e, cfg: cfg, byName: map[string]*engine.Parameter{}, dtypes: map[string]safetensors.DType{}, aliases: map[string]string{}}
	err = engine.Catch(func() {
		for _, s := range cfg.specs(embedName) {
			p := e.NewParameter(s.name, init(s))
			p.SetRequiresGrad(false) // frozen: the encoder only conditions, it never trains
			m.params = append(m.params, p)
			m.byName[s.name] = p
			m.dtypes[s.name] = safetensors.F32
		}
	})
	if err != nil {
		m.Free()
		return nil, fmt.Errorf("t5: allocate weights: %w", err)
	}
	m.embed, m.relBias, m.finalNorm = m.byName[embedName], m.byName[RelativeBiasName], m.byName[FinalNormName]
	for l := range cfg.NumLayers {
		n := namesOf(l, cfg.Gated)
		b := block{
			attnNorm: m.byName[n.attnNorm], q: m.byName[n.q], k: m.byName[n.k], v: m.byName[n.v], o: m.byName[n.o],
			ffNorm: m.byName[n.ffNorm], wi0: m.byName[n.wi0], wo: m.byName[n.wo],
		}
		if cfg.Gated {
			b.wi1 = m.byName[n.wi1]
		}
		m.blocks = append(m.blocks, b)
	}
	return m, nil
}

// NewRandom builds an encoder for cfg with random weights (benchmarks and tests): norms 1,
// the embedding and the relative bias table N(0, 1), every projection N(0, 1/fan_in) so
// that activations stay of order one through the blocks. The same seed gives the same
// weights on every backend.
func NewRandom(e *engine.Engine, cfg Config, seed uint64) (*Encoder, error) {
	rng := engine.NewRNG(seed)
	return newEncoder(e, cfg, SharedName, func(s tensorSpec) *engine.Tensor {
		switch {
		case len(s.shape) == 1:
			return e.Full(1, s.shape...)
		case s.name == SharedName || s.name == RelativeBiasName:
			return e.RandN(rng, 0, 1, s.shape...)
		default:
			return e.RandN(rng, 0, float32(1/math.Sqrt(float64(s.shape[1]))), s.shape...)
		}
	})
}

// Config returns the encoder's config.
func (m *Encoder) Config() Config { return m.cfg }

// Parameters returns the weights in load order (frozen: none requires a gradient).
func (m *Encoder) Parameters() []*engine.Parameter {
	return append([]*engine.Parameter(nil), m.params...)
}

// Free releases every weight. The encoder is unusable afterwards; Free is idempotent.
func (m *Encoder) Free() {
	for _, p := range m.params {
		p.Free()
	}
}

// Forward runs the encoder on batch sequences of equal length: ids holds batch·L token ids
// row-major, mask (nil: every token is real) holds 1 for real tokens and 0 for padding. It
// returns the final hidden states [batch, L, d_model], owned by the caller's innermost
// scope (or by the caller when none is open). Padding positions keep their states, as the
// reference leaves them; only the keys they contribute are masked.
//
// Attention is composed from MatMul, Add, Softmax and MatMul rather than the engine's fused
// Attention, because T5 adds a per-head, per-(query, key) relative position bias to the
// scores, which the fused kernel (a 0/1 key mask and a scale) cannot express.
func (m *Encoder) Forward(ids []int32, mask []int32, batch int) (*engine.Tensor, error) {
	if batch <= 0 || len(ids) == 0 || len(ids)%batch != 0 {
		return nil, fmt.Errorf("%w: %d ids for a batch of %d", ErrInput, len(ids), batch)
	}
	if mask != nil && len(mask) != len(ids) {
		return nil, fmt.Errorf("%w: mask of %d for %d ids", ErrInput, len(mask), len(ids))
	}
	for i, id := range ids {
		if id < 0 || int(id) >= m.cfg.VocabSize {
			return nil, fmt.Errorf("%w: token id %d at %d outside the vocabulary of %d", ErrInput, id, i, m.cfg.VocabSize)
		}
	}
	e := m.e
	defer e.NoGrad()()
	var out *engine.Tensor
	err := catchHost(func() error {
		return engine.Catch(func() {
			sc := e.Scope()
			defer sc.Close()
			n := len(ids) / batch
			bias := m.attentionBias(mask, batch, n)
			h := view(e, e.Embedding(m.embed.Tensor, ids), batch, n, m.cfg.DModel)
			for i := range m.blocks {
				next := m.block(&m.blocks[i], h, bias)
				h.Free() // the residual stream of the previous block is no longer needed
				h = next
			}
			out = sc.Keep(e.RMSNorm(h, m.finalNorm.Tensor, float32(m.cfg.LayerNormEpsilon)))
		})
	})
	if err != nil {
		return nil, fmt.Errorf("t5: forward: %w", err)
	}
	return out, nil
}

// attentionBias is what every block adds to its scores: the relative position bias of
// block 0's table, [1, H, L, L] gathered by bucket, plus, with a mask, the most negative
// float32 on the keys of padding (the reference's (1−mask)·finfo.min), giving [B, H, L, L].
func (m *Encoder) attentionBias(mask []int32, batch, n int) *engine.Tensor {
	e, h := m.e, m.cfg.NumHeads
	buckets := bucketTable(n, m.cfg.RelativeAttentionNumBuckets, m.cfg.RelativeAttentionMaxDistance)
	gathered := e.Embedding(m.relBias.Tensor, buckets) // [query·key, head]
	g3 := view(e, gathered, n, n, h)
	pos := e.Permute(g3, 2, 0, 1)
	g3.Free()
	pos4 := view(e, pos, 1, h, n, n)
	if mask == nil {
		return pos4
	}
	keys := make([]float32, len(mask))
	for i, v := range mask {
		if v == 0 {
			keys[i] = -math.MaxFloat32
		}
	}
	keyBias := e.FromHost(keys, batch, 1, 1, n)
	bias := e.Add(pos4, keyBias)
	pos4.Free()
	keyBias.Free()
	return bias
}

// heads turns projections [B, L, H·Dk] into per-head [B, H, L, Dk], freeing x.
func (m *Encoder) heads(x *engine.Tensor) *engine.Tensor {
	e := m.e
	b, n := x.Dim(0), x.Dim(1)
	r := view(e, x, b, n, m.cfg.NumHeads, m.cfg.DKV)
	y := e.Permute(r, 0, 2, 1, 3)
	r.Free()
	return y
}

// view reshapes x and frees the handle x, so that the returned view is the only owner of
// the storage and freeing it frees the memory.
func view(e *engine.Engine, x *engine.Tensor, shape ...int) *engine.Tensor {
	v := e.Reshape(x, shape...)
	x.Free()
	return v
}

// block runs one encoder block on the residual stream h [B, L, D] and returns the new
// stream. Every intermediate is freed as soon as it is consumed (views included: a view
// keeps its storage alive), which keeps the peak at one block's working set (see
// Config.Memory); the block's scope frees the few views left.
func (m *Encoder) block(b *block, h, bias *engine.Tensor) *engine.Tensor {
	e := m.e
	eps := float32(m.cfg.LayerNormEpsilon)
	sc := e.Scope()
	defer sc.Close()
	bsz, n := h.Dim(0), h.Dim(1)

	x := e.RMSNorm(h, b.attnNorm.Tensor, eps)
	q := m.heads(e.Linear(x, b.q.Tensor, nil))
	k := m.heads(e.Linear(x, b.k.Tensor, nil))
	v := m.heads(e.Linear(x, b.v.Tensor, nil))
	x.Free()
	scores := e.MatMul(q, k, false, true) // T5 does not scale by 1/√Dk
	q.Free()
	k.Free()
	biased := e.Add(scores, bias)
	scores.Free()
	probs := e.Softmax(biased)
	biased.Free()
	ctx := e.MatMul(probs, v, false, false) // [B, H, L, Dk]
	probs.Free()
	v.Free()
	perm := e.Permute(ctx, 0, 2, 1, 3)
	ctx.Free()
	merged := view(e, perm, bsz, n, m.cfg.InnerDim())
	attn := e.Linear(merged, b.o.Tensor, nil)
	merged.Free()
	h1 := e.Add(h, attn)
	attn.Free()

	x = e.RMSNorm(h1, b.ffNorm.Tensor, eps)
	hidden := m.feedForwardHidden(b, x)
	x.Free()
	ff := e.Linear(hidden, b.wo.Tensor, nil)
	hidden.Free()
	out := e.Add(h1, ff)
	h1.Free()
	ff.Free()
	return sc.Keep(out)
}

// feedForwardHidden is the feed-forward before its output projection: act(x·wi_0ᵀ)·(x·wi_1ᵀ)
// when gated, act(x·wiᵀ) otherwise.
func (m *Encoder) feedForwardHidden(b *block, x *engine.Tensor) *engine.Tensor {
	e := m.e
	var gate *engine.Tensor
	switch m.cfg.Act {
	case ActGELUTanh:
		gate = e.LinearAct(x, b.wi0.Tensor, nil, engine.ActGELUTanh)
	case ActSiLU:
		gate = e.LinearAct(x, b.wi0.Tensor, nil, engine.ActSiLU)
	default:
		pre := e.Linear(x, b.wi0.Tensor, nil)
		gate = hostActivation(e, pre, m.cfg.Act)
		pre.Free()
	}
	if b.wi1 == nil {
		return gate
	}
	lin := e.Linear(x, b.wi1.Tensor, nil)
	out := e.Mul(gate, lin)
	gate.Free()
	lin.Free()
	return out
}

// hostError carries a failed host copy out of the ops of a forward pass, which panic on
// errors as engine ops do; catchHost turns it back into an error.
type hostError struct{ err error }

// catchHost runs fn and returns its error, or the error of a hostError panic inside it.
// Other panics pass through.
func catchHost(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			he, ok := r.(hostError)
			if !ok {
				panic(r)
			}
			err = he.err
		}
	}()
	return fn()
}

// hostActivation applies an activation no backend kernel implements (ReLU and the exact
// GELU, only used by the original T5 and unusual configs; the T5 v1.1 encoders diffusion
// pipelines ship use GELU-tanh) on the host: exact, and cheap next to the GEMMs around it.
func hostActivation(e *engine.Engine, x *engine.Tensor, act Activation) *engine.Tensor {
	v, err := x.ToHost()
	if err != nil {
		panic(hostError{err})
	}
	for i, f := range v {
		switch act {
		case ActReLU:
			v[i] = max(f, 0)
		case ActGELU:
			v[i] = float32(0.5 * float64(f) * (1 + math.Erf(float64(f)/math.Sqrt2)))
		default:
			panic(fmt.Sprintf("t5: no host implementation of activation %q", act))
		}
	}
	return e.FromHost(v, x.Shape()...)
}
