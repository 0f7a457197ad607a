package cuda

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"simpletuner/trainerproc/engine"
)

func TestConvShape(t *testing.T) {
	cases := []struct {
		name   string
		p      engine.Conv2DParams
		oh, ow int
		err    error
	}{
		{"3x3 same", engine.Conv2DParams{N: 1, C: 4, H: 8, Wd: 6, O: 2, KH: 3, KW: 3, Stride: 1, PadTop: 1, PadBottom: 1, PadLeft: 1, PadRight: 1}, 8, 6, nil},
		{"VAE downsampler", engine.Conv2DParams{N: 1, C: 4, H: 8, Wd: 8, O: 4, KH: 3, KW: 3, Stride: 2, PadBottom: 1, PadRight: 1}, 4, 4, nil},
		{"odd input stride 2", engine.Conv2DParams{N: 1, C: 1, H: 7, Wd: 5, O: 1, KH: 3, KW: 3, Stride: 2}, 3, 2, nil},
		{"1x1", engine.Conv2DParams{N: 2, C: 3, H: 4, Wd: 5, O: 6, KH: 1, KW: 1, Stride: 1}, 4, 5, nil},
		{"kernel larger than input", engine.Conv2DParams{N: 1, C: 1, H: 2, Wd: 2, O: 1, KH: 3, KW: 3, Stride: 1}, 0, 0, engine.ErrShape},
		{"stride 0", engine.Conv2DParams{N: 1, C: 1, H: 4, Wd: 4, O: 1, KH: 1, KW: 1}, 0, 0, engine.ErrShape},
		{"negative pad", engine.Conv2DParams{N: 1, C: 1, H: 4, Wd: 4, O: 1, KH: 1, KW: 1, Stride: 1, PadLeft: -1}, 0, 0, engine.ErrShape},
	}
	for _, c := range cases {
		g, err := convShape(c.p)
		if c.err != nil {
			if !errors.Is(err, c.err) {
				t.Errorf("%s: error %v, want %v", c.name, err, c.err)
			}
			continue
		}
		if err != nil || g.oh != c.oh || g.ow != c.ow {
			t.Errorf("%s: %d×%d %v, want %d×%d", c.name, g.oh, g.ow, err, c.oh, c.ow)
		}
	}
	direct, _ := convShape(cases[3].p)
	same, _ := convShape(cases[0].p)
	if !direct.direct() || same.direct() {
		t.Error("direct() misjudges 1×1 / 3×3")
	}
}

func TestPlanConvPanels(t *testing.T) {
	cases := []struct {
		name              string
		n, k, pixels      int
		budget            int64
		panels, maxPixels int // expected panel count and pixels of the largest panel
		maxSamples        int
	}{
		{"all images in one panel", 4, 27, 64, 1 << 20, 1, 64, 4},
		{"two images a panel", 5, 10, 100, 2 * 10 * 100 * 4, 3, 100, 2},
		{"an image exactly fills the budget", 2, 10, 100, 10 * 100 * 4, 2, 100, 1},
		{"pixel panels", 2, 10, 100, 10 * 30 * 4, 8, 30, 1},
		{"budget below one pixel", 1, 1000, 3, 16, 3, 1, 1},
		// A VAE's 128-channel 3×3 conv at 1024²: 1152 taps a pixel, 64 MiB panels.
		{"VAE 1024²", 1, 1152, 1 << 20, convScratchBytes, 73, int(convScratchBytes / (1152 * 4)), 1},
		{"no samples", 0, 10, 10, 1 << 20, 0, 0, 0},
		{"no pixels", 3, 10, 0, 1 << 20, 0, 0, 0},
	}
	for _, c := range cases {
		ps := planConvPanels(c.n, c.k, c.pixels, c.budget)
		if len(ps) != c.panels {
			t.Errorf("%s: %d panels, want %d", c.name, len(ps), c.panels)
			continue
		}
		maxPix, maxS := 0, 0
		// Panels must cover every (sample, pixel) exactly once, in order, within the budget
		// (a one-pixel panel is allowed past it: there is nothing smaller).
		next := 0
		for _, pn := range ps {
			maxPix, maxS = max(maxPix, pn.pc), max(maxS, pn.samples)
			if bytes := int64(pn.samples) * int64(c.k) * int64(pn.pc) * 4; bytes > c.budget && pn.pc > 1 {
				t.Errorf("%s: panel %+v takes %d bytes of %d", c.name, pn, bytes, c.budget)
			}
			if pn.samples > 1 && (pn.p0 != 0 || pn.pc != c.pixels) {
				t.Errorf("%s: multi-sample panel %+v is not whole images", c.name, pn)
			}
			if start := pn.n0*c.pixels + pn.p0; start != next {
				t.Errorf("%s: panel %+v starts at %d, want %d", c.name, pn, start, next)
			}
			next = (pn.n0+pn.samples-1)*c.pixels + pn.p0 + pn.pc
		}
		if next != c.n*c.pixels {
			t.Errorf("%s: panels end at %d of %d", c.name, next, c.n*c.pixels)
		}
		if maxPix != c.maxPixels || maxS != c.maxSamples {
			t.Errorf("%s: largest panel %d pixels × %d samples, want %d × %d", c.name, maxPix, maxS, c.maxPixels, c.maxSamples)
		}
	}
}

