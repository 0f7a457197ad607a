//go:build cgo && !nonvml

package gpu

import (
	"context"
	"fmt"
	"sync"

	"github.com/NVIDIA/go-nvml/pkg/dl"
	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// nvmlFeatures says which optional NVML functions the loaded library exports. go-nvml
// calls C functions that the dynamic linker resolves on first use, so calling one the
// library lacks ends the process ("symbol lookup error"): every call this package makes
// is therefore checked against the library before NVML is initialised (probeNVML).
type nvmlFeatures struct {
	utilization   bool // nvmlDeviceGetUtilizationRates
	pci           bool // nvmlDeviceGetPciInfo in any version
	driverVersion bool // nvmlSystemGetDriverVersion
	temperature   bool // nvmlDeviceGetTemperature
}

// nvmlSymbol is one C function this package makes go-nvml call. names lists the versions
// go-nvml accepts, newest first (it binds the newest the library exports); found marks
// an optional function as present.
type nvmlSymbol struct {
	names    []string
	required bool
	found    func(*nvmlFeatures)
}

// nvmlSymbols lists every C function reached through go-nvml by OpenNVML, List and Close.
func nvmlSymbols() []nvmlSymbol {
	return []nvmlSymbol{
		{names: []string{"nvmlInit_v2", "nvmlInit"}, required: true},
		{names: []string{"nvmlShutdown"}, required: true},
		{names: []string{"nvmlDeviceGetCount_v2", "nvmlDeviceGetCount"}, required: true},
		{names: []string{"nvmlDeviceGetHandleByIndex_v2", "nvmlDeviceGetHandleByIndex"}, required: true},
		{names: []string{"nvmlDeviceGetUUID"}, required: true},
		{names: []string{"nvmlDeviceGetName"}, required: true},
		{names: []string{"nvmlDeviceGetMemoryInfo"}, required: true},
		{names: []string{"nvmlDeviceGetUtilizationRates"}, found: func(f *nvmlFeatures) { f.utilization = true }},
		{names: []string{"nvmlDeviceGetPciInfo_v3", "nvmlDeviceGetPciInfo_v2", "nvmlDeviceGetPciInfo"}, found: func(f *nvmlFeatures) { f.pci = true }},
		{names: []string{"nvmlSystemGetDriverVersion"}, found: func(f *nvmlFeatures) { f.driverVersion = true }},
		{names: []string{"nvmlDeviceGetTemperature"}, found: func(f *nvmlFeatures) { f.temperature = true }},
	}
}

// probeNVML checks a library's exports with lookup (dlsym). A missing required function
// is NVML_ERROR_FUNCTION_NOT_FOUND, which matches ErrNoDriver: a library too old, or not
// NVML at all, means no usable driver.
func probeNVML(lookup func(name string) error) (nvmlFeatures, error) {
	var f nvmlFeatures
	for _, s := range nvmlSymbols() {
		var missing error
		for _, name := range s.names {
			if missing = lookup(name); missing == nil {
				break
			}
		}
		switch {
		case missing == nil && s.found != nil:
			s.found(&f)
		case missing != nil && s.required:
			return nvmlFeatures{}, &NVMLError{Op: "dlsym " + s.names[0], Code: int(nvmlErrorFunctionNotFound), Detail: missing.Error()}
		}
	}
	return f, nil
}

// NVML is the Inventory backed by the NVIDIA Management Library through NVIDIA's
// github.com/NVIDIA/go-nvml (cgo; the library is dlopened at run time, so the daemon
// starts on hosts without it). It exists only in builds with cgo and without the
// "nonvml" tag.
type NVML struct {
	// mu guards closed: List holds it shared for the whole walk over the devices so that
	// Close (exclusive) cannot call nvmlShutdown while a query is in flight. NVML itself
	// is thread-safe, so concurrent Lists are fine.
	mu     sync.RWMutex
	closed bool

	lib    nvml.Interface // set by newNVML; read-only afterwards
	have   nvmlFeatures   // read-only
	driver string         // driver version read at open; read-only
}

var _ Inventory = (*NVML)(nil)

// OpenNVML loads and initialises NVML. Its errors wrap *NVMLError: errors.Is(err,
// ErrNoDriver) is true when the host simply has no usable driver (library missing,
// kernel module not loaded, library too old).
//
// Use one NVML library per process: go-nvml calls NVML's C functions through symbols the
// dynamic linker binds process-wide on first use, so after one library has been used,
// opening a different one may still reach the first.
func OpenNVML(opts NVMLOptions) (*NVML, error) {
	path := opts.Library
	if path == "" {
		path = DefaultNVMLLibrary
	}
	// Our own handle, with go-nvml's flags, to check the exports before go-nvml calls
	// anything. Closing it once go-nvml holds its own handle only drops a reference.
	h := dl.New(path, dl.RTLD_LAZY|dl.RTLD_GLOBAL)
	if err := h.Open(); err != nil {
		return nil, fmt.Errorf("gpu: load NVML: %w", &NVMLError{Op: "dlopen " + path, Code: int(nvmlErrorLibraryNotFound), Detail: err.Error()})
	}
	defer func() { _ = h.Close() }()
	have, err := probeNVML(h.Lookup)
	if err != nil {
		return nil, fmt.Errorf("gpu: load NVML: %w", err)
	}
	return newNVML(nvml.New(nvml.WithLibraryPath(path)), have)
}

// openNVML is Open's backend in this build.
func openNVML(opts NVMLOptions) (Inventory, error) {
	n, err := OpenNVML(opts)
	if err != nil {
		return nil, err
	}
	return n, nil
}

// newNVML initialises NVML through lib (the real binding, or go-nvml's mock in tests);
// have says which optional functions lib may be asked for.
func newNVML(lib nvml.Interface, have nvmlFeatures) (*NVML, error) {
	if err := nvmlErr("nvmlInit_v2", nvmlReturn(lib.Init())); err != nil {
		return nil, fmt.Errorf("gpu: initialise NVML: %w", err)
	}
	n := &NVML{lib: lib, have: have}
	if have.driverVersion {
		if v, r := lib.SystemGetDriverVersion(); r == nvml.SUCCESS {
			n.driver = v
		}
	}
	return n, nil
}

// List queries every device. A device NVML hides from us (NO_PERMISSION, e.g. a device
// cgroup) is left out; a device that fails an essential query is listed unhealthy.
func (n *NVML) List(ctx context.Context) ([]GPU, error) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	if n.closed {
		return nil, ErrClosed
	}
	count, r := n.lib.DeviceGetCount()
	if err := nvmlErr("nvmlDeviceGetCount_v2", nvmlReturn(r)); err != nil {
		return nil, fmt.Errorf("gpu: count devices: %w", err)
	}
	gpus := make([]GPU, 0, max(count, 0))
	for i := range count {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if g, ok := n.queryDevice(i); ok {
			gpus = append(gpus, g)
		}
	}
	sortGPUs(gpus)
	return gpus, nil
}

