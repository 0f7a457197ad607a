//go:build unix

package checkpoint

import "syscall"

// noFollow makes Open refuse a symlink in the last path component, so a planted link
// inside a checkpoint can never make verification read a file outside it.
const noFollow = syscall.O_NOFOLLOW
