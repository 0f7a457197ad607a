package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// fakeNVMLLibrary compiles supervisor/gpu/testdata/fakenvml.c (two H100s; FAKE_NVML_COUNT
// sets another count) into a shared library for SIMPLETUNER_NVML_LIBRARY, so a daemon or a
// worker started by a test lists fake GPUs through the real C ABI. The daemon's build
// needs a C compiler anyway (go-nvml is cgo; make cgo-deps installs one).
func fakeNVMLLibrary(t *testing.T) string {
	t.Helper()
	cc := os.Getenv("CC")
	if cc == "" {
		cc = "cc"
	}
	if _, err := exec.LookPath(cc); err != nil {
		t.Fatalf("no C compiler (%s) to build the fake libnvidia-ml: install gcc (make cgo-deps)", cc)
	}
	out := filepath.Join(t.TempDir(), "libnvidia-ml.so.1")
	cmd := exec.Command(cc, "-shared", "-fPIC", "-O1", "-Wall", "-Werror", "-o", out, filepath.Join("..", "..", "supervisor", "gpu", "testdata", "fakenvml.c"))
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", cmd, err, b)
	}
	return out
}
