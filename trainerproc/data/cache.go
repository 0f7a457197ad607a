package data

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
)

// DType is the element type of cached pixel tensors.
type DType uint16

// Cache element types. Float16 halves the cache; pixel values in [-1, 1] lose at most about
// 1/2048 of precision, below the 1/255 step of 8-bit source images.
const (
	Float32 DType = 0
	Float16 DType = 1
)

func (d DType) size() int {
	if d == Float16 {
		return 2
	}
	return 4
}

// Cache file formats. Every entry is one file (little endian):
//
//	magic | u16 version (1) | u16 dtype | u32 C | u32 H | u32 W | [32]byte key |
//	payload | u32 CRC-32C of the payload
//
// The key is the SHA-256 of everything the entry depends on; a file whose key differs from
// the expected one is stale and gets rewritten. Pixel, latent and text-embedding files are
// named after what the entry is for (the dataset id and the source's relative path, or the
// caption), not after the key, so a changed source, setting or encoder replaces the old entry
// instead of leaving garbage behind; the consequence is that one cache directory serves one
// VAE or text encoder at a time (as SimpleTuner's per-model cache directories do). Token
// files (tiny) are named after their key. Entries are
// written to a temporary file and renamed (writeAtomic), so a reader, another job included,
// sees a whole old entry or a whole new one, never a torn one; two jobs writing the same
// entry both write a valid file and the last rename wins. A corrupt entry (bad CRC, short
// file) is rebuilt, never used.
//
//   - Pixels, magic "STPX": C*H*W elements (float32 or IEEE float16), a CHW tensor in
//     [-1, 1]. Key: pixelParams.
//   - Tokens, magic "STTK": dtype 0, C=1, H=1, W=L, then L int32 ids. Key: tokenizer version,
//     L and caption.
//   - Latents, magic "STLT": C, H, W of the latent; the payload is the VAE posterior, the
//     mean [C,H,W] followed by the log-variance [C,H,W] (float32 or float16), so training
//     draws a fresh sample mean + exp(logvar/2)·ε at every step. Key: latentParams (image
//     content hash, geometry, VAE identity, dtype). See latents.go.
//   - Text embeddings, magic "STTE": C=1, H=L (max length), W=D (hidden size); the payload is
//     a u32 count N of valid tokens (the attention mask is the first N positions: the
//     encoders pad on the right) followed by the hidden states [L,D] (float32 or float16).
//     Key: encoder identity, max length and caption. See textembeds.go.
const (
	pixelMagic   = "STPX"
	tokenMagic   = "STTK"
	latentMagic  = "STLT"
	textMagic    = "STTE"
	cacheVersion = 1
	headerSize   = 4 + 2 + 2 + 4 + 4 + 4 + 32
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// keyOf hashes a value's canonical JSON encoding (struct fields encode in declaration order).
func keyOf(v any) [32]byte {
	b, err := json.Marshal(v)
	if err != nil {
		// Only plain structs of strings and numbers are hashed; this cannot happen.
		panic(err)
	}
	return sha256.Sum256(b)
}

// cacheName is the file name for an entry identified by parts.
func cacheName(ext string, parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16]) + ext
}

func writeHeader(b []byte, magic string, dtype DType, c, h, w int, key [32]byte) {
	copy(b, magic)
	binary.LittleEndian.PutUint16(b[4:], cacheVersion)
	binary.LittleEndian.PutUint16(b[6:], uint16(dtype))
	binary.LittleEndian.PutUint32(b[8:], uint32(c))
	binary.LittleEndian.PutUint32(b[12:], uint32(h))
	binary.LittleEndian.PutUint32(b[16:], uint32(w))
	copy(b[20:52], key[:])
}

// writeAtomic writes data to path through a temporary file and a rename, so a crash never
// leaves a half-written entry under the final name. Unlike internal/atomicfile it does not fsync: a
// cache entry lost to a power cut is rebuilt from its image, and an fsync per entry would
// slow the caching of many small files.
func writeAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("%w: %v", ErrCache, err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return fmt.Errorf("%w: %v", ErrCache, err)
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	cerr := f.Close()
	if werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp, path)
	}
	if werr != nil {
		os.Remove(tmp)
		return fmt.Errorf("%w: writing %s: %v", ErrCache, path, werr)
	}
	return nil
}

