package vae

import (
	"errors"
	"fmt"
	"math"

	"simpletuner/trainerproc/engine"
)

// normEps is the epsilon of every group norm of the VAE (diffusers' resnet_eps).
const normEps = 1e-6

// Bounds diffusers' DiagonalGaussianDistribution clamps logvar to.
const (
	logvarMin = -30
	logvarMax = 20
)

// w returns the parameter with a canonical name; the name comes from paramSpecs, so a
// missing one is a programming error.
func (m *AutoencoderKL) w(name string) *engine.Tensor {
	p, ok := m.byName[name]
	if !ok {
		panic(fmt.Sprintf("vae: no parameter %q", name))
	}
	return p.Tensor
}

// conv applies the convolution prefix with the given stride and padding {top, bottom, left,
// right}.
func (m *AutoencoderKL) conv(x *engine.Tensor, prefix string, stride int, pad [4]int) *engine.Tensor {
	return m.e.Conv2D(x, m.w(prefix+".weight"), m.w(prefix+".bias"), stride, pad)
}

// same is the padding of a 3×3 convolution that keeps the size.
func same() [4]int { return [4]int{1, 1, 1, 1} }

// norm applies the group norm prefix.
func (m *AutoencoderKL) norm(x *engine.Tensor, prefix string) *engine.Tensor {
	return m.e.GroupNorm(x, m.cfg.NormNumGroups, m.w(prefix+".weight"), m.w(prefix+".bias"), normEps)
}

// normAct is GroupNorm then SiLU; the normalised tensor is freed at once.
func (m *AutoencoderKL) normAct(x *engine.Tensor, prefix string) *engine.Tensor {
	n := m.norm(x, prefix)
	y := m.e.SiLU(n)
	n.Free()
	return y
}

// resnet is ResnetBlock2D: x + conv2(SiLU(GN(conv1(SiLU(GN(x)))))), the input going through
// the 1×1 conv_shortcut when the channel count changes. Intermediates are freed as soon as
// the next one exists, so besides its input the block holds at most three activations at a
// time (memPlan.resnet counts them). x is left to the caller.
func (m *AutoencoderKL) resnet(x *engine.Tensor, prefix string) *engine.Tensor {
	e := m.e
	a := m.normAct(x, prefix+".norm1")
	h := m.conv(a, prefix+".conv1", 1, same())
	a.Free()
	a = m.normAct(h, prefix+".norm2")
	h.Free()
	h = m.conv(a, prefix+".conv2", 1, same())
	a.Free()
	short := x
	if _, ok := m.byName[prefix+".conv_shortcut.weight"]; ok {
		short = m.conv(x, prefix+".conv_shortcut", 1, [4]int{})
	}
	y := e.Add(short, h)
	h.Free()
	if short != x {
		short.Free()
	}
	return y
}

// reshape returns a view of t with another shape and drops t's own handle, so the storage
// is freed with the view.
func (m *AutoencoderKL) reshape(t *engine.Tensor, shape ...int) *engine.Tensor {
	v := m.e.Reshape(t, shape...)
	t.Free()
	return v
}

// permute returns t permuted and frees t.
func (m *AutoencoderKL) permute(t *engine.Tensor, perm ...int) *engine.Tensor {
	p := m.e.Permute(t, perm...)
	t.Free()
	return p
}

// attention is the mid block's single-head self-attention over the H·W positions: its own
// group norm, q/k/v projections of the C channels, softmax(q·kᵀ/√C)·v, the output
// projection, plus the input (residual connection, rescale factor 1). Each intermediate is
// freed once the next exists (see attentionPlan).
func (m *AutoencoderKL) attention(x *engine.Tensor, prefix string) *engine.Tensor {
	e := m.e
	n, c, h, wd := x.Dim(0), x.Dim(1), x.Dim(2), x.Dim(3)
	tokens := m.permute(m.reshape(m.norm(x, prefix+".group_norm"), n, c, h*wd), 0, 2, 1) // [N, HW, C]
	linear := func(t *engine.Tensor, l string) *engine.Tensor {
		return e.Linear(t, m.w(prefix+"."+l+".weight"), m.w(prefix+"."+l+".bias"))
	}
	q := m.reshape(linear(tokens, "to_q"), n, 1, h*wd, c)
	k := m.reshape(linear(tokens, "to_k"), n, 1, h*wd, c)
	v := m.reshape(linear(tokens, "to_v"), n, 1, h*wd, c)
	tokens.Free()
	o := e.Attention(q, k, v, nil, float32(1/math.Sqrt(float64(c))))
	q.Free()
	k.Free()
	v.Free()
	ov := m.reshape(o, n, h*wd, c)
	out := linear(ov, "to_out.0")
	ov.Free()
	back := m.reshape(m.permute(out, 0, 2, 1), n, c, h, wd)
	y := e.Add(back, x)
	back.Free()
	return y
}

