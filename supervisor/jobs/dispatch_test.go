package jobs

import (
	"errors"
	"reflect"
	"testing"

	"simpletuner/plugins"
)

func TestDispatchOrder(t *testing.T) {
	for _, c := range []struct {
		target      string
		haveWorkers bool
		want        []string
		err         bool
	}{
		{"", false, []string{KindLocal}, false},
		{"", true, []string{KindWorker, KindLocal}, false},
		{TargetAuto, true, []string{KindWorker, KindLocal}, false},
		{TargetAuto, false, []string{KindLocal}, false},
		{TargetLocal, true, []string{KindLocal}, false},
		{TargetWorker, false, []string{KindWorker}, false},
		{TargetWorker, true, []string{KindWorker}, false},
		{TargetSlurm, true, []string{KindSlurm}, false},
		{"cloud", true, nil, true},
		{"AUTO", false, nil, true},
	} {
		got, err := dispatchOrder(c.target, c.haveWorkers)
		if (err != nil) != c.err || !reflect.DeepEqual(got, c.want) {
			t.Errorf("dispatchOrder(%q, %v) = %v, %v; want %v (error %v)", c.target, c.haveWorkers, got, err, c.want, c.err)
		}
	}
}

func TestPlaceOutcome(t *testing.T) {
	start := Placement{Outcome: PlaceStart}
	wait := func(r string) Placement { return Placement{Outcome: PlaceWait, Reason: r} }
	reject := func(r string) Placement { return Placement{Outcome: PlaceReject, Reason: r} }
	for _, c := range []struct {
		name    string
		ps      []Placement
		idx     int
		outcome PlaceOutcome
		reason  string
	}{
		{"worker offers", []Placement{start}, 0, PlaceStart, ""},
		{"worker waits, local starts", []Placement{wait("no idle worker"), start}, 1, PlaceStart, ""},
		{"all wait: first reason", []Placement{wait("no idle worker"), wait("GPUs busy")}, -1, PlaceWait, "no idle worker"},
		{"one rejects, one waits: waits", []Placement{reject("no worker matches"), wait("GPUs busy")}, -1, PlaceWait, "GPUs busy"},
		{"the only one rejects", []Placement{reject("too many GPUs")}, -1, PlaceReject, "too many GPUs"},
		{"all reject: first reason", []Placement{reject("a"), reject("b")}, -1, PlaceReject, "a"},
		{"none asked", nil, -1, PlaceReject, ""},
	} {
		i, o, r := placeOutcome(c.ps)
		if i != c.idx || o != c.outcome || r != c.reason {
			t.Errorf("%s: got %d %v %q, want %d %v %q", c.name, i, o, r, c.idx, c.outcome, c.reason)
		}
	}
}

func TestEventsAfter(t *testing.T) {
	evs := func(seqs ...uint64) []plugins.Event {
		var out []plugins.Event
		for _, s := range seqs {
			out = append(out, plugins.Event{Seq: s})
		}
		return out
	}
	seqs := func(es []plugins.Event) []uint64 {
		var out []uint64
		for _, e := range es {
			out = append(out, e.Seq)
		}
		return out
	}
	for _, c := range []struct {
		name string
		in   []plugins.Event
		last uint64
		want []uint64
		gap  bool
	}{
		{"follows", evs(1, 2, 3), 0, []uint64{1, 2, 3}, false},
		{"replay skipped", evs(2, 3, 4, 5), 3, []uint64{4, 5}, false},
		{"all old", evs(1, 2), 5, nil, false},
		{"gap", evs(5, 6), 3, nil, true},
		{"hole inside", evs(4, 6), 3, nil, true},
		{"empty", nil, 3, nil, false},
	} {
		got, err := eventsAfter(c.in, c.last)
		if errors.Is(err, ErrSeqGap) != c.gap || !reflect.DeepEqual(seqs(got), c.want) {
			t.Errorf("%s: got %v %v, want %v gap %v", c.name, seqs(got), err, c.want, c.gap)
		}
	}
}
