package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"simpletuner/options"
	"simpletuner/supervisor/configs"
	"simpletuner/supervisor/daemon"
	"simpletuner/supervisor/foreground"
	"simpletuner/supervisor/training"
)

// trainCmd runs one job in the foreground: simpletuner train --env NAME [--key=value …].
func trainCmd(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	cfg, fs, err := commandFlags("train", stderr, getenv)
	if err != nil {
		return 2
	}
	// The options registry validates against the families the trainer reports, asked
	// after the flags that pick the trainer; --help asks the default one and says nothing
	// when it cannot (the listing is the same but for --model_family's values).
	registry := func(log *slog.Logger) *options.Registry {
		return daemon.TrainerRegistry(context.Background(), &cfg, getenv, log)
	}
	env := fs.String("env", "", "the environment `NAME` to train (config/NAME/config.json)")
	fs.StringVar(&cfg.ConfigDir, "config-dir", cfg.ConfigDir, "directory of configuration environments (env SIMPLETUNER_CONFIG_DIR)")
	fs.StringVar(&cfg.OutputRoot, "output-root", cfg.OutputRoot, "directory that relative --output_dir values resolve under")
	fs.Func("trainer-env", "KEY=VALUE added to the trainer's environment (repeatable)", func(v string) error {
		if k, _, ok := strings.Cut(v, "="); !ok || k == "" {
			return fmt.Errorf("want KEY=VALUE")
		}
		cfg.TrainerEnv = append(cfg.TrainerEnv, v)
		return nil
	})
	trainer := fs.String("trainer", "", "path of the trainer binary (default: simpletuner-trainer next to this binary)")
	addRootFlags(fs, &cfg)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprint(w, "Usage: simpletuner train --env NAME [--option=value | option=value …]\n\nTrains NAME in the foreground, without a server. Training options override the\nenvironment's values. Ctrl-C saves a checkpoint and stops; a second Ctrl-C cancels.\n\nFlags:\n")
		printFlags(w, fs)
		fmt.Fprintln(w)
		registry(slog.New(slog.DiscardHandler)).WriteHelp(w)
	}
	if showHelp(fs, args, stdout) {
		return 0
	}
	// Our own flags come first; everything from the first unknown --option on is a
	// training option.
	own, rest := splitTrainArgs(args, fs)
	if err := fs.Parse(own); err != nil {
		return 2
	}
	rest = append(rest, fs.Args()...)
	if *env == "" {
		fmt.Fprintln(stderr, "simpletuner train: --env NAME is required (see 'simpletuner train --help')")
		return 2
	}
	if *trainer != "" {
		cfg.Trainer = *trainer
	}
	reg := registry(slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	overrides, issues := reg.ParseArgs(normaliseArgs(rest))
	if issues.HasErrors() {
		fmt.Fprintln(stderr, "simpletuner train:", strings.Join(issues.Errors().Messages(), "; "))
		return 2
	}
	log := slog.New(slog.DiscardHandler)
	cs, err := configs.New(daemon.ConfigsOptions(&cfg, reg, memSettings{}))
	if err != nil {
		fmt.Fprintln(stderr, "simpletuner train:", err)
		return 1
	}
	ts := training.New(reg, cs, nil, cfg.OutputRoot, log)
	b, err := ts.FromEnvironmentWith(*env, overrides, []string{"*"})
	if err != nil {
		fmt.Fprintf(stderr, "Error: Configuration for environment '%s' not found in %s (%v)\n", *env, cs.Dir(), err)
		return 1
	}
	for _, w := range b.Issues.Warnings() {
		fmt.Fprintln(stderr, "warning:", w.Message)
	}
	if !b.Valid() {
		fmt.Fprintln(stderr, "Error: the configuration is not valid:")
		for _, e := range b.Issues.Errors() {
			fmt.Fprintln(stderr, "  -", e.Message)
		}
		return 1
	}
	raw, _ := json.Marshal(b.Config.Map())
	if *trainer == "" {
		*trainer = daemon.TrainerPath(&cfg, "simpletuner-trainer")
	}
	id := "train-" + time.Now().UTC().Format("20060102-150405")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	fcfg := foreground.Config{Trainer: *trainer, JobDir: filepath.Join(cfg.Home, "jobs", id), RunDir: filepath.Join(cfg.Home, "run"), Env: daemon.TrainerEnv(&cfg, getenv)}
	fmt.Fprintf(stdout, "Training environment '%s' as job %s\n", *env, id)
	res, err := foreground.Run(ctx, fcfg, id, raw, stdout, sig)
	if err != nil {
		fmt.Fprintln(stderr, "Error:", err)
		return 1
	}
	fmt.Fprintf(stdout, "Job %s %s", id, res.State)
	if res.Error != "" {
		fmt.Fprintf(stdout, ": %s", res.Error)
	}
	fmt.Fprintln(stdout)
	return res.ExitCode()
}

// splitTrainArgs separates the command's own flags from training options.
func splitTrainArgs(args []string, fs *flag.FlagSet) (own, rest []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		name := strings.TrimLeft(a, "-")
		name, _, hasValue := strings.Cut(name, "=")
		if strings.HasPrefix(a, "-") && fs.Lookup(name) != nil {
			own = append(own, a)
			if !hasValue && fs.Lookup(name).Value.String() != "false" && i+1 < len(args) {
				i++
				own = append(own, args[i])
			}
			continue
		}
		rest = append(rest, a)
	}
	return own, rest
}

// normaliseArgs accepts SimpleTuner's key=value as well as --key=value.
func normaliseArgs(args []string) []string {
	out := make([]string, 0, len(args))
	for _, a := range args {
		if !strings.HasPrefix(a, "-") && strings.Contains(a, "=") {
			a = "--" + a
		}
		out = append(out, a)
	}
	return out
}

// memSettings keeps settings in memory: train reads environments by name and needs no
// active-environment record.
type memSettings struct{}

func (memSettings) Get(string, any) (bool, error) { return false, nil }
func (memSettings) Put(string, any) error         { return nil }

var _ configs.Settings = memSettings{}
