//go:build cuda

package cuda

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"unsafe"

	"gorgonia.org/cu"

	"simpletuner/trainerproc/engine"
)

// Options configures a CUDA backend.
type Options struct {
	// Device is the CUDA ordinal (after CUDA_VISIBLE_DEVICES); the daemon pins a job's GPUs
	// with CUDA_VISIBLE_DEVICES=GPU-<uuid>, so this is 0 for a one-GPU job.
	Device int
	// Precision selects the GEMM precision (default PrecisionBF16).
	Precision Precision
	// MaxBytes caps the bytes of live buffers (0: the device's memory).
	MaxBytes int64
	// UnfusedAttention runs attention forward and backward as cuBLAS GEMMs around a masked
	// softmax instead of the flash kernels (the reference the flash kernels are checked
	// against; also taken automatically for head dimensions above 128).
	UnfusedAttention bool
	// Loader opens cuBLAS (nil: the system's dynamic linker); Getenv reads the search
	// variables (nil: os.Getenv).
	Loader Loader
	Getenv func(string) string
}

// Backend implements engine.Backend on one GPU. It is driven by one goroutine at a time (the
// engine's); every method pins that goroutine to its OS thread for the call and makes the
// device's primary context current there, so the driving goroutine may change between calls.
type Backend struct {
	opts   Options
	dev    cu.Device
	ctx    cu.CUContext
	fns    map[string]cu.Function
	blas   *cublasHandle
	mem    *cachingAllocator
	desc   string
	info   DeviceInfo
	err    error // sticky: the first failed launch or library call
	live   int64 // live engine buffers
	closed bool
}

var _ engine.Backend = (*Backend)(nil)

// DeviceInfo describes the GPU a backend runs on.
type DeviceInfo struct {
	Ordinal      int
	Name         string
	UUID         string
	TotalBytes   int64
	Major, Minor int
	SMs          int
	Driver       int
	CUBLAS       string
	CUBLASPath   string
}

// Buffer is device memory holding Len() float32 values.
type Buffer struct {
	ptr   uintptr
	n     int
	freed bool
	owner *Backend
}

// Len implements engine.Buffer.
func (b *Buffer) Len() int { return b.n }

// devMem is deviceMemory over cuMemAlloc/cuMemFree.
type devMem struct{}

func (devMem) alloc(bytes int64) (uintptr, error) {
	p, err := cu.MemAlloc(bytes)
	if err != nil {
		if errors.Is(err, cu.OutOfMemory) {
			return 0, fmt.Errorf("%w: cuMemAlloc %d bytes: %w", errDeviceFull, bytes, err)
		}
		return 0, fmt.Errorf("%w: cuMemAlloc %d bytes: %w", ErrDriver, bytes, err)
	}
	return uintptr(p), nil
}

func (devMem) free(p uintptr) error {
	if err := cu.MemFree(cu.DevicePtr(p)); err != nil {
		return fmt.Errorf("%w: cuMemFree: %w", ErrDriver, err)
	}
	return nil
}

