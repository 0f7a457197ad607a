package webhooks

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"simpletuner/plugins"
)

// Header names sent with every delivery.
const (
	// HeaderEventID carries the event id, identical on every retry of one event, so a
	// receiver can drop duplicates (delivery is at-least-once).
	HeaderEventID = "X-SimpleTuner-Event-Id"
	// HeaderAttempt is the 1-based attempt number.
	HeaderAttempt = "X-SimpleTuner-Delivery-Attempt"
)

// Defaults for Options' zero values.
const (
	DefaultQueueSize        = 1000
	DefaultMaxAttempts      = 5
	DefaultTimeout          = 10 * time.Second
	DefaultBackoffBase      = time.Second
	DefaultBackoffMax       = 60 * time.Second
	DefaultMaxResponseBytes = 64 << 10
	DefaultDrainTimeout     = 15 * time.Second
	dialTimeout             = 3 * time.Second
	tlsHandshakeTimeout     = 5 * time.Second
)

// Options configure a Dispatcher; zero values take the defaults above.
type Options struct {
	// Policy decides which destinations may be reached (--webhook-deny-private).
	Policy Policy
	// Resolver resolves webhook host names; nil uses a fresh net.Resolver.
	Resolver Resolver
	// RootCAs, when set, replaces the system roots for TLS verification (a private CA).
	RootCAs *x509.CertPool
	// QueueSize bounds each webhook's queue (default 1000). Essential events may exceed it
	// up to twice the size before the oldest event is dropped regardless.
	QueueSize int
	// MaxAttempts is the number of tries per event, first included (default 5).
	MaxAttempts int
	// Timeout is the total time of one attempt: dial, TLS, request and response (default
	// and maximum 10 s).
	Timeout time.Duration
	// BackoffBase and BackoffMax shape the retry delay: base·2^(attempt−1), capped, with
	// equal jitter (half fixed, half random). Defaults 1 s and 60 s.
	BackoffBase, BackoffMax time.Duration
	// MaxResponseBytes caps how much of a response is read (default 64 KiB).
	MaxResponseBytes int64
	// DrainTimeout bounds how long Unregister and Close keep delivering queued events
	// (default 15 s); what is left after it is dropped.
	DrainTimeout time.Duration
	// Now is the clock for throttling and timestamps (default time.Now).
	Now func() time.Time
	// Sleep waits between retries and returns early with ctx's error (default: a timer).
	Sleep func(ctx context.Context, d time.Duration) error
	// Jitter returns a number in [0, 1) (default math/rand/v2).
	Jitter func() float64
	// OnResult, when set, hears the outcome of every event handed to a webhook:
	// ResultDelivered, ResultFailed, ResultBlocked or ResultDropped (the metrics count
	// them). It runs on the delivery path, sometimes under a queue's lock: it must be
	// quick and must not call the Dispatcher.
	OnResult func(result string)

	// dialRewrite and onConnect are test hooks; see guard.
	dialRewrite func(addr string) string
	onConnect   func(addr string)
}

// Outcomes reported to Options.OnResult.
const (
	ResultDelivered = "delivered" // the receiver answered 2xx
	ResultFailed    = "failed"    // given up on after the attempts, or not retryable
	ResultBlocked   = "blocked"   // the destination is refused by the policy
	ResultDropped   = "dropped"   // evicted from a full queue before any attempt
)

