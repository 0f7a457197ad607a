package daemon

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"simpletuner/store"
	"simpletuner/supervisor/auth"
	"simpletuner/supervisor/datasets"
	"simpletuner/supervisor/events"
	"simpletuner/supervisor/jobs"
	"simpletuner/supervisor/schedule"
	"simpletuner/supervisor/training"
)

// Built-in maintenance (part "schedule", issue 17): how often, and how old a leftover must
// be before it is removed.
const (
	eventRetentionSpec = "@every 1m"
	maintenanceSpec    = "@hourly"
	staleUploadAge     = 24 * time.Hour
	orphanSocketAge    = time.Hour
)

// newScheduler builds the scheduler of user schedules and the daemon's built-in
// maintenance schedules (event and job retention, stale upload staging, orphaned plugin
// sockets), and installs the built-in ones.
func newScheduler(cfg *Config, db *store.DB, as *auth.Service, ts *training.Service, jm *jobs.Manager, hub *events.Hub,
	ds *datasets.Service, log *slog.Logger) (*schedule.Scheduler, error) {
	spec := cfg.MaintenanceSpec
	if spec == "" {
		spec = maintenanceSpec
	} else if _, err := schedule.ParseSpec(spec); err != nil {
		return nil, fmt.Errorf("--maintenance-schedule: %w", err)
	}
	sched := schedule.New(schedule.Options{Store: db, Users: as, Training: ts, Jobs: jm, Events: hub, OutputRoot: cfg.OutputRoot, Log: log,
		Maintenance: []schedule.Maintenance{
			schedule.EventRetention(hub, eventRetentionSpec),
			schedule.JobRetention(jm, cfg.JobRetentionAge, cfg.JobRetentionCount, spec),
			schedule.UploadStaging(ds, staleUploadAge, spec),
			schedule.OrphanSockets(jm, filepath.Join(cfg.Home, "run"), orphanSocketAge, spec),
		}})
	if err := sched.Install(); err != nil {
		return nil, err
	}
	return sched, nil
}
