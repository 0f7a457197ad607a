package datasets

import (
	"archive/zip"
	"errors"
	"fmt"
	"image"
	_ "image/gif" // DecodeConfig for the pixel cap
	_ "image/jpeg"
	_ "image/png"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"simpletuner/internal/errmsg"
	"strings"
	"syscall"
)

// UploadResult is SimpleTuner's UploadResult.
type UploadResult struct {
	Success       bool     `json:"success"`
	FilesUploaded int      `json:"files_uploaded"`
	FilesSkipped  int      `json:"files_skipped"`
	Errors        []string `json:"errors"`
	TargetPath    string   `json:"target_path"`
}

// maxMessages bounds the per-file messages of one result.
const maxMessages = 200

// Note records a skipped file.
func (r *UploadResult) Note(msg string) {
	r.FilesSkipped++
	if len(r.Errors) < maxMessages {
		r.Errors = append(r.Errors, msg)
	}
}

// Target is an open upload destination: an existing directory.
type Target struct {
	s  *Service
	pl *place
}

// OpenTarget resolves the upload destination; it must be an existing directory.
func (s *Service) OpenTarget(p string) (*Target, error) {
	pl, err := s.dirPlace(p)
	if err != nil {
		return nil, err
	}
	return &Target{s: s, pl: pl}, nil
}

// Close releases the target.
func (t *Target) Close() { t.pl.close() }

// Path is the target's absolute path.
func (t *Target) Path() string { return t.pl.abs }

// Save streams one uploaded file into the target. It is written to a staging file,
// synced, checked (size, image pixel count) and only then linked into place, so readers
// never see a partial file. An existing file is replaced only with overwrite. Errors
// wrapping ErrSkipped concern this file only; any other error (the request body broke
// or hit its cap) ends the upload.
func (t *Target) Save(name string, r io.Reader, overwrite bool) error {
	if err := CheckFileName(name); err != nil {
		return err
	}
	root := t.pl.root
	tmp := filepath.Join(t.pl.staging, randomID()+".part")
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return fmt.Errorf("create staging file: %w", err)
	}
	placed := false
	defer func() {
		if !placed {
			f.Close()
			_ = root.Remove(tmp)
		}
	}()
	max := t.s.limits.MaxFileBytes
	n, err := io.Copy(f, io.LimitReader(r, max+1))
	if err != nil {
		return err // the body: a cap (MaxBytesError) or a broken connection
	}
	if n > max {
		return errmsg.New(ErrSkipped, "File too large (max %s): %s", bytesWord(max), show(name))
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := checkPixels(root, tmp, name, t.s.limits.MaxPixels); err != nil {
		return err
	}
	dest := filepath.Join(t.pl.rel, name)
	if overwrite {
		err = root.Rename(tmp, dest)
	} else {
		err = linkNoClobber(root, tmp, dest)
	}
	switch {
	case errors.Is(err, fs.ErrExist):
		return errmsg.New(ErrSkipped, "File already exists: %s (send overwrite=true to replace it)", show(name))
	case isEscape(err):
		return errmsg.New(ErrSkipped, "Failed to save %s: the path leads outside the datasets directory", show(name))
	case err != nil:
		return errmsg.New(ErrSkipped, "Failed to save %s: %v", show(name), errors.Unwrap(err))
	}
	placed = true
	return nil
}

// linkNoClobber moves old to new unless new exists: a hard link (which fails on an
// existing name, atomically) and removal of old. Where hard links are not supported it
// falls back to check-then-rename.
func linkNoClobber(root *os.Root, old, new string) error {
	err := root.Link(old, new)
	if err == nil {
		return root.Remove(old)
	}
	if errors.Is(err, fs.ErrExist) || isEscape(err) || !(errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.ENOTSUP) || errors.Is(err, syscall.EXDEV)) {
		return err
	}
	if _, err := root.Lstat(new); err == nil {
		return fs.ErrExist
	}
	return root.Rename(old, new)
}