// New opens device o.Device: its primary context (shared with cuBLAS, which uses the runtime
// API), every embedded PTX module, and cuBLAS.
func New(o Options) (_ *Backend, err error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	n, err := cu.NumDevices()
	if err != nil {
		return nil, fmt.Errorf("%w: cuDeviceGetCount: %w", ErrDriver, err)
	}
	if o.Device < 0 || o.Device >= n {
		return nil, fmt.Errorf("%w: device %d of %d", ErrNoDevice, o.Device, n)
	}
	dev, err := cu.GetDevice(o.Device)
	if err != nil {
		return nil, fmt.Errorf("%w: cuDeviceGet: %w", ErrDriver, err)
	}
	ctx, err := dev.RetainPrimaryCtx()
	if err != nil {
		return nil, fmt.Errorf("%w: cuDevicePrimaryCtxRetain: %w", ErrDriver, err)
	}
	b := &Backend{opts: o, dev: dev, ctx: ctx, fns: map[string]cu.Function{}}
	defer func() {
		if err != nil {
			_ = b.Close()
		}
	}()
	if err := cu.SetCurrentContext(ctx); err != nil {
		return nil, fmt.Errorf("%w: cuCtxSetCurrent: %w", ErrDriver, err)
	}
	if b.info, err = deviceInfo(dev, o.Device); err != nil {
		return nil, err
	}
	mods, err := PTXModules()
	if err != nil {
		return nil, fmt.Errorf("%w: embedded PTX: %w", ErrKernel, err)
	}
	for file, ptx := range mods {
		mod, err := cu.LoadData(ptx)
		if err != nil {
			return nil, fmt.Errorf("%w: loading %s (PTX JIT for sm_%d%d): %w", ErrKernel, file, b.info.Major, b.info.Minor, err)
		}
		for name := range ParsePTXEntries(ptx) {
			fn, err := mod.Function(name)
			if err != nil {
				return nil, fmt.Errorf("%w: %s in %s: %w", ErrKernel, name, file, err)
			}
			b.fns[name] = fn
		}
	}
	for _, name := range KernelNames() {
		if _, ok := b.fns[name]; !ok {
			return nil, fmt.Errorf("%w: %s is declared but not in the embedded PTX (run make kernels)", ErrKernel, name)
		}
	}
	loader := o.Loader
	if loader == nil {
		loader = SystemLoader{}
	}
	api, err := openCUBLAS(loader, o.Getenv)
	if err != nil {
		return nil, err
	}
	if b.blas, err = api.newHandle(); err != nil {
		return nil, err
	}
	b.info.CUBLAS, b.info.CUBLASPath = cublasVersionString(b.blas.version), api.lib.Path
	b.mem = newCachingAllocator(devMem{}, o.MaxBytes)
	b.desc = fmt.Sprintf("cuda (%s, sm_%d%d, %.0f GiB, cuBLAS %s, %s)", b.info.Name, b.info.Major, b.info.Minor,
		float64(b.info.TotalBytes)/(1<<30), b.info.CUBLAS, o.Precision)
	return b, nil
}

func deviceInfo(dev cu.Device, ordinal int) (DeviceInfo, error) {
	in := DeviceInfo{Ordinal: ordinal, Driver: cu.Version()}
	var err error
	if in.Name, err = dev.Name(); err != nil {
		return in, fmt.Errorf("%w: cuDeviceGetName: %w", ErrDriver, err)
	}
	if u, err := dev.UUID(); err == nil {
		in.UUID = "GPU-" + u.String()
	}
	if in.TotalBytes, err = dev.TotalMem(); err != nil {
		return in, fmt.Errorf("%w: cuDeviceTotalMem: %w", ErrDriver, err)
	}
	if in.Major, in.Minor, err = dev.ComputeCapability(); err != nil {
		return in, fmt.Errorf("%w: compute capability: %w", ErrDriver, err)
	}
	if in.SMs, err = dev.Attribute(cu.MultiprocessorCount); err != nil {
		return in, fmt.Errorf("%w: multiprocessor count: %w", ErrDriver, err)
	}
	return in, nil
}

// enter pins the calling goroutine to its thread and makes the context current; the caller
// defers the returned function.
func (b *Backend) enter() func() {
	runtime.LockOSThread()
	if cur, err := cu.CurrentContext(); err != nil || cur != b.ctx {
		if err := cu.SetCurrentContext(b.ctx); err != nil {
			b.fail(fmt.Errorf("%w: cuCtxSetCurrent: %w", ErrDriver, err))
		}
	}
	return runtime.UnlockOSThread
}

// fail records the first error; later launches are skipped and Alloc/Upload/Download return it.
func (b *Backend) fail(err error) {
	if b.err == nil {
		b.err = err
	}
}

// Err returns the sticky error, if any.
func (b *Backend) Err() error {
	if b.err == nil {
		return nil
	}
	return fmt.Errorf("%w: %w", engine.ErrBackend, b.err)
}

// Describe implements engine.Backend.
func (b *Backend) Describe() string { return b.desc }

// Info describes the device.
func (b *Backend) Info() DeviceInfo { return b.info }

