package gpu

import (
	"maps"
	"math"
	"slices"
)

// AllocationView is the "gpu_allocation" object of GET /api/system/status with
// include_allocation=true, and the source of the "local" block of GET /api/queue/stats
// (docs/compatibility.md §11). Index lists hold NVML indexes.
type AllocationView struct {
	AllocatedGPUs    []int              `json:"allocated_gpus"`
	AvailableGPUs    []int              `json:"available_gpus"` // healthy and not held
	RunningLocalJobs int                `json:"running_local_jobs"`
	Devices          []DeviceAllocation `json:"devices"`
}

// DeviceAllocation is one device in AllocationView. UUID and Healthy are additions to
// SimpleTuner's shape.
type DeviceAllocation struct {
	Index     int     `json:"index"`
	UUID      string  `json:"uuid"`
	Name      string  `json:"name"`
	MemoryGB  float64 `json:"memory_gb"` // MemoryTotal / 1024³, two decimals
	Allocated bool    `json:"allocated"`
	JobID     *string `json:"job_id"` // null when free
	Healthy   bool    `json:"healthy"`
}

// View builds the allocation view of gpus under held (job ID → UUIDs). It is pure.
func View(gpus []GPU, held map[string][]string) AllocationView {
	owner := make(map[string]string)
	for _, job := range slices.Sorted(maps.Keys(held)) { // sorted, so a (corrupt) double holding resolves the same way each time
		for _, u := range held[job] {
			if _, ok := owner[u]; !ok {
				owner[u] = job
			}
		}
	}
	v := AllocationView{
		AllocatedGPUs:    []int{},
		AvailableGPUs:    []int{},
		RunningLocalJobs: len(held),
		Devices:          []DeviceAllocation{},
	}
	for _, g := range gpus {
		d := DeviceAllocation{
			Index:    g.Index,
			UUID:     g.UUID,
			Name:     g.Name,
			MemoryGB: gib2(g.MemoryTotal),
			Healthy:  g.Healthy,
		}
		if job, ok := owner[g.UUID]; ok && g.UUID != "" {
			d.Allocated, d.JobID = true, &job
			v.AllocatedGPUs = append(v.AllocatedGPUs, g.Index)
		} else if g.Healthy && g.UUID != "" {
			v.AvailableGPUs = append(v.AvailableGPUs, g.Index)
		}
		v.Devices = append(v.Devices, d)
	}
	return v
}

// StatusGPU is one entry of the "gpus" list of GET /api/system/status
// (docs/compatibility.md §11).
type StatusGPU struct {
	Index              int      `json:"index"`
	Name               string   `json:"name"`
	Backend            string   `json:"backend"`
	UtilizationPercent *float64 `json:"utilization_percent"` // null when the device does not report it
	MemoryPercent      *float64 `json:"memory_percent"`      // used / total, one decimal; null when total is unknown
}

// StatusGPUs converts an inventory list for the system status.
func StatusGPUs(gpus []GPU) []StatusGPU {
	out := make([]StatusGPU, 0, len(gpus))
	for _, g := range gpus {
		s := StatusGPU{Index: g.Index, Name: g.Name, Backend: BackendCUDA}
		if g.UtilizationGPU >= 0 {
			u := float64(g.UtilizationGPU)
			s.UtilizationPercent = &u
		}
		if g.MemoryTotal > 0 {
			m := math.Round(float64(g.MemoryUsed)/float64(g.MemoryTotal)*1000) / 10
			s.MemoryPercent = &m
		}
		out = append(out, s)
	}
	return out
}

// gib2 is bytes in GiB rounded to two decimals, as SimpleTuner's memory_gb.
func gib2(b uint64) float64 {
	return math.Round(float64(b)/(1<<30)*100) / 100
}
