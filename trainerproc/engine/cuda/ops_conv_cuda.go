//go:build cuda

package cuda

import (
	"fmt"
	"math"

	"simpletuner/trainerproc/engine"
)

// conv validates a convolution's geometry and its buffers' lengths.
func (b *Backend) conv(op string, p engine.Conv2DParams, needY bool) convGeom {
	g, err := convShape(p)
	must(err)
	must(checkLen(op, "x", b.length(p.X), g.n*g.c*g.h*g.w))
	must(checkLen(op, "w", b.length(p.W), g.o*g.k()))
	if p.Bias != nil {
		must(checkLen(op, "bias", b.length(p.Bias), g.o))
	}
	if needY {
		must(checkLen(op, "y", b.length(p.Y), g.n*g.o*g.pixels()))
	}
	return g
}

// fillN sets the first n elements of buf to v.
func (b *Backend) fillN(buf engine.Buffer, n int, v float32) {
	if n > 0 {
		b.launch("fill_f32", flatLaunch(int64(n)), NewArgs(3).Ptr(b.ptr(buf, 0)).Float(v).Int64(int64(n)))
	}
}

// fillZero sets the first n elements of buf to zero.
func (b *Backend) fillZero(buf engine.Buffer, n int) { b.fillN(buf, n, 0) }

// im2col fills the scratch column matrix col of panel pn from x.
func (b *Backend) im2col(g convGeom, col uintptr, x engine.Buffer, pn convPanel) {
	b.launch("im2col_f32", flatLaunch(int64(pn.samples)*int64(g.k())*int64(pn.pc)), NewArgs(14).Ptr(col).
		Ptr(b.ptr(x, pn.n0*g.c*g.h*g.w)).Int(pn.samples).Int(g.c).Int(g.h).Int(g.w).Int(g.kh).Int(g.kw).
		Int(g.stride).Int(g.padT).Int(g.padL).Int(g.ow).Int(pn.p0).Int(pn.pc))
}

// panelScratch plans g's panels (convPanels) and allocates the column matrix of the largest
// (the first; none when the panels are whole images of a direct convolution, whose columns
// are X) and, with dyRows and panels that are runs of pixels, a [O, pc] block for DY's rows.
// Either may be nil; the caller frees them with releasePanels.
func (b *Backend) panelScratch(g convGeom, dyRows bool) (panels []convPanel, col, dy *Buffer, ok bool) {
	panels = convPanels(g, b.opts.Precision == PrecisionBF16, convScratchBytes)
	alloc := func(n int) (*Buffer, bool) {
		p, ok := b.scratch(int64(n) * f32Bytes)
		if !ok {
			return nil, false
		}
		return b.internal(p, n), true
	}
	if !g.wholeDirect(panels[0]) {
		if col, ok = alloc(panels[0].samples * g.k() * panels[0].pc); !ok {
			return nil, nil, nil, false
		}
	}
	if dyRows && panels[0].pc < g.pixels() {
		if dy, ok = alloc(g.o * panels[0].pc); !ok {
			b.releasePanels(col)
			return nil, nil, nil, false
		}
	}
	return panels, col, dy, true
}

// releasePanels frees the scratch blocks of panelScratch (nil ones are skipped).
func (b *Backend) releasePanels(bufs ...*Buffer) {
	for _, x := range bufs {
		if x != nil {
			b.release(x.ptr)
		}
	}
}

// cols returns the buffer holding panel pn's columns: X itself for whole images of a direct
// convolution, otherwise col filled by im2col_f32.
func (b *Backend) cols(g convGeom, col *Buffer, x engine.Buffer, pn convPanel) engine.Buffer {
	if _, fromX := g.panelCols(pn); fromX {
		return x
	}
	b.im2col(g, col.ptr, x, pn)
	return col
}

// dyRows returns the buffer holding panel pn's rows of DY: DY itself for whole images, or,
// for a run of pixels, their contiguous copy in rows, so that the bf16 copy a GEMM makes of
// its operands spans the panel and not the rest of the image.
func (b *Backend) dyRows(g convGeom, dy engine.Buffer, rows *Buffer, pn convPanel) engine.Buffer {
	if _, _, copied := g.panelDY(pn); !copied {
		return dy
	}
	pix := g.pixels()
	b.launch("copy2d_f32", flatLaunch(int64(g.o)*int64(pn.pc)), NewArgs(6).Ptr(rows.ptr).Int(pn.pc).
		Ptr(b.ptr(dy, pn.n0*g.o*pix+pn.p0)).Int(pix).Int(g.o).Int(pn.pc))
	return rows
}

