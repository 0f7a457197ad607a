package datasets

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"simpletuner/internal/errmsg"
	"sort"
	"strings"
	"time"
)

// Settings is where the admin setting allow_dataset_paths_outside_dir is read from
// (store.Settings satisfies it).
type Settings interface {
	Get(name string, v any) (bool, error)
}

// AllowOutsideSetting names the admin setting that lets paths leave the datasets dir.
const AllowOutsideSetting = "allow_dataset_paths_outside_dir"

// stagingDir is the hidden folder in the datasets root where uploads are assembled; it
// is emptied at start, so a killed extraction leaves nothing behind for long.
const stagingDir = ".staging"

// Options configure a Service.
type Options struct {
	// Dir is the datasets directory.
	Dir      string
	Settings Settings
	Limits   Limits
}

// Service is the datasets directory. It is safe for concurrent use: every write is a
// create-exclusive temp file followed by a rename or link, so concurrent uploads into one
// folder never corrupt each other.
type Service struct {
	dir      string // absolute
	realDir  string // dir with symlinks resolved, to recognise absolute paths either way
	root     *os.Root
	settings Settings
	limits   Limits
}

// New opens the datasets directory (creating it) and clears leftovers of uploads that
// were interrupted by a crash.
func New(o Options) (*Service, error) {
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("datasets dir %s: %w", o.Dir, err)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("create datasets dir: %w", err)
	}
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, fmt.Errorf("datasets dir %s: %w", dir, err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("open datasets dir: %w", err)
	}
	if err := root.RemoveAll(stagingDir); err != nil {
		root.Close()
		return nil, fmt.Errorf("clear %s: %w", stagingDir, err)
	}
	if err := root.Mkdir(stagingDir, 0o750); err != nil {
		root.Close()
		return nil, fmt.Errorf("create %s: %w", stagingDir, err)
	}
	return &Service{dir: dir, realDir: real, root: root, settings: o.Settings, limits: o.Limits.withDefaults()}, nil
}

// Close releases the datasets directory.
func (s *Service) Close() error { return s.root.Close() }

// Dir returns the absolute datasets directory.
func (s *Service) Dir() string { return s.dir }

// place is a resolved directory path.
type place struct {
	root      *os.Root // the datasets root, or "/" when outside paths are allowed
	rel       string   // the path within root ("." for root itself)
	abs       string   // the absolute path, for answers
	shown     string   // how messages name it: the caller's own spelling
	staging   string   // a directory in the same root for temp files
	ownsRoot  bool
	stagingMk bool // staging was created for this place and is removed by close
}

func (p *place) close() {
	if p.stagingMk {
		_ = p.root.Remove(p.staging) // only if empty: another upload may be using it
	}
	if p.ownsRoot {
		p.root.Close()
	}
}

func (s *Service) allowOutside() bool {
	if s.settings == nil {
		return false
	}
	var v bool
	ok, err := s.settings.Get(AllowOutsideSetting, &v)
	return err == nil && ok && v
}

// within returns p relative to base when p is base or below it.
func within(base, p string) (string, bool) {
	rel, err := filepath.Rel(base, p)
	if err != nil || !filepath.IsLocal(rel) && rel != "." {
		return "", false
	}
	return rel, true
}

