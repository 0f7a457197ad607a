package configs

import (
	"errors"
	"io/fs"
	"path/filepath"

	"simpletuner/internal/errmsg"
	"simpletuner/internal/safefile"
)

// fileLimit caps every file the service reads: its own configurations and the files
// options name. No kind needs more than safefile's 1 MiB.
const fileLimit = safefile.DefaultLimit

// errOutsideFiles is the one answer for a file outside the configs directory and the
// allowed roots, whether or not it exists (docs/security.md, "files a request names").
var errOutsideFiles = errmsg.New(ErrInvalid, "the file is outside the configs directory and the folders an admin allowed with --allow-file-root; put it in the configs directory")

// ReadFile reads a file an option names (data_backend_config, webhook_config,
// lycoris_config, user_prompt_library, publishing_config): a regular file of at most
// 1 MiB inside the configs directory or an allowed root, opened without following a
// link out of it and without blocking on a FIFO. A missing file wraps fs.ErrNotExist;
// other errors are ErrInvalid with a message that neither quotes the file nor says
// whether a path outside the roots exists.
func (s *Service) ReadFile(path string) ([]byte, error) {
	data, err := s.files.ReadFile(path, fileLimit)
	return data, fileErr(path, err)
}

// CheckFile makes ReadFile's checks without reading (options.ValidateOptions.CheckFile).
func (s *Service) CheckFile(path string) error {
	return fileErr(path, s.files.Check(path, fileLimit))
}

// fileErr turns safefile's errors into sentences. Paths outside the roots are never
// echoed: errOutsideFiles is the same for every one of them.
func fileErr(path string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, safefile.ErrOutside):
		return errOutsideFiles
	case errors.Is(err, fs.ErrNotExist):
		return errmsg.New(fs.ErrNotExist, "'%s' does not exist", clip(path))
	case errors.Is(err, safefile.ErrNotRegular):
		return errmsg.New(ErrInvalid, "'%s' is not a regular file", clip(path))
	case errors.Is(err, safefile.ErrTooLarge):
		return errmsg.New(ErrInvalid, "'%s' is larger than %d MiB", clip(path), fileLimit>>20)
	case errors.Is(err, fs.ErrPermission):
		return errmsg.New(ErrInvalid, "'%s' cannot be read by the server", clip(path))
	}
	return errmsg.New(ErrInvalid, "'%s' cannot be opened (%v)", clip(path), err)
}

// readOwn reads one of the service's own files (a config, a sidecar, an environment's
// dataloader) through the same checks, confined to the file's folder: the API writes
// only regular files there, so a FIFO, a device or a link out of the folder is not one
// of ours.
func readOwn(path string) ([]byte, error) {
	return safefile.New(filepath.Dir(path)).ReadFile(path, fileLimit)
}
