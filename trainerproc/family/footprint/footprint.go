// Package footprint holds the memory estimate every model family reports: the bytes a
// training step or a validation image needs at its peak, by what holds them, and how they
// are written for a person. It is a leaf package so that a family's model package and the
// family seam (trainerproc/family) can share the type without importing each other.
package footprint

import (
	"fmt"
	"strings"
)

// Memory is a memory estimate in bytes, by what holds the memory at the step's peak.
type Memory struct {
	// Weights are every parameter: base weights and adapters.
	Weights int64
	// Gradients are one gradient per trainable parameter.
	Gradients int64
	// Optimizer is the optimizer state; it lives in host memory on every backend.
	Optimizer int64
	// Activations are the tensors of the forward and backward pass at the peak.
	Activations int64
	// Workspace is the scratch kernels hold at the peak (attention scores: one head's
	// tokens² values on the CPU, which is what makes high resolutions expensive).
	Workspace int64
	// HostCache is host memory kept beside the tensors: the model's position embeddings and,
	// when sampling, the sampler's image buffers.
	HostCache int64
}

// Device is what lives where the engine keeps its tensors (host memory for the CPU
// backend, the GPU for CUDA): weights, gradients, activations and workspace.
func (m Memory) Device() int64 { return m.Weights + m.Gradients + m.Activations + m.Workspace }

// Host is what lives in host memory whatever the backend: optimizer state and caches.
func (m Memory) Host() int64 { return m.Optimizer + m.HostCache }

// Total is everything, for a backend whose device is host memory.
func (m Memory) Total() int64 { return m.Device() + m.Host() }

// String lists the parts, e.g. "weights 3.9 MiB, gradients 3.9 MiB, optimizer 7.9 MiB,
// activations 1.2 GiB, attention scratch 512 GiB".
func (m Memory) String() string {
	var parts []string
	add := func(name string, v int64) {
		if v > 0 {
			parts = append(parts, name+" "+FormatBytes(v))
		}
	}
	add("weights", m.Weights)
	add("gradients", m.Gradients)
	add("optimizer", m.Optimizer)
	add("activations", m.Activations)
	add("attention scratch", m.Workspace)
	add("host buffers", m.HostCache)
	return strings.Join(parts, ", ")
}

// FormatBytes renders a byte count for a person: "512 GiB", "3.9 MiB", "740 KiB".
func FormatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n), 0
	for v >= unit && i < 4 {
		v /= unit
		i++
	}
	suffix := [...]string{"B", "KiB", "MiB", "GiB", "TiB"}[i]
	if v >= 100 {
		return fmt.Sprintf("%.0f %s", v, suffix)
	}
	return fmt.Sprintf("%.1f %s", v, suffix)
}
