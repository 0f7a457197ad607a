package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"
)

func evs(job string, seqs ...uint64) []StoredEvent {
	out := make([]StoredEvent, 0, len(seqs))
	for _, s := range seqs {
		out = append(out, StoredEvent{JobID: job, Seq: s, Event: json.RawMessage(fmt.Sprintf(`{"seq":%d}`, s))})
	}
	return out
}

func TestEventIndexAcrossJobs(t *testing.T) {
	db := memDB(t)
	for _, id := range []string{"a", "b"} {
		if err := db.Jobs().Create(&Job{ID: id, Status: "running"}); err != nil {
			t.Fatal(err)
		}
	}
	ev := db.Events()
	a := evs("a", 1, 2, 3)
	if last, err := ev.Append("a", a); err != nil || last != 3 {
		t.Fatalf("append a: %d %v", last, err)
	}
	if a[0].Index != 1 || a[2].Index != 3 {
		t.Fatalf("indexes %d %d, want 1 3", a[0].Index, a[2].Index)
	}
	st := []StoredEvent{{JobID: "b", Event: json.RawMessage(`{"type":"job.status"}`)}}
	if err := ev.Record(st); err != nil || st[0].Index != 4 {
		t.Fatalf("record: %d %v", st[0].Index, err)
	}
	// A replay after a reattach: 2 and 3 are skipped, 4 is new.
	re := evs("a", 2, 3, 4)
	if last, err := ev.Append("a", re); err != nil || last != 4 {
		t.Fatalf("replay: %d %v", last, err)
	}
	if re[0].Index != 0 || re[1].Index != 0 || re[2].Index != 5 {
		t.Fatalf("replay indexes %+v", re)
	}
	all, next, err := ev.Since(0, 0, 0, nil)
	if err != nil || len(all) != 5 || next != 5 {
		t.Fatalf("since 0: %d events next %d err %v", len(all), next, err)
	}
	for i, e := range all {
		if e.Index != uint64(i+1) {
			t.Fatalf("event %d has index %d", i, e.Index)
		}
	}
	onlyB, next, err := ev.Since(0, 10, 0, func(e *StoredEvent) bool { return e.JobID == "b" })
	if err != nil || len(onlyB) != 1 || onlyB[0].Seq != 0 || next != 5 {
		t.Fatalf("filtered: %+v next %d %v", onlyB, next, err)
	}
	byA, next, err := ev.ByJob("a", 1, 0, nil)
	if err != nil || len(byA) != 3 || byA[0].Index != 2 || next != 5 {
		t.Fatalf("by job a after 1: %+v next %d %v", byA, next, err)
	}
	// The per-seq listing still works.
	list, err := ev.List("a", 1, 0)
	if err != nil || len(list) != 3 || list[0].Seq != 2 || string(list[0].Event) != `{"seq":2}` {
		t.Fatalf("list: %+v %v", list, err)
	}
}

