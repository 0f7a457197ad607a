package sentencepiece

import (
	"fmt"
	"math"
)

// unkPenalty is how much worse than the worst normal piece an unknown
// character scores, so the Viterbi path prefers any known segmentation.
const unkPenalty = 10.0

// Tokenizer encodes text with a SentencePiece Unigram model. It is
// read-only after construction and safe for concurrent use.
type Tokenizer struct {
	model *ModelProto
	norm  *normalizer
	// pieces holds the normal, user-defined and unused pieces, the ones the
	// segmenter may match in text.
	pieces *pieceTrie
	// byteIDs maps a byte to its <0xXX> piece id (byte fallback), -1 if absent.
	byteIDs  [256]int
	unkID    int
	minScore float32
	maxScore float32
}

// NewTokenizer prepares a Unigram model for encoding.
func NewTokenizer(m *ModelProto) (*Tokenizer, error) {
	if m.Trainer.ModelType != UnigramModel {
		return nil, fmt.Errorf("%w: model type %d, only Unigram (1) is implemented", ErrUnsupported, m.Trainer.ModelType)
	}
	t := &Tokenizer{model: m, pieces: newPieceTrie(), unkID: -1}
	for i := range t.byteIDs {
		t.byteIDs[i] = -1
	}
	userDefined := newPieceTrie()
	hasUserDefined := false
	seen := make(map[string]bool, len(m.Pieces))
	// The reference starts the maximum at the smallest positive normal
	// float, not at minus infinity; user-defined scores depend on it.
	t.minScore, t.maxScore = math.MaxFloat32, 0x1p-126
	for id, p := range m.Pieces {
		switch p.Type {
		case Normal, UserDefined, Unused:
			if seen[p.Text] {
				return nil, fmt.Errorf("%w: duplicate piece %q", ErrMalformed, p.Text)
			}
			seen[p.Text] = true
			t.pieces.insert(p.Text, id)
		case Unknown:
			if t.unkID >= 0 {
				return nil, fmt.Errorf("%w: two unknown pieces (%d and %d)", ErrMalformed, t.unkID, id)
			}
			t.unkID = id
		case Byte:
			var b int
			if _, err := fmt.Sscanf(p.Text, "<0x%02X>", &b); err != nil || len(p.Text) != 6 {
				return nil, fmt.Errorf("%w: byte piece %q", ErrMalformed, p.Text)
			}
			t.byteIDs[b] = id
		}
		if p.Type == UserDefined {
			userDefined.insert(p.Text, id)
			hasUserDefined = true
		}
		if p.Type == Normal {
			t.minScore = min(t.minScore, p.Score)
			t.maxScore = max(t.maxScore, p.Score)
		}
	}
	if t.unkID < 0 {
		return nil, fmt.Errorf("%w: no unknown piece", ErrMalformed)
	}
	if m.Trainer.ByteFallback {
		for b, id := range t.byteIDs {
			if id < 0 {
				return nil, fmt.Errorf("%w: byte fallback without piece <0x%02X>", ErrMalformed, b)
			}
		}
	}
	if !hasUserDefined {
		userDefined = nil
	}
	norm, err := newNormalizer(m.Normalizer, m.Trainer, userDefined)
	if err != nil {
		return nil, err
	}
	t.norm = norm
	return t, nil
}

// LoadTokenizer reads a spiece.model file and prepares it for encoding.
func LoadTokenizer(path string) (*Tokenizer, error) {
	m, err := ReadModelFile(path)
	if err != nil {
		return nil, err
	}
	t, err := NewTokenizer(m)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// Model returns the parsed model the tokenizer uses; callers must not modify it.
func (t *Tokenizer) Model() *ModelProto { return t.model }

// VocabSize is the number of pieces, the size of the id space.
func (t *Tokenizer) VocabSize() int { return len(t.model.Pieces) }

// Normalize returns text as the segmenter sees it: the charsmap applied,
// whitespace collapsed and escaped to U+2581 as the model asks.
func (t *Tokenizer) Normalize(text string) string { return t.norm.normalize(text) }

// Encode returns the piece ids of text, as the reference encoder does: no
// BOS or EOS is added.
func (t *Tokenizer) Encode(text string) []int {
	segs := t.viterbi(t.norm.normalize(text))
	ids := make([]int, 0, len(segs))
	for _, s := range segs {
		if s.id == t.unkID && t.model.Trainer.ByteFallback {
			for i := 0; i < len(s.text); i++ {
				ids = append(ids, t.byteIDs[s.text[i]])
			}
			continue
		}
		ids = append(ids, s.id)
	}
	return ids
}

// EncodePieces returns the pieces of text as strings; unknown spans are
// returned as they appear in the normalized text.
func (t *Tokenizer) EncodePieces(text string) []string {
	segs := t.viterbi(t.norm.normalize(text))
	out := make([]string, len(segs))
	for i, s := range segs {
		out[i] = s.text
	}
	return out
}

// segment is one piece of a segmentation: its id and the normalized text it covers.
type segment struct {
	id   int
	text string
}

// charLen is the length of the UTF-8 sequence a lead byte announces, as the
// reference computes it (continuation bytes count as one).
func charLen(b byte) int {
	return int("\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x02\x02\x03\x04"[b>>4])
}

// viterbi finds the segmentation of s with the best total score; each
// character no piece covers becomes an unknown, and consecutive unknowns
// merge into one.
func (t *Tokenizer) viterbi(s string) []segment {
	if s == "" {
		return nil
	}
	type node struct {
		score float32
		start int // -1: not reached yet
		id    int
	}
	best := make([]node, len(s)+1)
	for i := 1; i < len(best); i++ {
		best[i].start = -1
	}
	unkScore := t.minScore - unkPenalty
	for pos := 0; pos < len(s); {
		mblen := min(charLen(s[pos]), len(s)-pos)
		base := best[pos].score
		single := false
		t.pieces.prefixes(s[pos:], func(id, length int) {
			p := &t.model.Pieces[id]
			if p.Type == Unused {
				return
			}
			// The reference adds in double precision and compares the exact
			// sum with the stored (single-precision) best score; keeping
			// that mix decides ties and near-ties the same way.
			score := float64(p.Score)
			if p.Type == UserDefined {
				score = float64(float32(length)*t.maxScore) - 0.1
			}
			cand := score + float64(base)
			end := &best[pos+length]
			if end.start == -1 || cand > float64(end.score) {
				*end = node{score: float32(cand), start: pos, id: id}
			}
			if length == mblen {
				single = true
			}
		})
		if !single {
			end := &best[pos+mblen]
			cand := unkScore + base
			if end.start == -1 || cand > end.score {
				*end = node{score: cand, start: pos, id: t.unkID}
			}
		}
		pos += mblen
	}
	var rev []segment
	for end := len(s); end > 0; {
		n := best[end]
		rev = append(rev, segment{id: n.id, text: s[n.start:end]})
		end = n.start
	}
	out := make([]segment, 0, len(rev))
	for i := len(rev) - 1; i >= 0; i-- {
		seg := rev[i]
		if last := len(out) - 1; last >= 0 && seg.id == t.unkID && out[last].id == t.unkID {
			out[last].text += seg.text
			continue
		}
		out = append(out, seg)
	}
	return out
}
