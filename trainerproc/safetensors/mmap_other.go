//go:build !unix

package safetensors

import "fmt"

// Mapped is unavailable off Unix; use Open, whose positioned reads give the same one-copy
// loading without a mapping.
type Mapped struct{ *Reader }

// OpenMapped reports ErrUnsupported off Unix.
func OpenMapped(path string) (*Mapped, error) {
	return nil, fmt.Errorf("%w: memory mapping %s on this platform", ErrUnsupported, path)
}

// View reports ErrUnsupported off Unix.
func (m *Mapped) View(name string) ([]byte, error) {
	return nil, fmt.Errorf("%w: memory mapping", ErrUnsupported)
}

// Close does nothing off Unix.
func (m *Mapped) Close() error { return nil }