func (o *Options) setDefaults() {
	if o.OnResult == nil {
		o.OnResult = func(string) {}
	}
	if o.QueueSize <= 0 {
		o.QueueSize = DefaultQueueSize
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = DefaultMaxAttempts
	}
	if o.Timeout <= 0 || o.Timeout > DefaultTimeout {
		o.Timeout = DefaultTimeout
	}
	if o.BackoffBase <= 0 {
		o.BackoffBase = DefaultBackoffBase
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = DefaultBackoffMax
	}
	if o.MaxResponseBytes <= 0 {
		o.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = DefaultDrainTimeout
	}
	if o.Resolver == nil {
		o.Resolver = &net.Resolver{}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Sleep == nil {
		o.Sleep = sleepCtx
	}
	if o.Jitter == nil {
		o.Jitter = mrand.Float64
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stats counts one webhook's outcomes. Failed includes Blocked; Dropped counts events
// evicted from a full queue or abandoned when a drain timed out; Throttled and Filtered
// count events skipped by the reporting interval and log_level.
type Stats struct {
	JobID     string `json:"job_id"`
	Index     int    `json:"index"`
	Type      string `json:"type"`
	Target    string `json:"target"` // redacted
	Queued    int    `json:"queued"`
	Delivered uint64 `json:"delivered"`
	Failed    uint64 `json:"failed"`
	Blocked   uint64 `json:"blocked"`
	Dropped   uint64 `json:"dropped"`
	Throttled uint64 `json:"throttled"`
	Filtered  uint64 `json:"filtered"`
	Retries   uint64 `json:"retries"`
	// LastStatus is the HTTP status of the last response (0 when none came).
	LastStatus int `json:"last_status"`
	// LastError is the last failure, redacted.
	LastError string `json:"last_error,omitempty"`
}

// Dispatcher delivers job events to their webhooks. Its methods are safe for concurrent
// use; Publish never blocks on the network.
type Dispatcher struct {
	log  *slog.Logger
	opts Options

	// ctx is cancelled by Close once draining is over, aborting whatever is in flight.
	ctx    context.Context
	cancel context.CancelFunc
	// wg counts every sink worker and drain watcher; Close waits for it.
	wg sync.WaitGroup

	// mu guards jobs and closed.
	mu     sync.Mutex
	jobs   map[string][]*sink
	closed bool
}

// New returns a Dispatcher logging to log (nil discards).
func New(log *slog.Logger, opts Options) *Dispatcher {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opts.setDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &Dispatcher{log: log, opts: opts, ctx: ctx, cancel: cancel, jobs: map[string][]*sink{}}
}

// Register starts delivery for a job's webhooks after validating them against the
// policy. reportingInterval (--webhook_reporting_interval) throttles progress events per
// webhook; 0 sends every one. Registering a job again replaces its webhooks; the old ones
// finish their queues in the background.
func (d *Dispatcher) Register(jobID string, cfgs []Config, reportingInterval time.Duration) error {
	if err := Validate(cfgs, d.opts.Policy); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	sinks := make([]*sink, 0, len(cfgs))
	for i, c := range cfgs {
		s := d.newSink(jobID, i, c, reportingInterval)
		if c.SSLNoVerify {
			// An audit trail for a weakened transport (W5); the API layer has already
			// checked job.hooks.
			d.log.Warn("webhook TLS verification disabled", "job_id", jobID, "webhook", i+1, "target", RedactURL(c.URL))
		}
		sinks = append(sinks, s)
	}
	if old := d.jobs[jobID]; old != nil {
		d.drain(old, make(chan struct{}))
	}
	if len(sinks) == 0 {
		delete(d.jobs, jobID)
		return nil
	}
	d.jobs[jobID] = sinks
	for _, s := range sinks {
		d.wg.Add(1)
		go s.run()
	}
	return nil
}

// Publish queues ev for each of the job's webhooks and returns at once. Events of jobs
// without webhooks are ignored.
func (d *Dispatcher) Publish(jobID string, ev Event) {
	d.mu.Lock()
	sinks := d.jobs[jobID]
	d.mu.Unlock()
	if len(sinks) == 0 {
		return
	}
	if ev.JobID == "" {
		ev.JobID = jobID
	}
	if ev.Timestamp.IsZero() {
		ev.Timestamp = d.opts.Now()
	}
	if ev.Severity == "" {
		ev.Severity = "info"
		if strings.HasPrefix(ev.Type, "debug") {
			ev.Severity = "debug"
		}
	}
	if ev.Type == "" {
		ev.Type = plugins.EventNotification
	}
	if ev.ID == "" {
		if ev.Seq != 0 {
			ev.ID = jobID + "-" + strconv.FormatUint(ev.Seq, 10)
		} else {
			ev.ID = randomID()
		}
	}
	for _, s := range sinks {
		s.offer(ev)
	}
}

// Unregister stops accepting events for the job and lets its webhooks deliver what is
// queued, for at most DrainTimeout. Call it after the job's terminal event was published.
// The returned channel is closed when delivery has ended.
func (d *Dispatcher) Unregister(jobID string) <-chan struct{} {
	d.mu.Lock()
	sinks := d.jobs[jobID]
	delete(d.jobs, jobID)
	d.mu.Unlock()
	done := make(chan struct{})
	d.drain(sinks, done)
	return done
}

// Stats returns the counters of the job's webhooks, in config order.
func (d *Dispatcher) Stats(jobID string) []Stats {
	d.mu.Lock()
	sinks := d.jobs[jobID]
	d.mu.Unlock()
	out := make([]Stats, 0, len(sinks))
	for _, s := range sinks {
		out = append(out, s.snapshot())
	}
	return out
}

// Snapshot returns the counters of every registered job's webhooks (a status view).
func (d *Dispatcher) Snapshot() map[string][]Stats {
	d.mu.Lock()
	ids := make([]string, 0, len(d.jobs))
	for id := range d.jobs {
		ids = append(ids, id)
	}
	d.mu.Unlock()
	out := make(map[string][]Stats, len(ids))
	for _, id := range ids {
		if st := d.Stats(id); len(st) > 0 {
			out[id] = st
		}
	}
	return out
}

// Close stops accepting events, drains every queue for at most DrainTimeout, then aborts
// what is left and waits for all delivery goroutines to return.
func (d *Dispatcher) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	var all []*sink
	for _, s := range d.jobs {
		all = append(all, s...)
	}
	d.jobs = map[string][]*sink{}
	d.mu.Unlock()
	done := make(chan struct{})
	d.drain(all, done)
	<-done
	d.cancel()
	d.wg.Wait()
	return nil
}

// drain closes the sinks' queues and, after DrainTimeout, cancels those still working.
// done is closed when every sink's worker has returned.
func (d *Dispatcher) drain(sinks []*sink, done chan struct{}) {
	if len(sinks) == 0 {
		close(done)
		return
	}
	for _, s := range sinks {
		s.close()
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		defer close(done)
		timer := time.NewTimer(d.opts.DrainTimeout)
		defer timer.Stop()
		for _, s := range sinks {
			select {
			case <-s.done:
			case <-timer.C:
				for _, s := range sinks {
					s.cancel()
				}
				for _, s := range sinks {
					<-s.done
				}
				return
			}
		}
	}()
}

func randomID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// sink is one webhook of one job: a bounded queue and the goroutine draining it.
type sink struct {
	d        *Dispatcher
	jobID    string
	index    int
	cfg      Config
	interval time.Duration
	client   *http.Client

	ctx    context.Context // cancelled when a drain times out or the dispatcher closes
	cancel context.CancelFunc
	wake   chan struct{} // capacity 1: "the queue changed"
	done   chan struct{} // closed when run returns

	// mu guards queue, closing, lastProgress and stats. It is never held across network
	// I/O, so Publish only ever waits for another Publish or a queue pop.
	mu           sync.Mutex
	queue        []queued
	closing      bool
	lastProgress time.Time
	stats        Stats
}

// queued is a queue entry; essential is computed once at enqueue because eviction scans
// the queue on every Publish to a full queue.
type queued struct {
	ev        *Event
	essential bool
}

func (d *Dispatcher) newSink(jobID string, index int, c Config, interval time.Duration) *sink {
	g := newGuard(d.opts.Policy, d.opts.Resolver, dialTimeout, d.opts.dialRewrite, d.opts.onConnect)
	tr := &http.Transport{
		Proxy:                  nil, // a proxy would hide the real destination from the guard
		DialContext:            g.dialContext,
		TLSClientConfig:        &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: d.opts.RootCAs, InsecureSkipVerify: c.SSLNoVerify}, //nolint:gosec // per-webhook opt-in gated by job.hooks
		TLSHandshakeTimeout:    tlsHandshakeTimeout,
		DisableKeepAlives:      true, // every delivery dials (and is checked) afresh
		MaxResponseHeaderBytes: d.opts.MaxResponseBytes,
	}
	client := &http.Client{
		Transport: tr,
		Timeout:   d.opts.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	ctx, cancel := context.WithCancel(d.ctx)
	return &sink{d: d, jobID: jobID, index: index, cfg: c, interval: interval, client: client,
		ctx: ctx, cancel: cancel, wake: make(chan struct{}, 1), done: make(chan struct{}),
		stats: Stats{JobID: jobID, Index: index + 1, Type: c.Type, Target: RedactURL(c.URL)}}
}

func (s *sink) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *sink) close() {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	s.signal()
}

func (s *sink) snapshot() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Queued = len(s.queue)
	return st
}

