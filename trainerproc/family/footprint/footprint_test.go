package footprint

import "testing"

func TestMemoryParts(t *testing.T) {
	m := Memory{Weights: 1, Gradients: 2, Optimizer: 4, Activations: 8, Workspace: 16, HostCache: 32}
	if m.Device() != 27 || m.Host() != 36 || m.Total() != 63 {
		t.Fatalf("device %d host %d total %d", m.Device(), m.Host(), m.Total())
	}
	big := Memory{Weights: 3 << 20, Workspace: 512 << 30}
	if got, want := big.String(), "weights 3.0 MiB, attention scratch 512 GiB"; got != want {
		t.Fatalf("String = %q, want %q", got, want)
	}
}
