package gpu

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"unsafe"
)

// fakeDev is one device of fakeLib; the *RC fields inject NVML failures.
type fakeDev struct {
	uuid, name, bus                                string
	total, used                                    uint64
	util, memUtil                                  uint32
	handleRC, uuidRC, nameRC, memRC, utilRC, pciRC nvmlReturn
	noNUL                                          bool // write the name without a terminator
}

// fakeLib implements the NVML function table in Go. It records the call sequence and
// flags any device query made before init or after shutdown.
type fakeLib struct {
	mu         sync.Mutex // guards every field below
	initRC     nvmlReturn
	countRC    nvmlReturn
	devs       []fakeDev
	calls      []string
	live       bool
	shutdowns  int
	violations []string
}

func (f *fakeLib) call(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, name)
	if !f.live && name != "nvmlInit_v2" {
		f.violations = append(f.violations, name+" while NVML is not initialised")
	}
}

func (f *fakeLib) dev(h nvmlDevice) *fakeDev {
	i := int(h) - 1
	if i < 0 || i >= len(f.devs) {
		return nil
	}
	return &f.devs[i]
}

// putString writes s into a C buffer the way NVML does.
func putString(buf *byte, length uint32, s string, nul bool) nvmlReturn {
	if nul {
		s += "\x00"
	}
	if uint32(len(s)) > length {
		return nvmlErrorInsufficientSize
	}
	copy(unsafe.Slice(buf, length), s)
	return nvmlSuccess
}

func (f *fakeLib) lib() *nvmlLib {
	return &nvmlLib{
		Init: func() nvmlReturn {
			f.call("nvmlInit_v2")
			if f.initRC == nvmlSuccess {
				f.mu.Lock()
				f.live = true
				f.mu.Unlock()
			}
			return f.initRC
		},
		Shutdown: func() nvmlReturn {
			f.call("nvmlShutdown")
			f.mu.Lock()
			defer f.mu.Unlock()
			f.live = false
			f.shutdowns++
			return nvmlSuccess
		},
		SystemGetDriverVersion: func(buf *byte, length uint32) nvmlReturn {
			f.call("nvmlSystemGetDriverVersion")
			if length != nvmlDriverVersionBufferSize {
				return nvmlErrorInsufficientSize
			}
			return putString(buf, length, "550.127.08", true)
		},
		DeviceGetCount: func(count *uint32) nvmlReturn {
			f.call("nvmlDeviceGetCount_v2")
			*count = uint32(len(f.devs))
			return f.countRC
		},
		DeviceGetHandleByIndex: func(index uint32, dev *nvmlDevice) nvmlReturn {
			f.call(fmt.Sprintf("nvmlDeviceGetHandleByIndex_v2(%d)", index))
			if int(index) >= len(f.devs) {
				return nvmlErrorInvalidArgument
			}
			if rc := f.devs[index].handleRC; rc != nvmlSuccess {
				return rc
			}
			*dev = nvmlDevice(index + 1)
			return nvmlSuccess
		},
		DeviceGetUUID: func(h nvmlDevice, buf *byte, length uint32) nvmlReturn {
			f.call("nvmlDeviceGetUUID")
			d := f.dev(h)
			switch {
			case d == nil:
				return nvmlErrorInvalidArgument
			case length != nvmlDeviceUUIDBufferSize:
				return nvmlErrorInsufficientSize
			case d.uuidRC != nvmlSuccess:
				return d.uuidRC
			}
			return putString(buf, length, d.uuid, true)
		},
		DeviceGetName: func(h nvmlDevice, buf *byte, length uint32) nvmlReturn {
			f.call("nvmlDeviceGetName")
			d := f.dev(h)
			switch {
			case d == nil:
				return nvmlErrorInvalidArgument
			case length != nvmlDeviceNameBufferSize:
				return nvmlErrorInsufficientSize
			case d.nameRC != nvmlSuccess:
				return d.nameRC
			}
			return putString(buf, length, d.name, !d.noNUL)
		},
		DeviceGetMemoryInfo: func(h nvmlDevice, mem *nvmlMemory) nvmlReturn {
			f.call("nvmlDeviceGetMemoryInfo")
			d := f.dev(h)
			if d == nil {
				return nvmlErrorInvalidArgument
			}
			if d.memRC != nvmlSuccess {
				return d.memRC
			}
			*mem = nvmlMemory{Total: d.total, Used: d.used, Free: d.total - d.used}
			return nvmlSuccess
		},
		DeviceGetUtilizationRates: func(h nvmlDevice, u *nvmlUtilization) nvmlReturn {
			f.call("nvmlDeviceGetUtilizationRates")
			d := f.dev(h)
			if d == nil {
				return nvmlErrorInvalidArgument
			}
			if d.utilRC != nvmlSuccess {
				return d.utilRC
			}
			*u = nvmlUtilization{GPU: d.util, Memory: d.memUtil}
			return nvmlSuccess
		},
		DeviceGetPciInfo: func(h nvmlDevice, pci *nvmlPciInfo) nvmlReturn {
			f.call("nvmlDeviceGetPciInfo_v3")
			d := f.dev(h)
			if d == nil {
				return nvmlErrorInvalidArgument
			}
			if d.pciRC != nvmlSuccess {
				return d.pciRC
			}
			*pci = nvmlPciInfo{}
			copy(pci.BusID[:], d.bus)
			copy(pci.BusIDLegacy[:], d.bus[4:])
			return nvmlSuccess
		},
	}
}

