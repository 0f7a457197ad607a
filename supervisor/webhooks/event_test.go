package webhooks

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestEventClasses(t *testing.T) {
	tests := []struct {
		typ, sev, data      string
		progress, essential bool
		level               int
	}{
		{"training.progress", "info", `{"step":1}`, true, false, 3},
		{"training.status", "info", `{"status":"running","progress":{"current":1}}`, true, false, 3},
		{"training.status", "", ``, true, false, 3},
		{"training.status", "error", `{"status":"failed"}`, false, true, 1},
		{"training.status", "info", `{"status":"completed"}`, false, true, 3},
		{"lifecycle.stage", "info", `{"stage":{"key":"init_data_backend"}}`, false, true, 3},
		{"job.status", "info", `{"status":"running"}`, false, true, 3},
		{"training.checkpoint", "info", ``, false, true, 3},
		{"training.validation", "info", ``, false, true, 3},
		{"validation.image", "info", ``, false, true, 3},
		{"notification", "error", ``, false, true, 1},
		{"error", "critical", ``, false, true, 0},
		{"notification", "info", ``, false, false, 3},
		{"notification", "success", ``, false, false, 3},
		{"notification", "warning", ``, false, false, 2},
		{"debug", "", ``, false, false, 4},
		{"training.metric", "debug", ``, false, false, 4},
	}
	for _, tc := range tests {
		t.Run(tc.typ+"/"+tc.sev+tc.data, func(t *testing.T) {
			ev := Event{Type: tc.typ, Severity: tc.sev, Data: json.RawMessage(tc.data)}
			if got := ev.isProgress(); got != tc.progress {
				t.Errorf("isProgress = %v", got)
			}
			if got := ev.isEssential(); got != tc.essential {
				t.Errorf("isEssential = %v", got)
			}
			if got := ev.level(); got != tc.level {
				t.Errorf("level = %d, want %d", got, tc.level)
			}
		})
	}
}

func TestRawBody(t *testing.T) {
	ts := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ev := Event{ID: "job1-7", JobID: "job1", Type: "lifecycle.stage", Severity: "info", Timestamp: ts,
		Title: "Configuring data backends", Message: "Configuring data backends... (this may take a while!)",
		Data:   json.RawMessage(`{"stage":{"key":"init_data_backend","status":"running"},"extra":1}`),
		Images: []Media{{Src: "data:image/png;base64,AAAA", MimeType: "image/png"}}}
	b, err := rawBody(&ev)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"id": "job1-7", "type": "lifecycle.stage", "severity": "info", "job_id": "job1",
		"timestamp": "2026-03-01T12:00:00Z", "title": ev.Title, "message": ev.Message}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v, want %v", k, m[k], v)
		}
	}
	if st, _ := m["stage"].(map[string]any); st["key"] != "init_data_backend" {
		t.Errorf("stage not lifted to the top level: %v", m["stage"])
	}
	if d, _ := m["data"].(map[string]any); d["extra"] != float64(1) {
		t.Errorf("data not kept: %v", m["data"])
	}
	if im, _ := m["images"].([]any); len(im) != 1 || im[0].(map[string]any)["mime_type"] != "image/png" {
		t.Errorf("images = %v", m["images"])
	}
	// Invalid data is left out rather than breaking the body.
	bad := Event{Type: "notification", Data: json.RawMessage(`{oops`)}
	if b, err := rawBody(&bad); err != nil || strings.Contains(string(b), "oops") {
		t.Errorf("invalid data: %s %v", b, err)
	}
}

func TestDiscordContent(t *testing.T) {
	tests := []struct {
		prefix string
		ev     Event
		want   string
	}{
		{"proj", Event{Title: "Checkpoint saved", Message: "to /out/checkpoint-400"}, "`(proj)` Checkpoint saved: to /out/checkpoint-400"},
		{"", Event{Title: "Running", Message: "Running training"}, "Running training"},
		{"", Event{Title: "Only title"}, "Only title"},
		{"p", Event{Type: "training.progress", Data: json.RawMessage(`{"step":5,"total_steps":10,"loss":0.25}`)}, "`(p)` training.progress: step 5/10, loss 0.25"},
		{"", Event{Type: "training.status", Data: json.RawMessage(`{"progress":{"current":2,"total":8,"percent":25}}`)}, "training.status: step 2/8 (25.0%)"},
		{"", Event{Type: "x"}, "x"},
	}
	for _, tc := range tests {
		if got := discordContent(tc.prefix, &tc.ev); got != tc.want {
			t.Errorf("discordContent = %q, want %q", got, tc.want)
		}
	}
	long := discordContent("p", &Event{Message: strings.Repeat("é", 5000)})
	if n := len([]rune(long)); n != discordMaxContent {
		t.Errorf("long content has %d characters", n)
	}
}

func TestDecodeAsset(t *testing.T) {
	tests := []struct {
		m    Media
		ok   bool
		mime string
	}{
		{Media{Src: "data:image/png;base64,iVBORw0KGgo=", MimeType: "image/png"}, true, "image/png"},
		{Media{Src: "data:image/jpeg;base64,/9j/4AAQ"}, true, "image/jpeg"},
		{Media{Src: "iVBORw0KGgo="}, true, "image/png"},
		{Media{Src: "https://169.254.169.254/img.png"}, false, ""},
		{Media{Src: "data:image/png,notbase64"}, false, ""},
		{Media{Src: "data:video/mp4;base64,AAAA"}, false, ""},
		{Media{Src: "!!!"}, false, ""},
	}
	for _, tc := range tests {
		_, mime, ok := decodeAsset(tc.m)
		if ok != tc.ok || mime != tc.mime {
			t.Errorf("decodeAsset(%.30s) = %q %v, want %q %v", tc.m.Src, mime, ok, tc.mime, tc.ok)
		}
	}
}

func TestBackoff(t *testing.T) {
	d := New(nil, Options{Jitter: func() float64 { return 0 }})
	defer d.Close()
	s := &sink{d: d}
	want := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second}
	for i, w := range want {
		if got := s.backoff(i+1, 0); got != w {
			t.Errorf("attempt %d: %v, want %v", i+1, got, w)
		}
	}
	d.opts.Jitter = func() float64 { return 0.999999 }
	if got := s.backoff(20, 0); got > DefaultBackoffMax || got < DefaultBackoffMax-time.Millisecond {
		t.Errorf("capped backoff with max jitter = %v", got)
	}
	if got := s.backoff(1, 5*time.Second); got != 5*time.Second {
		t.Errorf("Retry-After ignored: %v", got)
	}
	if got := s.backoff(1, time.Hour); got != DefaultBackoffMax {
		t.Errorf("Retry-After not capped: %v", got)
	}
}

func TestOptionsDefaults(t *testing.T) {
	d := New(nil, Options{Timeout: time.Hour})
	defer d.Close()
	o := d.opts
	if o.Timeout != 10*time.Second || o.QueueSize != 1000 || o.MaxAttempts != 5 || o.MaxResponseBytes != 64<<10 ||
		o.BackoffBase != time.Second || o.BackoffMax != time.Minute {
		t.Errorf("defaults: %+v", o)
	}
}
