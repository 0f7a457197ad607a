// Command eventfanout measures the event path end to end on the real daemon: a fake
// trainer emits events (spool → go-plugin stream → daemon: sanitise, store in badger,
// publish) and 100 SSE clients on /api/events receive them.
//
//	go run ./bench/eventfanout -daemon bin/simpletuner [-clients 100 -burst 100000 -rate-events 10000]
//
// Two runs, each with a fresh job:
//   - throughput: the trainer emits -burst events as fast as it can; reported are the
//     trainer's own emit rate (the baseline: nothing can go faster than the producer),
//     the rate at which the daemon ingested them (first emit → last event stored, read
//     back by index), and the rate at which the slowest of the clients received them;
//   - latency: the trainer emits -rate-events events at 1,000/s; reported is the
//     end-to-end latency (trainer Emit → client has parsed the frame) over all clients.
//
// Both runs also report how long the trainer's Emit calls took (its own measurement):
// Emit appends to the trainer's spool, so a daemon that cannot keep up must never
// block it.
//
// Goals (issue: events): ≥ 20,000 events/s ingested, p99 < 50 ms at 1,000 events/s,
// trainer Emit p99 < 10 ms while the daemon ingests and fans out.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"simpletuner/bench/internal/benchkit"
	"simpletuner/plugins/kit"
	"simpletuner/plugins/kit/kittest"
)

const asTrainer = "EVENTFANOUT_RUN_TRAINER"

func main() {
	if os.Getenv(asTrainer) == "1" {
		kit.Main(kittest.FromEnv())
		return
	}
	daemonBin := flag.String("daemon", "bin/simpletuner", "path of the simpletuner binary")
	clients := flag.Int("clients", 100, "SSE clients")
	burst := flag.Int("burst", 100000, "events of the throughput run")
	rateEvents := flag.Int("rate-events", 10000, "events of the latency run (at 1,000/s)")
	timeline := flag.Bool("timeline", false, "print the latency of each second of the latency run")
	flag.Parse()
	if err := run(*daemonBin, *clients, *burst, *rateEvents, *timeline); err != nil {
		fmt.Fprintln(os.Stderr, "eventfanout:", err)
		os.Exit(1)
	}
}

// client is one SSE client: it records, per event of the current job, when it arrived
// and when the trainer emitted it.
type client struct {
	mu      sync.Mutex
	got     int
	first   time.Time
	last    time.Time
	lat     []time.Duration
	emitted []int64 // emit time (Unix ns) of each lat sample
	measure bool
}

// emitKey is the end of the key of the emit time: its first byte is rare in the frames,
// which keeps the search fast (a leading quote would match at every JSON string).
var emitKey = []byte(`_unix_ns":`)

// read consumes the stream in large reads, as a load generator should: every complete
// frame ("…\n\n") of a read counts, is stamped with the time of that read, and has its
// emit time parsed out of the data line when latency is measured; a partial frame
// waits for the next read. This keeps the 100 clients' own cost (they share the
// daemon's CPUs) to a scan per byte.
func (c *client) read(r io.Reader) {
	buf := make([]byte, 0, 1<<20)
	var lat []time.Duration
	var emitted []int64
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)] // a frame larger than the buffer: grow
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		now := time.Now()
		end := bytes.LastIndex(buf, []byte("\n\n"))
		if end >= 0 {
			got := 0
			lat, emitted = lat[:0], emitted[:0]
			c.mu.Lock()
			measure := c.measure
			c.mu.Unlock()
			for rest := buf[:end]; ; {
				i := bytes.Index(rest, emitKey)
				if i < 0 {
					break
				}
				j := i + len(emitKey)
				k := j
				for k < len(rest) && rest[k] >= '0' && rest[k] <= '9' {
					k++
				}
				if measure {
					ns, _ := strconv.ParseInt(string(rest[j:k]), 10, 64)
					lat = append(lat, now.Sub(time.Unix(0, ns)))
					emitted = append(emitted, ns)
				}
				got++
				rest = rest[k:]
			}
			if got > 0 {
				c.mu.Lock()
				if c.got == 0 {
					c.first = now
				}
				c.got += got
				c.last = now
				if measure {
					c.lat = append(c.lat, lat...)
					c.emitted = append(c.emitted, emitted...)
				}
				c.mu.Unlock()
			}
			buf = buf[:copy(buf, buf[end+2:])]
		}
		if err != nil {
			return
		}
	}
}

