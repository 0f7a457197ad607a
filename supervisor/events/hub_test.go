package events

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"simpletuner/plugins"
	"simpletuner/store"
)

// testHub is a hub over an in-memory store with one job "j1", served over HTTP: /sse and
// /ws (resume with Last-Event-ID or since_index).
type testHub struct {
	*Hub
	db  *store.DB
	srv *httptest.Server
	seq uint64
}

func newTestHub(t *testing.T, cfg Config) *testHub {
	t.Helper()
	db, err := store.OpenInMemory(slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Jobs().Create(&store.Job{ID: "j1", Status: "running", OwnerID: 7}); err != nil {
		t.Fatal(err)
	}
	cfg.Store = db
	h := New(cfg)
	th := &testHub{Hub: h, db: db}
	mux := http.NewServeMux()
	opts := func(r *http.Request) StreamOptions {
		since, has, _ := ResumeIndex(r)
		return StreamOptions{Since: since, HasSince: has}
	}
	mux.HandleFunc("/sse", func(w http.ResponseWriter, r *http.Request) { _ = h.ServeSSE(w, r, opts(r)) })
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) { _ = h.ServeWS(w, r, opts(r)) })
	th.srv = httptest.NewServer(mux)
	t.Cleanup(func() { h.Close(); th.srv.Close() })
	return th
}

// emit appends n trainer events to j1 (mutating each through fn when set).
func (th *testHub) emit(t testing.TB, n int, fn func(i int, e *plugins.Event)) {
	t.Helper()
	evs := make([]plugins.Event, 0, n)
	for i := range n {
		th.seq++
		e := plugins.Event{Seq: th.seq, Type: "training.progress", Severity: "info", Time: time.Now().UTC(),
			Data: json.RawMessage(fmt.Sprintf(`{"step":%d,"total_steps":100,"emit_unix_ns":%d}`, th.seq, time.Now().UnixNano()))}
		if fn != nil {
			fn(i, &e)
		}
		evs = append(evs, e)
	}
	if _, err := th.Append("j1", evs); err != nil {
		t.Fatal(err)
	}
}

// sseFrame is one parsed SSE frame.
type sseFrame struct {
	id, event, data string
	dataLines       int
	at              time.Time
}

// readSSE parses an SSE stream the way a browser does and sends each frame on out.
func readSSE(r io.Reader, out chan<- sseFrame) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	var f sseFrame
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			if f.event != "" || f.dataLines > 0 {
				f.at = time.Now()
				out <- f
			}
			f = sseFrame{}
			continue
		}
		name, val, _ := strings.Cut(line, ":")
		val = strings.TrimPrefix(val, " ")
		switch name {
		case "id":
			f.id = val
		case "event":
			f.event = val
		case "data":
			if f.dataLines > 0 {
				f.data += "\n"
			}
			f.data += val
			f.dataLines++
		}
	}
	return sc.Err()
}

