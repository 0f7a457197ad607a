package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"simpletuner/options"
	"simpletuner/plugins"
)

// infoTimeout bounds asking the trainer for its model families at start-up: the handshake
// (plugins.LaunchConfig.StartTimeout) and the whole consultation (the Info call's
// deadline starts before the launch), so a hung trainer delays the daemon by about this.
const infoTimeout = 30 * time.Second

// TrainerRegistry is the options registry of the model families the installed CPU trainer
// reports in its Info (docs/architecture.md §4), so that configurations are validated
// against what that trainer can really train. The trainer is launched once, as a CPU job's
// trainer is (plugins.QueryInfo: its environment, no GPU visible, the socket in
// <home>/run), and shut down. When it cannot be asked (missing binary, crash, timeout) or
// reports families the registry refuses, the cause is logged as a warning and the
// registry falls back to options.DefaultFamilies, so that the daemon still starts.
//
// The CPU trainer is asked because it runs on every machine; the CUDA trainer is the same
// runner with the same families, and exits at start-up where there is no GPU.
func TrainerRegistry(ctx context.Context, c *Config, getenv func(string) string, log *slog.Logger) *options.Registry {
	path := c.trainerPath("simpletuner-trainer")
	reg, err := trainerRegistry(ctx, c, path, getenv)
	if err != nil {
		var names []string
		for _, f := range options.DefaultFamilies() {
			names = append(names, f.Name)
		}
		log.Warn("could not ask the trainer which model families it trains; validating with the built-in list",
			"trainer", path, "err", err, "families", strings.Join(names, ", "))
		return options.Default()
	}
	log.Info("model families from the trainer", "trainer", path, "families", familyList(reg.Families()))
	return reg
}

// trainerRegistry asks the trainer at path for its Info and builds the registry of its
// families.
func trainerRegistry(ctx context.Context, c *Config, path string, getenv func(string) string) (*options.Registry, error) {
	runDir := filepath.Join(c.Home, "run")
	if err := os.MkdirAll(runDir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", runDir, err)
	}
	ctx, cancel := context.WithTimeout(ctx, infoTimeout)
	defer cancel()
	info, err := plugins.QueryInfo(ctx, plugins.LaunchConfig{Path: path, Env: append(c.trainerEnv(getenv), "CUDA_VISIBLE_DEVICES="),
		Dir: runDir, SocketDir: runDir, StartTimeout: infoTimeout})
	if err != nil {
		return nil, err
	}
	if len(info.Families) == 0 {
		return nil, fmt.Errorf("%s reports no model family", path)
	}
	reg, err := options.New(options.Capabilities{Families: plugins.OptionFamilies(info.Families)})
	if err != nil {
		return nil, fmt.Errorf("families reported by %s: %w", path, err)
	}
	return reg, nil
}

// familyList renders families for the log: "dit (tiny, small, base, xl)".
func familyList(fams []options.Family) string {
	parts := make([]string, 0, len(fams))
	for _, f := range fams {
		p := f.Name
		if len(f.Flavours) > 0 {
			p += " (" + strings.Join(f.Flavours, ", ") + ")"
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, "; ")
}
