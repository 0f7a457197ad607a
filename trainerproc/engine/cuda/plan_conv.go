package cuda

import (
	"fmt"

	"simpletuner/trainerproc/engine"
)

const (
	// convScratchBytes bounds a convolution's im2col panel (its column matrix, reused for the
	// column gradients in the backward pass). A VAE's 128-channel 3×3 convolution at 1024²
	// would need 4.5 GiB for a whole image; panels of output pixels keep it at this size
	// (plus the bf16 copy of the panel in bf16 mode) whatever the resolution.
	convScratchBytes = 64 << 20
	// maxGridX is CUDA's limit on gridDim.x.
	maxGridX = 1<<31 - 1
	// normChunkMin is the fewest elements a block of a chunked norm reduction sums, so short
	// rows are not split into blocks that do almost nothing.
	normChunkMin = 4096
	// normChunksMax caps the chunks of one row; it keeps gridDim.y far below its 65535 limit
	// and the per-row combine (one thread walking the chunks in order) short.
	normChunksMax = 64
	// normTargetBlocks is how many blocks a chunked norm reduction aims for: enough to fill
	// the 132 SMs of an H100 several times over when there are only a few rows (a VAE's
	// group norm at batch 1 has 32 rows of up to 4M elements).
	normTargetBlocks = 1024
)

// convGeom is a validated Conv2DParams geometry with its output size.
type convGeom struct {
	n, c, h, w, o, kh, kw, stride int
	padT, padB, padL, padR        int
	oh, ow                        int
}

// convShape checks p's sizes (not its buffers) and derives the output size.
func convShape(p engine.Conv2DParams) (convGeom, error) {
	g := convGeom{n: p.N, c: p.C, h: p.H, w: p.Wd, o: p.O, kh: p.KH, kw: p.KW, stride: p.Stride,
		padT: p.PadTop, padB: p.PadBottom, padL: p.PadLeft, padR: p.PadRight}
	if g.n < 0 || g.c < 0 || g.h < 0 || g.w < 0 || g.o < 0 || g.kh < 1 || g.kw < 1 || g.stride < 1 ||
		g.padT < 0 || g.padB < 0 || g.padL < 0 || g.padR < 0 {
		return g, fmt.Errorf("%w: conv2d %+v", engine.ErrShape, g)
	}
	hp, wp := g.h+g.padT+g.padB, g.w+g.padL+g.padR
	if hp < g.kh || wp < g.kw {
		return g, fmt.Errorf("%w: conv2d kernel %d×%d larger than the padded input %d×%d", engine.ErrShape, g.kh, g.kw, hp, wp)
	}
	g.oh, g.ow = (hp-g.kh)/g.stride+1, (wp-g.kw)/g.stride+1
	return g, nil
}

// k is the length of a column: C·KH·KW taps per output pixel.
func (g convGeom) k() int { return g.c * g.kh * g.kw }

// pixels is the output pixels of one sample.
func (g convGeom) pixels() int { return g.oh * g.ow }

// direct reports whether the convolution is a plain GEMM over each sample's [C, H·W] (1×1,
// stride 1, no padding), which needs no column matrix.
func (g convGeom) direct() bool {
	return g.kh == 1 && g.kw == 1 && g.stride == 1 && g.padT == 0 && g.padB == 0 && g.padL == 0 && g.padR == 0
}

// wholeDirect reports whether panel pn is whole images of a direct convolution, whose
// columns are the images themselves.
func (g convGeom) wholeDirect(pn convPanel) bool { return g.direct() && pn.pc == g.pixels() }

// convPanel is samples [n0, n0+samples) and, of each, output pixels [p0, p0+pc): its column
// matrix is [samples, k, pc].
type convPanel struct {
	n0, samples, p0, pc int
}

