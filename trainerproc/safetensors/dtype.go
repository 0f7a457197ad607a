// Package safetensors reads and writes the safetensors format: an 8-byte little-endian header
// length N, N bytes of JSON header (an optional "__metadata__" string map and one
// {dtype, shape, data_offsets} entry per tensor, padded with spaces to 8 bytes), then the raw
// little-endian tensor bytes. It is written from the format description, not from a binding,
// so that the trainer needs no cgo and so that every byte it trusts has been validated: the
// reader rejects anything the reference implementation would reject (and duplicate names,
// which it would silently accept), because a truncated or garbled weights file must never
// be loaded on resume.
//
// Checkpoints of billions of parameters must load without a second copy: Open (positioned
// reads), OpenMapped (a read-only mapping) and OpenSharded (a "*.safetensors.index.json" with
// lazily opened shards) all implement TensorSource, which reads one tensor at a time into a
// buffer the caller owns, converting F16/BF16/F64 to float32 (Float32Into) or to another
// compute precision (ConvertInto) on the way. Create and CreateSharded write the other way:
// the header is computed from the tensor list up front, each tensor's bytes are streamed to a
// temporary file in the target directory, and Commit fsyncs, renames and fsyncs the
// directory. Marshal and Unmarshal remain for small files held in memory.
package safetensors

import (
	"encoding/binary"
	"fmt"
	"math"
)

// DType is a safetensors element type, spelled as in the header ("F32", "BF16", ...).
type DType string

// The element types. The byte-sized and wider types of the format are all known to the
// reader (so that their sizes can be validated); conversions exist for the ones the trainer
// uses (F32, F16, BF16, F64, I64, I32, U8).
const (
	BOOL   DType = "BOOL"
	U8     DType = "U8"
	I8     DType = "I8"
	F8E5M2 DType = "F8_E5M2"
	F8E4M3 DType = "F8_E4M3"
	F8E8M0 DType = "F8_E8M0"
	I16    DType = "I16"
	U16    DType = "U16"
	F16    DType = "F16"
	BF16   DType = "BF16"
	I32    DType = "I32"
	U32    DType = "U32"
	F32    DType = "F32"
	C64    DType = "C64"
	F64    DType = "F64"
	I64    DType = "I64"
	U64    DType = "U64"
)

// dtypeInfo is the element size and the position of the type in the reference
// implementation's Dtype enum; the writer sorts by that position (descending) so that our
// files are byte-identical to the ones the Python library writes.
type dtypeInfo struct {
	size int
	rank int
}

// dtypeTable is read-only after package initialisation (a lookup table, not mutable state).
var dtypeTable = map[DType]dtypeInfo{
	BOOL:   {1, 0},
	U8:     {1, 4},
	I8:     {1, 5},
	F8E5M2: {1, 6},
	F8E4M3: {1, 7},
	F8E8M0: {1, 8},
	I16:    {2, 9},
	U16:    {2, 10},
	F16:    {2, 11},
	BF16:   {2, 12},
	I32:    {4, 13},
	U32:    {4, 14},
	F32:    {4, 15},
	C64:    {8, 16},
	F64:    {8, 17},
	I64:    {8, 18},
	U64:    {8, 19},
}

// Size is the number of bytes per element, or 0 for a type this package does not know.
func (d DType) Size() int { return dtypeTable[d].size }

// Known reports whether the reader and writer accept d.
func (d DType) Known() bool { _, ok := dtypeTable[d]; return ok }

// Float32ToBF16 converts f to bfloat16 with round-to-nearest-even, as torch does. NaN stays
// NaN (quietened, sign kept) instead of rounding into an infinity.
func Float32ToBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if f != f {
		return uint16(b>>16) | 0x0040
	}
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}