// encodePixels serialises a CHW tensor.
func encodePixels(key [32]byte, dtype DType, c, h, w int, data []float32) []byte {
	return encodeEntry(pixelMagic, key, dtype, c, h, w, nil, data)
}

// encodeEntry serialises an entry whose payload is prefix followed by the elements of every
// slice of data, in order, as dtype; it appends the payload's CRC.
func encodeEntry(magic string, key [32]byte, dtype DType, c, h, w int, prefix []byte, data ...[]float32) []byte {
	n := 0
	for _, d := range data {
		n += len(d)
	}
	b := make([]byte, headerSize+len(prefix)+n*dtype.size()+4)
	writeHeader(b, magic, dtype, c, h, w, key)
	payload := b[headerSize : len(b)-4]
	copy(payload, prefix)
	elems := payload[len(prefix):]
	for _, d := range data {
		putElems(elems, dtype, d)
		elems = elems[len(d)*dtype.size():]
	}
	binary.LittleEndian.PutUint32(b[len(b)-4:], crc32.Checksum(payload, castagnoli))
	return b
}

// putElems writes src into b as dtype elements.
func putElems(b []byte, dtype DType, src []float32) {
	if dtype == Float16 {
		for i, v := range src {
			binary.LittleEndian.PutUint16(b[2*i:], f32to16(v))
		}
		return
	}
	for i, v := range src {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
}

// getElems reads len(dst) dtype elements from b.
func getElems(dst []float32, dtype DType, b []byte) {
	if dtype == Float16 {
		for i := range dst {
			dst[i] = f16to32(binary.LittleEndian.Uint16(b[2*i:]))
		}
		return
	}
	for i := range dst {
		dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
}

// checkPayload verifies the CRC of a whole entry b and returns its payload.
func checkPayload(path string, b []byte) ([]byte, error) {
	if len(b) < headerSize+4 {
		return nil, fmt.Errorf("%w: %s: truncated entry", ErrCache, path)
	}
	payload := b[headerSize : len(b)-4]
	if crc32.Checksum(payload, castagnoli) != binary.LittleEndian.Uint32(b[len(b)-4:]) {
		return nil, fmt.Errorf("%w: %s: checksum mismatch", ErrCache, path)
	}
	return payload, nil
}

// pixelHeader is the decoded header of a pixel cache file.
type pixelHeader struct {
	dtype   DType
	c, h, w int
	key     [32]byte
}

func parseHeader(b []byte, magic string) (pixelHeader, error) {
	var ph pixelHeader
	if len(b) < headerSize || string(b[:4]) != magic {
		return ph, fmt.Errorf("%w: bad magic", ErrCache)
	}
	if v := binary.LittleEndian.Uint16(b[4:]); v != cacheVersion {
		return ph, fmt.Errorf("%w: version %d", ErrCache, v)
	}
	ph.dtype = DType(binary.LittleEndian.Uint16(b[6:]))
	if ph.dtype != Float32 && ph.dtype != Float16 {
		return ph, fmt.Errorf("%w: dtype %d", ErrCache, ph.dtype)
	}
	ph.c = int(binary.LittleEndian.Uint32(b[8:]))
	ph.h = int(binary.LittleEndian.Uint32(b[12:]))
	ph.w = int(binary.LittleEndian.Uint32(b[16:]))
	copy(ph.key[:], b[20:52])
	return ph, nil
}

// probePixels reports whether path holds a valid entry for key. It reads and checksums the
// whole entry (small at training resolutions), so a corrupt file is recomputed at startup
// instead of failing a batch mid-run.
func probePixels(path string, key [32]byte, dtype DType, c, h, w int) bool {
	ph, err := readHeaderOnly(path)
	if err != nil || ph.key != key || ph.dtype != dtype || ph.c != c || ph.h != h || ph.w != w {
		return false
	}
	var buf []byte
	return readPixels(path, key, make([]float32, c*h*w), &buf) == nil
}

func readHeaderOnly(path string) (pixelHeader, error) {
	f, err := os.Open(path)
	if err != nil {
		return pixelHeader{}, err
	}
	defer f.Close()
	var hb [headerSize]byte
	if _, err := io.ReadFull(f, hb[:]); err != nil {
		return pixelHeader{}, err
	}
	return parseHeader(hb[:], pixelMagic)
}

// readPixels loads the entry at path into dst (length C*H*W), using *buf as scratch space so
// that steady-state batch loading does not allocate.
func readPixels(path string, key [32]byte, dst []float32, buf *[]byte) error {
	b, err := readInto(path, buf, headerSize+4+4*len(dst))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrCache, err)
	}
	size := len(b)
	ph, err := parseHeader(b, pixelMagic)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	n := ph.c * ph.h * ph.w
	if ph.key != key || n != len(dst) || size != headerSize+n*ph.dtype.size()+4 {
		return fmt.Errorf("%w: %s: entry does not match the dataset (changed since startup?)", ErrCache, path)
	}
	payload, err := checkPayload(path, b)
	if err != nil {
		return err
	}
	getElems(dst, ph.dtype, payload)
	return nil
}

