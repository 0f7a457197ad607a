package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"simpletuner/store"
)

// subscriber is one open stream as the hub sees it: something to stop. What the stream
// has sent is its own business (it reads the ring at its own pace).
type subscriber struct {
	done chan struct{} // closed by stop
	once sync.Once
	why  atomic.Value // error: why the hub stopped the stream
}

func (s *subscriber) stop(err error) {
	s.once.Do(func() {
		s.why.Store(err)
		close(s.done)
	})
}

func (h *Hub) subscribe() (*subscriber, error) {
	h.subMu.Lock()
	defer h.subMu.Unlock()
	if h.closed {
		return nil, ErrClosed
	}
	if len(h.subs) >= h.cfg.MaxClients {
		return nil, ErrTooManyClients
	}
	s := &subscriber{done: make(chan struct{})}
	h.subs[s] = struct{}{}
	return s, nil
}

func (h *Hub) unsubscribe(s *subscriber) {
	h.subMu.Lock()
	delete(h.subs, s)
	h.subMu.Unlock()
}

// StreamOptions says what one stream carries.
type StreamOptions struct {
	// Since resumes after this index (Last-Event-ID / since_index) when HasSince;
	// without it the stream starts with new events.
	Since    uint64
	HasSince bool
	// Keep filters events (job visibility, job_id, types); nil keeps all.
	Keep func(*Event) bool
	// Check re-validates the caller's credentials at every heartbeat; an error ends the
	// stream with an auth_revoked frame.
	Check func() error
}

// sink is where a stream writes: SSE or WebSocket.
type sink interface {
	event(f *frame) error
	control(name string, v any) error
	flush() error
}

// IsWebSocket reports whether r asks for a WebSocket upgrade.
func IsWebSocket(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket") && headerHasToken(r.Header, "Connection", "upgrade")
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// ResumeIndex reads the index a client resumes after: the Last-Event-ID header, else
// the since_index (or last_event_index) query parameter. ok is false when none is set.
func ResumeIndex(r *http.Request) (idx uint64, ok bool, err error) {
	v := r.Header.Get("Last-Event-ID")
	name := "Last-Event-ID"
	if v == "" {
		for _, q := range []string{"since_index", "last_event_index"} {
			if v = r.URL.Query().Get(q); v != "" {
				name = q
				break
			}
		}
	}
	if v == "" {
		return 0, false, nil
	}
	idx, err = strconv.ParseUint(strings.TrimSpace(v), 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("%s must be a non-negative integer", name)
	}
	return idx, true, nil
}

// ServeSSE streams events as Server-Sent Events until the client leaves, its
// credentials are revoked, it stops reading, or the hub closes. It returns an error
// only when the stream could not start (ErrTooManyClients, ErrClosed), with nothing
// written, so the caller can answer it; how a stream ended is logged here.
func (h *Hub) ServeSSE(w http.ResponseWriter, r *http.Request, o StreamOptions) error {
	sub, err := h.subscribe()
	if err != nil {
		return err
	}
	defer h.unsubscribe(sub)
	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("Cache-Control", "no-cache, no-store")
	hd.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	// No chunked encoding: the body ends when the connection closes (what the SSE
	// specification recommends, and net/http supports with this value). Each write is
	// then one system call, where chunking takes three (size line, data, CRLF).
	hd.Set("Transfer-Encoding", "identity")
	w.WriteHeader(http.StatusOK)
	s := &sseSink{w: w, rc: http.NewResponseController(w), timeout: h.cfg.WriteTimeout}
	s.buf = append(s.buf, "retry: 2000\n\n"...)
	_ = h.run(r.Context(), sub, s, o)
	return nil
}

// ServeWS streams events over a WebSocket (errors as ServeSSE): one text message per event,
// {"job_id":…,"event":{…}}, and control messages {"type":"heartbeat"|…}. The upgrade
// refuses cross-origin browsers (the Origin must match the Host), so a cookie cannot be
// used by another site to open the stream.
func (h *Hub) ServeWS(w http.ResponseWriter, r *http.Request, o StreamOptions) error {
	sub, err := h.subscribe()
	if err != nil {
		return err
	}
	defer h.unsubscribe(sub)
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return nil // Accept has written the refusal
	}
	c.SetReadLimit(4 << 10)
	ctx := c.CloseRead(r.Context()) // we read nothing; this handles pings and close
	s := &wsSink{c: c, ctx: ctx, timeout: h.cfg.WriteTimeout}
	err = h.run(ctx, sub, s, o)
	switch {
	case errors.Is(err, ErrRevoked):
		c.Close(websocket.StatusPolicyViolation, "credentials revoked")
	case errors.Is(err, ErrClosed):
		c.Close(websocket.StatusGoingAway, "server shutting down")
	case err != nil:
		c.CloseNow()
	default:
		c.Close(websocket.StatusNormalClosure, "")
	}
	return nil
}

