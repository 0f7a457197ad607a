package webhooks

import (
	"crypto/x509"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSeedWebhookExample runs the tutorial's example unchanged ("アドホック実行の監視"):
// --webhook_config with callback_url https://example.com/simpletuner, TLS verified, and
// --webhook_reporting_interval=10. The receiver is a loopback TLS server whose test
// certificate is valid for example.com; the injected resolver gives example.com a public
// address and the test network routes that address to the receiver.
func TestSeedWebhookExample(t *testing.T) {
	rc := startReceiver(t, true, nil)
	cfgs, err := Parse(seedWebhookConfig)
	if err != nil {
		t.Fatal(err)
	}
	if NeedsHooksPermission(cfgs) {
		t.Fatal("the seed example should not need job.hooks")
	}
	interval, err := strconv.Atoi("10") // -F --webhook_reporting_interval=10
	if err != nil {
		t.Fatal(err)
	}

	res := newFakeResolver()
	res.set("example.com", "93.184.215.14")
	pool := x509.NewCertPool()
	pool.AddCert(rc.srv.Certificate())
	clock := &fakeClock{t: time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)}
	opts := testOptions(&sleepRecorder{})
	opts.Resolver = res
	opts.RootCAs = pool
	opts.Now = clock.Now
	var dialed []string
	opts.dialRewrite = func(a string) string {
		dialed = append(dialed, a)
		return rc.addr()
	}
	d := newTestDispatcher(t, nil, opts)
	if err := d.Register("3f2a9c1d", cfgs, time.Duration(interval)*time.Second); err != nil {
		t.Fatal(err)
	}

	pub := func(ev Event, advance time.Duration) {
		clock.Advance(advance)
		d.Publish("3f2a9c1d", ev)
	}
	stage := func(key, status string) Event {
		return Event{Type: "lifecycle.stage", Title: key, Data: mustJSON(t, map[string]any{"stage": map[string]any{"key": key, "status": status}})}
	}
	progress := func(step int) Event {
		return Event{Type: "training.status", Title: "Running", Data: mustJSON(t, map[string]any{"status": "running", "global_step": step,
			"progress": map[string]any{"current": step, "total": 30, "percent": float64(step) * 100 / 30}})}
	}
	pub(stage("init_data_backend", "running"), 0)
	pub(stage("init_data_backend", "completed"), time.Second)
	for step := 1; step <= 30; step++ {
		pub(progress(step), time.Second) // one step per second: one in ten goes out
	}
	pub(Event{Type: "training.checkpoint", Title: "Checkpoint saved to /out/checkpoint-30",
		Data: mustJSON(t, map[string]any{"checkpoint": map[string]any{"path": "/out/checkpoint-30", "is_final": true}})}, 0)
	pub(stage("training_complete", "completed"), 0)
	select {
	case <-d.Unregister("3f2a9c1d"):
	case <-time.After(30 * time.Second):
		t.Fatal("drain timed out")
	}

	var got []string
	for i := 0; i < rc.count(); i++ {
		h := rc.get(i)
		if h.path != "/simpletuner" || h.header.Get("Content-Type") != "application/json" || h.header.Get(HeaderEventID) == "" {
			t.Errorf("request %d: %s %v", i, h.path, h.header)
		}
		m := decodeBody(t, h)
		if m["job_id"] != "3f2a9c1d" {
			t.Errorf("job_id = %v", m["job_id"])
		}
		s := m["type"].(string)
		if st, ok := m["stage"].(map[string]any); ok {
			s += ":" + st["key"].(string) + "/" + st["status"].(string)
		}
		if p, ok := m["progress"].(map[string]any); ok {
			b, _ := json.Marshal(p["current"])
			s += "#" + string(b)
		}
		got = append(got, s)
	}
	want := []string{
		"lifecycle.stage:init_data_backend/running", "lifecycle.stage:init_data_backend/completed",
		"training.status#1", "training.status#11", "training.status#21",
		"training.checkpoint", "lifecycle.stage:training_complete/completed",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("delivered:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, a := range dialed {
		if a != "93.184.215.14:443" {
			t.Errorf("dialed %s, want example.com's address on 443", a)
		}
	}
	if len(dialed) != len(want) {
		t.Errorf("%d dials for %d deliveries", len(dialed), len(want))
	}
}
