package gpu

import (
	"context"
	"strconv"
	"strings"
)

// Environment variable names the launcher sets for a trainer.
const (
	EnvCUDAVisibleDevices = "CUDA_VISIBLE_DEVICES"
	EnvCUDADeviceOrder    = "CUDA_DEVICE_ORDER"
	// PCIBusIDOrder makes CUDA number devices as NVML and nvidia-smi do; without it CUDA
	// puts the fastest device first and indexes disagree (ai-toolkit issue #347).
	PCIBusIDOrder = "PCI_BUS_ID"
)

// CUDAVisibleDevices is the CUDA_VISIBLE_DEVICES value for the given GPU UUIDs:
// "GPU-…,GPU-…". CUDA accepts UUIDs there, which keeps the trainer on exactly the
// reserved devices however CUDA would number them. A UUID given without its "GPU-"
// prefix gets one.
func CUDAVisibleDevices(uuids []string) string {
	parts := make([]string, len(uuids))
	for i, u := range uuids {
		if !hasUUIDPrefix(u) {
			u = "GPU-" + u
		}
		parts[i] = u
	}
	return strings.Join(parts, ",")
}

// LaunchEnv returns the "KEY=value" pairs the launcher adds to a trainer's environment
// for decision d. A CPU job gets an empty CUDA_VISIBLE_DEVICES, which hides every GPU.
func LaunchEnv(d Decision) []string {
	return []string{
		EnvCUDADeviceOrder + "=" + PCIBusIDOrder,
		EnvCUDAVisibleDevices + "=" + CUDAVisibleDevices(d.UUIDs),
	}
}

// FilterVisible applies the daemon's own CUDA_VISIBLE_DEVICES (spec) to an inventory
// list, as SimpleTuner's torch-based inventory does implicitly: entries are indexes or
// UUIDs (a unique prefix is enough, as CUDA allows), and, as in CUDA, parsing stops at
// the first entry that matches nothing. An empty spec hides every GPU. The GPUs keep
// their NVML indexes. Callers apply it only when the variable is set.
func FilterVisible(gpus []GPU, spec string) []GPU {
	var out []GPU
	seen := make(map[int]bool)
	for item := range strings.SplitSeq(spec, ",") {
		item = strings.TrimSpace(item)
		k := visibleMatch(gpus, item)
		if k < 0 {
			break
		}
		if !seen[k] {
			seen[k] = true
			out = append(out, gpus[k])
		}
	}
	return out
}

// visibleMatch returns the position in gpus that one CUDA_VISIBLE_DEVICES entry names,
// or -1.
func visibleMatch(gpus []GPU, item string) int {
	if item == "" {
		return -1
	}
	if i, err := strconv.Atoi(item); err == nil {
		for k, g := range gpus {
			if g.Index == i {
				return k
			}
		}
		return -1
	}
	item = strings.ToUpper(item)
	if !strings.HasPrefix(item, "GPU-") {
		item = "GPU-" + item
	}
	found := -1
	for k, g := range gpus {
		if g.UUID != "" && strings.HasPrefix(strings.ToUpper(g.UUID), item) {
			if found >= 0 {
				return -1 // ambiguous prefix
			}
			found = k
		}
	}
	return found
}

// Visible is an Inventory that shows only the GPUs its Spec (the daemon's own
// CUDA_VISIBLE_DEVICES) names, like FilterVisible. Wrap the inventory in it only when
// the variable is set: an empty Spec hides every GPU.
type Visible struct {
	Inventory
	Spec string
}

// List lists the wrapped inventory and filters it.
func (v Visible) List(ctx context.Context) ([]GPU, error) {
	gpus, err := v.Inventory.List(ctx)
	if err != nil {
		return nil, err
	}
	return FilterVisible(gpus, v.Spec), nil
}
