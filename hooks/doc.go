// Package hooks runs external scripts for the daemon and the trainer: placeholder
// expansion into argv, exec without a shell, timeouts and capped output.
package hooks
