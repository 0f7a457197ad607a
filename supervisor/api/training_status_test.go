package api

import (
	"testing"

	"simpletuner/supervisor/jobs"
)

// TestTrainingStatusOf is the table of /api/training/status's words for a job: only a
// failure is an error, with a detail; a cancellation or a stop is reported as itself.
func TestTrainingStatusOf(t *testing.T) {
	for _, tc := range []struct {
		status, message string
		word, detail    string
	}{
		{jobs.StatusStarting, "", "starting", ""},
		{jobs.StatusRunning, "", "running", ""},
		{jobs.StatusCompleted, "", "completed", ""},
		{jobs.StatusStopped, "", "stopped", ""},
		{jobs.StatusCancelled, "", "cancelled", ""},
		{jobs.StatusCancelled, "cancelled before it started", "cancelled", ""},
		{jobs.StatusFailed, "trainer exited with status 1", "error", "error_with_details"},
		{jobs.StatusFailed, "", "error", "crashed_without_details"},
		{jobs.StatusLost, "trainer vanished", "error", "error_with_details"},
		{jobs.StatusLost, "", "error", "crashed_without_details"},
	} {
		word, detail := trainingStatusOf(tc.status, tc.message)
		if word != tc.word || detail != tc.detail {
			t.Errorf("trainingStatusOf(%q, %q) = %q, %q; want %q, %q", tc.status, tc.message, word, detail, tc.word, tc.detail)
		}
	}
}
