package data

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// TextEncoder is the caption encoder (T5, …) as the text-embedding cache needs it. The model
// packages implement it.
type TextEncoder interface {
	// Encode tokenizes captions, truncated and padded to maxLen tokens, and returns their
	// hidden states.
	Encode(captions []string, maxLen int) (*TextEmbeddings, error)
	// Identity names the encoder and its tokenizer: a hash of their configs and of their
	// weight files' hashes or etags. Embeddings made by another identity are stale.
	Identity() string
}

// TextEmbeddings is an encoder's output for a batch of captions.
type TextEmbeddings struct {
	B, L, D int
	// Hidden is [B,L,D].
	Hidden []float32
	// Lengths holds, per caption, its number of real tokens: the attention mask is 1 on the
	// first Lengths[i] positions and 0 on the padding after them (the encoders pad on the
	// right).
	Lengths []int
}

// textParams is everything a text-embedding entry depends on; its keyOf is the entry's key.
type textParams struct {
	V       int
	Encoder string
	MaxLen  int
	Caption string
	DType   DType
}

// textEntry is a text embedding kept in memory (text_embeds of type memory).
type textEntry struct {
	n      int
	d      int
	hidden []float32
}

// TextEmbedCache is the result of EnsureTextEmbeds: where the embeddings are and what they
// were made with. It keeps the encoder's identity, never the encoder, so the caller may free
// the encoder once EnsureTextEmbeds returns. It is safe for concurrent use (read-only after
// EnsureTextEmbeds).
type TextEmbedCache struct {
	dir      string
	identity string
	maxLen   int
	dtype    DType
	mem      map[string]textEntry // by caption, when dir is ""
	stats    EncodeStats
}

// Stats returns what EnsureTextEmbeds did.
func (c *TextEmbedCache) Stats() EncodeStats { return c.stats }

// MaxLen is the caption length L of every embedding.
func (c *TextEmbedCache) MaxLen() int { return c.maxLen }

func (c *TextEmbedCache) key(caption string) [32]byte {
	return keyOf(textParams{V: 1, Encoder: c.identity, MaxLen: c.maxLen, Caption: caption, DType: c.dtype})
}

// textFile is the entry file of a caption: named after the caption alone, so a new encoder,
// max length or dtype rewrites it in place (see the format notes in cache.go).
func textFile(dir, caption string) string {
	return filepath.Join(dir, cacheName(".te", caption))
}

// EnsureTextEmbeds makes sure every caption, and the empty caption (caption dropout), has a
// valid embedding in dir (the text_embeds dataset's cache_dir; "" keeps them in memory) for
// enc at maxLen tokens. Missing, stale and corrupt entries are encoded in batches of
// o.BatchSize captions (write_batch_size) and written atomically. It fails on cache I/O
// errors, encoder errors and cancellation.
func EnsureTextEmbeds(ctx context.Context, dir string, captions []string, maxLen int, enc TextEncoder, o EncodeOptions) (*TextEmbedCache, error) {
	if err := o.defaults(128); err != nil {
		return nil, err
	}
	if maxLen < 1 {
		return nil, fmt.Errorf("%w: text max length %d", ErrInvalidConfig, maxLen)
	}
	c := &TextEmbedCache{dir: dir, identity: enc.Identity(), maxLen: maxLen, dtype: o.DType}
	if c.identity == "" {
		return nil, fmt.Errorf("%w: the text encoder has an empty identity", ErrInvalidConfig)
	}
	if dir == "" {
		c.mem = map[string]textEntry{}
	}
	uniq := []string{""}
	seen := map[string]bool{"": true}
	for _, s := range captions {
		if !seen[s] {
			seen[s] = true
			uniq = append(uniq, s)
		}
	}
	states := make([]int, len(uniq))
	if dir != "" {
		if err := forEach(ctx, len(uniq), o.Workers, func(i int) {
			states[i] = c.check(uniq[i])
		}); err != nil {
			return nil, err
		}
	}
	var todo []int
	for i, st := range states {
		if st == entryValid {
			c.stats.Hits++
		} else {
			todo = append(todo, i)
		}
	}
	prog := EncodeProgress{Total: len(uniq), Hits: c.stats.Hits, ToEncode: len(todo)}
	o.Progress(prog)
	for off := 0; off < len(todo); off += o.BatchSize {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		batch := todo[off:min(off+o.BatchSize, len(todo))]
		caps := make([]string, len(batch))
		for j, i := range batch {
			caps[j] = uniq[i]
		}
		if err := c.build(caps, enc); err != nil {
			return nil, err
		}
		for _, i := range batch {
			c.stats.Built++
			switch states[i] {
			case entryStale:
				c.stats.Stale++
			case entryCorrupt:
				c.stats.Corrupt++
			}
		}
		prog.Encoded += len(batch)
		o.Progress(prog)
	}
	return c, nil
}

// check classifies the entry of caption, reading and checksumming it whole.
func (c *TextEmbedCache) check(caption string) int {
	path := textFile(c.dir, caption)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return entryMissing
	}
	if err != nil {
		return entryCorrupt
	}
	ph, _, _, err := parseText(path, b)
	switch {
	case err != nil:
		return entryCorrupt
	case ph.key != c.key(caption): // the key covers the encoder, max length and dtype
		return entryStale
	}
	return entryValid
}

