package cpu

import (
	"fmt"
	"runtime"
	"sync/atomic"

	"simpletuner/trainerproc/engine"
	"simpletuner/trainerproc/engine/blas"
)

// Float is the element type of a CPU backend.
type Float interface{ ~float32 | ~float64 }

// Options configures a CPU backend.
type Options struct {
	// Threads is the number of goroutines kernels use and the OpenBLAS thread count; <= 0 means
	// runtime.GOMAXPROCS(0).
	Threads int
	// BLAS picks the GEMM library for the float32 backend (default blas.ChoiceAuto). The
	// float64 backend always uses gonum.
	BLAS blas.Choice
	// MaxBytes caps the bytes of live buffers; Alloc beyond it fails with
	// engine.ErrOutOfMemory. 0 means unlimited.
	MaxBytes int64
}

// gemmFunc is a row-major BLAS gemm for element type T.
type gemmFunc[T Float] func(transA, transB bool, m, n, k int, alpha T, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int)

// Backend implements engine.Backend on the CPU with element type T. Its configuration is
// immutable after construction; the live-buffer counters are atomics so Stats may be read from
// any goroutine.
type Backend[T Float] struct {
	pool         *pool
	gemm         gemmFunc[T]
	gemmParallel bool // one gemm call already uses all threads (OpenBLAS)
	desc         string
	elemSize     int64
	maxBytes     int64
	attnScratch  int // max elements of attention score scratch per chunk of heads
	convScratch  int // max elements of one im2col panel (see convPanelBytes)

	liveBuffers atomic.Int64
	liveBytes   atomic.Int64 // live buffers plus the scratch of kernels in progress
	peakBytes   atomic.Int64 // high-water mark of liveBytes since New or ResetPeak
}

var (
	_ engine.Backend = (*Backend[float32])(nil)
	_ engine.Backend = (*Backend[float64])(nil)
)

// New returns the float32 CPU backend.
func New(opts Options) (*Backend[float32], error) {
	threads := opts.Threads
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	choice := opts.BLAS
	if choice == "" {
		choice = blas.ChoiceAuto
	}
	sg, err := blas.Open(choice, threads)
	if err != nil {
		return nil, fmt.Errorf("cpu backend: %w", err)
	}
	b := &Backend[float32]{
		pool:         newPool(threads),
		gemm:         sg.Sgemm,
		gemmParallel: sg.ParallelInside(),
		desc:         describe(sg, threads),
		elemSize:     4,
		maxBytes:     opts.MaxBytes,
		attnScratch:  attnScratchElems,
		convScratch:  convPanelBytes / 4,
	}
	return b, nil
}

// NewFloat64 returns the float64 reference backend (gonum BLAS) used by gradient checks.
func NewFloat64(opts Options) (*Backend[float64], error) {
	threads := opts.Threads
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	g := blas.NewGonum()
	return &Backend[float64]{
		pool:        newPool(threads),
		gemm:        g.Dgemm,
		desc:        fmt.Sprintf("cpu float64 (gonum, %d threads)", threads),
		elemSize:    8,
		maxBytes:    opts.MaxBytes,
		attnScratch: attnScratchElems,
		convScratch: convPanelBytes / 8,
	}, nil
}

// describe is e.g. "cpu (openblas 0.3.21, 2 threads)" or "cpu (gonum, 2 threads)"; OpenBLAS
// reports its own thread count, which New sets to the kernel thread count.
func describe(sg blas.Sgemmer, threads int) string {
	if sg.Name() == "openblas" {
		return fmt.Sprintf("cpu (%s)", sg.Describe())
	}
	if threads == 1 {
		return fmt.Sprintf("cpu (%s, 1 thread)", sg.Describe())
	}
	return fmt.Sprintf("cpu (%s, %d threads)", sg.Describe(), threads)
}

// Describe implements engine.Backend, e.g. "cpu (openblas 0.3.21, 2 threads)".
func (b *Backend[T]) Describe() string { return b.desc }

// Threads is the number of goroutines kernels use.
func (b *Backend[T]) Threads() int { return b.pool.threads }

// Close stops the worker pool.
func (b *Backend[T]) Close() error {
	b.pool.close()
	return nil
}

