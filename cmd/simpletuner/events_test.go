package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"simpletuner/plugins/kit/kittest"
)

// sseEvent is one parsed SSE frame of the daemon's stream.
type sseEvent struct {
	ID, Name string
	Lines    int
	Data     map[string]any
	Raw      string
}

// openStream opens GET path on the daemon as `curl -N` would (no client timeout) and
// returns the parsed frames; the stream ends when ctx is cancelled.
func openStream(t *testing.T, ctx context.Context, c *http.Client, url string, hdr map[string]string) <-chan sseEvent {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	sc := &http.Client{Jar: c.Jar}
	res, err := sc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("stream %s: %d %s", url, res.StatusCode, res.Header.Get("Content-Type"))
	}
	out := make(chan sseEvent, 1<<16)
	go func() {
		defer close(out)
		defer res.Body.Close()
		s := bufio.NewScanner(res.Body)
		s.Buffer(make([]byte, 1<<20), 16<<20)
		var f sseEvent
		for s.Scan() {
			line := s.Text()
			switch {
			case line == "":
				if f.Name != "" {
					out <- f
				}
				f = sseEvent{}
			case strings.HasPrefix(line, "id: "):
				f.ID = line[4:]
			case strings.HasPrefix(line, "event: "):
				f.Name = line[7:]
			case strings.HasPrefix(line, "data: "):
				f.Lines++
				f.Raw = line[6:]
				_ = json.Unmarshal([]byte(f.Raw), &f.Data)
			}
		}
	}()
	return out
}

// TestEventStreamResumesAcrossDaemonRestart is row E4 against the real daemon: a client
// reads part of the stream, the daemon is SIGKILLed while the trainer keeps emitting,
// and the client resumes with Last-Event-ID on the new daemon: every event of the job
// arrives exactly once, in order, up to one terminal job.status.
func TestEventStreamResumesAcrossDaemonRestart(t *testing.T) {
	home := t.TempDir()
	args := fakeTrainerArgs(80, 40)
	d := start(t, home, args...)
	c := adminClient(t, d)
	ctx, cancel := context.WithCancel(context.Background())
	frames := openStream(t, ctx, c, d.base+"/api/events?since_index=0", nil)
	if f := <-frames; f.Name != "connection" {
		t.Fatalf("first frame %+v", f)
	}
	id := startJob(t, d, c, fastPathFields(t, home))

	var idx []uint64
	seqs := map[float64]int{}
	terminal := 0
	take := func(f sseEvent) {
		if f.ID == "" {
			return
		}
		var n uint64
		fmt.Sscan(f.ID, &n)
		idx = append(idx, n)
		if f.Data["job_id"] == id {
			if s, _ := f.Data["seq"].(float64); s > 0 {
				seqs[s]++
			}
			if f.Name == "job.status" {
				if st := f.Data["data"].(map[string]any)["status"]; st == "completed" || st == "failed" || st == "lost" {
					terminal++
				}
			}
		}
		if f.Lines != 1 {
			t.Errorf("frame %s has %d data lines", f.ID, f.Lines)
		}
	}
	// Read live until the trainer is well into its steps (curl -N sees events live).
	for len(seqs) < 20 {
		select {
		case f := <-frames:
			take(f)
		case <-time.After(20 * time.Second):
			t.Fatalf("no live events: %d", len(idx))
		}
	}
	cancel()
	d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.done
	// The trainer keeps emitting into its spool while no daemon runs.
	waitTrainerSteps(t, home, id, min(trainerSteps(home, id)+5, 80))
	d = start(t, home, args...)
	d.waitReady(c)
	last := idx[len(idx)-1]
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	frames = openStream(t, ctx, c, d.base+"/api/events", map[string]string{"Last-Event-ID": fmt.Sprint(last)})
	deadline := time.After(30 * time.Second)
	for terminal == 0 {
		select {
		case f, ok := <-frames:
			if !ok {
				t.Fatal("stream ended")
			}
			if f.Name == "reset" {
				t.Fatalf("unexpected reset: %s", f.Raw)
			}
			take(f)
		case <-deadline:
			t.Fatalf("job did not end on the stream; last index %d", idx[len(idx)-1])
		}
	}
	for i := 1; i < len(idx); i++ {
		if idx[i] != idx[i-1]+1 {
			t.Fatalf("index gap or duplicate: %d then %d", idx[i-1], idx[i])
		}
	}
	for s := 1.0; s <= float64(len(seqs)); s++ {
		if seqs[s] != 1 {
			t.Fatalf("trainer seq %v seen %d times", s, seqs[s])
		}
	}
	if terminal != 1 {
		t.Fatalf("%d terminal job.status events", terminal)
	}
}

