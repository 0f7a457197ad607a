package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"simpletuner/plugins"
	"simpletuner/store"
)

// Sentinel errors of the hub.
var (
	// ErrTooManyClients means the stream limit is reached (the API answers 503).
	ErrTooManyClients = errors.New("too many concurrent event streams")
	// ErrRevoked means the stream's credentials stopped being valid.
	ErrRevoked = errors.New("credentials revoked")
	// ErrClosed means the hub is shutting down.
	ErrClosed = errors.New("event hub closed")
)

// Config configures a Hub. Zero values get the defaults in brackets.
type Config struct {
	Store *store.DB
	Log   *slog.Logger
	// Heartbeat is the interval of heartbeat frames, and of the credential re-check of
	// every stream [15 s].
	Heartbeat time.Duration
	// WriteTimeout bounds one write to a client; a client that does not take its bytes
	// within it is dropped [10 s].
	WriteTimeout time.Duration
	// RingEvents and RingBytes bound the recent events kept in memory for every stream
	// to read from [8192 events, 16 MiB]; a client further behind reads the store.
	RingEvents int
	RingBytes  int
	// FlushInterval is the shortest time between two writes to one client [10 ms]:
	// events that arrive meanwhile go out in the same write, which bounds the system
	// calls per client whatever the event rate, at the cost of that much latency.
	FlushInterval time.Duration
	// MaxClients bounds concurrent streams [1000].
	MaxClients int
	// RetentionCount and RetentionAge bound the stored events [100000, 7 days]; a
	// negative value disables that bound. RetentionEvery is how often Start enforces them
	// [1 min]; negative: never, the caller calls Trim (the daemon's built-in schedule
	// does, docs/architecture.md §6).
	RetentionCount int
	RetentionAge   time.Duration
	RetentionEvery time.Duration
	// LogRate is how many trainer log lines per second and job become log events; the
	// rest are counted and summarised [50; negative disables the relay]. LogLineMax
	// caps one line [2 KiB]; LogPoll is how often trainer.log is read [250 ms].
	LogRate    int
	LogLineMax int
	LogPoll    time.Duration
}

// Hub stores, publishes and streams events. It is safe for concurrent use.
type Hub struct {
	cfg Config
	db  *store.DB
	log *slog.Logger
	ctx context.Context
	end context.CancelFunc
	wg  sync.WaitGroup

	// pubMu serialises store-then-publish, so the ring holds indexes in order.
	pubMu sync.Mutex
	ring  *ring

	// subMu guards subs and closed.
	subMu  sync.RWMutex
	subs   map[*subscriber]struct{}
	closed bool

	// jobMu guards owners, statuses and tails.
	jobMu    sync.Mutex
	owners   map[string]int64
	statuses map[string]string
	tails    map[string]*tailer

	dropped    atomic.Int64 // clients dropped for not reading
	storePages atomic.Int64 // pages streams read from the store (behind the ring)
}

// New returns a Hub over the store. Call Start to run retention and the log relay, and
// Close to end every stream.
func New(cfg Config) *Hub {
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 15 * time.Second
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 10 * time.Second
	}
	if cfg.RingEvents <= 0 {
		cfg.RingEvents = 8192
	}
	if cfg.RingBytes <= 0 {
		cfg.RingBytes = 16 << 20
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = 10 * time.Millisecond
	}
	if cfg.MaxClients <= 0 {
		cfg.MaxClients = 1000
	}
	if cfg.RetentionCount == 0 {
		cfg.RetentionCount = 100_000
	}
	if cfg.RetentionAge == 0 {
		cfg.RetentionAge = 7 * 24 * time.Hour
	}
	if cfg.RetentionEvery == 0 {
		cfg.RetentionEvery = time.Minute
	}
	if cfg.LogRate == 0 {
		cfg.LogRate = 50
	}
	if cfg.LogLineMax <= 0 {
		cfg.LogLineMax = 2 << 10
	}
	if cfg.LogPoll <= 0 {
		cfg.LogPoll = 250 * time.Millisecond
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	ctx, end := context.WithCancel(context.Background())
	return &Hub{cfg: cfg, db: cfg.Store, log: cfg.Log, ctx: ctx, end: end, subs: map[*subscriber]struct{}{},
		ring:   newRing(cfg.RingEvents, cfg.RingBytes),
		owners: map[string]int64{}, statuses: map[string]string{}, tails: map[string]*tailer{}}
}

