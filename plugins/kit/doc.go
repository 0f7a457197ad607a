// Package kit is the trainer-side SDK of the plugin contract, as containerd's shim SDK is
// for shims: a trainer author implements Runner (the training loop) and calls Main; the
// kit does the rest the contract asks of every trainer — one job per process, the output
// directory lock, the gapless event spool, Status with the launch nonce, commands, the
// atomic exit record, and exiting once the daemon has the final events (or after a linger
// when no daemon is attached).
//
// The real trainer (cmd/simpletuner-trainer) and the fake trainers of the daemon's tests
// are both built on it, so the tests exercise the same plumbing production runs.
package kit
