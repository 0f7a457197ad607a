package foreground

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"simpletuner/plugins"
)

// plainInterval is the longest a plain (not a terminal) output goes without a progress
// line while steps keep coming: a slow run still shows it is alive, a ten-hour run writes
// about six hundred lines rather than one per step.
const plainInterval = time.Minute

// plainDue decides whether a progress event becomes a line when the output is not a
// terminal (a pipe, a file, a CI log), where a redrawn line would be one line per step:
// the first progress seen (lastStep < 0), the last step, each step that enters a new
// tenth of the run, and otherwise one line per plainInterval. A run of any length prints
// about a dozen lines plus one a minute. sinceLast is the time between the events, so the
// decision does not depend on when the events are read.
func plainDue(step, total, lastStep int64, sinceLast time.Duration) bool {
	switch {
	case lastStep < 0:
		return true
	case total > 0 && step >= total:
		return step != lastStep
	case total > 0 && step > lastStep && step*10/total > lastStep*10/total:
		return true
	}
	return sinceLast >= plainInterval
}

// EventText is what a person reads of an event's title and message, each said once.
// Trainers title an event with its message's first line or with the same text ("Loading
// base model" twice), so the message alone is printed when it starts with the title; a
// title that adds something leads ("Checkpoint failed: disk full").
func EventText(title, message string) string {
	title, message = strings.TrimSpace(title), strings.TrimSpace(message)
	switch {
	case message == "":
		return title
	case title == "" || strings.HasPrefix(message, title):
		return message
	}
	return title + ": " + message
}

// renderer turns a job's events into what a person watching `simpletuner train` reads.
// On a terminal (width > 0) progress redraws one line in place ("\r", the line, erase to
// the end of the line) and every other message is printed once above it; elsewhere
// progress becomes plain lines as often as plainDue allows. Events arrive on the event
// relay's goroutine while Ctrl-C messages come from Run's: mu guards every field and
// every write to out.
type renderer struct {
	mu    sync.Mutex
	out   io.Writer
	width int // terminal columns; 0: not a terminal

	first     time.Time // time and step of the first progress event: the it/s base
	firstStep int64

	bar string // terminal: the progress line on screen, "" when none

	lastStep  int64     // plain: step of the last progress line printed, -1 before any
	lastPrint time.Time // plain: time of that progress event
	pending   string    // plain: the newest progress line not printed, for finish
}

func newRenderer(out io.Writer, width int) *renderer {
	return &renderer{out: out, width: width, lastStep: -1}
}

// event renders one event and records a terminal job state in res.
func (r *renderer) event(e plugins.Event, res *Result) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch e.Type {
	case plugins.EventTrainingProgress:
		var pr plugins.Progress
		if json.Unmarshal(e.Data, &pr) != nil {
			return
		}
		r.progress(e.Time, pr)
	case plugins.EventTrainingStatus:
		var st struct {
			Status   string          `json:"status"`
			Progress json.RawMessage `json:"progress"`
		}
		json.Unmarshal(e.Data, &st)
		// The per-step status carries the step's progress, which training.progress
		// draws: printed, it would scroll one line per step.
		if st.Status == "running" && len(st.Progress) > 0 {
			return
		}
		r.message("[training.status] " + EventText(e.Title, e.Message))
	case plugins.EventJobStatus:
		var st struct {
			Status string `json:"status"`
			Error  string `json:"error"`
		}
		json.Unmarshal(e.Data, &st)
		// The end is the caller's to print, with the job's id (Result): said here too,
		// "Job completed" would be followed by "Job train-… completed".
		if plugins.Terminal(st.Status) {
			res.State, res.Error = st.Status, st.Error
			return
		}
		r.message(EventText(e.Title, e.Message))
	case "log", "debug":
	default:
		text := EventText(e.Title, e.Message)
		if text == "" {
			text = string(e.Data)
		}
		r.message(fmt.Sprintf("[%s] %s", e.Type, text))
	}
}

// progress draws the step line: redrawn in place on a terminal, else a plain line when due.
func (r *renderer) progress(at time.Time, pr plugins.Progress) {
	if r.first.IsZero() {
		r.first, r.firstStep = at, pr.Step
	}
	line := strings.TrimRight(progressLine(pr, at.Sub(r.first), pr.Step-r.firstStep), " ")
	if r.width > 0 {
		// One column short of the width: a line that fills the last column wraps on some
		// terminals, and "\r" then returns to the wrapped half.
		if len(line) >= r.width {
			line = line[:r.width-1]
		}
		r.bar = line
		fmt.Fprint(r.out, "\r"+line+eraseLine)
		return
	}
	if !plainDue(pr.Step, pr.TotalSteps, r.lastStep, at.Sub(r.lastPrint)) {
		r.pending = line
		return
	}
	r.lastStep, r.lastPrint, r.pending = pr.Step, at, ""
	fmt.Fprintln(r.out, line)
}

// eraseLine is the terminal's "erase to the end of the line" (ANSI EL).
const eraseLine = "\x1b[K"

// message prints text once. On a terminal it takes the progress line's place and the
// progress line is drawn again below it.
func (r *renderer) message(text string) {
	text = strings.TrimSpace(text)
	if r.bar == "" {
		fmt.Fprintln(r.out, text)
		return
	}
	fmt.Fprint(r.out, "\r"+eraseLine+text+"\n"+r.bar+eraseLine)
}

// finish ends the progress display before the command prints after it: the terminal's
// line is left on screen and the cursor moved below it; plain output gets the newest
// progress line if it was skipped, so the log ends at the step the job reached.
func (r *renderer) finish() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.bar != "" {
		fmt.Fprintln(r.out)
		r.bar = ""
	}
	if r.pending != "" {
		fmt.Fprintln(r.out, r.pending)
		r.pending = ""
	}
}

// say prints a message of the command itself (Ctrl-C notices) the way event messages are.
func (r *renderer) say(text string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.message(text)
}
