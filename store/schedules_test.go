package store

import (
	"errors"
	"sync"
	"testing"
	"time"
)

// TestScheduleClaimOnce: of many claimants racing for one slot, exactly one wins, and a
// claim of a slot already moved on fails with ErrSlotTaken.
func TestScheduleClaimOnce(t *testing.T) {
	db := memDB(t)
	due := time.Date(2026, 12, 6, 22, 0, 0, 0, time.UTC)
	next := due.Add(24 * time.Hour)
	if err := db.Schedules().Create(&Schedule{ID: "s1", Name: "nightly", Enabled: true, NextRunAt: &due}); err != nil {
		t.Fatal(err)
	}
	if err := db.Schedules().Create(&Schedule{ID: "s1"}); !errors.Is(err, ErrExists) {
		t.Fatalf("second create: %v, want ErrExists", err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	won := 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := db.Schedules().ClaimRun("s1", due, next, due, true)
			if err == nil {
				mu.Lock()
				won++
				mu.Unlock()
			} else if !errors.Is(err, ErrSlotTaken) {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if won != 1 {
		t.Fatalf("%d claimants won the slot, want 1", won)
	}
	sc, err := db.Schedules().Get("s1")
	if err != nil {
		t.Fatal(err)
	}
	if sc.Runs != 1 || !sc.NextRunAt.Equal(next) || sc.LastRunAt == nil || !sc.LastRunAt.Equal(due) {
		t.Fatalf("after the claim: runs %d next %v last %v", sc.Runs, sc.NextRunAt, sc.LastRunAt)
	}
	if _, err := db.Schedules().Update("s1", func(sc *Schedule) error { sc.Enabled = false; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Schedules().ClaimRun("s1", next, next.Add(time.Hour), next, true); !errors.Is(err, ErrSlotTaken) {
		t.Fatalf("claim of a disabled schedule: %v, want ErrSlotTaken", err)
	}
}

func TestScheduleListDelete(t *testing.T) {
	db := memDB(t)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, id := range []string{"b", "a", "c"} {
		if err := db.Schedules().Create(&Schedule{ID: id, CreatedAt: t0.Add(time.Duration(i) * time.Minute)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Schedules().Delete("a"); err != nil {
		t.Fatal(err)
	}
	if err := db.Schedules().Delete("a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete twice: %v", err)
	}
	all, err := db.Schedules().List()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all[0].ID != "b" || all[1].ID != "c" {
		t.Fatalf("list: %+v", all)
	}
}