// offer applies the level filter, the reporting interval and the queue bound.
func (s *sink) offer(ev Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return
	}
	if ev.level() > logLevels[s.cfg.LogLevel] {
		s.stats.Filtered++
		return
	}
	if s.interval > 0 && ev.isProgress() {
		now := s.d.opts.Now()
		if !s.lastProgress.IsZero() && now.Sub(s.lastProgress) < s.interval {
			s.stats.Throttled++
			return
		}
		s.lastProgress = now
	}
	q := queued{ev: &ev, essential: ev.isEssential()}
	if limit := s.d.opts.QueueSize; len(s.queue) >= limit {
		if !s.evictFor(q, limit) {
			s.stats.Dropped++
			s.d.opts.OnResult(ResultDropped)
			return
		}
	}
	s.queue = append(s.queue, q)
	s.signal()
}

// evictFor makes room for ev in a full queue by dropping the oldest non-essential event.
// It reports false when ev itself should be dropped: it is not essential and everything
// queued is. Essential events may overfill the queue up to twice its size; past that the
// oldest event goes whatever it is, so memory stays bounded.
func (s *sink) evictFor(q queued, limit int) bool {
	for i := range s.queue {
		if !s.queue[i].essential {
			s.remove(i)
			s.stats.Dropped++
			s.d.opts.OnResult(ResultDropped)
			return true
		}
	}
	if !q.essential {
		return false
	}
	if len(s.queue) >= 2*limit {
		s.remove(0)
		s.stats.Dropped++
		s.d.opts.OnResult(ResultDropped)
	}
	return true
}

