package safetensors

import (
	"os"
	"syscall"
)

// release tells the kernel this process is done with the pages of b (a range of a read-only
// file mapping): they leave the process's resident set but stay in the page cache and refault
// unchanged if read again. Without it a mapped load would count the file in RSS next to the
// decoded weights. Failure only costs memory, so it is ignored.
func release(b []byte) {
	if len(b) == 0 {
		return
	}
	page := os.Getpagesize()
	// Only whole pages inside b may be dropped; the partial ones at the edges may hold a
	// neighbouring tensor that is still being read.
	start := (page - addrOf(b)%page) % page
	end := len(b) - (addrOf(b)+len(b))%page
	if end-start < page {
		return
	}
	_ = syscall.Madvise(b[start:end], syscall.MADV_DONTNEED)
}