// checkPixels refuses images whose header claims more than max pixels: a decoder would
// allocate gigabytes for a 50000×50000 "image" of a few bytes. Only the header is read.
func checkPixels(root *os.Root, path, name string, max int64) error {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".png", ".jpg", ".jpeg", ".gif":
	default:
		return nil
	}
	f, err := root.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	cfg, _, err := image.DecodeConfig(f)
	if err != nil {
		return nil // not decodable by the standard library; the trainer reports it
	}
	if int64(cfg.Width)*int64(cfg.Height) > max {
		return errmsg.New(ErrSkipped, "Image too large: %s is %d×%d pixels (at most %d megapixels)", show(name), cfg.Width, cfg.Height, max/1_000_000)
	}
	return nil
}

func bytesWord(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%dGB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}

// ExtractZip saves an uploaded zip archive and extracts it into target. The archive is
// streamed to a staging file, checked as a whole (CheckArchive: any bad entry rejects
// it, naming the entry, before anything is extracted), extracted into a staging folder
// and then moved into place: in one rename when the target folder is empty, otherwise
// file by file without overwriting (name collisions become stem_1.ext, stem_2.ext, …).
func (s *Service) ExtractZip(target, filename string, body io.Reader) (*UploadResult, error) {
	if !strings.HasSuffix(strings.ToLower(filename), ".zip") {
		return nil, errmsg.New(ErrInvalid, "File must be a ZIP archive")
	}
	pl, err := s.dirPlace(target)
	if err != nil {
		return nil, err
	}
	defer pl.close()
	root := pl.root
	id := randomID()
	tmpZip := filepath.Join(pl.staging, id+".zip")
	f, err := root.OpenFile(tmpZip, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create staging file: %w", err)
	}
	defer func() {
		f.Close()
		_ = root.Remove(tmpZip)
	}()
	size, err := io.Copy(f, body)
	if err != nil {
		return nil, err
	}
	if n, dirSize, ok := directoryCount(f, size); ok && (n > uint64(s.limits.MaxEntries) || dirSize > uint64(s.limits.MaxEntries)*(46+65535)) {
		return nil, errmsg.New(ErrArchive, "Archive rejected: %d entries (at most %d)", n, s.limits.MaxEntries)
	}
	zr, err := zip.NewReader(f, size)
	if err != nil && !errors.Is(err, zip.ErrInsecurePath) {
		return nil, errmsg.New(ErrInvalid, "Invalid or corrupted zip file")
	}
	// With zipinsecurepath=0 archive/zip reports ErrInsecurePath but still returns the
	// reader; CheckArchive below names the offending entry and rejects the archive.
	entries := make([]Entry, len(zr.File))
	for i, zf := range zr.File {
		entries[i] = Entry{Name: zf.Name, Mode: zf.Mode(), Compressed: zf.CompressedSize64, Uncompressed: zf.UncompressedSize64}
	}
	if err := CheckArchive(entries, size, s.limits); err != nil {
		return nil, err
	}
	allowed := ExtractBudget(size, s.limits)
	quota := &budget{allowed: allowed, left: allowed}
	stage := filepath.Join(pl.staging, id)
	if err := root.Mkdir(stage, 0o750); err != nil {
		return nil, fmt.Errorf("create staging folder: %w", err)
	}
	defer root.RemoveAll(stage) // empty after a whole-folder rename; cleans up otherwise
	res := &UploadResult{Errors: []string{}, TargetPath: pl.abs}
	for _, zf := range zr.File {
		if err := s.extractOne(root, stage, zf, res, quota); err != nil {
			return nil, err
		}
	}
	if res.FilesUploaded == 0 {
		res.Success = false
		if len(res.Errors) == 0 {
			res.Errors = append(res.Errors, "The archive holds no files with a supported type")
		}
		return res, nil
	}
	if err := s.place(pl, stage, res); err != nil {
		return nil, err
	}
	res.Success = true
	return res, nil
}

// budget counts the bytes one extraction may still write (see ExtractBudget).
type budget struct{ allowed, left int64 }

