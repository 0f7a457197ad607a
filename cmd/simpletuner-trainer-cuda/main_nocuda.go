//go:build !cuda

package main

import (
	"fmt"
	"os"
)

// Without -tags cuda there is no CUDA backend to run; say how to build the real binary
// instead of pretending to train.
func main() {
	fmt.Fprintln(os.Stderr, "simpletuner-trainer-cuda: built without -tags cuda; build it with `make build-cuda` "+
		"(CUDA headers and the stub libcuda.so are fetched into .cache/cuda; no GPU or system install needed to build)")
	os.Exit(2)
}