func (c *client) reset(measure bool) {
	c.mu.Lock()
	c.got, c.lat, c.emitted, c.measure = 0, nil, nil, measure
	c.mu.Unlock()
}

func run(daemonBin string, nClients, burst, rateEvents int, timeline bool) error {
	home, err := os.MkdirTemp("", "st-eventfanout-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(home)
	self, _ := os.Executable()
	port, err := benchkit.FreePort()
	if err != nil {
		return err
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	// One daemon per run: the burst settings are trainer environment (daemon flags).
	startDaemon := func(extraEnv ...string) (*benchkit.Daemon, error) {
		args := []string{"--event-retention", "-1", "--trainer", self, "--trainer-env", asTrainer + "=1",
			"--trainer-env", kittest.EnvSteps + "=1", "--trainer-env", kittest.EnvStepMS + "=1",
			// Every client shares the one loopback address: lift the per-address cap.
			"--max-conns-per-addr", fmt.Sprint(nClients + 16)}
		for _, e := range extraEnv {
			args = append(args, "--trainer-env", e)
		}
		return benchkit.StartDaemon(daemonBin, home, port, args...)
	}
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	data := filepath.Join(home, "datasets", "bench")
	os.MkdirAll(data, 0o755)
	os.MkdirAll(filepath.Join(home, "config"), 0o755)
	dl := fmt.Sprintf(`[{"id":"img","type":"local","dataset_type":"image","instance_data_dir":%q,"caption_strategy":"filename","resolution":32,"resolution_type":"pixel"},{"id":"txt","type":"local","dataset_type":"text_embeds","default":true,"cache_dir":%q}]`, data, filepath.Join(home, "cache", "text"))
	os.WriteFile(filepath.Join(home, "config", "dl.json"), []byte(dl), 0o644)

	type result struct {
		emitRate, ingestRate, slowestClientRate float64
		emitP99US, emitMaxUS                    float64 // the trainer's Emit calls, µs
		rssAfter                                float64 // the daemon's, once every client has every event
		delivered                               int
		lat                                     []time.Duration
		emitted                                 []int64
	}
	oneRun := func(name string, events, rate int, measure bool) (result, error) {
		var r result
		env := []string{fmt.Sprintf("%s=%d", kittest.EnvBurst, events)}
		if rate > 0 {
			env = append(env, fmt.Sprintf("%s=%d", kittest.EnvEventRate, rate))
		}
		d, err := startDaemon(env...)
		if err != nil {
			return r, err
		}
		defer d.Stop()
		post(c, base+"/api/auth/setup/first-admin", `{"email":"b@example.com","username":"bench","password":"bench-password"}`)
		post(c, base+"/api/auth/login", `{"username":"bench","password":"bench-password"}`)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		cls := make([]*client, nClients)
		for i := range cls {
			cls[i] = &client{measure: measure}
			req, _ := http.NewRequestWithContext(ctx, "GET", base+"/api/events?types=training.progress", nil)
			res, err := (&http.Client{Jar: jar}).Do(req)
			if err != nil {
				return r, err
			}
			if res.StatusCode != 200 {
				return r, fmt.Errorf("stream: %s", res.Status)
			}
			go cls[i].read(res.Body)
		}
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		for k, v := range map[string]string{"--model_family": "dit", "--model_type": "full", "--model_flavour": "tiny", "--output_dir": filepath.Join(home, "out", name),
			"--data_backend_config": "config/dl.json", "--max_train_steps": "1", "--num_train_epochs": "0"} {
			mw.WriteField(k, v)
		}
		mw.Close()
		req, _ := http.NewRequest("POST", base+"/api/training/start", &buf)
		req.Header.Set("Content-Type", mw.FormDataContentType())
		req.Header.Set("Accept", "application/json")
		res, err := c.Do(req)
		if err != nil {
			return r, err
		}
		var st struct {
			JobID string `json:"job_id"`
		}
		json.NewDecoder(res.Body).Decode(&st)
		res.Body.Close()
		if st.JobID == "" {
			return r, fmt.Errorf("start refused")
		}
		// Watch storage on its own: the job's last_seq, sampled every 5 ms, says when the
		// daemon had stored everything, whatever the clients' pace.
		type sample struct {
			at  time.Time
			seq uint64
		}
		var samplesMu sync.Mutex
		var samples []sample
		watchCtx, stopWatch := context.WithCancel(context.Background())
		defer stopWatch()
		watchDone := make(chan struct{})
		go func() {
			defer close(watchDone)
			for watchCtx.Err() == nil {
				res, err := c.Get(base + "/api/jobs/" + st.JobID)
				if err == nil {
					var j struct {
						LastSeq uint64 `json:"last_seq"`
					}
					json.NewDecoder(res.Body).Decode(&j)
					res.Body.Close()
					samplesMu.Lock()
					samples = append(samples, sample{time.Now(), j.LastSeq})
					samplesMu.Unlock()
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
		want := events // the burst's events carry emit_unix_ns (the step's does not)
		deadline := time.Now().Add(5 * time.Minute)
		for {
			done := 0
			for _, cl := range cls {
				cl.mu.Lock()
				if cl.got >= want {
					done++
				}
				cl.mu.Unlock()
			}
			if done == len(cls) {
				break
			}
			if time.Now().After(deadline) {
				cls[0].mu.Lock()
				got := cls[0].got
				cls[0].mu.Unlock()
				return r, fmt.Errorf("%s: %d of %d clients got all %d events (client 0: %d)", name, done, len(cls), want, got)
			}
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(100 * time.Millisecond)
		r.rssAfter = benchkit.RSSMB(d.Cmd.Process.Pid)
		stopWatch()
		<-watchDone
		// The trainer's own rate, and the daemon's ingestion (stored timestamps).
		evs, err := readAll(c, base, st.JobID)
		if err != nil {
			return r, err
		}
		var firstEmit, lastEmit time.Time
		for _, e := range evs {
			if e.Title == "emit stats" {
				r.emitRate = float64(events) / e.Data.Seconds
				r.emitP99US, r.emitMaxUS = e.Data.P99EmitUS, e.Data.MaxEmitUS
			}
			if e.Data.Emit > 0 {
				t := time.Unix(0, e.Data.Emit)
				if firstEmit.IsZero() {
					firstEmit = t
				}
				lastEmit = t
			}
		}
		_ = lastEmit
		// An event is stored before it is published, so the fastest client's last
		// arrival bounds the moment the last event was stored from above.
		slowest, fastest := time.Duration(0), time.Duration(1<<62)
		for _, cl := range cls {
			cl.mu.Lock()
			slowest = max(slowest, cl.last.Sub(firstEmit))
			fastest = min(fastest, cl.last.Sub(firstEmit))
			r.delivered += cl.got
			r.lat = append(r.lat, cl.lat...)
			r.emitted = append(r.emitted, cl.emitted...)
			cl.mu.Unlock()
		}
		r.slowestClientRate = float64(events) / slowest.Seconds()
		r.ingestRate = float64(events) / fastest.Seconds()
		// With the storage samples: the first moment the last burst event was stored.
		var lastBurstSeq uint64
		for _, e := range evs {
			if e.Data.Emit > 0 && e.Seq > lastBurstSeq {
				lastBurstSeq = e.Seq
			}
		}
		samplesMu.Lock()
		for _, sm := range samples {
			if sm.seq >= lastBurstSeq && lastBurstSeq > 0 {
				if d := sm.at.Sub(firstEmit); d > 0 {
					r.ingestRate = float64(events) / d.Seconds()
				}
				break
			}
		}
		samplesMu.Unlock()
		return r, nil
	}

	tp, err := oneRun("throughput", burst, 0, false)
	if err != nil {
		return err
	}
	lt, err := oneRun("latency", rateEvents, 1000, true)
	if err != nil {
		return err
	}
	if timeline {
		printTimeline(lt.lat, lt.emitted)
	}
	slices.Sort(lt.lat)
	q := func(p float64) float64 { return ms(lt.lat[min(len(lt.lat)-1, int(p*float64(len(lt.lat))))]) }
	fmt.Printf("event fan-out: fake trainer → daemon (badger, group commit) → %d SSE clients, loopback, same CPUs\n", nClients)
	fmt.Printf("%-52s %12s %8s\n", "", "events/s", "ratio")
	fmt.Printf("%-52s %12.0f %8s\n", "trainer emit rate, unpaced (baseline)", tp.emitRate, "1.00")
	fmt.Printf("%-52s %12.0f %8.2f\n", "daemon ingestion (first emit → last stored)", tp.ingestRate, tp.ingestRate/tp.emitRate)
	fmt.Printf("%-52s %12.0f %8.2f\n", fmt.Sprintf("slowest of %d clients (first emit → last received)", nClients), tp.slowestClientRate, tp.slowestClientRate/tp.emitRate)
	fmt.Printf("%d events × %d clients delivered: %d; daemon RSS after: %.1f MB\n", burst, nClients, tp.delivered, tp.rssAfter)
	fmt.Printf("\nlatency at 1,000 events/s, %d events × %d clients (%d samples)\n", rateEvents, nClients, len(lt.lat))
	fmt.Printf("%8s %8s %8s %8s\n", "p50 ms", "p90 ms", "p99 ms", "max ms")
	fmt.Printf("%8.1f %8.1f %8.1f %8.1f\n", q(0.5), q(0.9), q(0.99), ms(lt.lat[len(lt.lat)-1]))
	fmt.Printf("\ntrainer Emit (a spool append the daemon must never block)\n")
	fmt.Printf("%-52s %12s %12s\n", "", "p99 µs", "max µs")
	fmt.Printf("%-52s %12.0f %12.0f\n", "throughput run (unpaced)", tp.emitP99US, tp.emitMaxUS)
	fmt.Printf("%-52s %12.0f %12.0f\n", "latency run (1,000 events/s)", lt.emitP99US, lt.emitMaxUS)
	verdict := func(ok bool) string {
		if ok {
			return "PASS"
		}
		return "FAIL"
	}
	fmt.Printf("goal: ingestion ≥ 20,000 events/s  %s\n", verdict(tp.ingestRate >= 20000))
	fmt.Printf("goal: p99 < 50 ms at 1,000 events/s  %s\n", verdict(q(0.99) < 50))
	fmt.Printf("goal: trainer Emit p99 < 10 ms  %s\n", verdict(max(tp.emitP99US, lt.emitP99US) < 10000))
	return nil
}

type storedEvent struct {
	Index uint64 `json:"index"`
	Seq   uint64 `json:"seq"`
	Title string `json:"title"`
	Data  struct {
		Emit      int64   `json:"emit_unix_ns"`
		Seconds   float64 `json:"seconds"`
		P99EmitUS float64 `json:"p99_emit_us"`
		MaxEmitUS float64 `json:"max_emit_us"`
	} `json:"data"`
}

// readAll reads a job's events back by index.
func readAll(c *http.Client, base, id string) ([]storedEvent, error) {
	var out []storedEvent
	var since uint64
	for {
		res, err := c.Get(fmt.Sprintf("%s/api/training/events?job_id=%s&since_index=%d&limit=10000", base, id, since))
		if err != nil {
			return nil, err
		}
		var pg struct {
			Events []storedEvent `json:"events"`
			Next   uint64        `json:"next_index"`
		}
		err = json.NewDecoder(res.Body).Decode(&pg)
		res.Body.Close()
		if err != nil {
			return nil, err
		}
		if len(pg.Events) == 0 {
			return out, nil
		}
		out = append(out, pg.Events...)
		since = pg.Next
	}
}

// printTimeline prints the latency percentiles of each second of the latency run (by
// emit time), to tell a steady tail from a stall.
func printTimeline(lat []time.Duration, emitted []int64) {
	if len(lat) == 0 {
		return
	}
	t0, t1 := slices.Min(emitted), slices.Max(emitted)
	buckets := make([][]time.Duration, (t1-t0)/int64(time.Second)+1)
	for i, l := range lat {
		s := (emitted[i] - t0) / int64(time.Second)
		buckets[s] = append(buckets[s], l)
	}
	fmt.Printf("%6s %8s %8s %8s\n", "second", "p50 ms", "p99 ms", "max ms")
	for s := range buckets {
		b := buckets[s]
		if len(b) == 0 {
			continue
		}
		slices.Sort(b)
		fmt.Printf("%6d %8.1f %8.1f %8.1f\n", s, ms(b[len(b)/2]), ms(b[len(b)*99/100]), ms(b[len(b)-1]))
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func post(c *http.Client, url, body string) {
	res, err := c.Post(url, "application/json", bytes.NewReader([]byte(body)))
	if err == nil {
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
}
