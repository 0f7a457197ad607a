package webhooks

import "errors"

// Sentinel errors; callers test them with errors.Is.
var (
	// ErrInvalidConfig: --webhook_config is malformed; the wrapped message names the
	// webhook and the field.
	ErrInvalidConfig = errors.New("invalid webhook config")
	// ErrBlocked: the destination is an address or name webhooks may not reach (link-local,
	// cloud metadata, or private under Policy.DenyPrivate). The message names the class.
	ErrBlocked = errors.New("webhook destination blocked")
	// ErrClosed: the dispatcher has been closed.
	ErrClosed = errors.New("webhook dispatcher closed")
)
