package t5

import (
	"fmt"
	"path/filepath"

	"simpletuner/trainerproc/engine"
	"simpletuner/trainerproc/text/sentencepiece"
)

// Component directories and files of a diffusers pipeline that the caption pipeline reads.
const (
	// TextEncoderDir holds the encoder's config.json and weights.
	TextEncoderDir = "text_encoder"
	// TokenizerModel is the SentencePiece model, relative to the pipeline directory.
	TokenizerModel = "tokenizer/spiece.model"
)

// Pipeline turns captions into the encoder's hidden states: optional preprocessing (for
// PixArt, PixArtPrompt), SentencePiece tokenization with T5's </s>, truncation and padding,
// then the encoder. Like the encoder it is driven by one goroutine at a time.
type Pipeline struct {
	// Tokenizer is read-only and may be shared.
	Tokenizer *sentencepiece.Tokenizer
	// Encoder is owned by the pipeline: Free frees it.
	Encoder *Encoder
	// Preprocess, when non-nil, rewrites each caption before tokenization.
	Preprocess func(string) string
}

// LoadPipeline loads the encoder from dir/text_encoder and the tokenizer from
// dir/tokenizer/spiece.model (dir is a diffusers pipeline directory).
func LoadPipeline(e *engine.Engine, dir string, opt LoadOptions) (*Pipeline, error) {
	tok, err := sentencepiece.LoadTokenizer(filepath.Join(dir, filepath.FromSlash(TokenizerModel)))
	if err != nil {
		return nil, fmt.Errorf("t5: tokenizer: %w", err)
	}
	enc, err := Load(e, filepath.Join(dir, TextEncoderDir), opt)
	if err != nil {
		return nil, err
	}
	return &Pipeline{Tokenizer: tok, Encoder: enc}, nil
}

// Free frees the encoder.
func (p *Pipeline) Free() { p.Encoder.Free() }

// Encoded is the encoder's output for a batch of captions.
type Encoded struct {
	// Hidden is [B, maxLen, d_model]; padding positions hold the encoder's states for the
	// pad token (masked as keys, not zeroed), as the reference returns them.
	Hidden *engine.Tensor
	// Mask is [B, maxLen]: 1 for the caption's tokens and </s>, 0 for padding, the form the
	// engine's attention takes as a key mask.
	Mask *engine.Tensor
	// IDs are the token ids, row-major [B·maxLen].
	IDs []int32
	// Truncated reports, per caption, that tokens were cut to fit maxLen.
	Truncated []bool
}

// Free frees the tensors.
func (o *Encoded) Free() {
	o.Hidden.Free()
	o.Mask.Free()
}

// Encode tokenizes captions to maxLen tokens each (300 for PixArt, 512 for Flux) and runs
// the encoder on them as one batch with their attention mask.
func (p *Pipeline) Encode(captions []string, maxLen int) (*Encoded, error) {
	if len(captions) == 0 {
		return nil, fmt.Errorf("%w: no captions", ErrInput)
	}
	out := &Encoded{IDs: make([]int32, 0, len(captions)*maxLen), Truncated: make([]bool, len(captions))}
	mask := make([]int32, 0, len(captions)*maxLen)
	for i, c := range captions {
		if p.Preprocess != nil {
			c = p.Preprocess(c)
		}
		enc, err := p.Tokenizer.EncodeT5(c, maxLen)
		if err != nil {
			return nil, fmt.Errorf("t5: caption %d: %w", i, err)
		}
		for j, id := range enc.IDs {
			out.IDs = append(out.IDs, int32(id))
			mask = append(mask, int32(enc.AttentionMask[j]))
		}
		out.Truncated[i] = enc.Truncated
	}
	hidden, err := p.Encoder.Forward(out.IDs, mask, len(captions))
	if err != nil {
		return nil, err
	}
	maskF := make([]float32, len(mask))
	for i, v := range mask {
		maskF[i] = float32(v)
	}
	e := p.Encoder.e
	if err := engine.Catch(func() { out.Mask = e.FromHost(maskF, len(captions), maxLen) }); err != nil {
		hidden.Free()
		return nil, fmt.Errorf("t5: mask: %w", err)
	}
	out.Hidden = hidden
	return out, nil
}