// resolve maps a path from a request to a place. Relative paths are taken under the
// datasets dir; absolute ones must lie inside it unless the admin allowed otherwise.
// Only lexical checks happen here: symlinks are contained by os.Root on every access.
func (s *Service) resolve(p string) (*place, error) {
	shown := p
	if shown == "" {
		shown = "."
	}
	if hasControl(p) || strings.Contains(p, `\`) {
		return nil, errmsg.New(ErrInvalid, "Invalid path %s: control characters and backslashes are not allowed", show(p))
	}
	c := filepath.Clean(p)
	if strings.Count(c, "/")+1 > s.limits.MaxDepth {
		return nil, errmsg.New(ErrInvalid, "Invalid path %s: more than %d components", show(p), s.limits.MaxDepth)
	}
	for _, part := range strings.Split(c, "/") {
		if len(part) > 255 {
			return nil, errmsg.New(ErrInvalid, "Invalid path: a component is longer than 255 bytes")
		}
	}
	if !filepath.IsAbs(c) {
		if p != "" && !filepath.IsLocal(c) && c != "." {
			return nil, errmsg.New(ErrInvalid, "Invalid path %s: it climbs out of the datasets directory; give a path inside it", show(p))
		}
		return &place{root: s.root, rel: c, abs: filepath.Join(s.dir, c), shown: shown, staging: stagingDir}, nil
	}
	for _, base := range []string{s.dir, s.realDir} {
		if rel, ok := within(base, c); ok {
			return &place{root: s.root, rel: rel, abs: filepath.Join(s.dir, rel), shown: shown, staging: stagingDir}, nil
		}
	}
	if !s.allowOutside() {
		return nil, errmsg.New(ErrOutside, "Access denied: path is outside configured datasets directory. Enable 'allow_dataset_paths_outside_dir' to browse other locations.")
	}
	root, err := os.OpenRoot("/")
	if err != nil {
		return nil, err
	}
	rel := strings.TrimPrefix(c, "/")
	if rel == "" {
		rel = "."
	}
	return &place{root: root, rel: rel, abs: c, shown: shown, staging: filepath.Join(rel, ".simpletuner-staging"), ownsRoot: true}, nil
}

// isEscape reports an os.Root refusal (a symlink or ".." leading outside the root).
// os does not export the error, so its text is matched.
func isEscape(err error) bool {
	return err != nil && strings.Contains(err.Error(), "path escapes from parent")
}

// fsErr maps an os.Root error about a place to a sentinel with a message that names the
// path as the caller wrote it (never the server's absolute path).
func fsErr(err error, pl *place) error {
	switch {
	case isEscape(err):
		return errmsg.New(ErrInvalid, "Invalid path %s: it leads outside the datasets directory (through a symlink or '..')", show(pl.shown))
	case errors.Is(err, fs.ErrNotExist):
		return errmsg.New(ErrNotFound, "Directory does not exist: %s (create it first with POST /api/datasets/folders)", show(pl.shown))
	case errors.Is(err, fs.ErrPermission):
		return errmsg.New(ErrInvalid, "Permission denied: %s", show(pl.shown))
	}
	return err
}

// dir resolves a path that must be an existing directory.
func (s *Service) dirPlace(p string) (*place, error) {
	pl, err := s.resolve(p)
	if err != nil {
		return nil, err
	}
	st, err := pl.root.Stat(pl.rel)
	if err != nil {
		pl.close()
		return nil, fsErr(err, pl)
	}
	if !st.IsDir() {
		pl.close()
		return nil, errmsg.New(ErrInvalid, "Path is not a directory: %s", show(pl.shown))
	}
	if pl.ownsRoot {
		if err := pl.root.MkdirAll(pl.staging, 0o750); err != nil {
			pl.close()
			return nil, fsErr(err, pl)
		}
		pl.stagingMk = true
	}
	return pl, nil
}

// FolderResult is the answer of POST /api/datasets/folders.
type FolderResult struct {
	Success bool    `json:"success"`
	Path    string  `json:"path"`
	Name    string  `json:"name"`
	Error   *string `json:"error"`
}

// CreateFolder makes parent/name.
func (s *Service) CreateFolder(parent, name string) (*FolderResult, error) {
	if err := CheckFolderName(name); err != nil {
		return nil, err
	}
	pl, err := s.dirPlace(parent)
	if err != nil {
		return nil, err
	}
	defer pl.close()
	if err := pl.root.Mkdir(filepath.Join(pl.rel, name), 0o750); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, errmsg.New(ErrExists, "Folder '%s' already exists", show(name))
		}
		return nil, fsErr(err, pl)
	}
	return &FolderResult{Success: true, Path: filepath.Join(pl.abs, name), Name: name}, nil
}

// Entry of a folder listing.
type ListEntry struct {
	Name       string `json:"name"`
	Path       string `json:"path"`
	IsDir      bool   `json:"is_dir"`
	Size       int64  `json:"size"`
	ModifiedAt string `json:"modified_at"`
}

// Listing is the answer of GET /api/datasets/browse.
type Listing struct {
	Path         string      `json:"path"`
	AbsolutePath string      `json:"absolute_path"`
	Parent       *string     `json:"parent"`
	Entries      []ListEntry `json:"entries"`
	Truncated    bool        `json:"truncated"`
}

// maxListing bounds one listing.
const maxListing = 10_000

// Browse lists a folder: directories first, then files, each sorted by name. Hidden
// entries (the staging folder among them) are left out.
func (s *Service) Browse(p string) (*Listing, error) {
	pl, err := s.dirPlace(p)
	if err != nil {
		return nil, err
	}
	defer pl.close()
	f, err := pl.root.Open(pl.rel)
	if err != nil {
		return nil, fsErr(err, pl)
	}
	defer f.Close()
	ents, err := f.ReadDir(maxListing + 1)
	if err != nil && len(ents) == 0 && !errors.Is(err, io.EOF) {
		return nil, fsErr(err, pl)
	}
	out := &Listing{Path: filepath.ToSlash(pl.rel), AbsolutePath: pl.abs, Entries: []ListEntry{}}
	if len(ents) > maxListing {
		ents, out.Truncated = ents[:maxListing], true
	}
	if pl.rel != "." {
		parent := filepath.ToSlash(filepath.Dir(pl.rel))
		out.Parent = &parent
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		le := ListEntry{Name: e.Name(), Path: filepath.ToSlash(filepath.Join(pl.rel, e.Name())), IsDir: e.IsDir()}
		if info, err := e.Info(); err == nil {
			le.Size, le.ModifiedAt = info.Size(), info.ModTime().UTC().Format(time.RFC3339)
			if e.IsDir() {
				le.Size = 0
			}
		}
		out.Entries = append(out.Entries, le)
	}
	sort.Slice(out.Entries, func(i, j int) bool {
		a, b := out.Entries[i], out.Entries[j]
		if a.IsDir != b.IsDir {
			return a.IsDir
		}
		return a.Name < b.Name
	})
	return out, nil
}

func randomID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
