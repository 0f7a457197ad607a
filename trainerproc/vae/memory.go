package vae

import "simpletuner/trainerproc/engine"

// elemBytes is the size of an activation element: the VAE computes in float32.
const elemBytes = 4

// memPlan replays the allocations and frees of a forward pass without running it, keeping
// the high-water mark of live bytes. Its callers mirror forward.go step by step.
type memPlan struct {
	live, peak int64
	ws         engine.Workspacer // nil when the backend holds no attention scratch
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

// resnet mirrors AutoencoderKL.resnet on n images of s positions; the input stays live.
func (p *memPlan) resnet(n, in, out, s int) {
	x, y := n*in*s, n*out*s
	p.normAct(x)
	p.alloc(y) // conv1
	p.free(x)
	p.normAct(y)
	p.free(y)  // conv1's output
	p.alloc(y) // conv2
	p.free(y)  // its input
	if in != out {
		p.alloc(y) // shortcut
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

// step is an op from in to out elements whose input is freed afterwards.
func (p *memPlan) step(in, out int) {
	p.alloc(out)
	p.free(in)
}

// mid mirrors the mid block at c channels and s positions (the input is freed at the end).
func (p *memPlan) mid(cfg Config, n, c, s int) {
	p.resnet(n, c, c, s)
	p.free(n * c * s)
	if cfg.MidBlockAddAttention {
		p.attention(n, c, s)
		p.free(n * c * s)
	}
	p.resnet(n, c, c, s)
}

// workspacer returns the engine backend's attention scratch estimator, if it has one.
func workspacer(e *engine.Engine) engine.Workspacer {
	ws, _ := e.Backend().(engine.Workspacer)
	return ws
}

// EncodeBytes estimates the peak bytes Encode holds on the engine's backend for n images of
// h×w pixels: the input, the largest set of activations alive at once, and the attention
// scratch the backend reports through engine.Workspacer. Weights are not included
// (WeightBytes). The mid attention over (h/f)·(w/f) positions is usually the peak: at
// 1024² its score matrix alone is 16384² floats.
func (m *AutoencoderKL) EncodeBytes(n, h, w int) int64 {
	cfg := m.cfg
	p := memPlan{ws: workspacer(m.e)}
	ch := cfg.BlockOutChannels
	s := h * w
	p.alloc(n * cfg.InChannels * s) // the images
	p.alloc(n * ch[0] * s)          // conv_in
	in := ch[0]
	for i, out := range ch {
		for range cfg.LayersPerBlock {
			p.resnet(n, in, out, s)
			p.free(n * in * s)
			in = out
		}
		if i < len(ch)-1 {
			h, w = h/2, w/2
			p.step(n*out*s, n*out*h*w)
			s = h * w
		}
	}
	last := ch[len(ch)-1]
	p.mid(cfg, n, last, s)
	p.normAct(n * last * s)
	p.free(n * last * s)
	l2 := n * 2 * cfg.LatentChannels * s
	p.step(n*last*s, l2) // conv_out
	if cfg.UseQuantConv {
		p.step(l2, l2)
	}
	p.step(l2, l2) // the split into mean and logvar
	p.free(l2 / 2) // logvar leaves the device to be clamped, and comes back
	p.alloc(l2 / 2)
	return p.peak
}

// DecodeBytes estimates the peak bytes Decode holds for n latents of h×w positions (images
// of h·f × w·f pixels), like EncodeBytes.
func (m *AutoencoderKL) DecodeBytes(n, h, w int) int64 {
	cfg := m.cfg
	p := memPlan{ws: workspacer(m.e)}
	ch := cfg.BlockOutChannels
	s := h * w
	lat := n * cfg.LatentChannels * s
	p.alloc(lat) // the latents
	p.alloc(lat) // unscaled, alive until the end
	if cfg.UsePostQuantConv {
		p.alloc(lat)
	}
	last := ch[len(ch)-1]
	p.alloc(n * last * s) // conv_in
	if cfg.UsePostQuantConv {
		p.free(lat)
	}
	p.mid(cfg, n, last, s)
	in := last
	for i := range ch {
		out := ch[len(ch)-1-i]
		for range cfg.LayersPerBlock + 1 {
			p.resnet(n, in, out, s)
			p.free(n * in * s)
			in = out
		}
		if i < len(ch)-1 {
			p.step(n*out*s, 4*n*out*s) // nearest ×2
			s *= 4
			p.step(n*out*s, n*out*s) // its conv
		}
	}
	p.normAct(n * ch[0] * s)
	p.free(n * ch[0] * s)
	p.step(n*ch[0]*s, n*cfg.OutChannels*s)
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
