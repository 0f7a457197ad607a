package sentencepiece

import (
	"encoding/binary"
	"fmt"
	"strings"
	"unicode/utf8"
)

// spaceSymbol is the visible whitespace marker SentencePiece puts in pieces
// (U+2581 LOWER ONE EIGHTH BLOCK).
const spaceSymbol = "\u2581"

// maxCharsmapMatches bounds the prefix matches considered per position, as
// the reference normalizer does.
const maxCharsmapMatches = 32

// doubleArray is a Darts-style double-array trie, the format of the
// precompiled charsmap. Each unit packs a label, an offset to its children
// and a has-leaf flag; a leaf unit holds the value.
type doubleArray []uint32

func (u doubleArray) hasLeaf(i uint32) bool { return (u[i]>>8)&1 == 1 }
func (u doubleArray) value(i uint32) uint32 { return u[i] & (1<<31 - 1) }
func (u doubleArray) label(i uint32) uint32 { return u[i] & (1<<31 | 0xFF) }
func (u doubleArray) offset(i uint32) uint32 {
	return (u[i] >> 10) << ((u[i] & (1 << 9)) >> 6)
}

// longestPrefix returns the value and byte length of the longest key of the
// trie that is a prefix of s (length 0 when none is).
func (u doubleArray) longestPrefix(s string) (value uint32, length int) {
	if len(u) == 0 {
		return 0, 0
	}
	pos := u.offset(0)
	matches := 0
	for i := 0; i < len(s); i++ {
		pos ^= uint32(s[i])
		if pos >= uint32(len(u)) || u.label(pos) != uint32(s[i]) {
			break
		}
		leaf := u.hasLeaf(pos)
		pos ^= u.offset(pos)
		if pos >= uint32(len(u)) {
			break
		}
		if leaf {
			// The value sits in the unit the offset leads to.
			value, length = u.value(pos), i+1
			if matches++; matches >= maxCharsmapMatches {
				break
			}
		}
	}
	return value, length
}

// normalizer turns raw text into the string the segmenter sees.
type normalizer struct {
	spec NormalizerSpec
	// treatWSAsSuffix puts the dummy space at the end instead of the start.
	treatWSAsSuffix bool
	trie            doubleArray
	// pool holds the NUL-terminated replacement strings the trie values index.
	pool string
	// userDefined are matched before the charsmap so they are never altered.
	userDefined *pieceTrie
}

func newNormalizer(spec NormalizerSpec, trainer TrainerSpec, userDefined *pieceTrie) (*normalizer, error) {
	n := &normalizer{spec: spec, treatWSAsSuffix: trainer.TreatWhitespaceAsSuffix, userDefined: userDefined}
	blob := spec.PrecompiledCharsmap
	if len(blob) == 0 {
		return n, nil
	}
	if len(blob) < 4 {
		return nil, fmt.Errorf("%w: precompiled charsmap of %d bytes", ErrMalformed, len(blob))
	}
	size := binary.LittleEndian.Uint32(blob)
	blob = blob[4:]
	if size%4 != 0 || uint64(size) > uint64(len(blob)) || size == 0 {
		return nil, fmt.Errorf("%w: charsmap trie size %d of %d bytes", ErrMalformed, size, len(blob))
	}
	n.trie = make(doubleArray, size/4)
	for i := range n.trie {
		n.trie[i] = binary.LittleEndian.Uint32(blob[4*i:])
	}
	n.pool = string(blob[size:])
	return n, nil
}

// prefix returns the normalized form of the start of s and how many bytes of
// s it consumes (at least one).
func (n *normalizer) prefix(s string) (string, int) {
	if n.userDefined != nil {
		if _, l := n.userDefined.longestPrefix(s); l > 0 {
			return s[:l], l
		}
	}
	if v, l := n.trie.longestPrefix(s); l > 0 {
		if int(v) < len(n.pool) {
			r := n.pool[v:]
			if end := strings.IndexByte(r, 0); end >= 0 {
				r = r[:end]
			}
			return r, l
		}
	}
	r, size := utf8.DecodeRuneInString(s)
	if r == utf8.RuneError && size <= 1 {
		// Invalid UTF-8: one byte becomes U+FFFD, as the reference does.
		return "\uFFFD", 1
	}
	return s[:size], size
}

// normalize applies the charsmap and the whitespace rules.
func (n *normalizer) normalize(s string) string {
	spec := n.spec
	if spec.RemoveExtraWhitespaces {
		for len(s) > 0 {
			r, l := n.prefix(s)
			if r != " " {
				break
			}
			s = s[l:]
		}
	}
	if s == "" {
		return ""
	}
	space := " "
	if spec.EscapeWhitespaces {
		space = spaceSymbol
	}
	var b strings.Builder
	b.Grow(len(s) + len(s)/2 + 3)
	if !n.treatWSAsSuffix && spec.AddDummyPrefix {
		b.WriteString(space)
	}
	prevSpace := spec.RemoveExtraWhitespaces
	for len(s) > 0 {
		r, l := n.prefix(s)
		s = s[l:]
		if prevSpace {
			r = strings.TrimLeft(r, " ")
		}
		if r != "" {
			// Only a literal space counts, before it is escaped.
			prevSpace = strings.HasSuffix(r, " ")
			if spec.EscapeWhitespaces {
				r = strings.ReplaceAll(r, " ", spaceSymbol)
			}
			b.WriteString(r)
		}
		if !spec.RemoveExtraWhitespaces {
			prevSpace = false
		}
	}
	out := b.String()
	if spec.RemoveExtraWhitespaces {
		for strings.HasSuffix(out, space) {
			out = out[:len(out)-len(space)]
		}
	}
	if n.treatWSAsSuffix && spec.AddDummyPrefix {
		out += space
	}
	return out
}
