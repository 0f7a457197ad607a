//go:build !cgo || nonvml

package gpu

import "fmt"

// openNVML: this build has no NVML binding. go-nvml needs cgo, so a build with the
// "nonvml" tag (the fully static daemon, CGO_ENABLED=0) or without cgo at all cannot
// load libnvidia-ml; the host is treated as having no GPUs and the reason says why.
func openNVML(NVMLOptions) (Inventory, error) {
	return nil, fmt.Errorf("gpu: %w", ErrNotBuiltIn)
}
