// Command simpletuner-trainer is the trainer process the daemon launches, one per job: the
// CPU dit trainer (trainerproc/runner) served over the plugin contract by plugins/kit.
//
// Run by the daemon it speaks go-plugin on stdout and logs only to its job directory. For
// debugging it also runs a job on its own:
//
//	simpletuner-trainer run --config resolved.json --job-dir DIR
//
// which prints the job's events as JSON lines on stdout; SIGINT or SIGTERM asks the job to
// stop (checkpoint, then end), a second one cancels it. The exit status is 0 for a completed
// job, 1 for a failed one, 2 for usage errors, 3 for stopped and 4 for cancelled.
package main

import (
	"fmt"
	"os"
	"strconv"

	"simpletuner/internal/buildinfo"
	"simpletuner/internal/clihelp"
	"simpletuner/plugins/kit"
	"simpletuner/trainerproc/engine/blas"
	"simpletuner/trainerproc/runner"
)

// envThreads overrides the CPU thread count (default: all CPUs).
const envThreads = "SIMPLETUNER_TRAINER_THREADS"

func options() (runner.Options, error) {
	choice, err := blas.ChoiceFromEnv()
	if err != nil {
		return runner.Options{}, err
	}
	threads := 0
	if v := os.Getenv(envThreads); v != "" {
		if threads, err = strconv.Atoi(v); err != nil {
			return runner.Options{}, fmt.Errorf("%s: %w", envThreads, err)
		}
	}
	return runner.Options{Version: buildinfo.Version, Threads: threads, BLAS: choice}, nil
}

func main() {
	runner.TuneGC(os.Getenv)
	opts, err := options()
	if clihelp.Asked(os.Args[1:]) {
		runner.Usage(os.Stdout, "simpletuner-trainer")
		os.Exit(0)
	}
	if len(os.Args) > 1 && os.Args[1] == "run" {
		if err != nil {
			fmt.Fprintln(os.Stderr, "simpletuner-trainer:", err)
			os.Exit(2)
		}
		os.Exit(runner.RunCommand("simpletuner-trainer", os.Args[2:], opts, os.Stdout, os.Stderr))
	}
	if err != nil {
		// As a plugin nothing may be written to stdout/stderr; fall back to the defaults.
		opts = runner.Options{Version: buildinfo.Version}
	}
	kit.Main(runner.New(opts))
}
