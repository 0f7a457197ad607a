package cuda

import (
	"fmt"
	"math"
)

// Argument kinds of a kernel signature, one byte per parameter, as written in kernelSigs.
const (
	argPtr   = 'p' // device pointer (.u64 in PTX)
	argInt   = 'i' // int (.s32/.u32)
	argInt64 = 'l' // long long (.s64/.u64)
	argU64   = 'u' // unsigned long long (.u64)
	argF32   = 'f' // float (.f32)
)

// Args packs kernel arguments for cuLaunchKernel. gorgonia.org/cu's Launch copies every
// argument as a uint64 read from the pointer it is given, so each value is stored in its own
// 8-byte slot with the value in the low bytes (little endian) and zero above: a 4-byte
// parameter then reads exactly its value and nothing past a Go variable is ever read.
type Args struct {
	vals []uint64
	sig  []byte
}

// NewArgs returns an empty argument list with room for n parameters.
func NewArgs(n int) *Args { return &Args{vals: make([]uint64, 0, n), sig: make([]byte, 0, n)} }

func (a *Args) add(kind byte, v uint64) *Args {
	a.vals = append(a.vals, v)
	a.sig = append(a.sig, kind)
	return a
}

// Ptr appends a device pointer (0 is a null pointer, which kernels treat as "absent").
func (a *Args) Ptr(p uintptr) *Args { return a.add(argPtr, uint64(p)) }

// Int appends a C int. Values outside int32 panic: the engine's shape checks keep sizes in
// range, so an overflow here is a bug that would otherwise corrupt memory on the device.
func (a *Args) Int(v int) *Args {
	if v < math.MinInt32 || v > math.MaxInt32 {
		panic(fmt.Sprintf("cuda: kernel int argument %d overflows int32", v))
	}
	return a.add(argInt, uint64(uint32(int32(v))))
}

// Int64 appends a C long long.
func (a *Args) Int64(v int64) *Args { return a.add(argInt64, uint64(v)) }

// Uint64 appends a C unsigned long long.
func (a *Args) Uint64(v uint64) *Args { return a.add(argU64, v) }

// Float appends a C float.
func (a *Args) Float(v float32) *Args { return a.add(argF32, uint64(math.Float32bits(v))) }

// Signature is the kinds of the appended arguments, e.g. "ppfl".
func (a *Args) Signature() string { return string(a.sig) }

// Values returns the 8-byte slots, one per argument.
func (a *Args) Values() []uint64 { return a.vals }

// checkSignature reports whether args match kernel name's declared signature.
func checkSignature(name string, a *Args) error {
	want, ok := kernelSigs[name]
	if !ok {
		return fmt.Errorf("%w: %s is not in the signature table", ErrKernel, name)
	}
	if got := a.Signature(); got != want {
		return fmt.Errorf("%w: %s called with (%s), declared (%s)", ErrKernel, name, got, want)
	}
	return nil
}
