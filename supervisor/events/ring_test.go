package events

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"simpletuner/plugins"
)

func testFrames(from, to uint64, size int) []*frame {
	var fs []*frame
	for i := from; i <= to; i++ {
		fs = append(fs, &frame{ev: &Event{Index: i}, sse: make([]byte, size)})
	}
	return fs
}

func indexes(fs []*frame) []uint64 {
	out := make([]uint64, len(fs))
	for i, f := range fs {
		out[i] = f.ev.Index
	}
	return out
}

func TestRingReadEvictAndBehind(t *testing.T) {
	r := newRing(4, 1<<20)
	got, wake, behind := r.read(0, 10, nil)
	if len(got) != 0 || behind {
		t.Fatalf("empty ring: %v %v", indexes(got), behind)
	}
	r.push(testFrames(1, 3, 10))
	select {
	case <-wake:
	default:
		t.Fatal("push did not wake readers")
	}
	if got, _, _ := r.read(0, 10, nil); fmt.Sprint(indexes(got)) != "[1 2 3]" {
		t.Fatalf("read after 0: %v", indexes(got))
	}
	if got, _, _ := r.read(1, 1, nil); fmt.Sprint(indexes(got)) != "[2]" {
		t.Fatalf("limit 1 after 1: %v", indexes(got))
	}
	r.push(testFrames(4, 6, 10)) // capacity 4: 1 and 2 go
	if got, _, _ := r.read(2, 10, nil); fmt.Sprint(indexes(got)) != "[3 4 5 6]" {
		t.Fatalf("after 2: %v", indexes(got))
	}
	if _, _, behind := r.read(1, 10, nil); !behind {
		t.Fatal("a reader whose next frame was evicted is not told to read the store")
	}
	if got, _, behind := r.read(6, 10, nil); len(got) != 0 || behind {
		t.Fatalf("up to date: %v %v", indexes(got), behind)
	}
	if r.oldest() != 3 {
		t.Fatalf("oldest %d", r.oldest())
	}
}

func TestRingByteBoundKeepsNewest(t *testing.T) {
	r := newRing(100, 3*(1000+frameOverhead))
	r.push(testFrames(1, 10, 1000))
	if _, _, behind := r.read(0, 100, nil); !behind {
		t.Fatal("1..7 were evicted by the byte bound; a reader after 0 must read the store")
	}
	got, _, behind := r.read(7, 100, nil)
	if fmt.Sprint(indexes(got)) != "[8 9 10]" || behind {
		t.Fatalf("byte bound: %v %v", indexes(got), behind)
	}
	big := testFrames(11, 11, 10*1000)
	r.push(big) // larger than the bound alone: it stays, alone
	if got, _, _ := r.read(10, 100, nil); fmt.Sprint(indexes(got)) != "[11]" {
		t.Fatalf("oversized frame: %v", indexes(got))
	}
}

// TestRingGapIsNotBehind: an index that was never published (a hole in the indexes)
// does not send readers to the store once the ring holds frames after it.
func TestRingGapIsNotBehind(t *testing.T) {
	r := newRing(10, 1<<20)
	r.push(testFrames(1, 2, 10))
	r.push(testFrames(4, 5, 10))
	if got, _, behind := r.read(2, 10, nil); fmt.Sprint(indexes(got)) != "[4 5]" || behind {
		t.Fatalf("after the gap: %v %v", indexes(got), behind)
	}
}

// stallSink is a stream's sink whose writes block until released, and which records the
// indexes it was given.
type stallSink struct {
	mu      sync.Mutex
	got     []uint64
	gate    chan struct{}
	once    sync.Once
	waiting chan struct{} // closed at the first flush
}

func (s *stallSink) event(f *frame) error {
	s.mu.Lock()
	s.got = append(s.got, f.ev.Index)
	s.mu.Unlock()
	return nil
}
func (s *stallSink) control(string, any) error { return nil }
func (s *stallSink) flush() error {
	s.once.Do(func() { close(s.waiting) })
	<-s.gate
	return nil
}
func (s *stallSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.got)
}

