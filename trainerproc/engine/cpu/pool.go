package cpu

import (
	"sync"
	"sync/atomic"
)

// pool runs chunks of a parallel loop on threads-1 persistent workers plus the calling
// goroutine. Work is handed out through an atomic chunk counter, so which goroutine runs a chunk
// varies between runs; kernels therefore never let results depend on that assignment.
type pool struct {
	threads int
	tasks   chan func() // closed by close; workers exit when it is drained
	done    sync.WaitGroup
}

func newPool(threads int) *pool {
	p := &pool{threads: threads, tasks: make(chan func())}
	for i := 1; i < threads; i++ {
		p.done.Add(1)
		go func() {
			defer p.done.Done()
			for f := range p.tasks {
				f()
			}
		}()
	}
	return p
}

func (p *pool) close() {
	close(p.tasks)
	p.done.Wait()
}

// chunks runs fn(c) for every c in [0,n). Nested calls are safe: a worker that is busy is
// simply not handed a task, and the caller runs the remaining chunks itself.
func (p *pool) chunks(n int, fn func(c int)) {
	if n <= 0 {
		return
	}
	if n == 1 || p.threads == 1 {
		for c := 0; c < n; c++ {
			fn(c)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	run := func() {
		for {
			c := int(next.Add(1) - 1)
			if c >= n {
				return
			}
			fn(c)
		}
	}
	helpers := min(p.threads, n) - 1
	for i := 0; i < helpers; i++ {
		wg.Add(1)
		task := func() { defer wg.Done(); run() }
		select {
		case p.tasks <- task:
		default:
			wg.Done() // no idle worker: the caller covers this share
		}
	}
	run()
	wg.Wait()
}

// rangeFor splits [0,n) into chunks of about grain items and runs fn on each [lo,hi).
func (p *pool) rangeFor(n, grain int, fn func(lo, hi int)) {
	if grain < 1 {
		grain = 1
	}
	nc := (n + grain - 1) / grain
	if nc > 4*p.threads && p.threads > 1 {
		// Fewer, larger chunks: enough for load balance, little dispatch overhead.
		nc = 4 * p.threads
	}
	if nc < 1 {
		return
	}
	size := (n + nc - 1) / nc
	p.chunks(nc, func(c int) {
		lo := c * size
		hi := min(lo+size, n)
		if lo < hi {
			fn(lo, hi)
		}
	})
}

// grainFor returns how many items of perItem elements make a chunk worth dispatching.
func grainFor(perItem int) int {
	const target = 1 << 14
	if perItem <= 0 {
		return target
	}
	return max(1, target/perItem)
}
