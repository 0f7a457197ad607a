package checkpoint

import (
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"simpletuner/plugins"
)

// PlanPrune decides which checkpoints retention removes: per kind (standard, rolling), the
// complete checkpoints beyond the newest limit, except justSaved and any leased one.
// Incomplete checkpoints are neither counted nor pruned (resume verification deals with
// them). A limit of 0 or less keeps everything; since a positive limit keeps the newest
// one, retention never leaves fewer than one complete checkpoint of a kind.
func PlanPrune(refs []Ref, justSaved string, r Retention, leased func(name string) bool) []Ref {
	var out []Ref
	for _, rolling := range []bool{false, true} {
		limit := r.TotalLimit
		if rolling {
			limit = r.RollingTotalLimit
		}
		if limit <= 0 {
			continue
		}
		var kind []Ref
		for _, ref := range refs {
			if ref.Rolling == rolling && ref.Complete {
				kind = append(kind, ref)
			}
		}
		sort.SliceStable(kind, func(i, j int) bool { return kind[i].Step > kind[j].Step })
		if len(kind) <= limit {
			continue
		}
		for _, ref := range kind[limit:] {
			if ref.Name == justSaved || (leased != nil && leased(ref.Name)) {
				continue
			}
			out = append(out, ref)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Step < out[j].Step })
	return out
}

// Prune applies the Manager's retention now, protecting keep (normally the checkpoint just
// saved; "" protects nothing beyond the limits). It returns the names removed.
func (m *Manager) Prune(keep string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.pruneLocked(keep)
}

func (m *Manager) pruneLocked(keep string) ([]string, error) {
	r := m.opts.Retention
	if r.TotalLimit <= 0 && r.RollingTotalLimit <= 0 {
		return nil, nil
	}
	refs, err := m.list(false)
	if err != nil {
		return nil, err
	}
	m.leaseMu.Lock()
	victims := PlanPrune(refs, keep, r, m.leasedLocked)
	m.leaseMu.Unlock()

	var pruned []string
	var errs []error
	for _, v := range victims {
		trash, err := m.trashOne(v.Name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if trash == "" {
			continue // leased meanwhile
		}
		pruned = append(pruned, v.Name)
		if err := m.fs.RemoveAll(trash); err != nil {
			// The checkpoint is already invisible; Cleanup finishes the deletion.
			m.warn(Warning{Kind: WarnCleanupFailed, Name: v.Name, Path: trash, Message: "could not finish deleting a pruned checkpoint", Err: err})
		}
	}
	return pruned, errors.Join(errs...)
}

// trashOne atomically renames a checkpoint to .trash-<name>-<rand> (so a crash mid-delete
// never leaves a half-deleted dir that looks like a checkpoint) and fsyncs output_dir. It
// re-checks the lease under leaseMu, so a lease taken after planning still wins; it then
// returns "".
func (m *Manager) trashOne(name string) (string, error) {
	m.leaseMu.Lock()
	defer m.leaseMu.Unlock()
	if m.leasedLocked(name) {
		return "", nil
	}
	trash := filepath.Join(m.dir, trashPrefix+name+"-"+randSuffix())
	if err := m.fs.Rename(filepath.Join(m.dir, name), trash); err != nil {
		return "", fmt.Errorf("checkpoint: prune %s: %w", name, err)
	}
	if err := m.fs.SyncDir(m.dir); err != nil {
		return "", fmt.Errorf("checkpoint: prune %s: %w", name, err)
	}
	return trash, nil
}

// Cleanup garbage-collects what a crash can leave in output_dir: temp dirs of unfinished
// saves (.tmp-checkpoint-*, and SimpleTuner's checkpoint-<n>-tmp), trash of unfinished
// deletions (.trash-*). A checkpoint that a same-step save had moved aside and whose
// replacement never arrived is renamed back instead of deleted. Call it at start, before
// Resume and before the first Save. It returns the paths removed.
func (m *Manager) Cleanup() ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	entries, err := m.fs.ReadDir(m.dir)
	if err != nil {
		if isNotExist(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("checkpoint: cleanup %s: %w", m.dir, err)
	}
	var removed []string
	var errs []error
	remove := func(p string) {
		if err := m.fs.RemoveAll(p); err != nil {
			errs = append(errs, err)
			m.warn(Warning{Kind: WarnCleanupFailed, Name: filepath.Base(p), Path: p, Message: "could not remove leftover", Err: err})
			return
		}
		removed = append(removed, p)
	}
	for _, e := range entries {
		name := e.Name()
		p := filepath.Join(m.dir, name)
		switch {
		case strings.HasPrefix(name, replacedPrefix):
			orig := strings.TrimPrefix(name, replacedPrefix)
			if i := strings.LastIndexByte(orig, '-'); i > 0 {
				orig = orig[:i]
			}
			if _, _, ok := plugins.ParseCheckpointName(orig); ok && e.IsDir() {
				if _, err := m.fs.Lstat(filepath.Join(m.dir, orig)); isNotExist(err) {
					if err := m.fs.Rename(p, filepath.Join(m.dir, orig)); err != nil {
						errs = append(errs, err)
						continue
					}
					m.warn(Warning{Kind: WarnRestored, Name: orig, Path: filepath.Join(m.dir, orig),
						Message: "a save of the same step was interrupted; the previous checkpoint was put back"})
					continue
				}
			}
			remove(p)
		case strings.HasPrefix(name, tmpPrefix), strings.HasPrefix(name, trashPrefix):
			remove(p)
		case strings.HasSuffix(name, "-tmp") && e.IsDir():
			if _, _, ok := plugins.ParseCheckpointName(strings.TrimSuffix(name, "-tmp")); ok {
				remove(p)
			}
		}
	}
	if len(removed) > 0 {
		if err := m.fs.SyncDir(m.dir); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return removed, fmt.Errorf("checkpoint: cleanup: %w", err)
	}
	return removed, nil
}
