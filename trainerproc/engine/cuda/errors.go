package cuda

import "errors"

// Sentinel errors; errors from this package wrap one of these (and, where the engine cares,
// an engine sentinel too).
var (
	// ErrUnsupported reports a request the CUDA backend does not implement (for example a
	// permutation of more than MaxPermuteDims dimensions after collapsing).
	ErrUnsupported = errors.New("cuda: unsupported")
	// ErrNoCUBLAS reports that no cuBLAS library could be loaded.
	ErrNoCUBLAS = errors.New("cuda: cuBLAS not found")
	// ErrCUBLAS reports a cuBLAS call that returned a non-success status.
	ErrCUBLAS = errors.New("cuda: cuBLAS call failed")
	// ErrDriver reports a failed CUDA driver call (context, module, launch, copy).
	ErrDriver = errors.New("cuda: driver call failed")
	// ErrKernel reports a kernel missing from the embedded PTX or launched with arguments that
	// do not match its signature.
	ErrKernel = errors.New("cuda: kernel")
	// ErrPrecision reports an unknown or unsupported mixed-precision mode.
	ErrPrecision = errors.New("cuda: unsupported mixed precision")
	// ErrNoDevice reports that the requested device does not exist.
	ErrNoDevice = errors.New("cuda: no such device")
)