// Start enforces retention periodically and relays the logs of jobs that are already
// running (after a daemon restart).
func (h *Hub) Start() {
	if h.cfg.RetentionEvery > 0 {
		h.startRetention()
	}
	h.startTails()
}

// startRetention trims the stored events every RetentionEvery until Close.
func (h *Hub) startRetention() {
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		t := time.NewTicker(h.cfg.RetentionEvery)
		defer t.Stop()
		for {
			h.Trim()
			select {
			case <-h.ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

// startTails relays the logs of jobs that are already running (after a daemon restart).
func (h *Hub) startTails() {
	if all, err := h.db.Jobs().List(); err == nil {
		for _, j := range all {
			h.jobMu.Lock()
			h.owners[j.ID] = j.OwnerID
			if j.Status == "running" || j.Status == "starting" {
				h.statuses[j.ID] = j.Status
			}
			h.jobMu.Unlock()
			if j.Status == "running" {
				h.startTail(j, true)
			}
		}
	}
}

// Trim enforces retention once and returns how many events it deleted.
func (h *Hub) Trim() int {
	count, age := h.cfg.RetentionCount, h.cfg.RetentionAge
	if count < 0 {
		count = 0
	}
	if age < 0 {
		age = 0
	}
	n, err := h.db.Events().Trim(count, age, time.Now())
	if err != nil {
		h.log.Error("event retention", "err", err)
	}
	if n > 0 {
		h.log.Info("event retention: deleted old events", "deleted", n)
	}
	return n
}

// Close ends every stream and stops retention and the log relay.
func (h *Hub) Close() {
	h.end()
	h.subMu.Lock()
	h.closed = true
	for s := range h.subs {
		s.stop(ErrClosed)
	}
	h.subMu.Unlock()
	h.wg.Wait()
}

// Done is closed when the hub closes (the daemon is stopping): streams served outside
// the hub, such as a job's log stream, end on it too.
func (h *Hub) Done() <-chan struct{} { return h.ctx.Done() }

// Clients returns the number of open streams.
func (h *Hub) Clients() int {
	h.subMu.RLock()
	defer h.subMu.RUnlock()
	return len(h.subs)
}

// Dropped returns how many clients were dropped because they stopped reading.
func (h *Hub) Dropped() int64 { return h.dropped.Load() }

// Append stores a batch of one job's trainer events (idempotently: seqs at or below the
// job's LastSeq are skipped) and publishes the new ones. It sanitises every event first,
// so what is stored is what clients may see, and returns the new events in that
// sanitised form for the daemon's other clients (webhooks) to send on. The job manager
// calls it.
func (h *Hub) Append(jobID string, evs []plugins.Event) ([]plugins.Event, error) {
	pes := make([]plugins.Event, len(evs))
	sevs := make([]store.StoredEvent, len(evs))
	for i, e := range evs {
		pes[i] = sanitize(e)
		raw, err := pes[i].AppendJSON(nil)
		if err != nil {
			return nil, fmt.Errorf("encode event %d of job %s: %w", e.Seq, jobID, err)
		}
		sevs[i] = store.StoredEvent{JobID: jobID, Seq: e.Seq, Event: raw}
	}
	h.pubMu.Lock()
	defer h.pubMu.Unlock()
	if _, err := h.db.Events().Append(jobID, sevs); err != nil {
		return nil, err
	}
	h.publish(sevs, pes)
	stored := pes[:0] // publish copied what it needs out of pes
	for i, se := range sevs {
		if se.Index != 0 {
			stored = append(stored, pes[i])
		}
	}
	return stored, nil
}

// record stores events of daemon origin (already sanitised) for a job and publishes
// them.
func (h *Hub) record(jobID string, pes ...plugins.Event) error {
	sevs := make([]store.StoredEvent, len(pes))
	for i, pe := range pes {
		raw, err := pe.AppendJSON(nil)
		if err != nil {
			return fmt.Errorf("encode %s event of job %s: %w", pe.Type, jobID, err)
		}
		sevs[i] = store.StoredEvent{JobID: jobID, Event: raw}
	}
	h.pubMu.Lock()
	defer h.pubMu.Unlock()
	if err := h.db.Events().Record(sevs); err != nil {
		return err
	}
	h.publish(sevs, pes)
	return nil
}

// sanitize cleans what a producer put in an event (see the package comment).
func sanitize(e plugins.Event) plugins.Event {
	e.Type = shownType(e.Seq, safeName(e.Type))
	e.Severity = safeName(e.Severity)
	e.Title = CleanText(Redact(e.Title), maxTitle, true)
	e.Message = CleanText(Redact(e.Message), maxMessage, false)
	e.Data = sanitizeData(e.Data)
	return e
}

// publish encodes the events just stored (sevs, with the indexes the store gave them;
// Index 0 marks one the store skipped) from their decoded form pes, and adds them to
// the ring every stream reads. Called with pubMu held, so the ring stays in index order.
func (h *Hub) publish(sevs []store.StoredEvent, pes []plugins.Event) {
	frames := make([]*frame, 0, len(sevs))
	for i, se := range sevs {
		if se.Index == 0 {
			continue
		}
		ev := typedEvent(se.Index, se.Seq, se.JobID, pes[i])
		ev.owner = h.ownerOf(se.JobID)
		frames = append(frames, newFrame(ev))
	}
	h.ring.push(frames)
}

// typed converts a stored event and attaches its job's owner.
func (h *Hub) typed(se store.StoredEvent) (*Event, error) {
	ev, err := FromStored(se)
	if err != nil {
		return nil, err
	}
	ev.owner = h.ownerOf(se.JobID)
	return ev, nil
}

// ownerOf returns the owner of a job, from a cache filled on first use.
func (h *Hub) ownerOf(jobID string) int64 {
	h.jobMu.Lock()
	o, ok := h.owners[jobID]
	h.jobMu.Unlock()
	if ok {
		return o
	}
	j, err := h.db.Jobs().Get(jobID)
	if err != nil {
		return 0
	}
	h.jobMu.Lock()
	h.owners[jobID] = j.OwnerID
	h.jobMu.Unlock()
	return j.OwnerID
}

// terminal reports a final job status.
func terminal(s string) bool { return plugins.Terminal(s) || s == "lost" }

// JobStatus records a job status change made by the daemon as a job.status event (once
// per change) and starts or stops the relay of the job's log. The job manager calls it
// after every status change it stores.
func (h *Hub) JobStatus(j *store.Job) {
	if j == nil {
		return
	}
	h.jobMu.Lock()
	prev, seen := h.statuses[j.ID]
	h.owners[j.ID] = j.OwnerID
	if seen && prev == j.Status {
		h.jobMu.Unlock()
		return
	}
	h.statuses[j.ID] = j.Status // one entry per job, like owners
	h.jobMu.Unlock()

	sev := "info"
	switch j.Status {
	case "failed", "lost":
		sev = "error"
	case "cancelled", "stopped":
		sev = "warning"
	}
	data := map[string]any{"status": j.Status, "attempt": j.Attempts}
	if j.Error != "" {
		data["error"] = j.Error
	}
	if len(j.GPUs) > 0 {
		data["gpus"] = j.GPUs
	}
	if j.EnvName != "" {
		data["config_name"] = j.EnvName
	}
	if len(j.Progress) > 0 && json.Valid(j.Progress) {
		data["progress"] = j.Progress
	}
	d, _ := json.Marshal(data)
	pe := sanitize(plugins.Event{Type: plugins.EventJobStatus, Severity: sev, Time: time.Now().UTC(), Title: "Job " + j.Status, Message: j.Error, Data: d})
	if err := h.record(j.ID, pe); err != nil {
		h.log.Error("store job status event", "job_id", j.ID, "status", j.Status, "err", err)
	}
	switch {
	case j.Status == "running":
		h.startTail(j, false)
	case terminal(j.Status):
		h.stopTail(j.ID)
	}
}

// Emit records and publishes an event the daemon itself originates for a job (hook
// outcomes, say): sanitised, stored under the next index, with no trainer seq.
func (h *Hub) Emit(jobID, typ, severity, title, message string, data any) {
	var d json.RawMessage
	if data != nil {
		d, _ = json.Marshal(data)
	}
	pe := sanitize(plugins.Event{Type: typ, Severity: severity, Time: time.Now().UTC(), Title: title, Message: message, Data: d})
	if err := h.record(jobID, pe); err != nil {
		h.log.Error("store daemon event", "job_id", jobID, "type", typ, "err", err)
	}
}

// Query is a paged read of stored events.
type Query struct {
	// Since: events with a larger index.
	Since uint64
	// JobID, when set, reads only that job's events.
	JobID string
	// Limit caps the page (default 1000, at most 10000).
	Limit int
	// Keep filters events (nil keeps all).
	Keep func(*Event) bool
}

// Page is the answer to a Query.
type Page struct {
	Events []*Event
	// Next is the index to ask for next (the last index examined).
	Next uint64
	// Oldest is the oldest stored index; Reset is true when events after Since were
	// already deleted by retention.
	Oldest uint64
	Reset  bool
}

// Read answers a paged query from the store.
func (h *Hub) Read(q Query) (Page, error) {
	if q.Limit <= 0 {
		q.Limit = 1000
	}
	q.Limit = min(q.Limit, 10000)
	first, last, err := h.db.Events().Bounds()
	if err != nil {
		return Page{}, err
	}
	pg := Page{Oldest: first, Next: q.Since}
	if q.Since+1 < first && q.Since < last {
		pg.Reset = true
	}
	if q.Since > last {
		// An index from another state directory (or the future): start over.
		pg.Reset, q.Since, pg.Next = true, last, last
	}
	var conv error
	keep := func(se *store.StoredEvent) bool {
		ev, err := h.typed(*se)
		if err != nil {
			conv = err
			return false
		}
		if q.Keep == nil || q.Keep(ev) {
			pg.Events = append(pg.Events, ev)
			return true
		}
		return false
	}
	var next uint64
	if q.JobID != "" {
		_, next, err = h.db.Events().ByJob(q.JobID, q.Since, q.Limit, keep)
	} else {
		_, next, err = h.db.Events().Since(q.Since, q.Limit, 0, keep)
	}
	if err != nil {
		return Page{}, err
	}
	if conv != nil {
		h.log.Warn("undecodable stored event skipped", "err", conv)
	}
	if len(pg.Events) > q.Limit {
		pg.Events = pg.Events[:q.Limit]
		next = pg.Events[q.Limit-1].Index
	}
	pg.Next = max(next, q.Since)
	return pg, nil
}

// snapshot returns the current status of every job that has not ended, as job.status
// events without an index, for the reset frame.
func (h *Hub) snapshot(keep func(*Event) bool) []*Event {
	all, err := h.db.Jobs().List()
	if err != nil {
		return nil
	}
	out := []*Event{} // a reset frame says "jobs": [], not null, when none is running
	for _, j := range all {
		if terminal(j.Status) {
			continue
		}
		d, _ := json.Marshal(map[string]any{"status": j.Status})
		ev := &Event{ID: "", JobID: j.ID, Type: plugins.EventJobStatus, Severity: "info", Timestamp: time.Now().UTC(),
			Title: "Job " + j.Status, Data: d, owner: j.OwnerID}
		if len(j.Progress) > 0 {
			ev.Progress = progressOf(j.Progress)
		}
		if keep == nil || keep(ev) {
			out = append(out, ev)
		}
	}
	return out
}

// appendSSE appends one SSE frame. data must be single-line JSON (json.Marshal output
// never contains a raw newline); id and name come from safe alphabets.
func appendSSE(b []byte, id, name string, data []byte) []byte {
	b = appendSSEHead(b, id, safeName(name))
	b = append(b, data...)
	return append(b, "\n\n"...)
}

// appendSSEHead appends the id and event lines of a frame and the start of its data
// line; name must already be safe (safeName).
func appendSSEHead(b []byte, id, name string) []byte {
	if id != "" {
		b = append(b, "id: "...)
		b = append(b, id...)
		b = append(b, '\n')
	}
	b = append(b, "event: "...)
	b = append(b, name...)
	return append(b, "\ndata: "...)
}
