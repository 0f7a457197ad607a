package gpu

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error returned by this package wraps one of them, so callers
// decide with errors.Is and never by matching text.
var (
	// ErrNVML matches every error reported by the NVML library (any *NVMLError).
	ErrNVML = errors.New("NVML error")
	// ErrNoDriver matches the errors that mean "this host has no usable NVIDIA driver":
	// library not found, driver not loaded, a library too old for a needed function, or
	// a library/kernel-module version mismatch. The daemon treats them as zero GPUs.
	ErrNoDriver = errors.New("no usable NVIDIA driver")
	// ErrLibraryNotFound: libnvidia-ml.so.1 could not be loaded (NVML_ERROR_LIBRARY_NOT_FOUND).
	ErrLibraryNotFound = errors.New("NVML library not found")
	// ErrDriverNotLoaded: the library loaded but the kernel driver is not running
	// (NVML_ERROR_DRIVER_NOT_LOADED).
	ErrDriverNotLoaded = errors.New("NVIDIA driver not loaded")
	// ErrGPULost: the GPU fell off the bus or needs a reset (NVML_ERROR_GPU_IS_LOST,
	// NVML_ERROR_RESET_REQUIRED).
	ErrGPULost = errors.New("GPU is lost")
	// ErrNotSupported: the device does not support the query (NVML_ERROR_NOT_SUPPORTED).
	ErrNotSupported = errors.New("not supported by the device")
	// ErrNoPermission: the caller may not use the device (NVML_ERROR_NO_PERMISSION).
	ErrNoPermission = errors.New("no permission for the device")
	// ErrNotBuiltIn: this daemon was built without NVML (the static "nonvml" build, or a
	// build without cgo), so it cannot see GPUs whatever the host has. The daemon treats
	// it as zero GPUs, like ErrNoDriver, but the cure is a different build, not a driver.
	ErrNotBuiltIn = errors.New("built without NVML (static build: no GPU support)")
	// ErrClosed: the inventory was closed.
	ErrClosed = errors.New("GPU inventory closed")
	// ErrInvalid: a malformed argument (empty job id, bad device list); the wrapped
	// message says which.
	ErrInvalid = errors.New("invalid argument")
	// ErrAlreadyHeld: the job already holds a reservation in the ledger.
	ErrAlreadyHeld = errors.New("job already holds a GPU reservation")
	// ErrConflict: a GPU is already held by another job (seen when re-adopting jobs
	// after a daemon restart).
	ErrConflict = errors.New("GPU already held by another job")
)

// nvmlReturn is the C enum nvmlReturn_t (an int on every ABI NVML ships for).
type nvmlReturn int32

// NVML return codes used here, from nvml.h (nvmlReturn_enum).
const (
	nvmlSuccess                 nvmlReturn = 0
	nvmlErrorUninitialized      nvmlReturn = 1
	nvmlErrorInvalidArgument    nvmlReturn = 2
	nvmlErrorNotSupported       nvmlReturn = 3
	nvmlErrorNoPermission       nvmlReturn = 4
	nvmlErrorAlreadyInitialized nvmlReturn = 5
	nvmlErrorNotFound           nvmlReturn = 6
	nvmlErrorInsufficientSize   nvmlReturn = 7
	nvmlErrorInsufficientPower  nvmlReturn = 8
	nvmlErrorDriverNotLoaded    nvmlReturn = 9
	nvmlErrorTimeout            nvmlReturn = 10
	nvmlErrorIRQIssue           nvmlReturn = 11
	nvmlErrorLibraryNotFound    nvmlReturn = 12
	nvmlErrorFunctionNotFound   nvmlReturn = 13
	nvmlErrorCorruptedInforom   nvmlReturn = 14
	nvmlErrorGPUIsLost          nvmlReturn = 15
	nvmlErrorResetRequired      nvmlReturn = 16
	nvmlErrorOperatingSystem    nvmlReturn = 17
	nvmlErrorLibRMVersion       nvmlReturn = 18
	nvmlErrorInUse              nvmlReturn = 19
	nvmlErrorMemory             nvmlReturn = 20
	nvmlErrorNoData             nvmlReturn = 21
	nvmlErrorUnknown            nvmlReturn = 999
)

