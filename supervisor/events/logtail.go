package events

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"simpletuner/plugins"
	"simpletuner/store"
)

// maxLogRead bounds what one poll reads of a trainer log; a trainer writing faster
// than that has the excess skipped (counted as suppressed), never buffered.
const maxLogRead = 1 << 20

// tailer relays one job's trainer.log as log events.
type tailer struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// startTail starts relaying a job's log; fromEnd skips what is already there (a job
// that was running before this daemon started: its earlier lines stay in the file).
func (h *Hub) startTail(j *store.Job, fromEnd bool) {
	if h.cfg.LogRate < 0 || j.JobDir == "" {
		return
	}
	h.jobMu.Lock()
	defer h.jobMu.Unlock()
	if _, ok := h.tails[j.ID]; ok || h.ctx.Err() != nil {
		return
	}
	ctx, cancel := context.WithCancel(h.ctx)
	t := &tailer{cancel: cancel, done: make(chan struct{})}
	h.tails[j.ID] = t
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		defer close(t.done)
		h.tail(ctx, j.ID, filepath.Join(j.JobDir, plugins.LogFile), fromEnd)
	}()
}

// stopTail ends a job's relay after one last read of the log.
func (h *Hub) stopTail(id string) {
	h.jobMu.Lock()
	t := h.tails[id]
	delete(h.tails, id)
	h.jobMu.Unlock()
	if t != nil {
		t.cancel()
	}
}

func (h *Hub) tail(ctx context.Context, jobID, path string, fromEnd bool) {
	var off int64
	key := "logtail/" + jobID
	var saved int64
	if ok, err := h.db.Settings().Get(key, &saved); err == nil && ok {
		// A previous daemon relayed up to here: continue, so the lines the trainer wrote
		// while no daemon was running are relayed too.
		off = saved
	} else if fromEnd {
		if st, err := os.Stat(path); err == nil {
			off = st.Size()
		}
	} else if err := h.db.Settings().Put(key, int64(0)); err != nil {
		// Recorded before the first read: a daemon killed before it relayed anything
		// leaves "from the start" behind, so the next one relays the lines written
		// meanwhile instead of skipping to the end as it does for a job no daemon
		// relayed.
		h.log.Warn("record the log relay's start", "job_id", jobID, "err", err)
	}
	lastSaved := off
	var partial []byte
	tick := time.NewTicker(h.cfg.LogPoll)
	defer tick.Stop()
	windowStart, inWindow, suppressed := time.Now(), 0, 0
	for {
		final := false
		select {
		case <-ctx.Done():
			final = true
		case <-tick.C:
		}
		chunk, newOff, skipped, err := readFrom(path, off)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			h.log.Warn("read trainer log", "job_id", jobID, "err", err)
		}
		if err == nil {
			off = newOff
		}
		var evs []plugins.Event
		if skipped > 0 {
			// The chunk starts inside a line: drop up to its end.
			partial = nil
			if i := bytes.IndexByte(chunk, '\n'); i >= 0 {
				chunk = chunk[i+1:]
			} else {
				chunk = nil
			}
			evs = append(evs, h.logEvent("warning", fmt.Sprintf("%d bytes of trainer log not relayed (written faster than it can be relayed); the full log is %s", skipped, plugins.LogFile)))
		}
		data := append(partial, chunk...)
		for {
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				break
			}
			line := data[:i]
			data = data[i+1:]
			now := time.Now()
			if now.Sub(windowStart) >= time.Second {
				if suppressed > 0 {
					evs = append(evs, h.logEvent("warning", fmt.Sprintf("%d trainer log lines not relayed (rate limit %d/s); the full log is %s", suppressed, h.cfg.LogRate, plugins.LogFile)))
				}
				windowStart, inWindow, suppressed = now, 0, 0
			}
			if inWindow >= h.cfg.LogRate {
				suppressed++
				continue
			}
			inWindow++
			evs = append(evs, h.logEvent("info", string(line)))
		}
		partial = append([]byte(nil), data...)
		if len(partial) > h.cfg.LogLineMax {
			// A line longer than the cap: relay its start now, drop the rest of it.
			evs = append(evs, h.logEvent("info", string(partial)))
			partial = nil
		}
		if final && suppressed > 0 {
			evs = append(evs, h.logEvent("warning", fmt.Sprintf("%d trainer log lines not relayed (rate limit %d/s)", suppressed, h.cfg.LogRate)))
		}
		if len(evs) > 0 {
			if err := h.record(jobID, evs...); err != nil {
				h.log.Warn("store log events", "job_id", jobID, "err", err)
			}
		}
		// Remember how far the log is relayed (complete lines only).
		if done := off - int64(len(partial)); done != lastSaved {
			if err := h.db.Settings().Put(key, done); err == nil {
				lastSaved = done
			}
		}
		if final {
			return
		}
	}
}

// logEvent builds a log event for one sanitised line.
func (h *Hub) logEvent(severity, line string) plugins.Event {
	msg := strings.TrimSpace(CleanText(Redact(line), h.cfg.LogLineMax, true))
	return plugins.Event{Type: TypeLog, Severity: severity, Time: time.Now().UTC(), Message: msg}
}

// readFrom reads what was appended to path after off, at most maxLogRead bytes; when
// more is there it skips to the newest maxLogRead bytes and reports the skip.
func readFrom(path string, off int64) (chunk []byte, newOff, skipped int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, 0, 0, err
	}
	size := st.Size()
	if size < off {
		off = 0 // truncated or replaced
	}
	if size-off > maxLogRead {
		skipped = size - maxLogRead - off
		off = size - maxLogRead
	}
	buf := make([]byte, size-off)
	n, err := f.ReadAt(buf, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, 0, skipped, err
	}
	return buf[:n], off + int64(n), skipped, nil
}