// TestStalledClientCatchesUpFromTheStore: a client whose writes block while far more
// events than the ring holds are published gets every one of them, in order, once it
// takes them again (from the store, then the ring), and publishing never waits for it.
func TestStalledClientCatchesUpFromTheStore(t *testing.T) {
	th := newTestHub(t, Config{RingEvents: 64})
	sub, err := th.subscribe()
	if err != nil {
		t.Fatal(err)
	}
	sink := &stallSink{gate: make(chan struct{}), waiting: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- th.run(ctx, sub, sink, StreamOptions{}) }()
	<-sink.waiting // the stream starts after what is stored now: nothing yet
	const total = 20000
	// The client stays stalled until publishing is over: publishing that waited for it
	// would never finish.
	published := make(chan struct{})
	go func() {
		defer close(published)
		for range total / 500 {
			th.emit(t, 500, nil)
		}
	}()
	select {
	case <-published:
	case <-time.After(60 * time.Second):
		t.Fatalf("publishing %d events did not finish while a client was stalled", total)
	}
	if o := th.ring.oldest(); o <= 1 {
		t.Fatalf("the ring still holds index %d: the test does not exercise the store", o)
	}
	close(sink.gate)
	deadline := time.Now().Add(30 * time.Second)
	for sink.count() < total && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	th.emit(t, 1, nil) // and it follows live again
	for sink.count() < total+1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("stream ended with %v", err)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if len(sink.got) != total+1 {
		var gaps []string
		for i := 1; i < len(sink.got); i++ {
			if sink.got[i] != sink.got[i-1]+1 {
				gaps = append(gaps, fmt.Sprintf("%d→%d", sink.got[i-1], sink.got[i]))
			}
		}
		t.Fatalf("got %d events, want %d; first %d, gaps %v", len(sink.got), total+1, sink.got[0], gaps)
	}
	for i, idx := range sink.got {
		if idx != uint64(i+1) {
			t.Fatalf("event %d has index %d", i, idx)
		}
	}
	if th.storePages.Load() == 0 {
		t.Fatal("the stalled client never read the store: the test did not exercise catching up")
	}
}

// countingWriter counts the writes a stream makes.
type countingWriter struct {
	http.ResponseWriter
	writes *atomic.Int64
}

func (c countingWriter) Write(b []byte) (int, error) {
	c.writes.Add(1)
	return c.ResponseWriter.Write(b)
}

func (c countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// TestWritesArePacedNotPerEvent: at a publish rate far above 1/FlushInterval, a client
// gets every event in few writes (events that arrive within an interval go together);
// the SSE body is not chunk-encoded. The bound on writes holds on any machine: a stream
// writes at most once per FlushInterval (plus a write per full buffer), and a slow
// machine only stretches the time the writes are counted over. How promptly events
// arrive is measured by bench/eventfanout.
func TestWritesArePacedNotPerEvent(t *testing.T) {
	const interval = 20 * time.Millisecond
	th := newTestHub(t, Config{FlushInterval: interval})
	var writes atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = th.ServeSSE(countingWriter{w, &writes}, r, StreamOptions{})
	}))
	defer srv.Close()
	res, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if len(res.TransferEncoding) != 0 || !res.Close {
		t.Fatalf("transfer encoding %v, close %v: want an identity body ended by closing", res.TransferEncoding, res.Close)
	}
	out := make(chan sseFrame, 1<<16)
	go readSSE(res.Body, out)
	collect(t, out, "connection", 1, 20*time.Second)
	waitClients(t, th.Hub, 1)
	writes.Store(0)
	const batches, per = 100, 10
	start := time.Now()
	for range batches {
		th.emit(t, per, nil)
		time.Sleep(time.Millisecond)
	}
	got := collect(t, out, plugins.EventTrainingProgress, batches*per, 20*time.Second)
	n := writes.Load() // every write counted happened before the last frame was read
	elapsed := time.Since(start)
	bytes := 0
	for _, f := range got {
		bytes += len(f.data) + 64 // and the id, event and blank lines
	}
	// One write per interval, one for the stream's first events, one per full buffer and
	// a heartbeat per default heartbeat interval.
	limit := int64(elapsed/interval) + 1 + int64(bytes/sseWriteMax) + 1 + int64(elapsed/(15*time.Second)) + 1
	t.Logf("%d events in %d writes over %v (at most %d)", batches*per, n, elapsed, limit)
	if n > limit {
		t.Errorf("%d writes for %d events over %v: want at most %d (one per flush interval)", n, batches*per, elapsed, limit)
	}
}