// Conv2D implements engine.Backend: Y = W·im2col(X) per panel of output pixels through the
// GEMM path, with the bias broadcast into Y first and the GEMMs accumulating onto it. A 1×1,
// stride-1, unpadded convolution multiplies X directly (see convPanels).
func (b *Backend) Conv2D(p engine.Conv2DParams) {
	g := b.conv("Conv2D", p, true)
	pix, k := g.pixels(), g.k()
	ny := g.n * g.o * pix
	if ny == 0 || b.err != nil {
		return
	}
	defer b.enter()()
	var beta float32
	if p.Bias != nil {
		b.Expand(p.Y, p.Bias, engine.Shape3{Outer: g.n, Mid: g.o, Inner: pix}, engine.SpanMid, 1)
		beta = 1
	} else if k == 0 {
		b.fillZero(p.Y, ny)
		return
	}
	if k == 0 {
		return
	}
	panels, col, _, ok := b.panelScratch(g, false)
	if !ok {
		return
	}
	defer b.releasePanels(col)
	for _, pn := range panels {
		gp := g.fwdGemm(pn, beta)
		gp.A, gp.B, gp.C = p.W, b.cols(g, col, p.X, pn), p.Y
		b.Gemm(gp)
	}
}

// Conv2DBackward implements engine.Backend. DBias sums DY with the reduction kernels; DW
// accumulates DY·colᵀ over the panels (zeroed first); DX is zeroed, then each panel's column
// gradient Wᵀ·DY is gathered back by col2im_f32 (whole images of a direct convolution are
// written by the GEMM). Panels run in order and col2im owns each input element, so the sums
// are deterministic. One scratch block holds a panel's columns and then its column
// gradients: the stream runs the DW GEMM before the DX GEMM overwrites them.
func (b *Backend) Conv2DBackward(p engine.Conv2DGradParams) {
	g := b.conv("Conv2DBackward", p.Conv2DParams, false)
	pix, k := g.pixels(), g.k()
	must(checkLen("Conv2DBackward", "dy", b.length(p.DY), g.n*g.o*pix))
	nx, nw := g.n*g.c*g.h*g.w, g.o*k
	if p.DX != nil {
		must(checkLen("Conv2DBackward", "dx", b.length(p.DX), nx))
	}
	if p.DW != nil {
		must(checkLen("Conv2DBackward", "dw", b.length(p.DW), nw))
	}
	if p.DBias != nil {
		must(checkLen("Conv2DBackward", "dbias", b.length(p.DBias), g.o))
	}
	if b.err != nil {
		return
	}
	defer b.enter()()
	if p.DBias != nil {
		b.reduce(b.ptr(p.DBias, 0), b.ptr(p.DY, 0), engine.Shape3{Outer: g.n, Mid: g.o, Inner: pix}, engine.SpanMid, 1)
	}
	if p.DW != nil {
		b.fillZero(p.DW, nw)
	}
	if g.o == 0 || pix == 0 || g.n == 0 || k == 0 {
		if p.DX != nil {
			b.fillZero(p.DX, nx)
		}
		return
	}
	if p.DW == nil && p.DX == nil {
		return
	}
	panels, col, rows, ok := b.panelScratch(g, true)
	if !ok {
		return
	}
	defer b.releasePanels(col, rows)
	if p.DX != nil && !g.wholeDirect(panels[0]) {
		b.fillZero(p.DX, nx) // col2im adds onto it
	}
	for _, pn := range panels {
		dy := b.dyRows(g, p.DY, rows, pn)
		if p.DW != nil {
			gp := g.dwGemm(pn)
			gp.A, gp.B, gp.C = dy, b.cols(g, col, p.X, pn), p.DW
			b.Gemm(gp)
		}
		if p.DX == nil {
			continue
		}
		gp := g.dxGemm(pn)
		gp.A, gp.B, gp.C = p.W, dy, col
		if g.wholeDirect(pn) {
			gp.C = p.DX
			b.Gemm(gp)
			continue
		}
		y0, yrows := g.panelRows(pn)
		if yrows <= 0 {
			continue // the panel reads only padding
		}
		b.Gemm(gp)
		b.launch("col2im_f32", flatLaunch(int64(pn.samples)*int64(g.c)*int64(yrows)*int64(g.w)), NewArgs(17).
			Ptr(b.ptr(p.DX, pn.n0*g.c*g.h*g.w)).Ptr(col.ptr).Int(pn.samples).Int(g.c).Int(g.h).Int(g.w).Int(g.kh).Int(g.kw).
			Int(g.stride).Int(g.padT).Int(g.padL).Int(g.oh).Int(g.ow).Int(pn.p0).Int(pn.pc).Int(y0).Int(yrows))
	}
}