// BF16ToFloat32 widens a bfloat16 exactly.
func BF16ToFloat32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// Float32ToF16 converts f to IEEE half precision with round-to-nearest-even, producing
// subnormals, infinities on overflow and quiet NaNs.
func Float32ToF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23) & 0xff
	mant := b & 0x7fffff
	if exp == 0xff {
		if mant == 0 {
			return sign | 0x7c00
		}
		return sign | 0x7e00 | uint16(mant>>13)
	}
	e := exp - 127 + 15
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e <= 0 {
		if e < -10 {
			return sign
		}
		m := mant | 0x800000
		shift := uint(14 - e)
		half := uint32(1) << (shift - 1)
		r := m >> shift
		rem := m & (1<<shift - 1)
		if rem > half || (rem == half && r&1 == 1) {
			r++
		}
		return sign | uint16(r)
	}
	r := uint32(e)<<10 | mant>>13
	rem := mant & 0x1fff
	// A carry out of the mantissa increments the exponent, which is exactly right, and
	// turns the largest finite value into infinity when it rounds up.
	if rem > 0x1000 || (rem == 0x1000 && r&1 == 1) {
		r++
	}
	return sign | uint16(r)
}

// F16ToFloat32 widens an IEEE half exactly (subnormals included).
func F16ToFloat32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h & 0x3ff)
	switch {
	case exp == 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case exp == 0:
		if mant == 0 {
			return math.Float32frombits(sign)
		}
		e := uint32(127 - 15 + 1)
		for mant&0x400 == 0 {
			mant <<= 1
			e--
		}
		return math.Float32frombits(sign | e<<23 | (mant&0x3ff)<<13)
	default:
		return math.Float32frombits(sign | (exp+112)<<23 | mant<<13)
	}
}

// FromFloat32 builds a tensor of dtype dt (F32, F16, BF16 or F64) from float32 values.
// F32 and F64 are exact; F16 and BF16 round to nearest even.
func FromFloat32(name string, dt DType, shape []int, v []float32) (Tensor, error) {
	if err := checkCount(shape, len(v)); err != nil {
		return Tensor{}, fmt.Errorf("safetensors: tensor %q: %w", name, err)
	}
	var data []byte
	switch dt {
	case F32:
		data = make([]byte, 4*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(x))
		}
	case F64:
		data = make([]byte, 8*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint64(data[8*i:], math.Float64bits(float64(x)))
		}
	case F16, BF16:
		conv := Float32ToF16
		if dt == BF16 {
			conv = Float32ToBF16
		}
		data = make([]byte, 2*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint16(data[2*i:], conv(x))
		}
	default:
		return Tensor{}, fmt.Errorf("%w: tensor %q: no float32 conversion to %s", ErrUnsupported, name, dt)
	}
	return Tensor{Name: name, DType: dt, Shape: cloneShape(shape), Data: data}, nil
}

// FromFloat64 builds an F64 tensor (exact).
func FromFloat64(name string, shape []int, v []float64) (Tensor, error) {
	if err := checkCount(shape, len(v)); err != nil {
		return Tensor{}, fmt.Errorf("safetensors: tensor %q: %w", name, err)
	}
	data := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(data[8*i:], math.Float64bits(x))
	}
	return Tensor{Name: name, DType: F64, Shape: cloneShape(shape), Data: data}, nil
}

// FromInt64 builds an I64 tensor.
func FromInt64(name string, shape []int, v []int64) (Tensor, error) {
	if err := checkCount(shape, len(v)); err != nil {
		return Tensor{}, fmt.Errorf("safetensors: tensor %q: %w", name, err)
	}
	data := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(data[8*i:], uint64(x))
	}
	return Tensor{Name: name, DType: I64, Shape: cloneShape(shape), Data: data}, nil
}

// FromInt32 builds an I32 tensor.
func FromInt32(name string, shape []int, v []int32) (Tensor, error) {
	if err := checkCount(shape, len(v)); err != nil {
		return Tensor{}, fmt.Errorf("safetensors: tensor %q: %w", name, err)
	}
	data := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(data[4*i:], uint32(x))
	}
	return Tensor{Name: name, DType: I32, Shape: cloneShape(shape), Data: data}, nil
}

// FromUint8 builds a U8 tensor (the bytes are copied).
func FromUint8(name string, shape []int, v []uint8) (Tensor, error) {
	if err := checkCount(shape, len(v)); err != nil {
		return Tensor{}, fmt.Errorf("safetensors: tensor %q: %w", name, err)
	}
	return Tensor{Name: name, DType: U8, Shape: cloneShape(shape), Data: append([]byte(nil), v...)}, nil
}

