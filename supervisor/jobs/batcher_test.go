package jobs

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"testing"
	"time"

	"simpletuner/plugins"
	"simpletuner/store"
)

// gatedSink records the batches it is given. While gate is set, the first Append
// announces itself on entered and waits for gate to close: a store in flight, held as
// long as the test needs, whatever the machine's load.
type gatedSink struct {
	gate    chan struct{}
	entered chan struct{}
	once    sync.Once

	mu      sync.Mutex
	batches [][]plugins.Event
}

func (s *gatedSink) Append(_ string, evs []plugins.Event) error {
	if s.gate != nil {
		s.once.Do(func() {
			close(s.entered)
			<-s.gate
		})
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.batches = append(s.batches, append([]plugins.Event(nil), evs...))
	return nil
}

func (s *gatedSink) JobStatus(*store.Job) {}

func (s *gatedSink) stored() (n int, batches int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, b := range s.batches {
		n += len(b)
	}
	return n, len(s.batches)
}

// waitStored polls until the sink holds n events.
func (s *gatedSink) waitStored(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, _ := s.stored()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stored %d of %d events", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func testBatcher(t *testing.T, sink *gatedSink) *batcher {
	t.Helper()
	db, err := store.OpenInMemory(slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Jobs().Create(&store.Job{ID: "j", Status: "running"}); err != nil {
		t.Fatal(err)
	}
	m := &Manager{cfg: Config{Events: sink}, db: db, log: slog.New(slog.DiscardHandler), evs: map[string]*jobEvents{}}
	b := newBatcher(m, "j", m.log, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); b.run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return b
}

func progressEvent(seq uint64) plugins.Event {
	d, _ := json.Marshal(plugins.Progress{Step: int64(seq), TotalSteps: 1000})
	return plugins.Event{Seq: seq, Type: "training.progress", Severity: "info", Time: time.Now(), Data: d}
}

// TestBatcherStoresALoneEventAtOnce: with nothing else arriving, an event is stored
// without a flush and without waiting for more events: the batcher has no batch window
// to wait out. (How soon is measured by bench/eventfanout, not asserted here.)
func TestBatcherStoresALoneEventAtOnce(t *testing.T) {
	sink := &gatedSink{}
	b := testBatcher(t, sink)
	b.add(progressEvent(1))
	sink.waitStored(t, 1)
	if _, batches := sink.stored(); batches != 1 {
		t.Fatalf("%d stores for one event", batches)
	}
}

// TestBatcherGroupsWhileAStoreIsInFlight: the events that arrive while a store is in
// flight go together into the next one, in order; no store exceeds maxBatch (when that
// many wait, add stores them itself, holding the receive loop back); the job's progress
// is written at the end.
func TestBatcherGroupsWhileAStoreIsInFlight(t *testing.T) {
	sink := &gatedSink{gate: make(chan struct{}), entered: make(chan struct{})}
	b := testBatcher(t, sink)
	b.add(progressEvent(1))
	<-sink.entered // event 1 is being stored, and stays so until the gate opens
	const n = maxBatch + 904
	added := make(chan struct{})
	go func() {
		defer close(added)
		for i := uint64(2); i <= n; i++ {
			b.add(progressEvent(i)) // the maxBatch-th waiting event blocks here until the gate opens
		}
	}()
	// Open the gate once maxBatch events wait: all of them arrived during the first store.
	deadline := time.Now().Add(20 * time.Second)
	for {
		b.mu.Lock()
		waiting := len(b.pending)
		b.mu.Unlock()
		if waiting == maxBatch {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d events waiting, want %d", waiting, maxBatch)
		}
		time.Sleep(time.Millisecond)
	}
	close(sink.gate)
	<-added
	b.flush()
	sink.waitStored(t, n)
	sink.mu.Lock()
	var next uint64 = 1
	for _, bt := range sink.batches {
		if len(bt) > maxBatch {
			t.Fatalf("a store of %d events (max %d)", len(bt), maxBatch)
		}
		for _, e := range bt {
			if e.Seq != next {
				t.Fatalf("seq %d stored where %d was due", e.Seq, next)
			}
			next++
		}
	}
	if len(sink.batches) < 2 {
		t.Fatalf("%d stores for %d events", len(sink.batches), n)
	}
	if len(sink.batches[0]) != 1 || len(sink.batches[1]) != maxBatch {
		t.Fatalf("first stores of %d and %d events, want 1 and %d (everything that arrived during the first)", len(sink.batches[0]), len(sink.batches[1]), maxBatch)
	}
	sink.mu.Unlock()
	j, _ := b.r.(*Manager).db.Jobs().Get("j")
	var p plugins.Progress
	if err := json.Unmarshal(j.Progress, &p); err != nil || p.Step != n {
		t.Fatalf("job progress %s (%v), want step %d", j.Progress, err, n)
	}
}