// groupNormShape validates a group norm's geometry and returns its channels per group.
func (b *Backend) groupNormShape(op string, n, c, hw, groups int, x, w engine.Buffer) int {
	if groups < 1 || c%groups != 0 || n < 0 || hw < 0 {
		panic(fmt.Sprintf("cuda: %s: %d channels not divisible into %d groups (N %d, HW %d)", op, c, groups, n, hw))
	}
	must(checkLen(op, "x", b.length(x), n*c*hw))
	if w != nil {
		must(checkLen(op, "weight", b.length(w), c))
	}
	return c / groups
}

// GroupNorm implements engine.Backend: per group row (n, g) of cpg·HW contiguous elements,
// chunk means and squared deviations (groupnorm_part_f32), their combination into mean and
// rstd (groupnorm_stats_f32), then the normalisation with the affine transform.
func (b *Backend) GroupNorm(p engine.GroupNormParams) {
	cpg := b.groupNormShape("GroupNorm", p.N, p.C, p.HW, p.Groups, p.X, p.Weight)
	ng, total := p.N*p.Groups, p.N*p.C*p.HW
	must(checkLen("GroupNorm", "y", b.length(p.Y), total))
	if p.Bias != nil {
		must(checkLen("GroupNorm", "bias", b.length(p.Bias), p.C))
	}
	must(checkLen("GroupNorm", "mean", b.length(p.Mean), ng))
	must(checkLen("GroupNorm", "rstd", b.length(p.Rstd), ng))
	if b.err != nil {
		return
	}
	if total == 0 { // empty groups (HW = 0): mean 0 and rstd 1/√eps, as the CPU backend
		defer b.enter()()
		b.fillN(p.Mean, ng, 0)
		b.fillN(p.Rstd, ng, float32(1/math.Sqrt(float64(p.Eps))))
		return
	}
	length := cpg * p.HW
	chunks, chunk := normChunks(ng, length)
	l, err := normChunkLaunch(ng, chunks)
	if err != nil {
		b.fail(err)
		return
	}
	defer b.enter()()
	part, ok := b.scratch(int64(ng) * int64(chunks) * 2 * f32Bytes)
	if !ok {
		return
	}
	defer b.release(part)
	b.launch("groupnorm_part_f32", l, NewArgs(6).Ptr(part).Ptr(b.ptr(p.X, 0)).Int(ng).Int64(int64(length)).
		Int(chunks).Int64(int64(chunk)))
	b.launch("groupnorm_stats_f32", flatLaunch(int64(ng)), NewArgs(8).Ptr(b.ptr(p.Mean, 0)).Ptr(b.ptr(p.Rstd, 0)).Ptr(part).
		Int(ng).Int64(int64(length)).Int(chunks).Int64(int64(chunk)).Float(p.Eps))
	b.launch("groupnorm_apply_f32", flatLaunch(int64(total)), NewArgs(10).Ptr(b.ptr(p.Y, 0)).Ptr(b.ptr(p.X, 0)).
		Ptr(b.ptr(p.Weight, 0)).Ptr(b.ptr(p.Bias, 0)).Ptr(b.ptr(p.Mean, 0)).Ptr(b.ptr(p.Rstd, 0)).
		Int(p.C).Int(p.HW).Int(cpg).Int64(int64(total)))
}

