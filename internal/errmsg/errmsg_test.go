package errmsg

import (
	"errors"
	"fmt"
	"testing"
)

func TestNewReadsAsItsMessageAndIsItsSentinel(t *testing.T) {
	errGone := errors.New("gone")
	err := New(errGone, "Configuration '%s' not found", "pixart")
	if err.Error() != "Configuration 'pixart' not found" {
		t.Errorf("Error() = %q", err.Error())
	}
	wrapped := fmt.Errorf("load: %w", err)
	if !errors.Is(wrapped, errGone) {
		t.Error("errors.Is does not reach the sentinel through a wrap")
	}
	if errors.Is(wrapped, errors.New("gone")) {
		t.Error("errors.Is matches a different error with the same text")
	}
	var e *Error
	if !errors.As(wrapped, &e) || e.Sentinel != errGone {
		t.Errorf("errors.As = %v, %+v", errors.As(wrapped, &e), e)
	}
}

func TestClip(t *testing.T) {
	long := "ééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééé"
	for in, want := range map[string]string{
		"pixart":     "pixart",
		"a\u0007b\n": `a\ab\n`,
		long:         long[:160] + "…",
	} {
		if got := Clip(in); got != want {
			t.Errorf("Clip(%q) = %q, want %q", in, got, want)
		}
	}
}