// build encodes caps and stores their entries.
func (c *TextEmbedCache) build(caps []string, enc TextEncoder) error {
	te, err := enc.Encode(caps, c.maxLen)
	if err != nil {
		return fmt.Errorf("encoding %d captions: %w", len(caps), err)
	}
	n := te.L * te.D
	if te.B != len(caps) || te.L != c.maxLen || te.D <= 0 || len(te.Hidden) != te.B*n || len(te.Lengths) != te.B {
		return fmt.Errorf("%w: the text encoder returned %dx%dx%d (%d values, %d lengths) for %d captions of %d tokens", ErrInvalidConfig, te.B, te.L, te.D, len(te.Hidden), len(te.Lengths), len(caps), c.maxLen)
	}
	for j, caption := range caps {
		valid := te.Lengths[j]
		if valid < 0 || valid > te.L {
			return fmt.Errorf("%w: the text encoder reports %d tokens of %d for a caption", ErrInvalidConfig, valid, te.L)
		}
		hidden := te.Hidden[j*n : (j+1)*n]
		if c.mem != nil {
			c.mem[caption] = textEntry{n: valid, d: te.D, hidden: append([]float32(nil), hidden...)}
			continue
		}
		var count [4]byte
		binary.LittleEndian.PutUint32(count[:], uint32(valid))
		if err := writeAtomic(textFile(c.dir, caption), encodeEntry(textMagic, c.key(caption), c.dtype, 1, te.L, te.D, count[:], hidden)); err != nil {
			return err
		}
	}
	return nil
}

// parseText validates a whole text-embedding entry (header, size, valid count, CRC) and
// returns its header (H = L, W = D), its valid token count and its hidden states' bytes.
func parseText(path string, b []byte) (ph pixelHeader, valid int, hidden []byte, err error) {
	ph, err = parseHeader(b, textMagic)
	if err != nil {
		return ph, 0, nil, fmt.Errorf("%s: %w", path, err)
	}
	if ph.c != 1 || ph.h <= 0 || ph.w <= 0 || len(b) != headerSize+4+ph.h*ph.w*ph.dtype.size()+4 {
		return ph, 0, nil, fmt.Errorf("%w: %s: size %d does not match %dx%d", ErrCache, path, len(b), ph.h, ph.w)
	}
	payload, err := checkPayload(path, b)
	if err != nil {
		return ph, 0, nil, err
	}
	valid = int(binary.LittleEndian.Uint32(payload))
	if valid > ph.h {
		return ph, 0, nil, fmt.Errorf("%w: %s: %d valid tokens of %d", ErrCache, path, valid, ph.h)
	}
	return ph, valid, payload[4:], nil
}

// TextEmbedBatch is the cached embeddings of a batch of captions.
type TextEmbedBatch struct {
	B, L, D int
	// Hidden is [B,L,D]; Mask is [B,L], 1 on real tokens and 0 on padding.
	Hidden, Mask []float32
	// Lengths are the real tokens per caption.
	Lengths []int
}

// Load reads the embeddings of captions. A caption EnsureTextEmbeds did not cover fails with
// ErrNotCached naming its file; an entry corrupted or rewritten by another job since fails
// with ErrCache.
func (c *TextEmbedCache) Load(captions []string) (*TextEmbedBatch, error) {
	if len(captions) == 0 {
		return nil, fmt.Errorf("%w: no captions", ErrInvalidConfig)
	}
	tb := &TextEmbedBatch{B: len(captions), L: c.maxLen, Mask: make([]float32, len(captions)*c.maxLen), Lengths: make([]int, len(captions))}
	var buf []byte
	for j, caption := range captions {
		var (
			valid, d int
			fill     func(dst []float32)
		)
		if c.mem != nil {
			e, ok := c.mem[caption]
			if !ok {
				return nil, fmt.Errorf("%w: text embedding of caption %q: EnsureTextEmbeds did not build it", ErrNotCached, caption)
			}
			valid, d = e.n, e.d
			fill = func(dst []float32) { copy(dst, e.hidden) }
		} else {
			path := textFile(c.dir, caption)
			// Hidden sizes up to 2^20 float32 values per token are accepted.
			b, err := readInto(path, &buf, headerSize+4+4*c.maxLen<<20+4)
			if errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("%w: text embedding of caption %q: %s is missing (the text cache was not built for it, or was deleted since)", ErrNotCached, caption, path)
			}
			if err != nil {
				return nil, fmt.Errorf("%w: %v", ErrCache, err)
			}
			ph, n, hidden, err := parseText(path, b)
			if err != nil {
				return nil, err
			}
			if ph.key != c.key(caption) || ph.h != c.maxLen {
				return nil, fmt.Errorf("%w: %s was rewritten since the text cache was built (another job with another text encoder or max length sharing the cache_dir?)", ErrCache, path)
			}
			valid, d = n, ph.w
			fill = func(dst []float32) { getElems(dst, ph.dtype, hidden) }
		}
		if tb.Hidden == nil {
			tb.D = d
			tb.Hidden = make([]float32, len(captions)*c.maxLen*d)
		} else if d != tb.D {
			return nil, fmt.Errorf("%w: text embedding of caption %q has width %d, the batch's %d", ErrCache, caption, d, tb.D)
		}
		n := c.maxLen * d
		fill(tb.Hidden[j*n : (j+1)*n])
		tb.Lengths[j] = valid
		for k := range valid {
			tb.Mask[j*c.maxLen+k] = 1
		}
	}
	return tb, nil
}