// GroupNormBackward implements engine.Backend: per channel row (n, c), chunk sums of dy and
// dy·x̂ (groupnorm_bwd_part_f32); from them each group's sums of dn = dy·w and dn·x̂
// (groupnorm_bwd_group_f32), dx, and the weight and bias gradients, all in a fixed order.
func (b *Backend) GroupNormBackward(p engine.GroupNormGradParams) {
	cpg := b.groupNormShape("GroupNormBackward", p.N, p.C, p.HW, p.Groups, p.X, p.Weight)
	ng, nc, total := p.N*p.Groups, p.N*p.C, p.N*p.C*p.HW
	must(checkLen("GroupNormBackward", "dy", b.length(p.DY), total))
	must(checkLen("GroupNormBackward", "dx", b.length(p.DX), total))
	must(checkLen("GroupNormBackward", "mean", b.length(p.Mean), ng))
	must(checkLen("GroupNormBackward", "rstd", b.length(p.Rstd), ng))
	if p.DWeight != nil {
		must(checkLen("GroupNormBackward", "dweight", b.length(p.DWeight), p.C))
	}
	if p.DBias != nil {
		must(checkLen("GroupNormBackward", "dbias", b.length(p.DBias), p.C))
	}
	if b.err != nil {
		return
	}
	defer b.enter()()
	if total == 0 {
		b.fillZero(p.DWeight, b.length(p.DWeight))
		b.fillZero(p.DBias, b.length(p.DBias))
		return
	}
	chunks, chunk := normChunks(nc, p.HW)
	l, err := normChunkLaunch(nc, chunks)
	if err != nil {
		b.fail(err)
		return
	}
	part, ok := b.scratch((int64(nc)*int64(chunks) + int64(ng)) * 2 * f32Bytes)
	if !ok {
		return
	}
	defer b.release(part)
	gsum := part + uintptr(int64(nc)*int64(chunks)*2*f32Bytes)
	b.launch("groupnorm_bwd_part_f32", l, NewArgs(10).Ptr(part).Ptr(b.ptr(p.X, 0)).Ptr(b.ptr(p.DY, 0)).
		Ptr(b.ptr(p.Mean, 0)).Ptr(b.ptr(p.Rstd, 0)).Int(nc).Int(p.HW).Int(cpg).Int(chunks).Int(chunk))
	b.launch("groupnorm_bwd_group_f32", flatLaunch(int64(ng)), NewArgs(7).Ptr(gsum).Ptr(part).Ptr(b.ptr(p.Weight, 0)).
		Int(ng).Int(cpg).Int(p.C).Int(chunks))
	b.launch("groupnorm_bwd_dx_f32", flatLaunch(int64(total)), NewArgs(11).Ptr(b.ptr(p.DX, 0)).Ptr(b.ptr(p.X, 0)).
		Ptr(b.ptr(p.DY, 0)).Ptr(b.ptr(p.Weight, 0)).Ptr(b.ptr(p.Mean, 0)).Ptr(b.ptr(p.Rstd, 0)).Ptr(gsum).
		Int(p.C).Int(p.HW).Int(cpg).Int64(int64(total)))
	if p.DWeight != nil || p.DBias != nil {
		b.launch("groupnorm_param_grad_f32", flatLaunch(int64(p.C)), NewArgs(6).Ptr(b.ptr(p.DWeight, 0)).
			Ptr(b.ptr(p.DBias, 0)).Ptr(part).Int(p.N).Int(p.C).Int(chunks))
	}
}

// rmsNormLaunch checks the operands RMS norm's forward and backward share and returns their
// one-block-per-row launch, or false when there is nothing to launch.
func (b *Backend) rmsNormLaunch(op string, rows, cols int, x, w, rstd engine.Buffer) (Launch, bool) {
	must(checkLen(op, "x", b.length(x), rows*cols))
	must(checkLen(op, "rstd", b.length(rstd), rows))
	if w != nil {
		must(checkLen(op, "weight", b.length(w), cols))
	}
	if cols == 0 || b.err != nil {
		return Launch{}, false
	}
	l, err := rowBlocks(rows)
	if err != nil {
		b.fail(err)
		return Launch{}, false
	}
	return l, true
}

