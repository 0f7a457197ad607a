package metrics

import (
	"encoding/json"
	"sync"
	"time"

	"simpletuner/plugins"
	"simpletuner/store"
	"simpletuner/supervisor/jobs"
)

// maxSamples bounds the progress samples kept per job: at a step every few milliseconds
// the window holds fewer samples than it spans, which only shortens the span the rate is
// averaged over.
const maxSamples = 64

// sample is one training.progress event: its step at the trainer's event time.
type sample struct {
	at   time.Time
	step int64
}

// jobTrack is what the events of one job said so far.
type jobTrack struct {
	// samples are the job's progress samples, oldest first, steps strictly increasing,
	// the oldest no more than the rate window before the newest (at least two kept).
	samples []sample
	// heard is when the daemon last received a progress event of the job (daemon clock),
	// so a trainer that stops reporting shows a rate of 0 rather than its last one.
	heard time.Time
	// checkpoint is the event time of the newest training.checkpoint; zero when none was
	// seen by this daemon.
	checkpoint time.Time
}

// tracker keeps per-job state fed by the event sink: progress samples and checkpoint
// times for running jobs, and which jobs' queue wait was observed.
type tracker struct {
	window time.Duration
	since  time.Time // this daemon's start: launches before it are not observed again

	// mu guards jobs and waited.
	mu     sync.Mutex
	jobs   map[string]*jobTrack
	waited map[string]bool
}

func newTracker(window time.Duration, since time.Time) *tracker {
	return &tracker{window: window, since: since, jobs: map[string]*jobTrack{}, waited: map[string]bool{}}
}

// events records a batch of one job's events, received at now.
func (t *tracker) events(jobID string, evs []plugins.Event, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, e := range evs {
		switch e.Type {
		case plugins.EventTrainingProgress:
			var p struct {
				Step int64 `json:"step"`
			}
			if json.Unmarshal(e.Data, &p) != nil {
				continue
			}
			jt := t.job(jobID)
			jt.samples = addSample(jt.samples, sample{at: e.Time, step: p.Step}, t.window)
			jt.heard = now
		case plugins.EventTrainingCheckpoint:
			if jt := t.job(jobID); e.Time.After(jt.checkpoint) {
				jt.checkpoint = e.Time
			}
		}
	}
}

// job returns the job's record, creating it. Called with mu held.
func (t *tracker) job(jobID string) *jobTrack {
	jt := t.jobs[jobID]
	if jt == nil {
		jt = &jobTrack{}
		t.jobs[jobID] = jt
	}
	return jt
}

// status notes a job status change. It returns the job's queue wait when this change is
// the job's first launch (ok false otherwise, and for a job seen before), and forgets
// ended jobs.
func (t *tracker) status(j *store.Job) (wait time.Duration, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if jobs.Terminal(j.Status) {
		delete(t.jobs, j.ID)
		delete(t.waited, j.ID)
		return 0, false
	}
	if j.Status == jobs.StatusQueued {
		// A requeued job (its worker went away) starts again with fresh samples.
		delete(t.jobs, j.ID)
	}
	wait, ok = queueWait(j, t.since)
	if !ok || t.waited[j.ID] {
		return 0, false
	}
	t.waited[j.ID] = true
	return wait, true
}

// jobFigures is what the tracker knows about one job at a scrape.
type jobFigures struct {
	rate          float64 // steps per second
	rateOK        bool
	checkpointAge float64 // seconds
	checkpointOK  bool
}

// figures returns the job's step rate and checkpoint age at now.
func (t *tracker) figures(jobID string, now time.Time) jobFigures {
	t.mu.Lock()
	defer t.mu.Unlock()
	jt := t.jobs[jobID]
	if jt == nil {
		return jobFigures{}
	}
	var f jobFigures
	f.rate, f.rateOK = stepRate(jt.samples, jt.heard, now, t.window)
	if !jt.checkpoint.IsZero() {
		f.checkpointAge, f.checkpointOK = max(0, now.Sub(jt.checkpoint).Seconds()), true
	}
	return f
}

// addSample appends s to samples (oldest first) and trims what the rate no longer needs.
// A step at or below the newest is not progress: an equal one is dropped, a lower one (a
// retry resuming from an earlier checkpoint) starts the samples over.
func addSample(samples []sample, s sample, window time.Duration) []sample {
	if n := len(samples); n > 0 {
		switch last := samples[n-1]; {
		case s.step == last.step:
			return samples
		case s.step < last.step || s.at.Before(last.at):
			samples = samples[:0]
		}
	}
	samples = append(samples, s)
	drop := 0
	for drop < len(samples)-2 && (s.at.Sub(samples[drop].at) > window || len(samples)-drop > maxSamples) {
		drop++
	}
	return append(samples[:0], samples[drop:]...)
}

// stepRate is the training rate in steps per second over the samples (oldest first, in
// the trainer's event times): the steps between the oldest and newest sample over the
// time between them. It is 0 when no progress was heard for a whole window (a stalled
// or silent trainer), and unknown (ok false) before two samples exist.
func stepRate(samples []sample, heard, now time.Time, window time.Duration) (rate float64, ok bool) {
	if len(samples) == 0 {
		return 0, false
	}
	if now.Sub(heard) > window {
		return 0, true
	}
	first, last := samples[0], samples[len(samples)-1]
	dt := last.at.Sub(first.at).Seconds()
	if len(samples) < 2 || dt <= 0 {
		return 0, false
	}
	return float64(last.step-first.step) / dt, true
}

// queueWait is the time a job waited in the queue before its first launch (submission
// to start), for the launch that j records: ok only when j has just been marked starting
// for the first time, by this daemon (a launch before since was observed by an earlier
// one). Approval waits count: the job was submitted when it was created.
func queueWait(j *store.Job, since time.Time) (time.Duration, bool) {
	if j.Status != jobs.StatusStarting || j.Attempts != 1 || j.StartedAt == nil || j.StartedAt.Before(since) {
		return 0, false
	}
	return max(0, j.StartedAt.Sub(j.CreatedAt)), true
}
