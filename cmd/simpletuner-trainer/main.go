// Command simpletuner-trainer is the trainer process the daemon launches, one per job.
//
// The training engine lands with the trainer issue; until then this binary only reports
// that it cannot train, so that the build layout and packaging are complete.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "simpletuner-trainer: no training backend is built into this binary yet")
	os.Exit(78) // EX_CONFIG: the daemon treats this as a configuration error, not a crash to retry.
}
