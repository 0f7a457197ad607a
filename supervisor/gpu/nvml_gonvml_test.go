//go:build cgo && !nonvml

package gpu

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
)

// allFeatures is a library that exports every optional function.
func allFeatures() nvmlFeatures {
	return nvmlFeatures{utilization: true, pci: true, driverVersion: true, temperature: true}
}

// mockDev is one device of mockLib; the *RC fields inject NVML failures.
type mockDev struct {
	uuid, name, bus                                        string
	total, used                                            uint64
	util, memUtil, temp                                    uint32
	handleRC, uuidRC, nameRC, memRC, utilRC, pciRC, tempRC nvml.Return
}

// mockLib drives go-nvml's mock.Interface: it records the call sequence and flags any
// query made before Init or after Shutdown.
type mockLib struct {
	mu         sync.Mutex // guards every field below
	initRC     nvml.Return
	countRC    nvml.Return
	devs       []mockDev
	calls      []string
	live       bool
	shutdowns  int
	violations []string
}

func (f *mockLib) call(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, name)
	if !f.live && name != "Init" {
		f.violations = append(f.violations, name+" while NVML is not initialised")
	}
}

// busIDArray encodes a bus id the way nvmlPciInfo_t carries it.
func busIDArray(s string) [32]int8 {
	var a [32]int8
	for i := 0; i < len(s) && i < len(a)-1; i++ {
		a[i] = int8(s[i])
	}
	return a
}

// device returns the go-nvml mock of device i.
func (f *mockLib) device(i int) *mock.Device {
	d := f.devs[i]
	return &mock.Device{
		GetUUIDFunc: func() (string, nvml.Return) {
			f.call("GetUUID")
			if d.uuidRC != nvml.SUCCESS {
				return "", d.uuidRC
			}
			return d.uuid, nvml.SUCCESS
		},
		GetNameFunc: func() (string, nvml.Return) {
			f.call("GetName")
			if d.nameRC != nvml.SUCCESS {
				return "", d.nameRC
			}
			return d.name, nvml.SUCCESS
		},
		GetMemoryInfoFunc: func() (nvml.Memory, nvml.Return) {
			f.call("GetMemoryInfo")
			if d.memRC != nvml.SUCCESS {
				return nvml.Memory{}, d.memRC
			}
			return nvml.Memory{Total: d.total, Used: d.used, Free: d.total - d.used}, nvml.SUCCESS
		},
		GetUtilizationRatesFunc: func() (nvml.Utilization, nvml.Return) {
			f.call("GetUtilizationRates")
			if d.utilRC != nvml.SUCCESS {
				return nvml.Utilization{}, d.utilRC
			}
			return nvml.Utilization{Gpu: d.util, Memory: d.memUtil}, nvml.SUCCESS
		},
		GetTemperatureFunc: func(sensor nvml.TemperatureSensors) (uint32, nvml.Return) {
			f.call("GetTemperature")
			if sensor != nvml.TEMPERATURE_GPU {
				return 0, nvml.ERROR_INVALID_ARGUMENT
			}
			if d.tempRC != nvml.SUCCESS {
				return 0, d.tempRC
			}
			return d.temp, nvml.SUCCESS
		},
		GetPciInfoFunc: func() (nvml.PciInfo, nvml.Return) {
			f.call("GetPciInfo")
			if d.pciRC != nvml.SUCCESS {
				return nvml.PciInfo{}, d.pciRC
			}
			return nvml.PciInfo{BusId: busIDArray(d.bus), PciDeviceId: 0x233010de}, nvml.SUCCESS
		},
	}
}

// iface returns the mock as the nvml.Interface newNVML takes.
func (f *mockLib) iface() *mock.Interface {
	return &mock.Interface{
		InitFunc: func() nvml.Return {
			f.call("Init")
			if f.initRC == nvml.SUCCESS {
				f.mu.Lock()
				f.live = true
				f.mu.Unlock()
			}
			return f.initRC
		},
		ShutdownFunc: func() nvml.Return {
			f.call("Shutdown")
			f.mu.Lock()
			defer f.mu.Unlock()
			f.live = false
			f.shutdowns++
			return nvml.SUCCESS
		},
		SystemGetDriverVersionFunc: func() (string, nvml.Return) {
			f.call("SystemGetDriverVersion")
			return "550.127.08", nvml.SUCCESS
		},
		DeviceGetCountFunc: func() (int, nvml.Return) {
			f.call("DeviceGetCount")
			return len(f.devs), f.countRC
		},
		DeviceGetHandleByIndexFunc: func(index int) (nvml.Device, nvml.Return) {
			f.call(fmt.Sprintf("DeviceGetHandleByIndex(%d)", index))
			if index < 0 || index >= len(f.devs) {
				return nil, nvml.ERROR_INVALID_ARGUMENT
			}
			if rc := f.devs[index].handleRC; rc != nvml.SUCCESS {
				return nil, rc
			}
			return f.device(index), nvml.SUCCESS
		},
	}
}

