// Package workerstest is a fake job manager for tests of the worker registry and the
// routes over it: the workers.JobSource a *jobs.Manager is in the daemon.
package workerstest

import (
	"encoding/json"
	"sync"

	"simpletuner/plugins"
	"simpletuner/store"
	"simpletuner/supervisor/jobs"
)

// Jobs holds job records and records what the registry reported about them. Its
// methods are safe for concurrent use; read the maps through the accessors.
type Jobs struct {
	mu      sync.Mutex // guards everything below
	jobs    map[string]*store.Job
	running map[string]int
	events  map[string][]plugins.Event
	handles map[string]jobs.Handle
	kicks   int
}

// New returns an empty fake.
func New() *Jobs {
	return &Jobs{jobs: map[string]*store.Job{}, running: map[string]int{}, events: map[string][]plugins.Event{}, handles: map[string]jobs.Handle{}}
}

// Add stores a job (status starting and a small config unless given) and returns it.
func (f *Jobs) Add(j *store.Job) *store.Job {
	f.mu.Lock()
	defer f.mu.Unlock()
	if j.Config == nil {
		j.Config = json.RawMessage(`{"--model_family":"dit"}`)
	}
	if j.Status == "" {
		j.Status = jobs.StatusStarting
	}
	f.jobs[j.ID] = j
	return j
}

// Get returns a copy of a job, or jobs.ErrNotFound.
func (f *Jobs) Get(id string) (*store.Job, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	j, ok := f.jobs[id]
	if !ok {
		return nil, jobs.ErrNotFound
	}
	c := *j
	return &c, nil
}

// Kick counts nudges of the queue.
func (f *Jobs) Kick() { f.mu.Lock(); f.kicks++; f.mu.Unlock() }

// Kicks is how many times the queue was kicked.
func (f *Jobs) Kicks() int { f.mu.Lock(); defer f.mu.Unlock(); return f.kicks }

// SaveHandle stores a job's handle.
func (f *Jobs) SaveHandle(id string, h jobs.Handle) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.handles[id] = h
	if j := f.jobs[id]; j != nil {
		j.Handle = &h
	}
	return nil
}

// Handle is the handle saved for a job.
func (f *Jobs) Handle(id string) jobs.Handle { f.mu.Lock(); defer f.mu.Unlock(); return f.handles[id] }

// Running marks a job running and counts the calls.
func (f *Jobs) Running(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.running[id]++
	if j := f.jobs[id]; j != nil {
		j.Status = jobs.StatusRunning
	}
}

// RunningCalls is how many times a job was reported running.
func (f *Jobs) RunningCalls(id string) int { f.mu.Lock(); defer f.mu.Unlock(); return f.running[id] }

// Events follows the Reporter's contract: events at or below LastSeq are skipped, a
// batch starting beyond LastSeq+1 is jobs.ErrSeqGap.
func (f *Jobs) Events(id string, evs []plugins.Event) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	j := f.jobs[id]
	if j == nil {
		return 0, jobs.ErrNotFound
	}
	if len(evs) > 0 && evs[0].Seq > j.LastSeq+1 {
		return j.LastSeq, jobs.ErrSeqGap
	}
	for _, e := range evs {
		if e.Seq <= j.LastSeq {
			continue
		}
		f.events[id] = append(f.events[id], e)
		j.LastSeq = e.Seq
	}
	return j.LastSeq, nil
}

// Stored is the events stored for a job, in order.
func (f *Jobs) Stored(id string) []plugins.Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]plugins.Event(nil), f.events[id]...)
}

// Note accepts a job's note (not recorded).
func (f *Jobs) Note(string, string) {}
