package schedule

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// parser accepts the five standard fields and descriptors (@daily, @every 6h, …); the
// CRON_TZ= (or TZ=) prefix is handled by the parser too.
var parser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// fieldNames name the five fields in messages, in spec order.
var fieldNames = [5]string{"minute", "hour", "day of month", "month", "day of week"}

// errSpec marks a spec that does not parse; the message says which part is wrong.
var errSpec = errors.New("invalid cron spec")

// Spec is a parsed cron spec: when a schedule fires.
type Spec struct {
	sched cron.Schedule
	// once: the spec names its hours (no * in the hour field, or a daily or longer
	// descriptor), so a wall-clock time repeated when clocks go back fires once, not twice,
	// as classic cron does; hourly and finer specs fire in both passes.
	once bool
}

// ParseSpec parses a cron spec: five fields (minute hour day-of-month month
// day-of-week), or a descriptor (@yearly, @monthly, @weekly, @daily, @hourly,
// @every <duration>), optionally after CRON_TZ=<Area/City> and a space. The error names
// the field that is wrong, so a person can fix it.
func ParseSpec(spec string) (Spec, error) {
	s := strings.TrimSpace(spec)
	if s == "" {
		return Spec{}, fmt.Errorf("%w: empty; use five fields (minute hour day-of-month month day-of-week, e.g. \"0 22 * * *\") or a descriptor such as @daily or @every 6h", errSpec)
	}
	body := s
	if strings.HasPrefix(s, "CRON_TZ=") || strings.HasPrefix(s, "TZ=") {
		i := strings.IndexAny(s, " \t")
		if i < 0 {
			return Spec{}, fmt.Errorf("%w: %q names a time zone but no schedule after it (CRON_TZ=Europe/Berlin 0 22 * * *)", errSpec, s)
		}
		zone := s[strings.Index(s, "=")+1 : i]
		if _, err := time.LoadLocation(zone); err != nil || zone == "" {
			return Spec{}, fmt.Errorf("%w: unknown time zone %q in CRON_TZ (use an IANA name such as Europe/Berlin or UTC)", errSpec, zone)
		}
		body = strings.TrimSpace(s[i:])
	}
	sched, err := parser.Parse(s)
	if err != nil {
		return Spec{}, explain(body, err)
	}
	if sched.Next(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)).IsZero() {
		return Spec{}, fmt.Errorf("%w: %q never fires (no such date within five years)", errSpec, body)
	}
	once := false
	if f := strings.Fields(body); len(f) == 5 {
		once = !strings.Contains(f[1], "*")
	} else {
		switch body {
		case "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually":
			once = true
		}
	}
	return Spec{sched: sched, once: once}, nil
}

// explain turns the parser's error into one that names the offending field.
func explain(body string, err error) error {
	if strings.HasPrefix(body, "@") {
		return fmt.Errorf("%w: descriptor %q: %v (use @yearly, @monthly, @weekly, @daily, @hourly or @every <duration> such as @every 6h)", errSpec, body, err)
	}
	fields := strings.Fields(body)
	if len(fields) != 5 {
		return fmt.Errorf("%w: %q has %d fields, want 5: minute hour day-of-month month day-of-week", errSpec, body, len(fields))
	}
	for i, f := range fields {
		probe := []string{"*", "*", "*", "*", "*"}
		probe[i] = f
		if _, perr := parser.Parse(strings.Join(probe, " ")); perr != nil {
			return fmt.Errorf("%w: field %d (%s) %q: %v", errSpec, i+1, fieldNames[i], f, perr)
		}
	}
	return fmt.Errorf("%w: %q: %v", errSpec, body, err)
}

// Next returns the first time the spec fires strictly after t. A spec without CRON_TZ
// reads its fields in t's time zone. When clocks go forward, a time that does not exist
// that day is skipped; when they go back, a spec that names its hours fires at the first
// of the two equal wall-clock times only.
func (s Spec) Next(t time.Time) time.Time {
	n := s.sched.Next(t)
	ss, ok := s.sched.(*cron.SpecSchedule)
	if !ok || !s.once {
		return n
	}
	loc := ss.Location
	if loc == time.Local {
		loc = t.Location()
	}
	for i := 0; i < 4 && !n.IsZero() && repeatedWallTime(n, loc); i++ {
		n = s.sched.Next(n)
	}
	return n
}

// repeatedWallTime reports whether the wall-clock time of t in loc was already shown
// earlier (the second pass through the hour clocks went back over).
func repeatedWallTime(t time.Time, loc *time.Location) bool {
	w := t.In(loc)
	for _, back := range []time.Duration{30 * time.Minute, time.Hour, 2 * time.Hour} {
		p := t.Add(-back).In(loc)
		if p.Year() == w.Year() && p.YearDay() == w.YearDay() && p.Hour() == w.Hour() && p.Minute() == w.Minute() && p.Second() == w.Second() {
			return true
		}
	}
	return false
}
