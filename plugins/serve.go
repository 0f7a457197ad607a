package plugins

import (
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
)

// Serve runs a trainer binary's plugin server until the daemon shuts it down. It must be
// called from main, before anything else writes to stdout: go-plugin's handshake line
// goes there. logOut receives the plugin library's own log; give it a file, never
// stderr: the daemon that reads our stderr may die, and a write to its broken pipe would
// kill the trainer with SIGPIPE (docs/architecture.md §10).
func Serve(impl Trainer, logOut io.Writer) {
	// A trainer outlives the daemon that launched it: writes to a dead daemon's pipes must
	// fail with EPIPE rather than kill the process.
	signal.Ignore(syscall.SIGPIPE)
	if logOut == nil {
		logOut = io.Discard
	}
	log := hclog.New(&hclog.LoggerOptions{Name: "trainer-plugin", Output: logOut, Level: hclog.Info})
	if dir := os.Getenv(EnvJobDir); dir != "" {
		// go-plugin prints its address on stdout: read it on the way, and publish it in the
		// job directory (BootstrapFile) for a daemon that restarts before recording it.
		if r, w, err := os.Pipe(); err == nil {
			real := os.Stdout
			os.Stdout = w
			go publishBootstrap(r, real, dir, os.Getenv(EnvJobNonce), selfStart, func(err error) { log.Warn("bootstrap file", "err", err) })
		}
	}
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake(),
		Plugins:         PluginSet(impl),
		GRPCServer:      plugin.DefaultGRPCServer,
		Logger:          log,
	})
}

// OpenLog opens (appending) the log file in the job directory named by EnvJobDir, or
// returns nil when the variable is unset.
func OpenLog() (*os.File, error) {
	dir := os.Getenv(EnvJobDir)
	if dir == "" {
		return nil, nil
	}
	return os.OpenFile(dir+string(os.PathSeparator)+LogFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
}
