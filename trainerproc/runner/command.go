package runner

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"simpletuner/plugins"
)

// Exit statuses of the standalone `run` command.
const (
	ExitCompleted = 0
	ExitFailed    = 1
	ExitUsage     = 2
	ExitStopped   = 3
	ExitCancelled = 4
)

// RunCommand is a trainer binary's `run --config resolved.json --job-dir DIR` subcommand:
// it trains one job without a daemon, printing events as JSON lines to stdout. SIGINT or
// SIGTERM asks the job to stop (checkpoint, then end), a second one cancels it. It returns
// the exit status (ExitCompleted, ExitFailed, …). name prefixes error messages.
func RunCommand(name string, args []string, opts Options, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "resolved configuration (JSON object with --flag keys)")
	jobDir := fs.String("job-dir", "", "job directory (trainer.log, events.ndjson, exit.json)")
	if err := fs.Parse(args); err != nil {
		return ExitUsage
	}
	if *cfgPath == "" || *jobDir == "" {
		fmt.Fprintf(stderr, "usage: %s run --config resolved.json --job-dir DIR\n", name)
		return ExitUsage
	}
	cfg, err := os.ReadFile(*cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return ExitUsage
	}
	commands := make(chan plugins.Command, 2)
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	go func() {
		<-sig
		commands <- plugins.CommandStop
		<-sig
		commands <- plugins.CommandCancel
	}()
	st, err := Standalone(context.Background(), New(opts), cfg, *jobDir, stdout, commands)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return ExitFailed
	}
	switch st.State {
	case plugins.StateCompleted:
		return ExitCompleted
	case plugins.StateStopped:
		return ExitStopped
	case plugins.StateCancelled:
		return ExitCancelled
	default:
		if st.Error != "" {
			fmt.Fprintf(stderr, "%s: %s\n", name, st.Error)
		}
		return ExitFailed
	}
}