// planConvPanels covers n samples of pixels output pixels each with panels whose column
// matrices (k float32 per pixel) fit budget bytes, in sample-then-pixel order. Whole images
// are batched when one fits; otherwise each image is split into runs of pixels (at least one
// pixel a panel, however small the budget).
func planConvPanels(n, k, pixels int, budget int64) []convPanel {
	if n <= 0 || pixels <= 0 {
		return nil
	}
	perPixel := int64(max(k, 1)) * f32Bytes
	var out []convPanel
	if img := perPixel * int64(pixels); img <= budget {
		per := int(min(int64(n), budget/img))
		for n0 := 0; n0 < n; n0 += per {
			out = append(out, convPanel{n0: n0, samples: min(per, n-n0), p0: 0, pc: pixels})
		}
		return out
	}
	pc := int(max(1, min(int64(pixels), budget/perPixel)))
	for n0 := 0; n0 < n; n0++ {
		for p0 := 0; p0 < pixels; p0 += pc {
			out = append(out, convPanel{n0: n0, samples: 1, p0: p0, pc: min(pc, pixels-p0)})
		}
	}
	return out
}

// convPanels is the panels a convolution runs in: one panel of every whole image for a
// direct convolution in fp32 (a single batched GEMM over X, no scratch), otherwise
// planConvPanels within budget (in bf16 a direct convolution is panelled too, so the bf16
// copy of X that a GEMM makes stays panel-sized).
func convPanels(g convGeom, bf16 bool, budget int64) []convPanel {
	if g.direct() && !bf16 && g.n > 0 && g.pixels() > 0 {
		return []convPanel{{n0: 0, samples: g.n, p0: 0, pc: g.pixels()}}
	}
	return planConvPanels(g.n, g.k(), g.pixels(), budget)
}

// The GEMMs of a panel in the engine's row-major terms; the caller sets the buffers A, B
// and C. The panel's columns are X itself for whole images of a direct convolution (at
// offset colsOff, see panelCols) and the im2col block otherwise; DY's rows are DY itself for
// whole images and a contiguous [O, pc] copy for a run of pixels (see panelDY).

// panelCols is the offset of the panel's columns and whether they are X itself.
func (g convGeom) panelCols(pn convPanel) (off int, fromX bool) {
	if g.wholeDirect(pn) {
		return pn.n0 * g.k() * pn.pc, true
	}
	return 0, false
}

// panelDY is the offset and leading dimension of the panel's DY rows and whether they are a
// contiguous copy ([O, pc]) rather than DY itself.
func (g convGeom) panelDY(pn convPanel) (off, ld int, copied bool) {
	if pix := g.pixels(); pn.pc == pix {
		return pn.n0 * g.o * pix, pix, false
	}
	return 0, pn.pc, true
}

// fwdGemm is Y[panel] = W·cols + beta·Y[panel] (A = W, B = cols, C = Y).
func (g convGeom) fwdGemm(pn convPanel, beta float32) engine.GemmParams {
	pix, k := g.pixels(), g.k()
	off, _ := g.panelCols(pn)
	return engine.GemmParams{M: g.o, N: pn.pc, K: k, Alpha: 1, Beta: beta, OffB: off, StrideB: k * pn.pc,
		OffC: pn.n0*g.o*pix + pn.p0, Ldc: pix, StrideC: g.o * pix, Batch: pn.samples}
}

// dwGemm is DW += DY[panel]·colsᵀ (A = DY rows, B = cols, C = DW shared by the batch, whose
// products then accumulate one after another).
func (g convGeom) dwGemm(pn convPanel) engine.GemmParams {
	dyOff, ld, _ := g.panelDY(pn)
	off, _ := g.panelCols(pn)
	return engine.GemmParams{TransB: true, M: g.o, N: g.k(), K: pn.pc, Alpha: 1, Beta: 1,
		OffA: dyOff, Lda: ld, StrideA: g.o * g.pixels(), OffB: off, Ldb: pn.pc, StrideB: g.k() * pn.pc, Batch: pn.samples}
}

// dxGemm is the panel's column gradients Wᵀ·DY[panel] (A = W, B = DY rows), written into the
// im2col block for col2im_f32, or straight into DX for whole images of a direct convolution.
func (g convGeom) dxGemm(pn convPanel) engine.GemmParams {
	dyOff, ld, _ := g.panelDY(pn)
	p := engine.GemmParams{TransA: true, M: g.k(), N: pn.pc, K: g.o, Alpha: 1,
		OffB: dyOff, Ldb: ld, StrideB: g.o * g.pixels(), StrideC: g.k() * pn.pc, Batch: pn.samples}
	if off, fromX := g.panelCols(pn); fromX {
		p.OffC = off
	}
	return p
}

