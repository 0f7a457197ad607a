package t5

import "fmt"

// Tensor names, as transformers' T5EncoderModel stores them.
const (
	// SharedName is the token embedding as T5EncoderModel saves it.
	SharedName = "shared.weight"
	// EmbedTokensName is the same table under the encoder stack's own name; transformers ties
	// it to SharedName, and older files store it instead of (or beside) SharedName.
	EmbedTokensName = "encoder.embed_tokens.weight"
	// FinalNormName is the norm after the last block.
	FinalNormName = "encoder.final_layer_norm.weight"
	// RelativeBiasName is block 0's relative position bias table [buckets, heads], the only
	// one: every block uses the bias block 0 computes.
	RelativeBiasName = "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"
)

// tensorSpec is one weight of the encoder: its name and shape.
type tensorSpec struct {
	name  string
	shape []int
}

// blockNames are the weight names of one block.
type blockNames struct {
	attnNorm, q, k, v, o string
	ffNorm, wi0, wi1, wo string // wi1 is empty for a non-gated feed-forward, whose wi0 is "wi"
}

func namesOf(layer int, gated bool) blockNames {
	p := fmt.Sprintf("encoder.block.%d.", layer)
	attn, ff := p+"layer.0.SelfAttention.", p+"layer.1.DenseReluDense."
	n := blockNames{
		attnNorm: p + "layer.0.layer_norm.weight",
		q:        attn + "q.weight", k: attn + "k.weight", v: attn + "v.weight", o: attn + "o.weight",
		ffNorm: p + "layer.1.layer_norm.weight",
		wo:     ff + "wo.weight",
	}
	if gated {
		n.wi0, n.wi1 = ff+"wi_0.weight", ff+"wi_1.weight"
	} else {
		n.wi0 = ff + "wi.weight"
	}
	return n
}

// specs lists every weight of the encoder in load order, with the token embedding under
// embedName.
func (c Config) specs(embedName string) []tensorSpec {
	d, inner, ff := c.DModel, c.InnerDim(), c.DFF
	out := []tensorSpec{
		{embedName, []int{c.VocabSize, d}},
		{RelativeBiasName, []int{c.RelativeAttentionNumBuckets, c.NumHeads}},
	}
	for l := range c.NumLayers {
		n := namesOf(l, c.Gated)
		out = append(out,
			tensorSpec{n.attnNorm, []int{d}},
			tensorSpec{n.q, []int{inner, d}}, tensorSpec{n.k, []int{inner, d}},
			tensorSpec{n.v, []int{inner, d}}, tensorSpec{n.o, []int{d, inner}},
			tensorSpec{n.ffNorm, []int{d}},
			tensorSpec{n.wi0, []int{ff, d}})
		if c.Gated {
			out = append(out, tensorSpec{n.wi1, []int{ff, d}})
		}
		out = append(out, tensorSpec{n.wo, []int{d, ff}})
	}
	return append(out, tensorSpec{FinalNormName, []int{d}})
}

// ParamCount is the number of weights of the encoder (the token embedding counted once).
func (c Config) ParamCount() int64 {
	var n int64
	for _, s := range c.specs(SharedName) {
		k := int64(1)
		for _, d := range s.shape {
			k *= int64(d)
		}
		n += k
	}
	return n
}
