package engine_test

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"simpletuner/trainerproc/engine"
)

func conv(stride int, pad [4]int, bias bool) func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor {
	return func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor {
		var b *engine.Tensor
		if bias {
			b = in[2]
		}
		return e.Conv2D(in[0], in[1], b, stride, pad)
	}
}

// TestGradCheckImageOps checks the VAE and T5 ops with finite differences: convolutions with
// stride 2 and asymmetric padding, 1×1 (direct and strided), non-square images and kernels,
// group norms with and without affine parameters, RMS norms, nearest upsampling, and a small
// VAE-style resnet block chaining them.
func TestGradCheckImageOps(t *testing.T) {
	cases := []gradCase{
		{name: "conv3x3_same", shapes: [][]int{{2, 3, 5, 4}, {4, 3, 3, 3}, {4}}, f: conv(1, [4]int{1, 1, 1, 1}, true)},
		{name: "conv_downsample", shapes: [][]int{{1, 2, 6, 5}, {3, 2, 3, 3}, {3}}, f: conv(2, [4]int{0, 1, 0, 1}, true)},
		{name: "conv1x1", shapes: [][]int{{2, 3, 4, 3}, {5, 3, 1, 1}, {5}}, f: conv(1, [4]int{}, true)},
		{name: "conv1x1_stride2", shapes: [][]int{{1, 3, 5, 4}, {2, 3, 1, 1}}, f: conv(2, [4]int{}, false)},
		{name: "conv_nonsquare_nobias", shapes: [][]int{{2, 2, 4, 7}, {3, 2, 2, 3}}, f: conv(1, [4]int{1, 0, 2, 1}, false)},
		{name: "conv_stride3", shapes: [][]int{{1, 2, 7, 8}, {2, 2, 3, 2}, {2}}, f: conv(3, [4]int{2, 0, 0, 3}, true)},
		{name: "groupnorm_affine", shapes: [][]int{{2, 6, 3, 4}, {6}, {6}}, f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor {
			return e.GroupNorm(in[0], 3, in[1], in[2], 1e-6)
		}},
		{name: "groupnorm_plain_one_group", shapes: [][]int{{2, 4, 5}}, f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor {
			return e.GroupNorm(in[0], 1, nil, nil, 1e-5)
		}},
		{name: "groupnorm_weight_only_per_channel", shapes: [][]int{{1, 4, 2, 3}, {4}}, f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor {
			return e.GroupNorm(in[0], 4, in[1], nil, 1e-6)
		}},
		{name: "groupnorm_bias_only", shapes: [][]int{{2, 4, 3, 2}, {4}}, f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor {
			return e.GroupNorm(in[0], 2, nil, in[1], 1e-6)
		}},
		{name: "rmsnorm", shapes: [][]int{{2, 3, 8}, {8}}, f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor {
			return e.RMSNorm(in[0], in[1], 1e-6)
		}},
		{name: "rmsnorm_noweight", shapes: [][]int{{5, 6}}, f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor {
			return e.RMSNorm(in[0], nil, 1e-6)
		}},
		{name: "upsample2", shapes: [][]int{{2, 3, 2, 3}}, f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor {
			return e.UpsampleNearest(in[0], 2)
		}},
		{name: "upsample3", shapes: [][]int{{1, 2, 3, 2}}, f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor {
			return e.UpsampleNearest(in[0], 3)
		}},
		{name: "vae_block", shapes: [][]int{{1, 4, 3, 4}, {4}, {4}, {4, 4, 3, 3}, {4}, {2, 4, 1, 1}, {2}, {2, 2, 3, 3}},
			f: func(e *engine.Engine, in []*engine.Tensor) *engine.Tensor {
				h := e.SiLU(e.GroupNorm(in[0], 2, in[1], in[2], 1e-6))
				h = e.Add(in[0], e.Conv2D(h, in[3], in[4], 1, [4]int{1, 1, 1, 1}))
				h = e.Conv2D(e.UpsampleNearest(h, 2), in[5], in[6], 1, [4]int{})
				return e.Conv2D(h, in[7], nil, 2, [4]int{0, 1, 0, 1})
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { runGradCheck(t, c) })
	}
}

// TestForwardImageOps checks the forward ops on every backend against direct loops in float64.
func TestForwardImageOps(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *engine.Engine, r *rand.Rand) {
		// Group norm over [2, 6, 5, 3] in 3 groups, with affine parameters.
		n, c, hw, groups := 2, 6, 15, 3
		x, w, b := randHost(r, n*c*hw), randHost(r, c), randHost(r, c)
		for i := range x {
			x[i] = 3 + 2*x[i] // a mean far from 0 exercises the two-pass variance
		}
		y := e.GroupNorm(e.FromHost(x, n, c, 5, 3), groups, e.FromHost(w, c), e.FromHost(b, c), 1e-5)
		want := make([]float64, len(x))
		cpg := c / groups
		for s := 0; s < n*groups; s++ {
			blk := x[s*cpg*hw : (s+1)*cpg*hw]
			var mu, vr float64
			for _, v := range blk {
				mu += float64(v)
			}
			mu /= float64(len(blk))
			for _, v := range blk {
				vr += (float64(v) - mu) * (float64(v) - mu)
			}
			rs := 1 / math.Sqrt(vr/float64(len(blk))+1e-5)
			for i, v := range blk {
				ch := (s%groups)*cpg + i/hw
				want[s*cpg*hw+i] = (float64(v)-mu)*rs*float64(w[ch]) + float64(b[ch])
			}
		}
		assertClose(t, "groupnorm", toHost(t, y), want, 1e-5)

		// RMS norm over [3, 4, 10].
		rows, d := 12, 10
		x, w = randHost(r, rows*d), randHost(r, d)
		y = e.RMSNorm(e.FromHost(x, 3, 4, d), e.FromHost(w, d), 1e-6)
		want = make([]float64, len(x))
		for i := 0; i < rows; i++ {
			var ss float64
			for _, v := range x[i*d : (i+1)*d] {
				ss += float64(v) * float64(v)
			}
			rs := 1 / math.Sqrt(ss/float64(d)+1e-6)
			for j := 0; j < d; j++ {
				want[i*d+j] = float64(x[i*d+j]) * rs * float64(w[j])
			}
		}
		assertClose(t, "rmsnorm", toHost(t, y), want, 1e-5)

		// Nearest upsampling of [2, 3, 2, 4] by 2.
		x = randHost(r, 2*3*2*4)
		got := toHost(t, e.UpsampleNearest(e.FromHost(x, 2, 3, 2, 4), 2))
		want = make([]float64, len(got))
		for nc := 0; nc < 6; nc++ {
			for yy := 0; yy < 4; yy++ {
				for xx := 0; xx < 8; xx++ {
					want[(nc*4+yy)*8+xx] = float64(x[(nc*2+yy/2)*4+xx/2])
				}
			}
		}
		assertClose(t, "upsample", got, want, 0)
	})
}

