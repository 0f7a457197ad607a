package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
	"slices"
	"sort"
	"strconv"
	"unicode/utf8"
)

// Sentinel errors. Every error this package returns wraps one of them, so callers can tell
// a damaged file (ErrCorrupt: quarantine it) from a caller mistake (ErrInvalid), a missing
// tensor (ErrNotFound) or a valid file using a type we cannot convert (ErrUnsupported).
var (
	ErrCorrupt     = errors.New("safetensors: corrupt file")
	ErrInvalid     = errors.New("safetensors: invalid tensor")
	ErrNotFound    = errors.New("safetensors: tensor not found")
	ErrUnsupported = errors.New("safetensors: unsupported")
)

// MaxHeaderSize bounds the JSON header, as the reference implementation does (100 MB), so
// that a garbage length prefix cannot make us allocate gigabytes.
const MaxHeaderSize = 100_000_000

// metadataKey is the reserved header key holding the free-form string map.
const metadataKey = "__metadata__"

// Tensor is one named tensor with its raw little-endian bytes.
type Tensor struct {
	Name  string
	DType DType
	Shape []int
	Data  []byte
	// Fill, when set and Data is nil, produces the bytes at write time into dst (exactly
	// the tensor's size). Write reuses one buffer for every such tensor, so a file of
	// gigabytes of weights (a 900M-parameter checkpoint) is written while holding one
	// tensor's bytes, not a second copy of the model.
	Fill func(dst []byte) error
}

// TensorInfo describes one tensor of a parsed header. Begin and End are byte offsets
// relative to the start of the data section, as in the file.
type TensorInfo struct {
	Name  string
	DType DType
	Shape []int
	Begin int64
	End   int64
}

// Header is a validated safetensors header.
type Header struct {
	// Metadata is the "__metadata__" map; nil when the file has none.
	Metadata map[string]string
	// Tensors in data order (ascending offsets).
	Tensors []TensorInfo
	// DataStart is the absolute file offset of the data section (8 + header length).
	DataStart int64
}

// numElements multiplies the dimensions, failing on negative dimensions and on overflow
// (a header claiming 2^40 × 2^40 elements must not wrap around to a small size).
func numElements(shape []int) (uint64, error) {
	n := uint64(1)
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("%w: negative dimension in shape %v", ErrInvalid, shape)
		}
		hi, lo := bits.Mul64(n, uint64(d))
		if hi != 0 {
			return 0, fmt.Errorf("%w: shape %v overflows", ErrInvalid, shape)
		}
		n = lo
	}
	return n, nil
}

func byteSize(dt DType, shape []int) (uint64, error) {
	info, ok := dtypeTable[dt]
	if !ok {
		return 0, fmt.Errorf("%w: dtype %q", ErrUnsupported, dt)
	}
	n, err := numElements(shape)
	if err != nil {
		return 0, err
	}
	hi, lo := bits.Mul64(n, uint64(info.size))
	if hi != 0 || lo > math.MaxInt64 {
		return 0, fmt.Errorf("%w: shape %v of %s overflows", ErrInvalid, shape, dt)
	}
	return lo, nil
}

// check verifies that the data length matches shape × dtype.
func (t Tensor) check() error {
	want, err := byteSize(t.DType, t.Shape)
	if err != nil {
		return fmt.Errorf("tensor %q: %w", t.Name, err)
	}
	if t.Data == nil && t.Fill != nil {
		return nil
	}
	if uint64(len(t.Data)) != want {
		return fmt.Errorf("%w: tensor %q: %s%v needs %d bytes, has %d", ErrInvalid, t.Name, t.DType, t.Shape, want, len(t.Data))
	}
	return nil
}

