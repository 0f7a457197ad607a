// Command simpletuner is the training server and its command-line client.
//
//	simpletuner server [flags]   run the daemon (HTTP API on port 8001)
//	simpletuner jobs <command>   submit, list, follow and cancel jobs on a running server
//	simpletuner workers <command> list, create, drain and delete remote workers
//	simpletuner train --env NAME train one environment in the foreground
//	simpletuner worker [flags]   run jobs for a server on this machine (a remote worker)
//	simpletuner admin reset      restore administrator access offline
//	simpletuner version          print the version
//
// Each command answers --help or -h, anywhere on its line, with its usage on stdout.
//
// Flags are parsed here; everything else lives in the supervisor packages.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"simpletuner/internal/buildinfo"
	"simpletuner/internal/clihelp"
	"simpletuner/supervisor/daemon"
)

// usage is the top-level usage; each command has its own printer beside it.
const usage = `simpletuner: a training server for diffusion models (SimpleTuner-compatible HTTP API).

Usage:
  simpletuner server [flags]    run the daemon
  simpletuner jobs <command>    submit, list, follow and cancel jobs on a running server
  simpletuner schedules <cmd>   list, create, delete and run cron schedules on a running server
  simpletuner workers <command> list, create, drain and delete remote workers (admin)
  simpletuner train --env NAME  train one environment in the foreground, without a server
  simpletuner worker [flags]    run jobs for a server on this machine (a remote worker)
  simpletuner admin reset       restore administrator access offline (daemon stopped)
  simpletuner version           print the version
  simpletuner help [COMMAND]    show this text, or COMMAND's usage

'simpletuner COMMAND --help' (or -h) shows a command's usage and flags; for train it
lists every training option.

Quick start:
  simpletuner server                     # API on http://localhost:8001, docs at /docs
  curl -s localhost:8001/api/cloud/auth/setup/status
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, os.Getenv))
}

func run(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	if args[0] == "help" && len(args) > 1 {
		return run([]string{args[1], "--help"}, stdout, stderr, getenv)
	}
	switch args[0] {
	case "server":
		return serverCmd(args[1:], stdout, stderr, getenv)
	case "jobs":
		return jobsCmd(args[1:], stdout, stderr, getenv)
	case "schedules":
		return schedulesCmd(args[1:], stdout, stderr, getenv)
	case "workers":
		return workersCmd(args[1:], stdout, stderr, getenv)
	case "train":
		return trainCmd(args[1:], stdout, stderr, getenv)
	case "worker":
		return workerCmd(args[1:], stdout, stderr, getenv)
	case "admin":
		return adminCmd(args[1:], os.Stdin, stdout, stderr, getenv)
	case "version", "--version", "-v":
		if clihelp.Asked(args[1:]) {
			fmt.Fprint(stdout, "Usage: simpletuner version\n\nPrints the version of this binary.\n")
			return 0
		}
		fmt.Fprintf(stdout, "simpletuner %s\n", buildinfo.Version)
		return 0
	case "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		if clihelp.Asked(args) {
			fmt.Fprint(stdout, usage)
			return 0
		}
		fmt.Fprintf(stderr, "simpletuner: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}

func serverCmd(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	cfg, fs, err := commandFlags("server", stderr, getenv)
	if err != nil {
		return 2
	}
	fs.StringVar(&cfg.Host, "host", cfg.Host, "address to bind (env SIMPLETUNER_HOST); use 127.0.0.1 behind a reverse proxy")
	fs.IntVar(&cfg.Port, "port", cfg.Port, "port to bind (env SIMPLETUNER_PORT)")
	fs.StringVar(&cfg.ConfigDir, "config-dir", cfg.ConfigDir, "directory of configuration environments (env SIMPLETUNER_CONFIG_DIR)")
	fs.StringVar(&cfg.StateDir, "state-dir", cfg.StateDir, "directory of the daemon's database (env SIMPLETUNER_STATE_DIR)")
	fs.StringVar(&cfg.DatasetsDir, "datasets-dir", cfg.DatasetsDir, "root of dataset uploads")
	fs.Int64Var(&cfg.MaxExtractBytes, "max-extract-bytes", 0, "uncompressed bytes one dataset zip upload may extract (0: 10 GiB); archives may also expand at most 200:1")
	fs.StringVar(&cfg.OutputRoot, "output-root", cfg.OutputRoot, "directory that relative --output_dir values resolve under")
	fs.BoolVar(&cfg.SSL, "ssl", false, "serve HTTPS; without --ssl-key/--ssl-cert a self-signed pair is made under the state dir")
	fs.StringVar(&cfg.SSLKey, "ssl-key", "", "PEM private key for HTTPS")
	fs.StringVar(&cfg.SSLCert, "ssl-cert", "", "PEM certificate for HTTPS")
	fs.StringVar(&cfg.Env, "env", "", "validate this environment at start-up (exit 1 if invalid) and train it once the server is ready")
	fs.StringVar(&cfg.PluginsDir, "plugins-dir", "", "directory of the trainer binaries (default: next to this binary)")
	fs.StringVar(&cfg.Trainer, "trainer", "", "path of the CPU trainer binary (default: simpletuner-trainer in --plugins-dir)")
	fs.Func("trainer-env", "KEY=VALUE added to every trainer's environment (repeatable)", func(v string) error {
		cfg.TrainerEnv = append(cfg.TrainerEnv, v)
		return nil
	})
	fs.IntVar(&cfg.JobAttempts, "job-attempts", 1, "launches of a job whose trainer crashes (killed, out of memory); retries resume from the latest checkpoint")
	fs.DurationVar(&cfg.StallTimeout, "stall-timeout", 0, "fail a job whose trainer emits nothing for this long, e.g. 30m (0: off)")
	fs.IntVar(&cfg.EventRetention, "event-retention", 0, "stored events kept, oldest deleted first (0: 100000; -1: unbounded)")
	fs.DurationVar(&cfg.EventRetentionAge, "event-retention-age", 0, "delete stored events older than this (0: 168h; -1ns: never)")
	fs.DurationVar(&cfg.EventHeartbeat, "event-heartbeat", 0, "heartbeat and credential re-check interval of event streams (0: 15s)")
	fs.DurationVar(&cfg.JobRetentionAge, "job-retention-age", 0, "delete ended jobs (record and job directory, never the output) older than this, e.g. 720h (0: keep)")
	fs.IntVar(&cfg.JobRetentionCount, "job-retention-count", 0, "with job retention on, always keep this many newest ended jobs (0: none by count)")
	fs.StringVar(&cfg.MaintenanceSpec, "maintenance-schedule", "", "cron spec of the daemon's job retention, stale upload and orphaned socket clean-up (default @hourly)")
	// Part "workers" (issue 16): remote workers.
	fs.DurationVar(&cfg.WorkerHeartbeatTimeout, "worker-heartbeat-timeout", 0, "mark a remote worker offline and requeue its job when it sends no heartbeat for this long (0: 2m)")
	fs.StringVar(&cfg.PublicURL, "public-url", "", "the URL workers use to reach this server, shown in their connection commands (default: the URL of the request)")
	fs.StringVar(&cfg.HooksDir, "hooks-dir", "", "only run hook scripts (post_checkpoint_script, …) from this directory")
	fs.StringVar(&cfg.NVMLLibrary, "nvml-library", cfg.NVMLLibrary, "NVML library to list GPUs with, a path or soname (env SIMPLETUNER_NVML_LIBRARY; default libnvidia-ml.so.1)")
	fs.StringVar(&cfg.MetricsToken, "metrics-token", cfg.MetricsToken, "bearer token that lets a scraper on another machine read GET /metrics (without it: this machine only); prefer env SIMPLETUNER_METRICS_TOKEN, which ps does not show")
	addRootFlags(fs, &cfg)
	addSlurmFlags(fs, &cfg)
	fs.BoolVar(&cfg.WebhookDenyPrivate, "webhook-deny-private", false, "refuse webhook targets on private and loopback addresses (link-local and cloud metadata are always refused)")
	proxies := fs.String("trusted-proxy", "", "comma-separated addresses/CIDRs whose X-Forwarded-For and X-Forwarded-Proto are believed")
	fs.Func("allowed-host", "before the first administrator exists, also treat requests from this machine addressed to this `NAME` as the administrator (besides localhost and loopback addresses); repeatable or comma-separated", func(v string) error {
		hosts, err := daemon.ParseAllowedHosts(v)
		cfg.AllowedHosts = append(cfg.AllowedHosts, hosts...)
		return err
	})
	fs.DurationVar(&cfg.BodyTimeout, "body-timeout", 0, "time a client has to send a request body, plus 1 s per 32 KiB it sends (0: 30s; event streams are exempt)")
	fs.IntVar(&cfg.MaxConnsPerAddr, "max-conns-per-addr", daemon.DefaultMaxConnsPerAddr, "connections one client address may hold open at once; further ones are closed (-1: no cap; --trusted-proxy peers are exempt)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	logFormat := fs.String("log-format", "text", "text or json")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: simpletuner server [flags]\n\nRuns the training server. Defaults live under SIMPLETUNER_HOME (%s).\n\nFlags:\n", cfg.Home)
		printFlags(fs.Output(), fs)
	}
	if code, stop := parseFlagsOnly(fs, args, "server", stdout); stop {
		return code
	}
	if cfg.TrustedProxies, err = daemon.ParseTrustedProxies(*proxies); err != nil {
		fmt.Fprintln(stderr, "simpletuner server:", err)
		return 2
	}
	log, err := newLogger(stderr, *logLevel, *logFormat)
	if err != nil {
		fmt.Fprintln(stderr, "simpletuner server:", err)
		return 2
	}
	// The daemon keeps credentials: nothing it creates should be readable by others.
	syscall.Umask(0o077)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := daemon.Run(ctx, cfg, log, nil); err != nil {
		fmt.Fprintln(stderr, "simpletuner server:", err)
		return 1
	}
	return 0
}

// addRootFlags adds the flags that widen the folders requests may name (server and
// train): each is repeatable and takes comma lists.
func addRootFlags(fs *flag.FlagSet, cfg *daemon.Config) {
	fs.Func("allow-file-root", "absolute folder, besides the configs dir, that files named by options (data_backend_config, webhook_config, …) may be read from (repeatable, or a comma list)",
		listFlag(&cfg.AllowFileRoots))
	fs.Func("allow-data-root", "absolute folder, besides the datasets, cache and output roots, that a dataloader's instance_data_dir and cache_dir* may name (repeatable, or a comma list)",
		listFlag(&cfg.AllowDataRoots))
}

// listFlag appends the comma-separated values of a repeatable flag to dst.
func listFlag(dst *[]string) func(string) error {
	return func(v string) error {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				*dst = append(*dst, p)
			}
		}
		return nil
	}
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// printFlags lists flags with two dashes, the way the documentation writes them (Go's
// flag package accepts both spellings).
func printFlags(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if name != "" {
			line += " " + name
		}
		fmt.Fprintf(w, "%-28s %s", line, usage)
		if f.DefValue != "" && f.DefValue != "false" {
			fmt.Fprintf(w, " (default %q)", f.DefValue)
		}
		fmt.Fprintln(w)
	})
}

// commandFlags starts a command's flags: the embedded defaults (SIMPLETUNER_HOME and the
// other variables) and a flag set that reports to stderr. An error has been printed.
func commandFlags(command string, stderr io.Writer, getenv func(string) string) (daemon.Config, *flag.FlagSet, error) {
	cfg, err := daemon.Defaults(getenv)
	if err != nil {
		fmt.Fprintf(stderr, "simpletuner %s: %v\n", command, err)
		return cfg, nil, err
	}
	fs := flag.NewFlagSet(command, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return cfg, fs, nil
}

// parseFlagsOnly parses args into fs for a command that takes flags and no arguments.
// stop is true when the command must end at once with code: 0 after help (fs.Usage
// printed on stdout), 2 after a bad flag (the flag package has said why on fs.Output())
// or a stray argument.
func parseFlagsOnly(fs *flag.FlagSet, args []string, command string, stdout io.Writer) (code int, stop bool) {
	if showHelp(fs, args, stdout) {
		return 0, true
	}
	if err := fs.Parse(args); err != nil {
		return 2, true
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "simpletuner %s: unexpected argument %q\n", command, fs.Arg(0))
		return 2, true
	}
	return 0, false
}

// showHelp prints a command's usage (its fs.Usage, which writes to fs.Output()) on stdout
// when args ask for help anywhere (clihelp.Asked), and reports whether it did: the
// command then exits 0. Asked before parsing, help needs no other flag to be valid.
func showHelp(fs *flag.FlagSet, args []string, stdout io.Writer) bool {
	if !clihelp.Asked(args) {
		return false
	}
	out := fs.Output()
	fs.SetOutput(stdout)
	defer fs.SetOutput(out)
	fs.Usage()
	return true
}