// nvmlMessage is nvmlErrorString's text for r, kept here so that messages do not depend
// on the library being loaded (it is not, in the cases that matter most).
func nvmlMessage(r nvmlReturn) string {
	switch r {
	case nvmlErrorUninitialized:
		return "Uninitialized"
	case nvmlErrorInvalidArgument:
		return "Invalid Argument"
	case nvmlErrorNotSupported:
		return "Not Supported"
	case nvmlErrorNoPermission:
		return "Insufficient Permissions"
	case nvmlErrorAlreadyInitialized:
		return "Already Initialized"
	case nvmlErrorNotFound:
		return "Not Found"
	case nvmlErrorInsufficientSize:
		return "Insufficient Size"
	case nvmlErrorInsufficientPower:
		return "Insufficient External Power"
	case nvmlErrorDriverNotLoaded:
		return "Driver Not Loaded"
	case nvmlErrorTimeout:
		return "Timeout"
	case nvmlErrorIRQIssue:
		return "Interrupt request issue"
	case nvmlErrorLibraryNotFound:
		return "NVML Shared Library Not Found"
	case nvmlErrorFunctionNotFound:
		return "Function Not Found"
	case nvmlErrorCorruptedInforom:
		return "Corrupted infoROM"
	case nvmlErrorGPUIsLost:
		return "GPU is lost"
	case nvmlErrorResetRequired:
		return "GPU requires restart"
	case nvmlErrorOperatingSystem:
		return "The operating system has blocked the request."
	case nvmlErrorLibRMVersion:
		return "RM has detected an NVML/RM version mismatch."
	case nvmlErrorInUse:
		return "In use by another client"
	case nvmlErrorMemory:
		return "Insufficient Memory"
	case nvmlErrorNoData:
		return "No data"
	case nvmlErrorUnknown:
		return "Unknown Error"
	}
	return fmt.Sprintf("NVML error %d", int(r))
}

// NVMLError is one failed NVML call. It matches ErrNVML and, depending on Code, one of
// ErrNoDriver, ErrLibraryNotFound, ErrDriverNotLoaded, ErrGPULost, ErrNotSupported or
// ErrNoPermission.
type NVMLError struct {
	Op     string // the C function, e.g. "nvmlInit_v2", or "dlopen"
	Code   int    // the nvmlReturn_t value
	Detail string // extra text, e.g. dlerror's message; may be empty
}

func (e *NVMLError) Error() string {
	msg := nvmlMessage(nvmlReturn(e.Code))
	if e.Detail != "" {
		return fmt.Sprintf("%s: %s (%s)", e.Op, msg, e.Detail)
	}
	return fmt.Sprintf("%s: %s", e.Op, msg)
}

// Is maps the return code onto the package's sentinels.
func (e *NVMLError) Is(target error) bool {
	switch nvmlReturn(e.Code) {
	case nvmlErrorLibraryNotFound:
		if target == ErrLibraryNotFound {
			return true
		}
	case nvmlErrorDriverNotLoaded:
		if target == ErrDriverNotLoaded {
			return true
		}
	case nvmlErrorGPUIsLost, nvmlErrorResetRequired:
		return target == ErrNVML || target == ErrGPULost
	case nvmlErrorNotSupported:
		return target == ErrNVML || target == ErrNotSupported
	case nvmlErrorNoPermission:
		return target == ErrNVML || target == ErrNoPermission
	}
	switch target {
	case ErrNVML:
		return true
	case ErrNoDriver:
		return isNoDriver(nvmlReturn(e.Code))
	}
	return false
}

// isNoDriver says whether a code means the host has no usable driver, as opposed to a
// fault of one device or one call.
func isNoDriver(r nvmlReturn) bool {
	switch r {
	case nvmlErrorLibraryNotFound, nvmlErrorDriverNotLoaded, nvmlErrorFunctionNotFound, nvmlErrorLibRMVersion:
		return true
	}
	return false
}

// nvmlErr turns a return code into an error; nil for NVML_SUCCESS.
func nvmlErr(op string, r nvmlReturn) error {
	if r == nvmlSuccess {
		return nil
	}
	return &NVMLError{Op: op, Code: int(r)}
}

// invalidf wraps ErrInvalid with a message a person can act on.
func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}