// queryDevice reads one device; ok is false when the device is not ours to see.
func (n *NVML) queryDevice(index int) (g GPU, ok bool) {
	g = GPU{Index: index, UtilizationGPU: -1, UtilizationMemory: -1, Temperature: -1, Healthy: true}
	// fail records the first fault that makes the device unusable.
	fail := func(err error) {
		if g.Healthy {
			g.Healthy, g.HealthReason = false, err.Error()
		}
	}
	dev, r := n.lib.DeviceGetHandleByIndex(index)
	if r == nvml.ERROR_NO_PERMISSION {
		return g, false
	}
	if err := nvmlErr("nvmlDeviceGetHandleByIndex_v2", nvmlReturn(r)); err != nil {
		fail(err)
		return g, true
	}

	// The UUID is the identity: without it the device cannot be allocated.
	if uuid, r := dev.GetUUID(); r != nvml.SUCCESS {
		fail(nvmlErr("nvmlDeviceGetUUID", nvmlReturn(r)))
	} else {
		g.UUID = uuid
	}

	if name, r := dev.GetName(); r == nvml.SUCCESS {
		g.Name = name
	} else if fatal(nvmlReturn(r)) {
		fail(nvmlErr("nvmlDeviceGetName", nvmlReturn(r)))
	}

	if mem, r := dev.GetMemoryInfo(); r == nvml.SUCCESS {
		g.MemoryTotal, g.MemoryUsed = mem.Total, mem.Used
	} else if fatal(nvmlReturn(r)) {
		fail(nvmlErr("nvmlDeviceGetMemoryInfo", nvmlReturn(r)))
	}

	if n.have.utilization {
		if u, r := dev.GetUtilizationRates(); r == nvml.SUCCESS {
			g.UtilizationGPU, g.UtilizationMemory = percent(u.Gpu), percent(u.Memory)
		} else if fatal(nvmlReturn(r)) {
			fail(nvmlErr("nvmlDeviceGetUtilizationRates", nvmlReturn(r)))
		}
	}

	if n.have.temperature {
		if t, r := dev.GetTemperature(nvml.TEMPERATURE_GPU); r == nvml.SUCCESS {
			g.Temperature = int(t)
		} else if fatal(nvmlReturn(r)) {
			fail(nvmlErr("nvmlDeviceGetTemperature", nvmlReturn(r)))
		}
	}

	if n.have.pci {
		if pci, r := dev.GetPciInfo(); r == nvml.SUCCESS {
			g.PCIBusID = busID(pci.BusId)
		} else if fatal(nvmlReturn(r)) {
			fail(nvmlErr("nvmlDeviceGetPciInfo_v3", nvmlReturn(r)))
		}
	}
	return g, true
}

// busID decodes nvmlPciInfo_t.busId, a C char array that go-nvml types as int8.
func busID(c [32]int8) string {
	b := make([]byte, len(c))
	for i, v := range c {
		b[i] = byte(v)
	}
	return cString(b)
}

// Info reports the CUDA backend and the driver version.
func (n *NVML) Info() Info { return Info{Backend: BackendCUDA, DriverVersion: n.driver} }

// Close shuts NVML down (go-nvml then drops its handle on the library); it waits for
// Lists in flight.
func (n *NVML) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil
	}
	n.closed = true
	if err := nvmlErr("nvmlShutdown", nvmlReturn(n.lib.Shutdown())); err != nil {
		return fmt.Errorf("gpu: shut NVML down: %w", err)
	}
	return nil
}
