package configs

import (
	"errors"
	"strings"

	"simpletuner/options"
)

// Sentinel errors. Every error the service returns wraps one of these (or is a
// *ValidationError), and the API maps each to one status.
var (
	// ErrNotFound: no configuration, example or file with that name.
	ErrNotFound = errors.New("not found")
	// ErrExists: the target name is taken.
	ErrExists = errors.New("already exists")
	// ErrInvalid: the request is malformed (bad name, wrong shape, path outside the
	// configs dir); the message says what to change.
	ErrInvalid = errors.New("invalid request")
	// ErrTooLarge: the configuration would be written as a file larger than the cap.
	ErrTooLarge = errors.New("configuration too large")
	// ErrActive: the active configuration cannot be deleted.
	ErrActive = errors.New("Cannot delete the active configuration")
)

// ValidationError lists what is wrong with a configuration or dataloader. SimpleTuner
// answers a bare "Configuration validation failed"; the API returns every message.
type ValidationError struct {
	// Subject is "config" or "dataloader": what the issues are about.
	Subject string
	Issues  options.Issues
}

func (e *ValidationError) Error() string {
	return "Configuration validation failed: " + strings.Join(e.Issues.Errors().Messages(), "; ")
}

// Unwrap exposes the sentinels of the issues (options.ErrPermission, …) to errors.Is.
func (e *ValidationError) Unwrap() []error {
	var out []error
	for _, i := range e.Issues.Errors() {
		if i.Err != nil {
			out = append(out, i.Err)
		}
	}
	return out
}

// Forbidden reports whether every error is a missing permission (hook scripts): the
// request is well-formed, but the caller may not make it.
func (e *ValidationError) Forbidden() bool {
	errs := e.Issues.Errors()
	if len(errs) == 0 {
		return false
	}
	for _, i := range errs {
		if !errors.Is(i.Err, options.ErrPermission) {
			return false
		}
	}
	return true
}