// TestConv2DRandomShapes compares Conv2D with a direct loop on random geometries on every
// backend (gonum, OpenBLAS where present, float64).
func TestConv2DRandomShapes(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *engine.Engine, r *rand.Rand) {
		for i := 0; i < 12; i++ {
			n, c, o := 1+r.IntN(2), 1+r.IntN(4), 1+r.IntN(4)
			kh, kw, stride := 1+r.IntN(3), 1+r.IntN(3), 1+r.IntN(2)
			pad := [4]int{r.IntN(2), r.IntN(2), r.IntN(3), r.IntN(2)}
			h, wd := kh+r.IntN(6), kw+r.IntN(6)
			x, w, b := randHost(r, n*c*h*wd), randHost(r, o*c*kh*kw), randHost(r, o)
			y := e.Conv2D(e.FromHost(x, n, c, h, wd), e.FromHost(w, o, c, kh, kw), e.FromHost(b, o), stride, pad)
			oh, ow := (h+pad[0]+pad[1]-kh)/stride+1, (wd+pad[2]+pad[3]-kw)/stride+1
			if got := y.Shape(); got[0] != n || got[1] != o || got[2] != oh || got[3] != ow {
				t.Fatalf("shape %v, want [%d %d %d %d]", got, n, o, oh, ow)
			}
			want := make([]float64, n*o*oh*ow)
			for in := 0; in < n; in++ {
				for oc := 0; oc < o; oc++ {
					for oy := 0; oy < oh; oy++ {
						for ox := 0; ox < ow; ox++ {
							s := float64(b[oc])
							for ic := 0; ic < c; ic++ {
								for ki := 0; ki < kh; ki++ {
									for kj := 0; kj < kw; kj++ {
										iy, ix := oy*stride+ki-pad[0], ox*stride+kj-pad[2]
										if iy >= 0 && iy < h && ix >= 0 && ix < wd {
											s += float64(w[((oc*c+ic)*kh+ki)*kw+kj]) * float64(x[((in*c+ic)*h+iy)*wd+ix])
										}
									}
								}
							}
							want[((in*o+oc)*oh+oy)*ow+ox] = s
						}
					}
				}
			}
			assertClose(t, fmt.Sprintf("conv %d (x [%d %d %d %d], w [%d %d %d %d], stride %d, pad %v)", i, n, c, h, wd, o, c, kh, kw, stride, pad),
				toHost(t, y), want, 1e-4)
		}
	})
}

