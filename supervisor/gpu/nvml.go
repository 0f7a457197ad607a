package gpu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
)

// Sizes and layouts below are copied from nvml.h (the copy vendored in
// github.com/NVIDIA/go-nvml v0.13.4-1, NVML API 12.x). TestNVMLStructLayout pins them
// and testdata/fakenvml.c asserts the same numbers on the C side.
const (
	// DefaultNVMLLibrary is the soname the driver package installs (libnvidia-ml1 on
	// Debian, the driver's .run installer elsewhere). go-nvml opens the same name.
	DefaultNVMLLibrary = "libnvidia-ml.so.1"

	nvmlDeviceNameBufferSize     = 96 // NVML_DEVICE_NAME_V2_BUFFER_SIZE
	nvmlDeviceUUIDBufferSize     = 96 // NVML_DEVICE_UUID_V2_BUFFER_SIZE
	nvmlDriverVersionBufferSize  = 80 // NVML_SYSTEM_DRIVER_VERSION_BUFFER_SIZE
	nvmlPCIBusIDBufferSize       = 32 // NVML_DEVICE_PCI_BUS_ID_BUFFER_SIZE
	nvmlPCIBusIDLegacyBufferSize = 16 // NVML_DEVICE_PCI_BUS_ID_BUFFER_V2_SIZE
)

// nvmlDevice is nvmlDevice_t, an opaque pointer (struct nvmlDevice_st*) we only pass back.
type nvmlDevice uintptr

// nvmlMemory is nvmlMemory_t: three unsigned long long, 24 bytes.
type nvmlMemory struct {
	Total uint64
	Free  uint64
	Used  uint64
}

// nvmlUtilization is nvmlUtilization_t: two unsigned int, 8 bytes.
type nvmlUtilization struct {
	GPU    uint32
	Memory uint32
}

// nvmlPciInfo is nvmlPciInfo_t as filled by nvmlDeviceGetPciInfo_v3: 68 bytes, 4-byte
// aligned, no padding (16 + 5*4 + 32).
type nvmlPciInfo struct {
	BusIDLegacy    [nvmlPCIBusIDLegacyBufferSize]byte
	Domain         uint32
	Bus            uint32
	Device         uint32
	PCIDeviceID    uint32
	PCISubSystemID uint32
	BusID          [nvmlPCIBusIDBufferSize]byte
}

// nvmlLib is the table of NVML C functions this package calls, each typed as purego
// translates it (unsigned int → uint32, pointers → *T, nvmlReturn_t → int32). It is a
// struct, not package variables, so there is no global state and tests can fill it
// with Go fakes. Fields marked optional may be nil (older drivers lack them).
type nvmlLib struct {
	Init                      func() nvmlReturn                                          // nvmlInit_v2(void)
	Shutdown                  func() nvmlReturn                                          // nvmlShutdown(void)
	DeviceGetCount            func(count *uint32) nvmlReturn                             // nvmlDeviceGetCount_v2(unsigned int*)
	DeviceGetHandleByIndex    func(index uint32, dev *nvmlDevice) nvmlReturn             // nvmlDeviceGetHandleByIndex_v2(unsigned int, nvmlDevice_t*)
	DeviceGetUUID             func(dev nvmlDevice, uuid *byte, length uint32) nvmlReturn // nvmlDeviceGetUUID(nvmlDevice_t, char*, unsigned int)
	DeviceGetName             func(dev nvmlDevice, name *byte, length uint32) nvmlReturn // nvmlDeviceGetName(nvmlDevice_t, char*, unsigned int)
	DeviceGetMemoryInfo       func(dev nvmlDevice, mem *nvmlMemory) nvmlReturn           // nvmlDeviceGetMemoryInfo(nvmlDevice_t, nvmlMemory_t*)
	DeviceGetUtilizationRates func(dev nvmlDevice, u *nvmlUtilization) nvmlReturn        // optional; nvmlDeviceGetUtilizationRates(nvmlDevice_t, nvmlUtilization_t*)
	DeviceGetPciInfo          func(dev nvmlDevice, pci *nvmlPciInfo) nvmlReturn          // optional; nvmlDeviceGetPciInfo_v3(nvmlDevice_t, nvmlPciInfo_t*)
	SystemGetDriverVersion    func(version *byte, length uint32) nvmlReturn              // optional; nvmlSystemGetDriverVersion(char*, unsigned int)
}

// nvmlSymbol ties a C symbol to the nvmlLib field that calls it.
type nvmlSymbol struct {
	name     string
	fptr     any // pointer to a func field of nvmlLib
	required bool
}

