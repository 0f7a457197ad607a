package foreground

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"simpletuner/plugins"
)

func TestPlainDue(t *testing.T) {
	cases := []struct {
		name                  string
		step, total, lastStep int64
		since                 time.Duration
		want                  bool
	}{
		{"first progress seen", 1, 1000, -1, 0, true},
		{"first progress after a resume", 500, 1000, -1, 0, true},
		{"same tenth, soon after", 99, 1000, 1, time.Second, false},
		{"enters the second tenth", 100, 1000, 99, 0, true},
		{"skips into a later tenth", 350, 1000, 100, 0, true},
		{"still the fourth tenth", 399, 1000, 350, 59 * time.Second, false},
		{"a minute without a line", 399, 1000, 350, time.Minute, true},
		{"last step", 1000, 1000, 900, 0, true},
		{"last step again", 1000, 1000, 1000, 0, false},
		{"small run: every step is a new tenth", 2, 7, 1, 0, true},
		{"a step back (replay) is no new tenth", 50, 1000, 150, 0, false},
		{"no total: only by time", 5000, 0, 10, 30 * time.Second, false},
		{"no total: a minute later", 5000, 0, 10, 61 * time.Second, true},
	}
	for _, c := range cases {
		if got := plainDue(c.step, c.total, c.lastStep, c.since); got != c.want {
			t.Errorf("%s: plainDue(%d, %d, %d, %v) = %v, want %v", c.name, c.step, c.total, c.lastStep, c.since, got, c.want)
		}
	}
}

func TestEventText(t *testing.T) {
	cases := []struct{ title, message, want string }{
		{"Loading base model", "Loading base model", "Loading base model"},
		{"Saving checkpoint", "Saving checkpoint\nto /out/checkpoint-3", "Saving checkpoint\nto /out/checkpoint-3"},
		{"Checkpoint saved", "", "Checkpoint saved"},
		{"", "only a message", "only a message"},
		{"checkpoint_failed", "Checkpoint at step 3 failed: no space", "checkpoint_failed: Checkpoint at step 3 failed: no space"},
		{"Job failed", "simulated failure", "Job failed: simulated failure"},
		{" padded ", " padded ", "padded"},
		{"", "", ""},
	}
	for _, c := range cases {
		if got := EventText(c.title, c.message); got != c.want {
			t.Errorf("EventText(%q, %q) = %q, want %q", c.title, c.message, got, c.want)
		}
	}
}

// trainerEvents is what the CPU trainer emits for a run of total steps, one step per
// stepEvery: lifecycle events whose title repeats the message, a per-step training.status
// beside each training.progress, a checkpoint at checkpointAt, and the end.
func trainerEvents(t *testing.T, total int, stepEvery time.Duration, checkpointAt int) []plugins.Event {
	t.Helper()
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	var evs []plugins.Event
	add := func(at time.Time, typ, title, message string, data any) {
		b, err := json.Marshal(data)
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, plugins.Event{Seq: uint64(len(evs) + 1), Type: typ, Severity: "info", Time: at, Title: title, Message: message, Data: b})
	}
	add(t0, "job.status", "Trainer started", "", map[string]any{"status": "starting"})
	add(t0, "notification", "Training job has started, configuration has begun.", "Training job has started, configuration has begun.", nil)
	add(t0, "lifecycle.stage", "Loading base model", "Loading base model", map[string]any{"stage": map[string]any{"key": "init_load_base_model", "status": "running"}})
	add(t0, "log", "", "a trainer.log line", nil)
	add(t0, "training.status", "***** Running training *****", "***** Running training *****\n-  Total optimization steps = "+fmt.Sprint(total), map[string]any{"status": "running", "total_num_steps": total})
	for s := 1; s <= total; s++ {
		at := t0.Add(time.Duration(s-1) * stepEvery)
		add(at, "training.status", "Running", "", map[string]any{"status": "running", "global_step": s, "progress": map[string]any{"current": s, "total": total}})
		add(at, "training.progress", "", "", plugins.Progress{Step: int64(s), TotalSteps: int64(total), Epoch: 1, TotalEpochs: 1, Loss: 1 / float64(s), LearningRate: 1e-4})
		if s == checkpointAt {
			add(at, "training.checkpoint", "Saved checkpoint-2", "Saved checkpoint-2", map[string]any{"step": s})
		}
	}
	add(t0.Add(time.Duration(total)*stepEvery), "job.status", "Job completed", "", map[string]any{"status": "completed"})
	return evs
}

