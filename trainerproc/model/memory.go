package model

import (
	"fmt"
	"strings"

	"simpletuner/trainerproc/engine"
	"simpletuner/trainerproc/family/footprint"
)

// f32 is the size of every engine buffer element: weights, activations and gradients are
// float32 on every backend (bf16 is only a GEMM operand format on the GPU).
const f32 = 4

// TrainShape is one training micro-batch as a memory estimate sees it.
type TrainShape struct {
	// Batch is the number of images per micro-batch (--train_batch_size).
	Batch int
	// Width and Height are the size of the largest aspect bucket the step trains on, in the
	// model's input units: pixels for dit, latents (pixels / the VAE's factor) for PixArt.
	Width, Height int
	// CaptionLen is the caption length in tokens (0: Config.MaxTokens).
	CaptionLen int
	// Cond are the sizes (width, height) of the reference images appended to each sample
	// as extra tokens (conditioning datasets).
	Cond [][2]int
	// Adapters are the LoRA/LoKr adapters of an adapter run; nil for a full fine-tune.
	Adapters *AdapterConfig
	// OptimizerSlots is the number of float32 optimizer values kept per trainable weight
	// (2 for AdamW; see optim.StateSlots).
	OptimizerSlots int
	// Accumulation is --gradient_accumulation_steps: above 1 the weight gradients are held
	// through the next micro-batch's forward pass.
	Accumulation int
	// Checkpointing is --gradient_checkpointing (Model.SetGradientCheckpointing): the
	// forward pass keeps only each block's input, and the backward pass holds one
	// recomputed block at a time.
	Checkpointing bool
}

// SampleShape is one validation image as a memory estimate sees it.
type SampleShape struct {
	// Width and Height are the image's size in the model's input units (pixels for dit,
	// latents for PixArt).
	Width, Height int
	// Batch is 2 with classifier-free guidance (both branches run as one batch), else 1.
	Batch int
	// CaptionLen is the caption length in tokens (0: Config.MaxTokens).
	CaptionLen int
}

// Memory is a memory estimate in bytes by what holds it; the type is shared by every
// model family (trainerproc/family/footprint), so the runner compares any family's estimate
// with the machine the same way.
type Memory = footprint.Memory

// FormatBytes renders a byte count for a person (footprint.FormatBytes).
func FormatBytes(n int64) string { return footprint.FormatBytes(n) }

// TrainingMemory estimates the memory one training step of this model needs at its peak:
// the weights, the gradients and optimizer state of what is trained, the activations the
// forward pass keeps for the backward pass (every tensor of the step lives until the step
// ends; the backward pass frees as it goes) and the attention scratch of the backend ws
// (nil: none). The counts follow the forward pass in dit.go op by op, so they hold for any
// resolution, batch, caption length, conditioning and adapter set; the tests check them
// against what the CPU engine allocates. With s.Checkpointing the blocks keep only their
// inputs and one block's activations are alive at a time. A PixArt config is counted with
// its caption states as input (no caption encoder), its output channels and SimpleTuner's
// ε loss on the first InChannels of them.
func (c Config) TrainingMemory(s TrainShape, ws engine.Workspacer) (Memory, error) {
	c.fillDefaults()
	if err := c.Validate(); err != nil {
		return Memory{}, err
	}
	if s.Batch < 1 || s.Width < 1 || s.Height < 1 {
		return Memory{}, fmt.Errorf("%w: batch %d of %dx%d images", ErrInput, s.Batch, s.Width, s.Height)
	}
	weights, trainable, specs, err := c.weights(s.Adapters)
	if err != nil {
		return Memory{}, err
	}
	g := c.geometry(s.Batch, s.Width, s.Height, s.CaptionLen, s.Cond)
	fc := g.forward(true, s.Checkpointing, specs, s.Adapters)
	fwdWS, bwdWS := g.workspace(ws)
	grads := trainable * f32
	held := int64(0) // gradients alive during the forward pass: only while accumulating
	if s.Accumulation > 1 {
		held = grads
	}
	// Four moments compete for the peak: the last block's self-attention in the forward
	// pass (its scratch on top of nearly every tensor of the step), the end of the forward
	// pass (every tensor of the step alive), the last block's self-attention in the backward
	// pass (what the graph saved, less what that block's MLP and cross-attention already
	// released, its attention gradients and twice the scratch), and the end of the backward
	// pass (every weight gradient, with what the caption encoder and embeddings saved).
	last := max(held, grads/int64(c.NumLayers)) // the last block's weight gradients
	type moment struct{ act, ws, grads int64 }
	moments := []moment{
		{(fc.all - fc.tailAfterAttn) * f32, fwdWS, held},
		{fc.all * f32, 0, held},
		{(fc.saved + fc.transient) * f32, 0, last},
		{(fc.saved - fc.savedAfterAttn + fc.attnTransient) * f32, bwdWS, last},
		{(fc.rest + fc.transient) * f32, 0, grads},
	}
	peak := moments[0]
	for _, mo := range moments[1:] {
		if mo.act+mo.ws+mo.grads > peak.act+peak.ws+peak.grads {
			peak = mo
		}
	}
	m := Memory{Weights: weights * f32, Gradients: peak.grads, Activations: peak.act, Workspace: peak.ws,
		Optimizer: trainable * int64(max(0, s.OptimizerSlots)) * f32, HostCache: g.posCache() * f32}
	return m, nil
}

