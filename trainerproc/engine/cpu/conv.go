package cpu

import (
	"fmt"

	"simpletuner/trainerproc/engine"
)

// convPanelBytes bounds one im2col panel (the backward pass holds two: the columns and their
// gradient). A panel covers a run of output positions of one image, so the scratch of a
// convolution does not grow with the image: a 3×3 convolution over 512 channels at 1024×1024
// would otherwise need 18 GiB of columns.
const convPanelBytes = 32 << 20

// convGeom is a convolution's shape with the derived sizes every kernel needs.
type convGeom struct {
	n, c, h, w, o, kh, kw, stride int
	pt, pb, pl, pr                int
	oh, ow                        int
	k                             int // rows of the column matrix: c·kh·kw
}

func newConvGeom(p engine.Conv2DParams) convGeom {
	g := convGeom{n: p.N, c: p.C, h: p.H, w: p.Wd, o: p.O, kh: p.KH, kw: p.KW, stride: p.Stride,
		pt: p.PadTop, pb: p.PadBottom, pl: p.PadLeft, pr: p.PadRight}
	if g.stride < 1 || g.kh < 1 || g.kw < 1 || min(g.pt, g.pb, g.pl, g.pr) < 0 ||
		g.h+g.pt+g.pb < g.kh || g.w+g.pl+g.pr < g.kw {
		panic(fmt.Sprintf("cpu: Conv2D: invalid geometry %+v", p))
	}
	g.oh = (g.h+g.pt+g.pb-g.kh)/g.stride + 1
	g.ow = (g.w+g.pl+g.pr-g.kw)/g.stride + 1
	g.k = g.c * g.kh * g.kw
	return g
}

// direct reports a 1×1 convolution with stride 1 and no padding: the image itself is the
// column matrix, so it goes straight to GEMM.
func (g convGeom) direct() bool {
	return g.kh == 1 && g.kw == 1 && g.stride == 1 && g.pt == 0 && g.pb == 0 && g.pl == 0 && g.pr == 0
}

// convPanel is the number of output positions per im2col panel (at least one).
func (b *Backend[T]) convPanel(g convGeom) int {
	return max(1, min(g.oh*g.ow, b.convScratch/max(g.k, 1)))
}

// ConvWorkspace is the bytes of scratch one Conv2D call (backward: one Conv2DBackward call)
// over the given geometry holds: one im2col panel forward, the panel and its gradient
// backward, nothing for a direct 1×1 convolution.
func (b *Backend[T]) ConvWorkspace(p engine.Conv2DParams, backward bool) int64 {
	g := newConvGeom(p)
	if g.direct() {
		return 0
	}
	n := int64(b.convPanel(g)) * int64(g.k) * b.elemSize
	if backward {
		return 2 * n
	}
	return n
}

// checkConv panics unless the operand buffers are large enough for g.
func checkConv[T Float](g convGeom, x, w, bias, y []T) {
	mustLen("Conv2D x", len(x), g.n*g.c*g.h*g.w)
	mustLen("Conv2D w", len(w), g.o*g.k)
	if bias != nil {
		mustLen("Conv2D bias", len(bias), g.o)
	}
	if y != nil {
		mustLen("Conv2D y", len(y), g.n*g.o*g.oh*g.ow)
	}
}

