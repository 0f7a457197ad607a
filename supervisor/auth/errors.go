package auth

import (
	"errors"
	"fmt"
	"time"
)

// Sentinel errors of the auth service. The API layer maps each to one HTTP status.
var (
	// ErrInvalidCredentials: wrong username or password (one message for both, on purpose).
	ErrInvalidCredentials = errors.New("Invalid username or password")
	// ErrUnauthenticated: no valid credentials were presented.
	ErrUnauthenticated = errors.New("Authentication required")
	// ErrInvalidAPIKey: an API key was presented but is unknown, revoked or expired.
	ErrInvalidAPIKey = errors.New("Invalid, revoked or expired API key")
	// ErrForbidden: authenticated, but lacking a permission.
	ErrForbidden = errors.New("Permission denied")
	// ErrSetupRequired: no administrator exists yet and the caller is not local.
	ErrSetupRequired = errors.New("Setup required")
	// ErrSetupDone: the first administrator already exists.
	ErrSetupDone = errors.New("Setup already completed. Use normal registration.")
	// ErrSetupInProgress: another request is creating the first administrator right now.
	ErrSetupInProgress = errors.New("Another request is creating the first administrator; check GET /api/auth/setup/status, then log in or try again")
	// ErrInvalid: the request is malformed; the wrapped message says how.
	ErrInvalid = errors.New("invalid request")
	// ErrExists: a user with that username or e-mail exists.
	ErrExists = errors.New("already exists")
	// ErrNotFound: no such user or key.
	ErrNotFound = errors.New("not found")
	// ErrRegistrationDisabled: public registration is off.
	ErrRegistrationDisabled = errors.New("Public registration is disabled. Contact an administrator to create an account.")
	// ErrBusy: too many password hashes are running; try again shortly.
	ErrBusy = errors.New("Server busy, try again shortly")
)

// RateLimitError says the caller must wait before trying again.
type RateLimitError struct {
	RetryAfter time.Duration
}

func (e *RateLimitError) Error() string {
	return fmt.Sprintf("Too many attempts. Try again in %d seconds.", int(e.RetryAfter.Seconds()+0.999))
}

// invalidf wraps ErrInvalid with a message a person can act on.
func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Message returns the human part of an error built by invalidf (without the sentinel
// prefix), or err.Error() otherwise.
func Message(err error) string {
	s := err.Error()
	p := ErrInvalid.Error() + ": "
	if len(s) > len(p) && s[:len(p)] == p {
		return s[len(p):]
	}
	return s
}