// Stats reports the number and total size of live (allocated, not freed) buffers; tests use it
// to check that the engine frees what it allocates.
func (b *Backend[T]) Stats() (buffers, bytes int64) {
	return b.liveBuffers.Load(), b.liveBytes.Load()
}

// Peak reports the high-water mark of live bytes since the backend was made or ResetPeak
// was called: buffers plus the scratch kernels hold while they run (attention scores,
// layer-norm weight gradients). Memory estimates are checked against it.
func (b *Backend[T]) Peak() int64 { return b.peakBytes.Load() }

// ResetPeak starts a new high-water mark at the current live bytes.
func (b *Backend[T]) ResetPeak() { b.peakBytes.Store(b.liveBytes.Load()) }

// grow adds n bytes to the live count and raises the high-water mark.
func (b *Backend[T]) grow(n int64) {
	live := b.liveBytes.Add(n)
	for {
		p := b.peakBytes.Load()
		if live <= p || b.peakBytes.CompareAndSwap(p, live) {
			return
		}
	}
}

// scratch returns n zeroed elements of kernel scratch, counted as live until done is called.
// The scratch is not subject to MaxBytes: kernels cannot fail, and the estimate of
// engine.Workspacer says how much they take.
func (b *Backend[T]) scratch(n int) (s []T, done func()) {
	bytes := int64(n) * b.elemSize
	b.grow(bytes)
	return make([]T, n), func() { b.liveBytes.Add(-bytes) }
}

// Buffer is a CPU buffer: a Go slice. freed is set by Free so a double free or a use after free
// is caught.
type Buffer[T Float] struct {
	data  []T
	freed bool
}

// Len implements engine.Buffer.
func (b *Buffer[T]) Len() int { return len(b.data) }

// Data returns the slice behind a buffer allocated by a Backend[T]. It panics for foreign or
// freed buffers.
func Data[T Float](buf engine.Buffer) []T {
	if buf == nil {
		return nil
	}
	cb, ok := buf.(*Buffer[T])
	if !ok {
		panic(fmt.Sprintf("cpu: buffer %T does not belong to a CPU backend of this element type", buf))
	}
	if cb.freed {
		panic("cpu: use of freed buffer")
	}
	return cb.data
}

// Alloc implements engine.Backend.
func (b *Backend[T]) Alloc(n int) (engine.Buffer, error) {
	if n < 0 {
		return nil, fmt.Errorf("cpu: alloc of %d elements", n)
	}
	bytes := int64(n) * b.elemSize
	if b.maxBytes > 0 && b.liveBytes.Load()+bytes > b.maxBytes {
		return nil, fmt.Errorf("cpu: alloc %d bytes with %d live of %d: %w", bytes, b.liveBytes.Load(), b.maxBytes, engine.ErrOutOfMemory)
	}
	b.liveBuffers.Add(1)
	b.grow(bytes)
	return &Buffer[T]{data: make([]T, n)}, nil
}

// Free implements engine.Backend.
func (b *Backend[T]) Free(buf engine.Buffer) {
	if buf == nil {
		return
	}
	cb, ok := buf.(*Buffer[T])
	if !ok {
		panic(fmt.Sprintf("cpu: free of foreign buffer %T", buf))
	}
	if cb.freed {
		panic("cpu: double free")
	}
	cb.freed = true
	b.liveBuffers.Add(-1)
	b.liveBytes.Add(-int64(len(cb.data)) * b.elemSize)
	cb.data = nil
}

// Upload implements engine.Backend.
func (b *Backend[T]) Upload(dst engine.Buffer, src []float32) error {
	d := Data[T](dst)
	if len(d) != len(src) {
		return fmt.Errorf("cpu: upload of %d elements into a buffer of %d", len(src), len(d))
	}
	b.pool.rangeFor(len(d), 1<<16, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			d[i] = T(src[i])
		}
	})
	return nil
}

// Download implements engine.Backend.
func (b *Backend[T]) Download(dst []float32, src engine.Buffer) error {
	s := Data[T](src)
	if len(dst) != len(s) {
		return fmt.Errorf("cpu: download of a buffer of %d elements into %d", len(s), len(dst))
	}
	b.pool.rangeFor(len(s), 1<<16, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			dst[i] = float32(s[i])
		}
	})
	return nil
}

func mustLen(name string, have, want int) {
	if have < want {
		panic(fmt.Sprintf("cpu: %s has %d elements, need %d", name, have, want))
	}
}