// h100Devs returns n fake devices that match FakeH100(n) when healthy.
func h100Devs(n int) []fakeDev {
	devs := make([]fakeDev, n)
	for i, g := range FakeH100(n) {
		devs[i] = fakeDev{uuid: g.UUID, name: g.Name, bus: g.PCIBusID, total: g.MemoryTotal, used: g.MemoryUsed}
	}
	return devs
}

func TestNVMLStructLayout(t *testing.T) {
	// The numbers are sizeof/offsetof from nvml.h (go-nvml v0.13.4-1), checked with a C
	// program against the header and asserted again in testdata/fakenvml.c.
	if got := unsafe.Sizeof(nvmlReturn(0)); got != 4 {
		t.Errorf("sizeof(nvmlReturn_t) = %d, want 4", got)
	}
	if got := unsafe.Sizeof(nvmlDevice(0)); got != unsafe.Sizeof(uintptr(0)) {
		t.Errorf("sizeof(nvmlDevice_t) = %d, want pointer size", got)
	}
	var m nvmlMemory
	if unsafe.Sizeof(m) != 24 || unsafe.Offsetof(m.Free) != 8 || unsafe.Offsetof(m.Used) != 16 {
		t.Errorf("nvmlMemory_t layout: size %d free@%d used@%d, want 24/8/16", unsafe.Sizeof(m), unsafe.Offsetof(m.Free), unsafe.Offsetof(m.Used))
	}
	var u nvmlUtilization
	if unsafe.Sizeof(u) != 8 || unsafe.Offsetof(u.Memory) != 4 {
		t.Errorf("nvmlUtilization_t layout: size %d memory@%d, want 8/4", unsafe.Sizeof(u), unsafe.Offsetof(u.Memory))
	}
	var p nvmlPciInfo
	got := []uintptr{unsafe.Sizeof(p), unsafe.Offsetof(p.Domain), unsafe.Offsetof(p.Bus), unsafe.Offsetof(p.Device),
		unsafe.Offsetof(p.PCIDeviceID), unsafe.Offsetof(p.PCISubSystemID), unsafe.Offsetof(p.BusID)}
	if want := []uintptr{68, 16, 20, 24, 28, 32, 36}; !slices.Equal(got, want) {
		t.Errorf("nvmlPciInfo_t size/offsets = %v, want %v", got, want)
	}
}