// sortForWrite orders tensors as the reference writer does: descending dtype (its enum
// order, which puts wide types first so every tensor stays aligned), then by name.
func sortForWrite(ts []Spec) []Spec {
	out := slices.Clone(ts)
	sort.SliceStable(out, func(i, j int) bool {
		ri, rj := dtypeTable[out[i].DType].rank, dtypeTable[out[j].DType].rank
		if ri != rj {
			return ri > rj
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// appendJSONString appends s as a JSON string without HTML escaping, as serde_json writes
// it, so headers match the Python library byte for byte for ordinary names.
func appendJSONString(b []byte, s string) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return append(b, bytes.TrimRight(buf.Bytes(), "\n")...)
}

// EncodeHeader returns the length prefix plus the padded JSON header for tensors (in the
// order Write will store them) and that order.
func EncodeHeader(tensors []Tensor, metadata map[string]string) ([]byte, []Tensor, error) {
	specs := make([]Spec, len(tensors))
	for i, t := range tensors {
		if err := t.check(); err != nil {
			return nil, nil, err
		}
		specs[i] = Spec{Name: t.Name, DType: t.DType, Shape: t.Shape}
	}
	head, layout, err := encodeSpecs(specs, metadata)
	if err != nil {
		return nil, nil, err
	}
	byName := make(map[string]Tensor, len(tensors))
	for _, t := range tensors {
		byName[t.Name] = t
	}
	ordered := make([]Tensor, len(layout))
	for i, ti := range layout {
		ordered[i] = byName[ti.Name]
	}
	return head, ordered, nil
}

// encodeSpecs validates the tensor descriptions and returns the length prefix plus padded
// JSON header, and the layout (file order, offsets relative to the data section).
func encodeSpecs(specs []Spec, metadata map[string]string) ([]byte, []TensorInfo, error) {
	seen := make(map[string]bool, len(specs))
	for _, t := range specs {
		if t.Name == metadataKey {
			return nil, nil, fmt.Errorf("%w: tensor name %q is reserved", ErrInvalid, t.Name)
		}
		if !utf8.ValidString(t.Name) {
			return nil, nil, fmt.Errorf("%w: tensor name %q is not UTF-8", ErrInvalid, t.Name)
		}
		if seen[t.Name] {
			return nil, nil, fmt.Errorf("%w: duplicate tensor name %q", ErrInvalid, t.Name)
		}
		seen[t.Name] = true
		if _, err := byteSize(t.DType, t.Shape); err != nil {
			return nil, nil, fmt.Errorf("tensor %q: %w", t.Name, err)
		}
	}
	for k, v := range metadata {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return nil, nil, fmt.Errorf("%w: metadata %q is not UTF-8", ErrInvalid, k)
		}
	}
	ordered := sortForWrite(specs)

	h := make([]byte, 0, 64+96*len(ordered))
	h = append(h, '{')
	first := true
	if metadata != nil {
		h = appendJSONString(h, metadataKey)
		h = append(h, ':', '{')
		keys := make([]string, 0, len(metadata))
		for k := range metadata {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for i, k := range keys {
			if i > 0 {
				h = append(h, ',')
			}
			h = appendJSONString(h, k)
			h = append(h, ':')
			h = appendJSONString(h, metadata[k])
		}
		h = append(h, '}')
		first = false
	}
	layout := make([]TensorInfo, len(ordered))
	var off uint64
	for i, t := range ordered {
		if !first {
			h = append(h, ',')
		}
		first = false
		h = appendJSONString(h, t.Name)
		h = append(h, `:{"dtype":`...)
		h = appendJSONString(h, string(t.DType))
		h = append(h, `,"shape":[`...)
		for i, d := range t.Shape {
			if i > 0 {
				h = append(h, ',')
			}
			h = strconv.AppendInt(h, int64(d), 10)
		}
		h = append(h, `],"data_offsets":[`...)
		h = strconv.AppendUint(h, off, 10)
		h = append(h, ',')
		size, _ := byteSize(t.DType, t.Shape) // checked above
		begin := off
		off += size
		if off > math.MaxInt64 || off < begin {
			return nil, nil, fmt.Errorf("%w: total data size overflows", ErrInvalid)
		}
		h = strconv.AppendUint(h, off, 10)
		h = append(h, ']', '}')
		layout[i] = TensorInfo{Name: t.Name, DType: t.DType, Shape: cloneShape(t.Shape), Begin: int64(begin), End: int64(off)}
	}
	h = append(h, '}')
	for len(h)%8 != 0 {
		h = append(h, ' ')
	}
	if len(h) > MaxHeaderSize {
		return nil, nil, fmt.Errorf("%w: header of %d bytes exceeds %d", ErrInvalid, len(h), MaxHeaderSize)
	}
	out := make([]byte, 8, 8+len(h))
	binary.LittleEndian.PutUint64(out, uint64(len(h)))
	return append(out, h...), layout, nil
}

// Write streams a safetensors file to w: the header, then each tensor's bytes in file
// order, without assembling the file in memory. metadata may be nil (no "__metadata__"
// entry). It returns the number of bytes written.
func Write(w io.Writer, tensors []Tensor, metadata map[string]string) (int64, error) {
	head, ordered, err := EncodeHeader(tensors, metadata)
	if err != nil {
		return 0, err
	}
	n, err := w.Write(head)
	total := int64(n)
	if err != nil {
		return total, fmt.Errorf("safetensors: write header: %w", err)
	}
	var buf []byte // reused by the tensors that Fill their bytes
	for _, t := range ordered {
		data := t.Data
		if data == nil && t.Fill != nil {
			size, _ := byteSize(t.DType, t.Shape) // checked by EncodeHeader
			if uint64(cap(buf)) < size {
				buf = make([]byte, size)
			}
			data = buf[:size]
			if err := t.Fill(data); err != nil {
				return total, fmt.Errorf("safetensors: produce tensor %q: %w", t.Name, err)
			}
		}
		n, err := w.Write(data)
		total += int64(n)
		if err != nil {
			return total, fmt.Errorf("safetensors: write tensor %q: %w", t.Name, err)
		}
	}
	return total, nil
}

// Marshal returns the whole file in memory (for tests and small files).
func Marshal(tensors []Tensor, metadata map[string]string) ([]byte, error) {
	var buf bytes.Buffer
	if _, err := Write(&buf, tensors, metadata); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func corruptf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, args...)...)
}

// ReadHeader reads and validates the header of a file of the given total size: the length
// bound, valid UTF-8 JSON with nothing but whitespace after it, no duplicate keys, known
// dtypes, offsets that are contiguous from 0 with no overlap and end exactly at the end of
// the file (so a truncated or extended file is caught), and shape × dtype == byte length.
func ReadHeader(r io.ReaderAt, size int64) (*Header, error) {
	if size < 8 {
		return nil, corruptf("file of %d bytes is shorter than the 8-byte length prefix", size)
	}
	var pre [8]byte
	if _, err := r.ReadAt(pre[:], 0); err != nil {
		return nil, fmt.Errorf("%w: read length prefix: %w", ErrCorrupt, err)
	}
	n := binary.LittleEndian.Uint64(pre[:])
	if n > MaxHeaderSize {
		return nil, corruptf("header length %d exceeds %d", n, MaxHeaderSize)
	}
	if n > uint64(size-8) {
		return nil, corruptf("header length %d runs past the end of a %d-byte file (truncated?)", n, size)
	}
	raw := make([]byte, n)
	if _, err := r.ReadAt(raw, 8); err != nil {
		return nil, fmt.Errorf("%w: read header: %w", ErrCorrupt, err)
	}
	h, err := parseHeader(raw)
	if err != nil {
		return nil, err
	}
	h.DataStart = 8 + int64(n)
	if err := validateLayout(h, size-h.DataStart); err != nil {
		return nil, err
	}
	return h, nil
}

func parseHeader(raw []byte) (*Header, error) {
	if len(raw) == 0 || raw[0] != '{' {
		return nil, corruptf("header does not start with '{'")
	}
	if !utf8.Valid(raw) {
		return nil, corruptf("header is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("%w: header JSON: %w", ErrCorrupt, err)
	}
	h := &Header{}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("%w: header JSON: %w", ErrCorrupt, err)
		}
		key, ok := tok.(string)
		if !ok {
			return nil, corruptf("header key is not a string")
		}
		if seen[key] {
			return nil, corruptf("duplicate header key %q", key)
		}
		seen[key] = true
		if key == metadataKey {
			m, err := parseMetadata(dec)
			if err != nil {
				return nil, err
			}
			h.Metadata = m
			continue
		}
		ti, err := parseTensorInfo(dec, key)
		if err != nil {
			return nil, err
		}
		h.Tensors = append(h.Tensors, ti)
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return nil, fmt.Errorf("%w: header JSON: %w", ErrCorrupt, err)
	}
	for _, c := range raw[dec.InputOffset():] {
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return nil, corruptf("trailing bytes after the header JSON")
		}
	}
	return h, nil
}

