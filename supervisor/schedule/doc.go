// Package schedule runs cron schedules: a user's "submit this environment at 22:00",
// "validate the current job every hour" or "clean up my old jobs nightly", and the
// daemon's own maintenance (event and job retention, stale upload staging, orphaned
// plugin sockets) as built-in schedules owned by the system.
//
// Specs are parsed with robfig/cron/v3 (five fields, descriptors such as @daily or
// @every 6h, an optional CRON_TZ= prefix); the runs are driven here, from an injected
// clock, so tests move time by hand. Schedules live in the store (store.Schedules). Each
// run first claims its slot there with a compare-and-set of next_run_at, so two ticks (or
// two daemons sharing the store) never run one slot twice, and a slot missed while the
// daemon was down becomes, by the schedule's missed_policy, nothing ("skip") or exactly
// one run ("run_once"), however many slots were missed. Every run is an event, and a run
// acts with its owner's permissions as they are when it fires, not when it was created.
package schedule
