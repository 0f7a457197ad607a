package hooks

import (
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// programPath is how the child names the program Run passes it as its first extra file
// (descriptor 3): execve of this path runs that very file, and a #! script's interpreter
// is handed the same path, which it opens while descriptor 3 is still open (extra files
// are not close-on-exec in the child).
const programPath = "/proc/self/fd/3"

// openProgram opens the program at path (absolute) for running. It walks the path from
// "/" one component at a time, each opened with O_PATH|O_NOFOLLOW relative to the
// directory opened before it and checked with fstat on that descriptor, so what is checked
// is exactly what is opened and no symlink is followed anywhere: every directory passes
// checkDir, the file checkFile. The returned O_PATH descriptor needs no read permission
// (a 0711 binary) and is what Run executes, so a rename after the check cannot change it.
func openProgram(path string) (*os.File, error) {
	if !filepath.IsAbs(path) {
		return nil, openFailed(path, unix.EINVAL)
	}
	path = filepath.Clean(path)
	me := euid()
	dir, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, openFailed("/", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(dir, &st); err != nil {
		unix.Close(dir)
		return nil, openFailed("/", err)
	}
	if err := checkDir("/", st.Mode, st.Uid, me); err != nil {
		unix.Close(dir)
		return nil, err
	}
	parts := strings.Split(strings.TrimPrefix(path, "/"), "/")
	cur := "/"
	for i, name := range parts {
		cur = filepath.Join(cur, name)
		fd, err := unix.Openat(dir, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		unix.Close(dir)
		if err != nil {
			return nil, openFailed(cur, err)
		}
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			return nil, openFailed(cur, err)
		}
		if i == len(parts)-1 {
			if err := checkFile(cur, st.Mode, st.Uid, me); err != nil {
				unix.Close(fd)
				return nil, err
			}
			return os.NewFile(uintptr(fd), path), nil
		}
		if err := checkDir(cur, st.Mode, st.Uid, me); err != nil {
			unix.Close(fd)
			return nil, err
		}
		dir = fd
	}
	return nil, openFailed(path, unix.ENOENT) // path was "/"
}