// SamplingMemory estimates what rendering one validation image adds to the model's weights
// (which it includes): the activations of one forward pass without a graph and the
// attention scratch of ws. Validation runs between optimizer steps, when no gradient is
// held; the optimizer state is the caller's to add.
func (c Config) SamplingMemory(s SampleShape, adapters *AdapterConfig, ws engine.Workspacer) (Memory, error) {
	c.fillDefaults()
	if err := c.Validate(); err != nil {
		return Memory{}, err
	}
	if s.Width < 1 || s.Height < 1 {
		return Memory{}, fmt.Errorf("%w: %dx%d image", ErrInput, s.Width, s.Height)
	}
	weights, _, specs, err := c.weights(adapters)
	if err != nil {
		return Memory{}, err
	}
	g := c.geometry(max(1, s.Batch), s.Width, s.Height, s.CaptionLen, nil)
	fc := g.forward(false, false, specs, adapters)
	fwdWS, _ := g.workspace(ws)
	// The sampler keeps the image, the batch it feeds the model and the velocity on the host.
	m := Memory{Weights: weights * f32, Activations: fc.all * f32, HostCache: (g.posCache() + 3*g.pix) * f32}
	if atAttn := (fc.all-fc.tailAfterAttn)*f32 + fwdWS; atAttn > m.Activations {
		m.Activations, m.Workspace = (fc.all-fc.tailAfterAttn)*f32, fwdWS
	}
	return m, nil
}

// TrainableParams is the number of weights a run trains: every parameter of a full
// fine-tune, the adapters' when adapters is set.
func (c Config) TrainableParams(adapters *AdapterConfig) (int64, error) {
	c.fillDefaults()
	_, trainable, _, err := c.weights(adapters)
	return trainable, err
}

// weights counts all parameters and the trainable ones, with the adapter plan.
func (c Config) weights(adapters *AdapterConfig) (all, trainable int64, specs []adapterSpec, err error) {
	all = int64(c.ParamCount())
	if adapters == nil {
		return all, all, nil, nil
	}
	if specs, err = c.adapterPlan(*adapters); err != nil {
		return 0, 0, nil, err
	}
	trainable = adapterParams(specs, *adapters)
	return all + trainable, trainable, specs, nil
}

// adapterParams counts the weights of an adapter plan.
func adapterParams(specs []adapterSpec, ac AdapterConfig) int64 {
	var n int64
	for _, sp := range specs {
		if ac.Type == "lycoris" {
			outL, outK, inM, inN, full := lokrShape(sp.out, sp.in, sp.factor, ac.Lycoris)
			n += int64(outL * inM)
			if full {
				n += int64(outK * inN)
			} else {
				n += int64(outK*ac.Lycoris.LinearDim + ac.Lycoris.LinearDim*inN)
			}
			continue
		}
		n += int64(ac.Rank * (sp.in + sp.out))
	}
	return n
}

// stepGeometry is the sizes of one forward pass, in elements.
type stepGeometry struct {
	c               Config
	b, n, t, l      int64 // batch, image tokens, all tokens (with reference images), caption tokens
	pix, condPix    int64 // image and reference-image values of the batch
	out             int64 // values the model predicts per token (Outputs · patch²)
	condTokens      []int64
	d, ff, p, heads int64
	tw, tff, tl, th int64
	grids           [][2]int // token grids whose position embedding the model caches
	dh, textHead    int
}

