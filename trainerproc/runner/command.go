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
// The binary's main answers help (clihelp.Asked, then Usage) before it gets here.
func RunCommand(name string, args []string, opts Options, stdout, stderr io.Writer) int {
	fs, cfgPath, jobDir := runFlags(name)
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return ExitUsage
	}
	if *cfgPath == "" || *jobDir == "" {
		fmt.Fprintf(stderr, "%s run: --config and --job-dir are required\n\n", name)
		fs.Usage()
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

// runFlags defines the flags of the `run` subcommand; its usage is the binary's (Usage).
func runFlags(name string) (fs *flag.FlagSet, cfgPath, jobDir *string) {
	fs = flag.NewFlagSet(name+" run", flag.ContinueOnError)
	cfgPath = fs.String("config", "", "resolved configuration (JSON object with --flag keys)")
	jobDir = fs.String("job-dir", "", "job directory (trainer.log, events.ndjson, exit.json)")
	fs.Usage = func() { Usage(fs.Output(), name) }
	return fs, cfgPath, jobDir
}

// Usage prints the usage of the trainer binary called name; its main prints it on stdout
// when --help or -h stands anywhere on its command line (internal/clihelp decides).
func Usage(w io.Writer, name string) {
	fmt.Fprintf(w, `Usage:
  %[1]s
      (no arguments) serve one job to the simpletuner daemon over go-plugin; the daemon
      starts it, with the job directory in $%[2]s
  %[1]s run --config resolved.json --job-dir DIR
      train one job without a daemon, printing its events as JSON lines on stdout;
      SIGINT or SIGTERM asks it to stop (checkpoint, then end), a second one cancels
  %[1]s --help
      show this text

Exit status of run: %[3]d completed, %[4]d failed, %[5]d usage error, %[6]d stopped, %[7]d cancelled.

Flags of run:
`, name, plugins.EnvJobDir, ExitCompleted, ExitFailed, ExitUsage, ExitStopped, ExitCancelled)
	fs, _, _ := runFlags(name)
	fs.SetOutput(w)
	fs.PrintDefaults()
}