// remove deletes entry i; the front (the common case: old progress) is O(1).
func (s *sink) remove(i int) {
	if i == 0 {
		s.queue[0] = queued{}
		s.queue = s.queue[1:]
		return
	}
	s.queue = append(s.queue[:i], s.queue[i+1:]...)
}

// next pops the next event; false means the worker should return (closed and empty, or
// cancelled, in which case what is left counts as dropped).
func (s *sink) next() (*Event, bool) {
	for {
		s.mu.Lock()
		if s.ctx.Err() != nil {
			s.stats.Dropped += uint64(len(s.queue))
			s.queue = nil
			s.mu.Unlock()
			return nil, false
		}
		if len(s.queue) > 0 {
			ev := s.queue[0].ev
			s.remove(0)
			s.mu.Unlock()
			return ev, true
		}
		if s.closing {
			s.mu.Unlock()
			return nil, false
		}
		s.mu.Unlock()
		select {
		case <-s.wake:
		case <-s.ctx.Done():
		}
	}
}

func (s *sink) run() {
	defer s.d.wg.Done()
	defer close(s.done)
	defer s.cancel()
	defer s.client.CloseIdleConnections()
	for {
		ev, ok := s.next()
		if !ok {
			return
		}
		s.deliver(ev)
	}
}

// deliver sends one event, retrying transient failures with backoff.
func (s *sink) deliver(ev *Event) {
	var (
		body  []byte
		ctype string
		err   error
	)
	if s.cfg.Type == TypeDiscord {
		body, ctype, err = discordBody(s.cfg.MessagePrefix, ev)
	} else {
		body, err = rawBody(ev)
		ctype = "application/json"
	}
	if err != nil {
		s.finish(ev, 0, err, 0)
		return
	}
	for attempt := 1; ; attempt++ {
		status, retryAfter, err := s.attempt(ev, body, ctype, attempt)
		if err == nil {
			s.mu.Lock()
			s.stats.Delivered++
			s.stats.LastStatus = status
			s.mu.Unlock()
			s.d.opts.OnResult(ResultDelivered)
			return
		}
		if !retryable(status, err) || attempt >= s.d.opts.MaxAttempts || s.ctx.Err() != nil {
			s.finish(ev, status, err, attempt)
			return
		}
		delay := s.backoff(attempt, retryAfter)
		s.mu.Lock()
		s.stats.Retries++
		s.stats.LastStatus = status
		s.stats.LastError = safeError(err, s.cfg)
		s.mu.Unlock()
		s.d.log.Debug("webhook delivery failed; retrying", "job_id", s.jobID, "webhook", s.index+1,
			"target", RedactURL(s.cfg.URL), "event_id", ev.ID, "attempt", attempt, "status", status,
			"retry_in", delay, "error", safeError(err, s.cfg))
		if err := s.d.opts.Sleep(s.ctx, delay); err != nil {
			s.finish(ev, status, err, attempt)
			return
		}
	}
}