func TestCString(t *testing.T) {
	for _, tc := range []struct {
		in   []byte
		want string
	}{
		{[]byte("NVIDIA H100 80GB HBM3\x00garbage"), "NVIDIA H100 80GB HBM3"},
		{[]byte("\x00\x00"), ""},
		{[]byte("no terminator"), "no terminator"},
		{nil, ""},
	} {
		if got := cString(tc.in); got != tc.want {
			t.Errorf("cString(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestNVMLListH100(t *testing.T) {
	for _, n := range []int{0, 1, 2, 8} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			f := &fakeLib{devs: h100Devs(n)}
			inv, err := newNVML(f.lib())
			if err != nil {
				t.Fatal(err)
			}
			gpus, err := inv.List(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			want := FakeH100(n)
			if len(gpus) != len(want) {
				t.Fatalf("got %d GPUs, want %d", len(gpus), len(want))
			}
			for i := range want {
				if gpus[i] != want[i] {
					t.Errorf("GPU %d:\n got %+v\nwant %+v", i, gpus[i], want[i])
				}
			}
			if info := inv.Info(); info.Backend != BackendCUDA || info.DriverVersion != "550.127.08" {
				t.Errorf("Info = %+v", info)
			}
			if err := inv.Close(); err != nil {
				t.Fatal(err)
			}
			if len(f.violations) > 0 {
				t.Errorf("calls outside init/shutdown: %v", f.violations)
			}
		})
	}
}

func TestNVMLCallSequence(t *testing.T) {
	f := &fakeLib{devs: h100Devs(1)}
	inv, err := newNVML(f.lib())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := inv.List(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := inv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := inv.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	want := []string{"nvmlInit_v2", "nvmlSystemGetDriverVersion", "nvmlDeviceGetCount_v2",
		"nvmlDeviceGetHandleByIndex_v2(0)", "nvmlDeviceGetUUID", "nvmlDeviceGetName", "nvmlDeviceGetMemoryInfo",
		"nvmlDeviceGetUtilizationRates", "nvmlDeviceGetPciInfo_v3", "nvmlShutdown"}
	if !slices.Equal(f.calls, want) {
		t.Errorf("calls:\n got %v\nwant %v", f.calls, want)
	}
	if _, err := inv.List(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("List after Close: %v, want ErrClosed", err)
	}
}

func TestNVMLInitErrors(t *testing.T) {
	for _, tc := range []struct {
		rc         nvmlReturn
		is         []error
		isNot      []error
		reasonPart string
	}{
		{nvmlErrorDriverNotLoaded, []error{ErrNVML, ErrNoDriver, ErrDriverNotLoaded}, []error{ErrLibraryNotFound}, "NVIDIA driver not loaded"},
		{nvmlErrorLibraryNotFound, []error{ErrNVML, ErrNoDriver, ErrLibraryNotFound}, []error{ErrDriverNotLoaded}, "NVML library not found"},
		{nvmlErrorLibRMVersion, []error{ErrNVML, ErrNoDriver}, []error{ErrLibraryNotFound, ErrDriverNotLoaded}, "version mismatch"},
		{nvmlErrorNoPermission, []error{ErrNVML, ErrNoPermission}, []error{ErrNoDriver}, "Insufficient Permissions"},
		{nvmlErrorUnknown, []error{ErrNVML}, []error{ErrNoDriver, ErrGPULost}, "Unknown Error"},
	} {
		t.Run(fmt.Sprint(tc.rc), func(t *testing.T) {
			f := &fakeLib{initRC: tc.rc}
			inv, err := newNVML(f.lib())
			if err == nil || inv != nil {
				t.Fatalf("newNVML = %v, %v; want an error", inv, err)
			}
			for _, s := range tc.is {
				if !errors.Is(err, s) {
					t.Errorf("errors.Is(%v, %v) = false", err, s)
				}
			}
			for _, s := range tc.isNot {
				if errors.Is(err, s) {
					t.Errorf("errors.Is(%v, %v) = true", err, s)
				}
			}
			var ne *NVMLError
			if !errors.As(err, &ne) || ne.Code != int(tc.rc) || ne.Op != "nvmlInit_v2" {
				t.Errorf("errors.As: %+v", ne)
			}
			if r := NoGPUReason(err); !strings.Contains(r, tc.reasonPart) {
				t.Errorf("Reason = %q, want it to contain %q", r, tc.reasonPart)
			}
		})
	}
}

func TestNVMLDeviceFaults(t *testing.T) {
	devs := h100Devs(6)
	devs[0].handleRC = nvmlErrorNoPermission // hidden from us: left out
	devs[1].memRC = nvmlErrorGPUIsLost       // lost: unhealthy
	devs[2].utilRC = nvmlErrorNotSupported   // MIG-like: utilization unknown, healthy
	devs[3].uuidRC = nvmlErrorUnknown        // no identity: unhealthy
	devs[4].handleRC = nvmlErrorResetRequired
	devs[5].noNUL = true
	devs[5].name = strings.Repeat("N", nvmlDeviceNameBufferSize) // fills the buffer exactly
	devs[5].pciRC = nvmlErrorNotSupported
	f := &fakeLib{devs: devs}
	inv, err := newNVML(f.lib())
	if err != nil {
		t.Fatal(err)
	}
	gpus, err := inv.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	byIndex := map[int]GPU{}
	for _, g := range gpus {
		byIndex[g.Index] = g
	}
	if _, ok := byIndex[0]; ok || len(gpus) != 5 {
		t.Errorf("device 0 (NO_PERMISSION) should be left out; got %d GPUs", len(gpus))
	}
	if g := byIndex[1]; g.Healthy || !strings.Contains(g.HealthReason, "GPU is lost") || g.UUID != devs[1].uuid {
		t.Errorf("lost GPU: %+v", g)
	}
	if g := byIndex[2]; !g.Healthy || g.UtilizationGPU != -1 || g.UtilizationMemory != -1 {
		t.Errorf("GPU without utilization: %+v", g)
	}
	if g := byIndex[3]; g.Healthy || g.UUID != "" || !strings.Contains(g.HealthReason, "nvmlDeviceGetUUID") {
		t.Errorf("GPU without UUID: %+v", g)
	}
	if g := byIndex[4]; g.Healthy || g.Index != 4 || !strings.Contains(g.HealthReason, "restart") {
		t.Errorf("GPU needing reset: %+v", g)
	}
	if g := byIndex[5]; !g.Healthy || g.Name != devs[5].name || g.PCIBusID != "" {
		t.Errorf("unterminated name / no PCI info: %+v", g)
	}
}

func TestNVMLCountError(t *testing.T) {
	f := &fakeLib{devs: h100Devs(2), countRC: nvmlErrorUnknown}
	inv, err := newNVML(f.lib())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := inv.List(context.Background()); !errors.Is(err, ErrNVML) || errors.Is(err, ErrNoDriver) {
		t.Errorf("List = %v, want an NVML error that is not ErrNoDriver", err)
	}
}

func TestNVMLOptionalFunctionsMissing(t *testing.T) {
	f := &fakeLib{devs: h100Devs(1)}
	lib := f.lib()
	lib.DeviceGetUtilizationRates, lib.DeviceGetPciInfo, lib.SystemGetDriverVersion = nil, nil, nil
	inv, err := newNVML(lib)
	if err != nil {
		t.Fatal(err)
	}
	gpus, err := inv.List(context.Background())
	if err != nil || len(gpus) != 1 {
		t.Fatalf("List = %v, %v", gpus, err)
	}
	if g := gpus[0]; !g.Healthy || g.UtilizationGPU != -1 || g.PCIBusID != "" || g.UUID != FakeUUID(0) {
		t.Errorf("%+v", g)
	}
	if inv.Info().DriverVersion != "" {
		t.Errorf("driver version without the function: %q", inv.Info().DriverVersion)
	}
}

func TestNVMLListCancelled(t *testing.T) {
	f := &fakeLib{devs: h100Devs(2)}
	inv, err := newNVML(f.lib())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := inv.List(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("List = %v, want context.Canceled", err)
	}
}

// TestNVMLCloseWhileListing: Close must wait for Lists in flight, so no device query
// ever runs after nvmlShutdown.
func TestNVMLCloseWhileListing(t *testing.T) {
	f := &fakeLib{devs: h100Devs(8)}
	inv, err := newNVML(f.lib())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 20 {
				if _, err := inv.List(context.Background()); err != nil && !errors.Is(err, ErrClosed) {
					t.Error(err)
				}
			}
		})
	}
	wg.Go(func() { _ = inv.Close() })
	wg.Wait()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.shutdowns != 1 || len(f.violations) > 0 {
		t.Errorf("shutdowns = %d, violations = %v", f.shutdowns, f.violations)
	}
}

