package hfhub

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// Sentinel errors of the cache. Errors returned by this package wrap them (errors.Is).
var (
	// ErrInvalidName means a repo id, revision or file name is malformed or would escape
	// the cache.
	ErrInvalidName = errors.New("hfhub: invalid name")
	// ErrNotCached means the requested file is not in the local cache for that revision.
	ErrNotCached = errors.New("hfhub: not in the local cache")
)

// cachedirTag marks the cache as a cache for backup tools; same content as Python writes.
const cachedirTag = "Signature: 8a477f597d28d172789f06886806bc55\n" +
	"# This file is a cache directory tag created by huggingface_hub.\n" +
	"# For information about cache directory tags, see:\n" +
	"#\thttps://bford.info/cachedir/\n"

var (
	commitRE = regexp.MustCompile(`^[0-9a-f]{40}$`)
	repoRE   = regexp.MustCompile(`^[\w\-.]{1,96}$`)
)

// IsCommit reports whether revision is a full, lower-case commit hash: only those are
// trusted as immutable snapshot names without asking the Hub.
func IsCommit(revision string) bool { return commitRE.MatchString(revision) }

// ValidateRepoID checks a model repo id ("name" or "org/name") with the Hub's rules, which
// also keep the cache folder name unambiguous.
func ValidateRepoID(id string) error {
	parts := strings.Split(id, "/")
	if len(parts) > 2 || strings.Contains(id, "--") || strings.Contains(id, "..") ||
		strings.HasSuffix(id, ".git") {
		return fmt.Errorf("%w: repo id %q", ErrInvalidName, id)
	}
	for _, p := range parts {
		if !repoRE.MatchString(p) || strings.HasPrefix(p, "-") || strings.HasPrefix(p, ".") {
			return fmt.Errorf("%w: repo id %q", ErrInvalidName, id)
		}
	}
	return nil
}