// TestEventBurstTenThousandPerSecond is row E3 (shortened to 2 s): the trainer emits
// 10k events/s; every event is stored and streamed, in order, and lifecycle events are
// all there. How fast (the trainer's Emit time, the daemon's ingestion rate) is measured
// by bench/eventfanout against a baseline of the same run: asserted here, it measured
// the machine, and failed `make test` on a busy one.
func TestEventBurstTenThousandPerSecond(t *testing.T) {
	home := t.TempDir()
	const burst = 20000
	args := append(fakeTrainerArgs(5, 10), "--trainer-env", fmt.Sprintf("%s=%d", kittest.EnvBurst, burst),
		"--trainer-env", kittest.EnvEventRate+"=10000")
	d := start(t, home, args...)
	c := adminClient(t, d)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	frames := openStream(t, ctx, c, d.base+"/api/events?types=training.progress,job.status,notification", nil)
	id := startJob(t, d, c, fastPathFields(t, home))
	got, done := 0, false
	var stats map[string]any
	var last uint64
	deadline := time.After(120 * time.Second)
	for !done {
		select {
		case f := <-frames:
			if f.Data["job_id"] != id {
				continue
			}
			var n uint64
			fmt.Sscan(f.ID, &n)
			if n <= last {
				t.Fatalf("stream index %d after %d", n, last)
			}
			last = n
			switch f.Name {
			case "training.progress":
				got++
			case "notification":
				if f.Data["title"] == "emit stats" {
					stats, _ = f.Data["data"].(map[string]any)
				}
			case "job.status":
				done = f.Data["data"].(map[string]any)["status"] == "completed"
			}
		case <-deadline:
			t.Fatalf("streamed %d progress events; job not completed", got)
		}
	}
	if got != burst+5 {
		t.Errorf("streamed %d progress events, want %d", got, burst+5)
	}
	if stats == nil {
		t.Fatal("no emit stats")
	}
	if stats["events"] != float64(burst) {
		t.Errorf("emit stats: %v", stats)
	}
	t.Logf("trainer emit (logged, not asserted): %v events in %.2fs, max %vµs, p99 %vµs", stats["events"], stats["seconds"], stats["max_emit_us"], stats["p99_emit_us"])
	// Stored too, lifecycle included: read the job's events back by index.
	types := map[string]int{}
	since := 0.0
	for {
		code, pg := call(t, c, "GET", fmt.Sprintf("%s/api/training/events?job_id=%s&since_index=%v&limit=10000", d.base, id, since), nil, nil)
		evs, _ := pg["events"].([]any)
		if code != 200 || len(evs) == 0 {
			break
		}
		for _, e := range evs {
			types[e.(map[string]any)["type"].(string)]++
		}
		since = pg["next_index"].(float64)
	}
	if types["training.progress"] != burst+5 || types["job.status"] < 3 || types["trainer.status"] < 2 || types["lifecycle.stage"] < 1 {
		t.Errorf("stored event types: %v", types)
	}
}

// TestStreamInjectionAndSecretsEndToEnd is rows E5 and E6 against the real daemon: a
// trainer message and log line that try to forge SSE frames and carry canary secrets
// reach clients as single, clean, redacted frames, and no canary lands in the state
// directory.
func TestStreamInjectionAndSecretsEndToEnd(t *testing.T) {
	home := t.TempDir()
	evil := "inject\n\nevent: admin\ndata: {\"x\":1}\n\n\x1b[31m HF_TOKEN=CanaryEnvSecret42 st_CanaryKey0123456789 https://hooks.example.com/T0/canary-path-9f8e"
	args := append(fakeTrainerArgs(5, 10), "--trainer-env", kittest.EnvMessage+"="+evil)
	d := start(t, home, args...)
	c := adminClient(t, d)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	frames := openStream(t, ctx, c, d.base+"/api/training/events/stream?since_index=0", nil)
	id := startJob(t, d, c, fastPathFields(t, home))
	var all strings.Builder
	sawNote, sawLog := false, false
	deadline := time.After(30 * time.Second)
	for done := false; !done; {
		select {
		case f := <-frames:
			all.WriteString(f.Raw)
			if f.Name == "admin" || f.Lines > 1 {
				t.Fatalf("forged or split frame: %+v", f)
			}
			msg, _ := f.Data["message"].(string)
			switch f.Name {
			case "notification":
				sawNote = strings.Contains(msg, "event: admin")
			case "log":
				sawLog = sawLog || strings.Contains(msg, "inject")
			case "job.status":
				done = f.Data["job_id"] == id && f.Data["data"].(map[string]any)["status"] == "completed"
			}
			if strings.ContainsAny(msg, "\x1b") {
				t.Errorf("escape sequence reached a client: %q", msg)
			}
		case <-deadline:
			t.Fatal("job did not complete")
		}
	}
	if !sawNote {
		t.Fatal("notification not streamed")
	}
	// The log relay reads trainer.log on its own schedule: poll the stored events for
	// the line, within a generous bound.
	for deadline := time.Now().Add(30 * time.Second); ; {
		code, pg := call(t, c, "GET", d.base+"/api/training/events?since_index=0&limit=10000", nil, nil)
		if code != 200 {
			t.Fatalf("stored events: %d %v", code, pg)
		}
		for _, e := range pg["events"].([]any) {
			m := e.(map[string]any)
			sawLog = sawLog || m["type"] == "log" && strings.Contains(m["message"].(string), "inject")
		}
		if sawLog || time.Now().After(deadline) {
			b, _ := json.Marshal(pg)
			all.Write(b)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !sawLog {
		t.Errorf("trainer log line not relayed")
	}
	for _, canary := range []string{"CanaryEnvSecret42", "st_CanaryKey0123456789", "canary-path-9f8e"} {
		if strings.Contains(all.String(), canary) {
			t.Errorf("canary %s reached a client", canary)
		}
	}
	if err, _ := d.stop(); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(home, "state")
	filepath.Walk(state, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return nil
		}
		data, _ := os.ReadFile(p)
		for _, canary := range []string{"CanaryEnvSecret42", "st_CanaryKey0123456789", "canary-path-9f8e"} {
			if strings.Contains(string(data), canary) {
				t.Errorf("canary %s stored in %s", canary, p)
			}
		}
		return nil
	})
}
