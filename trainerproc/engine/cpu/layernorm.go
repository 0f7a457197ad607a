package cpu

import (
	"fmt"

	"simpletuner/trainerproc/engine"
)

// LayerNorm implements engine.Backend. Normalisation and the (grouped) affine transform run in
// one pass per row, so adaLN's modulate costs no extra memory traffic.
func (b *Backend[T]) LayerNorm(p engine.LayerNormParams) {
	x, y, w, bs := Data[T](p.X), Data[T](p.Y), Data[T](p.Weight), Data[T](p.Bias)
	mean, rstd := Data[T](p.Mean), Data[T](p.Rstd)
	rows, cols := p.Rows, p.Cols
	groups := max(p.Groups, 1)
	if rows%groups != 0 {
		panic(fmt.Sprintf("cpu: LayerNorm: %d rows not divisible into %d groups", rows, groups))
	}
	per := rows / groups
	mustLen("LayerNorm x", len(x), rows*cols)
	mustLen("LayerNorm y", len(y), rows*cols)
	mustLen("LayerNorm mean", len(mean), rows)
	mustLen("LayerNorm rstd", len(rstd), rows)
	if w != nil {
		mustLen("LayerNorm weight", len(w), groups*cols)
	}
	if bs != nil {
		mustLen("LayerNorm bias", len(bs), groups*cols)
	}
	off, eps := float64(p.WeightOffset), float64(p.Eps)
	b.pool.rangeFor(rows, grainFor(cols*3), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			xr, yr := x[r*cols:(r+1)*cols], y[r*cols:(r+1)*cols]
			mu, rs := meanRstd(xr, eps)
			mean[r], rstd[r] = T(mu), T(rs)
			g := r / per
			for c, v := range xr {
				n := (float64(v) - mu) * rs
				scale := 1.0
				if w != nil {
					scale = off + float64(w[g*cols+c])
				}
				out := n * scale
				if bs != nil {
					out += float64(bs[g*cols+c])
				}
				yr[c] = T(out)
			}
		}
	})
}

// LayerNormBackward implements engine.Backend.
func (b *Backend[T]) LayerNormBackward(p engine.LayerNormGradParams) {
	x, w, dy := Data[T](p.X), Data[T](p.Weight), Data[T](p.DY)
	mean, rstd := Data[T](p.Mean), Data[T](p.Rstd)
	dx := Data[T](p.DX)
	rows, cols := p.Rows, p.Cols
	groups := max(p.Groups, 1)
	per := rows / groups
	off := float64(p.WeightOffset)
	mustLen("LayerNormBackward dx", len(dx), rows*cols)
	b.pool.rangeFor(rows, grainFor(cols*4), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			g := r / per
			mu, rs := float64(mean[r]), float64(rstd[r])
			xr, gr, out := x[r*cols:(r+1)*cols], dy[r*cols:(r+1)*cols], dx[r*cols:(r+1)*cols]
			// dn = dy·scale; dx = rstd·(dn - mean(dn) - n·mean(dn·n)).
			var sdn, sdnn float64
			for c, v := range xr {
				dn := float64(gr[c])
				if w != nil {
					dn *= off + float64(w[g*cols+c])
				}
				n := (float64(v) - mu) * rs
				sdn += dn
				sdnn += dn * n
			}
			sdn /= float64(cols)
			sdnn /= float64(cols)
			for c, v := range xr {
				dn := float64(gr[c])
				if w != nil {
					dn *= off + float64(w[g*cols+c])
				}
				n := (float64(v) - mu) * rs
				out[c] = T(rs * (dn - sdn - n*sdnn))
			}
		}
	})
	shape := engine.Shape3{Outer: groups, Mid: per, Inner: cols}
	if p.DBias != nil {
		b.reduce(Data[T](p.DBias), dy, shape, engine.SpanOuter|engine.SpanInner, 1)
	}
	if p.DWeight != nil {
		// dW[g,c] = Σ_r dy·n over the group's rows: form dy·n, then a deterministic column sum.
		tmp, done := b.scratch(rows * cols)
		defer done()
		b.pool.rangeFor(rows, grainFor(cols), func(lo, hi int) {
			for r := lo; r < hi; r++ {
				mu, rs := float64(mean[r]), float64(rstd[r])
				for c := 0; c < cols; c++ {
					i := r*cols + c
					tmp[i] = T(float64(dy[i]) * (float64(x[i]) - mu) * rs)
				}
			}
		})
		b.reduce(Data[T](p.DWeight), tmp, shape, engine.SpanOuter|engine.SpanInner, 1)
	}
}
