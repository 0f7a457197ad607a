package optim

import (
	"fmt"
	"math"
	"strings"
)

// Schedulers returns the supported lr_scheduler names.
func Schedulers() []string { return append([]string(nil), schedulers...) }

var schedulers = []string{"constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial", "sine"}

// Schedule is a learning-rate schedule: LR(step) is the rate for the update made after step
// optimizer steps (step 0 is the first update), as diffusers' LambdaLR schedules count.
type Schedule struct {
	// Name is one of Schedulers().
	Name string
	// BaseLR is learning_rate.
	BaseLR float64
	// Warmup is lr_warmup_steps; Total is max_train_steps.
	Warmup, Total int
	// NumCycles is lr_num_cycles (cosine: 0.5 is a half wave to zero; cosine_with_restarts:
	// the number of hard restarts). 0 means the scheduler's default.
	NumCycles float64
	// Power is lr_power for polynomial (0 means 1).
	Power float64
	// LREnd is lr_end: polynomial's final rate and sine's floor.
	LREnd float64
}

// NewSchedule validates a schedule. Unknown names wrap ErrUnsupported and list the
// supported ones.
func NewSchedule(name string, baseLR float64, warmup, total int) (Schedule, error) {
	s := Schedule{Name: strings.ToLower(name), BaseLR: baseLR, Warmup: warmup, Total: total, LREnd: 1e-7}
	ok := false
	for _, n := range schedulers {
		ok = ok || n == s.Name
	}
	if !ok {
		return s, fmt.Errorf("%w: lr_scheduler %q (supported: %s)", ErrUnsupported, name, strings.Join(schedulers, ", "))
	}
	if warmup < 0 || total < 0 || baseLR < 0 {
		return s, fmt.Errorf("%w: negative learning rate or step counts", ErrConfig)
	}
	return s, nil
}

// LR returns the learning rate for the update after step optimizer steps.
func (s Schedule) LR(step int) float64 {
	return s.BaseLR * s.Multiplier(step)
}

// Multiplier is the schedule's factor on BaseLR at step (diffusers' lr_lambda).
func (s Schedule) Multiplier(step int) float64 {
	w, total := float64(s.Warmup), float64(s.Total)
	x := float64(step)
	warm := func() float64 { return x / math.Max(1, w) }
	progress := func() float64 { return (x - w) / math.Max(1, total-w) }
	switch s.Name {
	case "constant":
		return 1
	case "constant_with_warmup":
		if step < s.Warmup {
			return warm()
		}
		return 1
	case "linear":
		if step < s.Warmup {
			return warm()
		}
		return math.Max(0, (total-x)/math.Max(1, total-w))
	case "cosine":
		if step < s.Warmup {
			return warm()
		}
		cycles := s.NumCycles
		if cycles == 0 {
			cycles = 0.5
		}
		return math.Max(0, 0.5*(1+math.Cos(math.Pi*cycles*2*progress())))
	case "cosine_with_restarts":
		if step < s.Warmup {
			return warm()
		}
		p := progress()
		if p >= 1 {
			return 0
		}
		cycles := s.NumCycles
		if cycles == 0 {
			cycles = 1
		}
		return math.Max(0, 0.5*(1+math.Cos(math.Pi*math.Mod(cycles*p, 1))))
	case "polynomial":
		if step < s.Warmup {
			return warm()
		}
		if s.BaseLR <= 0 {
			return 0
		}
		power := s.Power
		if power == 0 {
			power = 1
		}
		if step > s.Total {
			return s.LREnd / s.BaseLR
		}
		remaining := 1 - (x-w)/math.Max(1, total-w)
		return ((s.BaseLR-s.LREnd)*math.Pow(remaining, power) + s.LREnd) / s.BaseLR
	case "sine":
		// SimpleTuner's Sine: a continuous wave between lr_end and the base rate whose
		// half-period is lr_warmup_steps (its T_0).
		if s.BaseLR <= 0 {
			return 0
		}
		period := math.Max(1, w)
		lr := s.LREnd + (s.BaseLR-s.LREnd)*0.5*(1+math.Sin(math.Pi*x/period))
		return lr / s.BaseLR
	}
	return 1
}
