package main

import (
	"bytes"
	"errors"
	"os/exec"
	"strings"
	"testing"
)

// TestHelp runs the real binary: --help and -h anywhere print the usage on stdout and
// exit 0, before the plugin handshake (which would refuse a person) or run's checks.
func TestHelp(t *testing.T) {
	bin := buildTrainer(t)
	for _, args := range [][]string{{"--help"}, {"-h"}, {"run", "--help"}, {"run", "--config", "x.json", "-h"}} {
		cmd := exec.Command(bin, args...)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil || errb.Len() > 0 {
			t.Errorf("%v: %v, stderr %q", args, err, errb.String())
			continue
		}
		for _, want := range []string{"Usage:", "simpletuner-trainer run --config resolved.json --job-dir DIR", "-job-dir", "Exit status"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("%v: usage lacks %q:\n%s", args, want, out.String())
			}
		}
	}
	// A run without its flags is still a usage error.
	var ee *exec.ExitError
	if out, err := exec.Command(bin, "run").CombinedOutput(); !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "--config and --job-dir are required") {
		t.Errorf("run without flags: %v\n%s", err, out)
	}
}