// extractOne writes one entry into the staging folder and takes the bytes it wrote from
// budget (see ExtractBudget); an entry that would overdraw it fails the archive. Entries
// that are merely unwanted (hidden files, unsupported types, images over the pixel cap)
// are skipped and noted; a corrupt entry fails the archive.
func (s *Service) extractOne(root *os.Root, stage string, zf *zip.File, res *UploadResult, b *budget) error {
	name := strings.TrimSuffix(zf.Name, "/")
	if strings.HasSuffix(zf.Name, "/") || zf.Mode().IsDir() {
		return nil // folders are created for the files in them
	}
	for _, part := range strings.Split(name, "/") {
		if strings.HasPrefix(part, ".") || part == "__MACOSX" {
			res.FilesSkipped++
			return nil
		}
	}
	base := filepath.Base(name)
	if !AllowedExtension(base) {
		res.Note(fmt.Sprintf("Unsupported file type: %s", show(name)))
		return nil
	}
	dest := filepath.Join(stage, filepath.FromSlash(name))
	if err := root.MkdirAll(filepath.Dir(dest), 0o750); err != nil {
		// e.g. "a.png" and "a.png/b.png" in one archive
		res.Note(fmt.Sprintf("Failed to save %s: its folder clashes with a file of the same name", show(name)))
		return nil
	}
	out, err := root.OpenFile(dest, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if errors.Is(err, fs.ErrExist) {
		res.Note(fmt.Sprintf("Duplicate entry skipped: %s", show(name)))
		return nil
	}
	if err != nil {
		res.Note(fmt.Sprintf("Failed to save %s", show(name)))
		return nil
	}
	defer out.Close()
	rc, err := zf.Open()
	if err != nil {
		return errmsg.New(ErrArchive, "Archive rejected: entry %q cannot be read: %v", zf.Name, err)
	}
	defer rc.Close()
	// archive/zip fails once an entry yields more than its header declares, so the
	// checked total holds; the LimitReader and the budget are a second guard, counted on
	// the bytes actually written.
	limit := min(zf.UncompressedSize64, uint64(max(b.left, 0)))
	n, err := io.Copy(out, io.LimitReader(rc, int64(limit)+1))
	if err != nil {
		return errmsg.New(ErrArchive, "Archive rejected: entry %q is corrupt: %v", zf.Name, err)
	}
	if uint64(n) > zf.UncompressedSize64 {
		return errmsg.New(ErrArchive, "Archive rejected: entry %q is larger than its header says", zf.Name)
	}
	if n > b.left {
		return errmsg.New(ErrArchive, "Archive rejected: it extracts more than the %d bytes allowed for it (at entry %q)", b.allowed, zf.Name)
	}
	b.left -= n
	if err := out.Sync(); err != nil {
		return err
	}
	if err := checkPixels(root, dest, base, s.limits.MaxPixels); err != nil {
		out.Close()
		_ = root.Remove(dest)
		res.Note(err.Error())
		return nil
	}
	res.FilesUploaded++
	return nil
}

// place moves the extracted staging folder into the target. When the target is an
// empty folder it is removed (rmdir fails on a non-empty one) and the staging folder
// renamed into its place, so the archive's files appear all at once; os.Root.Rename
// does not replace an existing directory, hence the two steps, between which the
// folder is briefly absent. Otherwise every file is linked in without overwriting.
func (s *Service) place(pl *place, stage string, res *UploadResult) error {
	root := pl.root
	if st, err := root.Lstat(pl.rel); err == nil && st.IsDir() && pl.rel != "." {
		// (Lstat: a symlink to a folder is merged into, never replaced.)
		if err := root.Remove(pl.rel); err == nil {
			if err := root.Rename(stage, pl.rel); err == nil {
				return nil
			}
			// Someone re-created the folder in between: merge into theirs.
			_ = root.Mkdir(pl.rel, 0o750)
		}
		// Not empty (or a concurrent upload got there first): merge file by file.
	}
	return fs.WalkDir(root.FS(), filepath.ToSlash(stage), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel := strings.TrimPrefix(p, filepath.ToSlash(stage)+"/")
		dest := filepath.Join(pl.rel, filepath.FromSlash(rel))
		if err := root.MkdirAll(filepath.Dir(dest), 0o750); err != nil {
			return fmt.Errorf("create folder for %s: %w", show(rel), err)
		}
		ext := filepath.Ext(dest)
		stem := strings.TrimSuffix(dest, ext)
		for i := 0; ; i++ {
			cand := dest
			if i > 0 {
				cand = fmt.Sprintf("%s_%d%s", stem, i, ext)
			}
			err := linkNoClobber(root, p, cand)
			if err == nil {
				return nil
			}
			if !errors.Is(err, fs.ErrExist) || i >= 1000 {
				return fmt.Errorf("place %s: %w", show(rel), err)
			}
		}
	})
}
