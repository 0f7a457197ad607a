package schedule

import (
	"reflect"
	"testing"
	"time"

	"simpletuner/store"
)

func TestDecideSlot(t *testing.T) {
	spec, err := ParseSpec("0 22 * * *")
	if err != nil {
		t.Fatal(err)
	}
	due := utc(2026, 12, 6, 22, 0)
	tomorrow, after := utc(2026, 12, 7, 22, 0), utc(2026, 12, 9, 22, 0)
	for _, c := range []struct {
		name    string
		enabled bool
		policy  string
		now     time.Time
		want    slot
	}{
		{"not yet", true, MissedSkip, due.Add(-time.Second), slot{}},
		{"disabled", false, MissedSkip, due, slot{}},
		{"on time", true, MissedSkip, due, slot{due: true, run: true, next: tomorrow}},
		{"late within grace", true, MissedSkip, due.Add(59 * time.Second), slot{due: true, run: true, next: tomorrow}},
		{"missed, skip", true, MissedSkip, due.Add(2 * time.Hour), slot{due: true, missed: true, next: tomorrow}},
		{"missed, run once", true, MissedRunOnce, due.Add(2 * time.Hour), slot{due: true, run: true, missed: true, next: tomorrow}},
		// Two days down: still one decision, and the next slot is after now, not the ones missed.
		{"missed many, run once", true, MissedRunOnce, utc(2026, 12, 9, 12, 0), slot{due: true, run: true, missed: true, next: after}},
	} {
		t.Run(c.name, func(t *testing.T) {
			sc := &store.Schedule{Enabled: c.enabled, MissedPolicy: c.policy, NextRunAt: &due}
			if got := decideSlot(sc, spec, c.now, time.UTC, time.Minute); !reflect.DeepEqual(got, c.want) {
				t.Fatalf("decideSlot = %+v, want %+v", got, c.want)
			}
		})
	}
}

func TestExpired(t *testing.T) {
	now := utc(2026, 12, 6, 0, 0)
	items := []aged{
		{"a", 1, now.Add(-30 * 24 * time.Hour)},
		{"b", 2, now.Add(-20 * 24 * time.Hour)},
		{"c", 3, now.Add(-10 * 24 * time.Hour)},
		{"d", 4, now.Add(-1 * time.Hour)},
	}
	for _, c := range []struct {
		name               string
		keepLast, keepDays int
		want               []string
	}{
		{"keep last 2", 2, 0, []string{"b", "a"}},
		{"keep 15 days", 0, 15, []string{"b", "a"}},
		{"keep last 1 and 25 days", 1, 25, []string{"a"}},
		{"keep more than there are", 9, 0, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := expired(items, c.keepLast, days(c.keepDays), now); !reflect.DeepEqual(got, c.want) {
				t.Fatalf("expired = %v, want %v", got, c.want)
			}
		})
	}
}
