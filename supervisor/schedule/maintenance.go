package schedule

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"simpletuner/store"
	"simpletuner/supervisor/jobs"
)

// Maintenance is one of the daemon's built-in schedules: owned by the system, listed to
// administrators, changed by nobody. Run does the work and says how many things it
// removed and what it did. A run that removed nothing and failed in nothing is recorded
// on the schedule but is no event: event retention runs every minute, and an event a
// minute saying "deleted 0 events" would be the noise it trims.
type Maintenance struct {
	ID   string // "system-…", the schedule's id
	Name string
	Spec string
	Run  func(ctx context.Context, now time.Time) (n int, detail string, err error)
}

// Install stores the built-in schedules (refreshing name and spec, keeping their run
// history) and removes built-in schedules this daemon no longer has. A built-in schedule
// whose slot passed while the daemon was down runs once.
func (s *Scheduler) Install() error {
	now := s.clock.Now()
	for _, m := range s.opts.Maintenance {
		spec, err := ParseSpec(m.Spec)
		if err != nil {
			return fmt.Errorf("built-in schedule %s: %w", m.ID, err)
		}
		sc, err := s.db.Get(m.ID)
		if errors.Is(err, store.ErrNotFound) {
			sc = &store.Schedule{ID: m.ID, CreatedAt: now.UTC()}
		} else if err != nil {
			return err
		}
		if sc.Spec != m.Spec || sc.NextRunAt == nil {
			next := spec.Next(now.In(s.opts.Location)).UTC()
			sc.NextRunAt = &next
		}
		sc.Name, sc.Spec, sc.Action = m.Name, m.Spec, store.ScheduleAction{Kind: ActionMaintenance}
		sc.Enabled, sc.System, sc.MissedPolicy, sc.Owner, sc.OwnerID, sc.UpdatedAt = true, true, MissedRunOnce, "system", 0, now.UTC()
		if err := s.db.Put(sc); err != nil {
			return err
		}
	}
	all, err := s.db.List()
	if err != nil {
		return err
	}
	for _, sc := range all {
		if _, ok := s.maint[sc.ID]; sc.System && !ok {
			if err := s.db.Delete(sc.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
		}
	}
	s.changed()
	return nil
}

// Trimmer enforces the event retention the daemon was started with (events.Hub).
type Trimmer interface{ Trim() int }

// EventRetention is the built-in schedule that trims stored events by the daemon's
// --event-retention and --event-retention-age.
func EventRetention(t Trimmer, spec string) Maintenance {
	return Maintenance{ID: "system-event-retention", Name: "Event retention", Spec: spec,
		Run: func(context.Context, time.Time) (int, string, error) {
			n := t.Trim()
			return n, fmt.Sprintf("deleted %d events", n), nil
		}}
}

// JobRetention is the built-in schedule that deletes ended jobs (record and job
// directory, never the output directory) older than maxAge, keeping the keepLast newest;
// with both zero it keeps everything.
func JobRetention(js Jobs, maxAge time.Duration, keepLast int, spec string) Maintenance {
	return Maintenance{ID: "system-job-retention", Name: "Job retention", Spec: spec,
		Run: func(_ context.Context, now time.Time) (int, string, error) {
			if maxAge <= 0 && keepLast <= 0 {
				return 0, "job retention is off (--job-retention-age, --job-retention-count): every job is kept", nil
			}
			all, err := js.List()
			if err != nil {
				return 0, "", err
			}
			var items []aged
			for _, j := range all {
				if jobs.Terminal(j.Status) {
					items = append(items, aged{id: j.ID, rank: j.Seq, at: endedAt(j)})
				}
			}
			n := 0
			var errs []error
			for _, id := range expired(items, keepLast, max(maxAge, 0), now) {
				if err := js.Delete(id); err != nil {
					errs = append(errs, fmt.Errorf("job %s: %w", id, err))
					continue
				}
				n++
			}
			return n, fmt.Sprintf("deleted %d jobs", n), errors.Join(errs...)
		}}
}

// StagingPruner removes upload staging files older than a limit (datasets.Service).
type StagingPruner interface {
	PruneStaging(olderThan time.Duration, now time.Time) (int, error)
}

// UploadStaging is the built-in schedule that removes upload staging files left behind
// (by a daemon killed mid-upload) once they are older than maxAge.
func UploadStaging(p StagingPruner, maxAge time.Duration, spec string) Maintenance {
	return Maintenance{ID: "system-upload-staging", Name: "Stale upload staging", Spec: spec,
		Run: func(_ context.Context, now time.Time) (int, string, error) {
			n, err := p.PruneStaging(maxAge, now)
			return n, fmt.Sprintf("removed %d stale upload files", n), err
		}}
}

// OrphanSockets is the built-in schedule that removes plugin sockets in runDir that no
// job which has not ended uses (a trainer that died without removing its socket) once
// they are older than minAge, so a socket being set up right now is never taken.
func OrphanSockets(js Jobs, runDir string, minAge time.Duration, spec string) Maintenance {
	return Maintenance{ID: "system-orphan-sockets", Name: "Orphaned plugin sockets", Spec: spec,
		Run: func(_ context.Context, now time.Time) (int, string, error) {
			all, err := js.List()
			if err != nil {
				return 0, "", err
			}
			inUse := map[string]bool{}
			for _, j := range all {
				if !jobs.Terminal(j.Status) && j.Addr != "" {
					inUse[filepath.Clean(j.Addr)] = true
				}
			}
			n, err := removeOrphans(runDir, inUse, minAge, now)
			return n, fmt.Sprintf("removed %d orphaned sockets", n), err
		}}
}

// removeOrphans removes the unix sockets directly in dir that are not in inUse and are
// older than minAge.
func removeOrphans(dir string, inUse map[string]bool, minAge time.Duration, now time.Time) (int, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, e := range entries {
		if e.Type()&fs.ModeSocket == 0 {
			continue
		}
		path := filepath.Join(dir, e.Name())
		info, err := e.Info()
		if err != nil || inUse[path] || now.Sub(info.ModTime()) < minAge {
			continue
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}
