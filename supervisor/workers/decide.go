package workers

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"simpletuner/plugins/workerproto"
	"simpletuner/store"
	"simpletuner/supervisor/jobs"
)

// Worker types (POST /api/admin/workers "worker_type").
const (
	TypePersistent = "persistent"
	TypeEphemeral  = "ephemeral"
)

// statuses are the worker statuses, in the order messages list them.
var statuses = []string{workerproto.StatusConnecting, workerproto.StatusIdle, workerproto.StatusBusy,
	workerproto.StatusOffline, workerproto.StatusDraining}

// rejoin is what the registry does when a worker registers (or sends a heartbeat)
// saying which job it runs.
type rejoin struct {
	// Resume tells the worker to keep the job it reported.
	Resume bool
	// Abandon tells the worker to cancel the job it reported: the orchestrator no
	// longer wants it run there (it ended, was requeued, or went to another worker).
	Abandon bool
	// Resend pushes the assigned job's job_submit again: the worker never got it.
	Resend bool
	// LoseAssigned ends the assigned job's task as lost: the worker had it and no longer
	// runs it (its machine restarted, say).
	LoseAssigned bool
}

// decideRejoin is the resume/abandon decision of a registering worker. reported is the
// job the worker says it runs ("" none); assigned is the job the registry has given
// this worker ("" none: the registry's tasks, rebuilt from the jobs' handles after a
// restart, are the truth) and acked whether the worker ever reported it. The worker
// keeps the reported job only when it is the assigned one; any other it cancels. An
// assigned job the worker does not report is sent again when the worker never had it,
// else it is lost.
func decideRejoin(reported, assigned string, acked bool) rejoin {
	var d rejoin
	switch {
	case reported != "" && reported == assigned:
		d.Resume = true
	case reported != "":
		d.Abandon = true
	}
	if assigned != "" && !d.Resume {
		if acked {
			d.LoseAssigned = true
		} else {
			d.Resend = true
		}
	}
	return d
}

// healthAction is what the health check does to one worker.
type healthAction int

const (
	keep healthAction = iota
	markOffline
	remove
)

// healthLimits are the health check's time limits (from Config).
type healthLimits struct {
	heartbeat, connecting, offlineEphemeral time.Duration
}

// decideHealth is the health check of one worker at now: a registered worker whose
// last heartbeat is older than the heartbeat timeout goes offline; a worker that never
// registered within the connecting timeout is removed (ephemeral) or goes offline
// (persistent); an ephemeral worker offline for longer than its limit is removed. A
// worker bound to a Slurm job waits for it as long as Slurm keeps it pending, and is
// removed by Unbind only.
func decideHealth(w *store.Worker, now time.Time, lim healthLimits) healthAction {
	switch w.Status {
	case workerproto.StatusIdle, workerproto.StatusBusy, workerproto.StatusDraining:
		if w.LastSeen == nil || now.Sub(*w.LastSeen) > lim.heartbeat {
			return markOffline
		}
	case workerproto.StatusConnecting:
		if w.BoundJob != "" || now.Sub(w.CreatedAt) <= lim.connecting {
			return keep
		}
		if w.Type == TypeEphemeral {
			return remove
		}
		return markOffline
	case workerproto.StatusOffline:
		if w.BoundJob == "" && w.Type == TypeEphemeral && w.OfflineSince != nil && now.Sub(*w.OfflineSince) > lim.offlineEphemeral {
			return remove
		}
	}
	return keep
}

// taskLost says whether a task's worker has been silent too long: offline (or gone) for
// longer than the heartbeat timeout counted from its last heartbeat or from when the
// task started waiting on it (a launch, or the daemon's restart), whichever is later. A
// bound worker that never connected is waiting in Slurm's queue, not lost.
func taskLost(w *store.Worker, since, now time.Time, timeout time.Duration) (lost bool, silent time.Duration) {
	if w == nil {
		return true, 0
	}
	if w.Status != workerproto.StatusOffline {
		return false, 0
	}
	if w.BoundJob != "" && w.ConnectedAt == nil {
		return false, 0
	}
	last := since
	if w.LastSeen != nil && w.LastSeen.After(last) {
		last = *w.LastSeen
	}
	silent = now.Sub(last)
	return silent > timeout, silent
}

// canRun reports whether worker w could ever run j: not bound to another job, labels
// matching the job's selector, and enough GPUs (gpusFit).
func canRun(w *store.Worker, j *store.Job) bool {
	return w.BoundJob == "" && jobs.LabelsMatch(j.WorkerLabels, w.Labels) && gpusFit(w.GPU.Count, j.NumGPUs)
}

// gpusFit says whether a worker with have GPUs can take a job that wants want. As on
// this machine (the local allocator), a host without GPUs runs a one-process job on the
// CPU trainer; more than one GPU it cannot give.
func gpusFit(have, want int) bool {
	return have >= want || (have == 0 && want <= 1)
}

// choosePlace picks the worker to start j on now: an idle, connected worker that can
// run it, the one with the fewest GPUs that suffice (ties by id, so the choice is
// stable). ok is false when none is free.
func choosePlace(ws []*store.Worker, connected func(id string) bool, reserved func(id string) bool, j *store.Job) (id string, ok bool) {
	var best *store.Worker
	for _, w := range ws {
		if w.Status != workerproto.StatusIdle || !connected(w.ID) || reserved(w.ID) || !canRun(w, j) {
			continue
		}
		if best == nil || w.GPU.Count < best.GPU.Count || (w.GPU.Count == best.GPU.Count && w.ID < best.ID) {
			best = w
		}
	}
	if best == nil {
		return "", false
	}
	return best.ID, true
}

// selectorText renders a job's selector for messages: {"gpu_type":"a100*"} or {}.
func selectorText(labels map[string]string) string {
	var b strings.Builder
	b.WriteByte('{')
	for i, k := range slices.Sorted(maps.Keys(labels)) {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%q:%q", k, labels[k])
	}
	b.WriteByte('}')
	return b.String()
}

// noMatch is the message refusing (Admit) or holding (Place) a job no worker fits.
func noMatch(j *store.Job) string {
	s := "no registered worker matches worker_labels " + selectorText(j.WorkerLabels)
	if j.NumGPUs > 1 {
		s += fmt.Sprintf(" with at least %d GPUs", j.NumGPUs)
	}
	return s
}

// Limits on the labels an administrator or a worker gives a worker.
const (
	maxWorkerLabels = 32
	maxLabelKey     = 63
	maxLabelValue   = 256
	maxNameLen      = 128
)

// validateWorkerLabels checks a worker's own labels (plain values, not globs).
func validateWorkerLabels(labels map[string]string) error {
	if len(labels) > maxWorkerLabels {
		return fmt.Errorf("%d labels, where at most %d are allowed", len(labels), maxWorkerLabels)
	}
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		switch {
		case k == "":
			return fmt.Errorf("a label has an empty name")
		case len(k) > maxLabelKey:
			return fmt.Errorf("label name %.20q… is longer than %d bytes", k, maxLabelKey)
		case len(labels[k]) > maxLabelValue:
			return fmt.Errorf("the value of label %q is longer than %d bytes", k, maxLabelValue)
		}
	}
	return nil
}

// validateName checks a worker's name.
func validateName(name string) error {
	switch {
	case strings.TrimSpace(name) == "":
		return fmt.Errorf("name is required")
	case len(name) > maxNameLen:
		return fmt.Errorf("name is longer than %d bytes", maxNameLen)
	case strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return fmt.Errorf("name contains control characters")
	}
	return nil
}
