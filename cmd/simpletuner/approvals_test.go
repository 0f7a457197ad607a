package main

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestApprovalsAsSimpleTunersClientUsesThem replays what SimpleTuner's command-line client
// sends for `jobs submit --for-approval` and `jobs approval pending|list|approve|reject|
// rules` against the real daemon, asserting the fields it reads: a job submitted for
// approval waits (not started on a free machine, still waiting after a restart), runs
// once approved, and ends with the reason when rejected.
func TestApprovalsAsSimpleTunersClientUsesThem(t *testing.T) {
	home := t.TempDir()
	writeEnv(t, home, "demo")
	args := fakeTrainerArgs(5, 5)
	d := start(t, home, args...)
	c := adminClient(t, d)
	submit := func() string {
		t.Helper()
		code, r := call(t, c, "POST", d.base+"/api/queue/submit", map[string]any{"config_name": "demo", "no_wait": false, "any_gpu": false, "for_approval": true, "target": "auto"}, nil)
		id, _ := r["job_id"].(string)
		if code != 200 || r["success"] != true || id == "" || r["status"] != "blocked" || r["requires_approval"] != true {
			t.Fatalf("submit for approval: %d %v, want success, status blocked, requires_approval", code, r)
		}
		return id
	}
	pendingByJob := func(id string) map[string]any {
		t.Helper()
		code, r := call(t, c, "GET", d.base+"/api/approvals?status=pending&limit=50", nil, nil)
		list, _ := r["approvals"].([]any)
		if code != 200 {
			t.Fatalf("approval pending: %d %v", code, r)
		}
		for _, a := range list {
			if a := a.(map[string]any); a["job_id"] == id {
				return a
			}
		}
		t.Fatalf("job %s not among the pending approvals %v", id, list)
		return nil
	}

	held := submit()
	time.Sleep(700 * time.Millisecond)
	if j := jobState(t, c, d.base, held); j["status"] != "pending_approval" || j["started_at"] != nil {
		t.Fatalf("job held for approval: %v", j)
	}
	if err, _ := d.stop(); err != nil {
		t.Fatalf("daemon stop: %v", err)
	}
	d = start(t, home, args...)
	d.waitReady(c)
	a := pendingByJob(held)
	// The fields the client prints: id, job_id, status, config_name, reason, requested_at.
	if a["config_name"] != "demo" || a["status"] != "pending" || a["reason"] == "" || a["requested_at"] == "" || a["id"] == nil {
		t.Fatalf("pending approval after a restart: %v", a)
	}
	if j := jobState(t, c, d.base, held); j["status"] != "pending_approval" {
		t.Fatalf("after a restart the held job is %v", j["status"])
	}
	code, rules := call(t, c, "GET", d.base+"/api/approvals/rules", nil, nil)
	if list, ok := rules["rules"].([]any); code != 200 || !ok || len(list) != 0 {
		t.Fatalf("approval rules: %d %v", code, rules)
	}

	code, r := call(t, c, "POST", d.base+fmt.Sprintf("/api/approvals/%v/approve", a["id"]), nil, nil)
	if code != 200 || r["success"] != true || r["job_id"] != held {
		t.Fatalf("approve: %d %v", code, r)
	}
	waitJob(t, c, d.base, held, 30*time.Second, "completed")

	rejected := submit()
	b := pendingByJob(rejected)
	// Without --reason the client sends no body; it prints a string detail.
	code, r = call(t, c, "POST", d.base+fmt.Sprintf("/api/approvals/%v/reject", b["id"]), nil, nil)
	if detail, _ := r["detail"].(string); code != 400 || !strings.HasPrefix(detail, "Rejection reason is required") {
		t.Fatalf("reject without a reason: %d %v, want 400 with a string detail", code, r)
	}
	code, r = call(t, c, "POST", d.base+fmt.Sprintf("/api/approvals/%v/reject", b["id"]), map[string]any{"reason": "not this week"}, nil)
	if code != 200 || r["success"] != true {
		t.Fatalf("reject: %d %v", code, r)
	}
	if j := jobState(t, c, d.base, rejected); j["status"] != "cancelled" || j["started_at"] != nil || j["error"] != "rejected by admin: not this week" {
		t.Fatalf("rejected job: %v", j)
	}
	code, r = call(t, c, "GET", d.base+"/api/approvals?limit=50", nil, nil)
	list, _ := r["approvals"].([]any)
	if code != 200 || len(list) != 2 || list[0].(map[string]any)["status"] != "rejected" || list[1].(map[string]any)["status"] != "approved" || r["pending_count"] != float64(0) {
		t.Fatalf("approval list: %d %v", code, r)
	}
}
