package vae

import "simpletuner/trainerproc/engine"

// elemBytes is the size of an activation element: the VAE computes in float32.
const elemBytes = 4

// memPlan replays the allocations and frees of a forward pass without running it, keeping
// the high-water mark of live bytes. Its callers mirror forward.go step by step.
type memPlan struct {
	live, peak int64
	ws         engine.Workspacer // nil when the backend holds no attention scratch
	cws        convWorkspacer    // nil when the backend holds no convolution scratch
}

// convWorkspacer is implemented by backends whose convolutions hold scratch beyond their
// operands (the CPU backend's im2col panels, bounded whatever the image size).
type convWorkspacer interface {
	ConvWorkspace(p engine.Conv2DParams, backward bool) int64
}

// newPlan starts a plan for the backend of e; a nil e counts no kernel scratch.
func newPlan(e *engine.Engine) *memPlan {
	p := &memPlan{}
	if e == nil {
		return p
	}
	p.ws, _ = e.Backend().(engine.Workspacer)
	p.cws, _ = e.Backend().(convWorkspacer)
	return p
}

// conv counts a convolution's output and its scratch (k×k, same padding unless down, which
// is the downsampler's stride 2 with right-and-bottom padding); the input stays live.
func (p *memPlan) conv(n, c, h, w, o, k int, down bool) {
	q := engine.Conv2DParams{N: n, C: c, H: h, Wd: w, O: o, KH: k, KW: k, Stride: 1}
	oh, ow := h, w
	switch {
	case down:
		q.Stride, q.PadBottom, q.PadRight = 2, 1, 1
		oh, ow = (h-2)/2+1, (w-2)/2+1
	case k == 3:
		q.PadTop, q.PadBottom, q.PadLeft, q.PadRight = 1, 1, 1, 1
	}
	p.alloc(n * o * oh * ow)
	if p.cws != nil {
		p.scratch(p.cws.ConvWorkspace(q, false))
	}
}

func (p *memPlan) alloc(elems int) {
	p.live += int64(elems) * elemBytes
	p.peak = max(p.peak, p.live)
}

func (p *memPlan) free(elems int) { p.live -= int64(elems) * elemBytes }

// scratch counts bytes a kernel holds only while it runs.
func (p *memPlan) scratch(bytes int64) { p.peak = max(p.peak, p.live+bytes) }

// normAct is GroupNorm then SiLU over elems, the norm's output freed once SiLU's exists.
func (p *memPlan) normAct(elems int) {
	p.alloc(elems)
	p.alloc(elems)
	p.free(elems)
}

// resnet mirrors AutoencoderKL.resnet on n images of h×w; the input stays live.
func (p *memPlan) resnet(n, in, out, h, w int) {
	x, y := n*in*h*w, n*out*h*w
	p.normAct(x)
	p.conv(n, in, h, w, out, 3, false) // conv1
	p.free(x)
	p.normAct(y)
	p.free(y)                           // conv1's output
	p.conv(n, out, h, w, out, 3, false) // conv2
	p.free(y)                           // its input
	if in != out {
		p.conv(n, in, h, w, out, 1, false) // shortcut
	}
	p.alloc(y) // sum
	p.free(y)
	if in != out {
		p.free(y)
	}
}

// attention mirrors AutoencoderKL.attention over n images of c channels and t positions.
func (p *memPlan) attention(n, c, t int) {
	x := n * c * t
	p.alloc(x) // group norm
	p.alloc(x) // tokens
	p.free(x)
	p.alloc(3 * x) // q, k, v
	p.free(x)      // tokens
	p.alloc(x)     // output
	p.alloc(n * t) // log-sum-exp, freed at once without a graph
	if p.ws != nil {
		p.scratch(p.ws.AttentionWorkspace(n, 1, t, t, c, false))
	}
	p.free(n * t)
	p.free(3 * x)
	p.alloc(x) // to_out
	p.free(x)
	p.alloc(x) // permuted back
	p.free(x)
	p.alloc(x) // residual sum
	p.free(x)
}

// mid mirrors the mid block at c channels on h×w (its input is freed at the end).
func (p *memPlan) mid(cfg Config, n, c, h, w int) {
	x := n * c * h * w
	p.resnet(n, c, c, h, w)
	p.free(x)
	if cfg.MidBlockAddAttention {
		p.attention(n, c, h*w)
		p.free(x)
	}
	p.resnet(n, c, c, h, w)
}

// EncodeBytes estimates the peak bytes Encode holds on the engine's backend for n images of
// h×w pixels: the input, the largest set of activations alive at once, and the scratch of
// the attention (engine.Workspacer) and convolution kernels when the backend reports it.
// Weights are not included (WeightBytes). The mid attention over (h/f)·(w/f) positions is
// usually the peak: at 1024² its score matrix alone is 16384² floats.
func (m *AutoencoderKL) EncodeBytes(n, h, w int) int64 { return encodeBytes(m.e, m.cfg, n, h, w) }

