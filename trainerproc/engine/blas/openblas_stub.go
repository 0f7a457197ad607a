//go:build !((linux || darwin) && (amd64 || arm64))

package blas

import "fmt"

func openOpenBLAS(int) (Sgemmer, error) {
	return nil, fmt.Errorf("%w: openblas: run-time loading is not supported on this platform", ErrUnavailable)
}
