// Package cpu is the reference engine.Backend: pure Go kernels parallelised over a fixed pool
// of worker goroutines, with GEMMs delegated to OpenBLAS (loaded at run time, no cgo) or gonum.
//
// The backend is generic over its element type. New returns the float32 backend used for
// training; NewFloat64 returns a float64 backend with identical kernels, used by the engine's
// finite-difference gradient checks (the engine.Backend interface still speaks float32 at its
// host boundary; Data exposes the float64 slice to such tests).
//
// Buffers are *Buffer[T] values wrapping a Go slice; Data returns the slice, so CPU-only code
// (tests, data loading) can read and write device memory without a copy.
//
// Determinism: each output element of a kernel written here is computed by one goroutine in a
// fixed order, and reductions across rows use fixed-size blocks whose partial sums are combined
// in block order; results are therefore bit-identical for any thread count. GEMMs through gonum
// are thread-count independent too; OpenBLAS is deterministic for a fixed thread count and
// library build.
package cpu
