//go:build cuda

package cuda

import (
	"fmt"
	"math"

	"simpletuner/trainerproc/engine"
)

// The parity checks of the convolution-era ops (Conv2D, GroupNorm, RMSNorm, UpsampleNearest),
// which CheckParity runs after the original ones.

// inputs allocates one pair per size, each drawn from N(0, scale²).
func (p *parity) inputs(scale float64, ns ...int) ([]pair, error) {
	out := make([]pair, 0, len(ns))
	for _, n := range ns {
		x, err := p.random(n, scale)
		if err != nil {
			p.free(out...)
			return nil, err
		}
		out = append(out, x)
	}
	return out, nil
}

// outputs allocates one NaN-poisoned output pair per size.
func (p *parity) outputs(ns ...int) ([]pair, error) {
	out := make([]pair, 0, len(ns))
	for _, n := range ns {
		x, err := p.output(n)
		if err != nil {
			p.free(out...)
			return nil, err
		}
		out = append(out, x)
	}
	return out, nil
}

// rerun runs op a second time into fresh GPU outputs shaped like outs and records, as op +
// " rerun", the fraction of elements that are not bit-identical to the first run (tolerance 0):
// the package promises reductions without atomics, so a rerun on the same inputs must agree
// to the bit.
func (p *parity) rerun(op, note string, outs []pair, run func(again []engine.Buffer)) {
	r := ParityResult{Op: op + " rerun", Precision: p.g.opts.Precision, Note: note + " (fraction of elements not bit-identical)"}
	again := make([]engine.Buffer, 0, len(outs))
	defer func() {
		for _, b := range again {
			p.g.Free(b)
		}
		p.out = append(p.out, r)
	}()
	for _, o := range outs {
		b, err := p.g.Alloc(o.n)
		if err != nil {
			r.Err = err
			return
		}
		again = append(again, b)
	}
	run(again)
	var differ, total int
	for i, o := range outs {
		first, second := make([]float32, o.n), make([]float32, o.n)
		if err := p.g.Download(first, o.g); err != nil {
			r.Err = err
			return
		}
		if err := p.g.Download(second, again[i]); err != nil {
			r.Err = err
			return
		}
		for j := range first {
			if math.Float32bits(first[j]) != math.Float32bits(second[j]) {
				differ++
			}
		}
		total += o.n
	}
	if total > 0 {
		r.RelErr = float64(differ) / float64(total)
	}
}

// conv2d checks the convolution forward and backward: padded 3×3, the VAE's asymmetric
// stride-2 downsampler, a 1×1 (the direct GEMM path) and an image whose column matrix is
// larger than convScratchBytes, so it runs in several pixel panels.
func (p *parity) conv2d(tol float64) error {
	same := func(n, c, h, w, o int) engine.Conv2DParams {
		return engine.Conv2DParams{N: n, C: c, H: h, Wd: w, O: o, KH: 3, KW: 3, Stride: 1, PadTop: 1, PadBottom: 1, PadLeft: 1, PadRight: 1}
	}
	cases := []struct {
		name string
		c    engine.Conv2DParams
		bias bool
	}{
		{"3×3 pad 1", same(2, 5, 17, 13, 6), true},
		{"3×3 stride 2 pad bottom/right", engine.Conv2DParams{N: 2, C: 4, H: 16, Wd: 12, O: 4, KH: 3, KW: 3, Stride: 2, PadBottom: 1, PadRight: 1}, false},
		{"1×1", engine.Conv2DParams{N: 3, C: 8, H: 9, Wd: 7, O: 5, KH: 1, KW: 1, Stride: 1}, true},
		{"3×3 pad 1 in pixel panels", same(1, 64, 180, 180, 4), true},
	}
	for _, c := range cases {
		g, err := convShape(c.c)
		if err != nil {
			return err
		}
		nx, nw, ny := g.n*g.c*g.h*g.w, g.o*g.k(), g.n*g.o*g.pixels()
		in, err := p.inputs(1, nx, ny)
		if err != nil {
			return err
		}
		wb, err := p.inputs(1/float64(g.k()), nw, g.o)
		if err != nil {
			return err
		}
		out, err := p.outputs(ny, nx, nw, g.o)
		if err != nil {
			return err
		}
		x, dy, w, bias := in[0], in[1], wb[0], wb[1]
		y, dx, dw, db := out[0], out[1], out[2], out[3]
		gp, rp := c.c, c.c
		gp.X, gp.W, gp.Y = x.g, w.g, y.g
		rp.X, rp.W, rp.Y = x.r, w.r, y.r
		if c.bias {
			gp.Bias, rp.Bias = bias.g, bias.r
		}
		note := fmt.Sprintf("%s N%d C%d %d×%d → O%d %d×%d, %d panels", c.name, g.n, g.c, g.h, g.w, g.o, g.oh, g.ow,
			len(planConvPanels(g.n, g.k(), g.pixels(), convScratchBytes)))
		p.g.Conv2D(gp)
		p.ref.Conv2D(rp)
		p.compare("Conv2D", note, tol, y)
		p.g.Conv2DBackward(engine.Conv2DGradParams{Conv2DParams: gp, DY: dy.g, DX: dx.g, DW: dw.g, DBias: db.g})
		p.ref.Conv2DBackward(engine.Conv2DGradParams{Conv2DParams: rp, DY: dy.r, DX: dx.r, DW: dw.r, DBias: db.r})
		p.compare("Conv2DBackward", note+" (dX, dW, dBias)", tol, dx, dw, db)
		p.rerun("Conv2DBackward", note, []pair{dx, dw, db}, func(a []engine.Buffer) {
			p.g.Conv2DBackward(engine.Conv2DGradParams{Conv2DParams: gp, DY: dy.g, DX: a[0], DW: a[1], DBias: a[2]})
		})
		p.free(in...)
		p.free(wb...)
		p.free(out...)
	}
	return nil
}

