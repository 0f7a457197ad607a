package gpu

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

func TestView(t *testing.T) {
	gpus := FakeH100(4)
	gpus[3].Healthy = false
	v := View(gpus, map[string][]string{"3f2a9c1d": {FakeUUID(0), FakeUUID(1)}, "cpu": {}})
	if !slices.Equal(v.AllocatedGPUs, []int{0, 1}) || !slices.Equal(v.AvailableGPUs, []int{2}) || v.RunningLocalJobs != 2 {
		t.Errorf("view = %+v", v)
	}
	if len(v.Devices) != 4 {
		t.Fatalf("devices = %+v", v.Devices)
	}
	d0 := v.Devices[0]
	if !d0.Allocated || d0.JobID == nil || *d0.JobID != "3f2a9c1d" || d0.Name != H100Name || d0.MemoryGB != 79.65 {
		t.Errorf("device 0 = %+v", d0)
	}
	if d := v.Devices[2]; d.Allocated || d.JobID != nil || !d.Healthy {
		t.Errorf("device 2 = %+v", d)
	}
	if d := v.Devices[3]; d.Allocated || d.Healthy {
		t.Errorf("device 3 = %+v", d)
	}

	b, err := json.Marshal(View(nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"allocated_gpus":[],"available_gpus":[],"running_local_jobs":0,"devices":[]}`; string(b) != want {
		t.Errorf("empty view JSON = %s, want %s", b, want)
	}
	b, _ = json.Marshal(v.Devices[2])
	if !strings.Contains(string(b), `"job_id":null`) || !strings.Contains(string(b), `"memory_gb":79.65`) {
		t.Errorf("device JSON = %s", b)
	}
}

func TestLedgerView(t *testing.T) {
	a := NewAllocator(NewFake(FakeH100(2)...), Limits{})
	if _, err := a.Reserve(context.Background(), "job", Request{}); err != nil {
		t.Fatal(err)
	}
	v, err := a.View(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(v.AllocatedGPUs, []int{0}) || !slices.Equal(v.AvailableGPUs, []int{1}) || *v.Devices[0].JobID != "job" {
		t.Errorf("view = %+v", v)
	}
}

func TestStatusGPUs(t *testing.T) {
	gpus := FakeH100(2)
	gpus[0].UtilizationGPU, gpus[0].MemoryUsed = 12, gpus[0].MemoryTotal*401/1000
	gpus[1].UtilizationGPU, gpus[1].MemoryTotal = -1, 0
	s := StatusGPUs(gpus)
	if len(s) != 2 || s[0].Backend != BackendCUDA || *s[0].UtilizationPercent != 12 || *s[0].MemoryPercent != 40.1 {
		t.Errorf("gpu 0 = %+v", s[0])
	}
	if s[1].UtilizationPercent != nil || s[1].MemoryPercent != nil {
		t.Errorf("gpu 1 = %+v", s[1])
	}
	if b, _ := json.Marshal(StatusGPUs(nil)); string(b) != "[]" {
		t.Errorf("no GPUs = %s", b)
	}
}
