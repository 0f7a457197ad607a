package webhooks

import (
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// W4 rows: a receiver that never answers, trickles, floods or fails. Timeouts are scaled
// down through Options.Timeout; TestOptionsDefaults pins the production value (10 s).
// Each receiver misbehaves for longer than the test waits, so an attempt that is not
// ended by the timeout leaves the event unsettled and the test fails; no elapsed time
// is compared with an upper bound (on a busy machine it would measure the machine).

func TestW4NeverResponds(t *testing.T) {
	rc := newReceiver(t, func(_ int, _ http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	rec := &sleepRecorder{}
	opts := testOptions(rec)
	opts.Timeout = 250 * time.Millisecond
	opts.MaxAttempts = 3
	d := newTestDispatcher(t, nil, opts)
	if err := d.Register("j", []Config{rawCfg(rc.srv.URL)}, 0); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	d.Publish("j", Event{Type: "job.status"})
	waitFor(t, "give up", 30*time.Second, settled(d, "j", 1))
	if el := time.Since(start); el < 3*opts.Timeout {
		t.Errorf("3 attempts took %v, less than 3 timeouts of %v: an attempt did not wait for the receiver", el, opts.Timeout)
	}
	st := stats1(t, d, "j")
	if st.Failed != 1 || st.Retries != 2 || rc.count() != 3 || st.LastStatus != 0 {
		t.Errorf("stats %+v hits %d", st, rc.count())
	}
	if len(rec.delays()) != 2 {
		t.Errorf("backoffs %v", rec.delays())
	}
}

// The response headers arrive one byte at a time: the total timeout, not a per-read one,
// ends the attempt.
func TestW4TrickledHeaders(t *testing.T) {
	rc := newReceiver(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		// One byte a second: the headers would take 38 s, longer than the test waits.
		for _, b := range []byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n") {
			if _, err := buf.Write([]byte{b}); err != nil || buf.Flush() != nil {
				return
			}
			select {
			case <-r.Context().Done():
				return
			case <-time.After(time.Second):
			}
		}
	})
	opts := testOptions(&sleepRecorder{})
	opts.Timeout = 300 * time.Millisecond
	opts.MaxAttempts = 1
	d := newTestDispatcher(t, nil, opts)
	if err := d.Register("j", []Config{rawCfg(rc.srv.URL)}, 0); err != nil {
		t.Fatal(err)
	}
	d.Publish("j", Event{Type: "job.status"})
	waitFor(t, "outcome", 30*time.Second, settled(d, "j", 1))
	if st := stats1(t, d, "j"); st.Failed != 1 || st.Delivered != 0 {
		t.Errorf("stats %+v", st)
	}
}

// A 200 whose body trickles a byte at a time, for ever: the event counts as delivered
// and the attempt still ends at the timeout.
func TestW4TrickledBody(t *testing.T) {
	rc := newReceiver(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		rcw := http.NewResponseController(w)
		for {
			if _, err := w.Write([]byte{'x'}); err != nil || rcw.Flush() != nil {
				return
			}
			select {
			case <-r.Context().Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	})
	opts := testOptions(&sleepRecorder{})
	opts.Timeout = 300 * time.Millisecond
	d := newTestDispatcher(t, nil, opts)
	if err := d.Register("j", []Config{rawCfg(rc.srv.URL)}, 0); err != nil {
		t.Fatal(err)
	}
	d.Publish("j", Event{Type: "job.status"})
	waitFor(t, "outcome", 30*time.Second, settled(d, "j", 1))
	if st := stats1(t, d, "j"); st.Delivered != 1 || rc.count() != 1 {
		t.Errorf("stats %+v hits %d", st, rc.count())
	}
}

// A 10 GiB response: at most MaxResponseBytes is read and the connection is dropped.
func TestW4HugeBodyIsCapped(t *testing.T) {
	var written atomic.Int64
	rc := newReceiver(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "10737418240")
		w.WriteHeader(http.StatusOK)
		chunk := []byte(strings.Repeat("A", 64<<10))
		for written.Load() < 10<<30 {
			n, err := w.Write(chunk)
			written.Add(int64(n))
			if err != nil {
				return
			}
		}
	})
	opts := testOptions(&sleepRecorder{})
	d := newTestDispatcher(t, nil, opts)
	if err := d.Register("j", []Config{rawCfg(rc.srv.URL)}, 0); err != nil {
		t.Fatal(err)
	}
	d.Publish("j", Event{Type: "job.status"})
	waitFor(t, "outcome", 30*time.Second, settled(d, "j", 1))
	if st := stats1(t, d, "j"); st.Delivered != 1 {
		t.Errorf("stats %+v", st)
	}
	// The server stops once the client hangs up; what it managed to push is socket
	// buffers, nowhere near the advertised size.
	waitFor(t, "server to notice the hang-up", 30*time.Second, func() bool {
		a := written.Load()
		time.Sleep(20 * time.Millisecond)
		return written.Load() == a
	})
	if w := written.Load(); w > 64<<20 {
		t.Errorf("server wrote %d bytes", w)
	}
}

// 500s: backoff grows exponentially with jitter, then the event is given up.
func TestW4ServerErrorsBackOffThenGiveUp(t *testing.T) {
	rc := newReceiver(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n == 2 {
			w.Header().Set("Retry-After", "3")
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusInternalServerError)
	})
	rec := &sleepRecorder{}
	opts := Options{Sleep: rec.Sleep, Timeout: time.Second} // default attempts, base, cap, real jitter
	d := newTestDispatcher(t, nil, opts)
	if err := d.Register("j", []Config{rawCfg(rc.srv.URL)}, 0); err != nil {
		t.Fatal(err)
	}
	d.Publish("j", Event{Type: "job.status"})
	waitFor(t, "give up", 30*time.Second, settled(d, "j", 1))
	delays := rec.delays()
	if rc.count() != DefaultMaxAttempts || len(delays) != DefaultMaxAttempts-1 {
		t.Fatalf("hits %d delays %v", rc.count(), delays)
	}
	bounds := [][2]time.Duration{{500 * time.Millisecond, time.Second}, {3 * time.Second, 3 * time.Second}, {2 * time.Second, 4 * time.Second}, {4 * time.Second, 8 * time.Second}}
	for i, b := range bounds {
		if delays[i] < b[0] || delays[i] > b[1] {
			t.Errorf("delay %d = %v, want in [%v, %v]", i+1, delays[i], b[0], b[1])
		}
	}
	if st := stats1(t, d, "j"); st.Failed != 1 || st.Retries != 4 || st.LastStatus != 500 {
		t.Errorf("stats %+v", st)
	}
}

// Goroutines return to their baseline after Close, hung receivers included.
func TestW4GoroutinesReturnToBaseline(t *testing.T) {
	hang := newReceiver(t, func(_ int, _ http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	ok := newReceiver(t, nil)
	fail := newReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(500) })
	base := runtime.NumGoroutine() // the receivers' accept loops are counted from their go statements

	opts := Options{Timeout: 5 * time.Second, DrainTimeout: 200 * time.Millisecond} // real sleeps
	d := New(nil, opts)
	for i, job := range []string{"a", "b", "c"} {
		cfgs := []Config{rawCfg(hang.srv.URL), rawCfg(ok.srv.URL), rawCfg(fail.srv.URL)}
		if err := d.Register(job, cfgs, time.Duration(i)*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 50; i++ {
		for _, job := range []string{"a", "b", "c"} {
			d.Publish(job, Event{Type: "job.status"})
		}
	}
	<-d.Unregister("c")
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "goroutines back to baseline", 30*time.Second, func() bool { return runtime.NumGoroutine() <= base })
}
