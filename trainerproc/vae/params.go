package vae

import (
	"fmt"
	"strings"
)

// paramSpec is one parameter the config calls for, under diffusers' current name.
type paramSpec struct {
	name  string
	shape []int
}

// specBuilder accumulates parameter specs in diffusers' state-dict order.
type specBuilder struct{ specs []paramSpec }

func (b *specBuilder) add(name string, shape ...int) {
	b.specs = append(b.specs, paramSpec{name: name, shape: shape})
}

// conv adds a k×k convolution from in to out channels with its bias.
func (b *specBuilder) conv(prefix string, out, in, k int) {
	b.add(prefix+".weight", out, in, k, k)
	b.add(prefix+".bias", out)
}

// norm adds an affine group norm over c channels.
func (b *specBuilder) norm(prefix string, c int) {
	b.add(prefix+".weight", c)
	b.add(prefix+".bias", c)
}

// resnet adds a ResnetBlock2D from in to out channels; the 1×1 shortcut exists only when
// they differ (diffusers' use_in_shortcut default).
func (b *specBuilder) resnet(prefix string, in, out int) {
	b.norm(prefix+".norm1", in)
	b.conv(prefix+".conv1", out, in, 3)
	b.norm(prefix+".norm2", out)
	b.conv(prefix+".conv2", out, out, 3)
	if in != out {
		b.conv(prefix+".conv_shortcut", out, in, 1)
	}
}

// attention adds the mid block's single-head self-attention over c channels.
func (b *specBuilder) attention(prefix string, c int) {
	b.norm(prefix+".group_norm", c)
	for _, l := range attentionLayers() {
		b.add(prefix+"."+l[0]+".weight", c, c)
		b.add(prefix+"."+l[0]+".bias", c)
	}
}

// midBlock adds UNetMidBlock2D: resnet, attention (unless disabled), resnet.
func (b *specBuilder) midBlock(prefix string, c int, attn bool) {
	b.resnet(prefix+".resnets.0", c, c)
	if attn {
		b.attention(prefix+".attentions.0", c)
	}
	b.resnet(prefix+".resnets.1", c, c)
}

// paramSpecs lists every parameter of the config's AutoencoderKL under diffusers' current
// names with PyTorch's shapes (conv weights [out, in, kh, kw], linear weights [out, in]).
func (c Config) paramSpecs() []paramSpec {
	var b specBuilder
	ch := c.BlockOutChannels
	n := len(ch)
	last := ch[n-1]

	b.conv("encoder.conv_in", ch[0], c.InChannels, 3)
	in := ch[0]
	for i, out := range ch {
		for j := range c.LayersPerBlock {
			b.resnet(fmt.Sprintf("encoder.down_blocks.%d.resnets.%d", i, j), in, out)
			in = out
		}
		if i < n-1 {
			b.conv(fmt.Sprintf("encoder.down_blocks.%d.downsamplers.0.conv", i), out, out, 3)
		}
	}
	b.midBlock("encoder.mid_block", last, c.MidBlockAddAttention)
	b.norm("encoder.conv_norm_out", last)
	b.conv("encoder.conv_out", 2*c.LatentChannels, last, 3)

	b.conv("decoder.conv_in", last, c.LatentChannels, 3)
	b.midBlock("decoder.mid_block", last, c.MidBlockAddAttention)
	in = last
	for i := range n {
		out := ch[n-1-i]
		for j := range c.LayersPerBlock + 1 {
			b.resnet(fmt.Sprintf("decoder.up_blocks.%d.resnets.%d", i, j), in, out)
			in = out
		}
		if i < n-1 {
			b.conv(fmt.Sprintf("decoder.up_blocks.%d.upsamplers.0.conv", i), out, out, 3)
		}
	}
	b.norm("decoder.conv_norm_out", ch[0])
	b.conv("decoder.conv_out", c.OutChannels, ch[0], 3)

	if c.UseQuantConv {
		b.conv("quant_conv", 2*c.LatentChannels, 2*c.LatentChannels, 1)
	}
	if c.UsePostQuantConv {
		b.conv("post_quant_conv", c.LatentChannels, c.LatentChannels, 1)
	}
	return b.specs
}

// attentionLayers lists the attention's linear layers: current diffusers name, then the
// legacy name of diffusers' deprecated attention block.
func attentionLayers() [][2]string {
	return [][2]string{{"to_q", "query"}, {"to_k", "key"}, {"to_v", "value"}, {"to_out.0", "proj_attn"}}
}

// canonicalName returns the current diffusers name of a checkpoint tensor: legacy attention
// names ("….attentions.0.query.weight") become current ones ("….attentions.0.to_q.weight");
// every other name is returned unchanged. legacy reports whether a rename happened.
func canonicalName(name string) (canon string, legacy bool) {
	head, rest, ok := strings.Cut(name, ".attentions.")
	if !ok {
		return name, false
	}
	idx, rest, ok := strings.Cut(rest, ".")
	if !ok {
		return name, false
	}
	layer, leaf, ok := strings.Cut(rest, ".")
	if !ok {
		return name, false
	}
	for _, l := range attentionLayers() {
		if l[1] == layer {
			return head + ".attentions." + idx + "." + l[0] + "." + leaf, true
		}
	}
	return name, false
}

// isAttentionLinear reports whether a canonical name is one of the attention's linear
// weights, which some converted checkpoints store as 1×1 convolutions ([c, c, 1, 1]).
func isAttentionLinear(name string) bool {
	if !strings.Contains(name, ".attentions.") || !strings.HasSuffix(name, ".weight") {
		return false
	}
	for _, l := range attentionLayers() {
		if strings.HasSuffix(name, "."+l[0]+".weight") {
			return true
		}
	}
	return false
}
