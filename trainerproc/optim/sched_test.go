package optim

import (
	"errors"
	"math"
	"testing"
)

func TestScheduleTable(t *testing.T) {
	for _, tc := range []struct {
		name   string
		warmup int
		total  int
		step   int
		want   float64 // multiplier
	}{
		{"constant", 10, 100, 0, 1},
		{"constant", 10, 100, 55, 1},
		{"constant_with_warmup", 10, 100, 0, 0},
		{"constant_with_warmup", 10, 100, 5, 0.5},
		{"constant_with_warmup", 10, 100, 10, 1},
		{"constant_with_warmup", 10, 100, 99, 1},
		{"linear", 10, 110, 5, 0.5},
		{"linear", 10, 110, 10, 1},
		{"linear", 10, 110, 60, 0.5},
		{"linear", 10, 110, 110, 0},
		{"linear", 10, 110, 200, 0},
		{"cosine", 0, 100, 0, 1},
		{"cosine", 0, 100, 50, 0.5},
		{"cosine", 0, 100, 100, 0},
		{"cosine", 20, 120, 10, 0.5},
		{"cosine", 20, 120, 70, 0.5},
		{"cosine_with_restarts", 0, 100, 50, 0.5},
		{"cosine_with_restarts", 0, 100, 100, 0},
		{"polynomial", 0, 100, 0, 1},
		{"polynomial", 0, 100, 50, (0.5*(1-1e-7) + 1e-7)},
		{"polynomial", 0, 100, 150, 1e-7},
		{"polynomial", 10, 100, 5, 0.5},
		{"sine", 10, 100, 0, 0.5 + 0.5e-7},
		{"sine", 10, 100, 5, 1},
		{"sine", 10, 100, 15, 1e-7},
		{"sine", 10, 100, 20, 0.5 + 0.5e-7},
	} {
		s, err := NewSchedule(tc.name, 1, tc.warmup, tc.total)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.Multiplier(tc.step); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("%s warmup=%d total=%d step=%d: %.10g, want %.10g", tc.name, tc.warmup, tc.total, tc.step, got, tc.want)
		}
	}
}

func TestScheduleRestartsCycles(t *testing.T) {
	s, _ := NewSchedule("cosine_with_restarts", 2, 0, 100)
	s.NumCycles = 2
	// Restart at the half: step 50 is back at the top, 25 and 75 at half.
	for step, want := range map[int]float64{0: 2, 25: 1, 50: 2, 75: 1} {
		if got := s.LR(step); math.Abs(got-want) > 1e-9 {
			t.Errorf("step %d: %v want %v", step, got, want)
		}
	}
}

func TestScheduleUnsupported(t *testing.T) {
	if _, err := NewSchedule("warmup_stable_decay", 1, 0, 1); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("got %v", err)
	}
	if _, err := NewSchedule("linear", 1, -1, 1); !errors.Is(err, ErrConfig) {
		t.Fatalf("got %v", err)
	}
}
