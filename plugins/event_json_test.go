package plugins

import (
	"encoding/json"
	"testing"
	"time"
)

func TestEventAppendJSONLikeMarshal(t *testing.T) {
	ts := time.Date(2026, 11, 27, 23, 1, 2, 941502429, time.UTC)
	for _, e := range []Event{
		{},
		{Seq: 1, Type: "training.progress", Severity: "info", Time: ts, Data: json.RawMessage(`{"step":1,"total_steps":10}`)},
		{Seq: 2, Type: "notification", Severity: "warning", Time: ts, Title: "T <b>", Message: "line\nbreak \u2028 \xff", Data: json.RawMessage(`{"a": "<x> & y"}`)},
		{Seq: 3, Type: "x", Time: ts, Data: json.RawMessage(`[1, 2]`)},
	} {
		got, err := e.AppendJSON(nil)
		want, werr := json.Marshal(e)
		if err != nil || werr != nil || string(got) != string(want) {
			t.Errorf("got %s (%v)\nwant %s (%v)", got, err, want, werr)
		}
	}
	if _, err := (&Event{Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}).AppendJSON(nil); err == nil {
		t.Error("a year json.Marshal refuses was encoded")
	}
}

func FuzzEventAppendJSONLikeMarshal(f *testing.F) {
	f.Add(uint64(7), "training.progress", "info", "title", "msg", `{"step":1}`, int64(1795822147941495656))
	f.Fuzz(func(t *testing.T, seq uint64, typ, sev, title, msg, data string, ns int64) {
		if !json.Valid([]byte(data)) {
			data = ""
		}
		e := Event{Seq: seq, Type: typ, Severity: sev, Time: time.Unix(0, ns).UTC(), Title: title, Message: msg, Data: json.RawMessage(data)}
		got, err := e.AppendJSON(nil)
		want, werr := json.Marshal(e)
		if (err != nil) != (werr != nil) || (err == nil && string(got) != string(want)) {
			t.Fatalf("got %s (%v)\nwant %s (%v)", got, err, want, werr)
		}
	})
}
