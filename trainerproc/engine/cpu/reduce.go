package cpu

import (
	"simpletuner/trainerproc/engine"
)

// Reduction block sizes. They are constants (not derived from the thread count) so partial sums,
// and hence results, are identical for every thread count.
const (
	flatBlock = 4096 // elements per partial sum of a total reduction
	rowBlock  = 64   // rows per partial sum of a column reduction
	colChunk  = 4096 // columns per task of a column reduction
)

// Reduce implements engine.Backend.
func (b *Backend[T]) Reduce(dst, src engine.Buffer, s engine.Shape3, dstSpan engine.Span, alpha float32) {
	d, sv := Data[T](dst), Data[T](src)
	mustLen("Reduce src", len(sv), s.Size())
	mustLen("Reduce dst", len(d), s.SpanSize(dstSpan))
	b.reduce(d, sv, s, dstSpan, float64(alpha))
}

// reduce sums src [O,M,I] over the dimensions dstSpan leaves out, accumulating in float64.
func (b *Backend[T]) reduce(d, sv []T, s engine.Shape3, dstSpan engine.Span, alpha float64) {
	n := s.Size()
	switch {
	case n == 0:
		for i := range d[:s.SpanSize(dstSpan)] {
			d[i] = 0
		}
	case dstSpan == engine.SpanAll:
		b.pool.rangeFor(n, 1<<15, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				d[i] = T(alpha * float64(sv[i]))
			}
		})
	case dstSpan == engine.SpanNone:
		d[0] = T(alpha * flatSum(b.pool, sv[:n]))
	case dstSpan&engine.SpanInner == 0:
		// Sum each contiguous row first, then reduce the [O,M] row sums by column.
		rows := s.Outer * s.Mid
		rs := make([]float64, rows)
		b.pool.rangeFor(rows, grainFor(s.Inner), func(lo, hi int) {
			for r := lo; r < hi; r++ {
				var acc float64
				for _, v := range sv[r*s.Inner : (r+1)*s.Inner] {
					acc += float64(v)
				}
				rs[r] = acc
			}
		})
		out := columnReduce(b.pool, rs, engine.Shape3{Outer: s.Outer, Mid: s.Mid, Inner: 1}, dstSpan|engine.SpanInner)
		for i, v := range out {
			d[i] = T(alpha * v)
		}
	default:
		out := columnReduce(b.pool, sv[:n], s, dstSpan)
		b.pool.rangeFor(len(out), 1<<15, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				d[i] = T(alpha * out[i])
			}
		})
	}
}

// flatSum sums v in fixed blocks of flatBlock elements, combining block sums in order.
func flatSum[S Float](p *pool, v []S) float64 {
	nb := (len(v) + flatBlock - 1) / flatBlock
	partial := make([]float64, nb)
	p.chunks(nb, func(c int) {
		var acc float64
		for _, x := range v[c*flatBlock : min((c+1)*flatBlock, len(v))] {
			acc += float64(x)
		}
		partial[c] = acc
	})
	var total float64
	for _, x := range partial {
		total += x
	}
	return total
}

// columnReduce sums src [O,M,I] over outer and/or mid (span keeps SpanInner) and returns the
// float64 result laid out by span. Rows of a group are summed in fixed blocks of rowBlock rows
// and the block sums are then added in block order.
func columnReduce[S Float](p *pool, src []S, s engine.Shape3, span engine.Span) []float64 {
	keepO, keepM := span&engine.SpanOuter != 0, span&engine.SpanMid != 0
	var groups, start, stride, count int
	switch {
	case keepO && keepM:
		out := make([]float64, len(src))
		for i, v := range src {
			out[i] = float64(v)
		}
		return out
	case keepO:
		groups, start, stride, count = s.Outer, s.Mid, 1, s.Mid
	case keepM:
		groups, start, stride, count = s.Mid, 1, s.Mid, s.Outer
	default:
		groups, start, stride, count = 1, 0, 1, s.Outer*s.Mid
	}
	inner := s.Inner
	nb := (count + rowBlock - 1) / rowBlock
	ncc := (inner + colChunk - 1) / colChunk
	partial := make([]float64, groups*nb*inner)
	p.chunks(groups*nb*ncc, func(t int) {
		cc := t % ncc
		blk := (t / ncc) % nb
		g := t / (ncc * nb)
		c0, c1 := cc*colChunk, min((cc+1)*colChunk, inner)
		acc := partial[(g*nb+blk)*inner : (g*nb+blk+1)*inner][c0:c1]
		for j := blk * rowBlock; j < min((blk+1)*rowBlock, count); j++ {
			row := g*start + j*stride
			for i, v := range src[row*inner+c0 : row*inner+c1] {
				acc[i] += float64(v)
			}
		}
	})
	if nb == 1 {
		return partial
	}
	out := make([]float64, groups*inner)
	p.rangeFor(groups*inner, 1<<12, func(lo, hi int) {
		for k := lo; k < hi; k++ {
			g, i := k/inner, k%inner
			var acc float64
			for blk := 0; blk < nb; blk++ {
				acc += partial[(g*nb+blk)*inner+i]
			}
			out[k] = acc
		}
	})
	return out
}
