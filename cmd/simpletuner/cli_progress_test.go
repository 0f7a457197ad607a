package main

import (
	"regexp"
	"strings"
	"testing"

	"simpletuner/plugins/kit/kittest"
)

// TestTrainOutputOffATerminal runs the real `simpletuner train` with its stdout on a pipe
// and a fake trainer of 1000 quick steps: the progress comes as a few plain lines (no
// carriage returns, not one per step), ends at the last step, and no message is printed
// with its text twice (the fake titles its notification with the message itself, as the
// trainer does its stages: "Loading base model").
func TestTrainOutputOffATerminal(t *testing.T) {
	home := t.TempDir()
	cdir := writeEnv(t, home, "demo")
	args := append([]string{"train", "--env", "demo", "--config-dir", cdir}, fakeTrainerArgs(1000, 0)...)
	args = append(args, "--trainer-env", kittest.EnvMessage+"=Loading base model")
	stdout, stderr, code := runCLI(t, home, "", args...)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if strings.ContainsAny(stdout, "\r\x1b") {
		t.Errorf("terminal controls written to a pipe: %q", stdout)
	}
	steps := regexp.MustCompile(`step \d+/1000`).FindAllString(stdout, -1)
	if len(steps) < 2 || len(steps) > 15 {
		t.Errorf("%d progress renderings for 1000 steps, want a few (2..15):\n%.2000s", len(steps), stdout)
	}
	if len(steps) > 0 && steps[len(steps)-1] != "step 1000/1000" {
		t.Errorf("the last progress line is %q, want step 1000/1000", steps[len(steps)-1])
	}
	if n := strings.Count(stdout, "Loading base model"); n != 1 {
		t.Errorf("\"Loading base model\" printed %d times:\n%.2000s", n, stdout)
	}
	doubled := regexp.MustCompile(`^(?:\[[a-z._]+\] )?(.+?)(?: |: )(.+)$`)
	for _, line := range strings.Split(stdout, "\n") {
		if m := doubled.FindStringSubmatch(line); m != nil && m[1] == m[2] {
			t.Errorf("line says the same thing twice: %q", line)
		}
	}
	if !strings.Contains(stdout, "completed") {
		t.Errorf("no completion line:\n%s", stdout)
	}
}
