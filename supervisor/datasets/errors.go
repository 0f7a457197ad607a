package datasets

import "errors"

// Sentinel errors; the API maps each to one status.
var (
	// ErrInvalid: a bad path, name or request (400).
	ErrInvalid = errors.New("invalid request")
	// ErrOutside: the path is outside the datasets directory and the admin has not
	// allowed that (403).
	ErrOutside = errors.New("path outside the datasets directory")
	// ErrNotFound: the directory does not exist (404).
	ErrNotFound = errors.New("not found")
	// ErrExists: a folder or file of that name exists (400, as SimpleTuner answers).
	ErrExists = errors.New("already exists")
	// ErrArchive: the zip archive is rejected as a whole (400); the message names the entry.
	ErrArchive = errors.New("archive rejected")
	// ErrSkipped: one uploaded file was refused (bad name, type or size); the upload of
	// the other files goes on and the message is reported in the result.
	ErrSkipped = errors.New("file skipped")
)
