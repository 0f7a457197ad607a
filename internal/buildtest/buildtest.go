// Package buildtest builds a command of this module for a test that must drive the real
// binary (the trainer, whose checks a fake cannot make), once per test, into the test's
// temporary directory.
package buildtest

import (
	"os/exec"
	"path/filepath"
	"testing"
)

// Binary builds the package pkg (an import path such as
// "simpletuner/cmd/simpletuner-trainer") and returns the binary's path. It skips the test
// under -short and where no go tool is found, since both mean the suite was asked not to
// build.
func Binary(t testing.TB, pkg string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds a binary (" + pkg + ")")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not found")
	}
	bin := filepath.Join(t.TempDir(), filepath.Base(pkg))
	if out, err := exec.Command(goBin, "build", "-o", bin, pkg).CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", pkg, err, out)
	}
	return bin
}