// h100Devs returns n mock devices that match FakeH100(n) when healthy.
func h100Devs(n int) []mockDev {
	devs := make([]mockDev, n)
	for i, g := range FakeH100(n) {
		devs[i] = mockDev{uuid: g.UUID, name: g.Name, bus: g.PCIBusID, total: g.MemoryTotal, used: g.MemoryUsed, temp: uint32(g.Temperature)}
	}
	return devs
}

// listMock initialises NVML over lib and lists it once, failing the test on any error.
func listMock(t *testing.T, lib nvml.Interface, have nvmlFeatures) (*NVML, []GPU) {
	t.Helper()
	inv, err := newNVML(lib, have)
	if err != nil {
		t.Fatal(err)
	}
	gpus, err := inv.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return inv, gpus
}

func TestNVMLListH100(t *testing.T) {
	for _, n := range []int{0, 1, 2, 8} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			f := &mockLib{devs: h100Devs(n)}
			inv, gpus := listMock(t, f.iface(), allFeatures())
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
	f := &mockLib{devs: h100Devs(1)}
	inv, err := newNVML(f.iface(), allFeatures())
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
	want := []string{"Init", "SystemGetDriverVersion", "DeviceGetCount", "DeviceGetHandleByIndex(0)",
		"GetUUID", "GetName", "GetMemoryInfo", "GetUtilizationRates", "GetTemperature", "GetPciInfo", "Shutdown"}
	if !slices.Equal(f.calls, want) {
		t.Errorf("calls:\n got %v\nwant %v", f.calls, want)
	}
	if _, err := inv.List(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("List after Close: %v, want ErrClosed", err)
	}
}

func TestNVMLInitErrors(t *testing.T) {
	for _, tc := range []struct {
		rc         nvml.Return
		is         []error
		isNot      []error
		reasonPart string
	}{
		{nvml.ERROR_DRIVER_NOT_LOADED, []error{ErrNVML, ErrNoDriver, ErrDriverNotLoaded}, []error{ErrLibraryNotFound}, "NVIDIA driver not loaded"},
		{nvml.ERROR_LIBRARY_NOT_FOUND, []error{ErrNVML, ErrNoDriver, ErrLibraryNotFound}, []error{ErrDriverNotLoaded}, "NVML library not found"},
		{nvml.ERROR_LIB_RM_VERSION_MISMATCH, []error{ErrNVML, ErrNoDriver}, []error{ErrLibraryNotFound, ErrDriverNotLoaded}, "version mismatch"},
		{nvml.ERROR_NO_PERMISSION, []error{ErrNVML, ErrNoPermission}, []error{ErrNoDriver}, "Insufficient Permissions"},
		{nvml.ERROR_UNKNOWN, []error{ErrNVML}, []error{ErrNoDriver, ErrGPULost}, "Unknown Error"},
	} {
		t.Run(fmt.Sprint(int32(tc.rc)), func(t *testing.T) {
			f := &mockLib{initRC: tc.rc}
			inv, err := newNVML(f.iface(), allFeatures())
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
			if slices.Contains(f.calls, "DeviceGetCount") || slices.Contains(f.calls, "SystemGetDriverVersion") {
				t.Errorf("queries after a failed Init: %v", f.calls)
			}
		})
	}
}

