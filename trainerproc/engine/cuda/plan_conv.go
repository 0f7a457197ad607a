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
// at once: the im2col panel (none for a direct 1×1) and, in bf16 mode, the rounded copies of
// the two operands of the largest GEMM it issues (2 bytes an element of the range each
// reads). The caching allocator rounds every request up to its size class on top of this.
func convWorkspace(g convGeom, backward, bf16 bool) int64 {
	panels := planConvPanels(g.n, g.k(), g.pixels(), convScratchBytes)
	if len(panels) == 0 || g.k() == 0 || g.o == 0 {
		return 0
	}
	k, pix, o := int64(g.k()), int64(g.pixels()), int64(g.o)
	samples, pc := int64(panels[0].samples), int64(panels[0].pc)
	if g.direct() {
		samples, pc = int64(g.n), pix
	}
	cols := samples * k * pc // a panel's columns, or the images themselves when direct
	var panel int64
	if !g.direct() {
		panel = cols * f32Bytes
	}
	if !bf16 {
		return panel
	}
	w, dy := o*k, (samples-1)*o*pix+(o-1)*pix+pc
	gemm := cols + w // forward: W·col
	if backward {
		gemm = max(dy+cols, w+dy) // DY·colᵀ, then Wᵀ·DY
	}
	return panel + gemm*bf16Bytes
}
