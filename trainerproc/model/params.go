package model

import (
	"fmt"
	"math"

	"simpletuner/trainerproc/engine"
)

// initKind says how a parameter starts (PixArt's initialisation).
type initKind uint8

const (
	initXavier initKind = iota // xavier-uniform over [out, in] (fan_in = numel/out)
	initNormal                 // normal(0, 0.02): timestep/adaLN/caption projections, embeddings
	initZero                   // zero: biases, cross-attention and final output projections
	initOne                    // one: layer-norm weights
	initTable                  // normal(0, 1/√D): adaLN scale-shift tables
)

// paramSpec is one parameter of the model: its diffusers name, shape and initialisation.
type paramSpec struct {
	name  string
	shape []int
	init  initKind
}

// textPrefix prefixes the caption encoder's parameter names inside a Model; the saved
// text_encoder/model.safetensors drops it.
const textPrefix = "text_encoder."

// paramShapes lists every parameter in a fixed order (the order of Model.Params, of the
// safetensors files and of the optimizer state).
func (c Config) paramShapes() []paramSpec {
	d, ff, p, ch := c.Width(), c.Width()*c.MLPRatio, c.PatchSize, c.InChannels
	var s []paramSpec
	lin := func(name string, out, in int, w initKind, bias bool) {
		s = append(s, paramSpec{name + ".weight", []int{out, in}, w})
		if bias {
			s = append(s, paramSpec{name + ".bias", []int{out}, initZero})
		}
	}
	s = append(s, paramSpec{"pos_embed.proj.weight", []int{d, ch, p, p}, initXavier},
		paramSpec{"pos_embed.proj.bias", []int{d}, initZero})
	lin("caption_projection.linear_1", d, c.TextWidth, initNormal, true)
	lin("caption_projection.linear_2", d, d, initNormal, true)
	lin("adaln_single.emb.timestep_embedder.linear_1", d, timeFreqDim, initNormal, true)
	lin("adaln_single.emb.timestep_embedder.linear_2", d, d, initNormal, true)
	lin("adaln_single.linear", 6*d, d, initNormal, true)
	for i := 0; i < c.NumLayers; i++ {
		b := fmt.Sprintf("transformer_blocks.%d.", i)
		s = append(s, paramSpec{b + "scale_shift_table", []int{6, d}, initTable})
		for _, a := range []string{"attn1", "attn2"} {
			for _, m := range []string{"to_q", "to_k", "to_v"} {
				lin(b+a+"."+m, d, d, initXavier, true)
			}
			out := initXavier
			if a == "attn2" {
				out = initZero // PixArt zero-initialises the cross-attention output projection
			}
			lin(b+a+".to_out.0", d, d, out, true)
		}
		lin(b+"ff.net.0.proj", ff, d, initXavier, true)
		lin(b+"ff.net.2", d, ff, initXavier, true)
	}
	s = append(s, paramSpec{"scale_shift_table", []int{2, d}, initTable})
	if c.Conditioning {
		// Marks reference-image tokens apart from the noisy image's (last, so the order of
		// every other parameter is the same with and without conditioning).
		s = append(s, paramSpec{"cond_embed", []int{d}, initNormal})
	}
	lin("proj_out", p*p*c.Outputs(), d, initZero, true)
	if c.PixArt {
		return s // no caption encoder: the text encoder's states come from outside
	}

	tw, tff := c.TextWidth, c.TextWidth*c.MLPRatio
	t := textPrefix
	s = append(s, paramSpec{t + "embed_tokens.weight", []int{c.VocabSize, tw}, initNormal},
		paramSpec{t + "embed_positions.weight", []int{c.MaxTokens, tw}, initNormal})
	ln := func(name string) {
		s = append(s, paramSpec{name + ".weight", []int{tw}, initOne}, paramSpec{name + ".bias", []int{tw}, initZero})
	}
	for i := 0; i < c.TextLayers; i++ {
		b := fmt.Sprintf("%slayers.%d.", t, i)
		ln(b + "layer_norm1")
		for _, m := range []string{"q_proj", "k_proj", "v_proj", "out_proj"} {
			lin(b+"self_attn."+m, tw, tw, initXavier, true)
		}
		ln(b + "layer_norm2")
		lin(b+"mlp.fc1", tff, tw, initXavier, true)
		lin(b+"mlp.fc2", tw, tff, initXavier, true)
	}
	ln(t + "final_layer_norm")
	return s
}

// newParam allocates and initialises one parameter from the stream rng.
func newParam(e *engine.Engine, sp paramSpec, width int, rng *engine.RNG) *engine.Parameter {
	var t *engine.Tensor
	switch sp.init {
	case initXavier:
		out := sp.shape[0]
		in := 1
		for _, d := range sp.shape[1:] {
			in *= d
		}
		a := float32(math.Sqrt(6 / float64(in+out)))
		t = e.RandU(rng, -a, a, sp.shape...)
	case initNormal:
		t = e.RandN(rng, 0, 0.02, sp.shape...)
	case initTable:
		t = e.RandN(rng, 0, float32(1/math.Sqrt(float64(width))), sp.shape...)
	case initOne:
		t = e.Full(1, sp.shape...)
	default:
		t = e.Zeros(sp.shape...)
	}
	return e.NewParameter(sp.name, t)
}