func (c Config) geometry(bsz, w, h, captionLen int, cond [][2]int) stepGeometry {
	p := c.PatchSize
	up := func(x int) int { return max(p, (x+p-1)/p*p) } // the loader aligns buckets to the patch
	w, h = up(w), up(h)
	l := captionLen
	if l <= 0 || (!c.PixArt && l > c.MaxTokens) {
		l = c.MaxTokens // PixArt's default; dit's caption encoder cannot take more
	}
	g := stepGeometry{c: c, b: int64(bsz), n: int64((w / p) * (h / p)), l: int64(l),
		pix: int64(bsz * c.InChannels * w * h), d: int64(c.Width()), ff: int64(c.Width() * c.MLPRatio),
		out: int64(c.Outputs() * p * p), p: int64(c.InChannels * p * p), heads: int64(c.NumHeads), tw: int64(c.TextWidth),
		tff: int64(c.TextWidth * c.MLPRatio), tl: int64(c.TextLayers), th: int64(c.TextHeads),
		grids: [][2]int{{h / p, w / p}}, dh: c.HeadDim}
	if !c.PixArt {
		g.textHead = c.TextWidth / c.TextHeads
	}
	g.t = g.n
	for _, wh := range cond {
		cw, ch := up(wh[0]), up(wh[1])
		nc := int64((cw / p) * (ch / p))
		g.condTokens = append(g.condTokens, nc)
		g.condPix += int64(bsz * c.InChannels * cw * ch)
		g.t += nc
		g.grids = append(g.grids, [2]int{ch / p, cw / p})
	}
	return g
}

// posCache is the host position embeddings the model caches for the step's grids.
func (g stepGeometry) posCache() int64 {
	var n int64
	for _, gr := range g.grids {
		n += int64(gr[0]*gr[1]) * g.d
	}
	return n
}

// workspace is the largest attention scratch of a forward and of a backward pass.
func (g stepGeometry) workspace(ws engine.Workspacer) (fwd, bwd int64) {
	if ws == nil {
		return 0, 0
	}
	b, h := int(g.b), int(g.heads)
	calls := [][4]int{
		{h, int(g.t), int(g.t), g.dh}, // self-attention over image (and reference) tokens
		{h, int(g.t), int(g.l), g.dh}, // cross-attention to the caption
	}
	if !g.c.PixArt {
		calls = append(calls, [4]int{int(g.th), int(g.l), int(g.l), g.textHead}) // the caption encoder
	}
	for _, a := range calls {
		fwd = max(fwd, ws.AttentionWorkspace(b, a[0], a[1], a[2], a[3], false))
		bwd = max(bwd, ws.AttentionWorkspace(b, a[0], a[1], a[2], a[3], true))
	}
	return fwd, bwd
}

// forwardCounts are element counts of one forward pass.
type forwardCounts struct {
	all       int64 // every tensor the forward pass makes (all alive when it ends)
	saved     int64 // what the graph keeps for the backward pass once the step's scope freed the rest
	rest      int64 // the part of saved outside the transformer blocks (caption encoder, embeddings, loss)
	transient int64 // the gradients one block's backward pass holds at once (its MLP's)
	// tailAfterAttn is what the forward pass makes after the last block's self-attention
	// call; savedAfterAttn is what the last block saved after it (released by the backward
	// pass before it reaches that call); attnTransient are the gradients the backward pass
	// holds there.
	tailAfterAttn, savedAfterAttn, attnTransient int64
}

