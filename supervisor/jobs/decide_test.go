package jobs

import (
	"testing"
	"time"

	"simpletuner/plugins"
)

func TestDecideReconcile(t *testing.T) {
	done := &plugins.ExitRecord{State: plugins.StateCompleted}
	cases := []struct {
		name   string
		status string
		hasPID bool
		proc   procState
		exit   *plugins.ExitRecord
		want   reconcileAction
	}{
		{"queued stays queued", StatusQueued, false, procGone, nil, actKeepQueued},
		{"running and ours", StatusRunning, true, procOurs, nil, actReattach},
		{"running, finished while we were down", StatusRunning, true, procGone, done, actFinishExit},
		{"finished but still lingering: reattach to read the rest", StatusRunning, true, procOurs, done, actReattach},
		{"running, gone without record", StatusRunning, true, procGone, nil, actLost},
		{"pid reused by another process", StatusRunning, true, procOther, nil, actLost},
		{"pid reused but exit record present", StatusRunning, true, procOther, done, actFinishExit},
		{"daemon died mid-launch", StatusStarting, false, procGone, nil, actRequeue},
		{"starting with identity recorded", StatusStarting, true, procOurs, nil, actReattach},
		{"running without pid is lost", StatusRunning, false, procGone, nil, actLost},
		{"terminal is left alone", StatusCompleted, true, procOurs, nil, actKeepQueued},
	}
	for _, c := range cases {
		if got := decideReconcile(c.status, c.hasPID, c.proc, c.exit); got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
	}
}

func TestQueueOrderAndBackfill(t *testing.T) {
	q := []queued{{ID: "c", Priority: 0, Seq: 3}, {ID: "a", Priority: 0, Seq: 1}, {ID: "hi", Priority: 10, Seq: 5}, {ID: "b", Priority: 0, Seq: 2}}
	planOrder(q)
	want := []string{"hi", "a", "b", "c"}
	for i, w := range want {
		if q[i].ID != w {
			t.Fatalf("order %v", q)
		}
	}
	if !backfillAllowed(nil, 3) || !backfillAllowed([]queued{{Bypassed: 2}}, 3) {
		t.Fatal("backfill refused too early")
	}
	if backfillAllowed([]queued{{Bypassed: 0}, {Bypassed: 3}}, 3) {
		t.Fatal("a job passed 3 times can still be passed: it would starve")
	}
}

func TestClassifyProc(t *testing.T) {
	self := pidSelf()
	start, _, err := procIdentity(self)
	if err != nil {
		t.Fatal(err)
	}
	boot := bootID()
	if got := classifyProc(self, start, boot, boot); got != procOurs {
		t.Fatalf("self: %v", got)
	}
	if got := classifyProc(self, start+1, boot, boot); got != procOther {
		t.Fatalf("other start time: %v", got)
	}
	if got := classifyProc(self, start, "another-boot", boot); got != procOther {
		t.Fatalf("other boot: %v", got)
	}
	if got := classifyProc(1<<22-1, 5, boot, boot); got != procGone {
		t.Fatalf("no such pid: %v", got)
	}
	if got := classifyProc(0, 0, boot, boot); got != procGone {
		t.Fatalf("pid 0: %v", got)
	}
}

func TestRetryDelay(t *testing.T) {
	cases := []struct {
		attempts, max int
		retry         bool
		delay         time.Duration
	}{
		{1, 1, false, 0},
		{1, 3, true, 10 * time.Second},
		{2, 3, true, 20 * time.Second},
		{3, 3, false, 0},
		{6, 10, true, 5 * time.Minute}, // 320 s capped at 300 s
		{9, 10, true, 5 * time.Minute},
	}
	for _, c := range cases {
		retry, d := retryDelay(c.attempts, c.max, 10*time.Second, 5*time.Minute)
		if retry != c.retry || d != c.delay {
			t.Errorf("attempts %d of %d: got %v %v, want %v %v", c.attempts, c.max, retry, d, c.retry, c.delay)
		}
	}
}

func TestStalled(t *testing.T) {
	now := time.Unix(1000, 0)
	if stalled(now.Add(-time.Hour), now, 0) {
		t.Error("watchdog off but stalled")
	}
	if stalled(now.Add(-time.Second), now, 2*time.Second) || !stalled(now.Add(-3*time.Second), now, 2*time.Second) {
		t.Error("threshold")
	}
}
