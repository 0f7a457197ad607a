//go:build (linux || darwin) && (amd64 || arm64)

package blas

import (
	"errors"
	"testing"
)

// TestMissingLibrary exercises the "no OpenBLAS" path even where OpenBLAS is installed.
func TestMissingLibrary(t *testing.T) {
	_, err := openOpenBLASFrom([]string{"libsimpletuner-no-such-blas.so.0"}, 1)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
}