// simIm2col runs im2col_f32's index arithmetic on the host.
func simIm2col(g convGeom, x []float64, pn convPanel) []float64 {
	k := g.k()
	col := make([]float64, pn.samples*k*pn.pc)
	for idx := range col {
		q := idx % pn.pc
		t := idx / pn.pc
		kk, s := t%k, t/k
		j, i, ch := kk%g.kw, (kk/g.kw)%g.kh, kk/(g.kw*g.kh)
		p := pn.p0 + q
		oy, ox := p/g.ow, p%g.ow
		y, xx := oy*g.stride+i-g.padT, ox*g.stride+j-g.padL
		if y >= 0 && y < g.h && xx >= 0 && xx < g.w {
			col[idx] = x[(((pn.n0+s)*g.c+ch)*g.h+y)*g.w+xx]
		}
	}
	return col
}

// simCol2im runs col2im_f32's index arithmetic on the host (dx is the whole tensor).
func simCol2im(g convGeom, dx, dcol []float64, pn convPanel, y0, rows int) {
	k := g.k()
	for idx := 0; idx < pn.samples*g.c*rows*g.w; idx++ {
		xx := idx % g.w
		t := idx / g.w
		y := y0 + t%rows
		t /= rows
		ch, s := t%g.c, t/g.c
		var acc float64
		for i := 0; i < g.kh; i++ {
			ny := y + g.padT - i
			if ny < 0 || ny%g.stride != 0 || ny/g.stride >= g.oh {
				continue
			}
			for j := 0; j < g.kw; j++ {
				nx := xx + g.padL - j
				if nx < 0 || nx%g.stride != 0 || nx/g.stride >= g.ow {
					continue
				}
				q := (ny/g.stride)*g.ow + nx/g.stride - pn.p0
				if q < 0 || q >= pn.pc {
					continue
				}
				acc += dcol[s*k*pn.pc+((ch*g.kh+i)*g.kw+j)*pn.pc+q]
			}
		}
		dx[(((pn.n0+s)*g.c+ch)*g.h+y)*g.w+xx] += acc
	}
}

