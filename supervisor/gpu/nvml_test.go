package gpu

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// These tests hold in every build, with or without NVML.

func TestCString(t *testing.T) {
	for _, tc := range []struct {
		in   []byte
		want string
	}{
		{[]byte("NVIDIA H100 80GB HBM3\x00garbage"), "NVIDIA H100 80GB HBM3"},
		{[]byte("\x00\x00"), ""},
		{[]byte("no terminator"), "no terminator"},
		{nil, ""},
	} {
		if got := cString(tc.in); got != tc.want {
			t.Errorf("cString(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestFatal(t *testing.T) {
	for _, tc := range []struct {
		r    nvmlReturn
		want bool
	}{
		{nvmlSuccess, false},
		{nvmlErrorNotSupported, false}, // the board does not report the value (MIG)
		{nvmlErrorNoData, false},
		{nvmlErrorNoPermission, false},
		{nvmlErrorGPUIsLost, true},
		{nvmlErrorResetRequired, true},
		{nvmlErrorUnknown, true},
		{nvmlErrorInvalidArgument, true},
	} {
		if got := fatal(tc.r); got != tc.want {
			t.Errorf("fatal(%d) = %v, want %v", tc.r, got, tc.want)
		}
	}
}

func TestPercent(t *testing.T) {
	for in, want := range map[uint32]int{0: 0, 42: 42, 100: 100, 101: 100, 1 << 31: 100} {
		if got := percent(in); got != want {
			t.Errorf("percent(%d) = %d, want %d", in, got, want)
		}
	}
}

func TestNoGPUReason(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{nil, ""},
		{fmt.Errorf("gpu: %w", ErrNotBuiltIn), ErrNotBuiltIn.Error()},
		{fmt.Errorf("gpu: load NVML: %w", &NVMLError{Op: "dlopen libnvidia-ml.so.1", Code: int(nvmlErrorLibraryNotFound),
			Detail: "libnvidia-ml.so.1: cannot open shared object file"}),
			"NVML library not found (libnvidia-ml.so.1: cannot open shared object file)"},
		{&NVMLError{Op: "nvmlInit_v2", Code: int(nvmlErrorLibraryNotFound)}, "NVML library not found"},
		{&NVMLError{Op: "nvmlInit_v2", Code: int(nvmlErrorDriverNotLoaded)}, "NVIDIA driver not loaded"},
		{&NVMLError{Op: "dlsym nvmlDeviceGetCount_v2", Code: int(nvmlErrorFunctionNotFound)},
			"NVML unavailable: dlsym nvmlDeviceGetCount_v2: Function Not Found"},
		{errors.New("boom"), "NVML unavailable: boom"},
	} {
		if got := NoGPUReason(tc.err); got != tc.want {
			t.Errorf("NoGPUReason(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
	if !strings.HasPrefix(ErrNotBuiltIn.Error(), "built without NVML") {
		t.Errorf("ErrNotBuiltIn = %q: the daemon's log line must say \"built without NVML\"", ErrNotBuiltIn)
	}
}
