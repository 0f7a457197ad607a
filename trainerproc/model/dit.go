package model

import (
	"fmt"
	"math"

	"simpletuner/trainerproc/engine"
)

// Model is a dit model on one engine: its parameters, optional adapters and cached
// position embeddings. Like the engine, it is driven by one goroutine.
type Model struct {
	e      *engine.Engine
	cfg    Config
	params []*engine.Parameter // base weights in paramShapes order
	byName map[string]*engine.Parameter
	// adapters maps a module path (e.g. "transformer_blocks.0.attn1.to_q") to its adapter.
	adapters     map[string]Adapter
	adapterOrder []string
	// pos caches host position embeddings per token grid (h, w); uploaded per forward.
	pos map[[2]int][]float32
	// dropRNG is the stream adapter dropout draws from; set by Loss for one forward pass
	// (nil: no dropout, as at inference).
	dropRNG *engine.RNG
	// cond holds the reference images of the forward pass in progress (ForwardCond, Loss
	// with LossOptions.Cond); nil otherwise. Like dropRNG it lives for one call.
	cond []*engine.Tensor
	// checkpointing recomputes each block in the backward pass (SetGradientCheckpointing).
	checkpointing bool
	// source is what LoadTransformer read (config bytes, stored dtypes); nil for a model
	// built by New or Load.
	source *pixartSource
}

// New builds a model with PixArt's initialisation drawn from a Philox stream seeded by seed.
// The caller frees it with Free.
func New(e *engine.Engine, cfg Config, seed uint64) (m *Model, err error) {
	cfg.fillDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m = &Model{e: e, cfg: cfg, byName: map[string]*engine.Parameter{}, adapters: map[string]Adapter{}, pos: map[[2]int][]float32{}}
	rng := engine.NewRNG(seed)
	err = engine.Catch(func() {
		for _, sp := range cfg.paramShapes() {
			width := cfg.Width()
			if len(sp.name) > len(textPrefix) && sp.name[:len(textPrefix)] == textPrefix {
				width = cfg.TextWidth
			}
			p := newParam(e, sp, width, rng)
			m.params = append(m.params, p)
			m.byName[p.Name] = p
		}
	})
	if err != nil {
		m.Free()
		return nil, fmt.Errorf("model: allocate %s: %w", cfg.Flavour, err)
	}
	return m, nil
}

// Config returns the model's configuration.
func (m *Model) Config() Config { return m.cfg }

// Engine returns the engine the model's tensors live on.
func (m *Model) Engine() *engine.Engine { return m.e }

// Params returns the base weights in a fixed order (diffusers names; caption-encoder names
// carry the "text_encoder." prefix).
func (m *Model) Params() []*engine.Parameter { return m.params }

// Param returns the base weight with the given name, or nil.
func (m *Model) Param(name string) *engine.Parameter { return m.byName[name] }

// Trainable returns the parameters that require a gradient: every base weight for a full
// fine-tune, only adapter weights once adapters are attached.
func (m *Model) Trainable() []*engine.Parameter {
	var out []*engine.Parameter
	for _, p := range m.params {
		if p.RequiresGrad() {
			out = append(out, p)
		}
	}
	for _, name := range m.adapterOrder {
		out = append(out, m.adapters[name].Params()...)
	}
	return out
}

// Free releases every parameter (base and adapters).
func (m *Model) Free() {
	for _, p := range m.params {
		p.Free()
	}
	for _, a := range m.adapters {
		for _, p := range a.Params() {
			p.Free()
		}
	}
}

// Captions is a batch of tokenised captions: Tokens and Mask are [B, Len] row-major; Mask is
// 1 for real tokens and 0 for padding. An all-zero mask row is the null caption.
type Captions struct {
	Tokens []int32
	Mask   []float32
	Len    int
}

