package cpu

import (
	"math"

	"simpletuner/trainerproc/engine"
)

// Softmax implements engine.Backend (numerically stable: the row maximum is subtracted).
func (b *Backend[T]) Softmax(dst, x engine.Buffer, rows, cols int) {
	d, xs := Data[T](dst), Data[T](x)
	mustLen("Softmax dst", len(d), rows*cols)
	mustLen("Softmax x", len(xs), rows*cols)
	b.pool.rangeFor(rows, grainFor(cols*4), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			softmaxRow(d[r*cols:(r+1)*cols], xs[r*cols:(r+1)*cols])
		}
	})
}

// softmaxRow writes softmax(x) into d and returns log Σ exp(x).
func softmaxRow[T Float](d, x []T) float64 {
	m := math.Inf(-1)
	for _, v := range x {
		m = math.Max(m, float64(v))
	}
	if math.IsInf(m, -1) {
		clear(d)
		return math.Inf(1)
	}
	var sum float64
	for i, v := range x {
		e := math.Exp(float64(v) - m)
		d[i] = T(e)
		sum += e
	}
	inv := 1 / sum
	for i := range d {
		d[i] = T(float64(d[i]) * inv)
	}
	return m + math.Log(sum)
}

// SoftmaxBackward implements engine.Backend.
func (b *Backend[T]) SoftmaxBackward(dx, y, dy engine.Buffer, rows, cols int) {
	dxs, ys, dys := Data[T](dx), Data[T](y), Data[T](dy)
	mustLen("SoftmaxBackward dx", len(dxs), rows*cols)
	mustLen("SoftmaxBackward y", len(ys), rows*cols)
	mustLen("SoftmaxBackward dy", len(dys), rows*cols)
	b.pool.rangeFor(rows, grainFor(cols*2), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			yr, gr, out := ys[r*cols:(r+1)*cols], dys[r*cols:(r+1)*cols], dxs[r*cols:(r+1)*cols]
			var dot float64
			for i := range yr {
				dot += float64(yr[i]) * float64(gr[i])
			}
			for i := range out {
				out[i] = T(float64(yr[i]) * (float64(gr[i]) - dot))
			}
		}
	})
}