// RMSNorm implements engine.Backend (one block per row).
func (b *Backend) RMSNorm(p engine.RMSNormParams) {
	must(checkLen("RMSNorm", "y", b.length(p.Y), p.Rows*p.Cols))
	l, ok := b.rmsNormLaunch("RMSNorm", p.Rows, p.Cols, p.X, p.Weight, p.Rstd)
	if !ok {
		return
	}
	defer b.enter()()
	b.launch("rmsnorm_f32", l, NewArgs(7).Ptr(b.ptr(p.Y, 0)).Ptr(b.ptr(p.Rstd, 0)).Ptr(b.ptr(p.X, 0)).
		Ptr(b.ptr(p.Weight, 0)).Int(p.Rows).Int(p.Cols).Float(p.Eps))
}

// RMSNormBackward implements engine.Backend: dx one block per row, the weight gradient by
// (32, 8)-blocks over columns that walk the rows in order.
func (b *Backend) RMSNormBackward(p engine.RMSNormGradParams) {
	n := p.Rows * p.Cols
	must(checkLen("RMSNormBackward", "dy", b.length(p.DY), n))
	must(checkLen("RMSNormBackward", "dx", b.length(p.DX), n))
	if p.DWeight != nil {
		must(checkLen("RMSNormBackward", "dweight", b.length(p.DWeight), p.Cols))
	}
	l, ok := b.rmsNormLaunch("RMSNormBackward", p.Rows, p.Cols, p.X, p.Weight, p.Rstd)
	if !ok {
		return
	}
	defer b.enter()()
	b.launch("rmsnorm_bwd_f32", l, NewArgs(7).Ptr(b.ptr(p.DX, 0)).Ptr(b.ptr(p.X, 0)).Ptr(b.ptr(p.Weight, 0)).
		Ptr(b.ptr(p.Rstd, 0)).Ptr(b.ptr(p.DY, 0)).Int(p.Rows).Int(p.Cols))
	if p.DWeight != nil {
		cl, err := colLaunch(1, p.Cols)
		if err != nil {
			b.fail(err)
			return
		}
		b.launch("rmsnorm_weight_grad_f32", cl, NewArgs(6).Ptr(b.ptr(p.DWeight, 0)).Ptr(b.ptr(p.X, 0)).
			Ptr(b.ptr(p.Rstd, 0)).Ptr(b.ptr(p.DY, 0)).Int(p.Rows).Int(p.Cols))
	}
}

// upsampleShape validates an upsampling's sizes and returns the element counts of the small
// and the large image.
func (b *Backend) upsampleShape(op string, small, large engine.Buffer, nc, h, w, factor int) (int, int) {
	if nc < 0 || h < 0 || w < 0 || factor < 1 {
		panic(fmt.Sprintf("cuda: %s: nc %d, %d×%d, factor %d", op, nc, h, w, factor))
	}
	ns, nl := nc*h*w, nc*h*w*factor*factor
	must(checkLen(op, "small", b.length(small), ns))
	must(checkLen(op, "large", b.length(large), nl))
	return ns, nl
}

// UpsampleNearest implements engine.Backend (a gather, one thread per output element).
func (b *Backend) UpsampleNearest(dst, src engine.Buffer, nc, h, w, factor int) {
	_, nl := b.upsampleShape("UpsampleNearest", src, dst, nc, h, w, factor)
	defer b.enter()()
	b.launch("upsample_nearest_f32", flatLaunch(int64(nl)), NewArgs(6).Ptr(b.ptr(dst, 0)).Ptr(b.ptr(src, 0)).
		Int(nc).Int(h).Int(w).Int(factor))
}

// UpsampleNearestBackward implements engine.Backend (one thread per dx element sums its
// factor×factor block).
func (b *Backend) UpsampleNearestBackward(dx, dy engine.Buffer, nc, h, w, factor int) {
	ns, _ := b.upsampleShape("UpsampleNearestBackward", dx, dy, nc, h, w, factor)
	defer b.enter()()
	b.launch("upsample_nearest_bwd_f32", flatLaunch(int64(ns)), NewArgs(6).Ptr(b.ptr(dx, 0)).Ptr(b.ptr(dy, 0)).
		Int(nc).Int(h).Int(w).Int(factor))
}

var _ engine.ConvWorkspacer = (*Backend)(nil)

// ConvWorkspace implements engine.ConvWorkspacer (see convWorkspace).
func (b *Backend) ConvWorkspace(p engine.Conv2DParams, backward bool) int64 {
	g, err := convShape(p)
	if err != nil {
		return 0
	}
	return convWorkspace(g, backward, b.opts.Precision == PrecisionBF16)
}