// run is the body of a stream: connected frame, optional reset, catch-up from the
// store, then live events from the ring, heartbeats and credential checks.
func (h *Hub) run(ctx context.Context, sub *subscriber, s sink, o StreamOptions) (err error) {
	defer func() {
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded):
			h.dropped.Add(1)
			h.log.Warn("event client dropped: it stopped reading", "reason", err)
		case err != nil && !errors.Is(err, ErrRevoked) && !errors.Is(err, ErrClosed):
			h.log.Debug("event client gone", "reason", err)
		}
	}()
	if err := s.control(frameConnected, map[string]any{"type": "connected", "message": "Connected to SimpleTuner"}); err != nil {
		return err
	}
	first, last, err := h.db.Events().Bounds()
	if err != nil {
		return err
	}
	sent := last
	if o.HasSince {
		sent = o.Since
		reason := ""
		switch {
		case o.Since+1 < first && o.Since < last:
			reason, sent = "expired", first-1
		case o.Since > last:
			reason, sent = "unknown", last
		}
		if reason != "" {
			if err := s.control(frameReset, map[string]any{"type": "reset", "reason": reason, "requested_index": o.Since,
				"oldest_index": first, "next_index": sent, "jobs": h.snapshot(o.Keep)}); err != nil {
				return err
			}
		}
	}
	// Catch up from the store until the ring holds what comes next (after a daemon
	// restart the ring holds nothing older than the restart).
	for {
		if oldest := h.ring.oldest(); oldest != 0 && sent+1 >= oldest {
			break
		}
		next, err := h.storePage(s, sent, o.Keep)
		if err != nil {
			return err
		}
		if next == sent {
			break
		}
		sent = next
	}
	if err := s.flush(); err != nil {
		return err
	}
	hb := time.NewTicker(h.cfg.Heartbeat)
	defer hb.Stop()
	// pace holds the stream back for FlushInterval after each write, so events that
	// arrive meanwhile go out together; it is nil while the stream may write.
	pacer := time.NewTimer(time.Hour)
	pacer.Stop() // armed after each write
	var pace <-chan time.Time
	batch := make([]*frame, 0, streamBatch)
	for {
		var wake <-chan struct{}
		if pace == nil {
			var behind bool
			batch, wake, behind = h.ring.read(sent, streamBatch, batch[:0])
			if behind {
				// Further behind than the ring holds: one page from the store, then
				// the ring again.
				next, err := h.storePage(s, sent, o.Keep)
				if err != nil {
					return err
				}
				if next == sent {
					// Nothing left in the store before the ring's oldest frame
					// (retention deleted it meanwhile): go on from the ring.
					next = max(sent, h.ring.oldest()-1)
				}
				sent = next
				continue
			}
			if len(batch) > 0 {
				for _, f := range batch {
					if o.Keep == nil || o.Keep(f.ev) {
						if err := s.event(f); err != nil {
							return err
						}
					}
					sent = f.ev.Index
				}
				if len(batch) == streamBatch {
					continue // more is waiting: write it without pausing
				}
				if err := s.flush(); err != nil {
					return err
				}
				pacer.Reset(h.cfg.FlushInterval)
				pace, wake = pacer.C, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-sub.done:
			err, _ := sub.why.Load().(error)
			return err
		case <-wake:
		case <-pace:
			pace = nil
		case <-hb.C:
			if o.Check != nil {
				if cerr := o.Check(); cerr != nil {
					_ = s.control(frameAuthRevoked, map[string]any{"type": "auth_revoked", "message": "Your credentials are no longer valid; the stream is closed."})
					_ = s.flush()
					return fmt.Errorf("%w: %w", ErrRevoked, cerr)
				}
			}
			if err := s.control(frameHeartbeat, map[string]any{"type": "heartbeat", "timestamp": time.Now().UTC()}); err != nil {
				return err
			}
			if err := s.flush(); err != nil {
				return err
			}
		}
	}
}

