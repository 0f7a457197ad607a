package kit

import (
	"io"
	"log/slog"
	"os"

	"simpletuner/plugins"
)

// Main runs a trainer binary around r: it logs to the job directory's log file (never to
// stdout or stderr, which belong to go-plugin and to a daemon that may die), serves the
// plugin protocol, and exits 0 once the job has ended and its events were handed over.
func Main(r Runner) {
	var out io.Writer = io.Discard
	if f, err := plugins.OpenLog(); err == nil && f != nil {
		out = f
	}
	log := slog.New(slog.NewJSONHandler(out, nil))
	h := NewHost(r, log, Options{SeqBase: plugins.SeqBase(os.Getenv)})
	go func() {
		<-h.Done()
		log.Info("trainer exiting")
		os.Exit(0)
	}()
	plugins.Serve(h, out)
}
