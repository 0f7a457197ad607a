package cpu

import (
	"fmt"
	"math"

	"simpletuner/trainerproc/engine"
)

// groupNormGeom checks a group norm's shape and returns the channels per group.
func groupNormGeom(n, c, hw, groups int) int {
	if groups < 1 || c%groups != 0 || n < 0 || hw < 0 {
		panic(fmt.Sprintf("cpu: GroupNorm: %d channels in %d groups (n %d, hw %d)", c, groups, n, hw))
	}
	return c / groups
}

// GroupNorm implements engine.Backend. Each (sample, group) is one task: the group's channels
// are contiguous in NCHW, so its mean and variance are two float64 passes over one block of
// C/Groups·HW elements, followed by one pass applying the per-channel scale and shift.
func (b *Backend[T]) GroupNorm(p engine.GroupNormParams) {
	x, y, w, bs := Data[T](p.X), Data[T](p.Y), Data[T](p.Weight), Data[T](p.Bias)
	mean, rstd := Data[T](p.Mean), Data[T](p.Rstd)
	cpg := groupNormGeom(p.N, p.C, p.HW, p.Groups)
	size := cpg * p.HW
	mustLen("GroupNorm x", len(x), p.N*p.C*p.HW)
	mustLen("GroupNorm y", len(y), p.N*p.C*p.HW)
	mustLen("GroupNorm mean", len(mean), p.N*p.Groups)
	mustLen("GroupNorm rstd", len(rstd), p.N*p.Groups)
	if w != nil {
		mustLen("GroupNorm weight", len(w), p.C)
	}
	if bs != nil {
		mustLen("GroupNorm bias", len(bs), p.C)
	}
	eps := float64(p.Eps)
	b.pool.chunks(p.N*p.Groups, func(t int) {
		xg, yg := x[t*size:(t+1)*size], y[t*size:(t+1)*size]
		mu, rs := meanRstd(xg, eps)
		mean[t], rstd[t] = T(mu), T(rs)
		c0 := (t % p.Groups) * cpg
		for ci := 0; ci < cpg; ci++ {
			scale, shift := rs, 0.0
			if w != nil {
				scale *= float64(w[c0+ci])
			}
			if bs != nil {
				shift = float64(bs[c0+ci])
			}
			shift -= mu * scale
			xr, yr := xg[ci*p.HW:(ci+1)*p.HW], yg[ci*p.HW:(ci+1)*p.HW]
			for s, v := range xr {
				yr[s] = T(float64(v)*scale + shift)
			}
		}
	})
}

// meanRstd returns the mean and 1/√(variance+eps) of v, both passes in float64 (a VAE's group
// spans a million elements, where a one-pass float32 variance loses most of its digits).
func meanRstd[T Float](v []T, eps float64) (mu, rs float64) {
	if len(v) == 0 {
		return 0, 1 / math.Sqrt(eps)
	}
	for _, x := range v {
		mu += float64(x)
	}
	mu /= float64(len(v))
	var vr float64
	for _, x := range v {
		d := float64(x) - mu
		vr += d * d
	}
	return mu, 1 / math.Sqrt(vr/float64(len(v))+eps)
}

// GroupNormBackward implements engine.Backend. Per (sample, group) task: per-channel sums of
// dy and dy·x̂ (kept for DWeight and DBias), then
//
//	dx = rstd·(w·dy − mean(w·dy) − x̂·mean(w·dy·x̂))
//
// over the group. DWeight and DBias add the per-channel sums over samples in sample order, so
// every result is independent of the thread count.
func (b *Backend[T]) GroupNormBackward(p engine.GroupNormGradParams) {
	x, w, dy := Data[T](p.X), Data[T](p.Weight), Data[T](p.DY)
	mean, rstd := Data[T](p.Mean), Data[T](p.Rstd)
	dx, dw, db := Data[T](p.DX), Data[T](p.DWeight), Data[T](p.DBias)
	cpg := groupNormGeom(p.N, p.C, p.HW, p.Groups)
	size := cpg * p.HW
	mustLen("GroupNormBackward x", len(x), p.N*p.C*p.HW)
	mustLen("GroupNormBackward dy", len(dy), p.N*p.C*p.HW)
	mustLen("GroupNormBackward dx", len(dx), p.N*p.C*p.HW)
	if dw != nil {
		mustLen("GroupNormBackward dweight", len(dw), p.C)
	}
	if db != nil {
		mustLen("GroupNormBackward dbias", len(db), p.C)
	}
	// sumDY[n·C+c] = Σ_s dy, sumDYX[n·C+c] = Σ_s dy·x̂: float64, one writer per entry.
	sumDY, sumDYX := make([]float64, p.N*p.C), make([]float64, p.N*p.C)
	b.pool.chunks(p.N*p.Groups, func(t int) {
		xg, gg, dg := x[t*size:(t+1)*size], dy[t*size:(t+1)*size], dx[t*size:(t+1)*size]
		mu, rs := float64(mean[t]), float64(rstd[t])
		n, c0 := t/p.Groups, (t%p.Groups)*cpg
		var a1, a2 float64 // Σ w·dy and Σ w·dy·x̂ over the group
		for ci := 0; ci < cpg; ci++ {
			var sd, sdx float64
			xr, gr := xg[ci*p.HW:(ci+1)*p.HW], gg[ci*p.HW:(ci+1)*p.HW]
			for s, v := range gr {
				d := float64(v)
				sd += d
				sdx += d * (float64(xr[s]) - mu) * rs
			}
			sumDY[n*p.C+c0+ci], sumDYX[n*p.C+c0+ci] = sd, sdx
			wc := 1.0
			if w != nil {
				wc = float64(w[c0+ci])
			}
			a1 += wc * sd
			a2 += wc * sdx
		}
		if size > 0 {
			a1 /= float64(size)
			a2 /= float64(size)
		}
		for ci := 0; ci < cpg; ci++ {
			wc := rs
			if w != nil {
				wc *= float64(w[c0+ci])
			}
			xr, gr, out := xg[ci*p.HW:(ci+1)*p.HW], gg[ci*p.HW:(ci+1)*p.HW], dg[ci*p.HW:(ci+1)*p.HW]
			for s, v := range gr {
				xh := (float64(xr[s]) - mu) * rs
				out[s] = T(wc*float64(v) - rs*(a1+xh*a2))
			}
		}
	})
	for c := 0; c < p.C; c++ {
		var sd, sdx float64
		for n := 0; n < p.N; n++ {
			sd += sumDY[n*p.C+c]
			sdx += sumDYX[n*p.C+c]
		}
		if db != nil {
			db[c] = T(sd)
		}
		if dw != nil {
			dw[c] = T(sdx)
		}
	}
}
