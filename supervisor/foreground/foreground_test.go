package foreground

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"simpletuner/plugins"
	"simpletuner/plugins/kit"
	"simpletuner/plugins/kit/kittest"
)

const asTrainer = "FOREGROUND_TEST_RUN_TRAINER"

func TestMain(m *testing.M) {
	if os.Getenv(asTrainer) == "1" {
		kit.Main(kittest.FromEnv())
		return
	}
	os.Exit(m.Run())
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func runWith(t *testing.T, presses int) (Result, string) {
	t.Helper()
	home := t.TempDir()
	cfg := Config{Trainer: os.Args[0], JobDir: filepath.Join(home, "job"), RunDir: filepath.Join(home, "run"),
		Env: []string{asTrainer + "=1", kittest.EnvSteps + "=100000", kittest.EnvStepMS + "=5"}}
	sig := make(chan os.Signal, 3)
	out := &syncBuf{}
	go func() {
		for !strings.Contains(out.String(), "step ") {
			time.Sleep(10 * time.Millisecond)
		}
		for range presses {
			sig <- os.Interrupt
			time.Sleep(5 * time.Millisecond)
		}
	}()
	res, err := Run(context.Background(), cfg, "fg1", json.RawMessage(`{"--model_family":"dit"}`), out, sig)
	if err != nil {
		t.Fatal(err)
	}
	return res, out.String()
}

func TestCtrlCStopsWithCheckpoint(t *testing.T) {
	res, out := runWith(t, 1)
	if res.State != plugins.StateStopped || res.ExitCode() != 0 {
		t.Fatalf("result %+v", res)
	}
	if !strings.Contains(out, "saving a checkpoint") || !strings.Contains(out, "[training.checkpoint]") {
		t.Fatalf("output:\n%s", out)
	}
}

func TestSecondCtrlCCancels(t *testing.T) {
	res, _ := runWith(t, 2)
	if res.State != plugins.StateCancelled && res.State != plugins.StateStopped {
		t.Fatalf("result %+v", res)
	}
	if res.State == plugins.StateCancelled && res.ExitCode() != 130 {
		t.Fatalf("exit code %d", res.ExitCode())
	}
}

func TestProgressLine(t *testing.T) {
	cases := []struct {
		pr      plugins.Progress
		elapsed time.Duration
		steps   int64
		want    []string
	}{
		{plugins.Progress{Step: 0, TotalSteps: 100}, 0, 0, []string{"step 0/100", "[....................]", "  0%", "- it/s", "ETA -"}},
		{plugins.Progress{Step: 50, TotalSteps: 100, Loss: 0.5}, 10 * time.Second, 50, []string{"step 50/100", "[##########..........]", " 50%", "5.00 it/s", "ETA 10s", "loss 0.5000"}},
		{plugins.Progress{Step: 100, TotalSteps: 100}, 20 * time.Second, 100, []string{"100%", "[####################]", "ETA -"}},
	}
	for _, c := range cases {
		got := progressLine(c.pr, c.elapsed, c.steps)
		for _, w := range c.want {
			if !strings.Contains(got, w) {
				t.Errorf("%q lacks %q", got, w)
			}
		}
	}
}
