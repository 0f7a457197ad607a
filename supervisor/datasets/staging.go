package datasets

import (
	"errors"
	"io/fs"
	"path/filepath"
	"time"
)

// PruneStaging removes entries of the datasets root's staging folder (upload .part
// files, archives and extraction folders) last modified more than olderThan before now:
// what a daemon killed mid-upload left behind. An upload in progress writes to its entry
// continuously, so a limit of hours never takes one. It returns how many entries it
// removed. The daemon's built-in schedule "system-upload-staging" calls it.
func (s *Service) PruneStaging(olderThan time.Duration, now time.Time) (int, error) {
	dir, err := s.root.Open(stagingDir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	entries, err := dir.ReadDir(-1)
	dir.Close()
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, e := range entries {
		info, err := e.Info()
		if err != nil || now.Sub(info.ModTime()) <= olderThan {
			continue
		}
		if err := s.root.RemoveAll(filepath.Join(stagingDir, e.Name())); err != nil {
			errs = append(errs, err)
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}
