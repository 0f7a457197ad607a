package runner

import "runtime/debug"

// DefaultGCPercent is the garbage collector's target (GOGC) the trainer binaries use when
// the environment does not set GOGC. The engine's CPU tensors are large pointer-free
// slices, so a collection costs almost nothing to mark, while Go's default of 100 lets the
// heap grow to twice the live weights before it reuses any freed activation: with
// gigabytes of weights nearly every activation then lands in memory fresh from the
// kernel, and faulting it in costs more than the arithmetic (a 23 MB add took 145–213 ms
// into fresh pages against 3 ms into reused ones; docs/architecture.md §11).
const DefaultGCPercent = 10

// TuneGC sets DefaultGCPercent unless getenv("GOGC") is set. It changes process-wide
// state, so only a trainer binary's main calls it, once, before any work.
func TuneGC(getenv func(string) string) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(DefaultGCPercent)
	}
}