// convReference is the convolution and its gradients straight from the definition.
func convReference(g convGeom, x, w, bias, dy []float64) (y, dx, dw, db []float64) {
	y, dx = make([]float64, g.n*g.o*g.oh*g.ow), make([]float64, len(x))
	dw, db = make([]float64, len(w)), make([]float64, g.o)
	for n := 0; n < g.n; n++ {
		for o := 0; o < g.o; o++ {
			for oy := 0; oy < g.oh; oy++ {
				for ox := 0; ox < g.ow; ox++ {
					yi := ((n*g.o+o)*g.oh+oy)*g.ow + ox
					y[yi] = bias[o]
					db[o] += dy[yi]
					for c := 0; c < g.c; c++ {
						for i := 0; i < g.kh; i++ {
							for j := 0; j < g.kw; j++ {
								iy, ix := oy*g.stride+i-g.padT, ox*g.stride+j-g.padL
								if iy < 0 || iy >= g.h || ix < 0 || ix >= g.w {
									continue
								}
								xi, wi := ((n*g.c+c)*g.h+iy)*g.w+ix, ((o*g.c+c)*g.kh+i)*g.kw+j
								y[yi] += w[wi] * x[xi]
								dx[xi] += w[wi] * dy[yi]
								dw[wi] += x[xi] * dy[yi]
							}
						}
					}
				}
			}
		}
	}
	return y, dx, dw, db
}

// TestConvPanelsMatchDefinition runs the CUDA backend's convolution on the host: its panels
// (convPanels), im2col_f32, col2im_f32 and the DY row copy (index arithmetic simulated), and
// the GEMMs it issues (fwdGemm, dwGemm, dxGemm, run as the cuBLAS calls planGemm makes of
// them), against the definition, with budgets that force whole-image batches, split images
// and one-pixel panels, in fp32 and bf16 plans.
func TestConvPanelsMatchDefinition(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	geoms := []engine.Conv2DParams{
		{N: 2, C: 3, H: 7, Wd: 6, O: 4, KH: 3, KW: 3, Stride: 1, PadTop: 1, PadBottom: 1, PadLeft: 1, PadRight: 1},
		{N: 2, C: 2, H: 8, Wd: 7, O: 3, KH: 3, KW: 3, Stride: 2, PadBottom: 1, PadRight: 1}, // VAE downsampler
		{N: 1, C: 2, H: 9, Wd: 5, O: 2, KH: 2, KW: 3, Stride: 3, PadTop: 2, PadLeft: 1},
		{N: 3, C: 2, H: 4, Wd: 4, O: 2, KH: 1, KW: 1, Stride: 2},
		{N: 1, C: 1, H: 3, Wd: 3, O: 1, KH: 3, KW: 3, Stride: 1, PadTop: 3, PadBottom: 3, PadLeft: 3, PadRight: 3}, // panels of padding only
		{N: 3, C: 4, H: 5, Wd: 3, O: 6, KH: 1, KW: 1, Stride: 1},                                                   // direct
	}
	rnd := func(n int) []float64 {
		v := make([]float64, n)
		for i := range v {
			v[i] = rng.NormFloat64()
		}
		return v
	}
	// gemm runs p as the backend does: planGemm's cuBLAS call (TestPlanGemm checks it against
	// the engine's definition), products in batch order.
	gemm := func(p engine.GemmParams, a, b, c []float64) {
		g, err := planGemm(p, len(a), len(b), len(c))
		if err != nil {
			t.Fatal(err)
		}
		for bi := 0; bi < g.batch; bi++ { // A' is the engine's B and B' the engine's A
			colMajorGemm(g.transA, g.transB, g.m, g.n, g.k, float64(g.alpha),
				b[g.offA+bi*int(g.strideA):], g.lda, a[g.offB+bi*int(g.strideB):], g.ldb, float64(g.beta),
				c[g.offC+bi*int(g.strideC):], g.ldc)
		}
	}
	for gi, p := range geoms {
		g, err := convShape(p)
		if err != nil {
			t.Fatal(err)
		}
		k, pix := g.k(), g.pixels()
		x, w, bias, dy := rnd(g.n*g.c*g.h*g.w), rnd(g.o*k), rnd(g.o), rnd(g.n*g.o*pix)
		wantY, wantDX, wantDW, _ := convReference(g, x, w, bias, dy)
		for _, budget := range []int64{1 << 20, int64(k * pix * 4), int64(k*4) * 5, 4} {
			for _, bf16 := range []bool{false, true} {
				panels := convPanels(g, bf16, budget)
				y := make([]float64, len(wantY))
				dx, dw := make([]float64, len(x)), make([]float64, len(w))
				for n := 0; n < g.n; n++ { // the bias broadcast (Expand) before the GEMMs
					for o := 0; o < g.o; o++ {
						for q := 0; q < pix; q++ {
							y[(n*g.o+o)*pix+q] = bias[o]
						}
					}
				}
				for _, pn := range panels {
					cols := x
					if _, fromX := g.panelCols(pn); !fromX {
						cols = simIm2col(g, x, pn)
					}
					rows := dy
					if _, _, copied := g.panelDY(pn); copied { // copy2d_f32 of O rows of pc
						rows = make([]float64, g.o*pn.pc)
						for o := 0; o < g.o; o++ {
							copy(rows[o*pn.pc:(o+1)*pn.pc], dy[(pn.n0*g.o+o)*pix+pn.p0:])
						}
					}
					gemm(g.fwdGemm(pn, 1), w, cols, y)
					gemm(g.dwGemm(pn), rows, cols, dw)
					if _, fromX := g.panelCols(pn); fromX {
						gemm(g.dxGemm(pn), w, rows, dx)
						continue
					}
					dcol := make([]float64, pn.samples*k*pn.pc)
					gemm(g.dxGemm(pn), w, rows, dcol)
					if y0, yrows := g.panelRows(pn); yrows > 0 { // yrows ≤ 0: only padding, skipped
						simCol2im(g, dx, dcol, pn, y0, yrows)
					}
				}
				for name, pair := range map[string][2][]float64{"y": {y, wantY}, "dx": {dx, wantDX}, "dw": {dw, wantDW}} {
					for i := range pair[1] {
						if math.Abs(pair[0][i]-pair[1][i]) > 1e-9 {
							t.Fatalf("geometry %d budget %d bf16 %v: %s[%d] = %g, want %g", gi, budget, bf16, name, i, pair[0][i], pair[1][i])
						}
					}
				}
			}
		}
	}
}

