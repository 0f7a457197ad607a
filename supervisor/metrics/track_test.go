package metrics

import (
	"encoding/json"
	"math"
	"testing"
	"time"

	"simpletuner/plugins"
	"simpletuner/store"
	"simpletuner/supervisor/jobs"
)

var t0 = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)

func at(sec float64) time.Time { return t0.Add(time.Duration(sec * float64(time.Second))) }

func TestStepRate(t *testing.T) {
	w := 30 * time.Second
	for _, tc := range []struct {
		name    string
		samples []sample
		heard   time.Time
		now     time.Time
		want    float64
		ok      bool
	}{
		{"no samples", nil, time.Time{}, at(1), 0, false},
		{"one sample", []sample{{at(0), 5}}, at(0), at(1), 0, false},
		{"two samples", []sample{{at(0), 10}, {at(2), 30}}, at(2), at(3), 10, true},
		{"uneven", []sample{{at(0), 1}, {at(1), 2}, {at(4), 9}}, at(4), at(5), 2, true},
		{"same instant", []sample{{at(1), 1}, {at(1), 2}}, at(1), at(2), 0, false},
		{"silent for a window", []sample{{at(0), 1}, {at(2), 3}}, at(2), at(33), 0, true},
		{"silent for less than a window", []sample{{at(0), 1}, {at(2), 3}}, at(2), at(31), 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := stepRate(tc.samples, tc.heard, tc.now, w)
			if ok != tc.ok || math.Abs(got-tc.want) > 1e-9 {
				t.Errorf("stepRate = %v, %v; want %v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestAddSample(t *testing.T) {
	w := 10 * time.Second
	steps := func(ss []sample) []int64 {
		var out []int64
		for _, s := range ss {
			out = append(out, s.step)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		in   []sample
		add  sample
		want []int64
	}{
		{"first", nil, sample{at(0), 1}, []int64{1}},
		{"next", []sample{{at(0), 1}}, sample{at(1), 2}, []int64{1, 2}},
		{"same step is no progress", []sample{{at(0), 1}}, sample{at(1), 1}, []int64{1}},
		{"lower step: a resumed retry starts over", []sample{{at(0), 5}, {at(1), 6}}, sample{at(2), 3}, []int64{3}},
		{"older than the window is trimmed", []sample{{at(0), 1}, {at(5), 2}, {at(9), 3}}, sample{at(12), 4}, []int64{2, 3, 4}},
		{"two kept however old", []sample{{at(0), 1}}, sample{at(100), 2}, []int64{1, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := steps(addSample(append([]sample(nil), tc.in...), tc.add, w))
			if len(got) != len(tc.want) {
				t.Fatalf("steps %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("steps %v, want %v", got, tc.want)
				}
			}
		})
	}
	// Many fast steps keep at most maxSamples.
	var ss []sample
	for i := range 1000 {
		ss = addSample(ss, sample{at(float64(i) / 1000), int64(i + 1)}, w)
	}
	if len(ss) != maxSamples || ss[len(ss)-1].step != 1000 {
		t.Errorf("kept %d samples ending at step %d", len(ss), ss[len(ss)-1].step)
	}
}

func TestQueueWait(t *testing.T) {
	since := at(100)
	started := func(sec float64) *time.Time { s := at(sec); return &s }
	for _, tc := range []struct {
		name string
		job  store.Job
		want time.Duration
		ok   bool
	}{
		{"first launch", store.Job{Status: jobs.StatusStarting, Attempts: 1, CreatedAt: at(90), StartedAt: started(130)}, 40 * time.Second, true},
		{"queued", store.Job{Status: jobs.StatusQueued, CreatedAt: at(90)}, 0, false},
		{"running (after starting)", store.Job{Status: jobs.StatusRunning, Attempts: 1, CreatedAt: at(90), StartedAt: started(130)}, 0, false},
		{"a retry", store.Job{Status: jobs.StatusStarting, Attempts: 2, CreatedAt: at(90), StartedAt: started(130)}, 0, false},
		{"launched before this daemon", store.Job{Status: jobs.StatusStarting, Attempts: 1, CreatedAt: at(10), StartedAt: started(50)}, 0, false},
		{"clock went back", store.Job{Status: jobs.StatusStarting, Attempts: 1, CreatedAt: at(140), StartedAt: started(130)}, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := queueWait(&tc.job, since)
			if got != tc.want || ok != tc.ok {
				t.Errorf("queueWait = %v, %v; want %v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

// TestTrackerEvents: progress and checkpoint events feed the figures; a job that ends is
// forgotten; a launch is observed once.
func TestTrackerEvents(t *testing.T) {
	tr := newTracker(30*time.Second, at(0))
	prog := func(seq uint64, sec float64, step int64) plugins.Event {
		d, _ := json.Marshal(plugins.Progress{Step: step, Loss: 0.5})
		return plugins.Event{Seq: seq, Type: plugins.EventTrainingProgress, Time: at(sec), Data: d}
	}
	tr.events("j1", []plugins.Event{prog(1, 10, 1), prog(2, 11, 5),
		{Seq: 3, Type: plugins.EventTrainingCheckpoint, Time: at(11)}, prog(4, 12, 9)}, at(12))
	f := tr.figures("j1", at(15))
	if !f.rateOK || f.rate != 4 || !f.checkpointOK || f.checkpointAge != 4 {
		t.Errorf("figures %+v; want rate 4, checkpoint age 4", f)
	}
	if f := tr.figures("other", at(15)); f.rateOK || f.checkpointOK {
		t.Errorf("unknown job has figures %+v", f)
	}
	j := &store.Job{ID: "j1", Status: jobs.StatusStarting, Attempts: 1, CreatedAt: at(1), StartedAt: func() *time.Time { s := at(3); return &s }()}
	if w, ok := tr.status(j); !ok || w != 2*time.Second {
		t.Errorf("first launch wait %v %v", w, ok)
	}
	if _, ok := tr.status(j); ok {
		t.Errorf("the same launch observed twice")
	}
	tr.status(&store.Job{ID: "j1", Status: jobs.StatusCompleted})
	if f := tr.figures("j1", at(15)); f.rateOK || f.checkpointOK {
		t.Errorf("an ended job keeps figures %+v", f)
	}
}