// groupNorm checks the group norm forward and backward on inputs with mean 3 (which a
// one-pass variance would get wrong), including a group long enough to be split in chunks
// and one channel per group.
func (p *parity) groupNorm() error {
	for _, c := range []struct {
		n, ch, hw, groups int
		affine            bool
	}{{2, 8, 300, 4, true}, {1, 8, 128 * 128, 2, true}, {3, 6, 50, 3, false}, {2, 32, 64, 32, true}} {
		total, ng := c.n*c.ch*c.hw, c.n*c.groups
		in, err := p.inputs(1, total, total, c.ch, c.ch)
		if err != nil {
			return err
		}
		x, dy, w, bias := in[0], in[1], in[2], in[3]
		v := make([]float32, total)
		for i := range v {
			v[i] = float32(3 + 2*p.rng.NormFloat64())
		}
		if err := p.set(x, v); err != nil {
			return err
		}
		out, err := p.outputs(total, ng, ng, total, c.ch, c.ch)
		if err != nil {
			return err
		}
		y, mean, rstd, dx, dw, db := out[0], out[1], out[2], out[3], out[4], out[5]
		fp := engine.GroupNormParams{N: c.n, C: c.ch, HW: c.hw, Groups: c.groups, Eps: 1e-6}
		bp := engine.GroupNormGradParams{N: c.n, C: c.ch, HW: c.hw, Groups: c.groups}
		gf, rf, gb, rb := fp, fp, bp, bp
		gf.X, gf.Y, gf.Mean, gf.Rstd = x.g, y.g, mean.g, rstd.g
		rf.X, rf.Y, rf.Mean, rf.Rstd = x.r, y.r, mean.r, rstd.r
		gb.X, gb.Mean, gb.Rstd, gb.DY, gb.DX = x.g, mean.g, rstd.g, dy.g, dx.g
		rb.X, rb.Mean, rb.Rstd, rb.DY, rb.DX = x.r, mean.r, rstd.r, dy.r, dx.r
		grads := []pair{dx}
		if c.affine {
			gf.Weight, gf.Bias, rf.Weight, rf.Bias = w.g, bias.g, w.r, bias.r
			gb.Weight, gb.DWeight, gb.DBias = w.g, dw.g, db.g
			rb.Weight, rb.DWeight, rb.DBias = w.r, dw.r, db.r
			grads = append(grads, dw, db)
		}
		chunks, _ := normChunks(ng, c.ch/c.groups*c.hw)
		note := fmt.Sprintf("N%d C%d HW%d G%d affine %v, %d chunks a group", c.n, c.ch, c.hw, c.groups, c.affine, chunks)
		p.g.GroupNorm(gf)
		p.ref.GroupNorm(rf)
		p.compare("GroupNorm", note+" (y, mean, rstd)", TolFP32, y, mean, rstd)
		p.g.GroupNormBackward(gb)
		p.ref.GroupNormBackward(rb)
		// float32 sums over up to 64K elements per group against the reference's float64.
		p.compare("GroupNormBackward", note, TolFP32*10, grads...)
		p.rerun("GroupNormBackward", note, grads, func(a []engine.Buffer) {
			again := gb
			again.DX = a[0]
			if c.affine {
				again.DWeight, again.DBias = a[1], a[2]
			}
			p.g.GroupNormBackward(again)
		})
		p.free(in...)
		p.free(out...)
	}
	return nil
}