func TestPanelRows(t *testing.T) {
	g, err := convShape(engine.Conv2DParams{N: 1, C: 1, H: 8, Wd: 4, O: 1, KH: 3, KW: 3, Stride: 2, PadTop: 1, PadBottom: 1, PadLeft: 1, PadRight: 1})
	if err != nil {
		t.Fatal(err)
	}
	// Output 4×2; pixels 2..5 are output rows 1 and 2, which read input rows 1..5.
	for _, c := range []struct{ p0, pc, y0, rows int }{{0, 8, 0, 8}, {2, 4, 1, 5}, {0, 1, 0, 2}, {7, 1, 5, 3}} {
		if y0, rows := g.panelRows(convPanel{samples: 1, p0: c.p0, pc: c.pc}); y0 != c.y0 || rows != c.rows {
			t.Errorf("panel %d+%d: rows %d+%d, want %d+%d", c.p0, c.pc, y0, rows, c.y0, c.rows)
		}
	}
}

func TestNormChunks(t *testing.T) {
	cases := []struct {
		name          string
		rows, length  int
		chunks, chunk int
	}{
		{"short rows stay whole", 64, 100, 1, 100},
		{"row shorter than two minimum chunks", 1, normChunkMin + 1, 2, normChunkMin/2 + 1},
		{"VAE group at batch 1: 32 rows of 4M", 32, 4 << 20, 32, 128 << 10},
		{"one huge row is capped", 1, 1 << 30, normChunksMax, (1 << 30) / normChunksMax},
		{"many rows need no split", 4096, 1 << 20, 1, 1 << 20},
		{"three rows just over three minimum chunks", 3, 3*normChunkMin + 1, 4, 3073},
		{"empty row", 5, 0, 1, 0},
	}
	for _, c := range cases {
		chunks, chunk := normChunks(c.rows, c.length)
		if chunks != c.chunks || chunk != c.chunk {
			t.Errorf("%s: %d chunks of %d, want %d of %d", c.name, chunks, chunk, c.chunks, c.chunk)
		}
		if c.length > 0 && ((chunks-1)*chunk >= c.length || chunks*chunk < c.length) {
			t.Errorf("%s: %d×%d does not tile %d without an empty chunk", c.name, chunks, chunk, c.length)
		}
		if chunks > normChunksMax || chunks > maxGridYZ {
			t.Errorf("%s: %d chunks over the limit", c.name, chunks)
		}
	}
}

