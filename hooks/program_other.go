//go:build !linux

package hooks

import (
	"fmt"
	"os"
)

// programPath: see program_linux.go.
const programPath = ""

// openProgram refuses: running a hook by descriptor, so it cannot be swapped after the
// check, is implemented for Linux only.
func openProgram(path string) (*os.File, error) {
	return nil, fmt.Errorf("%w: %s: hook scripts run only on Linux", ErrUnsafeExecutable, path)
}
