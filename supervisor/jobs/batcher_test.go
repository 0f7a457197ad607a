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

// slowSink records the batches it is given; each Append takes delay, as a store write
// under load does.
type slowSink struct {
	mu      sync.Mutex
	delay   time.Duration
	batches [][]plugins.Event
	at      []time.Time
}

func (s *slowSink) Append(_ string, evs []plugins.Event) error {
	time.Sleep(s.delay)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.batches = append(s.batches, append([]plugins.Event(nil), evs...))
	s.at = append(s.at, time.Now())
	return nil
}

func (s *slowSink) JobStatus(*store.Job) {}

func (s *slowSink) stored() (n int, batches int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, b := range s.batches {
		n += len(b)
	}
	return n, len(s.batches)
}

func testBatcher(t *testing.T, sink *slowSink) *batcher {
	t.Helper()
	db, err := store.OpenInMemory(slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Jobs().Create(&store.Job{ID: "j", Status: "running"}); err != nil {
		t.Fatal(err)
	}
	m := &Manager{cfg: Config{Events: sink}, db: db, log: slog.New(slog.DiscardHandler)}
	b := newBatcher(m, "j")
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
// without waiting for a batch window.
func TestBatcherStoresALoneEventAtOnce(t *testing.T) {
	sink := &slowSink{}
	b := testBatcher(t, sink)
	t0 := time.Now()
	b.add(progressEvent(1))
	for {
		if n, _ := sink.stored(); n == 1 {
			break
		}
		if time.Since(t0) > 2*time.Second {
			t.Fatal("a lone event was not stored")
		}
		time.Sleep(time.Millisecond)
	}
	sink.mu.Lock()
	took := sink.at[0].Sub(t0)
	sink.mu.Unlock()
	if took > 15*time.Millisecond {
		t.Fatalf("a lone event waited %v to be stored", took)
	}
}

// TestBatcherGroupsWhileAStoreIsInFlight: events that arrive while a store is running go
// together into the next one, in order; the job's progress is written at the end.
func TestBatcherGroupsWhileAStoreIsInFlight(t *testing.T) {
	sink := &slowSink{delay: 5 * time.Millisecond}
	b := testBatcher(t, sink)
	const n = 5000
	for i := uint64(1); i <= n; i++ {
		b.add(progressEvent(i))
		if i%50 == 0 {
			time.Sleep(time.Millisecond) // the trainer's stream delivers in bursts
		}
	}
	b.flush()
	got, batches := sink.stored()
	if got != n {
		t.Fatalf("stored %d of %d", got, n)
	}
	if batches > n/20 {
		t.Fatalf("%d stores for %d events: not grouped", batches, n)
	}
	var next uint64 = 1
	sink.mu.Lock()
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
	sink.mu.Unlock()
	j, _ := b.m.db.Jobs().Get("j")
	var p plugins.Progress
	if err := json.Unmarshal(j.Progress, &p); err != nil || p.Step != n {
		t.Fatalf("job progress %s (%v), want step %d", j.Progress, err, n)
	}
}