func TestEventRetention(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Jobs().Create(&Job{ID: "a", Status: "running"}); err != nil {
		t.Fatal(err)
	}
	ev := db.Events()
	var seqs []uint64
	for i := 1; i <= 2500; i++ {
		seqs = append(seqs, uint64(i))
	}
	if _, err := ev.Append("a", evs("a", seqs...)); err != nil {
		t.Fatal(err)
	}
	n, err := ev.Trim(1000, 0, time.Now())
	if err != nil || n != 1500 {
		t.Fatalf("trim by count: %d %v", n, err)
	}
	first, last, _ := ev.Bounds()
	if first != 1501 || last != 2500 {
		t.Fatalf("bounds %d..%d", first, last)
	}
	if l, _ := ev.List("a", 0, 1); len(l) != 1 || l[0].Seq != 1501 {
		t.Fatalf("list after trim: %+v", l)
	}
	// Age: everything is older than 1 ns an hour from now.
	if n, err := ev.Trim(0, time.Nanosecond, time.Now().Add(time.Hour)); err != nil || n != 1000 {
		t.Fatalf("trim by age: %d %v", n, err)
	}
	// Indexes are never reused, across a reopen too.
	db.Close()
	db, err = Open(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	first, last, _ = db.Events().Bounds()
	if first != 2501 || last != 2500 {
		t.Fatalf("bounds after reopen %d..%d", first, last)
	}
	e := evs("a", 2501)
	if _, err := db.Events().Append("a", e); err != nil || e[0].Index != 2501 {
		t.Fatalf("append after reopen: %d %v", e[0].Index, err)
	}
}

func TestStoredRecordLikeMarshal(t *testing.T) {
	ts := time.Date(2026, 11, 27, 23, 1, 2, 941502429, time.UTC)
	for _, e := range []StoredEvent{
		{JobID: "j-1", Seq: 3, Index: 9, Stored: ts, Event: json.RawMessage(`{"seq":3,"type":"a"}`)},
		{JobID: "<j>", Index: 1, Stored: ts, Event: json.RawMessage(`{"message": "a <b> & c"}`)},
		{JobID: "j", Index: 2, Stored: ts},
	} {
		got, err := appendStored(nil, &e)
		want, werr := json.Marshal(e)
		if err != nil || werr != nil || string(got) != string(want) {
			t.Errorf("got %s (%v)\nwant %s (%v)", got, err, want, werr)
		}
	}
}

func TestInvalidEventJSONIsRefused(t *testing.T) {
	db := memDB(t)
	if err := db.Jobs().Create(&Job{ID: "j", Status: "running"}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Events().Append("j", []StoredEvent{{Seq: 1, Event: json.RawMessage(`{"a":`)}}); err == nil {
		t.Fatal("an event that is not JSON was stored")
	}
	if evs, err := db.Events().List("j", 0, 10); err != nil || len(evs) != 0 {
		t.Fatalf("after the refusal: %v %v", evs, err)
	}
}

// TestLastSeqKeyAndOlderRecords: LastSeq lives in its own key; a job record from an
// older state directory (LastSeq inside the record) still resumes after it, and job
// updates never move LastSeq back.
func TestLastSeqKeyAndOlderRecords(t *testing.T) {
	db := memDB(t)
	if err := db.Jobs().Create(&Job{ID: "old", Status: "running", LastSeq: 5}); err != nil {
		t.Fatal(err)
	}
	if seq, err := db.Jobs().LastSeq("old"); err != nil || seq != 5 {
		t.Fatalf("last seq of an older record: %d %v", seq, err)
	}
	last, err := db.Events().Append("old", evs("old", 4, 5, 6, 7))
	if err != nil || last != 7 {
		t.Fatalf("append: %d %v", last, err)
	}
	if seq, err := db.Jobs().LastSeq("old"); err != nil || seq != 7 {
		t.Fatalf("last seq after append: %d %v", seq, err)
	}
	if _, err := db.Jobs().LastSeq("missing"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("last seq of no job: %v", err)
	}
	if got, _ := db.Events().List("old", 0, 10); len(got) != 2 || got[0].Seq != 6 {
		t.Fatalf("stored %+v, want seqs 6 and 7", got)
	}
	if _, err := db.Jobs().Update("old", func(j *Job) error { j.LastSeq = 0; j.Status = "completed"; return nil }); err != nil {
		t.Fatal(err)
	}
	j, err := db.Jobs().Get("old")
	if err != nil || j.LastSeq != 7 || j.Status != "completed" {
		t.Fatalf("after update: %+v %v", j, err)
	}
	all, _ := db.Jobs().List()
	if len(all) != 1 || all[0].LastSeq != 7 {
		t.Fatalf("list: %+v", all)
	}
	if _, err := db.Events().Append("missing", evs("missing", 1)); err == nil {
		t.Fatal("events stored for a job that does not exist")
	}
}