func TestNormLaunchLimits(t *testing.T) {
	// Rows go on gridDim.x, so a large batch of groups (past gridDim.y's 65535) still runs.
	l, err := normChunkLaunch(4096*32, 3)
	if err != nil || l.GridX != 4096*32 || l.GridY != 3 || l.BlockX != rowBlock {
		t.Fatalf("normChunkLaunch %+v %v", l, err)
	}
	if _, err := normChunkLaunch(maxGridX+1, 1); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("rows past gridDim.x: %v", err)
	}
	if _, err := normChunkLaunch(1, maxGridYZ+1); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("chunks past gridDim.y: %v", err)
	}
	if l, err := rowBlocks(100000); err != nil || l.GridX != 100000 {
		t.Fatalf("rowBlocks %+v %v", l, err)
	}
	if _, err := rowBlocks(maxGridX + 1); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("rowBlocks past gridDim.x: %v", err)
	}
}

// TestGroupNormChunkedStats runs the group norm kernels' arithmetic on the host: chunk means
// and squared deviations (groupnorm_part_f32) combined as groupnorm_stats_f32 does, and the
// backward's channel sums, group sums, dx and parameter gradients, against the definition.
func TestGroupNormChunkedStats(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	for _, c := range []struct{ n, ch, hw, groups int }{{2, 6, 5000, 3}, {1, 4, 3*normChunkMin + 7, 2}, {3, 8, 10, 8}} {
		cpg, ng, nc, length := c.ch/c.groups, c.n*c.groups, c.n*c.ch, c.ch/c.groups*c.hw
		total := c.n * c.ch * c.hw
		x, dy, w := make([]float64, total), make([]float64, total), make([]float64, c.ch)
		for i := range x {
			x[i] = 3 + 2*rng.NormFloat64() // an offset mean stresses the combination
			dy[i] = rng.NormFloat64()
		}
		for i := range w {
			w[i] = rng.NormFloat64()
		}
		// Forward statistics through the chunked path.
		chunks, chunk := normChunks(ng, length)
		mean, rstd := make([]float64, ng), make([]float64, ng)
		for r := 0; r < ng; r++ {
			var mu, m2 float64
			type part struct{ m, mean, m2 float64 }
			var parts []part
			for k := 0; k < chunks; k++ {
				lo, hi := k*chunk, min(length, (k+1)*chunk)
				var s, q float64
				for i := lo; i < hi; i++ {
					s += x[r*length+i]
				}
				cm := s / float64(max(hi-lo, 1))
				for i := lo; i < hi; i++ {
					q += (x[r*length+i] - cm) * (x[r*length+i] - cm)
				}
				parts = append(parts, part{float64(max(0, hi-lo)), cm, q})
			}
			for _, pt := range parts {
				mu += pt.m * pt.mean
			}
			mu /= float64(length)
			for _, pt := range parts {
				m2 += pt.m2 + pt.m*(pt.mean-mu)*(pt.mean-mu)
			}
			mean[r], rstd[r] = mu, 1/math.Sqrt(m2/float64(length)+1e-6)
			// The definition: two passes over the whole group.
			var wm, wv float64
			for i := 0; i < length; i++ {
				wm += x[r*length+i]
			}
			wm /= float64(length)
			for i := 0; i < length; i++ {
				wv += (x[r*length+i] - wm) * (x[r*length+i] - wm)
			}
			if math.Abs(mu-wm) > 1e-9 || math.Abs(rstd[r]-1/math.Sqrt(wv/float64(length)+1e-6)) > 1e-9 {
				t.Fatalf("%+v row %d: chunked mean/rstd %g/%g, want %g/%g", c, r, mu, rstd[r], wm, 1/math.Sqrt(wv/float64(length)+1e-6))
			}
		}
		// Backward through the kernels' index arithmetic.
		bch, bchunk := normChunks(nc, c.hw)
		part := make([]float64, nc*bch*2)
		for r := 0; r < nc; r++ {
			g := r / cpg
			for k := 0; k < bch; k++ {
				for i := k * bchunk; i < min(c.hw, (k+1)*bchunk); i++ {
					d := dy[r*c.hw+i]
					part[(r*bch+k)*2] += d
					part[(r*bch+k)*2+1] += d * (x[r*c.hw+i] - mean[g]) * rstd[g]
				}
			}
		}
		gsum := make([]float64, ng*2)
		for g := 0; g < ng; g++ {
			for j := 0; j < cpg; j++ {
				row := g*cpg + j
				for k := 0; k < bch; k++ {
					gsum[2*g] += w[row%c.ch] * part[(row*bch+k)*2]
					gsum[2*g+1] += w[row%c.ch] * part[(row*bch+k)*2+1]
				}
			}
		}
		dw, db := make([]float64, c.ch), make([]float64, c.ch)
		for ch := 0; ch < c.ch; ch++ {
			for s := 0; s < c.n; s++ {
				for k := 0; k < bch; k++ {
					db[ch] += part[((s*c.ch+ch)*bch+k)*2]
					dw[ch] += part[((s*c.ch+ch)*bch+k)*2+1]
				}
			}
		}
		// The definition, per sample and group.
		wantDW, wantDB := make([]float64, c.ch), make([]float64, c.ch)
		for s := 0; s < c.n; s++ {
			for gg := 0; gg < c.groups; gg++ {
				g := s*c.groups + gg
				var sdn, sdnx float64
				for j := 0; j < cpg; j++ {
					ch := gg*cpg + j
					for i := 0; i < c.hw; i++ {
						idx := (s*c.ch+ch)*c.hw + i
						xh := (x[idx] - mean[g]) * rstd[g]
						sdn += dy[idx] * w[ch]
						sdnx += dy[idx] * w[ch] * xh
						wantDW[ch] += dy[idx] * xh
						wantDB[ch] += dy[idx]
					}
				}
				if math.Abs(sdn-gsum[2*g]) > 1e-8 || math.Abs(sdnx-gsum[2*g+1]) > 1e-8 {
					t.Fatalf("%+v group %d: sums %g/%g, want %g/%g", c, g, gsum[2*g], gsum[2*g+1], sdn, sdnx)
				}
				// groupnorm_bwd_dx_f32's row → group mapping must land on this group.
				for j := 0; j < cpg; j++ {
					if row := s*c.ch + gg*cpg + j; row/cpg != g {
						t.Fatalf("channel row %d maps to group %d, want %d", row, row/cpg, g)
					}
				}
			}
		}
		for ch := range wantDW {
			if math.Abs(dw[ch]-wantDW[ch]) > 1e-8 || math.Abs(db[ch]-wantDB[ch]) > 1e-8 {
				t.Fatalf("%+v channel %d: dw/db %g/%g, want %g/%g", c, ch, dw[ch], db[ch], wantDW[ch], wantDB[ch])
			}
		}
	}
}

