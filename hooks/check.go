package hooks

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// ErrUnsafeExecutable means a hook's program may not be run (see CheckExecutable).
var ErrUnsafeExecutable = errors.New("hooks: unsafe hook executable")

// CheckExecutable decides, at submission time, whether the program a hook template names
// may be run by the daemon: an absolute path, inside hooksDir when one is configured, and
// then everything openProgram checks: no symlink in any component, every directory on the
// way owned by root or the daemon's user and writable by nobody else (a sticky root-owned
// directory such as /tmp excepted), and a regular executable file owned by root or the
// daemon's user that nobody else may write. Anything else could let another local user
// change what the daemon runs. Run checks all of it again on the file it executes, so a
// change after submission is refused, not run.
func CheckExecutable(template, hooksDir string) error {
	words, err := Split(template)
	if err != nil {
		return err
	}
	if len(words) == 0 {
		return ErrEmptyTemplate
	}
	prog := words[0]
	if strings.ContainsAny(prog, "{}") {
		return fmt.Errorf("%w: the program %q cannot come from a placeholder", ErrUnsafeExecutable, prog)
	}
	if !filepath.IsAbs(prog) {
		return fmt.Errorf("%w: %q is not an absolute path (write /path/to/script)", ErrUnsafeExecutable, prog)
	}
	prog = filepath.Clean(prog)
	if hooksDir != "" {
		// Lexical containment is enough: openProgram refuses a symlink anywhere in the path.
		rel, err := filepath.Rel(filepath.Clean(hooksDir), prog)
		if err != nil || rel == "." || strings.HasPrefix(rel, "..") {
			return fmt.Errorf("%w: %s is outside the hooks directory %s", ErrUnsafeExecutable, prog, hooksDir)
		}
	}
	f, err := openProgram(prog)
	if err != nil {
		return err
	}
	return f.Close()
}

// checkDir decides whether a directory on the way to a hook's program is safe: mode and
// uid as fstat reports them, euid the daemon's user. Whoever may write a directory may
// rename what is in it, and so swap the program after the check.
func checkDir(path string, mode, uid, euid uint32) error {
	switch {
	case mode&syscall.S_IFMT == syscall.S_IFLNK:
		return fmt.Errorf("%w: %s is a symlink; name the real path of the script", ErrUnsafeExecutable, path)
	case mode&syscall.S_IFMT != syscall.S_IFDIR:
		return fmt.Errorf("%w: %s is not a directory", ErrUnsafeExecutable, path)
	case uid != 0 && uid != euid:
		return fmt.Errorf("%w: directory %s is owned by uid %d, not by root or the daemon's user (uid %d)", ErrUnsafeExecutable, path, uid, euid)
	case mode&0o022 != 0 && !(mode&syscall.S_ISVTX != 0 && uid == 0):
		// A sticky directory owned by root (/tmp) lets others add entries but not rename
		// or remove the ones they do not own, and the next component is checked too.
		return fmt.Errorf("%w: directory %s is writable by group or others (chmod go-w it)", ErrUnsafeExecutable, path)
	}
	return nil
}

// checkFile decides whether a hook's program itself is safe to run (see checkDir).
func checkFile(path string, mode, uid, euid uint32) error {
	switch {
	case mode&syscall.S_IFMT == syscall.S_IFLNK:
		return fmt.Errorf("%w: %s is a symlink; name the file it points to", ErrUnsafeExecutable, path)
	case mode&syscall.S_IFMT != syscall.S_IFREG || mode&0o111 == 0:
		return fmt.Errorf("%w: %s is not an executable file (chmod +x it)", ErrUnsafeExecutable, path)
	case mode&0o022 != 0:
		return fmt.Errorf("%w: %s is writable by group or others (chmod go-w it)", ErrUnsafeExecutable, path)
	case uid != 0 && uid != euid:
		return fmt.Errorf("%w: %s is owned by uid %d, not by root or the daemon's user (uid %d)", ErrUnsafeExecutable, path, uid, euid)
	}
	return nil
}

// openFailed words an error opening one component of a program's path.
func openFailed(path string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s does not exist", ErrUnsafeExecutable, path)
	}
	return fmt.Errorf("%w: %s: %w", ErrUnsafeExecutable, path, err)
}

// euid is the daemon's user, the one owner besides root a hook's path may have.
func euid() uint32 { return uint32(os.Geteuid()) }
