package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"simpletuner/trainerproc/engine"
)

// naiveConv is the definition of Conv2DParams as a direct loop in float64.
func naiveConv(g convGeom, x, w, bias []float64) []float64 {
	y := make([]float64, g.n*g.o*g.oh*g.ow)
	for n := 0; n < g.n; n++ {
		for o := 0; o < g.o; o++ {
			for oy := 0; oy < g.oh; oy++ {
				for ox := 0; ox < g.ow; ox++ {
					var s float64
					if bias != nil {
						s = bias[o]
					}
					for c := 0; c < g.c; c++ {
						for i := 0; i < g.kh; i++ {
							for j := 0; j < g.kw; j++ {
								iy, ix := oy*g.stride+i-g.pt, ox*g.stride+j-g.pl
								if iy < 0 || iy >= g.h || ix < 0 || ix >= g.w {
									continue
								}
								s += w[((o*g.c+c)*g.kh+i)*g.kw+j] * x[((n*g.c+c)*g.h+iy)*g.w+ix]
							}
						}
					}
					y[((n*g.o+o)*g.oh+oy)*g.ow+ox] = s
				}
			}
		}
	}
	return y
}

// naiveConvGrad is the adjoint of naiveConv: dx, dw and dbias for output gradient dy.
func naiveConvGrad(g convGeom, x, w, dy []float64) (dx, dw, db []float64) {
	dx, dw, db = make([]float64, len(x)), make([]float64, len(w)), make([]float64, g.o)
	for n := 0; n < g.n; n++ {
		for o := 0; o < g.o; o++ {
			for oy := 0; oy < g.oh; oy++ {
				for ox := 0; ox < g.ow; ox++ {
					d := dy[((n*g.o+o)*g.oh+oy)*g.ow+ox]
					db[o] += d
					for c := 0; c < g.c; c++ {
						for i := 0; i < g.kh; i++ {
							for j := 0; j < g.kw; j++ {
								iy, ix := oy*g.stride+i-g.pt, ox*g.stride+j-g.pl
								if iy < 0 || iy >= g.h || ix < 0 || ix >= g.w {
									continue
								}
								wi, xi := ((o*g.c+c)*g.kh+i)*g.kw+j, ((n*g.c+c)*g.h+iy)*g.w+ix
								dw[wi] += d * x[xi]
								dx[xi] += d * w[wi]
							}
						}
					}
				}
			}
		}
	}
	return dx, dw, db
}

// convCases are the geometries of the table tests: 3×3 same padding, the VAE downsampler
// (stride 2, pad bottom/right), direct and strided 1×1, non-square kernels and images, a
// kernel as large as the padded image, and stride larger than the kernel.
var convCases = []engine.Conv2DParams{
	{N: 2, C: 3, H: 7, Wd: 5, O: 4, KH: 3, KW: 3, Stride: 1, PadTop: 1, PadBottom: 1, PadLeft: 1, PadRight: 1},
	{N: 1, C: 2, H: 8, Wd: 6, O: 3, KH: 3, KW: 3, Stride: 2, PadBottom: 1, PadRight: 1},
	{N: 2, C: 5, H: 4, Wd: 3, O: 6, KH: 1, KW: 1, Stride: 1},
	{N: 1, C: 3, H: 5, Wd: 7, O: 2, KH: 1, KW: 1, Stride: 2},
	{N: 2, C: 2, H: 5, Wd: 9, O: 3, KH: 2, KW: 4, Stride: 1, PadTop: 1, PadLeft: 2, PadRight: 1},
	{N: 1, C: 1, H: 3, Wd: 4, O: 2, KH: 5, KW: 4, Stride: 1, PadTop: 1, PadBottom: 1},
	{N: 1, C: 2, H: 10, Wd: 11, O: 2, KH: 2, KW: 2, Stride: 3, PadTop: 2, PadBottom: 0, PadLeft: 0, PadRight: 3},
	{N: 3, C: 4, H: 6, Wd: 6, O: 5, KH: 3, KW: 3, Stride: 1},
}

func randSlice(r *rand.Rand, n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = r.NormFloat64()
	}
	return out
}

func upload[T Float](t *testing.T, b *Backend[T], v []float64) engine.Buffer {
	t.Helper()
	buf, err := b.Alloc(len(v))
	if err != nil {
		t.Fatal(err)
	}
	d := Data[T](buf)
	for i, x := range v {
		d[i] = T(x)
	}
	return buf
}

func download[T Float](buf engine.Buffer) []float64 {
	d := Data[T](buf)
	out := make([]float64, len(d))
	for i, x := range d {
		out[i] = float64(x)
	}
	return out
}

