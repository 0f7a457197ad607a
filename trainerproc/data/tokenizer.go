package data

import "fmt"

// Special token ids of the byte-level tokenizer; byte b is token ByteOffset+b.
const (
	TokenPad   int32 = 0
	TokenBOS   int32 = 1
	TokenEOS   int32 = 2
	ByteOffset int32 = 3
	// VocabSize is the tokenizer's vocabulary size: three specials and 256 bytes.
	VocabSize = 259
	// TokenizerVersion names the tokenizer in cache keys; bump it on any change to Encode.
	TokenizerVersion = "bytes-v1"
)

// Tokenizer is a deterministic byte-level caption tokenizer: BOS, the caption's UTF-8 bytes,
// EOS, then padding to MaxLen. It needs no vocabulary file and no download, and every caption
// is representable. The learned caption encoder (the model's job) consumes its ids.
type Tokenizer struct {
	maxLen int
}

// NewTokenizer returns a tokenizer that pads or truncates to maxLen tokens (at least 2, for
// BOS and EOS).
func NewTokenizer(maxLen int) (*Tokenizer, error) {
	if maxLen < 2 || maxLen > 1<<16 {
		return nil, fmt.Errorf("%w: caption token length %d must be between 2 and 65536", ErrInvalidConfig, maxLen)
	}
	return &Tokenizer{maxLen: maxLen}, nil
}

// MaxLen is the fixed sequence length L of every encoding.
func (t *Tokenizer) MaxLen() int { return t.maxLen }

// Encode writes caption's ids and mask (1 for real tokens, 0 for padding) into ids and mask,
// which must both have length MaxLen. Captions longer than MaxLen-2 bytes are truncated; the
// sequence still ends with EOS so the model sees where it stops.
func (t *Tokenizer) Encode(caption string, ids []int32, mask []float32) {
	ids, mask = ids[:t.maxLen], mask[:t.maxLen]
	n := min(len(caption), t.maxLen-2)
	ids[0], mask[0] = TokenBOS, 1
	for i := 0; i < n; i++ {
		ids[1+i], mask[1+i] = ByteOffset+int32(caption[i]), 1
	}
	ids[1+n], mask[1+n] = TokenEOS, 1
	for i := n + 2; i < t.maxLen; i++ {
		ids[i], mask[i] = TokenPad, 0
	}
}

// EncodeNew is Encode into freshly allocated slices.
func (t *Tokenizer) EncodeNew(caption string) ([]int32, []float32) {
	ids, mask := make([]int32, t.maxLen), make([]float32, t.maxLen)
	t.Encode(caption, ids, mask)
	return ids, mask
}

// Empty returns the encoding of the empty caption, for caption dropout and unconditional
// guidance.
func (t *Tokenizer) Empty() ([]int32, []float32) { return t.EncodeNew("") }
