package gpu

import (
	"context"
	"fmt"
	"slices"
	"sync"
)

// Fake is an in-memory Inventory for tests, with fault injection for the G-rows of the
// reliability matrix (a GPU lost mid-job, fewer GPUs after a restart, NVML failing).
//
// It is ours rather than go-nvml's pkg/nvml/mock: that mock sits below the Inventory
// (it implements go-nvml's nvml.Interface, which only the NVML backend sees) and needs
// cgo, while Fake serves the allocation, queue and API tests in every build, the static
// one included. The NVML backend itself is tested against go-nvml's mock
// (nvml_gonvml_test.go) and a C stand-in for libnvidia-ml (testdata/fakenvml.c).
type Fake struct {
	// mu guards every field below.
	mu     sync.Mutex
	gpus   []GPU
	err    error
	info   Info
	closed bool
	lists  int
}

var _ Inventory = (*Fake)(nil)

// NewFake returns an inventory holding copies of gpus. With none it behaves like a
// CPU-only host (backend "cpu").
func NewFake(gpus ...GPU) *Fake {
	f := &Fake{gpus: slices.Clone(gpus), info: Info{Backend: BackendCUDA, DriverVersion: "550.127.08"}}
	if len(gpus) == 0 {
		f.info = Info{Backend: BackendCPU, Reason: "fake inventory without GPUs"}
	}
	return f
}

// List returns a copy of the GPUs sorted by index, or the injected error.
func (f *Fake) List(ctx context.Context) ([]GPU, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lists++
	if f.closed {
		return nil, ErrClosed
	}
	if f.err != nil {
		return nil, f.err
	}
	out := slices.Clone(f.gpus)
	sortGPUs(out)
	return out, nil
}

// Info returns the backend description.
func (f *Fake) Info() Info {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.info
}

// Close makes later Lists fail with ErrClosed.
func (f *Fake) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

// SetGPUs replaces the device list (e.g. fewer GPUs after a restart).
func (f *Fake) SetGPUs(gpus ...GPU) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gpus = slices.Clone(gpus)
}

// SetError makes List fail with err until it is set back to nil.
func (f *Fake) SetError(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

// SetHealthy marks the GPU with uuid healthy or not (reason applies when not); it
// reports whether such a GPU exists.
func (f *Fake) SetHealthy(uuid string, healthy bool, reason string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.gpus {
		if f.gpus[i].UUID == uuid {
			f.gpus[i].Healthy, f.gpus[i].HealthReason = healthy, ""
			if !healthy {
				f.gpus[i].HealthReason = reason
			}
			return true
		}
	}
	return false
}

// Lists returns how many times List was called.
func (f *Fake) Lists() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lists
}

// H100Name, H100Memory are what NVML reports for an H100 SXM5 80GB (nvidia-smi shows
// 81559MiB total).
const (
	H100Name   = "NVIDIA H100 80GB HBM3"
	H100Memory = 81559 << 20
	// H100IdleTemperature is an idle board's die temperature in degrees Celsius.
	H100IdleTemperature = 31
)

// dgxH100BusIDs are the PCI bus ids of the eight GPUs of a DGX H100, in NVML order.
func dgxH100BusIDs() [8]string {
	return [8]string{
		"00000000:18:00.0", "00000000:2A:00.0", "00000000:3A:00.0", "00000000:5D:00.0",
		"00000000:9A:00.0", "00000000:AB:00.0", "00000000:BA:00.0", "00000000:DB:00.0",
	}
}

// FakeH100 returns n idle, healthy H100 80GB fixtures with indexes 0..n-1 and stable,
// realistic UUIDs (FakeUUID). n up to 8 get a DGX H100's bus ids.
func FakeH100(n int) []GPU {
	bus := dgxH100BusIDs()
	gpus := make([]GPU, n)
	for i := range gpus {
		gpus[i] = GPU{
			Index:             i,
			UUID:              FakeUUID(i),
			Name:              H100Name,
			MemoryTotal:       H100Memory,
			MemoryUsed:        4 << 20, // an idle board reports a few MiB in use
			UtilizationGPU:    0,
			UtilizationMemory: 0,
			Temperature:       H100IdleTemperature,
			Healthy:           true,
		}
		if i < len(bus) {
			gpus[i].PCIBusID = bus[i]
		} else {
			gpus[i].PCIBusID = fmt.Sprintf("00000000:%02X:00.0", 0xE0+i-len(bus))
		}
	}
	return gpus
}

// FakeUUID is the UUID FakeH100 gives device i: shaped like NVML's
// "GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", different in its first group so that
// prefix matching is unambiguous.
func FakeUUID(i int) string {
	return fmt.Sprintf("GPU-%08x-5e2b-4f0c-9a6d-%012x", 0x3c1d7a00+i*0x11, 0xb4e85f2c0000+i)
}
