//go:build cuda

package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strconv"
	"syscall"

	"simpletuner/plugins"
	"simpletuner/plugins/kit"
	"simpletuner/trainerproc/engine"
	"simpletuner/trainerproc/engine/cuda"
	"simpletuner/trainerproc/runner"
)

// envDevice overrides the CUDA ordinal (default 0: the first GPU CUDA_VISIBLE_DEVICES shows).
const envDevice = "SIMPLETUNER_CUDA_DEVICE"

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

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
		Version: version(),
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
	dev, err := device()
	if len(os.Args) > 1 && os.Args[1] == "run" {
		if err != nil {
			fmt.Fprintln(os.Stderr, "simpletuner-trainer-cuda:", err)
			os.Exit(2)
		}
		os.Exit(standalone(os.Args[2:], options(dev)))
	}
	// As a plugin nothing may be written to stdout/stderr; a bad ordinal falls back to the
	// first visible GPU (the daemon pins jobs with CUDA_VISIBLE_DEVICES, not this variable).
	kit.Main(runner.New(options(dev)))
}

func standalone(args []string, opts runner.Options) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	cfgPath := fs.String("config", "", "resolved configuration (JSON object with --flag keys)")
	jobDir := fs.String("job-dir", "", "job directory (trainer.log, events.ndjson, exit.json)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *cfgPath == "" || *jobDir == "" {
		fmt.Fprintln(os.Stderr, "usage: simpletuner-trainer-cuda run --config resolved.json --job-dir DIR")
		return 2
	}
	cfg, err := os.ReadFile(*cfgPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "simpletuner-trainer-cuda:", err)
		return 2
	}
	commands := make(chan plugins.Command, 2)
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sig
		commands <- plugins.CommandStop
		<-sig
		commands <- plugins.CommandCancel
	}()
	st, err := runner.Standalone(context.Background(), runner.New(opts), cfg, *jobDir, os.Stdout, commands)
	if err != nil {
		fmt.Fprintln(os.Stderr, "simpletuner-trainer-cuda:", err)
		return 1
	}
	switch st.State {
	case plugins.StateCompleted:
		return 0
	case plugins.StateStopped:
		return 3
	case plugins.StateCancelled:
		return 4
	default:
		if st.Error != "" {
			fmt.Fprintln(os.Stderr, "simpletuner-trainer-cuda:", st.Error)
		}
		return 1
	}
}
