package cpu

import (
	"fmt"

	"simpletuner/trainerproc/engine"
)

// checkUpsample panics unless the buffers hold [nc,h,w] and [nc,h·factor,w·factor].
func checkUpsample(what string, small, large, nc, h, w, factor int) {
	if factor < 1 || nc < 0 || h < 0 || w < 0 {
		panic(fmt.Sprintf("cpu: %s: factor %d over [%d,%d,%d]", what, factor, nc, h, w))
	}
	mustLen(what+" small", small, nc*h*w)
	mustLen(what+" large", large, nc*h*w*factor*factor)
}

// UpsampleNearest implements engine.Backend: each source row is widened once and the widened
// row copied factor times.
func (b *Backend[T]) UpsampleNearest(dst, src engine.Buffer, nc, h, w, factor int) {
	d, s := Data[T](dst), Data[T](src)
	checkUpsample("UpsampleNearest", len(s), len(d), nc, h, w, factor)
	ow := w * factor
	b.pool.rangeFor(nc*h, grainFor(ow*factor), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			sr := s[r*w : (r+1)*w]
			first := d[r*factor*ow : (r*factor+1)*ow]
			for x, v := range sr {
				px := first[x*factor : (x+1)*factor]
				for i := range px {
					px[i] = v
				}
			}
			for a := 1; a < factor; a++ {
				copy(d[(r*factor+a)*ow:(r*factor+a+1)*ow], first)
			}
		}
	})
}

// UpsampleNearestBackward implements engine.Backend: each dx element sums its factor×factor
// block row by row, in a fixed order.
func (b *Backend[T]) UpsampleNearestBackward(dx, dy engine.Buffer, nc, h, w, factor int) {
	d, g := Data[T](dx), Data[T](dy)
	checkUpsample("UpsampleNearestBackward", len(d), len(g), nc, h, w, factor)
	ow := w * factor
	b.pool.rangeFor(nc*h, grainFor(ow*factor), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			out := d[r*w : (r+1)*w]
			for x := range out {
				var acc T
				for a := 0; a < factor; a++ {
					for _, v := range g[(r*factor+a)*ow+x*factor : (r*factor+a)*ow+(x+1)*factor] {
						acc += v
					}
				}
				out[x] = acc
			}
		}
	})
}
