package safetensors

import (
	"encoding/binary"
	"fmt"
	"math"
)

// chunkBytes is how much raw data the converting readers stage at a time: large enough to
// amortise the read calls, small enough that converting a multi-gigabyte tensor never holds
// a second full copy of it.
const chunkBytes = 256 << 10

// TensorSource is what a loader needs from a checkpoint, whether it is one file, a memory
// mapping or a set of shards: the names, the description of each tensor, and reads of one
// tensor at a time into memory the caller owns.
type TensorSource interface {
	// Names lists the tensor names.
	Names() []string
	// Info describes one tensor without reading it.
	Info(name string) (TensorInfo, bool)
	// ReadInto copies a tensor's raw little-endian bytes into dst, whose length must be the
	// tensor's byte size.
	ReadInto(name string, dst []byte) error
	// Float32Into decodes a float tensor (F32, F16, BF16 or F64) into dst, whose length must
	// be the tensor's element count.
	Float32Into(name string, dst []float32) error
}

// Numel is the element count of the tensor (1 for a scalar).
func (ti TensorInfo) Numel() int {
	n, _ := numElements(ti.Shape) // validated when the header was read
	return int(n)
}

// Size is the tensor's byte length on disk.
func (ti TensorInfo) Size() int64 { return ti.End - ti.Begin }