// openSSE connects and returns the frames channel and a cancel.
func openSSE(t testing.TB, url string, hdr map[string]string) (<-chan sseFrame, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/event-stream" {
		cancel()
		t.Fatalf("stream: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	out := make(chan sseFrame, 1<<16)
	go func() {
		defer close(out)
		defer res.Body.Close()
		_ = readSSE(res.Body, out)
	}()
	return out, cancel
}

// waitClients waits until the hub counts n connected clients.
func waitClients(t testing.TB, h *Hub, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for h.Clients() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d clients connected", h.Clients(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// collect reads frames of type typ until n arrived or the time is up.
func collect(t testing.TB, ch <-chan sseFrame, typ string, n int, within time.Duration) []sseFrame {
	t.Helper()
	var got []sseFrame
	deadline := time.After(within)
	for len(got) < n {
		select {
		case f, ok := <-ch:
			if !ok {
				t.Fatalf("stream ended after %d of %d %s frames", len(got), n, typ)
			}
			if f.event == typ {
				got = append(got, f)
			}
		case <-deadline:
			t.Fatalf("%d of %d %s frames within %v", len(got), n, typ, within)
		}
	}
	return got
}

func indexOf(t testing.TB, f sseFrame) uint64 {
	var e Event
	if err := json.Unmarshal([]byte(f.data), &e); err != nil {
		t.Fatalf("frame data is not an event: %v: %q", err, f.data)
	}
	if f.id != fmt.Sprint(e.Index) {
		t.Fatalf("frame id %q, event index %d", f.id, e.Index)
	}
	return e.Index
}

func TestEventShapeAndTypes(t *testing.T) {
	th := newTestHub(t, Config{})
	th.emit(t, 1, nil)
	th.emit(t, 1, func(_ int, e *plugins.Event) {
		e.Type, e.Title = "lifecycle.stage", "Configuring data backends"
		e.Data = json.RawMessage(`{"stage":{"key":"init_data_backend","label":"Configuring data backends","status":"running","progress":{"current":3,"total":10}}}`)
	})
	th.emit(t, 1, func(_ int, e *plugins.Event) {
		e.Type, e.Title = "validation.image", "Validation (step 5/20): night bench"
		e.Data = json.RawMessage(`{"step":5,"step_label":"5/20","prompt":"night bench","images":[{"src":"data:image/png;base64,AAAA","mime_type":"image/png"}]}`)
	})
	th.emit(t, 1, func(_ int, e *plugins.Event) {
		e.Type, e.Data = "training.checkpoint", json.RawMessage(`{"path":"/out/checkpoint-4","step":4,"checkpoint":{"path":"/out/checkpoint-4","label":"Checkpoint saved","is_final":false}}`)
	})
	th.emit(t, 1, func(_ int, e *plugins.Event) {
		e.Type, e.Data = "job.status", json.RawMessage(`{"status":"completed"}`)
	})
	th.JobStatus(&store.Job{ID: "j1", Status: "completed", OwnerID: 7})
	th.JobStatus(&store.Job{ID: "j1", Status: "completed", OwnerID: 7}) // once per change
	pg, err := th.Read(Query{})
	if err != nil {
		t.Fatal(err)
	}
	if len(pg.Events) != 6 || pg.Next != 6 {
		t.Fatalf("%d events, next %d", len(pg.Events), pg.Next)
	}
	e := pg.Events
	if e[0].Progress == nil || e[0].Progress.Current != 1 || e[0].Progress.Total != 100 || e[0].Progress.Percent != 1 {
		t.Errorf("progress: %+v", e[0].Progress)
	}
	if e[1].Stage == nil || e[1].Stage.Key != "init_data_backend" || e[1].Stage.Progress.Percent != 30 {
		t.Errorf("stage: %+v", e[1].Stage)
	}
	if len(e[2].Images) != 1 || e[2].Validation.StepLabel != "5/20" || strings.Contains(string(e[2].Data), "images") {
		t.Errorf("validation: %+v images %d data %s", e[2].Validation, len(e[2].Images), e[2].Data)
	}
	if e[3].Checkpoint == nil || e[3].Checkpoint.Path != "/out/checkpoint-4" {
		t.Errorf("checkpoint: %+v", e[3].Checkpoint)
	}
	if e[4].Type != TypeTrainerStatus || e[5].Type != plugins.EventJobStatus || e[5].Seq != 0 || e[5].Index != 6 || e[5].Owner() != 7 {
		t.Errorf("status events: %s / %s seq %d index %d", e[4].Type, e[5].Type, e[5].Seq, e[5].Index)
	}
	b, _ := json.Marshal(e[0])
	for _, k := range []string{`"index":1`, `"seq":1`, `"job_id":"j1"`, `"type":"training.progress"`, `"severity":"info"`, `"timestamp":`, `"progress":{`} {
		if !strings.Contains(string(b), k) {
			t.Errorf("event JSON lacks %s: %s", k, b)
		}
	}
	// Per-job read, and the per-seq store listing still works.
	pg, _ = th.Read(Query{JobID: "j1", Since: 4})
	if len(pg.Events) != 2 {
		t.Fatalf("by job since 4: %d", len(pg.Events))
	}
	if l, _ := th.db.Events().List("j1", 0, 0); len(l) != 5 {
		t.Fatalf("per-seq list: %d", len(l))
	}
}

// TestSSEInjectionCannotForgeFrames is row E5: hostile event content keeps the framing
// intact (one data line of JSON per event), control characters are gone, and long
// fields are truncated with a marker.
func TestSSEInjectionCannotForgeFrames(t *testing.T) {
	th := newTestHub(t, Config{})
	ch, cancel := openSSE(t, th.srv.URL+"/sse?since_index=0", nil)
	defer cancel()
	collect(t, ch, "connection", 1, 20*time.Second)
	evil := []string{
		"\n\nevent: admin\ndata: {\"x\":1}\n\n",
		"line\rid: 999\revent: admin",
		"\x1b[31mred\x1b[0m \x1b]0;title\x07 bell\x07 nul\x00",
		"bad utf8 \xff\xfe end",
		"sep\u2028\u2029end",
		strings.Repeat("A", 10<<20),
	}
	th.emit(t, len(evil), func(i int, e *plugins.Event) {
		e.Type = "notification"
		if i == 0 {
			e.Type = "evil\nevent: admin"
		}
		e.Title, e.Message = evil[i], evil[i]
		d, _ := json.Marshal(map[string]string{"line": evil[i][:min(len(evil[i]), 100)]})
		e.Data = d
	})
	var frames []sseFrame
	deadline := time.After(20 * time.Second)
	for len(frames) < len(evil) {
		select {
		case f := <-ch:
			if f.event == frameHeartbeat {
				continue
			}
			frames = append(frames, f)
		case <-deadline:
			t.Fatalf("got %d frames", len(frames))
		}
	}
	for i, f := range frames {
		if f.event == "admin" || f.dataLines != 1 || f.id != fmt.Sprint(i+1) {
			t.Fatalf("frame %d forged or split: %+v", i, f)
		}
		var e Event
		if err := json.Unmarshal([]byte(f.data), &e); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		for _, s := range []string{e.Title, e.Message} {
			if strings.ContainsAny(s, "\x1b\x00\x07\r\u2028\u2029") || strings.Contains(s, "\n\n") && e.Title == s {
				t.Errorf("frame %d keeps control characters: %q", i, s[:min(len(s), 80)])
			}
		}
		if strings.ContainsAny(e.Title, "\n") {
			t.Errorf("title %d has a newline", i)
		}
		if f.event != e.Type || strings.ContainsAny(f.event, " \n") {
			t.Errorf("frame %d event name %q vs type %q", i, f.event, e.Type)
		}
	}
	var last Event
	json.Unmarshal([]byte(frames[len(frames)-1].data), &last)
	if len(last.Message) > maxMessage || !strings.HasSuffix(last.Message, truncatedMarker) || len(last.Title) > maxTitle {
		t.Errorf("10 MiB line not truncated: message %d title %d", len(last.Message), len(last.Title))
	}
	var bad Event
	json.Unmarshal([]byte(frames[3].data), &bad)
	if !strings.Contains(bad.Message, "\uFFFD") {
		t.Errorf("invalid UTF-8 not replaced: %q", bad.Message)
	}
}

// TestSecretsNeverReachClientsOrStore is row E6 for events: canary secrets in titles,
// messages, data and log lines appear neither in the stream nor in stored values.
func TestSecretsNeverReachClientsOrStore(t *testing.T) {
	dir := t.TempDir()
	th := newTestHub(t, Config{LogPoll: 20 * time.Millisecond})
	canaries := []string{"st_CanaryKey0123456789", "hf_CanaryHuggingFaceToken0123456789", "canary-path-token-9f8e7d", "CanaryEnvSecret42", "CanaryHeaderValue77"}
	msg := "webhook https://hooks.example.com/services/canary-path-token-9f8e7d failed; HF_TOKEN=CanaryEnvSecret42 key st_CanaryKey0123456789 " +
		"hf_CanaryHuggingFaceToken0123456789 X-API-Key: CanaryHeaderValue77"
	ch, cancel := openSSE(t, th.srv.URL+"/sse?since_index=0", nil)
	defer cancel()
	th.JobStatus(&store.Job{ID: "j1", Status: "running", JobDir: dir, OwnerID: 7})
	os.WriteFile(filepath.Join(dir, plugins.LogFile), []byte(msg+"\n"), 0o600)
	th.emit(t, 1, func(_ int, e *plugins.Event) {
		e.Type, e.Title, e.Message = "notification", msg, msg
		d, _ := json.Marshal(map[string]any{"error": msg, "env": map[string]string{"HF_TOKEN": "CanaryEnvSecret42", "WANDB_API_KEY": "CanaryEnvSecret42"}})
		e.Data = d
	})
	th.JobStatus(&store.Job{ID: "j1", Status: "failed", Error: msg, OwnerID: 7})
	var seen strings.Builder
	want := map[string]bool{plugins.EventNotification: true, TypeLog: true, plugins.EventJobStatus: true}
	deadline := time.After(20 * time.Second)
	for got := map[string]bool{}; len(got) < len(want); {
		select {
		case f := <-ch:
			seen.WriteString(f.data)
			if want[f.event] {
				got[f.event] = true
			}
		case <-deadline:
			t.Fatalf("stream lacks some of %v: %s", want, seen.String())
		}
	}
	pg, _ := th.Read(Query{})
	for _, e := range pg.Events {
		b, _ := json.Marshal(e)
		seen.Write(b)
	}
	all, _, _ := th.db.Events().Since(0, 10000, 0, nil)
	for _, e := range all {
		seen.Write(e.Event)
	}
	for _, c := range canaries {
		if strings.Contains(seen.String(), c) {
			t.Errorf("canary %s leaked: %s", c, seen.String())
		}
	}
	if !strings.Contains(seen.String(), "https://hooks.example.com/***") {
		t.Errorf("URL not kept as scheme+host: %s", seen.String())
	}
}

// TestSlowClientIsDroppedOthersUnaffected is row E1: a client that never reads (4 KiB
// receive buffer) while 100k events are published is dropped; a normal client gets
// every event in order; publishing never waits for clients; memory stays bounded. The
// write timeout is long enough for the normal client's reader to be descheduled on a
// busy machine without being taken for one that stopped reading.
func TestSlowClientIsDroppedOthersUnaffected(t *testing.T) {
	th := newTestHub(t, Config{WriteTimeout: 3 * time.Second, RingEvents: 1024})
	addr := strings.TrimPrefix(th.srv.URL, "http://")
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.(*net.TCPConn).SetReadBuffer(4096)
	fmt.Fprintf(conn, "GET /sse HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
	ch, cancel := openSSE(t, th.srv.URL+"/sse", nil)
	defer cancel()
	collect(t, ch, "connection", 1, 20*time.Second)
	waitClients(t, th.Hub, 2)
	var ms0 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)

	const total, batch = 100_000, 250
	done := make(chan struct{})
	go func() {
		defer close(done)
		var next uint64 = 1
		for next <= total {
			f, ok := <-ch
			if !ok {
				t.Errorf("normal client's stream ended at %d", next)
				return
			}
			if f.event != plugins.EventTrainingProgress {
				continue
			}
			if got := indexOf(t, f); got != next {
				t.Errorf("normal client got index %d, want %d", got, next)
				return
			}
			next++
		}
	}()
	// Publishing never waits on the client that does not read: the loop finishing at all
	// proves it (how fast is bench/eventfanout's business).
	for i := 0; i < total/batch; i++ {
		th.emit(t, batch, nil)
		time.Sleep(time.Millisecond) // a batcher's cadence: the ring wraps many times over
	}
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("normal client did not get every event")
	}
	deadline := time.Now().Add(30 * time.Second)
	for th.Dropped() < 1 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if th.Dropped() != 1 || th.Clients() != 1 {
		t.Fatalf("dropped %d, clients %d: the never-reading client must be dropped, the other kept", th.Dropped(), th.Clients())
	}
	var ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms1)
	t.Logf("heap %d → %d MiB", ms0.HeapInuse>>20, ms1.HeapInuse>>20)
	if grow := int64(ms1.HeapInuse) - int64(ms0.HeapInuse); grow > 256<<20 {
		t.Errorf("heap grew by %d MiB", grow>>20)
	}
}

