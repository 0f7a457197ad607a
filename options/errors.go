package options

import "errors"

// Sentinel errors. Every error and error-level Issue this package returns wraps one of
// these, so callers can map them to HTTP statuses with errors.Is.
var (
	// ErrUnknownOption: the name is neither a canonical option name nor an alias.
	ErrUnknownOption = errors.New("unknown option")
	// ErrInvalidValue: the value does not parse as the option's type, or is outside its
	// allowed values or range.
	ErrInvalidValue = errors.New("invalid value")
	// ErrRequired: a required option has no value after the merge.
	ErrRequired = errors.New("required option missing")
	// ErrConflict: two options disagree (e.g. full training with a quantised base model).
	ErrConflict = errors.New("conflicting options")
	// ErrPermission: the submitter lacks the permission an option needs (job.hooks).
	ErrPermission = errors.New("permission required")
	// ErrNotFound: a file an option points at does not exist.
	ErrNotFound = errors.New("file not found")
	// ErrPathEscape: a relative path climbs out of the directory it must stay in.
	ErrPathEscape = errors.New("path escapes its base directory")
	// ErrInvalidRegistry: the capabilities handed to New are inconsistent.
	ErrInvalidRegistry = errors.New("invalid registry")
)