// Conv2D implements engine.Backend: per image, Y = W·col with col the im2col matrix of a panel
// of output positions ([C·KH·KW, positions]), one GEMM per panel into Y's columns; a direct
// 1×1 convolution multiplies by the image itself. The bias is preloaded into Y and the GEMMs
// run with beta = 1.
func (b *Backend[T]) Conv2D(p engine.Conv2DParams) {
	g := newConvGeom(p)
	x, w, bias, y := Data[T](p.X), Data[T](p.W), Data[T](p.Bias), Data[T](p.Y)
	checkConv(g, x, w, bias, y)
	ohw, hw := g.oh*g.ow, g.h*g.w
	if g.n == 0 || g.o == 0 || ohw == 0 {
		return
	}
	beta := T(0)
	if bias != nil {
		b.pool.rangeFor(g.n*g.o, grainFor(ohw), func(lo, hi int) {
			for r := lo; r < hi; r++ {
				v := bias[r%g.o]
				row := y[r*ohw : (r+1)*ohw]
				for i := range row {
					row[i] = v
				}
			}
		})
		beta = 1
	}
	if g.k == 0 {
		return
	}
	if g.direct() {
		for n := 0; n < g.n; n++ {
			b.gemm(false, false, g.o, hw, g.c, 1, w, g.c, x[n*g.c*hw:], hw, beta, y[n*g.o*hw:], hw)
		}
		return
	}
	pn := b.convPanel(g)
	col, done := b.scratch(g.k * pn)
	defer done()
	for n := 0; n < g.n; n++ {
		xn, yn := x[n*g.c*hw:(n+1)*g.c*hw], y[n*g.o*ohw:]
		for p0 := 0; p0 < ohw; p0 += pn {
			p1 := min(p0+pn, ohw)
			b.im2col(g, col, xn, p0, p1)
			b.gemm(false, false, g.o, p1-p0, g.k, 1, w, g.k, col, p1-p0, beta, yn[p0:], ohw)
		}
	}
}

// Conv2DBackward implements engine.Backend. Per image and panel: DW += DY·colᵀ (the panels and
// images in a fixed order), dcol = Wᵀ·DY and col2im adds dcol into DX (each input channel by
// one goroutine, kernel taps in a fixed order); DBias is a deterministic reduction of DY.
func (b *Backend[T]) Conv2DBackward(p engine.Conv2DGradParams) {
	g := newConvGeom(p.Conv2DParams)
	x, w, dy := Data[T](p.X), Data[T](p.W), Data[T](p.DY)
	dx, dw, dbias := Data[T](p.DX), Data[T](p.DW), Data[T](p.DBias)
	checkConv(g, x, w, nil, nil)
	ohw, hw := g.oh*g.ow, g.h*g.w
	mustLen("Conv2DBackward dy", len(dy), g.n*g.o*ohw)
	if dx != nil {
		mustLen("Conv2DBackward dx", len(dx), g.n*g.c*hw)
		clear(dx[:g.n*g.c*hw])
	}
	if dw != nil {
		mustLen("Conv2DBackward dw", len(dw), g.o*g.k)
		clear(dw[:g.o*g.k])
	}
	if dbias != nil {
		mustLen("Conv2DBackward dbias", len(dbias), g.o)
		b.reduce(dbias, dy, engine.Shape3{Outer: g.n, Mid: g.o, Inner: ohw}, engine.SpanMid, 1)
	}
	if g.n == 0 || g.o == 0 || g.k == 0 || ohw == 0 || (dx == nil && dw == nil) {
		return
	}
	if g.direct() {
		for n := 0; n < g.n; n++ {
			xn, dyn := x[n*g.c*hw:], dy[n*g.o*hw:]
			if dw != nil {
				b.gemm(false, true, g.o, g.c, hw, 1, dyn, hw, xn, hw, 1, dw, g.c)
			}
			if dx != nil {
				b.gemm(true, false, g.c, hw, g.o, 1, w, g.c, dyn, hw, 0, dx[n*g.c*hw:], hw)
			}
		}
		return
	}
	pn := b.convPanel(g)
	var col, dcol []T
	if dw != nil {
		s, done := b.scratch(g.k * pn)
		defer done()
		col = s
	}
	if dx != nil {
		s, done := b.scratch(g.k * pn)
		defer done()
		dcol = s
	}
	for n := 0; n < g.n; n++ {
		xn, dyn := x[n*g.c*hw:(n+1)*g.c*hw], dy[n*g.o*ohw:]
		for p0 := 0; p0 < ohw; p0 += pn {
			p1 := min(p0+pn, ohw)
			np := p1 - p0
			if dw != nil {
				b.im2col(g, col, xn, p0, p1)
				b.gemm(false, true, g.o, g.k, np, 1, dyn[p0:], ohw, col, np, 1, dw, g.k)
			}
			if dx != nil {
				b.gemm(true, false, g.k, np, g.o, 1, w, g.k, dyn[p0:], ohw, 0, dcol, np)
				b.col2im(g, dx[n*g.c*hw:(n+1)*g.c*hw], dcol, p0, p1)
			}
		}
	}
}