// TestHundredClientsInOrderAndReleased is row E2: 100 clients get every event in order,
// heartbeats arrive, and goroutines are released when they leave.
func TestHundredClientsInOrderAndReleased(t *testing.T) {
	th := newTestHub(t, Config{Heartbeat: 50 * time.Millisecond})
	base := runtime.NumGoroutine()
	const clients, total = 100, 2000
	chans := make([]<-chan sseFrame, clients)
	cancels := make([]context.CancelFunc, clients)
	for i := range clients {
		chans[i], cancels[i] = openSSE(t, th.srv.URL+"/sse", nil)
	}
	waitClients(t, th.Hub, clients)
	go func() {
		for range total / 100 {
			th.emit(t, 100, nil)
			time.Sleep(2 * time.Millisecond)
		}
	}()
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			want, beats := uint64(1), 0
			for want <= total || beats == 0 {
				select {
				case f, ok := <-chans[i]:
					if !ok {
						t.Errorf("client %d: stream ended", i)
						return
					}
					switch f.event {
					case frameHeartbeat:
						beats++
					case plugins.EventTrainingProgress:
						if got := indexOf(t, f); got != want {
							t.Errorf("client %d: index %d, want %d", i, got, want)
							return
						}
						want++
					}
				case <-time.After(20 * time.Second):
					t.Errorf("client %d: stuck at %d", i, want)
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, c := range cancels {
		c()
	}
	deadline := time.Now().Add(20 * time.Second)
	for (th.Clients() > 0 || runtime.NumGoroutine() > base+10) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if th.Clients() != 0 || runtime.NumGoroutine() > base+10 {
		t.Fatalf("after disconnect: %d clients, %d goroutines (base %d)", th.Clients(), runtime.NumGoroutine(), base)
	}
}

// TestResumeGaplessAndResetAfterRetention is row E4 in process: Last-Event-ID resumes
// without a gap or duplicate; an id older than retention gets a reset frame first.
func TestResumeGaplessAndResetAfterRetention(t *testing.T) {
	th := newTestHub(t, Config{RetentionCount: 50})
	th.emit(t, 10, nil)
	ch, cancel := openSSE(t, th.srv.URL+"/sse", map[string]string{"Last-Event-ID": "4"})
	got := collect(t, ch, plugins.EventTrainingProgress, 6, 20*time.Second)
	cancel()
	for i, f := range got {
		if indexOf(t, f) != uint64(5+i) {
			t.Fatalf("resume: frame %d index %s", i, f.id)
		}
	}
	th.emit(t, 100, nil) // indexes 11..110
	ch, cancel = openSSE(t, th.srv.URL+"/sse?since_index=10", nil)
	got = collect(t, ch, plugins.EventTrainingProgress, 100, 20*time.Second)
	cancel()
	if indexOf(t, got[0]) != 11 || indexOf(t, got[99]) != 110 {
		t.Fatalf("resume after 10: %s..%s", got[0].id, got[99].id)
	}
	if n := th.Trim(); n != 60 {
		t.Fatalf("trim deleted %d, want 60", n)
	}
	ch, cancel = openSSE(t, th.srv.URL+"/sse", map[string]string{"Last-Event-ID": "20"})
	defer cancel()
	reset := collect(t, ch, frameReset, 1, 20*time.Second)[0]
	var r struct {
		Reason string  `json:"reason"`
		Oldest uint64  `json:"oldest_index"`
		Jobs   []Event `json:"jobs"`
	}
	json.Unmarshal([]byte(reset.data), &r)
	if r.Reason != "expired" || r.Oldest != 61 || len(r.Jobs) != 1 || reset.id != "" {
		t.Fatalf("reset frame: %s", reset.data)
	}
	if first := collect(t, ch, plugins.EventTrainingProgress, 1, 20*time.Second)[0]; indexOf(t, first) != 61 {
		t.Fatalf("after reset: %s", first.id)
	}
	if pg, _ := th.Read(Query{Since: 20}); !pg.Reset || pg.Events[0].Index != 61 {
		t.Fatalf("read after retention: reset %v first %d", pg.Reset, pg.Events[0].Index)
	}
}

// TestWebSocketGetsTheSameEvents: a WebSocket client receives the events an SSE client
// does, as {"job_id","event"} messages, and cross-origin upgrades are refused.
func TestWebSocketGetsTheSameEvents(t *testing.T) {
	th := newTestHub(t, Config{})
	th.emit(t, 5, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	wsURL := "ws" + strings.TrimPrefix(th.srv.URL, "http") + "/ws?since_index=0"
	c, _, err := websocket.Dial(ctx, wsURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	ch, cancelSSE := openSSE(t, th.srv.URL+"/sse?since_index=0", nil)
	defer cancelSSE()
	th.emit(t, 5, nil)
	sse := collect(t, ch, plugins.EventTrainingProgress, 10, 20*time.Second)
	var n int
	for n < 10 {
		_, b, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var m struct {
			JobID string          `json:"job_id"`
			Event json.RawMessage `json:"event"`
			Type  string          `json:"type"`
		}
		json.Unmarshal(b, &m)
		if m.Type != "" {
			continue // connected / heartbeat
		}
		if m.JobID != "j1" || string(m.Event) != sse[n].data {
			t.Fatalf("ws message %d differs from SSE:\n%s\n%s", n, m.Event, sse[n].data)
		}
		n++
	}
	_, res, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"https://evil.example"}}})
	if err == nil || res == nil || res.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-origin upgrade: %v %v", err, res)
	}
}