// DeviceMemory implements engine.MemoryReporter: the GPU's memory, or the MaxBytes cap when
// it is lower.
func (b *Backend) DeviceMemory() (int64, string) {
	total := b.info.TotalBytes
	if b.opts.MaxBytes > 0 && b.opts.MaxBytes < total {
		total = b.opts.MaxBytes
	}
	return total, fmt.Sprintf("GPU %d (%s)", b.info.Ordinal, b.info.Name)
}

// Precision is the GEMM precision in use.
func (b *Backend) Precision() Precision { return b.opts.Precision }

// Close implements engine.Backend: it frees the cached and live device memory, the cuBLAS
// handle and the primary-context reference.
func (b *Backend) Close() error {
	if b.closed {
		return nil
	}
	b.closed = true
	defer b.enter()()
	var errs []error
	if b.mem != nil {
		errs = append(errs, b.mem.close())
	}
	if b.blas != nil {
		errs = append(errs, b.blas.close())
	}
	if err := b.dev.ReleasePrimaryCtx(); err != nil {
		errs = append(errs, fmt.Errorf("%w: cuDevicePrimaryCtxRelease: %w", ErrDriver, err))
	}
	return errors.Join(errs...)
}

// Sync waits for all queued work and returns the sticky error (benchmarks time with it).
func (b *Backend) Sync() error {
	defer b.enter()()
	if err := cu.Synchronize(); err != nil {
		b.fail(fmt.Errorf("%w: cuCtxSynchronize: %w", ErrDriver, err))
	}
	return b.Err()
}

// MemStats reports bytes in live buffers, the high-water mark since the last ResetPeak, and
// bytes cached for reuse.
func (b *Backend) MemStats() (inUse, peak, cached int64) {
	return b.mem.inUse, b.mem.peak, b.mem.cached
}

// ResetPeak restarts the high-water mark at the current use.
func (b *Backend) ResetPeak() { b.mem.peak = b.mem.inUse }

// LiveBuffers is the number of engine buffers not yet freed (tests check for leaks).
func (b *Backend) LiveBuffers() int64 { return b.live }

// buf returns the device buffer behind an engine buffer; nil stays nil.
func (b *Backend) buf(x engine.Buffer) *Buffer {
	if x == nil {
		return nil
	}
	cb, ok := x.(*Buffer)
	if !ok || cb.owner != b {
		panic(fmt.Sprintf("cuda: buffer %T does not belong to this backend", x))
	}
	if cb.freed {
		panic("cuda: use of freed buffer")
	}
	return cb
}

// ptr is the device address of element off of x (0 for a nil buffer).
func (b *Backend) ptr(x engine.Buffer, off int) uintptr {
	cb := b.buf(x)
	if cb == nil {
		return 0
	}
	return cb.ptr + uintptr(off)*f32Bytes
}

func (b *Backend) length(x engine.Buffer) int {
	if cb := b.buf(x); cb != nil {
		return cb.n
	}
	return 0
}

// must turns a shape error into a panic, as the engine.Backend contract asks.
func must(err error) {
	if err != nil {
		panic(err)
	}
}

// Alloc implements engine.Backend: a zero-filled buffer from the caching allocator.
func (b *Backend) Alloc(n int) (engine.Buffer, error) {
	if n < 0 {
		return nil, fmt.Errorf("%w: alloc of %d elements", engine.ErrShape, n)
	}
	if err := b.Err(); err != nil {
		return nil, err
	}
	defer b.enter()()
	p, err := b.mem.alloc(int64(n) * f32Bytes)
	if err != nil {
		if errors.Is(err, errDeviceFull) {
			return nil, fmt.Errorf("%w: %w", engine.ErrOutOfMemory, err)
		}
		return nil, fmt.Errorf("%w: %w", engine.ErrBackend, err)
	}
	if n > 0 {
		if err := cu.MemsetD32Async(cu.DevicePtr(p), 0, int64(n), cu.NoStream); err != nil {
			_ = b.mem.free(p)
			return nil, fmt.Errorf("%w: %w: cuMemsetD32: %w", engine.ErrBackend, ErrDriver, err)
		}
	}
	b.live++
	return &Buffer{ptr: p, n: n, owner: b}, nil
}