// chain runs f on x and frees x unless it is keep (the caller's input).
func chain(x, keep *engine.Tensor, f func(*engine.Tensor) *engine.Tensor) *engine.Tensor {
	y := f(x)
	if x != keep {
		x.Free()
	}
	return y
}

// midBlock is resnet, attention (when configured), resnet.
func (m *AutoencoderKL) midBlock(x *engine.Tensor, prefix string) *engine.Tensor {
	h := chain(x, x, func(t *engine.Tensor) *engine.Tensor { return m.resnet(t, prefix+".resnets.0") })
	if m.cfg.MidBlockAddAttention {
		h = chain(h, x, func(t *engine.Tensor) *engine.Tensor { return m.attention(t, prefix+".attentions.0") })
	}
	return chain(h, x, func(t *engine.Tensor) *engine.Tensor { return m.resnet(t, prefix+".resnets.1") })
}

// encode runs the encoder and quant_conv: [N, in, H, W] → [N, 2·latent, H/f, W/f].
func (m *AutoencoderKL) encode(x *engine.Tensor) *engine.Tensor {
	n := len(m.cfg.BlockOutChannels)
	h := m.conv(x, "encoder.conv_in", 1, same())
	for i := range n {
		for j := range m.cfg.LayersPerBlock {
			h = chain(h, x, func(t *engine.Tensor) *engine.Tensor {
				return m.resnet(t, fmt.Sprintf("encoder.down_blocks.%d.resnets.%d", i, j))
			})
		}
		if i < n-1 {
			// Downsample2D with padding 0: pad right and bottom by one, then stride 2.
			h = chain(h, x, func(t *engine.Tensor) *engine.Tensor {
				return m.conv(t, fmt.Sprintf("encoder.down_blocks.%d.downsamplers.0.conv", i), 2, [4]int{0, 1, 0, 1})
			})
		}
	}
	h = chain(h, x, func(t *engine.Tensor) *engine.Tensor { return m.midBlock(t, "encoder.mid_block") })
	h = chain(h, x, func(t *engine.Tensor) *engine.Tensor { return m.normAct(t, "encoder.conv_norm_out") })
	h = chain(h, x, func(t *engine.Tensor) *engine.Tensor { return m.conv(t, "encoder.conv_out", 1, same()) })
	if m.cfg.UseQuantConv {
		h = chain(h, x, func(t *engine.Tensor) *engine.Tensor { return m.conv(t, "quant_conv", 1, [4]int{}) })
	}
	return h
}

// decode runs post_quant_conv and the decoder: [N, latent, h, w] → [N, out, h·f, w·f].
func (m *AutoencoderKL) decode(z *engine.Tensor) *engine.Tensor {
	n := len(m.cfg.BlockOutChannels)
	h := z
	if m.cfg.UsePostQuantConv {
		h = m.conv(z, "post_quant_conv", 1, [4]int{})
	}
	h = chain(h, z, func(t *engine.Tensor) *engine.Tensor { return m.conv(t, "decoder.conv_in", 1, same()) })
	h = chain(h, z, func(t *engine.Tensor) *engine.Tensor { return m.midBlock(t, "decoder.mid_block") })
	for i := range n {
		for j := range m.cfg.LayersPerBlock + 1 {
			h = chain(h, z, func(t *engine.Tensor) *engine.Tensor {
				return m.resnet(t, fmt.Sprintf("decoder.up_blocks.%d.resnets.%d", i, j))
			})
		}
		if i < n-1 {
			h = chain(h, z, func(t *engine.Tensor) *engine.Tensor { return m.e.UpsampleNearest(t, 2) })
			h = chain(h, z, func(t *engine.Tensor) *engine.Tensor {
				return m.conv(t, fmt.Sprintf("decoder.up_blocks.%d.upsamplers.0.conv", i), 1, same())
			})
		}
	}
	h = chain(h, z, func(t *engine.Tensor) *engine.Tensor { return m.normAct(t, "decoder.conv_norm_out") })
	return chain(h, z, func(t *engine.Tensor) *engine.Tensor { return m.conv(t, "decoder.conv_out", 1, same()) })
}

// checkInput validates a [N, C, H, W] batch whose sides must be multiples of mult.
func checkInput(x *engine.Tensor, what string, c, mult int) error {
	s := x.Shape()
	if len(s) != 4 || s[0] < 1 || s[1] != c || s[2] < mult || s[3] < mult || s[2]%mult != 0 || s[3]%mult != 0 {
		return fmt.Errorf("%w: %s %v, want [N %d H W] with H and W positive multiples of %d", ErrInput, what, s, c, mult)
	}
	return nil
}