// lookup returns the info of name or an ErrNotFound error.
func (r *Reader) lookup(name string) (TensorInfo, error) {
	ti, ok := r.Info(name)
	if !ok {
		return TensorInfo{}, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	return ti, nil
}

// ReadInto copies the raw bytes of one tensor into dst with a positioned read, so that
// loading a model needs no buffer beyond the one the caller keeps.
func (r *Reader) ReadInto(name string, dst []byte) error {
	ti, err := r.lookup(name)
	if err != nil {
		return err
	}
	if int64(len(dst)) != ti.Size() {
		return fmt.Errorf("%w: tensor %q needs a %d-byte buffer, got %d", ErrInvalid, name, ti.Size(), len(dst))
	}
	if len(dst) == 0 {
		return nil
	}
	if _, err := r.r.ReadAt(dst, r.header.DataStart+ti.Begin); err != nil {
		return fmt.Errorf("%w: read tensor %q: %w", ErrCorrupt, name, err)
	}
	return nil
}

// float32Target finds the float tensor name and checks dst can hold it decoded.
func (r *Reader) float32Target(name string, dst []float32) (TensorInfo, error) {
	ti, err := r.lookup(name)
	if err != nil {
		return ti, err
	}
	if len(dst) != ti.Numel() {
		return ti, fmt.Errorf("%w: tensor %q has %d elements, buffer holds %d", ErrInvalid, name, ti.Numel(), len(dst))
	}
	if !floatType(ti.DType) {
		return ti, fmt.Errorf("%w: tensor %q: no float32 conversion from %s", ErrUnsupported, name, ti.DType)
	}
	return ti, nil
}

// Float32Into decodes one float tensor into dst, converting F16, BF16 and F64 on the fly a
// chunk at a time, so no raw copy of the whole tensor is ever held.
func (r *Reader) Float32Into(name string, dst []float32) error {
	ti, err := r.float32Target(name, dst)
	if err != nil {
		return err
	}
	if ti.DType == F32 && len(dst) > 0 && nativeLittleEndian() {
		// F32 on a little-endian host: read straight into the destination's bytes.
		return r.ReadInto(name, float32Bytes(dst))
	}
	es := ti.DType.Size()
	perChunk := max(chunkBytes/es, 1)
	buf := make([]byte, min(len(dst), perChunk)*es)
	off := r.header.DataStart + ti.Begin
	for done := 0; done < len(dst); {
		n := min(len(dst)-done, perChunk)
		raw := buf[:n*es]
		if _, err := r.r.ReadAt(raw, off); err != nil {
			return fmt.Errorf("%w: read tensor %q: %w", ErrCorrupt, name, err)
		}
		decodeFloat32(ti.DType, raw, dst[done:done+n])
		done += n
		off += int64(len(raw))
	}
	return nil
}

// ReadFloat32 allocates exactly one float32 slice for a float tensor and fills it.
func ReadFloat32(src TensorSource, name string) ([]float32, []int, error) {
	ti, ok := src.Info(name)
	if !ok {
		return nil, nil, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	out := make([]float32, ti.Numel())
	if err := src.Float32Into(name, out); err != nil {
		return nil, nil, err
	}
	return out, cloneShape(ti.Shape), nil
}

// ConvertInto reads a float tensor and stores it in dst as dtype to (F32, F16 or BF16, the
// compute precisions), converting with round-to-nearest-even where it narrows. dst must
// hold the element count × to.Size() bytes. A tensor already stored as to is copied raw, so
// its bytes (NaN payloads included) are unchanged.
func ConvertInto(src TensorSource, name string, to DType, dst []byte) error {
	ti, ok := src.Info(name)
	if !ok {
		return fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	if to != F32 && to != F16 && to != BF16 {
		return fmt.Errorf("%w: conversion to %s", ErrUnsupported, to)
	}
	n := ti.Numel()
	if len(dst) != n*to.Size() {
		return fmt.Errorf("%w: tensor %q as %s needs %d bytes, got %d", ErrInvalid, name, to, n*to.Size(), len(dst))
	}
	if ti.DType == to {
		return src.ReadInto(name, dst)
	}
	if to == F32 && nativeLittleEndian() && aligned4(dst) {
		return src.Float32Into(name, bytesFloat32(dst))
	}
	if c, ok := src.(chunkConverter); ok {
		return c.convertInto(name, to, dst)
	}
	// A source that can only read whole tensors stages this one tensor as float32: a
	// transient of one tensor, never of the model.
	tmp := make([]float32, n)
	if err := src.Float32Into(name, tmp); err != nil {
		return err
	}
	encodeFloat32(to, tmp, dst)
	return nil
}

// chunkConverter is implemented by the sources that can convert a tensor a chunk at a time
// (Reader, and through it File and Mapped; Sharded by delegation).
type chunkConverter interface {
	convertInto(name string, to DType, dst []byte) error
}

// convertInto converts a float tensor to dtype to a chunk at a time: raw bytes are read into
// a small staging buffer, widened to float32 and narrowed into dst, so the transient memory
// is bounded by chunkBytes whatever the tensor's size. The caller (ConvertInto) has checked
// the target dtype and dst's length.
func (r *Reader) convertInto(name string, to DType, dst []byte) error {
	ti, err := r.lookup(name)
	if err != nil {
		return err
	}
	if !floatType(ti.DType) {
		return fmt.Errorf("%w: tensor %q: no float32 conversion from %s", ErrUnsupported, name, ti.DType)
	}
	n, es, ts := ti.Numel(), ti.DType.Size(), to.Size()
	perChunk := max(chunkBytes/es, 1)
	raw := make([]byte, min(n, perChunk)*es)
	vals := make([]float32, min(n, perChunk))
	off := r.header.DataStart + ti.Begin
	for done := 0; done < n; {
		k := min(n-done, perChunk)
		if _, err := r.r.ReadAt(raw[:k*es], off); err != nil {
			return fmt.Errorf("%w: read tensor %q: %w", ErrCorrupt, name, err)
		}
		decodeFloat32(ti.DType, raw[:k*es], vals[:k])
		encodeFloat32(to, vals[:k], dst[done*ts:(done+k)*ts])
		done += k
		off += int64(k * es)
	}
	return nil
}

func floatType(dt DType) bool { return dt == F32 || dt == F16 || dt == BF16 || dt == F64 }

// decodeFloat32 widens (or, for F64, narrows) little-endian raw values of dt into out.
func decodeFloat32(dt DType, raw []byte, out []float32) {
	switch dt {
	case F32:
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
	case F64:
		for i := range out {
			out[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(raw[8*i:])))
		}
	case F16:
		for i := range out {
			out[i] = F16ToFloat32(binary.LittleEndian.Uint16(raw[2*i:]))
		}
	case BF16:
		for i := range out {
			out[i] = BF16ToFloat32(binary.LittleEndian.Uint16(raw[2*i:]))
		}
	}
}

// PutFloat32 stores v as little-endian dt (F32, F64, F16 or BF16) into dst, which must be
// exactly len(v) values of dt: the encoder of lazily produced tensors (Tensor.Fill).
func PutFloat32(dst []byte, dt DType, v []float32) error {
	if !floatType(dt) {
		return fmt.Errorf("%w: cannot store float32 values as %s", ErrUnsupported, dt)
	}
	if len(dst) != len(v)*dt.Size() {
		return fmt.Errorf("%w: %d values of %s need %d bytes, have %d", ErrInvalid, len(v), dt, len(v)*dt.Size(), len(dst))
	}
	encodeFloat32(dt, v, dst)
	return nil
}

// encodeFloat32 stores v as little-endian dt (F32, F64, F16 or BF16) into raw.
func encodeFloat32(dt DType, v []float32, raw []byte) {
	switch dt {
	case F32:
		for i, x := range v {
			binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(x))
		}
	case F64:
		for i, x := range v {
			binary.LittleEndian.PutUint64(raw[8*i:], math.Float64bits(float64(x)))
		}
	case F16:
		for i, x := range v {
			binary.LittleEndian.PutUint16(raw[2*i:], Float32ToF16(x))
		}
	case BF16:
		for i, x := range v {
			binary.LittleEndian.PutUint16(raw[2*i:], Float32ToBF16(x))
		}
	}
}