func assertNear(t *testing.T, what string, got, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range got {
		if d := math.Abs(got[i] - want[i]); d > tol*(1+math.Abs(want[i])) || math.IsNaN(got[i]) {
			t.Fatalf("%s: element %d = %.9g, want %.9g", what, i, got[i], want[i])
		}
	}
}

// convRun runs forward and backward on backend b and returns y, dx, dw, dbias.
func convRun[T Float](t *testing.T, b *Backend[T], p engine.Conv2DParams, x, w, bias, dy []float64) [4][]float64 {
	t.Helper()
	g := newConvGeom(p)
	p.X, p.W, p.Y = upload(t, b, x), upload(t, b, w), upload(t, b, make([]float64, g.n*g.o*g.oh*g.ow))
	if bias != nil {
		p.Bias = upload(t, b, bias)
	}
	b.Conv2D(p)
	gp := engine.Conv2DGradParams{Conv2DParams: p, DY: upload(t, b, dy),
		DX: upload(t, b, randSlice(rand.New(rand.NewPCG(0, 0)), len(x))), // garbage: must be overwritten
		DW: upload(t, b, make([]float64, len(w))), DBias: upload(t, b, make([]float64, g.o))}
	b.Conv2DBackward(gp)
	out := [4][]float64{download[T](p.Y), download[T](gp.DX), download[T](gp.DW), download[T](gp.DBias)}
	for _, buf := range []engine.Buffer{p.X, p.W, p.Y, p.Bias, gp.DY, gp.DX, gp.DW, gp.DBias} {
		b.Free(buf)
	}
	return out
}

// TestConvAgainstNaive compares forward and backward with the direct loops for every geometry,
// with whole-image panels and with panels of 1 and 7 positions (panel edges inside rows), on
// the float64 and both float32 paths.
func TestConvAgainstNaive(t *testing.T) {
	for ci, p := range convCases {
		g := newConvGeom(p)
		r := rand.New(rand.NewPCG(5, uint64(ci)))
		x, w, bias := randSlice(r, g.n*g.c*g.h*g.w), randSlice(r, g.o*g.k), randSlice(r, g.o)
		if ci%3 == 2 {
			bias = nil
		}
		dy := randSlice(r, g.n*g.o*g.oh*g.ow)
		y := naiveConv(g, x, w, bias)
		dx, dw, db := naiveConvGrad(g, x, w, dy)
		if bias == nil {
			db = make([]float64, g.o) // dbias is still the sum of dy
			for n := 0; n < g.n; n++ {
				for o := 0; o < g.o; o++ {
					for s := 0; s < g.oh*g.ow; s++ {
						db[o] += dy[(n*g.o+o)*g.oh*g.ow+s]
					}
				}
			}
		}
		want := [4][]float64{y, dx, dw, db}
		names := [4]string{"y", "dx", "dw", "dbias"}
		for _, panel := range []int{0, 1, 7} {
			t.Run(fmt.Sprintf("case%d/panel%d", ci, panel), func(t *testing.T) {
				b64, err := NewFloat64(Options{Threads: 2})
				if err != nil {
					t.Fatal(err)
				}
				defer b64.Close()
				b32 := newGonum(t, 2)
				if panel > 0 {
					b64.convScratch = panel * g.k
					b32.convScratch = panel * g.k
				}
				got := convRun(t, b64, p, x, w, bias, dy)
				for i := range got {
					assertNear(t, "float64 "+names[i], got[i], want[i], 1e-12)
				}
				got = convRun(t, b32, p, x, w, bias, dy)
				for i := range got {
					assertNear(t, "float32 "+names[i], got[i], want[i], 1e-4)
				}
				if n, _ := b64.Stats(); n != 0 {
					t.Errorf("%d buffers leaked", n)
				}
			})
		}
	}
}

