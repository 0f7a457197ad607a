package sentencepiece

import (
	"errors"
	"fmt"
)

// ErrNoSpecialPiece means the model lacks a piece the post-processing needs
// (T5 needs both </s> and <pad>).
var ErrNoSpecialPiece = errors.New("sentencepiece: model has no such special piece")

// Encoding is a caption tokenized to a fixed length, as a T5 text encoder
// takes it.
type Encoding struct {
	// IDs holds exactly the requested number of ids: the caption's pieces,
	// then </s>, then padding.
	IDs []int
	// AttentionMask is 1 for the caption's pieces and </s>, 0 for padding.
	AttentionMask []int
	// Truncated reports that pieces were cut to make room for </s>.
	Truncated bool
}

// EncodeT5 tokenizes text the way T5's tokenizer does with truncation and
// padding to maxLen: the plain encoding (T5's legacy behaviour, no BOS),
// cut to maxLen-1 pieces, then </s>, then the pad id up to maxLen.
func (t *Tokenizer) EncodeT5(text string, maxLen int) (Encoding, error) {
	if maxLen < 1 {
		return Encoding{}, fmt.Errorf("sentencepiece: max length %d, want at least 1 (room for </s>)", maxLen)
	}
	eos, pad := t.model.Trainer.EOSID, t.model.Trainer.PadID
	if eos < 0 || eos >= len(t.model.Pieces) {
		return Encoding{}, fmt.Errorf("%w: eos id %d", ErrNoSpecialPiece, eos)
	}
	if pad < 0 || pad >= len(t.model.Pieces) {
		return Encoding{}, fmt.Errorf("%w: pad id %d", ErrNoSpecialPiece, pad)
	}
	pieces := t.Encode(text)
	enc := Encoding{IDs: make([]int, maxLen), AttentionMask: make([]int, maxLen)}
	if len(pieces) > maxLen-1 {
		pieces = pieces[:maxLen-1]
		enc.Truncated = true
	}
	n := copy(enc.IDs, pieces)
	enc.IDs[n] = eos
	for i := range enc.IDs {
		if i <= n {
			enc.AttentionMask[i] = 1
		} else {
			enc.IDs[i] = pad
		}
	}
	return enc, nil
}