func (m *Model) w(name string) *engine.Tensor {
	p, ok := m.byName[name]
	if !ok {
		panic(fmt.Sprintf("model: no parameter %q", name)) // a bug in this package
	}
	return p.Tensor
}

// linear applies module name (weight and bias) with its adapter, if any, then act.
func (m *Model) linear(name string, x *engine.Tensor, act engine.Activation) *engine.Tensor {
	e := m.e
	w, b := m.w(name+".weight"), m.w(name+".bias")
	a := m.adapters[name]
	if a == nil {
		return e.LinearAct(x, w, b, act)
	}
	y := a.Apply(e, x, w, b)
	switch act {
	case engine.ActGELUTanh:
		y = e.GELU(y)
	case engine.ActSiLU:
		y = e.SiLU(y)
	}
	return y
}

// attention is multi-head attention of x [B,N,D] over ctx [B,M,Dc] (ctx = x for
// self-attention) with projections q, k, v, out named by the module path prefix and mask.
func (m *Model) attention(x, ctx *engine.Tensor, heads int, q, k, v, out string, mask *engine.Tensor) *engine.Tensor {
	e := m.e
	bsz, n, d := x.Dim(0), x.Dim(1), x.Dim(2)
	nk := ctx.Dim(1)
	dh := d / heads
	split := func(t *engine.Tensor, tokens int) *engine.Tensor {
		return e.Permute(e.Reshape(t, bsz, tokens, heads, dh), 0, 2, 1, 3)
	}
	qh := split(m.linear(q, x, engine.ActNone), n)
	kh := split(m.linear(k, ctx, engine.ActNone), nk)
	vh := split(m.linear(v, ctx, engine.ActNone), nk)
	o := e.Attention(qh, kh, vh, mask, float32(1/math.Sqrt(float64(dh))))
	return m.linear(out, e.Reshape(e.Permute(o, 0, 2, 1, 3), bsz, n, d), engine.ActNone)
}

// encodeCaptions runs the caption encoder: [B, L, TextWidth].
func (m *Model) encodeCaptions(c Captions, mask *engine.Tensor, bsz int) *engine.Tensor {
	e, cfg := m.e, m.cfg
	t := textPrefix
	l := c.Len
	eps := float32(1e-5)
	h := e.Reshape(e.Embedding(m.w(t+"embed_tokens.weight"), c.Tokens), bsz, l, cfg.TextWidth)
	h = e.Add(h, e.Slice(m.w(t+"embed_positions.weight"), 0, 0, l))
	for i := 0; i < cfg.TextLayers; i++ {
		b := fmt.Sprintf("%slayers.%d.", t, i)
		n := e.LayerNorm(h, m.w(b+"layer_norm1.weight"), m.w(b+"layer_norm1.bias"), eps)
		sa := b + "self_attn."
		h = e.Add(h, m.attention(n, n, cfg.TextHeads, sa+"q_proj", sa+"k_proj", sa+"v_proj", sa+"out_proj", mask))
		n = e.LayerNorm(h, m.w(b+"layer_norm2.weight"), m.w(b+"layer_norm2.bias"), eps)
		h = e.Add(h, m.linear(b+"mlp.fc2", m.linear(b+"mlp.fc1", n, engine.ActGELUTanh), engine.ActNone))
	}
	return e.LayerNorm(h, m.w(t+"final_layer_norm.weight"), m.w(t+"final_layer_norm.bias"), eps)
}

