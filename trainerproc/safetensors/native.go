package safetensors

import (
	"fmt"
	"unsafe"
)

// nativeLittleEndian reports whether float32 values are laid out in memory as the file
// stores them, which lets F32 tensors be read straight into a []float32 without staging.
func nativeLittleEndian() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}

// float32Bytes views v's memory as bytes (no copy).
func float32Bytes(v []float32) []byte {
	if len(v) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), 4*len(v))
}

// aligned4 reports whether b starts on a 4-byte boundary (a caller may pass a sub-slice).
func aligned4(b []byte) bool {
	return len(b) == 0 || uintptr(unsafe.Pointer(&b[0]))%4 == 0
}

// bytesFloat32 views b (length a multiple of 4, 4-byte aligned: check aligned4 first) as
// float32 values (no copy).
func bytesFloat32(b []byte) []float32 {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), len(b)/4)
}

// closedReaderAt replaces a reader's source once its mapping is gone, so a read after Close
// is an error instead of a fault.
type closedReaderAt struct{}

func (closedReaderAt) ReadAt([]byte, int64) (int, error) {
	return 0, fmt.Errorf("%w: read after Close", ErrInvalid)
}

// addrOf is the address of b's first byte (b non-empty), for page alignment.
func addrOf(b []byte) int { return int(uintptr(unsafe.Pointer(&b[0]))) }
