package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"simpletuner/plugins"
	"simpletuner/plugins/kit"
)

// Standalone runs one job without a daemon, on the same kit plumbing a daemon-launched
// trainer uses (spool, exit record, output-dir lock): it starts the job from cfg with its
// job directory jobDir, writes every event to out as one JSON line, and returns the final
// state once the job has ended. Commands (e.g. a stop on SIGINT) are sent with the returned
// host's Command while it runs; see cmd/simpletuner-trainer.
func Standalone(ctx context.Context, r kit.Runner, cfg json.RawMessage, jobDir string, out io.Writer, commands <-chan plugins.Command) (plugins.Status, error) {
	if err := os.MkdirAll(jobDir, 0o750); err != nil {
		return plugins.Status{}, fmt.Errorf("job dir: %w", err)
	}
	logf, err := os.OpenFile(filepath.Join(jobDir, plugins.LogFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return plugins.Status{}, fmt.Errorf("job log: %w", err)
	}
	defer logf.Close()
	h := kit.NewHost(r, slog.New(slog.NewJSONHandler(logf, nil)), kit.Options{Linger: time.Millisecond})
	id := fmt.Sprintf("standalone-%d", os.Getpid())
	if _, err := h.Start(ctx, plugins.StartRequest{JobID: id, Config: cfg, JobDir: jobDir, Nonce: id}); err != nil {
		return plugins.Status{}, err
	}
	if commands != nil {
		go func() {
			for c := range commands {
				_ = h.Command(ctx, c)
			}
		}()
	}
	enc := json.NewEncoder(out)
	if err := h.Events(ctx, 0, plugins.EachEvent(func(e plugins.Event) error { return enc.Encode(e) })); err != nil {
		return plugins.Status{}, err
	}
	return h.Status(ctx)
}