func render(t *testing.T, width int, evs []plugins.Event) (string, Result) {
	t.Helper()
	var out bytes.Buffer
	var res Result
	r := newRenderer(&out, width)
	for _, e := range evs {
		r.event(e, &res)
	}
	r.finish()
	return out.String(), res
}

func TestRendererTerminalRedrawsOneLine(t *testing.T) {
	out, res := render(t, 80, trainerEvents(t, 3, time.Second, 2))
	const el = "\x1b[K"
	step1 := "step 1/3 [######..............]  33% loss 1.0000 lr 0.0001   - it/s ETA -"
	step2 := "step 2/3 [#############.......]  67% loss 0.5000 lr 0.0001 1.00 it/s ETA 1s"
	step3 := "step 3/3 [####################] 100% loss 0.3333 lr 0.0001 1.00 it/s ETA -"
	want := "Trainer started\n" +
		"[notification] Training job has started, configuration has begun.\n" +
		"[lifecycle.stage] Loading base model\n" +
		"[training.status] ***** Running training *****\n-  Total optimization steps = 3\n" +
		"\r" + step1 + el +
		"\r" + step2 + el +
		// A message takes the progress line's place; the line is drawn again below it.
		"\r" + el + "[training.checkpoint] Saved checkpoint-2\n" + step2 + el +
		"\r" + step3 + el +
		"\n" // the job's end is the command's to say, with the job's id
	if out != want {
		t.Fatalf("terminal output\n got: %q\nwant: %q", out, want)
	}
	if res.State != plugins.StateCompleted {
		t.Fatalf("state %q", res.State)
	}

	// A narrow terminal gets the line cut one column short, so it never wraps.
	out, _ = render(t, 30, trainerEvents(t, 3, time.Second, 0))
	if !strings.Contains(out, "\r"+step1[:29]+el) || strings.Contains(out, step1[:30]) {
		t.Fatalf("not cut to 29 columns: %q", out)
	}
}

func TestRendererPlainPrintsFewLines(t *testing.T) {
	out, res := render(t, 0, trainerEvents(t, 1000, 10*time.Millisecond, 2))
	if strings.ContainsAny(out, "\r\x1b") {
		t.Fatalf("terminal controls in plain output: %q", out)
	}
	var steps []string
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if strings.HasPrefix(line, "step ") {
			steps = append(steps, strings.Fields(line)[1])
		}
	}
	// The first step, then each tenth: ten seconds of steps is no reason for more.
	want := []string{"1/1000", "100/1000", "200/1000", "300/1000", "400/1000", "500/1000", "600/1000", "700/1000", "800/1000", "900/1000", "1000/1000"}
	if fmt.Sprint(steps) != fmt.Sprint(want) {
		t.Fatalf("progress lines at steps %v, want %v\n%s", steps, want, out)
	}
	for _, once := range []string{"Loading base model\n", "Training job has started, configuration has begun.\n", "Saved checkpoint-2\n"} {
		if n := strings.Count(out, once); n != 1 {
			t.Errorf("%q printed %d times:\n%s", once, n, out)
		}
	}
	if strings.Contains(out, "Running\n") || strings.Contains(out, "a trainer.log line") || strings.Contains(out, "Job completed") {
		t.Errorf("per-step status, log lines or the job's end printed:\n%s", out)
	}
	if !strings.Contains(out, "step 100/1000 [##..................]  10% loss 0.0100 lr 0.0001 100.00 it/s ETA 9s\n") {
		t.Errorf("no plain line with rate and ETA:\n%s", out)
	}
	if res.State != plugins.StateCompleted {
		t.Fatalf("state %q", res.State)
	}

	// A slow run prints a line a minute between its tenths, and a run that stops between
	// two printed lines still ends with the step it reached.
	evs := trainerEvents(t, 1000, 7*time.Second, 0)
	var cut []plugins.Event
	for _, e := range evs {
		var pr plugins.Progress
		if e.Type == "training.progress" && json.Unmarshal(e.Data, &pr) == nil && pr.Step > 25 {
			break
		}
		cut = append(cut, e)
	}
	out, _ = render(t, 0, cut)
	steps = nil
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "step ") {
			steps = append(steps, strings.Fields(line)[1])
		}
	}
	if want := []string{"1/1000", "10/1000", "19/1000", "25/1000"}; fmt.Sprint(steps) != fmt.Sprint(want) {
		t.Fatalf("slow run: progress lines at steps %v, want %v\n%s", steps, want, out)
	}
}
