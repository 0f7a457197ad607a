package schedule

import (
	"strings"
	"testing"
	"time"

	_ "time/tzdata" // CRON_TZ tests must not depend on the machine's zoneinfo
)

func utc(y int, mo time.Month, d, h, mi int) time.Time {
	return time.Date(y, mo, d, h, mi, 0, 0, time.UTC)
}

// TestSpecNext: the next three runs of each kind of spec, from a fixed instant, in UTC.
func TestSpecNext(t *testing.T) {
	from := time.Date(2026, 3, 28, 12, 0, 0, 5, time.UTC)
	for _, c := range []struct {
		name, spec string
		from       time.Time
		want       [3]time.Time
	}{
		{"five fields", "0 22 * * *", from, [3]time.Time{utc(2026, 3, 28, 22, 0), utc(2026, 3, 29, 22, 0), utc(2026, 3, 30, 22, 0)}},
		{"weekdays", "15 9 * * 1-5", from, [3]time.Time{utc(2026, 3, 30, 9, 15), utc(2026, 3, 31, 9, 15), utc(2026, 4, 1, 9, 15)}},
		{"@daily", "@daily", from, [3]time.Time{utc(2026, 3, 29, 0, 0), utc(2026, 3, 30, 0, 0), utc(2026, 3, 31, 0, 0)}},
		{"@hourly", "@hourly", from, [3]time.Time{utc(2026, 3, 28, 13, 0), utc(2026, 3, 28, 14, 0), utc(2026, 3, 28, 15, 0)}},
		{"@every 6h", "@every 6h", from, [3]time.Time{utc(2026, 3, 28, 18, 0), utc(2026, 3, 29, 0, 0), utc(2026, 3, 29, 6, 0)}},
		// Berlin is UTC+1 before 29 March 2026 and UTC+2 after: 22:00 local moves an hour in UTC.
		{"CRON_TZ", "CRON_TZ=Europe/Berlin 0 22 * * *", from, [3]time.Time{utc(2026, 3, 28, 21, 0), utc(2026, 3, 29, 20, 0), utc(2026, 3, 30, 20, 0)}},
		// Clocks go forward at 02:00 on 29 March: 02:30 does not exist that day and is skipped.
		{"DST forward", "CRON_TZ=Europe/Berlin 30 2 * * *", from, [3]time.Time{utc(2026, 3, 30, 0, 30), utc(2026, 3, 31, 0, 30), utc(2026, 4, 1, 0, 30)}},
		// Clocks go back at 03:00 on 25 October: 02:30 happens twice and runs once.
		{"DST back", "CRON_TZ=Europe/Berlin 30 2 * * *", utc(2026, 10, 24, 12, 0), [3]time.Time{utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30), utc(2026, 10, 27, 1, 30)}},
		// An hourly spec runs in both passes of the repeated hour.
		{"DST back hourly", "CRON_TZ=Europe/Berlin 30 * * * *", utc(2026, 10, 25, 0, 0), [3]time.Time{utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1, 30), utc(2026, 10, 25, 2, 30)}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := ParseSpec(c.spec)
			if err != nil {
				t.Fatal(err)
			}
			at := c.from
			for i, w := range c.want {
				at = s.Next(at)
				if !at.Equal(w) {
					t.Fatalf("run %d: %v, want %v", i+1, at.UTC(), w)
				}
			}
		})
	}
}

// TestSpecErrors: a bad spec's message names what is wrong.
func TestSpecErrors(t *testing.T) {
	for spec, want := range map[string]string{
		"":                               "empty",
		"* * *":                          "has 3 fields, want 5",
		"61 * * * *":                     "field 1 (minute)",
		"0 25 * * *":                     "field 2 (hour)",
		"0 0 32 * *":                     "field 3 (day of month)",
		"0 0 * 13 *":                     "field 4 (month)",
		"0 0 * * 8":                      "field 5 (day of week)",
		"@weekday":                       "descriptor \"@weekday\"",
		"@every x":                       "descriptor \"@every x\"",
		"CRON_TZ=Mars/Olympus 0 0 * * *": "unknown time zone \"Mars/Olympus\"",
		"CRON_TZ=UTC":                    "no schedule after it",
		"0 0 30 2 *":                     "never fires",
	} {
		_, err := ParseSpec(spec)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseSpec(%q) = %v, want an error saying %q", spec, err, want)
		}
	}
}
