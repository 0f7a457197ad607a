//go:build linux && (amd64 || arm64) && !nonvml

package gpu

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/ebitengine/purego"
)

// TestBindNVMLPurego registers every field of the table with the real purego, using
// an unrelated libc symbol as the address (nothing is called): purego panics on Go
// types it cannot translate, so this proves the table's signatures are all bindable.
func TestBindNVMLPurego(t *testing.T) {
	h, err := purego.Dlopen("libc.so.6", purego.RTLD_NOW)
	if err != nil {
		t.Skipf("no libc.so.6: %v", err)
	}
	lib, err := bindNVML(func(string) (uintptr, error) { return purego.Dlsym(h, "abs") }, purego.RegisterFunc)
	if err != nil {
		t.Fatal(err)
	}
	if lib.Init == nil || lib.DeviceGetPciInfo == nil || lib.SystemGetDriverVersion == nil {
		t.Errorf("unbound fields: %+v", lib)
	}
}

// buildFakeNVML compiles testdata/fakenvml.c into a shared library, or skips when no C
// compiler is installed (the daemon itself never needs one).
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

// TestNVMLFakeLibrary drives the purego binding through the C ABI: a C library with
// NVML's symbols, loaded by path.
func TestNVMLFakeLibrary(t *testing.T) {
	path := buildFakeNVML(t)

	t.Run("list", func(t *testing.T) {
		inv, err := OpenNVML(NVMLOptions{Library: path})
		if err != nil {
			t.Fatal(err)
		}
		defer inv.Close()
		if v := inv.Info().DriverVersion; v != "550.127.08" {
			t.Errorf("driver version %q", v)
		}
		gpus, err := inv.List(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		want := []GPU{
			{Index: 0, UUID: "GPU-3c1d7a00-5e2b-4f0c-9a6d-b4e85f2c0000", Name: H100Name, PCIBusID: "00000000:18:00.0",
				MemoryTotal: H100Memory, MemoryUsed: 1 << 30, UtilizationGPU: 42, UtilizationMemory: 17, Healthy: true},
			{Index: 1, UUID: "GPU-3c1d7a11-5e2b-4f0c-9a6d-b4e85f2c0001", Name: H100Name, PCIBusID: "00000000:2A:00.0",
				MemoryTotal: H100Memory, MemoryUsed: 2 << 30, UtilizationGPU: -1, UtilizationMemory: -1, Healthy: true},
		}
		if len(gpus) != len(want) {
			t.Fatalf("got %d GPUs: %+v", len(gpus), gpus)
		}
		for i := range want {
			if gpus[i] != want[i] {
				t.Errorf("GPU %d:\n got %+v\nwant %+v", i, gpus[i], want[i])
			}
		}
		// The fixture UUIDs are the ones the C library reports.
		if gpus[0].UUID != FakeUUID(0) || gpus[1].UUID != FakeUUID(1) {
			t.Errorf("FakeUUID drifted from testdata/fakenvml.c")
		}
	})

	t.Run("lost", func(t *testing.T) {
		t.Setenv("FAKE_NVML_LOST", "1")
		inv, err := OpenNVML(NVMLOptions{Library: path})
		if err != nil {
			t.Fatal(err)
		}
		defer inv.Close()
		gpus, err := inv.List(context.Background())
		if err != nil || len(gpus) != 2 {
			t.Fatalf("List = %+v, %v", gpus, err)
		}
		if gpus[0].Healthy || gpus[0].HealthReason != "nvmlDeviceGetMemoryInfo: GPU is lost" || !gpus[1].Healthy {
			t.Errorf("health: %+v / %+v", gpus[0], gpus[1])
		}
	})

	t.Run("driver not loaded", func(t *testing.T) {
		t.Setenv("FAKE_NVML_INIT_RC", "9")
		_, err := OpenNVML(NVMLOptions{Library: path})
		if !errors.Is(err, ErrDriverNotLoaded) || !errors.Is(err, ErrNoDriver) {
			t.Fatalf("OpenNVML = %v, want ErrDriverNotLoaded", err)
		}
		inv := Open(NVMLOptions{Library: path})
		if info := inv.Info(); info.Backend != BackendCPU || info.Reason != "NVIDIA driver not loaded" {
			t.Errorf("Info = %+v", info)
		}
	})

	t.Run("not an NVML library", func(t *testing.T) {
		_, err := OpenNVML(NVMLOptions{Library: "libc.so.6"})
		if !errors.Is(err, ErrNoDriver) || errors.Is(err, ErrLibraryNotFound) {
			t.Fatalf("OpenNVML(libc) = %v, want a missing-function ErrNoDriver", err)
		}
	})
}