func TestNVMLDeviceFaults(t *testing.T) {
	devs := h100Devs(8)
	devs[0].handleRC = nvml.ERROR_NO_PERMISSION // hidden from us: left out
	devs[1].memRC = nvml.ERROR_GPU_IS_LOST      // fails its health queries: unhealthy
	devs[2].utilRC = nvml.ERROR_NOT_SUPPORTED   // MIG-like: utilization unknown, healthy
	devs[3].uuidRC = nvml.ERROR_UNKNOWN         // no identity: unhealthy
	devs[4].handleRC = nvml.ERROR_RESET_REQUIRED
	devs[5].pciRC = nvml.ERROR_NOT_SUPPORTED
	devs[5].nameRC = nvml.ERROR_NOT_SUPPORTED
	devs[6].util, devs[6].memUtil = 250, 100  // out of range: clamped
	devs[2].tempRC = nvml.ERROR_NOT_SUPPORTED // no temperature sensor: -1, healthy
	devs[7].tempRC = nvml.ERROR_GPU_IS_LOST   // lost on the temperature query: unhealthy
	f := &mockLib{devs: devs}
	_, gpus := listMock(t, f.iface(), allFeatures())
	byIndex := map[int]GPU{}
	for _, g := range gpus {
		byIndex[g.Index] = g
	}
	if _, ok := byIndex[0]; ok || len(gpus) != 7 {
		t.Errorf("device 0 (NO_PERMISSION) should be left out; got %d GPUs", len(gpus))
	}
	if g := byIndex[1]; g.Healthy || g.HealthReason != "nvmlDeviceGetMemoryInfo: GPU is lost" || g.UUID != devs[1].uuid {
		t.Errorf("lost GPU: %+v", g)
	}
	if g := byIndex[2]; !g.Healthy || g.UtilizationGPU != -1 || g.UtilizationMemory != -1 || g.Temperature != -1 || g.MemoryTotal != H100Memory {
		t.Errorf("GPU without utilization: %+v", g)
	}
	if g := byIndex[3]; g.Healthy || g.UUID != "" || !strings.Contains(g.HealthReason, "nvmlDeviceGetUUID") {
		t.Errorf("GPU without UUID: %+v", g)
	}
	if g := byIndex[4]; g.Healthy || g.Index != 4 || !strings.Contains(g.HealthReason, "restart") {
		t.Errorf("GPU needing reset: %+v", g)
	}
	if g := byIndex[5]; !g.Healthy || g.Name != "" || g.PCIBusID != "" || g.UUID != devs[5].uuid {
		t.Errorf("no name / no PCI info: %+v", g)
	}
	if g := byIndex[6]; !g.Healthy || g.UtilizationGPU != 100 || g.UtilizationMemory != 100 || g.Temperature != H100IdleTemperature {
		t.Errorf("clamped utilization: %+v", g)
	}
	if g := byIndex[7]; g.Healthy || g.HealthReason != "nvmlDeviceGetTemperature: GPU is lost" {
		t.Errorf("GPU lost on the temperature query: %+v", g)
	}
}

func TestNVMLCountError(t *testing.T) {
	f := &mockLib{devs: h100Devs(2), countRC: nvml.ERROR_UNKNOWN}
	inv, err := newNVML(f.iface(), allFeatures())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := inv.List(context.Background()); !errors.Is(err, ErrNVML) || errors.Is(err, ErrNoDriver) {
		t.Errorf("List = %v, want an NVML error that is not ErrNoDriver", err)
	}
}

// TestNVMLOptionalFunctionsMissing: a library without the optional functions is never
// asked for them (with the real library the call would end the process).
func TestNVMLOptionalFunctionsMissing(t *testing.T) {
	f := &mockLib{devs: h100Devs(1)}
	inv, gpus := listMock(t, f.iface(), nvmlFeatures{})
	if len(gpus) != 1 {
		t.Fatalf("List = %v", gpus)
	}
	if g := gpus[0]; !g.Healthy || g.UtilizationGPU != -1 || g.Temperature != -1 || g.PCIBusID != "" || g.UUID != FakeUUID(0) {
		t.Errorf("%+v", g)
	}
	if inv.Info().DriverVersion != "" {
		t.Errorf("driver version without the function: %q", inv.Info().DriverVersion)
	}
	for _, c := range []string{"SystemGetDriverVersion", "GetUtilizationRates", "GetPciInfo", "GetTemperature"} {
		if slices.Contains(f.calls, c) {
			t.Errorf("%s called though the library lacks it: %v", c, f.calls)
		}
	}
}