// rmsNorm checks T5's RMS norm forward and backward with and without a weight.
func (p *parity) rmsNorm() error {
	for _, c := range []struct {
		rows, cols int
		weight     bool
	}{{37, 512, true}, {4, 4096, false}, {300, 64, true}} {
		n := c.rows * c.cols
		in, err := p.inputs(1, n, n, c.cols)
		if err != nil {
			return err
		}
		out, err := p.outputs(n, c.rows, n, c.cols)
		if err != nil {
			return err
		}
		x, dy, w := in[0], in[1], in[2]
		y, rstd, dx, dw := out[0], out[1], out[2], out[3]
		gf := engine.RMSNormParams{X: x.g, Y: y.g, Rstd: rstd.g, Rows: c.rows, Cols: c.cols, Eps: 1e-6}
		rf := engine.RMSNormParams{X: x.r, Y: y.r, Rstd: rstd.r, Rows: c.rows, Cols: c.cols, Eps: 1e-6}
		gb := engine.RMSNormGradParams{X: x.g, Rstd: rstd.g, DY: dy.g, DX: dx.g, Rows: c.rows, Cols: c.cols}
		rb := engine.RMSNormGradParams{X: x.r, Rstd: rstd.r, DY: dy.r, DX: dx.r, Rows: c.rows, Cols: c.cols}
		grads := []pair{dx}
		if c.weight {
			gf.Weight, rf.Weight, gb.Weight, rb.Weight = w.g, w.r, w.g, w.r
			gb.DWeight, rb.DWeight = dw.g, dw.r
			grads = append(grads, dw)
		}
		note := fmt.Sprintf("%d×%d weight %v", c.rows, c.cols, c.weight)
		p.g.RMSNorm(gf)
		p.ref.RMSNorm(rf)
		p.compare("RMSNorm", note+" (y, rstd)", TolFP32, y, rstd)
		p.g.RMSNormBackward(gb)
		p.ref.RMSNormBackward(rb)
		p.compare("RMSNormBackward", note, TolFP32*10, grads...)
		p.free(in...)
		p.free(out...)
	}
	return nil
}

// upsample checks nearest-neighbour upsampling (bit-exact) and its backward.
func (p *parity) upsample() error {
	for _, c := range []struct{ nc, h, w, f int }{{6, 7, 5, 2}, {2, 3, 4, 3}} {
		small, large := c.nc*c.h*c.w, c.nc*c.h*c.w*c.f*c.f
		in, err := p.inputs(1, small, large)
		if err != nil {
			return err
		}
		out, err := p.outputs(large, small)
		if err != nil {
			return err
		}
		note := fmt.Sprintf("NC%d %d×%d ×%d", c.nc, c.h, c.w, c.f)
		p.g.UpsampleNearest(out[0].g, in[0].g, c.nc, c.h, c.w, c.f)
		p.ref.UpsampleNearest(out[0].r, in[0].r, c.nc, c.h, c.w, c.f)
		p.compare("UpsampleNearest", note, 0, out[0])
		p.g.UpsampleNearestBackward(out[1].g, in[1].g, c.nc, c.h, c.w, c.f)
		p.ref.UpsampleNearestBackward(out[1].r, in[1].r, c.nc, c.h, c.w, c.f)
		p.compare("UpsampleNearestBackward", note, TolFP32, out[1])
		p.free(in...)
		p.free(out...)
	}
	return nil
}