func TestBindNVML(t *testing.T) {
	names := func() []string {
		var out []string
		for _, s := range (&nvmlLib{}).symbols() {
			out = append(out, s.name)
		}
		return out
	}()
	wantNames := []string{"nvmlInit_v2", "nvmlShutdown", "nvmlDeviceGetCount_v2", "nvmlDeviceGetHandleByIndex_v2",
		"nvmlDeviceGetUUID", "nvmlDeviceGetName", "nvmlDeviceGetMemoryInfo", "nvmlDeviceGetUtilizationRates",
		"nvmlDeviceGetPciInfo_v3", "nvmlSystemGetDriverVersion"}
	if !slices.Equal(names, wantNames) {
		t.Errorf("symbols = %v", names)
	}

	var registered []string
	addrs := map[string]uintptr{}
	for i, n := range wantNames {
		addrs[n] = uintptr(0x1000 + i)
	}
	lookup := func(missing ...string) func(string) (uintptr, error) {
		return func(name string) (uintptr, error) {
			if slices.Contains(missing, name) {
				return 0, errors.New("undefined symbol: " + name)
			}
			return addrs[name], nil
		}
	}
	register := func(fptr any, addr uintptr) {
		for n, a := range addrs {
			if a == addr {
				registered = append(registered, n)
			}
		}
	}

	if _, err := bindNVML(lookup(), register); err != nil || !slices.Equal(registered, wantNames) {
		t.Errorf("bind all: err %v, registered %v", err, registered)
	}

	registered = nil
	lib, err := bindNVML(lookup("nvmlDeviceGetPciInfo_v3", "nvmlSystemGetDriverVersion"), register)
	if err != nil || lib == nil || len(registered) != len(wantNames)-2 {
		t.Errorf("optional symbols missing: err %v, registered %v", err, registered)
	}

	_, err = bindNVML(lookup("nvmlDeviceGetCount_v2"), register)
	if !errors.Is(err, ErrNoDriver) || !strings.Contains(err.Error(), "nvmlDeviceGetCount_v2") {
		t.Errorf("required symbol missing: %v", err)
	}

	_, err = bindNVML(func(string) (uintptr, error) { return 0, nil }, register)
	if !errors.Is(err, ErrNoDriver) {
		t.Errorf("NULL symbol: %v", err)
	}

	_, err = bindNVML(lookup(), func(any, uintptr) { panic("unsupported type") })
	if !errors.Is(err, ErrNoDriver) || !strings.Contains(err.Error(), "unsupported type") {
		t.Errorf("panicking register: %v", err)
	}
}