// Free implements engine.Backend. The block goes back to the cache; work already queued on
// the stream that reads it runs before any later use of the block.
func (b *Backend) Free(x engine.Buffer) {
	if x == nil {
		return
	}
	cb, ok := x.(*Buffer)
	if !ok || cb.owner != b {
		panic(fmt.Sprintf("cuda: free of foreign buffer %T", x))
	}
	if cb.freed {
		panic("cuda: double free")
	}
	cb.freed = true
	b.live--
	if err := b.mem.free(cb.ptr); err != nil {
		b.fail(err)
	}
}

// scratch allocates an internal block of bytes that the caller frees with release; it is not
// counted as an engine buffer. A failure becomes the sticky error.
func (b *Backend) scratch(bytes int64) (uintptr, bool) {
	p, err := b.mem.alloc(bytes)
	if err != nil {
		b.fail(fmt.Errorf("scratch of %d bytes: %w", bytes, err))
		return 0, false
	}
	return p, true
}

func (b *Backend) release(p uintptr) {
	if p != 0 {
		if err := b.mem.free(p); err != nil {
			b.fail(err)
		}
	}
}

// Upload implements engine.Backend.
func (b *Backend) Upload(dst engine.Buffer, src []float32) error {
	d := b.buf(dst)
	if len(src) != d.n {
		return fmt.Errorf("%w: upload of %d elements into a buffer of %d", engine.ErrShape, len(src), d.n)
	}
	if err := b.Err(); err != nil {
		return err
	}
	if d.n == 0 {
		return nil
	}
	defer b.enter()()
	if err := cu.MemcpyHtoD(cu.DevicePtr(d.ptr), unsafe.Pointer(&src[0]), int64(d.n)*f32Bytes); err != nil {
		b.fail(fmt.Errorf("%w: cuMemcpyHtoD: %w", ErrDriver, err))
	}
	return b.Err()
}

// Download implements engine.Backend; it waits for queued work and reports any error a
// kernel or library call left behind.
func (b *Backend) Download(dst []float32, src engine.Buffer) error {
	s := b.buf(src)
	if len(dst) != s.n {
		return fmt.Errorf("%w: download of a buffer of %d elements into %d", engine.ErrShape, s.n, len(dst))
	}
	if err := b.Err(); err != nil {
		return err
	}
	defer b.enter()()
	if s.n == 0 {
		if err := cu.Synchronize(); err != nil {
			b.fail(fmt.Errorf("%w: cuCtxSynchronize: %w", ErrDriver, err))
		}
		return b.Err()
	}
	if err := cu.MemcpyDtoH(unsafe.Pointer(&dst[0]), cu.DevicePtr(s.ptr), int64(s.n)*f32Bytes); err != nil {
		b.fail(fmt.Errorf("%w: cuMemcpyDtoH: %w", ErrDriver, err))
	}
	return b.Err()
}

// launch checks a kernel's arguments against its declared signature and launches it on the
// default stream. Errors become the sticky error.
func (b *Backend) launch(name string, l Launch, a *Args) {
	if b.err != nil || l.GridX == 0 || l.GridY == 0 || l.GridZ == 0 {
		return
	}
	if err := checkSignature(name, a); err != nil {
		b.fail(err)
		return
	}
	fn, ok := b.fns[name]
	if !ok {
		b.fail(fmt.Errorf("%w: %s not loaded", ErrKernel, name))
		return
	}
	vals := a.Values()
	params := make([]unsafe.Pointer, len(vals))
	for i := range vals {
		params[i] = unsafe.Pointer(&vals[i])
	}
	if err := fn.Launch(l.GridX, l.GridY, l.GridZ, l.BlockX, l.BlockY, l.BlockZ, l.SharedBytes, cu.NoStream, params); err != nil {
		b.fail(fmt.Errorf("%w: launch %s %+v: %w", ErrDriver, name, l, err))
	}
}

// f32 is a float32's bits for memset.
func f32(v float32) uint { return uint(math.Float32bits(v)) }

// unsafePointer is the address of the first id (ids is non-empty).
func unsafePointer(ids []int32) unsafe.Pointer { return unsafe.Pointer(&ids[0]) }