// Materialize returns t with its bytes in Data: a tensor that fills them lazily (Fill) is
// filled into a new buffer; either way the size is checked against the dtype and shape.
func (t Tensor) Materialize() (Tensor, error) {
	if t.Data == nil && t.Fill != nil {
		size, err := byteSize(t.DType, t.Shape)
		if err != nil {
			return t, fmt.Errorf("tensor %q: %w", t.Name, err)
		}
		data := make([]byte, size)
		if err := t.Fill(data); err != nil {
			return t, fmt.Errorf("safetensors: produce tensor %q: %w", t.Name, err)
		}
		t.Data, t.Fill = data, nil
	}
	return t, t.check()
}

// Float32 decodes an F32, F16, BF16 or F64 tensor into float32 values. F64 is narrowed
// with Go's float64→float32 conversion (round to nearest even).
func (t Tensor) Float32() ([]float32, error) {
	t, err := t.Materialize()
	if err != nil {
		return nil, err
	}
	n := len(t.Data) / max(t.DType.Size(), 1)
	out := make([]float32, n)
	switch t.DType {
	case F32:
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(t.Data[4*i:]))
		}
	case F64:
		for i := range out {
			out[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(t.Data[8*i:])))
		}
	case F16:
		for i := range out {
			out[i] = F16ToFloat32(binary.LittleEndian.Uint16(t.Data[2*i:]))
		}
	case BF16:
		for i := range out {
			out[i] = BF16ToFloat32(binary.LittleEndian.Uint16(t.Data[2*i:]))
		}
	default:
		return nil, fmt.Errorf("%w: tensor %q: no float32 conversion from %s", ErrUnsupported, t.Name, t.DType)
	}
	return out, nil
}

// Float64 decodes an F64 tensor exactly (and F32/F16/BF16 by widening).
func (t Tensor) Float64() ([]float64, error) {
	if t.DType != F64 {
		f, err := t.Float32()
		if err != nil {
			return nil, err
		}
		out := make([]float64, len(f))
		for i, x := range f {
			out[i] = float64(x)
		}
		return out, nil
	}
	t, err := t.Materialize()
	if err != nil {
		return nil, err
	}
	out := make([]float64, len(t.Data)/8)
	for i := range out {
		out[i] = math.Float64frombits(binary.LittleEndian.Uint64(t.Data[8*i:]))
	}
	return out, nil
}

// Int64 decodes an I64 or I32 tensor.
func (t Tensor) Int64() ([]int64, error) {
	t, err := t.Materialize()
	if err != nil {
		return nil, err
	}
	switch t.DType {
	case I64:
		out := make([]int64, len(t.Data)/8)
		for i := range out {
			out[i] = int64(binary.LittleEndian.Uint64(t.Data[8*i:]))
		}
		return out, nil
	case I32:
		out := make([]int64, len(t.Data)/4)
		for i := range out {
			out[i] = int64(int32(binary.LittleEndian.Uint32(t.Data[4*i:])))
		}
		return out, nil
	}
	return nil, fmt.Errorf("%w: tensor %q: no int64 conversion from %s", ErrUnsupported, t.Name, t.DType)
}

// Int32 decodes an I32 tensor.
func (t Tensor) Int32() ([]int32, error) {
	t, err := t.Materialize()
	if err != nil {
		return nil, err
	}
	if t.DType != I32 {
		return nil, fmt.Errorf("%w: tensor %q: no int32 conversion from %s", ErrUnsupported, t.Name, t.DType)
	}
	out := make([]int32, len(t.Data)/4)
	for i := range out {
		out[i] = int32(binary.LittleEndian.Uint32(t.Data[4*i:]))
	}
	return out, nil
}

// Uint8 returns a copy of a U8 tensor's bytes.
func (t Tensor) Uint8() ([]uint8, error) {
	t, err := t.Materialize()
	if err != nil {
		return nil, err
	}
	if t.DType != U8 {
		return nil, fmt.Errorf("%w: tensor %q: no uint8 conversion from %s", ErrUnsupported, t.Name, t.DType)
	}
	return append([]uint8(nil), t.Data...), nil
}

func checkCount(shape []int, n int) error {
	numel, err := numElements(shape)
	if err != nil {
		return err
	}
	if numel != uint64(n) {
		return fmt.Errorf("%w: shape %v holds %d elements, got %d values", ErrInvalid, shape, numel, n)
	}
	return nil
}

// cloneShape copies s; a scalar's shape is an empty, non-nil slice, as the reader returns it.
func cloneShape(s []int) []int { return append([]int{}, s...) }
