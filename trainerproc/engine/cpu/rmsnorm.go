package cpu

import (
	"math"

	"simpletuner/trainerproc/engine"
)

// RMSNorm implements engine.Backend: per row, the sum of squares in float64, then
// y = x·rstd·w in the same task.
func (b *Backend[T]) RMSNorm(p engine.RMSNormParams) {
	x, y, w, rstd := Data[T](p.X), Data[T](p.Y), Data[T](p.Weight), Data[T](p.Rstd)
	rows, cols := p.Rows, p.Cols
	mustLen("RMSNorm x", len(x), rows*cols)
	mustLen("RMSNorm y", len(y), rows*cols)
	mustLen("RMSNorm rstd", len(rstd), rows)
	if w != nil {
		mustLen("RMSNorm weight", len(w), cols)
	}
	eps := float64(p.Eps)
	b.pool.rangeFor(rows, grainFor(cols*2), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			xr, yr := x[r*cols:(r+1)*cols], y[r*cols:(r+1)*cols]
			var ss float64
			for _, v := range xr {
				ss += float64(v) * float64(v)
			}
			rs := 1 / math.Sqrt(ss/float64(max(cols, 1))+eps)
			rstd[r] = T(rs)
			for c, v := range xr {
				s := rs
				if w != nil {
					s *= float64(w[c])
				}
				yr[c] = T(float64(v) * s)
			}
		}
	})
}

// RMSNormBackward implements engine.Backend. With g = dy·w:
//
//	dx = rstd·g − x·rstd³·mean(g·x)
//
// per row; DWeight[c] = Σ_r dy·x·rstd is formed row by row and summed by the deterministic
// column reduction.
func (b *Backend[T]) RMSNormBackward(p engine.RMSNormGradParams) {
	x, w, rstd, dy, dx := Data[T](p.X), Data[T](p.Weight), Data[T](p.Rstd), Data[T](p.DY), Data[T](p.DX)
	rows, cols := p.Rows, p.Cols
	mustLen("RMSNormBackward x", len(x), rows*cols)
	mustLen("RMSNormBackward dy", len(dy), rows*cols)
	mustLen("RMSNormBackward dx", len(dx), rows*cols)
	mustLen("RMSNormBackward rstd", len(rstd), rows)
	b.pool.rangeFor(rows, grainFor(cols*3), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			xr, gr, out := x[r*cols:(r+1)*cols], dy[r*cols:(r+1)*cols], dx[r*cols:(r+1)*cols]
			rs := float64(rstd[r])
			var dot float64
			for c, v := range gr {
				g := float64(v)
				if w != nil {
					g *= float64(w[c])
				}
				dot += g * float64(xr[c])
			}
			k := rs * rs * rs * dot / float64(max(cols, 1))
			for c, v := range gr {
				g := float64(v)
				if w != nil {
					g *= float64(w[c])
				}
				out[c] = T(rs*g - float64(xr[c])*k)
			}
		}
	})
	if p.DWeight == nil {
		return
	}
	dw := Data[T](p.DWeight)
	mustLen("RMSNormBackward dweight", len(dw), cols)
	tmp, done := b.scratch(rows * cols)
	defer done()
	b.pool.rangeFor(rows, grainFor(cols), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			rs := float64(rstd[r])
			for c := r * cols; c < (r+1)*cols; c++ {
				tmp[c] = T(float64(dy[c]) * float64(x[c]) * rs)
			}
		}
	})
	b.reduce(dw, tmp, engine.Shape3{Outer: 1, Mid: rows, Inner: cols}, engine.SpanInner, 1)
}
