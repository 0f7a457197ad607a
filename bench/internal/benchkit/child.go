package benchkit

import (
	"fmt"
	"os"
	"runtime"

	"simpletuner/trainerproc/engine/blas"
	"simpletuner/trainerproc/engine/cpu"
)

// Main runs child when the benchmark was started as its own child process (our side of a
// comparison), parent otherwise, and exits with status 1 after printing "name: error" when
// it fails.
func Main(name string, isChild bool, child, parent func() error) {
	run := parent
	if isChild {
		run = child
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(1)
	}
}

// CPUBackend makes the float32 CPU backend a benchmark child measures: threads kernel
// threads (and as many Go threads), with the BLAS named by blasChoice ("openblas", "gonum"
// or "auto"). The caller closes it.
func CPUBackend(threads int, blasChoice string) (*cpu.Backend[float32], error) {
	runtime.GOMAXPROCS(threads)
	choice, err := blas.ParseChoice(blasChoice)
	if err != nil {
		return nil, err
	}
	return cpu.New(cpu.Options{Threads: threads, BLAS: choice})
}
