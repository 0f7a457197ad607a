package plugins

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestErrorsSurviveTheWire(t *testing.T) {
	for _, sentinel := range []error{ErrAlreadyStarted, ErrNotStarted, ErrJobEnded, ErrInvalidConfig, ErrUnsupported, context.Canceled, context.DeadlineExceeded} {
		wire := toStatus(fmt.Errorf("while doing a thing: %w", sentinel))
		back := fromStatus(wire)
		if !errors.Is(back, sentinel) {
			t.Errorf("%v came back as %v", sentinel, back)
		}
	}
	if err := fromStatus(status.Error(codes.Unavailable, "connection refused")); !errors.Is(err, ErrTrainerGone) {
		t.Errorf("unavailable: %v", err)
	}
	if err := fromStatus(status.Error(codes.Internal, "x")); err == nil || errors.Is(err, ErrTrainerGone) {
		t.Errorf("internal: %v", err)
	}
	if toStatus(nil) != nil || fromStatus(nil) != nil {
		t.Error("nil not preserved")
	}
}

func TestSpoolReaderIgnoresTornLineAndResumes(t *testing.T) {
	path := filepath.Join(t.TempDir(), SpoolFile)
	body := `{"seq":1,"type":"a","severity":"info","timestamp":"2026-01-01T00:00:00Z"}
{"seq":2,"type":"b","severity":"info","timestamp":"2026-01-01T00:00:00Z"}
{"seq":3,"type":"c","sev`
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	var got []uint64
	off, err := ReadSpool(path, 0, -1, 0, func(e Event) error { got = append(got, e.Seq); return nil })
	if err != nil || len(got) != 2 {
		t.Fatalf("got %v %v", got, err)
	}
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`erity":"info","timestamp":"2026-01-01T00:00:00Z"}` + "\n")
	f.Close()
	got = nil
	if _, err := ReadSpool(path, off, -1, 0, func(e Event) error { got = append(got, e.Seq); return nil }); err != nil || len(got) != 1 || got[0] != 3 {
		t.Fatalf("resume: %v %v", got, err)
	}
	got = nil
	ReadSpool(path, 0, -1, 2, func(e Event) error { got = append(got, e.Seq); return nil })
	if len(got) != 1 || got[0] != 3 {
		t.Fatalf("since 2: %v", got)
	}
}

func TestExitRecordRoundTrip(t *testing.T) {
	dir := t.TempDir()
	if _, err := ReadExitRecord(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing record: %v", err)
	}
	rec := ExitRecord{JobID: "j", Nonce: "n", State: StateCompleted, LastSeq: 9, PID: 42, FinishedAt: time.Unix(1, 0).UTC()}
	if err := WriteExitRecord(dir, rec); err != nil {
		t.Fatal(err)
	}
	got, err := ReadExitRecord(dir)
	if err != nil || got != rec {
		t.Fatalf("%+v %v", got, err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("temp files left: %v", entries)
	}
}

func TestLeadingSeq(t *testing.T) {
	for _, c := range []struct {
		line string
		seq  uint64
		ok   bool
	}{
		{`{"seq":12,"type":"a"}`, 12, true},
		{`{"seq":0}`, 0, true},
		{`{"seq":18446744073709551615,"x":1}`, 18446744073709551615, true},
		{`{"seq":18446744073709551616,"x":1}`, 0, false}, // overflow: decode instead
		{`{"seq":,"x":1}`, 0, false},
		{`{"seq":1`, 0, false},
		{`{"seq":1x}`, 0, false},
		{`{"type":"a","seq":3}`, 0, false},
		{` {"seq":3}`, 0, false},
	} {
		seq, ok := leadingSeq([]byte(c.line))
		if seq != c.seq || ok != c.ok {
			t.Errorf("%s: got %d %v, want %d %v", c.line, seq, ok, c.seq, c.ok)
		}
	}
}

// TestSpoolSkipDecodesOtherLayouts: lines written with another key order are still
// decoded and filtered by seq; a damaged line after the resume point is still reported.
func TestSpoolSkipDecodesOtherLayouts(t *testing.T) {
	path := filepath.Join(t.TempDir(), SpoolFile)
	body := `{"seq":1,"type":"a","severity":"info","timestamp":"2026-01-01T00:00:00Z"}
{"type":"b","seq":2,"severity":"info","timestamp":"2026-01-01T00:00:00Z"}
{"type":"c","seq":3,"severity":"info","timestamp":"2026-01-01T00:00:00Z"}
{"seq":4,"type":"d","severity":"info","timestamp":"2026-01-01T00:00:00Z"}
`
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	var got []uint64
	if _, err := ReadSpool(path, 0, -1, 2, func(e Event) error { got = append(got, e.Seq); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []uint64{3, 4}) {
		t.Fatalf("since 2: %v", got)
	}
	os.WriteFile(path, []byte(body+`{"seq":5,"type":`+"\n"), 0o600)
	if _, err := ReadSpool(path, 0, -1, 4, func(Event) error { return nil }); err == nil {
		t.Fatal("a damaged line after the resume point was not reported")
	}
}
