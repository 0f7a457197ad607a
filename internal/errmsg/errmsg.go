// Package errmsg builds errors that read as one sentence for a person and unwrap to a
// package's sentinel error. Services return them so the API layer can map the sentinel
// to a status with errors.Is and still show the sentence as it is, without the
// "sentinel: " prefix that fmt.Errorf("%w: …") would put in front of it.
package errmsg

import (
	"fmt"
	"strconv"
	"strings"
)

// Error is a message for a person that unwraps to Sentinel.
type Error struct {
	// Sentinel is the package error the message stands for (ErrNotFound, …).
	Sentinel error
	// Msg is the whole text Error returns.
	Msg string
}

func (e *Error) Error() string { return e.Msg }

// Unwrap returns the sentinel, for errors.Is and errors.As.
func (e *Error) Unwrap() error { return e.Sentinel }

// New formats the message and ties it to sentinel.
func New(sentinel error, format string, args ...any) error {
	return &Error{Sentinel: sentinel, Msg: fmt.Sprintf(format, args...)}
}

// Clip prepares user input echoed in a message: at most 80 characters (the rest is
// "…"), control characters shown escaped so they cannot break a line or a terminal.
func Clip(s string) string {
	if r := []rune(s); len(r) > 80 {
		s = string(r[:80]) + "…"
	}
	if strings.IndexFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0 {
		q := strconv.Quote(s)
		return q[1 : len(q)-1]
	}
	return s
}