// EncodeMemory is what loading a VAE of cfg on e's backend and encoding n images of h×w
// pixels would take, without loading it: WeightBytes and EncodeBytes of that model. A caller
// refuses a job with it before any weight is read.
func EncodeMemory(e *engine.Engine, cfg Config, n, h, w int) (weights, activations int64) {
	return configWeightBytes(cfg), encodeBytes(e, cfg, n, h, w)
}

// DecodeMemory is what loading a VAE of cfg on e's backend and decoding n latents of h×w
// positions would take, without loading it: WeightBytes and DecodeBytes of that model (a
// latent family's validation sizes its decode with it). A nil e counts no kernel scratch.
func DecodeMemory(e *engine.Engine, cfg Config, n, h, w int) (weights, activations int64) {
	return configWeightBytes(cfg), decodeBytes(e, cfg, n, h, w)
}

// configWeightBytes is WeightBytes of a model of cfg.
func configWeightBytes(cfg Config) int64 {
	var weights int64
	for _, s := range cfg.paramSpecs() {
		k := int64(elemBytes)
		for _, d := range s.shape {
			k *= int64(d)
		}
		weights += k
	}
	return weights
}

func encodeBytes(e *engine.Engine, cfg Config, n, h, w int) int64 {
	p := newPlan(e)
	ch := cfg.BlockOutChannels
	p.alloc(n * cfg.InChannels * h * w)              // the images
	p.conv(n, cfg.InChannels, h, w, ch[0], 3, false) // conv_in
	in := ch[0]
	for i, out := range ch {
		for range cfg.LayersPerBlock {
			p.resnet(n, in, out, h, w)
			p.free(n * in * h * w)
			in = out
		}
		if i < len(ch)-1 {
			p.conv(n, out, h, w, out, 3, true)
			p.free(n * out * h * w)
			h, w = (h-2)/2+1, (w-2)/2+1
		}
	}
	last := ch[len(ch)-1]
	s := h * w
	p.mid(cfg, n, last, h, w)
	p.normAct(n * last * s)
	p.free(n * last * s)
	l2 := n * 2 * cfg.LatentChannels * s
	p.conv(n, last, h, w, 2*cfg.LatentChannels, 3, false) // conv_out
	p.free(n * last * s)
	if cfg.UseQuantConv {
		p.conv(n, 2*cfg.LatentChannels, h, w, 2*cfg.LatentChannels, 1, false)
		p.free(l2)
	}
	p.alloc(l2) // the split into mean and logvar
	p.free(l2)
	p.free(l2 / 2) // logvar leaves the device to be clamped, and comes back
	p.alloc(l2 / 2)
	return p.peak
}

// DecodeBytes estimates the peak bytes Decode holds for n latents of h×w positions (images
// of h·f × w·f pixels), like EncodeBytes.
func (m *AutoencoderKL) DecodeBytes(n, h, w int) int64 { return decodeBytes(m.e, m.cfg, n, h, w) }

func decodeBytes(e *engine.Engine, cfg Config, n, h, w int) int64 {
	p := newPlan(e)
	ch := cfg.BlockOutChannels
	lc := cfg.LatentChannels
	lat := n * lc * h * w
	p.alloc(lat) // the latents
	p.alloc(lat) // unscaled, alive until the end
	if cfg.UsePostQuantConv {
		p.conv(n, lc, h, w, lc, 1, false)
	}
	last := ch[len(ch)-1]
	p.conv(n, lc, h, w, last, 3, false) // conv_in
	if cfg.UsePostQuantConv {
		p.free(lat)
	}
	p.mid(cfg, n, last, h, w)
	in := last
	for i := range ch {
		out := ch[len(ch)-1-i]
		for range cfg.LayersPerBlock + 1 {
			p.resnet(n, in, out, h, w)
			p.free(n * in * h * w)
			in = out
		}
		if i < len(ch)-1 {
			p.alloc(4 * n * out * h * w) // nearest ×2
			p.free(n * out * h * w)
			h, w = 2*h, 2*w
			p.conv(n, out, h, w, out, 3, false)
			p.free(n * out * h * w)
		}
	}
	x := n * ch[0] * h * w
	p.normAct(x)
	p.free(x)
	p.conv(n, ch[0], h, w, cfg.OutChannels, 3, false)
	p.free(x)
	return p.peak
}

// WeightBytes is the size of the parameters in memory (float32).
func (m *AutoencoderKL) WeightBytes() int64 {
	var n int64
	for _, p := range m.params {
		n += int64(p.Numel()) * elemBytes
	}
	return n
}