func expectDelim(dec *json.Decoder, want json.Delim, what string) error {
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrCorrupt, what, err)
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		return corruptf("%s: expected %q", what, string(want))
	}
	return nil
}

func parseMetadata(dec *json.Decoder) (map[string]string, error) {
	if err := expectDelim(dec, '{', "__metadata__"); err != nil {
		return nil, err
	}
	m := map[string]string{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("%w: __metadata__: %w", ErrCorrupt, err)
		}
		k, _ := tok.(string)
		if _, dup := m[k]; dup {
			return nil, corruptf("__metadata__: duplicate key %q", k)
		}
		tok, err = dec.Token()
		if err != nil {
			return nil, fmt.Errorf("%w: __metadata__: %w", ErrCorrupt, err)
		}
		v, ok := tok.(string)
		if !ok {
			return nil, corruptf("__metadata__[%q] is not a string", k)
		}
		m[k] = v
	}
	if err := expectDelim(dec, '}', "__metadata__"); err != nil {
		return nil, err
	}
	return m, nil
}

func parseUint(tok json.Token, what string) (uint64, error) {
	num, ok := tok.(json.Number)
	if !ok {
		return 0, corruptf("%s is not a number", what)
	}
	v, err := strconv.ParseUint(string(num), 10, 64)
	if err != nil {
		return 0, corruptf("%s %q is not a non-negative integer", what, string(num))
	}
	return v, nil
}

