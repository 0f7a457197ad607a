package procenv

import (
	"os/exec"
	"slices"
	"testing"
	"time"
)

func TestFindMarkedProcess(t *testing.T) {
	cmd := exec.Command("/bin/sleep", "30")
	cmd.Env = []string{"PROCENV_TEST_MARK=abc123", "OTHER=1"}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	deadline := time.Now().Add(20 * time.Second)
	for !slices.Contains(Find("PROCENV_TEST_MARK=abc123"), cmd.Process.Pid) {
		if time.Now().After(deadline) {
			t.Fatal("marked process not found")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if slices.Contains(Find("PROCENV_TEST_MARK=abc1234"), cmd.Process.Pid) {
		t.Fatal("a longer value matched")
	}
	if slices.Contains(Find("MARK=abc123"), cmd.Process.Pid) {
		t.Fatal("matched inside another entry")
	}
}

func TestHasEntry(t *testing.T) {
	env := []byte("A=1\x00NONCE=xy\x00")
	for _, c := range []struct {
		m    string
		want bool
	}{{"NONCE=xy", true}, {"NONCE=x", true}, {"ONCE=xy", false}, {"B=", false}} {
		if hasEntry(env, []byte(c.m)) != c.want {
			t.Errorf("%q", c.m)
		}
	}
}
