// Package slurmtest brings up a real one-node Slurm cluster (scripts/slurm-ci.sh) for
// tests of the Slurm executor and of the daemon with target=slurm.
package slurmtest

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
)

// Up brings up a one-node Slurm cluster with two fake GPUs under a temporary
// directory (scripts/slurm-ci.sh), installing Slurm first where it is missing and this
// process may (root, apt-get), and returns the environment its commands need. It skips
// the test only where Slurm is absent and cannot be installed, and never under CI=true.
func Up(t testing.TB) (dir string, env []string) {
	t.Helper()
	skip := func(msg string) {
		t.Helper()
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true: a real Slurm is required here: %s", msg)
		}
		t.Skip(msg)
	}
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "..", "..", "scripts", "slurm-ci.sh")
	if _, err := exec.LookPath("slurmctld"); err != nil {
		if os.Geteuid() != 0 {
			skip("Slurm is not installed and this test is not root, so it cannot install it (run scripts/slurm-ci.sh install as root)")
		}
		if _, err := exec.LookPath("apt-get"); err != nil {
			skip("Slurm is not installed and there is no apt-get to install it with (Debian 12's slurmctld, slurmd, slurm-client, munge)")
		}
		if out, err := exec.Command(script, "install").CombinedOutput(); err != nil {
			t.Fatalf("slurm-ci.sh install: %v\n%s", err, out)
		}
	}
	if os.Geteuid() != 0 {
		skip("bringing up Slurm needs root (mknod for the fake GPUs, munged, slurmd)")
	}
	// Slurm's ports allow one cluster per machine, and `go test ./...` runs packages in
	// parallel processes: a lock file held until the cluster is down serialises them.
	lock, err := os.OpenFile(filepath.Join(os.TempDir(), "simpletuner-slurm-ci.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		lock.Close()
		t.Fatalf("lock %s: %v", lock.Name(), err)
	}
	t.Cleanup(func() { lock.Close() }) // runs after the cluster's down below
	dir = t.TempDir()
	out, err := exec.Command(script, "up", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("slurm-ci.sh up: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command(script, "down", dir).CombinedOutput(); err != nil {
			t.Errorf("slurm-ci.sh down: %v\n%s", err, out)
		}
	})
	b, err := os.ReadFile(filepath.Join(dir, "env"))
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		if kv, ok := strings.CutPrefix(sc.Text(), "export "); ok {
			env = append(env, kv)
		}
	}
	if len(env) == 0 {
		t.Fatalf("%s/env exports nothing: %q", dir, b)
	}
	return dir, env
}