// checkInputs validates a batch against the model.
func (m *Model) checkInputs(x *engine.Tensor, t []float32, c Captions) error {
	cfg := m.cfg
	if x.Rank() != 4 || x.Dim(1) != cfg.InChannels || x.Dim(2)%cfg.PatchSize != 0 || x.Dim(3)%cfg.PatchSize != 0 {
		return fmt.Errorf("%w: image %v, want [B,%d,H,W] with H and W multiples of %d", ErrInput, x.Shape(), cfg.InChannels, cfg.PatchSize)
	}
	bsz := x.Dim(0)
	if len(t) != bsz {
		return fmt.Errorf("%w: %d timesteps for batch %d", ErrInput, len(t), bsz)
	}
	if c.Len <= 0 || c.Len > cfg.MaxTokens || len(c.Tokens) != bsz*c.Len || len(c.Mask) != bsz*c.Len {
		return fmt.Errorf("%w: captions of length %d (max %d) with %d tokens and %d mask values for batch %d",
			ErrInput, c.Len, cfg.MaxTokens, len(c.Tokens), len(c.Mask), bsz)
	}
	for _, id := range c.Tokens {
		if id < 0 || int(id) >= cfg.VocabSize {
			return fmt.Errorf("%w: token id %d outside vocabulary of %d", ErrInput, id, cfg.VocabSize)
		}
	}
	return nil
}

// Forward predicts the flow velocity ε − x₀ for noisy images xt [B,C,H,W] at times t ∈ [0,1]
// ([B], host) with captions c, returning [B,C,H,W]. Engine failures (shapes, memory) come
// back as errors wrapping the engine's sentinels; invalid inputs wrap ErrInput.
func (m *Model) Forward(xt *engine.Tensor, t []float32, c Captions) (out *engine.Tensor, err error) {
	return m.ForwardCond(xt, t, c, nil)
}

// ForwardCond is Forward with reference images (one [B,C,H',W'] tensor per conditioning
// input, clean pixels in [-1,1]; nil entries are skipped) appended as extra tokens. The
// model must have been built with Config.Conditioning.
func (m *Model) ForwardCond(xt *engine.Tensor, t []float32, c Captions, cond []*engine.Tensor) (out *engine.Tensor, err error) {
	if err := m.checkInputs(xt, t, c); err != nil {
		return nil, err
	}
	if err := m.checkCond(xt, cond); err != nil {
		return nil, err
	}
	m.cond = cond
	defer func() { m.cond = nil }()
	err = engine.Catch(func() { out = m.forward(xt, t, c) })
	return out, err
}

// checkCond validates reference images against the model and the batch.
func (m *Model) checkCond(xt *engine.Tensor, cond []*engine.Tensor) error {
	for i, c := range cond {
		if c == nil {
			continue
		}
		if !m.cfg.Conditioning {
			return fmt.Errorf("%w: this model has no conditioning input (it was built without conditioning datasets)", ErrInput)
		}
		if c.Rank() != 4 || c.Dim(0) != xt.Dim(0) || c.Dim(1) != xt.Dim(1) || c.Dim(2)%m.cfg.PatchSize != 0 || c.Dim(3)%m.cfg.PatchSize != 0 {
			return fmt.Errorf("%w: conditioning image %d is %v; want [%d,%d,H,W] with H and W multiples of %d", ErrInput, i, c.Shape(), xt.Dim(0), xt.Dim(1), m.cfg.PatchSize)
		}
	}
	return nil
}

func (m *Model) forward(xt *engine.Tensor, t []float32, c Captions) *engine.Tensor {
	e := m.e
	bsz := xt.Dim(0)
	ts := make([]float64, bsz)
	for i, v := range t {
		ts[i] = float64(v) * numTrainTimesteps
	}
	mask := e.FromHost(c.Mask, bsz, c.Len)
	y := m.encodeCaptions(c, mask, bsz)
	return m.transformer(xt, TimestepEmbedding(ts, timeFreqDim), y, mask)
}

