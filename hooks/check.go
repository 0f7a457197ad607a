package hooks

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// ErrUnsafeExecutable means a hook's program may not be run (see CheckExecutable).
var ErrUnsafeExecutable = errors.New("hooks: unsafe hook executable")

// CheckExecutable decides, at submission time, whether the program a hook template names
// may be run by the daemon: an absolute path, inside hooksDir when one is configured,
// not a symlink, a regular executable file, writable by nobody but its owner (file and
// directory), and owned by root or by the daemon's own user. Anything else could let
// another local user change what the daemon runs.
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
		rel, err := filepath.Rel(filepath.Clean(hooksDir), prog)
		if err != nil || rel == "." || strings.HasPrefix(rel, "..") {
			return fmt.Errorf("%w: %s is outside the hooks directory %s", ErrUnsafeExecutable, prog, hooksDir)
		}
	}
	fi, err := os.Lstat(prog)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrUnsafeExecutable, prog, err)
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		return fmt.Errorf("%w: %s is a symlink; name the file it points to", ErrUnsafeExecutable, prog)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%w: %s is not an executable file (chmod +x it)", ErrUnsafeExecutable, prog)
	}
	if err := ownedSafely(prog, fi); err != nil {
		return err
	}
	dir := filepath.Dir(prog)
	di, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrUnsafeExecutable, dir, err)
	}
	if di.Mode().Perm()&0o002 != 0 && di.Mode()&os.ModeSticky == 0 {
		return fmt.Errorf("%w: its directory %s is world-writable", ErrUnsafeExecutable, dir)
	}
	return nil
}

func ownedSafely(path string, fi os.FileInfo) error {
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("%w: %s is writable by group or others (chmod go-w it)", ErrUnsafeExecutable, path)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if uid := uint32(os.Geteuid()); st.Uid != 0 && st.Uid != uid {
		return fmt.Errorf("%w: %s is owned by uid %d, not by root or the daemon's user (uid %d)", ErrUnsafeExecutable, path, st.Uid, uid)
	}
	return nil
}
