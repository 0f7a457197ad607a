package kit

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"

	"simpletuner/plugins"
)

// Runner is what a trainer implements.
type Runner interface {
	// Info describes the trainer.
	Info(ctx context.Context) (plugins.Info, error)
	// Validate checks a resolved configuration.
	Validate(ctx context.Context, config json.RawMessage) ([]plugins.Issue, error)
	// Run trains the job. It returns nil when training completed, ErrStopped after a
	// stop (with its checkpoint saved), ErrCancelled after a cancel, or the error that
	// made it fail. ctx is cancelled only when the process is being shut down.
	Run(ctx context.Context, job *Job) error
}

// Outcomes a Runner returns for the two user-requested endings.
var (
	ErrStopped   = errors.New("stopped on request")
	ErrCancelled = errors.New("cancelled on request")
)

// Job is the running job as the Runner sees it.
type Job struct {
	ID     string
	Config json.RawMessage
	Dir    string
	Log    *slog.Logger

	host *Host
}

// Emit appends an event to the job's stream. data is marshalled to JSON (nil for none).
// It returns the event's sequence number.
func (j *Job) Emit(typ, severity, title, message string, data any) uint64 {
	return j.host.emit(typ, severity, title, message, data)
}

// SetProgress records the latest progress for Status.
func (j *Job) SetProgress(p plugins.Progress) { j.host.setProgress(p) }

// SetRunning marks the end of start-up: the job state becomes "running".
func (j *Job) SetRunning() { j.host.setState(plugins.StateRunning) }

// Commands delivers the daemon's commands. A Runner drains it after each gradient sync
// (a non-blocking receive) and acts on what it finds.
func (j *Job) Commands() <-chan plugins.Command { return j.host.commands }
