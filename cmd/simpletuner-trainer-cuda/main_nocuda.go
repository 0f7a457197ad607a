//go:build !cuda

package main

import (
	"fmt"
	"os"

	"simpletuner/internal/clihelp"
)

// Without -tags cuda there is no CUDA backend to run; say how to build the real binary
// instead of pretending to train.
// Asked for help, the same text is its usage (stdout, exit 0).
func main() {
	w, code := os.Stderr, 2
	if clihelp.Asked(os.Args[1:]) {
		w, code = os.Stdout, 0
	}
	fmt.Fprintln(w, "simpletuner-trainer-cuda: built without -tags cuda; build it with `make build-cuda` "+
		"(CUDA headers and the stub libcuda.so are fetched into .cache/cuda; no GPU or system install needed to build)")
	os.Exit(code)
}