// TestNewKernelsThreadIndependent checks that conv (gonum GEMM), group norm, RMS norm and
// nearest upsampling give bit-identical results, gradients included, for 1, 2 and 3 threads.
func TestNewKernelsThreadIndependent(t *testing.T) {
	run := func(threads int) [][]float64 {
		b := newGonum(t, threads)
		b.convScratch = 5 * 27 // several panels per image
		r := rand.New(rand.NewPCG(9, 9))
		var out [][]float64
		p := engine.Conv2DParams{N: 2, C: 3, H: 9, Wd: 8, O: 4, KH: 3, KW: 3, Stride: 2, PadBottom: 1, PadRight: 1}
		g := newConvGeom(p)
		res := convRun(t, b, p, randSlice(r, g.n*g.c*g.h*g.w), randSlice(r, g.o*g.k), randSlice(r, g.o), randSlice(r, g.n*g.o*g.oh*g.ow))
		out = append(out, res[:]...)

		const n, c, hw, groups = 2, 8, 300, 4
		gx, gw, gb, gdy := upload(t, b, randSlice(r, n*c*hw)), upload(t, b, randSlice(r, c)), upload(t, b, randSlice(r, c)), upload(t, b, randSlice(r, n*c*hw))
		gy, mean, rstd := upload(t, b, make([]float64, n*c*hw)), upload(t, b, make([]float64, n*groups)), upload(t, b, make([]float64, n*groups))
		gdx, gdw, gdb := upload(t, b, make([]float64, n*c*hw)), upload(t, b, make([]float64, c)), upload(t, b, make([]float64, c))
		b.GroupNorm(engine.GroupNormParams{X: gx, Y: gy, Weight: gw, Bias: gb, Mean: mean, Rstd: rstd, N: n, C: c, HW: hw, Groups: groups, Eps: 1e-6})
		b.GroupNormBackward(engine.GroupNormGradParams{X: gx, Weight: gw, Mean: mean, Rstd: rstd, DY: gdy, DX: gdx, DWeight: gdw, DBias: gdb, N: n, C: c, HW: hw, Groups: groups})
		for _, buf := range []engine.Buffer{gy, mean, rstd, gdx, gdw, gdb} {
			out = append(out, download[float32](buf))
		}

		const rows, cols = 300, 70
		rx, rw, rdy := upload(t, b, randSlice(r, rows*cols)), upload(t, b, randSlice(r, cols)), upload(t, b, randSlice(r, rows*cols))
		ry, rr, rdx, rdw := upload(t, b, make([]float64, rows*cols)), upload(t, b, make([]float64, rows)), upload(t, b, make([]float64, rows*cols)), upload(t, b, make([]float64, cols))
		b.RMSNorm(engine.RMSNormParams{X: rx, Y: ry, Weight: rw, Rstd: rr, Rows: rows, Cols: cols, Eps: 1e-6})
		b.RMSNormBackward(engine.RMSNormGradParams{X: rx, Weight: rw, Rstd: rr, DY: rdy, DX: rdx, DWeight: rdw, Rows: rows, Cols: cols})
		for _, buf := range []engine.Buffer{ry, rr, rdx, rdw} {
			out = append(out, download[float32](buf))
		}

		ux, uy, udx := upload(t, b, randSlice(r, 6*5*7)), upload(t, b, make([]float64, 6*5*7*9)), upload(t, b, make([]float64, 6*5*7))
		b.UpsampleNearest(uy, ux, 6, 5, 7, 3)
		b.UpsampleNearestBackward(udx, uy, 6, 5, 7, 3)
		out = append(out, download[float32](uy), download[float32](udx))
		return out
	}
	ref := run(1)
	for _, threads := range []int{2, 3} {
		got := run(threads)
		for i := range ref {
			for j := range ref[i] {
				if math.Float64bits(got[i][j]) != math.Float64bits(ref[i][j]) {
					t.Fatalf("result %d element %d: %d threads give %g, 1 thread %g", i, j, threads, got[i][j], ref[i][j])
				}
			}
		}
	}
}

// TestConvWorkspace checks the reported scratch: none for a direct 1×1 convolution, one panel
// forward and two backward otherwise, bounded by convPanelBytes for a large image.
func TestConvWorkspace(t *testing.T) {
	b := newGonum(t, 1)
	big := engine.Conv2DParams{N: 1, C: 512, H: 1024, Wd: 1024, O: 512, KH: 3, KW: 3, Stride: 1, PadTop: 1, PadBottom: 1, PadLeft: 1, PadRight: 1}
	if fw, bw := b.ConvWorkspace(big, false), b.ConvWorkspace(big, true); fw > convPanelBytes || fw <= convPanelBytes/2 || bw != 2*fw {
		t.Errorf("3×3 over 512×1024²: workspace %d forward, %d backward", fw, bw)
	}
	small := engine.Conv2DParams{N: 1, C: 2, H: 4, Wd: 4, O: 3, KH: 3, KW: 3, Stride: 1}
	if fw := b.ConvWorkspace(small, false); fw != 2*9*2*2*4 {
		t.Errorf("small conv workspace %d", fw)
	}
	direct := engine.Conv2DParams{N: 1, C: 512, H: 64, Wd: 64, O: 512, KH: 1, KW: 1, Stride: 1}
	if fw := b.ConvWorkspace(direct, true); fw != 0 {
		t.Errorf("1×1 workspace %d", fw)
	}
}
