// Package safefile reads the files a request names, and checks the folders it names,
// against a fixed set of root folders (docs/security.md, "files a request names").
//
// A request may name any path; the daemon runs as a user that can read far more than
// the caller may. So a file is opened beneath one of the roots with os.Root (every
// component opened with O_NOFOLLOW, a symlink followed only while it stays inside the
// root), non-blocking (a FIFO returns at once instead of hanging the request), and read
// only when the opened descriptor is a regular file, through a size cap. A path outside
// every root is refused before the filesystem is touched, so the answer is the same
// whether or not it exists.
package safefile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// DefaultLimit is the size cap of a file read: 1 MiB, far above any configuration,
// dataloader, webhook list or prompt library a person writes by hand.
const DefaultLimit int64 = 1 << 20

// Sentinel errors. ReadFile and Check return one of these, or an error wrapping
// fs.ErrNotExist or fs.ErrPermission for a path inside a root. None of their texts names
// the path or anything read from the file.
var (
	// ErrOutside: the path is not inside any root (or a symlink leads out of it).
	ErrOutside = errors.New("outside the allowed folders")
	// ErrNotRegular: the path is a directory, FIFO, device or socket.
	ErrNotRegular = errors.New("not a regular file")
	// ErrTooLarge: the file is larger than the cap.
	ErrTooLarge = errors.New("larger than the size limit")
)

// openFlags never block (a FIFO without a writer opens at once), never follow a final
// symlink by themselves (os.Root follows it only inside the root) and never leak the
// descriptor into a trainer.
const openFlags = os.O_RDONLY | syscall.O_NONBLOCK | syscall.O_NOFOLLOW | syscall.O_CLOEXEC

// Roots is a set of folders. The zero value holds none: every path is outside.
type Roots struct {
	dirs []string // absolute and cleaned, as given
}

// New returns the roots; empty entries are skipped, relative ones made absolute.
func New(dirs ...string) Roots {
	var r Roots
	for _, d := range dirs {
		if d == "" {
			continue
		}
		abs, err := filepath.Abs(d)
		if err != nil {
			continue
		}
		r.dirs = append(r.dirs, abs)
	}
	return r
}

// Dirs returns the root folders, absolute.
func (r Roots) Dirs() []string { return append([]string(nil), r.dirs...) }

// Empty reports whether there are no roots.
func (r Roots) Empty() bool { return len(r.dirs) == 0 }

// bases returns each root as given and, where it differs, with its own symlinks
// resolved, so a path spelled either way is recognised. A root that does not exist
// (yet) is resolved as far as it exists. They are worked out on every call: a root
// made after the daemon started counts at once.
func (r Roots) bases() []string {
	out := make([]string, 0, 2*len(r.dirs))
	for _, d := range r.dirs {
		out = append(out, d)
		if real, err := resolveExisting(d); err == nil && real != d {
			out = append(out, real)
		}
	}
	return out
}

// within reports whether the clean absolute path p is one of bases or beneath one.
func within(bases []string, p string) bool {
	for _, b := range bases {
		if rel, err := filepath.Rel(b, p); err == nil && filepath.IsLocal(rel) {
			return true
		}
	}
	return false
}

// Within checks a folder a request names, which need not exist yet (a cache folder the
// trainer will make): it must lie inside a root both as written and with the symlinks
// of the part that exists resolved, so a link inside a root cannot lead out of it. It
// returns nil or ErrOutside, and looks at the filesystem only for a path inside a root.
//
// A trainer opens the folder later; a symlink planted between this check and then is
// beyond what a check can stop, which is why only the daemon's own API writes under the
// default roots and the zip upload refuses links.
func (r Roots) Within(path string) error {
	if !filepath.IsAbs(path) {
		return ErrOutside
	}
	p := filepath.Clean(path)
	bases := r.bases()
	if !within(bases, p) {
		return ErrOutside
	}
	real, err := resolveExisting(p)
	if err != nil || !within(bases, real) {
		return ErrOutside
	}
	return nil
}

// resolveExisting resolves the symlinks of the longest part of p that exists and
// appends the rest, which cannot hold a link. A component that exists but cannot be
// resolved (a dangling or looping link) is an error: where it leads is unknown.
func resolveExisting(p string) (string, error) {
	rest := ""
	for cur := p; ; {
		if _, err := os.Lstat(cur); err == nil {
			real, err := filepath.EvalSymlinks(cur)
			if err != nil {
				return "", err
			}
			return filepath.Join(real, rest), nil
		} else if !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		parent := filepath.Dir(cur)
		if parent == cur {
			return p, nil
		}
		rest = filepath.Join(filepath.Base(cur), rest)
		cur = parent
	}
}

// ReadFile reads a regular file inside the roots, at most limit bytes.
func (r Roots) ReadFile(path string, limit int64) ([]byte, error) {
	f, err := r.Open(path, limit)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, ErrTooLarge // it grew after the fstat
	}
	return data, nil
}

// Check makes ReadFile's checks without reading: the path is a regular file inside the
// roots, no larger than limit.
func (r Roots) Check(path string, limit int64) error {
	f, err := r.Open(path, limit)
	if err != nil {
		return err
	}
	return f.Close()
}

// Open opens path beneath a root that lexically contains it, and returns it only when
// the descriptor is a regular file no larger than limit. The caller closes it.
func (r Roots) Open(path string, limit int64) (*os.File, error) {
	if !filepath.IsAbs(path) {
		return nil, ErrOutside
	}
	p := filepath.Clean(path)
	for _, base := range r.bases() {
		rel, err := filepath.Rel(base, p)
		if err != nil || !filepath.IsLocal(rel) {
			continue
		}
		root, err := os.OpenRoot(base)
		if err != nil {
			return nil, fmt.Errorf("open root folder: %w", err)
		}
		f, err := root.OpenFile(rel, openFlags, 0)
		root.Close()
		if err = openErr(err); errors.Is(err, ErrOutside) {
			continue // a link out of this root may still lead into a wider one
		} else if err != nil {
			return nil, err
		}
		st, err := f.Stat() // fstat of the opened descriptor, not of the name
		if err == nil && !st.Mode().IsRegular() {
			err = ErrNotRegular
		}
		if err == nil && st.Size() > limit {
			err = ErrTooLarge
		}
		if err != nil {
			f.Close()
			return nil, err
		}
		return f, nil
	}
	return nil, ErrOutside
}

// errEscapes is os.Root's (unexported) error for a path or symlink that leads out of
// the root; the tests pin its text.
const errEscapes = "path escapes from parent"

// openErr maps os.Root's errors: an escape is ErrOutside; a missing file or folder
// wraps fs.ErrNotExist; the rest keep their errno, without the path.
func openErr(err error) error {
	if err == nil {
		return nil
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	switch {
	case err.Error() == errEscapes:
		return ErrOutside
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		return fmt.Errorf("not found: %w", fs.ErrNotExist)
	case errors.Is(err, syscall.ELOOP):
		return fmt.Errorf("too many symbolic links: %w", err)
	}
	return err
}