func parseUintArray(dec *json.Decoder, what string) ([]uint64, error) {
	if err := expectDelim(dec, '[', what); err != nil {
		return nil, err
	}
	var out []uint64
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrCorrupt, what, err)
		}
		v, err := parseUint(tok, what)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	if err := expectDelim(dec, ']', what); err != nil {
		return nil, err
	}
	return out, nil
}

func parseTensorInfo(dec *json.Decoder, name string) (TensorInfo, error) {
	what := fmt.Sprintf("tensor %q", name)
	if err := expectDelim(dec, '{', what); err != nil {
		return TensorInfo{}, err
	}
	ti := TensorInfo{Name: name}
	var haveDT, haveShape, haveOff bool
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return TensorInfo{}, fmt.Errorf("%w: %s: %w", ErrCorrupt, what, err)
		}
		field, _ := tok.(string)
		switch field {
		case "dtype":
			if haveDT {
				return TensorInfo{}, corruptf("%s: duplicate dtype", what)
			}
			haveDT = true
			tok, err := dec.Token()
			if err != nil {
				return TensorInfo{}, fmt.Errorf("%w: %s: %w", ErrCorrupt, what, err)
			}
			s, ok := tok.(string)
			if !ok {
				return TensorInfo{}, corruptf("%s: dtype is not a string", what)
			}
			ti.DType = DType(s)
			if !ti.DType.Known() {
				return TensorInfo{}, fmt.Errorf("%w: %s: unknown dtype %q", ErrCorrupt, what, s)
			}
		case "shape":
			if haveShape {
				return TensorInfo{}, corruptf("%s: duplicate shape", what)
			}
			haveShape = true
			dims, err := parseUintArray(dec, what+" shape")
			if err != nil {
				return TensorInfo{}, err
			}
			ti.Shape = make([]int, len(dims))
			for i, d := range dims {
				if d > math.MaxInt64 {
					return TensorInfo{}, corruptf("%s: dimension %d too large", what, d)
				}
				ti.Shape[i] = int(d)
			}
		case "data_offsets":
			if haveOff {
				return TensorInfo{}, corruptf("%s: duplicate data_offsets", what)
			}
			haveOff = true
			off, err := parseUintArray(dec, what+" data_offsets")
			if err != nil {
				return TensorInfo{}, err
			}
			if len(off) != 2 {
				return TensorInfo{}, corruptf("%s: data_offsets has %d entries, want 2", what, len(off))
			}
			if off[0] > math.MaxInt64 || off[1] > math.MaxInt64 {
				return TensorInfo{}, corruptf("%s: data_offsets out of range", what)
			}
			ti.Begin, ti.End = int64(off[0]), int64(off[1])
		default:
			// Unknown fields are ignored, as the reference implementation ignores them;
			// skipping the value still validates its JSON syntax.
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return TensorInfo{}, fmt.Errorf("%w: %s: %w", ErrCorrupt, what, err)
			}
		}
	}
	if err := expectDelim(dec, '}', what); err != nil {
		return TensorInfo{}, err
	}
	if !haveDT || !haveShape || !haveOff {
		return TensorInfo{}, corruptf("%s: needs dtype, shape and data_offsets", what)
	}
	return ti, nil
}