// TestUpsampleIndexing runs upsample_nearest_f32 and upsample_nearest_bwd_f32's index
// arithmetic on the host: the backward must be the forward's adjoint (⟨up(x), g⟩ = ⟨x, up*(g)⟩).
func TestUpsampleIndexing(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	for _, c := range []struct{ nc, h, w, f int }{{3, 4, 5, 2}, {1, 1, 1, 3}, {2, 3, 2, 1}} {
		x := make([]float64, c.nc*c.h*c.w)
		g := make([]float64, len(x)*c.f*c.f)
		for i := range x {
			x[i] = rng.NormFloat64()
		}
		for i := range g {
			g[i] = rng.NormFloat64()
		}
		wf, hf := c.w*c.f, c.h*c.f
		var lhs, rhs float64
		for idx := range g {
			xx, t1 := idx%wf, idx/wf
			y, r := t1%hf, t1/hf
			lhs += x[(r*c.h+y/c.f)*c.w+xx/c.f] * g[idx]
		}
		for idx := range x {
			xx, t1 := idx%c.w, idx/c.w
			y, r := t1%c.h, t1/c.h
			base := (r*c.h*c.f+y*c.f)*wf + xx*c.f
			var acc float64
			for i := 0; i < c.f; i++ {
				for j := 0; j < c.f; j++ {
					acc += g[base+i*wf+j]
				}
			}
			rhs += x[idx] * acc
		}
		if math.Abs(lhs-rhs) > 1e-9 {
			t.Fatalf("%+v: ⟨up(x), g⟩ = %g, ⟨x, up*(g)⟩ = %g", c, lhs, rhs)
		}
	}
}