// forward counts the elements of one forward pass (see forwardCounts). Without grad
// (validation) nothing is saved and the buffers only a backward pass needs are not kept;
// with ckpt each block keeps only its input (engine.Checkpoint) and one block's graph is
// alive at a time, in the forward pass or when the backward pass recomputes it.
func (g stepGeometry) forward(grad, ckpt bool, specs []adapterSpec, ac *AdapterConfig) forwardCounts {
	var fc forwardCounts
	b, n, t, l, d, ff, p := g.b, g.n, g.t, g.l, g.d, g.ff, g.p
	tw, tff, th := g.tw, g.tff, g.th
	layers := int64(g.c.NumLayers)
	keep := int64(1) // buffers kept only for the backward pass (pre-activations, norm statistics)
	if !grad {
		keep = 0
	}

	var rest int64
	pixart := g.c.PixArt
	outPix := g.pix / int64(g.c.InChannels) * int64(g.c.Outputs())
	switch {
	case grad && pixart:
		// SimpleTuner's ε objective: latents and noise, x_t = a·x₀ + b·ε (two products, the
		// sum and the coefficients), the first InChannels of the prediction, the MSE.
		rest += 2*g.pix + 3*g.pix + 2*b
		rest += g.pix + g.pix + 1
	case grad:
		// Rectified flow: pixels and noise, then x_t and the target, the MSE.
		rest += 2*g.pix + g.condPix // x0 and eps (and the reference images)
		rest += 3*g.pix + b         // ε − x₀, t·(ε − x₀), x_t
		rest += g.pix + 1           // the loss's difference and mean
	default:
		rest += g.pix // the sampler's batch on the device
	}
	// Timestep MLP and adaLN-single.
	rest += b * (timeFreqDim + 9*d + keep*d)
	if pixart {
		// The text encoder's states and mask come in; caption_projection only.
		rest += b*l*tw + b*l + (2+keep)*b*l*d
	} else {
		// Caption encoder and projection.
		rest += b*l + 2*b*l*tw + l*tw
		rest += g.tl * (b*l*tw*(14+tff/tw+keep*tff/tw) + keep*4*b*l + th*b*l)
		rest += b*l*tw + keep*2*b*l + (2+keep)*b*l*d
	}
	// Patch embedding with positions, reference-image tokens, the final layer.
	rest += b*n*p + 2*b*n*d + n*d
	for _, nc := range g.condTokens {
		rest += b*nc*p + 3*b*nc*d + nc*d
	}
	if len(g.condTokens) > 0 {
		rest += b*t*d + b*n*d // the concatenation, and the slice back to the image tokens
	}
	rest += 4*b*d + b*n*d + keep*2*b*n + b*n*g.out + outPix

	// One block: LN, self-attention (q, k, v, their head layouts, output, layout back,
	// projection), gate and residual, cross-attention, LN, MLP (with its pre-activation),
	// gate and residual; then the modulation vectors, norm statistics, log-sum-exps and the
	// caption keys and values.
	block := b*t*d*22 + b*t*(1+keep)*ff + 12*b*d + keep*4*b*t + keep*2*b*g.heads*t + 4*b*l*d
	blockSaved := b*t*d*15 + 2*b*t*ff + 4*b*d + 4*b*t + 2*b*g.heads*t + 2*b*l*d
	for _, sp := range specs {
		rows := b * t
		if strings.HasSuffix(sp.module, "attn2.to_k") || strings.HasSuffix(sp.module, "attn2.to_v") {
			rows = b * l
		}
		out, in := int64(sp.out), int64(sp.in)
		if ac.Type == "lycoris" {
			// ΔW = scale·kron(W1, W2) is formed and added to the weight on every call.
			// The Kronecker product broadcasts both factors to the weight's shape (the graph
			// keeps them), then scales and adds; backward holds three weight-sized gradients.
			_, outK, _, inN, full := lokrShape(sp.out, sp.in, sp.factor, ac.Lycoris)
			extra := 5 * out * in
			if !full {
				extra += int64(outK * inN)
			}
			fc.all += extra
			fc.saved += 3 * out * in
			fc.transient = max(fc.transient, 3*out*in)
			continue
		}
		r := int64(ac.Rank)
		extra := rows * (r + 3*out) // x·Aᵀ, ·Bᵀ, scaled, added
		if ac.Dropout > 0 && grad {
			extra += 2 * rows * in // the dropout mask and the masked input
			fc.saved += 2 * rows * in
		}
		fc.all += extra
		fc.saved += rows * r
	}
	if ckpt && grad {
		// Each block's input stays (the previous block's output); the block's own graph
		// exists once, while it runs or is recomputed.
		// The recompute adds the segment's second output and the gradients that enter and
		// leave it (the output's, the input's, and the shared inputs' partial sums).
		fc.all += rest + layers*b*t*d + block
		fc.saved += rest + layers*b*t*d + block + 5*b*t*d
	} else {
		fc.all += rest + layers*block
		fc.saved += rest + layers*blockSaved
	}
	fc.rest = rest
	// Backward through one block: the residual gradient, the MLP's output, hidden and
	// pre-activation gradients and its input's; at self-attention the residual, output
	// (both layouts), q, k and v gradients.
	fc.transient = max(fc.transient, b*t*(2*ff+4*d))
	fc.tailAfterAttn = b*t*(14*d+(1+keep)*ff) + 4*b*d + b*n*d + keep*2*b*n + b*n*g.out + outPix + g.pix + 1
	fc.savedAfterAttn = b*t*(7*d+2*ff) + 2*b*l*d
	fc.attnTransient = 6 * b * t * d
	if !grad {
		fc.saved, fc.rest, fc.transient, fc.savedAfterAttn, fc.attnTransient = 0, 0, 0, 0, 0
	}
	return fc
}