// symbols lists every C function nvmlLib binds, in the order they are resolved.
func (l *nvmlLib) symbols() []nvmlSymbol {
	return []nvmlSymbol{
		{"nvmlInit_v2", &l.Init, true},
		{"nvmlShutdown", &l.Shutdown, true},
		{"nvmlDeviceGetCount_v2", &l.DeviceGetCount, true},
		{"nvmlDeviceGetHandleByIndex_v2", &l.DeviceGetHandleByIndex, true},
		{"nvmlDeviceGetUUID", &l.DeviceGetUUID, true},
		{"nvmlDeviceGetName", &l.DeviceGetName, true},
		{"nvmlDeviceGetMemoryInfo", &l.DeviceGetMemoryInfo, true},
		{"nvmlDeviceGetUtilizationRates", &l.DeviceGetUtilizationRates, false},
		{"nvmlDeviceGetPciInfo_v3", &l.DeviceGetPciInfo, false},
		{"nvmlSystemGetDriverVersion", &l.SystemGetDriverVersion, false},
	}
}

// bindNVML fills an nvmlLib: lookup resolves a symbol (dlsym) and register turns an
// address into a Go func of the field's type (purego.RegisterFunc). A missing required
// symbol is NVML_ERROR_FUNCTION_NOT_FOUND, which matches ErrNoDriver; a panic from
// register (a type purego cannot translate) becomes an error too, because a daemon
// must come up without GPUs rather than crash.
func bindNVML(lookup func(name string) (uintptr, error), register func(fptr any, addr uintptr)) (lib *nvmlLib, err error) {
	lib = &nvmlLib{}
	var current string
	defer func() {
		if r := recover(); r != nil {
			lib, err = nil, &NVMLError{Op: "bind " + current, Code: int(nvmlErrorFunctionNotFound), Detail: fmt.Sprint(r)}
		}
	}()
	for _, s := range lib.symbols() {
		current = s.name
		addr, lerr := lookup(s.name)
		if lerr == nil && addr == 0 {
			lerr = errors.New("symbol resolves to NULL")
		}
		if lerr != nil {
			if s.required {
				return nil, &NVMLError{Op: "dlsym " + s.name, Code: int(nvmlErrorFunctionNotFound), Detail: lerr.Error()}
			}
			continue
		}
		register(s.fptr, addr)
	}
	return lib, nil
}

// NVMLOptions configures OpenNVML.
type NVMLOptions struct {
	// Library is the path or soname to load; empty means DefaultNVMLLibrary.
	Library string
}

// NVML is the Inventory backed by the NVIDIA Management Library, loaded at run time
// with purego: the daemon is built with CGO_ENABLED=0 and must start on hosts that have
// no NVIDIA library at all, which rules out go-nvml (its bindings, and even its mock
// package, need cgo). On platforms without purego support, or when built with the
// "nonvml" tag, OpenNVML always reports ErrLibraryNotFound.
type NVML struct {
	// mu guards closed: List holds it shared for the whole walk over the devices so that
	// Close (exclusive) cannot call nvmlShutdown while a query is in flight. NVML itself
	// is thread-safe, so concurrent Lists are fine.
	mu     sync.RWMutex
	closed bool

	lib    *nvmlLib // set once by newNVML; read-only afterwards
	driver string   // driver version read at open; read-only
}

var _ Inventory = (*NVML)(nil)

// OpenNVML loads and initialises NVML. Its errors wrap *NVMLError: errors.Is(err,
// ErrNoDriver) is true when the host simply has no usable driver (library missing,
// kernel module not loaded, library too old).
func OpenNVML(opts NVMLOptions) (*NVML, error) {
	path := opts.Library
	if path == "" {
		path = DefaultNVMLLibrary
	}
	lib, err := loadNVML(path)
	if err != nil {
		return nil, fmt.Errorf("gpu: load NVML: %w", err)
	}
	return newNVML(lib)
}

// newNVML initialises NVML through a bound function table.
func newNVML(lib *nvmlLib) (*NVML, error) {
	if err := nvmlErr("nvmlInit_v2", lib.Init()); err != nil {
		return nil, fmt.Errorf("gpu: initialise NVML: %w", err)
	}
	n := &NVML{lib: lib}
	if lib.SystemGetDriverVersion != nil {
		var buf [nvmlDriverVersionBufferSize]byte
		if lib.SystemGetDriverVersion(&buf[0], uint32(len(buf))) == nvmlSuccess {
			n.driver = cString(buf[:])
		}
	}
	return n, nil
}

// Open returns the host's inventory: NVML when it loads and initialises, otherwise None
// with a Reason saying why (and Err holding the error). It never fails and never
// panics, so the daemon always starts; on a CPU-only host jobs then run on the CPU
// trainer.
func Open(opts NVMLOptions) Inventory {
	n, err := OpenNVML(opts)
	if err != nil {
		return None{Reason: NoGPUReason(err), Err: err}
	}
	return n
}