func TestConvWorkspace(t *testing.T) {
	geom := func(p engine.Conv2DParams) convGeom {
		g, err := convShape(p)
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	small := geom(engine.Conv2DParams{N: 2, C: 3, H: 8, Wd: 8, O: 4, KH: 3, KW: 3, Stride: 1, PadTop: 1, PadBottom: 1, PadLeft: 1, PadRight: 1})
	direct := geom(engine.Conv2DParams{N: 2, C: 3, H: 8, Wd: 8, O: 4, KH: 1, KW: 1, Stride: 1})
	vae := geom(engine.Conv2DParams{N: 1, C: 128, H: 1024, Wd: 1024, O: 128, KH: 3, KW: 3, Stride: 1, PadTop: 1, PadBottom: 1, PadLeft: 1, PadRight: 1})
	vae1x1 := geom(engine.Conv2DParams{N: 1, C: 256, H: 1024, Wd: 1024, O: 128, KH: 1, KW: 1, Stride: 1})
	vaePC := int64(convScratchBytes / (1152 * 4)) // pixels in a VAE panel
	vae1PC := int64(convScratchBytes / (256 * 4))
	cases := []struct {
		name           string
		g              convGeom
		backward, bf16 bool
		want           int64
	}{
		// Both images in one panel: 2·27·64 columns.
		{"fp32 forward", small, false, false, 2 * 27 * 64 * 4},
		{"fp32 backward", small, true, false, 2 * 27 * 64 * 4},
		{"bf16 forward: panel + bf16 panel and W", small, false, true, 2*27*64*4 + (2*27*64+4*27)*2},
		{"bf16 backward: panel + bf16 DY and panel", small, true, true, 2*27*64*4 + (2*4*64+2*27*64)*2},
		{"direct fp32 holds nothing", direct, true, false, 0},
		{"direct bf16: X and DY copies, no columns", direct, true, true, (2*4*64 + 2*3*64) * 2},
		{"VAE 1024² stays at the panel", vae, false, false, vaePC * 1152 * 4},
		{"VAE 1024² backward bf16: panel, DY rows, bf16 DY rows and panel", vae, true, true,
			vaePC*1152*4 + 128*vaePC*4 + (128*vaePC+vaePC*1152)*2},
		{"VAE 1×1 at 1024² in bf16: pixel panels", vae1x1, false, true, vae1PC*256*4 + (vae1PC*256+128*256)*2},
	}
	for _, c := range cases {
		if got := convWorkspace(c.g, c.backward, c.bf16); got != c.want {
			t.Errorf("%s: %d bytes, want %d", c.name, got, c.want)
		}
	}
	// The Backend contract: scratch never grows with the image.
	vae2k := geom(engine.Conv2DParams{N: 1, C: 128, H: 2048, Wd: 2048, O: 128, KH: 3, KW: 3, Stride: 1, PadTop: 1, PadBottom: 1, PadLeft: 1, PadRight: 1})
	for _, bf16 := range []bool{false, true} {
		for _, backward := range []bool{false, true} {
			a, b := convWorkspace(vae, backward, bf16), convWorkspace(vae2k, backward, bf16)
			if a != b || a > 3*convScratchBytes {
				t.Errorf("bf16 %v backward %v: %d bytes at 1024², %d at 2048²", bf16, backward, a, b)
			}
		}
	}
}
