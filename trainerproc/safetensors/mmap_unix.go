//go:build unix

package safetensors

import (
	"fmt"
	"os"
	"syscall"
)

// Mapped is a safetensors file mapped read-only into memory: tensor bytes are paged in from
// the page cache on demand and never copied onto the Go heap unless the caller asks, so a
// loader can convert or upload each tensor straight from the mapping.
type Mapped struct {
	*Reader
	data []byte
}

// mappedReaderAt serves positioned reads from the mapping (used by the header parser and
// the copying readers).
type mappedReaderAt []byte

func (m mappedReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off > int64(len(m)) {
		return 0, fmt.Errorf("%w: read at %d outside a %d-byte mapping", ErrCorrupt, off, len(m))
	}
	n := copy(p, m[off:])
	if n < len(p) {
		return n, fmt.Errorf("%w: short read at %d", ErrCorrupt, off)
	}
	return n, nil
}

// OpenMapped opens path, maps it read-only and validates its header. The file descriptor
// is closed at once (the mapping keeps the pages reachable); Close unmaps.
func OpenMapped(path string) (*Mapped, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	size := st.Size()
	if size < 8 {
		return nil, fmt.Errorf("%s: %w", path, corruptf("file of %d bytes is shorter than the 8-byte length prefix", size))
	}
	if size != int64(int(size)) {
		return nil, fmt.Errorf("%w: %s is too large to map", ErrUnsupported, path)
	}
	data, err := syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("safetensors: mmap %s: %w", path, err)
	}
	r, err := NewReader(mappedReaderAt(data), size)
	if err != nil {
		_ = syscall.Munmap(data)
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &Mapped{Reader: r, data: data}, nil
}

// View returns the raw bytes of one tensor inside the mapping, without copying. The slice
// is read-only (writing to it faults) and valid only until Close.
func (m *Mapped) View(name string) ([]byte, error) {
	ti, err := m.lookup(name)
	if err != nil {
		return nil, err
	}
	if m.data == nil {
		return nil, fmt.Errorf("%w: %q: mapping closed", ErrInvalid, name)
	}
	start := m.header.DataStart + ti.Begin
	return m.data[start : start+ti.Size() : start+ti.Size()], nil
}

// Close unmaps the file; views obtained before are invalid afterwards.
func (m *Mapped) Close() error {
	if m.data == nil {
		return nil
	}
	err := syscall.Munmap(m.data)
	m.data = nil
	m.Reader.r = closedReaderAt{}
	if err != nil {
		return fmt.Errorf("safetensors: munmap: %w", err)
	}
	return nil
}

// Float32Into decodes a float tensor straight from the mapping into dst: no staging buffer
// at all, so the only memory a load allocates is the destination itself; the tensor's pages
// are then dropped from the resident set (Linux), so RSS stays near the decoded size.
func (m *Mapped) Float32Into(name string, dst []float32) error {
	ti, err := m.float32Target(name, dst)
	if err != nil {
		return err
	}
	raw, err := m.View(name)
	if err != nil {
		return err
	}
	decodeFloat32(ti.DType, raw, dst)
	release(raw)
	return nil
}
