package configs

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"

	"simpletuner/internal/errmsg"
	"simpletuner/internal/safefile"
	"simpletuner/options"
	"simpletuner/plugins/dataloader"
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
		return errmsg.New(fs.ErrNotExist, "'%s' does not exist", errmsg.Clip(path))
	case errors.Is(err, safefile.ErrNotRegular):
		return errmsg.New(ErrInvalid, "'%s' is not a regular file", errmsg.Clip(path))
	case errors.Is(err, safefile.ErrTooLarge):
		return errmsg.New(ErrInvalid, "'%s' is larger than %d MiB", errmsg.Clip(path), fileLimit>>20)
	case errors.Is(err, fs.ErrPermission):
		return errmsg.New(ErrInvalid, "'%s' cannot be read by the server", errmsg.Clip(path))
	}
	return errmsg.New(ErrInvalid, "'%s' cannot be opened (%v)", errmsg.Clip(path), err)
}

// readOwn reads one of the service's own files (a config, a sidecar, an environment's
// dataloader) through the same checks, confined to the file's folder: the API writes
// only regular files there, so a FIFO, a device or a link out of the folder is not one
// of ours.
func readOwn(path string) ([]byte, error) {
	return safefile.New(filepath.Dir(path)).ReadFile(path, fileLimit)
}

// Folders are the roots a dataloader's folders must lie in (docs/security.md,
// "dataloader folders"): the trainer reads instance_data_dir and creates and writes
// every cache_dir* folder with the daemon's rights, so a dataloader may name only
// folders under these.
type Folders struct {
	// Data holds instance_data_dir: the datasets root and any --allow-data-root.
	Data safefile.Roots
	// Cache holds cache_dir, cache_dir_vae and every other cache_dir* key (and the
	// --cache_dir_vae option): the cache root, the output root and any --allow-data-root.
	Cache safefile.Roots
}

// check says why a folder value may not be used, or returns "". A relative cache folder
// that stays where it is lies inside the job's own directory (the trainer's working
// directory) and is allowed; one that climbs out is not. A relative instance_data_dir
// is refused: the job's directory is new and holds no data, and probing the name
// relative to the daemon's working directory would tell what exists there.
func (f *Folders) check(data bool, value string) string {
	roots, what := f.Cache, "caches"
	if data {
		roots, what = f.Data, "datasets"
	}
	if !filepath.IsAbs(value) {
		switch {
		case data:
			return fmt.Sprintf("'%s' is not an absolute path; use the absolute path of a folder under %s", errmsg.Clip(value), strings.Join(roots.Dirs(), " or "))
		case !filepath.IsLocal(value):
			return fmt.Sprintf("'%s' climbs out of the job's folder; use an absolute path under %s", errmsg.Clip(value), strings.Join(roots.Dirs(), " or "))
		}
		return ""
	}
	if roots.Within(value) == nil {
		return ""
	}
	return fmt.Sprintf("'%s' is outside the folders %s may use (%s; an admin may allow more with --allow-data-root)", errmsg.Clip(value), what, strings.Join(roots.Dirs(), ", "))
}

// OptionFolders checks the options that name a dataloader folder (--cache_dir_vae, the
// default of every dataset's cache_dir_vae) as the datasets' own keys are checked.
func (s *Service) OptionFolders(c *options.Config) options.Issues {
	const name = "--cache_dir_vae"
	v := c.String(name)
	if s.folders == nil || strings.TrimSpace(v) == "" {
		return nil
	}
	if msg := s.folders.check(false, v); msg != "" {
		return options.Issues{{Option: name, Severity: options.SevError, Err: options.ErrPathEscape, Message: name + " " + msg}}
	}
	return nil
}

// datasetFolders checks one dataset's folder values (dataloader.IsFolderKey:
// instance_data_dir and every cache_dir* key; the parser has refused those that are not
// strings). dataOK is false when instance_data_dir was refused, so its readability is
// not probed: that would say whether a folder outside the roots exists.
func datasetFolders(i int, name string, ds map[string]any, f *Folders) (issues options.Issues, dataOK bool) {
	if f == nil {
		return nil, true
	}
	keys := make([]string, 0, len(ds))
	for k := range ds {
		if dataloader.IsFolderKey(k) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	dataOK = true
	for _, k := range keys {
		v, isStr := ds[k].(string)
		if !isStr || strings.TrimSpace(v) == "" {
			continue
		}
		if msg := f.check(k == "instance_data_dir", v); msg != "" {
			issues = append(issues, options.Issue{Option: fmt.Sprintf("datasets[%d].%s", i, k), Severity: options.SevError, Err: options.ErrPathEscape,
				Message: fmt.Sprintf("%s: %s %s", name, k, msg)})
			if k == "instance_data_dir" {
				dataOK = false
			}
		}
	}
	return issues, dataOK
}