// NoGPUReason turns an OpenNVML error into the short text shown as the reason for running
// without GPUs.
func NoGPUReason(err error) string {
	var ne *NVMLError
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrLibraryNotFound) && errors.As(err, &ne) && ne.Detail != "":
		return fmt.Sprintf("%s (%s)", ErrLibraryNotFound, ne.Detail)
	case errors.Is(err, ErrLibraryNotFound):
		return ErrLibraryNotFound.Error()
	case errors.Is(err, ErrDriverNotLoaded):
		return ErrDriverNotLoaded.Error()
	}
	return "NVML unavailable: " + err.Error()
}

// List queries every device. A device NVML hides from us (NO_PERMISSION, e.g. a device
// cgroup) is left out; a device that fails an essential query is listed unhealthy.
func (n *NVML) List(ctx context.Context) ([]GPU, error) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	if n.closed {
		return nil, ErrClosed
	}
	var count uint32
	if err := nvmlErr("nvmlDeviceGetCount_v2", n.lib.DeviceGetCount(&count)); err != nil {
		return nil, fmt.Errorf("gpu: count devices: %w", err)
	}
	gpus := make([]GPU, 0, count)
	for i := range count {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if g, ok := queryDevice(n.lib, i); ok {
			gpus = append(gpus, g)
		}
	}
	sortGPUs(gpus)
	return gpus, nil
}

// queryDevice reads one device; ok is false when the device is not ours to see.
func queryDevice(lib *nvmlLib, index uint32) (g GPU, ok bool) {
	g = GPU{Index: int(index), UtilizationGPU: -1, UtilizationMemory: -1, Healthy: true}
	// fail records the first fault that makes the device unusable.
	fail := func(err error) {
		if g.Healthy {
			g.Healthy, g.HealthReason = false, err.Error()
		}
	}
	var dev nvmlDevice
	r := lib.DeviceGetHandleByIndex(index, &dev)
	if r == nvmlErrorNoPermission {
		return g, false
	}
	if err := nvmlErr("nvmlDeviceGetHandleByIndex_v2", r); err != nil {
		fail(err)
		return g, true
	}

	// The UUID is the identity: without it the device cannot be allocated.
	var uuid [nvmlDeviceUUIDBufferSize]byte
	if err := nvmlErr("nvmlDeviceGetUUID", lib.DeviceGetUUID(dev, &uuid[0], uint32(len(uuid)))); err != nil {
		fail(err)
	} else {
		g.UUID = cString(uuid[:])
	}

	var name [nvmlDeviceNameBufferSize]byte
	if r := lib.DeviceGetName(dev, &name[0], uint32(len(name))); r == nvmlSuccess {
		g.Name = cString(name[:])
	} else if fatal(r) {
		fail(nvmlErr("nvmlDeviceGetName", r))
	}

	var mem nvmlMemory
	if r := lib.DeviceGetMemoryInfo(dev, &mem); r == nvmlSuccess {
		g.MemoryTotal, g.MemoryUsed = mem.Total, mem.Used
	} else if fatal(r) {
		fail(nvmlErr("nvmlDeviceGetMemoryInfo", r))
	}

	if lib.DeviceGetUtilizationRates != nil {
		var u nvmlUtilization
		if r := lib.DeviceGetUtilizationRates(dev, &u); r == nvmlSuccess {
			g.UtilizationGPU, g.UtilizationMemory = percent(u.GPU), percent(u.Memory)
		} else if fatal(r) {
			fail(nvmlErr("nvmlDeviceGetUtilizationRates", r))
		}
	}

	if lib.DeviceGetPciInfo != nil {
		var pci nvmlPciInfo
		if r := lib.DeviceGetPciInfo(dev, &pci); r == nvmlSuccess {
			g.PCIBusID = cString(pci.BusID[:])
		} else if fatal(r) {
			fail(nvmlErr("nvmlDeviceGetPciInfo_v3", r))
		}
	}
	return g, true
}

// fatal says whether a failed query means the device is unusable, as opposed to "this
// board does not report that value" (MIG devices have no utilization, for instance).
func fatal(r nvmlReturn) bool {
	switch r {
	case nvmlSuccess, nvmlErrorNotSupported, nvmlErrorNoData, nvmlErrorNoPermission:
		return false
	}
	return true
}

// percent clamps an NVML percentage into 0..100.
func percent(v uint32) int {
	return int(min(v, 100))
}

// cString decodes a NUL-terminated C string from a fixed buffer; without a NUL the
// whole buffer is the string (NVML always terminates, but a fake might not).
func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// Info reports the CUDA backend and the driver version.
func (n *NVML) Info() Info { return Info{Backend: BackendCUDA, DriverVersion: n.driver} }

// Close shuts NVML down; it waits for Lists in flight. The library stays mapped:
// unloading libnvidia-ml is not safe while its threads may still run.
func (n *NVML) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil
	}
	n.closed = true
	if err := nvmlErr("nvmlShutdown", n.lib.Shutdown()); err != nil {
		return fmt.Errorf("gpu: shut NVML down: %w", err)
	}
	return nil
}