// encodeTokens serialises a token entry (format above).
func encodeTokens(key [32]byte, ids []int32) []byte {
	b := make([]byte, headerSize+4*len(ids)+4)
	writeHeader(b, tokenMagic, Float32, 1, 1, len(ids), key)
	payload := b[headerSize : len(b)-4]
	for i, v := range ids {
		binary.LittleEndian.PutUint32(payload[4*i:], uint32(v))
	}
	binary.LittleEndian.PutUint32(b[len(b)-4:], crc32.Checksum(payload, castagnoli))
	return b
}

func readTokens(path string, key [32]byte, l int) ([]int32, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	ph, err := parseHeader(b, tokenMagic)
	if err != nil {
		return nil, err
	}
	if ph.key != key || ph.w != l || len(b) != headerSize+4*l+4 {
		return nil, fmt.Errorf("%w: %s: stale token entry", ErrCache, path)
	}
	payload, err := checkPayload(path, b)
	if err != nil {
		return nil, err
	}
	ids := make([]int32, l)
	for i := range ids {
		ids[i] = int32(binary.LittleEndian.Uint32(payload[4*i:]))
		if ids[i] < 0 || ids[i] >= VocabSize {
			return nil, fmt.Errorf("%w: %s: token id %d out of range", ErrCache, path, ids[i])
		}
	}
	return ids, nil
}

// f32to16 converts to IEEE 754 half precision, rounding to nearest even.
func f32to16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int((b >> 23) & 0xff)
	mant := b & 0x7fffff
	switch {
	case exp == 0xff: // Inf or NaN
		if mant != 0 {
			return sign | 0x7e00
		}
		return sign | 0x7c00
	case exp-127 > 15:
		return sign | 0x7c00
	case exp-127 >= -14:
		e := uint32(exp - 127 + 15)
		m := mant >> 13
		rest := mant & 0x1fff
		v := e<<10 | m
		if rest > 0x1000 || (rest == 0x1000 && m&1 == 1) {
			v++ // may carry into the exponent, which is the correct rounding
		}
		return sign | uint16(v)
	case exp-127 >= -25:
		// Subnormal half.
		mant |= 0x800000
		shift := uint32(-(exp - 127) - 14 + 13)
		m := mant >> shift
		rest := mant & (1<<shift - 1)
		half := uint32(1) << (shift - 1)
		if rest > half || (rest == half && m&1 == 1) {
			m++
		}
		return sign | uint16(m)
	}
	return sign
}

// f16to32 converts IEEE 754 half precision to float32 exactly.
func f16to32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h & 0x3ff)
	switch exp {
	case 0:
		if mant == 0 {
			return math.Float32frombits(sign)
		}
		f := float32(mant) / (1 << 24)
		if sign != 0 {
			return -f
		}
		return f
	case 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	}
	return math.Float32frombits(sign | (exp+112)<<23 | mant<<13)
}
