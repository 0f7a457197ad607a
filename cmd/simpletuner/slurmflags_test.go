package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestSlurmFlags: the --slurm-* flags are listed, override the environment, and a
// partition without a worker URL stops the server before it opens anything.
func TestSlurmFlags(t *testing.T) {
	home := t.TempDir()
	env := map[string]string{"SIMPLETUNER_HOME": home, "SIMPLETUNER_SLURM_ENV": "A=1", "SIMPLETUNER_SLURM_WORKER_URL": "http://from-env:1"}
	getenv := func(k string) string { return env[k] }
	var out, errb bytes.Buffer
	if code := run([]string{"server", "--help"}, &out, &errb, getenv); code != 0 {
		t.Fatalf("server --help: %d", code)
	}
	for _, want := range []string{"--slurm-partition", "--slurm-account", "--slurm-sbatch-arg", "--slurm-worker-url", "--slurm-worker-command", "--slurm-poll", "--slurm-env"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("server --help lacks %q", want)
		}
	}
	errb.Reset()
	if code := run([]string{"server", "--slurm-partition", "gpu", "--slurm-worker-url", "", "--port", "0"}, &out, &errb, getenv); code != 1 ||
		!strings.Contains(errb.String(), "--slurm-partition needs --slurm-worker-url") {
		t.Fatalf("partition without URL: exit %d, %q", code, errb.String())
	}
	errb.Reset()
	if code := run([]string{"server", "--slurm-worker-url", "http://h:1", "--slurm-env", "1BAD=x"}, &out, &errb, getenv); code != 1 ||
		!strings.Contains(errb.String(), `--slurm-env "1BAD=x"`) {
		t.Fatalf("bad --slurm-env: exit %d, %q", code, errb.String())
	}
}