// Encode returns the posterior of images ([N, in_channels, H, W], values in [−1, 1], H and W
// multiples of Config.Downscale): its mean and its log-variance clamped to [−30, 20], both
// [N, latent_channels, H/f, W/f] and unscaled. The caller frees both.
func (m *AutoencoderKL) Encode(images *engine.Tensor) (mean, logvar *engine.Tensor, err error) {
	if err := checkInput(images, "images", m.cfg.InChannels, m.cfg.Downscale()); err != nil {
		return nil, nil, err
	}
	defer m.e.NoGrad()()
	var lv []float32
	var lvShape []int
	err = engine.Catch(func() {
		s := m.e.Scope()
		defer s.Close()
		moments := m.encode(images)
		parts := m.e.Split(moments, 1, m.cfg.LatentChannels, m.cfg.LatentChannels)
		moments.Free()
		mean = s.Keep(parts[0])
		lvShape = parts[1].Shape()
		lv, err = parts[1].ToHost()
	})
	if err == nil {
		// The clamp runs on the host: the posterior is small next to the encoder's work.
		for i, v := range lv {
			lv[i] = min(max(v, logvarMin), logvarMax)
		}
		err = engine.Catch(func() { logvar = m.e.FromHost(lv, lvShape...) })
	}
	if err != nil {
		if mean != nil {
			mean.Free()
		}
		return nil, nil, fmt.Errorf("vae: encode: %w", err)
	}
	return mean, logvar, nil
}

// Latents encodes images into the latents a diffusion model trains on:
// (z − shift_factor)·scaling_factor, where z is a sample of the posterior drawn from rng
// (mean + exp(logvar/2)·ε, as SimpleTuner caches them), or its mean (mode) when rng is nil.
// The caller frees the result.
func (m *AutoencoderKL) Latents(images *engine.Tensor, rng *engine.RNG) (*engine.Tensor, error) {
	mean, logvar, err := m.Encode(images)
	if err != nil {
		return nil, err
	}
	defer mean.Free()
	defer logvar.Free()
	defer m.e.NoGrad()()
	scale, shift := float32(m.cfg.ScalingFactor), float32(m.cfg.Shift())
	var out *engine.Tensor
	if rng == nil {
		err = engine.Catch(func() { out = m.e.Affine(mean, scale, -shift*scale) })
		return out, err
	}
	var ev []float32
	err = engine.Catch(func() {
		eps := m.e.RandN(rng, 0, 1, mean.Shape()...)
		defer eps.Free()
		ev, err = eps.ToHost()
	})
	mv, err1 := mean.ToHost()
	lv, err2 := logvar.ToHost()
	if err := errors.Join(err, err1, err2); err != nil {
		return nil, fmt.Errorf("vae: sample latents: %w", err)
	}
	for i := range mv {
		z := mv[i] + float32(math.Exp(0.5*float64(lv[i])))*ev[i]
		mv[i] = (z - shift) * scale
	}
	err = engine.Catch(func() { out = m.e.FromHost(mv, mean.Shape()...) })
	return out, err
}

// Decode turns latents ([N, latent_channels, h, w], scaled as Latents returns them) back
// into images [N, out_channels, h·f, w·f]: it undoes the scaling and shift, then runs
// post_quant_conv and the decoder. The caller frees the result.
func (m *AutoencoderKL) Decode(latents *engine.Tensor) (*engine.Tensor, error) {
	return m.decodeWith(latents, true)
}

// DecodeRaw decodes unscaled posterior samples z (what Encode's mean is) without undoing a
// scaling factor, as diffusers' AutoencoderKL.decode does. The caller frees the result.
func (m *AutoencoderKL) DecodeRaw(z *engine.Tensor) (*engine.Tensor, error) {
	return m.decodeWith(z, false)
}

// decodeWith runs the decoder on z, first undoing the latent scaling when unscale is set.
func (m *AutoencoderKL) decodeWith(z *engine.Tensor, unscale bool) (*engine.Tensor, error) {
	if err := checkInput(z, "latents", m.cfg.LatentChannels, 1); err != nil {
		return nil, err
	}
	defer m.e.NoGrad()()
	var out *engine.Tensor
	err := engine.Catch(func() {
		s := m.e.Scope()
		defer s.Close()
		if unscale {
			z = m.e.Affine(z, float32(1/m.cfg.ScalingFactor), float32(m.cfg.Shift()))
		}
		out = s.Keep(m.decode(z))
	})
	if err != nil {
		return nil, fmt.Errorf("vae: decode: %w", err)
	}
	return out, nil
}