// tapRange returns the output columns [lo, hi) of [x0, x1) whose input column
// x·stride + j − padLeft lies inside the image; lo == hi when there are none.
func (g convGeom) tapRange(j, x0, x1 int) (lo, hi int) {
	// x·s + j − pl ≥ 0  ⇔  x ≥ ceil((pl−j)/s);  x·s + j − pl ≤ w−1  ⇔  x ≤ floor((w−1+pl−j)/s).
	lo, hi = x0, x1
	if d := g.pl - j; d > 0 {
		lo = min(x1, max(lo, (d+g.stride-1)/g.stride))
	}
	if d := g.w - 1 + g.pl - j; d < 0 {
		hi = lo
	} else {
		hi = min(hi, d/g.stride+1)
	}
	return lo, max(lo, hi)
}

// im2col writes the column matrix of output positions [p0, p1) of one image: row k = (c, i, j)
// holds X[c, y·s+i−pt, x·s+j−pl] for each position (y, x), zero outside the image. Rows are
// independent, so they are split over the pool.
func (b *Backend[T]) im2col(g convGeom, col, x []T, p0, p1 int) {
	np := p1 - p0
	khw := g.kh * g.kw
	b.pool.rangeFor(g.k, grainFor(np), func(klo, khi int) {
		for k := klo; k < khi; k++ {
			c, i, j := k/khw, (k/g.kw)%g.kh, k%g.kw
			row := col[k*np : (k+1)*np]
			xc := x[c*g.h*g.w : (c+1)*g.h*g.w]
			for p := p0; p < p1; {
				oy, x0 := p/g.ow, p%g.ow
				x1 := min(g.ow, x0+p1-p)
				seg := row[p-p0 : p-p0+x1-x0]
				p += x1 - x0
				iy := oy*g.stride + i - g.pt
				if iy < 0 || iy >= g.h {
					clear(seg)
					continue
				}
				src := xc[iy*g.w : (iy+1)*g.w]
				lo, hi := g.tapRange(j, x0, x1)
				clear(seg[:lo-x0])
				clear(seg[hi-x0:])
				if lo == hi {
					continue
				}
				if g.stride == 1 {
					copy(seg[lo-x0:hi-x0], src[lo+j-g.pl:hi+j-g.pl])
					continue
				}
				for ox := lo; ox < hi; ox++ {
					seg[ox-x0] = src[ox*g.stride+j-g.pl]
				}
			}
		}
	})
}

// col2im adds the column-gradient panel of positions [p0, p1) into one image's dx. Each input
// channel is handled by one goroutine, visiting its kernel taps and positions in a fixed
// order, so overlapping taps accumulate identically for every thread count.
func (b *Backend[T]) col2im(g convGeom, dx, dcol []T, p0, p1 int) {
	np := p1 - p0
	khw := g.kh * g.kw
	b.pool.rangeFor(g.c, grainFor(khw*np), func(clo, chi int) {
		for c := clo; c < chi; c++ {
			dc := dx[c*g.h*g.w : (c+1)*g.h*g.w]
			for t := 0; t < khw; t++ {
				i, j := t/g.kw, t%g.kw
				row := dcol[(c*khw+t)*np : (c*khw+t+1)*np]
				for p := p0; p < p1; {
					oy, x0 := p/g.ow, p%g.ow
					x1 := min(g.ow, x0+p1-p)
					seg := row[p-p0 : p-p0+x1-x0]
					p += x1 - x0
					iy := oy*g.stride + i - g.pt
					if iy < 0 || iy >= g.h {
						continue
					}
					dst := dc[iy*g.w : (iy+1)*g.w]
					lo, hi := g.tapRange(j, x0, x1)
					if lo == hi {
						continue
					}
					if g.stride == 1 {
						d := dst[lo+j-g.pl : hi+j-g.pl]
						for q, v := range seg[lo-x0 : hi-x0] {
							d[q] += v
						}
						continue
					}
					for ox := lo; ox < hi; ox++ {
						dst[ox*g.stride+j-g.pl] += seg[ox-x0]
					}
				}
			}
		}
	})
}