// TestOpenAbsentLibrary is the CPU-only host: no libnvidia-ml, so zero GPUs, a reason,
// and no panic.
func TestOpenAbsentLibrary(t *testing.T) {
	missing := t.TempDir() + "/libnvidia-ml.so.1"
	inv := Open(NVMLOptions{Library: missing})
	none, ok := inv.(None)
	if !ok {
		t.Fatalf("Open(missing) = %T, want None", inv)
	}
	if !errors.Is(none.Err, ErrNoDriver) || !errors.Is(none.Err, ErrLibraryNotFound) {
		t.Errorf("Err = %v", none.Err)
	}
	if info := inv.Info(); info.Backend != BackendCPU || !strings.HasPrefix(info.Reason, "NVML library not found") {
		t.Errorf("Info = %+v", info)
	}
	gpus, err := inv.List(context.Background())
	if err != nil || len(gpus) != 0 {
		t.Errorf("List = %v, %v", gpus, err)
	}
	if err := inv.Close(); err != nil {
		t.Error(err)
	}
}

// TestOpenDefault runs wherever the tests run: without a driver it must fall back to
// None with ErrNoDriver; with one it must list and close cleanly.
func TestOpenDefault(t *testing.T) {
	n, err := OpenNVML(NVMLOptions{})
	if err != nil {
		if !errors.Is(err, ErrNoDriver) {
			t.Fatalf("OpenNVML without a usable driver: %v, want ErrNoDriver", err)
		}
		t.Logf("no NVML here: %s", NoGPUReason(err))
		return
	}
	defer func() {
		if err := n.Close(); err != nil {
			t.Error(err)
		}
	}()
	gpus, err := n.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range gpus {
		t.Logf("%+v", g)
		if g.Healthy && !strings.HasPrefix(g.UUID, "GPU-") {
			t.Errorf("healthy GPU without a GPU- UUID: %+v", g)
		}
	}
}
