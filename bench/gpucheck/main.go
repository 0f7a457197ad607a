//go:build cuda

package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: gpucheck parity|bench|learn|api [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "parity":
		err = runParity(os.Args[2:])
	case "bench":
		err = runBench(os.Args[2:])
	case "learn":
		err = runLearn(os.Args[2:])
	case "api":
		err = runAPI(os.Args[2:])
	default:
		err = fmt.Errorf("unknown subcommand %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gpucheck:", err)
		os.Exit(1)
	}
}