// finish records an event given up on.
func (s *sink) finish(ev *Event, status int, err error, attempts int) {
	msg := safeError(err, s.cfg)
	blocked := errors.Is(err, ErrBlocked)
	s.mu.Lock()
	s.stats.Failed++
	if blocked {
		s.stats.Blocked++
	}
	s.stats.LastStatus = status
	s.stats.LastError = msg
	s.mu.Unlock()
	if blocked {
		s.d.opts.OnResult(ResultBlocked)
	} else {
		s.d.opts.OnResult(ResultFailed)
	}
	s.d.log.Warn("webhook delivery failed", "job_id", s.jobID, "webhook", s.index+1,
		"target", RedactURL(s.cfg.URL), "event_id", ev.ID, "event_type", ev.Type,
		"attempts", attempts, "status", status, "blocked", blocked, "error", msg)
}

// statusError is a non-2xx answer.
type statusError struct{ code int }

func (e *statusError) Error() string {
	if e.code >= 300 && e.code < 400 {
		return fmt.Sprintf("receiver answered %d (redirects are not followed)", e.code)
	}
	return fmt.Sprintf("receiver answered %d", e.code)
}

// attempt makes one POST. It returns the status (0 without a response), a Retry-After
// hint, and nil only for a 2xx answer.
func (s *sink) attempt(ev *Event, body []byte, ctype string, n int) (int, time.Duration, error) {
	ctx, cancel := context.WithTimeout(s.ctx, s.d.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return 0, 0, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Content-Type", ctype)
	req.Header.Set("User-Agent", "SimpleTuner-webhooks")
	req.Header.Set(HeaderEventID, ev.ID)
	req.Header.Set(HeaderAttempt, strconv.Itoa(n))
	if s.cfg.Type == TypeRaw && s.cfg.AuthToken != "" {
		req.Header.Set("Authorization", "Bearer "+s.cfg.AuthToken)
		req.Header.Set("X-API-Key", s.cfg.AuthToken)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, 0, err
	}
	// The body is read, capped, only so the receiver can finish writing; it is never
	// echoed anywhere. A slow or endless body is cut off by the attempt's timeout.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, s.d.opts.MaxResponseBytes))
	_ = resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp.StatusCode, 0, nil
	}
	var ra time.Duration
	if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs > 0 {
		ra = time.Duration(secs) * time.Second
	}
	return resp.StatusCode, ra, &statusError{resp.StatusCode}
}

// retryable: network errors and 408/425/429/5xx are worth another try; a blocked
// destination, a certificate problem, a redirect or another 4xx will not change.
func retryable(status int, err error) bool {
	if errors.Is(err, ErrBlocked) {
		return false
	}
	var (
		certErr     *tls.CertificateVerificationError
		unknownAuth x509.UnknownAuthorityError
		hostErr     x509.HostnameError
		invalidCert x509.CertificateInvalidError
	)
	if errors.As(err, &certErr) || errors.As(err, &unknownAuth) || errors.As(err, &hostErr) || errors.As(err, &invalidCert) {
		return false
	}
	switch {
	case status == 0:
		return true
	case status == http.StatusRequestTimeout, status == http.StatusTooEarly, status == http.StatusTooManyRequests:
		return true
	case status >= 500:
		return true
	}
	return false
}

// backoff is base·2^(attempt−1) capped at BackoffMax, with equal jitter; a receiver's
// Retry-After wins when longer (still capped).
func (s *sink) backoff(attempt int, retryAfter time.Duration) time.Duration {
	o := s.d.opts
	d := o.BackoffBase
	for i := 1; i < attempt && d < o.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, o.BackoffMax)
	d = d/2 + time.Duration(o.Jitter()*float64(d/2))
	if retryAfter > d {
		d = min(retryAfter, o.BackoffMax)
	}
	return d
}