// panelRows is the input rows [y0, y0+rows) that a panel's output pixels read (and so the
// rows col2im_f32 must visit); rows ≤ 0 when they read only padding.
func (g convGeom) panelRows(pn convPanel) (y0, rows int) {
	oy0, oy1 := pn.p0/g.ow, (pn.p0+pn.pc-1)/g.ow
	y0 = max(0, oy0*g.stride-g.padT)
	y1 := min(g.h-1, oy1*g.stride+g.kh-1-g.padT)
	return y0, y1 - y0 + 1
}

// normChunks splits rows of length elements into chunks for the two-level norm reductions
// (grid (rows, chunks), one block a chunk): enough blocks to fill the GPU, no chunk shorter
// than normChunkMin unless the row is, at most normChunksMax a row, and no empty chunk.
func normChunks(rows, length int) (chunks, chunk int) {
	if length <= 0 {
		return 1, 0
	}
	want := (normTargetBlocks + max(rows, 1) - 1) / max(rows, 1)
	limit := min(normChunksMax, (length+normChunkMin-1)/normChunkMin)
	chunks = max(1, min(want, limit))
	chunk = (length + chunks - 1) / chunks
	return (length + chunk - 1) / chunk, chunk
}

// normChunkLaunch is the geometry of a chunked norm reduction: x over rows (so a large batch
// times many groups does not meet the 65535 limit of gridDim.y), y over chunks.
func normChunkLaunch(rows, chunks int) (Launch, error) {
	if rows > maxGridX || chunks > maxGridYZ {
		return Launch{}, fmt.Errorf("%w: %d rows × %d chunks in a norm reduction (max %d × %d)", ErrUnsupported, rows, chunks, maxGridX, maxGridYZ)
	}
	return Launch{GridX: rows, GridY: chunks, GridZ: 1, BlockX: rowBlock, BlockY: 1, BlockZ: 1}, nil
}

// rowBlocks is the geometry of a one-block-per-row kernel, refusing more rows than gridDim.x
// takes.
func rowBlocks(rows int) (Launch, error) {
	if rows > maxGridX {
		return Launch{}, fmt.Errorf("%w: %d rows (max %d)", ErrUnsupported, rows, maxGridX)
	}
	return rowLaunch(rows), nil
}

// convWorkspace is the most scratch bytes one Conv2D (backward: Conv2DBackward) call requests
// at once: the im2col panel (none for whole images of a direct 1×1), in the backward pass a
// contiguous copy of DY's rows for a run of pixels, and in bf16 mode the rounded copies of the
// two operands of the largest GEMM it issues (2 bytes an element of the range each reads).
// None of it grows with the image beyond the panel budget. The caching allocator rounds every
// request up to its size class on top of this.
func convWorkspace(g convGeom, backward, bf16 bool) int64 {
	panels := convPanels(g, bf16, convScratchBytes)
	if len(panels) == 0 || g.k() == 0 || g.o == 0 {
		return 0
	}
	k, pix, o := int64(g.k()), int64(g.pixels()), int64(g.o)
	samples, pc := int64(panels[0].samples), int64(panels[0].pc)
	cols := samples * k * pc // a panel's columns (X itself for whole images of a direct conv)
	var bytes int64
	if !g.wholeDirect(panels[0]) {
		bytes = cols * f32Bytes
	}
	dy := samples * o * pix // DY's rows a panel's GEMMs read
	if pc < pix {
		dy = o * pc
		if backward {
			bytes += dy * f32Bytes
		}
	}
	if !bf16 {
		return bytes
	}
	gemm := cols + o*k // forward: W·col
	if backward {
		gemm = max(dy+cols, o*k+dy) // DY·colᵀ, then Wᵀ·DY
	}
	return bytes + gemm*bf16Bytes
}
