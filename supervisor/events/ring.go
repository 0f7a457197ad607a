package events

import (
	"encoding/json"
	"sort"
	"sync"
)

// frameOverhead approximates what one frame costs beyond its JSON (the typed event it
// carries and the ring slot), for the ring's byte bound.
const frameOverhead = 256

// frame is one event encoded once for every client: the whole SSE frame, of which the
// event's JSON (what a WebSocket message wraps) is a part.
type frame struct {
	// ev holds the fields stream filters read (index, seq, job, type, severity, owner);
	// its payload is only in the encoding.
	ev   *Event
	sse  []byte // id, event and data lines
	data []byte // the JSON within sse
}

func newFrame(ev *Event) *frame {
	sse := appendSSEHead(make([]byte, 0, 512), ev.ID, safeName(ev.Type))
	start := len(sse)
	sse, err := ev.appendJSON(sse)
	if err != nil {
		fallback, _ := json.Marshal(map[string]any{"type": ev.Type, "index": ev.Index, "error": "unencodable event"})
		sse = append(sse[:start], fallback...)
	}
	end := len(sse)
	sse = append(sse, "\n\n"...)
	// The frame keeps only what stream filters look at; the rest of the event is in
	// the encoding, and would double what the ring holds.
	slim := &Event{ID: ev.ID, Index: ev.Index, Seq: ev.Seq, JobID: ev.JobID, Type: ev.Type, Severity: ev.Severity, owner: ev.owner}
	return &frame{ev: slim, sse: sse, data: sse[start:end:end]}
}

func (f *frame) size() int { return len(f.sse) + frameOverhead }

// ring is the in-memory tail of the event log that every stream reads from. The
// publisher appends and wakes the streams; each stream keeps its own position (the last
// index it sent) and copies frames out at its own pace. Nothing is queued per client,
// so a client that falls behind costs nothing until it reads again, and one that falls
// further behind than the ring holds reads the store instead. The publisher never waits
// for a client.
type ring struct {
	// mu guards every field below: writers are the publisher, readers the streams.
	mu       sync.RWMutex
	buf      []*frame // circular; len(buf) is the capacity in frames
	head     int      // position of the oldest frame
	n        int      // frames held
	bytes    int      // sum of the sizes of the frames held
	maxBytes int
	// wake is closed, and replaced, whenever frames are added.
	wake chan struct{}
}

func newRing(frames, maxBytes int) *ring {
	return &ring{buf: make([]*frame, max(frames, 1)), maxBytes: maxBytes, wake: make(chan struct{})}
}

func (r *ring) at(k int) *frame { return r.buf[(r.head+k)%len(r.buf)] }

func (r *ring) evictLocked() {
	r.bytes -= r.buf[r.head].size()
	r.buf[r.head] = nil
	r.head = (r.head + 1) % len(r.buf)
	r.n--
}

// push appends frames in index order, evicting the oldest over either bound (the newest
// frame always stays), and wakes every reader.
func (r *ring) push(fs []*frame) {
	if len(fs) == 0 {
		return
	}
	r.mu.Lock()
	for _, f := range fs {
		if r.n == len(r.buf) {
			r.evictLocked()
		}
		r.buf[(r.head+r.n)%len(r.buf)] = f
		r.n++
		r.bytes += f.size()
		for r.bytes > r.maxBytes && r.n > 1 {
			r.evictLocked()
		}
	}
	close(r.wake)
	r.wake = make(chan struct{})
	r.mu.Unlock()
}

// read appends to dst up to limit frames with an index above sent, and returns them
// with a channel that is closed when more frames arrive. behind is true when frames
// above sent are no longer held, so the caller must read the store first.
func (r *ring) read(sent uint64, limit int, dst []*frame) (out []*frame, wake <-chan struct{}, behind bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.n == 0 {
		return dst, r.wake, false
	}
	if sent+1 < r.at(0).ev.Index {
		return dst, r.wake, true
	}
	i := sort.Search(r.n, func(k int) bool { return r.at(k).ev.Index > sent })
	for ; i < r.n && len(dst) < limit; i++ {
		dst = append(dst, r.at(i))
	}
	return dst, r.wake, false
}

// oldest returns the index of the oldest frame held (0 when empty).
func (r *ring) oldest() uint64 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.n == 0 {
		return 0
	}
	return r.at(0).ev.Index
}
