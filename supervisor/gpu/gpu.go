package gpu

import (
	"context"
	"slices"
	"strings"
)

// GPU is one device as the inventory last saw it. UUID is the identity; Index is the
// NVML index (PCI bus order, the order nvidia-smi prints and CUDA uses under
// CUDA_DEVICE_ORDER=PCI_BUS_ID).
type GPU struct {
	Index    int    `json:"index"`
	UUID     string `json:"uuid"` // "GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"; empty only for an unhealthy device NVML could not identify
	Name     string `json:"name"` // e.g. "NVIDIA H100 80GB HBM3"
	PCIBusID string `json:"pci_bus_id,omitempty"`

	MemoryTotal uint64 `json:"memory_total"` // bytes
	MemoryUsed  uint64 `json:"memory_used"`  // bytes

	// UtilizationGPU and UtilizationMemory are percentages over NVML's last sample
	// period, or -1 when the device does not report them (MIG, some older boards).
	UtilizationGPU    int `json:"utilization_gpu"`
	UtilizationMemory int `json:"utilization_memory"`

	// Temperature is the GPU die's temperature in degrees Celsius, or -1 when the device
	// does not report it (the metrics omit the series then).
	Temperature int `json:"temperature"`

	// Healthy is false when NVML reported the device lost, needing a reset or otherwise
	// unusable; such a device is never allocated (it is quarantined until it is healthy
	// again). HealthReason says why.
	Healthy      bool   `json:"healthy"`
	HealthReason string `json:"health_reason,omitempty"`
}

// Info describes where an inventory's GPUs come from, for the "gpu_inventory" object of
// GET /api/system/status (docs/compatibility.md §11).
type Info struct {
	// Backend is "cuda" when NVML is in use and "cpu" when the host has no usable GPU
	// driver.
	Backend string `json:"backend"`
	// DriverVersion is the NVIDIA driver version, when known.
	DriverVersion string `json:"driver_version,omitempty"`
	// Reason says why Backend is "cpu", e.g. "NVML library not found (...)".
	Reason string `json:"reason,omitempty"`
}

// Inventory lists the host's GPUs. Implementations are safe for concurrent use.
type Inventory interface {
	// List returns the GPUs sorted by Index. A host without GPUs returns an empty list
	// and a nil error; an error means the inventory exists but could not be read now
	// (the caller should keep GPU jobs queued rather than run them on the CPU).
	List(ctx context.Context) ([]GPU, error)
	// Info describes the backend.
	Info() Info
	// Close releases the backend. List fails with ErrClosed afterwards.
	Close() error
}

// Backend names used in Info.
const (
	BackendCUDA = "cuda"
	BackendCPU  = "cpu"
)

// None is the inventory of a host without GPUs. Open returns it when NVML cannot be
// used; Reason (also in Info) says why.
type None struct {
	Reason string // e.g. "NVML library not found (libnvidia-ml.so.1: cannot open shared object file: ...)"
	Err    error  // the error behind Reason, for errors.Is; nil when none was involved
}

var _ Inventory = None{}

// List returns no GPUs.
func (None) List(ctx context.Context) ([]GPU, error) { return nil, ctx.Err() }

// Info reports the CPU backend and the reason.
func (n None) Info() Info { return Info{Backend: BackendCPU, Reason: n.Reason} }

// Close does nothing.
func (None) Close() error { return nil }

// sortGPUs orders GPUs by index, then UUID, so every list is deterministic.
func sortGPUs(gpus []GPU) {
	slices.SortStableFunc(gpus, func(a, b GPU) int {
		if a.Index != b.Index {
			return a.Index - b.Index
		}
		return strings.Compare(a.UUID, b.UUID)
	})
}
