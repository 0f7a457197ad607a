package webhooks

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// hit is one request a test receiver got.
type hit struct {
	method, path string
	header       http.Header
	body         []byte
}

// receiver is a loopback webhook endpoint that records requests and counts TCP
// connections (ConnState new), so tests can assert "no connect was attempted".
type receiver struct {
	srv     *httptest.Server
	respond func(n int, w http.ResponseWriter, r *http.Request) // n is 1-based; nil → 200

	mu    sync.Mutex // guards hits and conns
	hits  []hit
	conns int
}

func newReceiver(t *testing.T, respond func(n int, w http.ResponseWriter, r *http.Request)) *receiver {
	return startReceiver(t, false, respond)
}

func startReceiver(t *testing.T, tlsOn bool, respond func(n int, w http.ResponseWriter, r *http.Request)) *receiver {
	t.Helper()
	rc := &receiver{respond: respond}
	rc.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 16<<20))
		rc.mu.Lock()
		rc.hits = append(rc.hits, hit{method: r.Method, path: r.URL.Path, header: r.Header.Clone(), body: body})
		n := len(rc.hits)
		rc.mu.Unlock()
		if rc.respond != nil {
			rc.respond(n, w, r)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	// TLS tests provoke handshake failures on purpose; keep them out of the test output.
	rc.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	rc.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			rc.mu.Lock()
			rc.conns++
			rc.mu.Unlock()
		}
	}
	if tlsOn {
		rc.srv.StartTLS()
	} else {
		rc.srv.Start()
	}
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) count() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.hits)
}

func (rc *receiver) connCount() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.conns
}

func (rc *receiver) get(i int) hit {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.hits[i]
}

// addr is the listener's "127.0.0.1:port".
func (rc *receiver) addr() string { return rc.srv.Listener.Addr().String() }

func (rc *receiver) port() string {
	_, p, _ := net.SplitHostPort(rc.addr())
	return p
}

// fakeResolver answers from a script: each lookup of a host takes the next answer, the
// last one repeating.
type fakeResolver struct {
	mu      sync.Mutex // guards answers and calls
	answers map[string][][]netip.Addr
	calls   map[string]int
}

func newFakeResolver() *fakeResolver {
	return &fakeResolver{answers: map[string][][]netip.Addr{}, calls: map[string]int{}}
}

func (f *fakeResolver) set(host string, answers ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var seq [][]netip.Addr
	for _, a := range answers {
		seq = append(seq, []netip.Addr{netip.MustParseAddr(a)})
	}
	f.answers[host] = seq
}

func (f *fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	seq, ok := f.answers[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	i := min(f.calls[host], len(seq)-1)
	f.calls[host]++
	return seq[i], nil
}

func (f *fakeResolver) lookups(host string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[host]
}

// fakeClock is a settable clock for throttling.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// sleepRecorder records backoff delays and returns at once.
type sleepRecorder struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *sleepRecorder) Sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.d = append(s.d, d)
	s.mu.Unlock()
	return ctx.Err()
}

func (s *sleepRecorder) delays() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.d...)
}

// logBuf collects slog JSON output.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func testLogger() (*slog.Logger, *logBuf) {
	buf := &logBuf{}
	return slog.New(slog.NewJSONHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

// testOptions: instant backoff (recorded), fixed jitter, short timeouts.
func testOptions(rec *sleepRecorder) Options {
	return Options{Sleep: rec.Sleep, Jitter: func() float64 { return 0.5 }, Timeout: 2 * time.Second,
		DrainTimeout: 5 * time.Second, Resolver: newFakeResolver()}
}

func newTestDispatcher(t *testing.T, log *slog.Logger, opts Options) *Dispatcher {
	t.Helper()
	d := New(log, opts)
	t.Cleanup(func() { _ = d.Close() })
	return d
}

// waitFor polls cond for up to timeout.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// stats returns the job's only webhook's stats.
func stats1(t *testing.T, d *Dispatcher, job string) Stats {
	t.Helper()
	st := d.Stats(job)
	if len(st) != 1 {
		t.Fatalf("want 1 webhook for %s, have %d", job, len(st))
	}
	return st[0]
}

// settled: every published event has been delivered or given up on.
func settled(d *Dispatcher, job string, n uint64) func() bool {
	return func() bool {
		st := d.Stats(job)
		return len(st) == 1 && st[0].Delivered+st[0].Failed >= n
	}
}

func rawCfg(url string) Config {
	return Config{Type: TypeRaw, URL: url, LogLevel: "info"}
}

func mustJSON(t *testing.T, v any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func decodeBody(t *testing.T, h hit) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(h.body, &m); err != nil {
		t.Fatalf("body is not JSON: %v: %q", err, h.body)
	}
	return m
}
