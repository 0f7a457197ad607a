package cuda

import (
	"errors"
	"fmt"
	"sort"
)

// deviceMemory is the raw allocator under the cache (cuMemAlloc/cuMemFree on a GPU).
type deviceMemory interface {
	alloc(bytes int64) (uintptr, error)
	free(p uintptr) error
}

// errDeviceFull is what a deviceMemory returns when the device is out of memory; the cache
// then releases what it holds and tries once more.
var errDeviceFull = errors.New("cuda: device memory full")

// Size classes: small blocks round up to 512 bytes, large ones to 2 MiB. A training step
// allocates the same shapes every step, so exact size classes are reused from the second
// step on without cuMemAlloc (which synchronises the device) in the loop.
const (
	smallRound = 512
	largeRound = 2 << 20
	largeFrom  = 1 << 20
)

// roundAlloc is the size class of a request.
func roundAlloc(bytes int64) int64 {
	if bytes <= 0 {
		return smallRound
	}
	r := int64(smallRound)
	if bytes >= largeFrom {
		r = largeRound
	}
	return (bytes + r - 1) / r * r
}

// cachingAllocator keeps freed blocks by size class for reuse. It is driven by the backend's
// one goroutine, like everything else in it, so it has no lock.
type cachingAllocator struct {
	mem   deviceMemory
	limit int64 // 0: no limit beyond the device's own

	pool   map[int64][]uintptr // free blocks by size class
	live   map[uintptr]int64   // allocated block → size class
	inUse  int64               // bytes in live blocks
	cached int64               // bytes in pool
	peak   int64               // high-water mark of inUse
}

func newCachingAllocator(mem deviceMemory, limit int64) *cachingAllocator {
	return &cachingAllocator{mem: mem, limit: limit, pool: map[int64][]uintptr{}, live: map[uintptr]int64{}}
}

// alloc returns a block of at least bytes.
func (c *cachingAllocator) alloc(bytes int64) (uintptr, error) {
	size := roundAlloc(bytes)
	if c.limit > 0 && c.inUse+size > c.limit {
		return 0, fmt.Errorf("%w: %d bytes with %d in use of a %d limit", errDeviceFull, size, c.inUse, c.limit)
	}
	if blocks := c.pool[size]; len(blocks) > 0 {
		p := blocks[len(blocks)-1]
		c.pool[size] = blocks[:len(blocks)-1]
		c.cached -= size
		c.take(p, size)
		return p, nil
	}
	p, err := c.mem.alloc(size)
	if errors.Is(err, errDeviceFull) && c.cached > 0 {
		if rerr := c.release(); rerr != nil {
			return 0, rerr
		}
		p, err = c.mem.alloc(size)
	}
	if err != nil {
		return 0, err
	}
	c.take(p, size)
	return p, nil
}

func (c *cachingAllocator) take(p uintptr, size int64) {
	c.live[p] = size
	c.inUse += size
	c.peak = max(c.peak, c.inUse)
}

// free returns a block to the pool. Freeing an unknown block is a double free or a foreign
// pointer: a bug, reported as an error.
func (c *cachingAllocator) free(p uintptr) error {
	size, ok := c.live[p]
	if !ok {
		return fmt.Errorf("cuda: free of unknown device block %#x", p)
	}
	delete(c.live, p)
	c.inUse -= size
	c.pool[size] = append(c.pool[size], p)
	c.cached += size
	return nil
}

// release gives every cached block back to the device, largest classes first.
func (c *cachingAllocator) release() error {
	sizes := make([]int64, 0, len(c.pool))
	for s := range c.pool {
		sizes = append(sizes, s)
	}
	sort.Slice(sizes, func(i, j int) bool { return sizes[i] > sizes[j] })
	var first error
	for _, s := range sizes {
		for _, p := range c.pool[s] {
			if err := c.mem.free(p); err != nil && first == nil {
				first = err
			}
			c.cached -= s
		}
		delete(c.pool, s)
	}
	return first
}

// close frees everything, live blocks included.
func (c *cachingAllocator) close() error {
	err := c.release()
	for p, s := range c.live {
		if ferr := c.mem.free(p); ferr != nil && err == nil {
			err = ferr
		}
		c.inUse -= s
		delete(c.live, p)
	}
	return err
}
