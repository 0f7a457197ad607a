//go:build !cuda

package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "gpucheck: built without -tags cuda; run `make gpu-check-bundle` and scripts/gpu-check.sh on a GPU machine")
	os.Exit(2)
}
