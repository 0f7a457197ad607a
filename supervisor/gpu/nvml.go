package gpu

import (
	"bytes"
	"errors"
	"fmt"
)

// DefaultNVMLLibrary is the soname the driver package installs (libnvidia-ml1 on Debian,
// the driver's .run installer elsewhere); go-nvml opens the same name by default.
const DefaultNVMLLibrary = "libnvidia-ml.so.1"

// NVMLOptions configures Open.
type NVMLOptions struct {
	// Library is the path or soname handed to dlopen; empty means DefaultNVMLLibrary.
	Library string
}

// Open returns the host's inventory: NVML when it loads and initialises, otherwise None
// with a Reason saying why (and Err holding the error). It never fails and never panics,
// so the daemon always starts; on a CPU-only host, or in the static build without NVML
// (build tag "nonvml"), jobs then run on the CPU trainer.
func Open(opts NVMLOptions) Inventory {
	inv, err := openNVML(opts)
	if err != nil {
		return None{Reason: NoGPUReason(err), Err: err}
	}
	return inv
}

// NoGPUReason turns an error from opening NVML into the short text shown as the reason
// for running without GPUs.
func NoGPUReason(err error) string {
	var ne *NVMLError
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrNotBuiltIn):
		return ErrNotBuiltIn.Error()
	case errors.Is(err, ErrLibraryNotFound) && errors.As(err, &ne) && ne.Detail != "":
		return fmt.Sprintf("%s (%s)", ErrLibraryNotFound, ne.Detail)
	case errors.Is(err, ErrLibraryNotFound):
		return ErrLibraryNotFound.Error()
	case errors.Is(err, ErrDriverNotLoaded):
		return ErrDriverNotLoaded.Error()
	}
	return "NVML unavailable: " + err.Error()
}

// fatal says whether a failed query means the device is unusable, as opposed to "this
// board does not report that value" (MIG devices have no utilization, for instance).
func fatal(r nvmlReturn) bool {
	switch r {
	case nvmlSuccess, nvmlErrorNotSupported, nvmlErrorNoData, nvmlErrorNoPermission:
		return false
	}
	return true
}

// percent clamps an NVML percentage into 0..100.
func percent(v uint32) int {
	return int(min(v, 100))
}

// cString decodes a NUL-terminated C string from a fixed buffer; without a NUL the whole
// buffer is the string (NVML always terminates, but a fake might not).
func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}