// transformer is the PixArt-Σ transformer shared by both model kinds: latents or pixels xt
// [B,C,H,W], the host sinusoidal timestep embedding tfreq [B, timeFreqDim], caption states
// y [B, L, TextWidth] (before caption_projection) and their mask [B, L]; it returns
// [B, Outputs(), H, W].
func (m *Model) transformer(xt *engine.Tensor, tfreq []float32, y, mask *engine.Tensor) *engine.Tensor {
	e, cfg := m.e, m.cfg
	bsz, ch, hgt, wid := xt.Dim(0), xt.Dim(1), xt.Dim(2), xt.Dim(3)
	p, d := cfg.PatchSize, cfg.Width()
	gh, gw := hgt/p, wid/p
	n := gh * gw

	// adaLN-single: one timestep MLP shared by all blocks.
	te := "adaln_single.emb.timestep_embedder."
	temb := m.linear(te+"linear_2", m.linear(te+"linear_1", e.FromHost(tfreq, bsz, timeFreqDim), engine.ActSiLU), engine.ActNone)
	tmod := m.linear("adaln_single.linear", e.SiLU(temb), engine.ActNone) // [B, 6D]

	// Captions → [B, L, D].
	y = m.linear("caption_projection.linear_2", m.linear("caption_projection.linear_1", y, engine.ActGELUTanh), engine.ActNone)

	// Patch embedding: the stride-p convolution is patchify (c, dy, dx order) + Linear.
	patches := e.Reshape(e.Permute(e.Reshape(xt, bsz, ch, gh, p, gw, p), 0, 2, 4, 1, 3, 5), bsz, n, ch*p*p)
	wp := e.Reshape(m.w("pos_embed.proj.weight"), d, ch*p*p)
	h := e.Add(e.Linear(patches, wp, m.w("pos_embed.proj.bias")), e.FromHost(m.posEmbed(gh, gw), n, d))
	if len(m.cond) > 0 {
		h = m.appendCondTokens(h, wp)
	}

	tmod6 := e.Reshape(tmod, bsz, 6, d)
	for i := 0; i < cfg.NumLayers; i++ {
		if m.checkpointing && e.GradEnabled() {
			h = m.checkpointedBlock(i, h, tmod6, y, mask)
		} else {
			h = m.block(i, h, tmod6, y, mask)
		}
	}
	if h.Dim(1) != n {
		h = e.Slice(h, 1, 0, n) // the prediction is for the image tokens only
	}

	// Final layer: shift and scale from the raw timestep embedding.
	mod := e.Chunk(e.Add(e.Reshape(temb, bsz, 1, d), m.w("scale_shift_table")), 2, 1)
	shift, scale := e.Reshape(mod[0], bsz, d), e.Reshape(mod[1], bsz, d)
	h = e.LayerNormModulate(h, scale, shift, m.finalEps())
	out := cfg.Outputs()
	h = m.linear("proj_out", h, engine.ActNone) // [B, N, p·p·out], (p, q, c) order
	return e.Reshape(e.Permute(e.Reshape(h, bsz, gh, gw, p, p, out), 0, 5, 1, 3, 2, 4), bsz, out, hgt, wid)
}

// finalEps is the final layer norm's epsilon: diffusers' PixArtTransformer2DModel fixes it
// at 1e-6 whatever norm_eps says (norm_eps is the blocks'); dit uses norm_eps throughout.
func (m *Model) finalEps() float32 {
	if m.cfg.PixArt {
		return 1e-6
	}
	return float32(m.cfg.NormEps)
}

// checkpointedBlock runs block i through engine.Checkpoint: only its inputs and output stay
// alive after the forward pass, and the backward pass recomputes the rest. Recomputing must
// give the same values, so adapter dropout replays the same draws: the stream's position at
// the first run is remembered, the recompute rewinds to it and then puts the stream back
// where the rest of the step left it.
func (m *Model) checkpointedBlock(i int, h, tmod6, y, mask *engine.Tensor) *engine.Tensor {
	rng := m.dropRNG
	var seed, off uint64
	if rng != nil {
		seed, off = rng.State()
	}
	first := true
	return m.e.Checkpoint(func(in []*engine.Tensor) *engine.Tensor {
		if rng != nil && !first {
			s, o := rng.State()
			rng.SetState(seed, off)
			defer rng.SetState(s, o)
		}
		first = false
		// The recompute runs in the backward pass, after Loss cleared m.dropRNG.
		saved := m.dropRNG
		m.dropRNG = rng
		defer func() { m.dropRNG = saved }()
		return m.block(i, in[0], in[1], in[2], in[3])
	}, h, tmod6, y, mask)
}

