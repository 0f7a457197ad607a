package cpu

import (
	"fmt"

	"simpletuner/trainerproc/engine"
)

// Fill implements engine.Backend.
func (b *Backend[T]) Fill(dst engine.Buffer, v float32) {
	d := Data[T](dst)
	tv := T(v)
	b.pool.rangeFor(len(d), 1<<16, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			d[i] = tv
		}
	})
}

// Copy2D implements engine.Backend.
func (b *Backend[T]) Copy2D(dst engine.Buffer, dstOff, dstStride int, src engine.Buffer, srcOff, srcStride, rows, cols int) {
	d, s := Data[T](dst), Data[T](src)
	if rows == 0 || cols == 0 {
		return
	}
	mustLen("Copy2D dst", len(d), dstOff+(rows-1)*dstStride+cols)
	mustLen("Copy2D src", len(s), srcOff+(rows-1)*srcStride+cols)
	b.pool.rangeFor(rows, grainFor(cols), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			copy(d[dstOff+r*dstStride:dstOff+r*dstStride+cols], s[srcOff+r*srcStride:srcOff+r*srcStride+cols])
		}
	})
}

// Permute implements engine.Backend. It walks dst in order with an odometer over the source
// strides; the innermost destination dimension is copied in one strided loop.
func (b *Backend[T]) Permute(dst, src engine.Buffer, shape, perm []int) {
	d, s := Data[T](dst), Data[T](src)
	nd := len(shape)
	if len(perm) != nd {
		panic(fmt.Sprintf("cpu: Permute: perm %v for shape %v", perm, shape))
	}
	n := 1
	for _, x := range shape {
		n *= x
	}
	mustLen("Permute dst", len(d), n)
	mustLen("Permute src", len(s), n)
	if n == 0 {
		return
	}
	srcStride := make([]int, nd)
	acc := 1
	for i := nd - 1; i >= 0; i-- {
		srcStride[i] = acc
		acc *= shape[i]
	}
	dshape := make([]int, nd)
	dstride := make([]int, nd) // source stride of each destination dimension
	for i, p := range perm {
		dshape[i] = shape[p]
		dstride[i] = srcStride[p]
	}
	last := dshape[nd-1]
	lastStride := dstride[nd-1]
	rows := n / last
	b.pool.rangeFor(rows, grainFor(last), func(lo, hi int) {
		idx := make([]int, nd-1)
		// Decompose the first row index into destination coordinates.
		rem := lo
		for i := nd - 2; i >= 0; i-- {
			idx[i] = rem % dshape[i]
			rem /= dshape[i]
		}
		for r := lo; r < hi; r++ {
			off := 0
			for i := 0; i < nd-1; i++ {
				off += idx[i] * dstride[i]
			}
			row := d[r*last : (r+1)*last]
			if lastStride == 1 {
				copy(row, s[off:off+last])
			} else {
				for j := range row {
					row[j] = s[off+j*lastStride]
				}
			}
			for i := nd - 2; i >= 0; i-- {
				idx[i]++
				if idx[i] < dshape[i] {
					break
				}
				idx[i] = 0
			}
		}
	})
}