// validateLayout sorts the tensors by offset and checks contiguity, sizes and that the
// data section is exactly covered.
func validateLayout(h *Header, dataLen int64) error {
	sort.SliceStable(h.Tensors, func(i, j int) bool {
		a, b := h.Tensors[i], h.Tensors[j]
		if a.Begin != b.Begin {
			return a.Begin < b.Begin
		}
		return a.End < b.End
	})
	var end int64
	for _, t := range h.Tensors {
		if t.Begin != end {
			if t.Begin < end {
				return corruptf("tensor %q at [%d,%d) overlaps the previous tensor ending at %d", t.Name, t.Begin, t.End, end)
			}
			return corruptf("gap before tensor %q: it starts at %d, previous data ends at %d", t.Name, t.Begin, end)
		}
		if t.End < t.Begin {
			return corruptf("tensor %q: data_offsets [%d,%d) are reversed", t.Name, t.Begin, t.End)
		}
		want, err := byteSize(t.DType, t.Shape)
		if err != nil {
			return fmt.Errorf("%w: tensor %q: %w", ErrCorrupt, t.Name, err)
		}
		if uint64(t.End-t.Begin) != want {
			return corruptf("tensor %q: %s%v needs %d bytes, data_offsets span %d", t.Name, t.DType, t.Shape, want, t.End-t.Begin)
		}
		end = t.End
	}
	if end != dataLen {
		if end > dataLen {
			return corruptf("tensor data ends at %d but the file holds only %d data bytes (truncated)", end, dataLen)
		}
		return corruptf("%d unexpected bytes after the last tensor", dataLen-end)
	}
	return nil
}

// Reader gives access to the tensors of a validated file.
type Reader struct {
	r      io.ReaderAt
	header *Header
	index  map[string]int
}

// NewReader validates the header of r (of total size bytes) and returns a Reader.
func NewReader(r io.ReaderAt, size int64) (*Reader, error) {
	h, err := ReadHeader(r, size)
	if err != nil {
		return nil, err
	}
	idx := make(map[string]int, len(h.Tensors))
	for i, t := range h.Tensors {
		idx[t.Name] = i
	}
	return &Reader{r: r, header: h, index: idx}, nil
}

// Header returns the validated header (shared; do not modify).
func (r *Reader) Header() *Header { return r.header }

// Metadata returns the "__metadata__" map (nil when absent).
func (r *Reader) Metadata() map[string]string { return r.header.Metadata }

// Names lists the tensor names in data order.
func (r *Reader) Names() []string {
	out := make([]string, len(r.header.Tensors))
	for i, t := range r.header.Tensors {
		out[i] = t.Name
	}
	return out
}

// Info describes one tensor without reading it.
func (r *Reader) Info(name string) (TensorInfo, bool) {
	i, ok := r.index[name]
	if !ok {
		return TensorInfo{}, false
	}
	return r.header.Tensors[i], true
}

// Tensor reads one tensor's bytes.
func (r *Reader) Tensor(name string) (Tensor, error) {
	ti, ok := r.Info(name)
	if !ok {
		return Tensor{}, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	data := make([]byte, ti.End-ti.Begin)
	if len(data) > 0 {
		if _, err := r.r.ReadAt(data, r.header.DataStart+ti.Begin); err != nil {
			return Tensor{}, fmt.Errorf("%w: read tensor %q: %w", ErrCorrupt, name, err)
		}
	}
	return Tensor{Name: ti.Name, DType: ti.DType, Shape: slices.Clone(ti.Shape), Data: data}, nil
}

// All reads every tensor, in data order.
func (r *Reader) All() ([]Tensor, error) {
	out := make([]Tensor, 0, len(r.header.Tensors))
	for _, ti := range r.header.Tensors {
		t, err := r.Tensor(ti.Name)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// Unmarshal parses a whole file held in memory.
func Unmarshal(b []byte) ([]Tensor, map[string]string, error) {
	r, err := NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return nil, nil, err
	}
	ts, err := r.All()
	if err != nil {
		return nil, nil, err
	}
	return ts, r.Metadata(), nil
}

// File is a Reader over an open file.
type File struct {
	*Reader
	f *os.File
}

// Open opens and validates a safetensors file on disk.
func Open(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	r, err := NewReader(f, st.Size())
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &File{Reader: r, f: f}, nil
}

// Close closes the underlying file.
func (f *File) Close() error { return f.f.Close() }
