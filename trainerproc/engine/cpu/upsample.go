package cpu

import (
	"fmt"

	"simpletuner/trainerproc/engine"
)

// upsampleRows checks the buffers of a nearest upsampling ([nc,h,w] and [nc,h·factor,
// w·factor]) and calls fn for every source row r of small, in parallel, with that row and the
// factor rows of large it expands to (factor·w·factor elements).
func upsampleRows[T Float](p *pool, what string, small, large engine.Buffer, nc, h, w, factor int, fn func(sr, lr []T)) {
	s, l := Data[T](small), Data[T](large)
	if factor < 1 || nc < 0 || h < 0 || w < 0 {
		panic(fmt.Sprintf("cpu: %s: factor %d over [%d,%d,%d]", what, factor, nc, h, w))
	}
	mustLen(what+" small", len(s), nc*h*w)
	mustLen(what+" large", len(l), nc*h*w*factor*factor)
	block := factor * w * factor
	p.rangeFor(nc*h, grainFor(block), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			fn(s[r*w:(r+1)*w], l[r*block:(r+1)*block])
		}
	})
}

// UpsampleNearest implements engine.Backend: each source row is widened once and the widened
// row copied factor times.
func (b *Backend[T]) UpsampleNearest(dst, src engine.Buffer, nc, h, w, factor int) {
	ow := w * factor
	upsampleRows(b.pool, "UpsampleNearest", src, dst, nc, h, w, factor, func(sr, lr []T) {
		for x, v := range sr {
			px := lr[x*factor : (x+1)*factor]
			for i := range px {
				px[i] = v
			}
		}
		for a := 1; a < factor; a++ {
			copy(lr[a*ow:(a+1)*ow], lr[:ow])
		}
	})
}

// UpsampleNearestBackward implements engine.Backend: each dx element sums its factor×factor
// block row by row, in a fixed order.
func (b *Backend[T]) UpsampleNearestBackward(dx, dy engine.Buffer, nc, h, w, factor int) {
	ow := w * factor
	upsampleRows(b.pool, "UpsampleNearestBackward", dx, dy, nc, h, w, factor, func(sr, lr []T) {
		for x := range sr {
			var acc T
			for a := 0; a < factor; a++ {
				for _, v := range lr[a*ow+x*factor : a*ow+(x+1)*factor] {
					acc += v
				}
			}
			sr[x] = acc
		}
	})
}
