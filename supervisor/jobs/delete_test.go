package jobs

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"simpletuner/plugins"
	"simpletuner/plugins/kit/kittest"
	"simpletuner/supervisor/gpu"
)

// TestDeleteOnlyEndedJobs: a running job is refused with ErrNotEnded; once it has ended,
// Delete removes its record and its job directory.
func TestDeleteOnlyEndedJobs(t *testing.T) {
	e := newEnv(t, gpu.NewFake())
	m := e.manager(kittest.EnvSteps+"=100000", kittest.EnvStepMS+"=10")
	j := submit(t, m, 0)
	j = waitStatus(t, m, j.ID, 20*time.Second, StatusRunning)
	if err := m.Delete(j.ID); !errors.Is(err, ErrNotEnded) {
		t.Fatalf("delete a running job: %v, want ErrNotEnded", err)
	}
	if err := m.Command(context.Background(), j.ID, plugins.CommandCancel); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, m, j.ID, 20*time.Second, StatusCancelled)
	deadline := time.Now().Add(10 * time.Second)
	err := m.Delete(j.ID)
	for errors.Is(err, ErrNotEnded) && time.Now().Before(deadline) { // the trainer may still be shutting down
		time.Sleep(50 * time.Millisecond)
		err = m.Delete(j.ID)
	}
	if err != nil {
		t.Fatalf("delete the cancelled job: %v", err)
	}
	if _, err := m.Get(j.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("after delete: %v", err)
	}
	if _, err := os.Stat(j.JobDir); !os.IsNotExist(err) {
		t.Errorf("job directory %s: %v, want removed", j.JobDir, err)
	}
	if err := m.Delete(j.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("delete twice: %v", err)
	}
}