func TestNVMLListCancelled(t *testing.T) {
	f := &mockLib{devs: h100Devs(2)}
	inv, err := newNVML(f.iface(), allFeatures())
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
	f := &mockLib{devs: h100Devs(8)}
	inv, err := newNVML(f.iface(), allFeatures())
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

// TestNVMLDGXH100Mock lists go-nvml's own DGX H100 model (8 GPUs) with one GPU lost and
// one without utilization. The model does not implement utilization, so the test adds it.
func TestNVMLDGXH100Mock(t *testing.T) {
	s := dgxh100.New()
	for i, d := range s.Devices {
		dev := d.(*server.Device)
		dev.GetTemperatureFunc = func(nvml.TemperatureSensors) (uint32, nvml.Return) { return 40 + uint32(i), nvml.SUCCESS }
		switch i {
		case 3:
			dev.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) { return nvml.Utilization{}, nvml.ERROR_NOT_SUPPORTED }
		case 5:
			dev.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) { return nvml.Utilization{}, nvml.ERROR_GPU_IS_LOST }
		default:
			dev.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) { return nvml.Utilization{Gpu: 7, Memory: 3}, nvml.SUCCESS }
		}
	}
	inv, gpus := listMock(t, s, allFeatures())
	defer inv.Close()
	if v := inv.Info().DriverVersion; v != "550.54.15" {
		t.Errorf("driver version %q", v)
	}
	if len(gpus) != 8 {
		t.Fatalf("got %d GPUs, want 8", len(gpus))
	}
	seen := map[string]bool{}
	for i, g := range gpus {
		if g.Index != i || !strings.HasPrefix(g.UUID, "GPU-") || seen[g.UUID] || g.Name != H100Name || g.MemoryTotal == 0 {
			t.Errorf("GPU %d: %+v", i, g)
		}
		seen[g.UUID] = true
		switch i {
		case 3:
			if !g.Healthy || g.UtilizationGPU != -1 {
				t.Errorf("GPU 3 (utilization NOT_SUPPORTED): %+v", g)
			}
		case 5:
			if g.Healthy || g.HealthReason != "nvmlDeviceGetUtilizationRates: GPU is lost" {
				t.Errorf("GPU 5 (lost): %+v", g)
			}
		default:
			if !g.Healthy || g.UtilizationGPU != 7 || g.UtilizationMemory != 3 || g.Temperature != 40+i {
				t.Errorf("GPU %d: %+v", i, g)
			}
		}
	}
}

func TestProbeNVML(t *testing.T) {
	all := []string{"nvmlInit_v2", "nvmlShutdown", "nvmlDeviceGetCount_v2", "nvmlDeviceGetHandleByIndex_v2",
		"nvmlDeviceGetUUID", "nvmlDeviceGetName", "nvmlDeviceGetMemoryInfo", "nvmlDeviceGetUtilizationRates",
		"nvmlDeviceGetPciInfo_v3", "nvmlSystemGetDriverVersion", "nvmlDeviceGetTemperature"}
	without := func(names ...string) []string {
		return slices.DeleteFunc(slices.Clone(all), func(n string) bool { return slices.Contains(names, n) })
	}
	for _, tc := range []struct {
		name    string
		exports []string
		want    nvmlFeatures
		missing string // the required function reported missing, if any
	}{
		{"everything", all, allFeatures(), ""},
		{"no optional functions", without("nvmlDeviceGetUtilizationRates", "nvmlDeviceGetPciInfo_v3", "nvmlSystemGetDriverVersion", "nvmlDeviceGetTemperature"), nvmlFeatures{}, ""},
		{"older versions", append(without("nvmlInit_v2", "nvmlDeviceGetCount_v2", "nvmlDeviceGetPciInfo_v3"),
			"nvmlInit", "nvmlDeviceGetCount", "nvmlDeviceGetPciInfo_v2"), allFeatures(), ""},
		{"no count", without("nvmlDeviceGetCount_v2"), nvmlFeatures{}, "nvmlDeviceGetCount_v2"},
		{"no shutdown", without("nvmlShutdown"), nvmlFeatures{}, "nvmlShutdown"},
		{"not NVML", []string{"malloc"}, nvmlFeatures{}, "nvmlInit_v2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := probeNVML(func(name string) error {
				if slices.Contains(tc.exports, name) {
					return nil
				}
				return errors.New("undefined symbol: " + name)
			})
			if tc.missing == "" {
				if err != nil || got != tc.want {
					t.Errorf("probeNVML = %+v, %v; want %+v", got, err, tc.want)
				}
				return
			}
			if !errors.Is(err, ErrNoDriver) || !strings.Contains(err.Error(), tc.missing) || got != (nvmlFeatures{}) {
				t.Errorf("probeNVML = %+v, %v; want ErrNoDriver naming %s", got, err, tc.missing)
			}
		})
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
	if info := inv.Info(); info.Backend != BackendCPU || !strings.HasPrefix(info.Reason, "NVML library not found (") ||
		!strings.Contains(info.Reason, missing) {
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

// TestOpenNotNVML: a library that is not NVML is refused before go-nvml calls into it
// (the call would end the process with "symbol lookup error").
func TestOpenNotNVML(t *testing.T) {
	_, err := OpenNVML(NVMLOptions{Library: "libc.so.6"})
	if !errors.Is(err, ErrNoDriver) || errors.Is(err, ErrLibraryNotFound) || !strings.Contains(err.Error(), "nvmlInit_v2") {
		t.Fatalf("OpenNVML(libc) = %v, want a missing-function ErrNoDriver", err)
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
