//go:build unix && !linux

package safetensors

// release is a no-op where madvise(MADV_DONTNEED) is not wired up: the mapped pages just
// stay resident until Close.
func release([]byte) {}
