package events

import (
	"encoding/json"
	"math"
	"testing"
	"time"

	"simpletuner/plugins"
)

func sameAsMarshal(t *testing.T, e *Event) {
	t.Helper()
	got, err := e.appendJSON(nil)
	want, werr := json.Marshal(e)
	if (err != nil) != (werr != nil) || (err == nil && string(got) != string(want)) {
		t.Fatalf("got  %s (%v)\nwant %s (%v)", got, err, want, werr)
	}
}

// TestEventEncodingLikeMarshal holds the hand-written encoder to encoding/json over the
// event catalogue, as the hub builds the events.
func TestEventEncodingLikeMarshal(t *testing.T) {
	ts := time.Date(2026, 11, 27, 23, 1, 2, 941502429, time.UTC)
	for i, pe := range []plugins.Event{
		{Seq: 1, Type: plugins.EventTrainingProgress, Severity: "info", Data: json.RawMessage(`{"step":3,"total_steps":10,"loss":0.25,"learning_rate":1e-7,"epoch":1,"total_epochs":2,"eta_seconds":12.5,"metrics":{"grad_norm":1.5,"<x>":"&"}}`)},
		{Seq: 2, Type: plugins.EventTrainingProgress, Data: json.RawMessage(`{"step":0,"total_steps":0}`)},
		{Seq: 3, Type: plugins.EventTrainingStatus, Severity: "info", Title: "Running", Data: json.RawMessage(`{"status":"running","progress":{"label":"steps","current":2,"total":4}}`)},
		{Seq: 4, Type: plugins.EventLifecycleStage, Data: json.RawMessage(`{"stage":{"key":"init","label":"Init <1>","status":"running","progress":{"current":1,"total":3}}}`)},
		{Seq: 5, Type: plugins.EventTrainingCheckpoint, Title: "Checkpoint saved", Data: json.RawMessage(`{"path":"/out/checkpoint-4","step":4,"is_final":true}`)},
		{Seq: 6, Type: plugins.EventValidationImage, Title: "Validation (step 4/20): night bench", Message: "a \u2028 b", Data: json.RawMessage(`{"prompt":"night bench","step":4,"images":[{"src":"data:image/png;base64,AAAA","mime_type":"image/png"}],"extra":"x y"}`)},
		{Seq: 7, Type: plugins.EventNotification, Severity: "warning", Title: "t", Message: "m <b>"},
		{Seq: 0, Type: plugins.EventJobStatus, Severity: "error", Data: json.RawMessage(`{"status":"failed","error":"boom"}`)},
		{Seq: 8, Type: TypeLog, Message: "plain"},
	} {
		pe.Time = ts
		e := typedEvent(uint64(100+i), pe.Seq, "j-1", sanitize(pe))
		sameAsMarshal(t, e)
	}
	// Floats encoding/json refuses fail here too.
	nan := math.NaN()
	sameAsMarshal(t, &Event{ID: "1", Index: 1, Timestamp: ts, Progress: &Progress{ETASeconds: &nan}})
	sameAsMarshal(t, &Event{ID: "1", Index: 1, Timestamp: ts, Progress: &Progress{Percent: math.Inf(1)}})
}

func FuzzEventEncodingLikeMarshal(f *testing.F) {
	f.Add("training.progress", "title", "message", `{"step":1,"total_steps":3,"loss":0.5}`)
	f.Add("validation.image", "t", "m", `{"prompt":"p","images":["x"]}`)
	f.Add("lifecycle.stage", "", "", `{"stage":"init","status":"done"}`)
	f.Fuzz(func(t *testing.T, typ, title, msg, data string) {
		pe := sanitize(plugins.Event{Seq: 1, Type: typ, Severity: "info", Time: time.Unix(1795822147, 5).UTC(), Title: title, Message: msg, Data: json.RawMessage(data)})
		sameAsMarshal(t, typedEvent(9, 1, "job", pe))
	})
}