// validateFilename refuses file names that are absolute or climb out of the snapshot.
func validateFilename(name string) error {
	n := strings.ReplaceAll(name, `\`, "/")
	if n == "" || strings.HasPrefix(n, "/") || (len(n) > 1 && n[1] == ':') {
		return fmt.Errorf("%w: file name %q", ErrInvalidName, name)
	}
	for _, seg := range strings.Split(n, "/") {
		if seg == ".." || seg == "" || seg == "." {
			return fmt.Errorf("%w: file name %q", ErrInvalidName, name)
		}
	}
	return nil
}

// validateRevision refuses revisions that would escape refs/ when used as a path.
func validateRevision(rev string) error {
	if rev == "" || strings.HasPrefix(rev, "/") {
		return fmt.Errorf("%w: revision %q", ErrInvalidName, rev)
	}
	for _, seg := range strings.Split(rev, "/") {
		if seg == ".." || seg == "." || seg == "" {
			return fmt.Errorf("%w: revision %q", ErrInvalidName, rev)
		}
	}
	return nil
}

// RepoFolderName is the cache folder of a model repo: "org/name" -> "models--org--name".
func RepoFolderName(repoID string) string {
	return "models--" + strings.ReplaceAll(repoID, "/", "--")
}

// Cache is the Hugging Face hub cache rooted at Dir. The zero value is not usable.
type Cache struct {
	// Dir is the hub cache directory, e.g. ~/.cache/huggingface/hub.
	Dir string
}

// RepoDir is the folder of repoID inside the cache.
func (c Cache) RepoDir(repoID string) string {
	return filepath.Join(c.Dir, RepoFolderName(repoID))
}

// BlobPath is where the content with that (normalized) etag is stored.
func (c Cache) BlobPath(repoID, etag string) string {
	return filepath.Join(c.RepoDir(repoID), "blobs", etag)
}

// SnapshotPath is the path of filename in the snapshot of commit.
func (c Cache) SnapshotPath(repoID, commit, filename string) string {
	return filepath.Join(c.RepoDir(repoID), "snapshots", commit, filepath.FromSlash(filename))
}

// SnapshotDir is the folder of the snapshot of commit.
func (c Cache) SnapshotDir(repoID, commit string) string {
	return filepath.Join(c.RepoDir(repoID), "snapshots", commit)
}

// ResolveCommit turns a revision into a commit hash without the network: a full commit hash
// is itself, anything else (branch, tag, short hash) is read from refs/<revision> as written
// by an earlier online resolution (by this package or by Python).
func (c Cache) ResolveCommit(repoID, revision string) (string, error) {
	if IsCommit(revision) {
		return revision, nil
	}
	if err := validateRevision(revision); err != nil {
		return "", err
	}
	b, err := os.ReadFile(filepath.Join(c.RepoDir(repoID), "refs", filepath.FromSlash(revision)))
	if err != nil {
		return "", fmt.Errorf("%w: no ref %q for %s: %w", ErrNotCached, revision, repoID, err)
	}
	// Python writes no newline; a hand-edited ref may carry one, which is harmless here.
	commit := strings.TrimSpace(string(b))
	if !IsCommit(commit) {
		return "", fmt.Errorf("%w: ref %q of %s holds %q, not a commit", ErrNotCached, revision, repoID, commit)
	}
	return commit, nil
}

// Lookup returns the path of filename of repoID at revision if it is already cached, without
// any network access. The returned path is the snapshot entry (a symlink to the blob).
func (c Cache) Lookup(repoID, revision, filename string) (string, error) {
	if err := ValidateRepoID(repoID); err != nil {
		return "", err
	}
	if err := validateFilename(filename); err != nil {
		return "", err
	}
	commit, err := c.ResolveCommit(repoID, revision)
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(filepath.Join(c.RepoDir(repoID), ".no_exist", commit, filepath.FromSlash(filename))); err == nil {
		return "", fmt.Errorf("%w: %s does not exist in %s at %s (recorded by an earlier request)", ErrNotCached, filename, repoID, revision)
	}
	p := c.SnapshotPath(repoID, commit, filename)
	// Stat follows the symlink, so a dangling link (blob removed) counts as missing.
	st, err := os.Stat(p)
	if err != nil {
		return "", fmt.Errorf("%w: %s at %s (%s): %w", ErrNotCached, filename, revision, repoID, err)
	}
	if st.IsDir() {
		return "", fmt.Errorf("%w: %s at %s (%s) is a directory", ErrNotCached, filename, revision, repoID)
	}
	return p, nil
}

// writeRef records that revision currently points at commit, atomically and without a
// trailing newline (Python readers do not strip it). Nothing is written for a commit hash.
func (c Cache) writeRef(repoID, revision, commit string) error {
	if revision == commit {
		return nil
	}
	if err := validateRevision(revision); err != nil {
		return err
	}
	p := filepath.Join(c.RepoDir(repoID), "refs", filepath.FromSlash(revision))
	if b, err := os.ReadFile(p); err == nil && string(b) == commit {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o777); err != nil {
		return fmt.Errorf("hfhub: ref %s: %w", revision, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), filepath.Base(p)+".*.tmp")
	if err != nil {
		return fmt.Errorf("hfhub: ref %s: %w", revision, err)
	}
	_, werr := tmp.WriteString(commit)
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("hfhub: ref %s: %w", revision, err)
	}
	// CreateTemp makes 0600 files; refs are shared with other users of the cache.
	_ = os.Chmod(tmp.Name(), 0o644)
	if err := os.Rename(tmp.Name(), p); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("hfhub: ref %s: %w", revision, err)
	}
	return nil
}

// linkSnapshot points snapshots/<commit>/<filename> at blobs/<etag> with a relative symlink
// (so the cache can be moved), replacing whatever was there. Without symlinks (disabled, or
// refused by the filesystem) the content itself goes to the snapshot as Python does: a blob
// just downloaded (newBlob) is moved there, an older one is copied.
func (c Cache) linkSnapshot(repoID, commit, filename, etag string, newBlob, noSymlinks bool) (string, error) {
	ptr := c.SnapshotPath(repoID, commit, filename)
	blob := c.BlobPath(repoID, etag)
	if err := os.MkdirAll(filepath.Dir(ptr), 0o777); err != nil {
		return "", fmt.Errorf("hfhub: snapshot %s: %w", filename, err)
	}
	rel, err := filepath.Rel(filepath.Dir(ptr), blob)
	if err != nil {
		rel = blob
	}
	if err := os.Remove(ptr); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("hfhub: snapshot %s: %w", filename, err)
	}
	if !noSymlinks {
		err := os.Symlink(rel, ptr)
		if err == nil {
			return ptr, nil
		}
		// A concurrent writer may have created the same link meanwhile; that is fine.
		if got, rerr := os.Readlink(ptr); rerr == nil && got == rel {
			return ptr, nil
		}
		if errors.Is(err, fs.ErrExist) {
			return "", fmt.Errorf("hfhub: snapshot %s: %w", filename, err)
		}
	}
	if newBlob {
		if err := os.Rename(blob, ptr); err != nil {
			return "", fmt.Errorf("hfhub: snapshot %s: %w", filename, err)
		}
		return ptr, nil
	}
	if err := copyFile(blob, ptr); err != nil {
		return "", fmt.Errorf("hfhub: snapshot %s: %w", filename, err)
	}
	return ptr, nil
}

// copyFile copies src to dst through a temporary file renamed into place, so a reader never
// sees half a file.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := dst + ".incomplete"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o666)
	if err != nil {
		return err
	}
	_, cerr := io.Copy(out, in)
	serr := out.Sync()
	if err := errors.Join(cerr, serr, out.Close()); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// markMissing records that filename does not exist at commit (.no_exist/<commit>/<file>, an
// empty file) and points revision at commit. Failures are ignored: it is only a hint.
func (c Cache) markMissing(repoID, revision, commit, filename string) {
	p := filepath.Join(c.RepoDir(repoID), ".no_exist", commit, filepath.FromSlash(filename))
	if os.MkdirAll(filepath.Dir(p), 0o777) == nil {
		if f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, 0o666); err == nil {
			f.Close()
		}
	}
	_ = c.writeRef(repoID, revision, commit)
}

// IsKnownMissing reports whether an earlier online request found that filename does not
// exist in repoID at revision, so optional files (e.g. a weight variant) need not be asked
// for again offline.
func (c Cache) IsKnownMissing(repoID, revision, filename string) bool {
	if validateFilename(filename) != nil {
		return false
	}
	commit, err := c.ResolveCommit(repoID, revision)
	if err != nil {
		return false
	}
	_, err = os.Stat(filepath.Join(c.RepoDir(repoID), ".no_exist", commit, filepath.FromSlash(filename)))
	return err == nil
}

// writeCachedirTag creates CACHEDIR.TAG once; failures are ignored as it is only a hint.
func (c Cache) writeCachedirTag() {
	p := filepath.Join(c.Dir, "CACHEDIR.TAG")
	if _, err := os.Stat(p); err == nil {
		return
	}
	_ = os.WriteFile(p, []byte(cachedirTag), 0o666)
}

// normalizeEtag strips a weak-validator prefix and quotes: W/"abc" and "abc" become abc.
func normalizeEtag(etag string) string {
	return strings.Trim(strings.TrimLeft(etag, "W/"), `"`)
}
