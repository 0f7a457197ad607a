//go:build cgo && !nonvml

package gpu

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Environment of the child processes TestNVMLFakeLibrary runs: go-nvml's calls bind to
// the first NVML library the process loads, so each scenario gets a fresh process (and a
// fault in the C ABI kills the child, not the test run).
const (
	envFakeNVMLPath     = "SIMPLETUNER_TEST_FAKE_NVML"          // the compiled fake library
	envFakeNVMLScenario = "SIMPLETUNER_TEST_FAKE_NVML_SCENARIO" // which checks the child runs
)

// buildFakeNVML compiles testdata/fakenvml.c into a shared library, or skips when no C
// compiler is installed.
func buildFakeNVML(t *testing.T) string {
	t.Helper()
	cc := os.Getenv("CC")
	if cc == "" {
		cc = "cc"
	}
	if _, err := exec.LookPath(cc); err != nil {
		t.Skipf("no C compiler (%s) to build the fake libnvidia-ml", cc)
	}
	out := filepath.Join(t.TempDir(), "libnvidia-ml.so.1")
	cmd := exec.Command(cc, "-shared", "-fPIC", "-O1", "-Wall", "-Werror", "-o", out, "testdata/fakenvml.c")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", cmd, err, b)
	}
	return out
}

// TestNVMLFakeLibrary drives go-nvml through the C ABI: a C library with NVML's symbols,
// loaded by path, one child process per scenario.
func TestNVMLFakeLibrary(t *testing.T) {
	if path := os.Getenv(envFakeNVMLPath); path != "" {
		fakeLibraryScenario(t, path, os.Getenv(envFakeNVMLScenario))
		return
	}
	path := buildFakeNVML(t)
	for _, sc := range []struct {
		name string
		env  []string
	}{
		{"list", nil},
		{"eight", []string{"FAKE_NVML_COUNT=8"}},
		{"lost", []string{"FAKE_NVML_LOST=1"}},
		{"driver not loaded", []string{"FAKE_NVML_INIT_RC=9"}},
		{"reopen", nil},
	} {
		t.Run(sc.name, func(t *testing.T) {
			cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestNVMLFakeLibrary$", "-test.count=1", "-test.v")
			// The scenario's FAKE_NVML_* settings only, whatever the test run's environment has.
			env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "FAKE_NVML_") })
			cmd.Env = append(env, envFakeNVMLPath+"="+path, envFakeNVMLScenario+"="+sc.name)
			cmd.Env = append(cmd.Env, sc.env...)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("scenario %q: %v\n%s", sc.name, err, out)
			}
		})
	}
}

// fakeLibraryScenario runs in the child process.
func fakeLibraryScenario(t *testing.T, path, scenario string) {
	switch scenario {
	case "list":
		inv := openFake(t, path)
		if v := inv.Info().DriverVersion; v != "550.127.08" {
			t.Errorf("driver version %q", v)
		}
		want := FakeH100(2)
		want[0].MemoryUsed, want[0].UtilizationGPU, want[0].UtilizationMemory = 1<<30, 42, 17
		want[1].MemoryUsed, want[1].UtilizationGPU, want[1].UtilizationMemory = 2<<30, -1, -1 // NOT_SUPPORTED
		want[1].Temperature = -1                                                              // NOT_SUPPORTED
		checkFakeList(t, inv, want)
		closeFake(t, inv)
	case "eight":
		inv := openFake(t, path)
		want := FakeH100(8)
		for i := range want {
			want[i].MemoryUsed, want[i].UtilizationGPU, want[i].UtilizationMemory = uint64(i+1)<<30, 42, 17
			want[i].Temperature = 31 + i
		}
		want[1].UtilizationGPU, want[1].UtilizationMemory, want[1].Temperature = -1, -1, -1
		checkFakeList(t, inv, want)
		closeFake(t, inv)
	case "lost":
		inv := openFake(t, path)
		gpus, err := inv.List(context.Background())
		if err != nil || len(gpus) != 2 {
			t.Fatalf("List = %+v, %v", gpus, err)
		}
		if gpus[0].Healthy || gpus[0].HealthReason != "nvmlDeviceGetMemoryInfo: GPU is lost" || !gpus[1].Healthy {
			t.Errorf("health: %+v / %+v", gpus[0], gpus[1])
		}
		closeFake(t, inv)
	case "driver not loaded":
		_, err := OpenNVML(NVMLOptions{Library: path})
		if !errors.Is(err, ErrDriverNotLoaded) || !errors.Is(err, ErrNoDriver) {
			t.Fatalf("OpenNVML = %v, want ErrDriverNotLoaded", err)
		}
		inv := Open(NVMLOptions{Library: path})
		if info := inv.Info(); info.Backend != BackendCPU || info.Reason != "NVIDIA driver not loaded" {
			t.Errorf("Info = %+v", info)
		}
	case "reopen":
		// Close releases go-nvml's handle on the library; opening again must work.
		for range 3 {
			inv := openFake(t, path)
			if gpus, err := inv.List(context.Background()); err != nil || len(gpus) != 2 {
				t.Fatalf("List = %+v, %v", gpus, err)
			}
			closeFake(t, inv)
		}
	default:
		t.Fatalf("unknown scenario %q", scenario)
	}
}

func openFake(t *testing.T, path string) *NVML {
	t.Helper()
	inv, err := OpenNVML(NVMLOptions{Library: path})
	if err != nil {
		t.Fatal(err)
	}
	return inv
}

func closeFake(t *testing.T, inv *NVML) {
	t.Helper()
	if err := inv.Close(); err != nil {
		t.Error(err)
	}
}

func checkFakeList(t *testing.T, inv *NVML, want []GPU) {
	t.Helper()
	gpus, err := inv.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(gpus) != len(want) {
		t.Fatalf("got %d GPUs: %+v", len(gpus), gpus)
	}
	for i := range want {
		if gpus[i] != want[i] {
			t.Errorf("GPU %d:\n got %+v\nwant %+v", i, gpus[i], want[i])
		}
	}
}