// TestImageOpsBackendsAgree runs forward and backward of a conv/groupnorm/upsample/rmsnorm
// chain on the float32 backends and the float64 one and compares every gradient.
func TestImageOpsBackendsAgree(t *testing.T) {
	shapes := [][]int{{2, 4, 6, 5}, {6, 4, 3, 3}, {6}, {6}, {6}, {3, 6, 1, 1}, {4}}
	r := rand.New(rand.NewPCG(3, 4))
	var inputs [][]float32
	for _, s := range shapes {
		n := 1
		for _, d := range s {
			n *= d
		}
		inputs = append(inputs, randHost(r, n))
	}
	var ref [][]float32
	for _, bc := range forwardBackends(t) {
		be, err := bc.new()
		if err != nil {
			t.Fatal(err)
		}
		e := engine.New(be)
		var got [][]float32
		err = engine.Catch(func() {
			s := e.Scope()
			defer s.Close()
			var in []*engine.Tensor
			for i, sh := range shapes {
				in = append(in, e.FromHost(inputs[i], sh...).SetRequiresGrad(true))
			}
			h := e.Conv2D(in[0], in[1], in[2], 2, [4]int{0, 1, 0, 1})
			h = e.SiLU(e.GroupNorm(h, 3, in[3], in[4], 1e-6))
			h = e.Conv2D(e.UpsampleNearest(h, 2), in[5], nil, 1, [4]int{})
			h = e.RMSNorm(h, in[6], 1e-6)
			loss := e.MeanAll(e.Mul(h, h))
			if err := e.Backward(loss); err != nil {
				t.Fatal(err)
			}
			got = append(got, toHost(t, h))
			for _, x := range in {
				got = append(got, toHost(t, x.Grad()))
				x.ZeroGrad()
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		if n, _ := be.(interface{ Stats() (int64, int64) }).Stats(); n != 0 {
			t.Errorf("%s: %d buffers leaked", bc.name, n)
		}
		_ = be.Close()
		if ref == nil {
			ref = got
			continue
		}
		for i := range got {
			want := make([]float64, len(ref[i]))
			for j, v := range ref[i] {
				want[j] = float64(v)
			}
			assertClose(t, fmt.Sprintf("%s: result %d", bc.name, i), got[i], want, 2e-4)
		}
	}
}

// TestImageOpShapeErrors checks that invalid shapes fail with ErrShape naming both shapes.
func TestImageOpShapeErrors(t *testing.T) {
	e, _ := newF64(t, 1)
	s := e.Scope()
	defer s.Close()
	x := e.Zeros(1, 3, 4, 4)
	cases := []struct {
		name, want string
		f          func()
	}{
		{"conv channels", "[1 3 4 4]", func() { e.Conv2D(x, e.Zeros(2, 4, 3, 3), nil, 1, [4]int{}) }},
		{"conv bias", "[5]", func() { e.Conv2D(x, e.Zeros(2, 3, 3, 3), e.Zeros(5), 1, [4]int{}) }},
		{"conv rank", "[3 4 4]", func() { e.Conv2D(e.Zeros(3, 4, 4), e.Zeros(2, 3, 3, 3), nil, 1, [4]int{}) }},
		{"conv kernel larger than image", "[2 3 6 3]", func() { e.Conv2D(x, e.Zeros(2, 3, 6, 3), nil, 1, [4]int{1, 0, 0, 0}) }},
		{"conv stride", "stride 0", func() { e.Conv2D(x, e.Zeros(2, 3, 3, 3), nil, 0, [4]int{}) }},
		{"conv negative pad", "[0 0 -1 0]", func() { e.Conv2D(x, e.Zeros(2, 3, 3, 3), nil, 1, [4]int{0, 0, -1, 0}) }},
		{"groupnorm groups", "[1 3 4 4] in 2 groups", func() { e.GroupNorm(x, 2, nil, nil, 1e-6) }},
		{"groupnorm weight", "[4]", func() { e.GroupNorm(x, 3, e.Zeros(4), nil, 1e-6) }},
		{"rmsnorm weight", "[3]", func() { e.RMSNorm(x, e.Zeros(3), 1e-6) }},
		{"upsample rank", "[3 4]", func() { e.UpsampleNearest(e.Zeros(3, 4), 2) }},
		{"upsample factor", "factor 0", func() { e.UpsampleNearest(x, 0) }},
	}
	for _, c := range cases {
		err := engine.Catch(c.f)
		if !errors.Is(err, engine.ErrShape) {
			t.Errorf("%s: error %v, want ErrShape", c.name, err)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %q does not mention %q", c.name, err, c.want)
		}
	}
}
