//go:build cuda

package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"

	"simpletuner/internal/buildinfo"
	"simpletuner/internal/clihelp"
	"simpletuner/plugins/kit"
	"simpletuner/trainerproc/engine"
	"simpletuner/trainerproc/engine/cuda"
	"simpletuner/trainerproc/runner"
)

// envDevice overrides the CUDA ordinal (default 0: the first GPU CUDA_VISIBLE_DEVICES shows).
const envDevice = "SIMPLETUNER_CUDA_DEVICE"

// device reads the CUDA ordinal from the environment.
func device() (int, error) {
	v := os.Getenv(envDevice)
	if v == "" {
		return 0, nil
	}
	d, err := strconv.Atoi(v)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%s=%q: not a device ordinal", envDevice, v)
	}
	return d, nil
}

// options builds the runner options with the CUDA backend factory for device dev.
func options(dev int) runner.Options {
	return runner.Options{
		Version: buildinfo.Version,
		// The data loader decodes images on this many goroutines; kernels run on the GPU.
		Threads:     runtime.GOMAXPROCS(0),
		BackendName: "cuda",
		NewBackend: func(mixedPrecision string) (engine.Backend, error) {
			prec, err := cuda.ParsePrecision(mixedPrecision)
			if err != nil {
				return nil, err
			}
			return cuda.New(cuda.Options{Device: dev, Precision: prec})
		},
	}
}

func main() {
	runner.TuneGC(os.Getenv)
	dev, err := device()
	if clihelp.Asked(os.Args[1:]) {
		runner.Usage(os.Stdout, "simpletuner-trainer-cuda")
		os.Exit(0)
	}
	if len(os.Args) > 1 && os.Args[1] == "run" {
		if err != nil {
			fmt.Fprintln(os.Stderr, "simpletuner-trainer-cuda:", err)
			os.Exit(2)
		}
		os.Exit(runner.RunCommand("simpletuner-trainer-cuda", os.Args[2:], options(dev), os.Stdout, os.Stderr))
	}
	// As a plugin nothing may be written to stdout/stderr; a bad ordinal falls back to the
	// first visible GPU (the daemon pins jobs with CUDA_VISIBLE_DEVICES, not this variable).
	kit.Main(runner.New(options(dev)))
}