// streamBatch is how many frames a stream takes from the ring at a time.
const streamBatch = 1024

// storePage writes one page of the stored events after sent that keep accepts and
// returns the last index examined (sent when there was none).
func (h *Hub) storePage(s sink, sent uint64, keep func(*Event) bool) (uint64, error) {
	h.storePages.Add(1)
	var werr error
	_, next, err := h.db.Events().Since(sent, 500, 0, func(se *store.StoredEvent) bool {
		if werr != nil {
			return false
		}
		ev, err := h.typed(*se)
		if err != nil || (keep != nil && !keep(ev)) {
			return false
		}
		werr = s.event(newFrame(ev))
		return true
	})
	if err != nil {
		return sent, err
	}
	if werr != nil {
		return sent, werr
	}
	if err := s.flush(); err != nil {
		return sent, err
	}
	return max(next, sent), nil
}

// sseWriteMax is about how much a stream buffers before it writes: large writes are what
// keep the per-client cost (a system call and its TCP segments) low at high event
// rates. sseKeepMax is the largest buffer a stream keeps between writes; a larger one,
// grown for a burst, is let go once the stream writes less than a quarter of it.
const (
	sseWriteMax = 128 << 10
	sseKeepMax  = 16 << 10
)

// sseSink writes SSE frames, buffered, with a write deadline per flush.
type sseSink struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	buf     []byte
}

func (s *sseSink) event(f *frame) error {
	if len(s.buf) > 0 && len(s.buf)+len(f.sse) > sseWriteMax {
		if err := s.flush(); err != nil {
			return err
		}
	}
	s.buf = append(s.buf, f.sse...)
	return nil
}

func (s *sseSink) control(name string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	s.buf = appendSSE(s.buf, "", name, data)
	return nil
}

func (s *sseSink) flush() error {
	if len(s.buf) == 0 {
		return nil
	}
	_ = s.rc.SetWriteDeadline(time.Now().Add(s.timeout))
	_, err := s.w.Write(s.buf)
	if cap(s.buf) > sseKeepMax && len(s.buf) < cap(s.buf)/4 {
		s.buf = nil // the burst it grew for is over
	} else {
		s.buf = s.buf[:0]
	}
	if err == nil {
		err = s.rc.Flush()
	}
	if err != nil {
		return fmt.Errorf("client not reading (write: %w)", err)
	}
	return nil
}

// wsSink writes one WebSocket message per event.
type wsSink struct {
	c       *websocket.Conn
	ctx     context.Context
	timeout time.Duration
	msg     []byte // reused for {"job_id":…,"event":…}
}

func (s *wsSink) write(b []byte) error {
	ctx, cancel := context.WithTimeout(s.ctx, s.timeout)
	defer cancel()
	if err := s.c.Write(ctx, websocket.MessageText, b); err != nil {
		return fmt.Errorf("client not reading (write: %w)", err)
	}
	return nil
}

func (s *wsSink) event(f *frame) error {
	job, err := json.Marshal(f.ev.JobID)
	if err != nil {
		return err
	}
	s.msg = append(s.msg[:0], `{"job_id":`...)
	s.msg = append(s.msg, job...)
	s.msg = append(s.msg, `,"event":`...)
	s.msg = append(s.msg, f.data...)
	s.msg = append(s.msg, '}')
	return s.write(s.msg)
}

func (s *wsSink) control(_ string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return s.write(data)
}

func (s *wsSink) flush() error { return nil }
