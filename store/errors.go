package store

import "errors"

// Sentinel errors returned by every store. Callers test them with errors.Is.
var (
	// ErrNotFound means the record does not exist.
	ErrNotFound = errors.New("not found")
	// ErrExists means a record with the same unique key (username, e-mail, …) exists.
	ErrExists = errors.New("already exists")
	// ErrConflict means a concurrent transaction changed what this one read; retry.
	ErrConflict = errors.New("concurrent update conflict")
	// ErrLocked means another process holds the state directory.
	ErrLocked = errors.New("state directory is in use by another process")
	// ErrCorrupt means the state directory cannot be trusted (damaged or unreadable).
	ErrCorrupt = errors.New("state directory is damaged or unreadable")
	// ErrSetupDone means the first administrator already exists.
	ErrSetupDone = errors.New("setup already completed")
	// ErrLastAdmin means a change would leave no active administrator.
	ErrLastAdmin = errors.New("no other active administrator")
)
