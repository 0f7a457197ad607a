// Package blas provides the single-precision GEMM used by the CPU backend: OpenBLAS loaded at
// run time through purego (no cgo, so CGO_ENABLED=0 binaries still work), or gonum's pure-Go
// BLAS when OpenBLAS is absent or not wanted. The choice is explicit (Choice) and reportable
// (Sgemmer.Describe), so logs and benchmarks say which path produced a number.
//
// Every Sgemmer is row-major and takes the usual BLAS leading dimensions. Implementations are
// safe for sequential use from any goroutine; callers must not assume that concurrent calls
// into OpenBLAS are safe (the CPU backend never makes them).
package blas