// TestLogRelayRateLimitedAndClean: trainer.log lines become log events, stripped of
// control characters, capped, and rate-limited with a summary of what was held back.
func TestLogRelayRateLimitedAndClean(t *testing.T) {
	dir := t.TempDir()
	th := newTestHub(t, Config{LogRate: 10, LogLineMax: 100, LogPoll: 20 * time.Millisecond})
	th.JobStatus(&store.Job{ID: "j1", Status: "running", JobDir: dir})
	var b strings.Builder
	b.WriteString("\x1b[32mgreen\x1b[0m line\r\n" + strings.Repeat("x", 500) + "\n")
	for i := range 100 {
		fmt.Fprintf(&b, "line %d\n", i)
	}
	os.WriteFile(filepath.Join(dir, plugins.LogFile), []byte(b.String()), 0o600)
	// The relay's poll reads the file (the last read at completion would too; waiting
	// for the poll exercises the rate limit across reads).
	deadline := time.Now().Add(20 * time.Second)
	for {
		pg, _ := th.Read(Query{Keep: func(e *Event) bool { return e.Type == TypeLog }})
		if len(pg.Events) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the trainer log was not relayed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	th.JobStatus(&store.Job{ID: "j1", Status: "completed"})
	th.Close()
	pg, _ := th.Read(Query{Keep: func(e *Event) bool { return e.Type == TypeLog }})
	if len(pg.Events) < 3 || len(pg.Events) > 25 {
		t.Fatalf("%d log events for 102 lines at 10/s", len(pg.Events))
	}
	if pg.Events[0].Message != "green line" {
		t.Errorf("first line %q", pg.Events[0].Message)
	}
	if m := pg.Events[1].Message; len(m) > 100 || !strings.HasSuffix(m, truncatedMarker) {
		t.Errorf("long line not capped: %d", len(m))
	}
	if last := pg.Events[len(pg.Events)-1]; !strings.Contains(last.Message, "not relayed") {
		t.Errorf("no summary of held-back lines: %q", last.Message)
	}
}

// TestResetWithNoRunningJobsListsNone: the reset frame's jobs is an empty list, not
// null, when nothing is running.
func TestResetWithNoRunningJobsListsNone(t *testing.T) {
	th := newTestHub(t, Config{})
	if _, err := th.db.Jobs().Update("j1", func(j *store.Job) error { j.Status = "completed"; return nil }); err != nil {
		t.Fatal(err)
	}
	ch, cancel := openSSE(t, th.srv.URL+"/sse", map[string]string{"Last-Event-ID": "999"})
	defer cancel()
	reset := collect(t, ch, frameReset, 1, 20*time.Second)[0]
	if !strings.Contains(reset.data, `"jobs":[]`) || !strings.Contains(reset.data, `"reason":"unknown"`) {
		t.Fatalf("reset frame: %s", reset.data)
	}
}

// Append hands back what it stored, as clients see it: sanitised, a trainer's job.status
// renamed, and nothing for a replay of events already stored.
func TestAppendReturnsTheStoredEventsSanitised(t *testing.T) {
	th := newTestHub(t, Config{})
	evs := []plugins.Event{
		{Seq: 1, Type: "notification", Title: "key st_0123456789abcdef0123456789abcdef\x1b[31m", Message: "HF_TOKEN=hf_abcdefghijklmnopqrstuvwxyz0123"},
		{Seq: 2, Type: plugins.EventJobStatus, Title: "Job completed"},
	}
	got, err := th.Append("j1", evs)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("%d events back, want 2", len(got))
	}
	if strings.Contains(got[0].Title, "st_0123") || strings.Contains(got[0].Title, "\x1b") || strings.Contains(got[0].Message, "hf_abc") {
		t.Errorf("not sanitised: %q / %q", got[0].Title, got[0].Message)
	}
	if got[1].Type != TypeTrainerStatus {
		t.Errorf("trainer job.status came back as %q, want %q", got[1].Type, TypeTrainerStatus)
	}
	if evs[0].Title == got[0].Title {
		t.Error("the caller's events were changed in place")
	}
	// A replay (daemon reattached, trainer re-sent its spool) stores nothing new.
	again, err := th.Append("j1", append(evs, plugins.Event{Seq: 3, Type: "log", Message: "new"}))
	if err != nil {
		t.Fatal(err)
	}
	if len(again) != 1 || again[0].Seq != 3 {
		t.Fatalf("replay gave back %+v, want only seq 3", again)
	}
}
