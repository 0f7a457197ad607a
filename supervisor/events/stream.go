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

// subscriber is one open stream's mailbox. The publisher never blocks on it: when more
// than the buffer's worth of events wait, it stops queueing and raises lag, and the
// stream reads what it missed from the store.
type subscriber struct {
	ch      chan []*frame // batches in index order
	lag     chan struct{} // capacity 1: "events were not queued; catch up from the store"
	pending atomic.Int64  // events queued in ch
	limit   int64
	done    chan struct{} // closed by stop
	once    sync.Once
	why     atomic.Value // error: why the hub stopped the stream
}

func (s *subscriber) offer(fs []*frame) {
	if s.pending.Load()+int64(len(fs)) > s.limit {
		select {
		case s.lag <- struct{}{}:
		default:
		}
		return
	}
	select {
	case s.ch <- fs:
		s.pending.Add(int64(len(fs)))
	default:
		select {
		case s.lag <- struct{}{}:
		default:
		}
	}
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
	s := &subscriber{ch: make(chan []*frame, 1024), lag: make(chan struct{}, 1), limit: int64(h.cfg.ClientBuffer), done: make(chan struct{})}
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
// store, then live events, heartbeats and credential checks.
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
	if sent, err = h.catchUp(s, sent, o.Keep); err != nil {
		return err
	}
	if err := s.flush(); err != nil {
		return err
	}
	hb := time.NewTicker(h.cfg.Heartbeat)
	defer hb.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-sub.done:
			err, _ := sub.why.Load().(error)
			return err
		case fs := <-sub.ch:
			for more := true; more; {
				sub.pending.Add(-int64(len(fs)))
				for _, f := range fs {
					if f.ev.Index <= sent || (o.Keep != nil && !o.Keep(f.ev)) {
						continue
					}
					if err := s.event(f); err != nil {
						return err
					}
					sent = f.ev.Index
				}
				select {
				case fs = <-sub.ch:
				default:
					more = false
				}
			}
			if err := s.flush(); err != nil {
				return err
			}
		case <-sub.lag:
			if sent, err = h.catchUp(s, sent, o.Keep); err != nil {
				return err
			}
			if err := s.flush(); err != nil {
				return err
			}
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

// catchUp writes the stored events after sent that keep accepts and returns the last
// index examined. Events queued meanwhile are skipped later by index.
func (h *Hub) catchUp(s sink, sent uint64, keep func(*Event) bool) (uint64, error) {
	for {
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
		if next == sent {
			return sent, nil
		}
		sent = next
	}
}

// sseSink writes SSE frames, buffered, with a write deadline per flush.
type sseSink struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	buf     []byte
}

func (s *sseSink) event(f *frame) error {
	s.buf = append(s.buf, f.sse...)
	if len(s.buf) >= 64<<10 {
		return s.flush()
	}
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
	s.buf = s.buf[:0]
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
}

func (s *wsSink) write(b []byte) error {
	ctx, cancel := context.WithTimeout(s.ctx, s.timeout)
	defer cancel()
	if err := s.c.Write(ctx, websocket.MessageText, b); err != nil {
		return fmt.Errorf("client not reading (write: %w)", err)
	}
	return nil
}

func (s *wsSink) event(f *frame) error { return s.write(f.ws) }

func (s *wsSink) control(_ string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return s.write(data)
}

func (s *wsSink) flush() error { return nil }
