package webhooks

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestDeliverRawEvent(t *testing.T) {
	rc := newReceiver(t, nil)
	rec := &sleepRecorder{}
	d := newTestDispatcher(t, nil, testOptions(rec))
	cfg := rawCfg(rc.srv.URL + "/hook")
	cfg.AuthToken = "st_receiverkey123"
	if err := d.Register("job1", []Config{cfg}, 0); err != nil {
		t.Fatal(err)
	}
	d.Publish("job1", Event{Seq: 3, Type: "training.checkpoint", Severity: "info", Title: "Checkpoint saved to /out/checkpoint-400",
		Data: mustJSON(t, map[string]any{"checkpoint": map[string]any{"path": "/out/checkpoint-400", "is_final": false}})})
	waitFor(t, "delivery", 30*time.Second, settled(d, "job1", 1))
	h := rc.get(0)
	if h.method != http.MethodPost || h.path != "/hook" {
		t.Errorf("request %s %s", h.method, h.path)
	}
	for k, v := range map[string]string{"Content-Type": "application/json", HeaderEventID: "job1-3", HeaderAttempt: "1",
		"Authorization": "Bearer st_receiverkey123", "X-Api-Key": "st_receiverkey123"} {
		if got := h.header.Get(k); got != v {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
	m := decodeBody(t, h)
	if m["type"] != "training.checkpoint" || m["job_id"] != "job1" || m["severity"] != "info" || m["id"] != "job1-3" {
		t.Errorf("body = %v", m)
	}
	if cp, _ := m["checkpoint"].(map[string]any); cp["path"] != "/out/checkpoint-400" {
		t.Errorf("checkpoint not at the top level: %v", m)
	}
	if _, err := time.Parse(time.RFC3339Nano, m["timestamp"].(string)); err != nil {
		t.Errorf("timestamp: %v", err)
	}
	st := stats1(t, d, "job1")
	if st.Delivered != 1 || st.Failed != 0 || st.LastStatus != 200 || st.Target != "http://"+rc.addr()+"/***" {
		t.Errorf("stats = %+v", st)
	}
	// Events of other jobs are not delivered here: once job1's webhook has drained
	// (Unregister waits for it), it has sent only job1's event.
	d.Publish("job2", Event{Type: "notification"})
	<-d.Unregister("job1")
	if rc.count() != 1 {
		t.Errorf("hits = %d", rc.count())
	}
}

func TestDeliverDiscord(t *testing.T) {
	rc := newReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	d := newTestDispatcher(t, nil, testOptions(&sleepRecorder{}))
	cfg := Config{Type: TypeDiscord, URL: rc.srv.URL + "/api/webhooks/1/tok", LogLevel: "info", MessagePrefix: "proj", AuthToken: "st_notfordiscord"}
	if err := d.Register("j", []Config{cfg}, 0); err != nil {
		t.Fatal(err)
	}
	png := []byte("\x89PNG\r\n\x1a\nfake image bytes")
	d.Publish("j", Event{Seq: 1, Type: "notification", Title: "Started", Message: "Training job has started"})
	d.Publish("j", Event{Seq: 2, Type: "validation.image", Title: "Validation (step 4/20)", Message: "night bench",
		Images: []Media{{Src: "data:image/png;base64," + base64.StdEncoding.EncodeToString(png), MimeType: "image/png"}}})
	// SimpleTuner's shape: bare base64 strings inside data.images.
	d.Publish("j", Event{Seq: 3, Type: "training.validation", Message: "Validation: x",
		Data: mustJSON(t, map[string]any{"images": []string{base64.StdEncoding.EncodeToString(png)}})})
	waitFor(t, "3 deliveries", 30*time.Second, settled(d, "j", 3))
	if st := stats1(t, d, "j"); st.Delivered != 3 || st.LastStatus != 204 {
		t.Fatalf("stats = %+v", st)
	}

	h := rc.get(0)
	if h.header.Get("Content-Type") != "application/json" || h.header.Get("Authorization") != "" || h.header.Get("X-Api-Key") != "" {
		t.Errorf("plain message headers: %v", h.header)
	}
	var plain struct {
		Content         string         `json:"content"`
		AllowedMentions map[string]any `json:"allowed_mentions"`
	}
	if err := json.Unmarshal(h.body, &plain); err != nil {
		t.Fatal(err)
	}
	if plain.Content != "`(proj)` Started: Training job has started" || plain.AllowedMentions == nil {
		t.Errorf("content = %q (%v)", plain.Content, plain.AllowedMentions)
	}

	for i, wantContent := range map[int]string{1: "`(proj)` Validation (step 4/20): night bench", 2: "`(proj)` Validation: x"} {
		h := rc.get(i)
		mt, params, err := mime.ParseMediaType(h.header.Get("Content-Type"))
		if err != nil || mt != "multipart/form-data" {
			t.Fatalf("content type %q: %v", h.header.Get("Content-Type"), err)
		}
		r := multipart.NewReader(bytes.NewReader(h.body), params["boundary"])
		parts := map[string][]byte{}
		names := map[string]string{}
		for {
			p, err := r.NextPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(p)
			parts[p.FormName()] = b
			names[p.FormName()] = p.FileName()
		}
		var payload struct {
			Content     string `json:"content"`
			Attachments []struct {
				ID       int    `json:"id"`
				Filename string `json:"filename"`
			} `json:"attachments"`
		}
		if err := json.Unmarshal(parts["payload_json"], &payload); err != nil {
			t.Fatalf("payload_json: %v", err)
		}
		if payload.Content != wantContent {
			t.Errorf("content = %q, want %q", payload.Content, wantContent)
		}
		if len(payload.Attachments) != 1 || payload.Attachments[0].Filename != "image0.png" {
			t.Errorf("attachments = %+v", payload.Attachments)
		}
		if !bytes.Equal(parts["files[0]"], png) || names["files[0]"] != "image0.png" {
			t.Errorf("files[0] = %q (%s)", parts["files[0]"], names["files[0]"])
		}
	}
}

func TestLogLevelFilter(t *testing.T) {
	rc := newReceiver(t, nil)
	d := newTestDispatcher(t, nil, testOptions(&sleepRecorder{}))
	cfg := rawCfg(rc.srv.URL)
	cfg.LogLevel = "warning"
	if err := d.Register("j", []Config{cfg}, 0); err != nil {
		t.Fatal(err)
	}
	for i, sev := range []string{"debug", "info", "success", "warning", "error", "critical"} {
		d.Publish("j", Event{Seq: uint64(i + 1), Type: "notification", Severity: sev, Message: sev})
	}
	d.Publish("j", Event{Seq: 10, Type: "debug"}) // no severity: debug by type
	waitFor(t, "3 deliveries", 20*time.Second, settled(d, "j", 3))
	st := stats1(t, d, "j")
	<-d.Unregister("j") // the queue is drained: nothing else is on its way
	var got []string
	for i := 0; i < rc.count(); i++ {
		got = append(got, decodeBody(t, rc.get(i))["severity"].(string))
	}
	if strings.Join(got, ",") != "warning,error,critical" {
		t.Errorf("delivered severities %v", got)
	}
	if st.Filtered != 4 || st.Delivered != 3 {
		t.Errorf("stats = %+v", st)
	}
}

func TestReportingIntervalThrottlesOnlyProgress(t *testing.T) {
	rc := newReceiver(t, nil)
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	opts := testOptions(&sleepRecorder{})
	opts.Now = clock.Now
	d := newTestDispatcher(t, nil, opts)
	if err := d.Register("j", []Config{rawCfg(rc.srv.URL)}, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	step := func(n int) Event {
		return Event{Type: "training.status", Title: "Running", Data: mustJSON(t, map[string]any{"status": "running", "global_step": n})}
	}
	var seq uint64
	pub := func(ev Event, advance time.Duration) {
		clock.Advance(advance)
		seq++
		ev.Seq = seq
		d.Publish("j", ev)
	}
	pub(Event{Type: "lifecycle.stage", Data: mustJSON(t, map[string]any{"stage": map[string]any{"key": "init_data_backend"}})}, 0)
	pub(step(1), 0)                                                                                  // sent: first progress
	pub(step(2), time.Second)                                                                        // throttled
	pub(Event{Type: "training.progress", Data: mustJSON(t, map[string]any{"step": 3})}, time.Second) // throttled
	pub(Event{Type: "training.checkpoint", Title: "Checkpoint saved"}, time.Second)                  // always
	pub(Event{Type: "validation.image", Title: "Validation"}, 0)                                     // always
	pub(Event{Type: "training.status", Severity: "error", Data: mustJSON(t, map[string]any{"status": "failed"})}, 0)
	pub(Event{Type: "notification", Severity: "error", Title: "Fatal Error"}, 0)
	pub(step(4), 6*time.Second) // 9 s after the last sent progress: throttled
	pub(step(5), time.Second)   // 10 s: sent
	pub(Event{Type: "job.status", Data: mustJSON(t, map[string]any{"status": "completed"})}, 0)
	waitFor(t, "8 deliveries", 20*time.Second, settled(d, "j", 8))
	st := stats1(t, d, "j")
	<-d.Unregister("j") // the queue is drained: nothing else is on its way
	var got []string
	for i := 0; i < rc.count(); i++ {
		m := decodeBody(t, rc.get(i))
		s := m["type"].(string)
		if data, ok := m["data"].(map[string]any); ok && data["global_step"] != nil {
			s += "#" + strings.TrimSuffix(strings.TrimSpace(jsonString(data["global_step"])), ".0")
		}
		got = append(got, s)
	}
	want := "lifecycle.stage,training.status#1,training.checkpoint,validation.image,training.status,notification,training.status#5,job.status"
	if strings.Join(got, ",") != want {
		t.Errorf("delivered\n %v\nwant\n %v", strings.Join(got, ","), want)
	}
	if st.Throttled != 3 {
		t.Errorf("throttled = %d", st.Throttled)
	}
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestRetryThenSuccessKeepsEventID(t *testing.T) {
	rc := newReceiver(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n < 3 {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	rec := &sleepRecorder{}
	d := newTestDispatcher(t, nil, Options{Sleep: rec.Sleep, Timeout: 2 * time.Second}) // real jitter
	if err := d.Register("j", []Config{rawCfg(rc.srv.URL)}, 0); err != nil {
		t.Fatal(err)
	}
	d.Publish("j", Event{Type: "training.checkpoint"}) // no Seq: a random id
	waitFor(t, "delivery", 20*time.Second, settled(d, "j", 1))
	if rc.count() != 3 {
		t.Fatalf("hits = %d", rc.count())
	}
	id := rc.get(0).header.Get(HeaderEventID)
	if len(id) < 16 {
		t.Fatalf("event id %q", id)
	}
	for i := 0; i < 3; i++ {
		h := rc.get(i)
		if h.header.Get(HeaderEventID) != id || h.header.Get(HeaderAttempt) != string(rune('1'+i)) {
			t.Errorf("attempt %d: id %q attempt %q", i+1, h.header.Get(HeaderEventID), h.header.Get(HeaderAttempt))
		}
		if !bytes.Equal(h.body, rc.get(0).body) {
			t.Errorf("attempt %d body differs", i+1)
		}
	}
	delays := rec.delays()
	if len(delays) != 2 || delays[0] < 500*time.Millisecond || delays[0] > time.Second || delays[1] < time.Second || delays[1] > 2*time.Second {
		t.Errorf("backoff delays %v, want ~[0.5–1 s, 1–2 s]", delays)
	}
	if st := stats1(t, d, "j"); st.Delivered != 1 || st.Retries != 2 || st.Failed != 0 {
		t.Errorf("stats = %+v", st)
	}
}

func TestPermanentFailuresAreNotRetried(t *testing.T) {
	for _, code := range []int{400, 401, 404, 410} {
		rc := newReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(code) })
		results := &resultCounter{}
		opts := testOptions(&sleepRecorder{})
		opts.OnResult = results.add
		d := newTestDispatcher(t, nil, opts)
		if err := d.Register("j", []Config{rawCfg(rc.srv.URL)}, 0); err != nil {
			t.Fatal(err)
		}
		d.Publish("j", Event{Type: "error"})
		waitFor(t, "failure", 30*time.Second, settled(d, "j", 1))
		if st := stats1(t, d, "j"); rc.count() != 1 || st.Failed != 1 || st.LastStatus != code {
			t.Errorf("%d: hits %d stats %+v", code, rc.count(), st)
		}
		waitFor(t, "OnResult failed=1", 30*time.Second, func() bool { return results.String() == "failed=1" })
	}
}

// TestQueueDropsOldestNonEssential: a full queue evicts progress first, never lifecycle.
func TestQueueDropsOldestNonEssential(t *testing.T) {
	release := make(chan struct{})
	rc := newReceiver(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n == 1 {
			<-release
		}
	})
	opts := testOptions(&sleepRecorder{})
	opts.QueueSize = 5
	results := &resultCounter{}
	opts.OnResult = results.add
	d := newTestDispatcher(t, nil, opts)
	if err := d.Register("j", []Config{rawCfg(rc.srv.URL)}, 0); err != nil {
		t.Fatal(err)
	}
	life := func(n int) Event {
		return Event{Seq: uint64(100 + n), Type: "lifecycle.stage", Title: "L" + string(rune('0'+n))}
	}
	prog := func(n int) Event {
		return Event{Seq: uint64(200 + n), Type: "training.progress", Title: "P" + string(rune('0'+n))}
	}
	d.Publish("j", life(0))
	waitFor(t, "first request in flight", 30*time.Second, func() bool { return rc.count() == 1 })
	for i := 1; i <= 5; i++ {
		d.Publish("j", prog(i))
	}
	for i := 1; i <= 5; i++ {
		d.Publish("j", life(i)) // each evicts the oldest progress
	}
	d.Publish("j", prog(6)) // everything queued is essential: the newcomer goes
	d.Publish("j", life(6)) // essential overfills the queue (bounded at 2×)
	st := stats1(t, d, "j")
	if st.Dropped != 6 || st.Queued != 6 {
		t.Errorf("stats = %+v", st)
	}
	close(release)
	waitFor(t, "7 deliveries", 30*time.Second, settled(d, "j", 7))
	var got []string
	for i := 0; i < rc.count(); i++ {
		got = append(got, decodeBody(t, rc.get(i))["title"].(string))
	}
	if strings.Join(got, ",") != "L0,L1,L2,L3,L4,L5,L6" {
		t.Errorf("delivered %v", got)
	}
	// OnResult hears each outcome after the stats record it.
	waitFor(t, "OnResult delivered=7 dropped=6", 30*time.Second, func() bool { return results.String() == "delivered=7 dropped=6" })

	// The hard bound: essential events past 2× evict the oldest.
	s := &sink{d: d}
	for i := 0; i < 10; i++ {
		ev := life(i)
		s.queue = append(s.queue, queued{ev: &ev, essential: true})
	}
	if !s.evictFor(queued{ev: &Event{}, essential: true}, 5) || len(s.queue) != 9 || s.stats.Dropped != 1 {
		t.Errorf("hard bound: len %d dropped %d", len(s.queue), s.stats.Dropped)
	}
}

// TestPublishNeverBlocks (W4): a receiver that never answers does not hold Publish back:
// publishing far more events than the queue holds finishes while every delivery hangs,
// the queue stays bounded and the excess is dropped. (Publish's speed is not asserted:
// on a busy machine it measures the machine.)
func TestPublishNeverBlocks(t *testing.T) {
	rc := newReceiver(t, func(_ int, _ http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	opts := testOptions(&sleepRecorder{})
	opts.Timeout = 5 * time.Second
	opts.DrainTimeout = 100 * time.Millisecond
	d := newTestDispatcher(t, nil, opts)
	if err := d.Register("j", []Config{rawCfg(rc.srv.URL), rawCfg(rc.srv.URL + "/2")}, 0); err != nil {
		t.Fatal(err)
	}
	const n = 5000
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < n/4; i++ {
				d.Publish("j", Event{Type: "training.progress", Data: json.RawMessage(`{"step":1}`)})
			}
		}()
	}
	published := make(chan struct{})
	go func() { wg.Wait(); close(published) }()
	select {
	case <-published:
	case <-time.After(60 * time.Second):
		t.Fatalf("publishing %d events did not finish while the receiver hangs", n)
	}
	for _, st := range d.Stats("j") {
		if st.Queued > DefaultQueueSize {
			t.Errorf("queue exceeded its bound: %+v", st)
		}
		if st.Dropped < n-DefaultQueueSize-1 {
			t.Errorf("dropped = %d, want ≥ %d", st.Dropped, n-DefaultQueueSize-1)
		}
	}
}

func TestUnregisterDrainsThenStops(t *testing.T) {
	rc := newReceiver(t, nil)
	d := newTestDispatcher(t, nil, testOptions(&sleepRecorder{}))
	if err := d.Register("j", []Config{rawCfg(rc.srv.URL)}, 0); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		d.Publish("j", Event{Seq: uint64(i), Type: "notification"})
	}
	d.Publish("j", Event{Seq: 4, Type: "job.status", Data: json.RawMessage(`{"status":"completed"}`)})
	select {
	case <-d.Unregister("j"):
	case <-time.After(30 * time.Second):
		t.Fatal("drain did not finish")
	}
	if rc.count() != 4 || decodeBody(t, rc.get(3))["type"] != "job.status" {
		t.Fatalf("hits = %d", rc.count())
	}
	d.Publish("j", Event{Seq: 5, Type: "notification"})
	if len(d.Stats("j")) != 0 {
		t.Errorf("the job still has webhooks after Unregister")
	}
	d.Close() // waits for every worker: a delivery after Unregister would be counted below
	if rc.count() != 4 {
		t.Errorf("events delivered after Unregister")
	}
	// Unregistering an unknown job is harmless.
	<-d.Unregister("nope")
}

// TestDrainDeadline: Unregister gives a hung delivery DrainTimeout, then cancels it. The
// request timeout is an hour, so only the drain deadline can end the wait.
func TestDrainDeadline(t *testing.T) {
	rc := newReceiver(t, func(_ int, _ http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	opts := testOptions(&sleepRecorder{})
	opts.Timeout = time.Hour
	opts.DrainTimeout = 150 * time.Millisecond
	d := newTestDispatcher(t, nil, opts)
	if err := d.Register("j", []Config{rawCfg(rc.srv.URL)}, 0); err != nil {
		t.Fatal(err)
	}
	d.Publish("j", Event{Type: "job.status"})
	d.Publish("j", Event{Type: "job.status"})
	waitFor(t, "request in flight", 20*time.Second, func() bool { return rc.count() == 1 })
	select {
	case <-d.Unregister("j"):
	case <-time.After(60 * time.Second):
		t.Fatal("drain ignored its deadline")
	}
	if rc.count() != 1 {
		t.Errorf("hits %d: the queued event was sent after the drain deadline", rc.count())
	}
}

func TestRegisterValidatesAndReplaces(t *testing.T) {
	rc := newReceiver(t, nil)
	d := newTestDispatcher(t, nil, testOptions(&sleepRecorder{}))
	if err := d.Register("j", []Config{rawCfg("http://169.254.169.254/")}, 0); err == nil {
		t.Fatal("metadata URL registered")
	}
	if len(d.Stats("j")) != 0 {
		t.Fatal("a refused registration left webhooks behind")
	}
	if err := d.Register("j", []Config{rawCfg(rc.srv.URL + "/a")}, 0); err != nil {
		t.Fatal(err)
	}
	if err := d.Register("j", []Config{rawCfg(rc.srv.URL + "/b"), rawCfg(rc.srv.URL + "/c")}, 0); err != nil {
		t.Fatal(err)
	}
	d.Publish("j", Event{Type: "notification"})
	waitFor(t, "2 deliveries", 30*time.Second, func() bool { return rc.count() == 2 })
	if snap := d.Snapshot(); len(snap["j"]) != 2 {
		t.Errorf("snapshot = %+v", snap)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Register("k", []Config{rawCfg(rc.srv.URL)}, 0); err != ErrClosed {
		t.Errorf("Register after Close = %v", err)
	}
	d.Publish("j", Event{Type: "notification"}) // no panic, no delivery
}

// resultCounter counts what Options.OnResult hears.
type resultCounter struct {
	mu sync.Mutex // guards n
	n  map[string]int
}

func (c *resultCounter) add(result string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[result]++
}

// String lists the counts as "result=n", sorted.
func (c *resultCounter) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var parts []string
	for r, n := range c.n {
		parts = append(parts, fmt.Sprintf("%s=%d", r, n))
	}
	slices.Sort(parts)
	return strings.Join(parts, " ")
}