// SetGradientCheckpointing turns per-block recomputation on or off: with it on, each
// transformer block's activations are dropped after the forward pass and recomputed in the
// backward pass (engine.Checkpoint), which gives the same gradients for about one extra
// forward pass of compute and keeps only the blocks' inputs.
func (m *Model) SetGradientCheckpointing(on bool) { m.checkpointing = on }

// appendCondTokens appends the tokens of each reference image (m.cond, [B,C,H',W'] clean
// pixels) to the image tokens h: same patch embedding and 2-D positions as the image, plus
// the learned cond_embed. Self-attention then sees them; the output drops them again.
func (m *Model) appendCondTokens(h, wp *engine.Tensor) *engine.Tensor {
	e, p, d := m.e, m.cfg.PatchSize, m.cfg.Width()
	parts := []*engine.Tensor{h}
	for _, c := range m.cond {
		if c == nil {
			continue
		}
		bsz, ch, hgt, wid := c.Dim(0), c.Dim(1), c.Dim(2), c.Dim(3)
		gh, gw := hgt/p, wid/p
		patches := e.Reshape(e.Permute(e.Reshape(c, bsz, ch, gh, p, gw, p), 0, 2, 4, 1, 3, 5), bsz, gh*gw, ch*p*p)
		tok := e.Add(e.Linear(patches, wp, m.w("pos_embed.proj.bias")), e.FromHost(m.posEmbed(gh, gw), gh*gw, d))
		parts = append(parts, e.Add(tok, m.w("cond_embed")))
	}
	if len(parts) == 1 {
		return h
	}
	return e.Concat(1, parts...)
}

// block is one PixArt-Σ transformer block.
func (m *Model) block(i int, h, tmod6, y, mask *engine.Tensor) *engine.Tensor {
	e, cfg := m.e, m.cfg
	bsz, d := h.Dim(0), h.Dim(2)
	b := fmt.Sprintf("transformer_blocks.%d.", i)
	mod := e.Chunk(e.Add(tmod6, m.w(b+"scale_shift_table")), 6, 1) // each [B,1,D]
	vec := func(t *engine.Tensor) *engine.Tensor { return e.Reshape(t, bsz, d) }
	eps := float32(cfg.NormEps)

	n := e.LayerNormModulate(h, vec(mod[1]), vec(mod[0]), eps)
	a1 := b + "attn1."
	a := m.attention(n, n, cfg.NumHeads, a1+"to_q", a1+"to_k", a1+"to_v", a1+"to_out.0", nil)
	h = e.Add(h, e.Mul(mod[2], a))

	a2 := b + "attn2."
	h = e.Add(h, m.attention(h, y, cfg.NumHeads, a2+"to_q", a2+"to_k", a2+"to_v", a2+"to_out.0", mask))

	n = e.LayerNormModulate(h, vec(mod[4]), vec(mod[3]), eps)
	f := m.linear(b+"ff.net.2", m.linear(b+"ff.net.0.proj", n, engine.ActGELUTanh), engine.ActNone)
	return e.Add(h, e.Mul(mod[5], f))
}

// posEmbed returns the cached host position embedding of a gh×gw token grid.
func (m *Model) posEmbed(gh, gw int) []float32 {
	key := [2]int{gh, gw}
	if p, ok := m.pos[key]; ok {
		return p
	}
	base := m.cfg.SampleSize / m.cfg.PatchSize
	p := PosEmbed2D(m.cfg.Width(), gh, gw, base, m.cfg.InterpolationScale)
	m.pos[key] = p
	return p
}
