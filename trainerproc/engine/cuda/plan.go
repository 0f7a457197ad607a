package cuda

import (
	"fmt"

	"simpletuner/trainerproc/engine"
)

// Launch is a kernel's launch geometry.
type Launch struct {
	GridX, GridY, GridZ    int
	BlockX, BlockY, BlockZ int
	SharedBytes            int
}

// Threads is the number of threads launched.
func (l Launch) Threads() int64 {
	return int64(l.GridX) * int64(l.GridY) * int64(l.GridZ) * int64(l.BlockX) * int64(l.BlockY) * int64(l.BlockZ)
}

const (
	// flatBlock is the block size of the grid-stride elementwise kernels.
	flatBlock = 256
	// maxFlatGrid caps grid-stride launches; the kernels loop over what one pass leaves. 64K
	// blocks of 256 threads is far more than the 132 SMs of an H100 keep resident.
	maxFlatGrid = 1 << 16
	// maxGridYZ is CUDA's limit on gridDim.y and gridDim.z.
	maxGridYZ = 65535
	// rowBlock is the block size of one-block-per-row kernels (layer norm, softmax, row
	// reductions); the kernels' shared arrays are sized for it and it must be a power of two.
	rowBlock = 256
	// flashQueries is the block size of the flash attention forward and dQ kernels (one
	// thread per query); flashKeys the block size of the dK/dV kernel (one thread per key).
	flashQueries = 64
	flashKeys    = 32
	// MaxPermuteDims is the most dimensions permute_f32 takes after adjacent dimensions that
	// stay together are merged.
	MaxPermuteDims = 6
)

// flatLaunch covers n elements with a grid-stride kernel; n == 0 gives a zero grid, which the
// launcher skips.
func flatLaunch(n int64) Launch {
	g := (n + flatBlock - 1) / flatBlock
	g = min(g, maxFlatGrid)
	return Launch{GridX: int(g), GridY: 1, GridZ: 1, BlockX: flatBlock, BlockY: 1, BlockZ: 1}
}

// rowLaunch runs one block of rowBlock threads per row.
func rowLaunch(rows int) Launch {
	return Launch{GridX: rows, GridY: 1, GridZ: 1, BlockX: rowBlock, BlockY: 1, BlockZ: 1}
}

// colLaunch is the geometry of the (32, 8)-block column kernels over [groups, cols].
func colLaunch(groups, cols int) (Launch, error) {
	if groups > maxGridYZ {
		return Launch{}, fmt.Errorf("%w: %d groups in a column reduction (max %d)", ErrUnsupported, groups, maxGridYZ)
	}
	return Launch{GridX: (cols + 31) / 32, GridY: groups, GridZ: 1, BlockX: 32, BlockY: 8, BlockZ: 1}, nil
}

// flashLaunch is the geometry of a flash attention kernel: x over rows (queries or keys) in
// blocks of block threads, y over batch·heads.
func flashLaunch(rows, bh, block int) (Launch, error) {
	if bh > maxGridYZ {
		return Launch{}, fmt.Errorf("%w: %d batch·heads in flash attention (max %d)", ErrUnsupported, bh, maxGridYZ)
	}
	return Launch{GridX: (rows + block - 1) / block, GridY: bh, GridZ: 1, BlockX: block, BlockY: 1, BlockZ: 1}, nil
}

// reducePlan describes Reduce over [O,M,I] as groups of rows: output g sums the count rows
// g·start + j·stride (j < count), each of inner elements (all of them, or column by column
// when keepInner).
type reducePlan struct {
	groups, start, stride, count, inner int
	keepInner                           bool
}

// planReduce maps a Reduce (or the column sums of a backward) onto reduce_cols_f32 /
// reduce_rows_f32, following the CPU backend's grouping.
func planReduce(s engine.Shape3, dstSpan engine.Span) reducePlan {
	keepO, keepM := dstSpan&engine.SpanOuter != 0, dstSpan&engine.SpanMid != 0
	p := reducePlan{inner: s.Inner, keepInner: dstSpan&engine.SpanInner != 0}
	switch {
	case keepO && keepM:
		p.groups, p.start, p.stride, p.count = s.Outer*s.Mid, 1, 1, 1
	case keepO:
		p.groups, p.start, p.stride, p.count = s.Outer, s.Mid, 1, s.Mid
	case keepM:
		p.groups, p.start, p.stride, p.count = s.Mid, 1, s.Mid, s.Outer
	default:
		p.groups, p.start, p.stride, p.count = 1, 0, 1, s.Outer*s.Mid
	}
	return p
}

// permutePlan is a permutation with adjacent source dimensions that stay adjacent merged:
// dst has shape shape, and dst dimension i advances the source by stride[i].
type permutePlan struct {
	shape, stride []int
	n             int
}

// planPermute merges dimensions and returns ErrUnsupported when more than MaxPermuteDims
// remain. perm must be a permutation of 0..len(shape)-1 (checked).
func planPermute(shape, perm []int) (permutePlan, error) {
	nd := len(shape)
	if len(perm) != nd {
		return permutePlan{}, fmt.Errorf("%w: perm %v for shape %v", engine.ErrShape, perm, shape)
	}
	seen := make([]bool, nd)
	for _, p := range perm {
		if p < 0 || p >= nd || seen[p] {
			return permutePlan{}, fmt.Errorf("%w: %v is not a permutation", engine.ErrShape, perm)
		}
		seen[p] = true
	}
	n := 1
	for _, d := range shape {
		n *= d
	}
	srcStride := make([]int, nd)
	acc := 1
	for i := nd - 1; i >= 0; i-- {
		srcStride[i] = acc
		acc *= shape[i]
	}
	// Walk dst dimensions; merge dst dim i into the previous one when it is the source
	// dimension right after the previous one (so together they are contiguous in src).
	var ps, pst []int
	for i, p := range perm {
		if shape[p] == 1 {
			continue // extent-1 dimensions do not move anything
		}
		if len(ps) > 0 && i > 0 {
			last := len(ps) - 1
			if pst[last] == srcStride[p]*shape[p] {
				ps[last] *= shape[p]
				pst[last] = srcStride[p]
				continue
			}
		}
		ps = append(ps, shape[p])
		pst = append(pst, srcStride[p])
	}
	if len(ps) == 0 {
		ps, pst = []int{1}, []int{1}
	}
	if len(ps) > MaxPermuteDims {
		return permutePlan{}, fmt.Errorf("%w: permutation of %d dimensions after merging (max %d)", ErrUnsupported, len(ps), MaxPermuteDims)
	}
	return permutePlan{shape: ps, stride: pst, n: n}, nil
}

// gemmPlan is a row-major engine GEMM restated for column-major cuBLAS. A row-major C (M×N)
// is a column-major Cᵀ (N×M), and Cᵀ = op(B)ᵀ·op(A)ᵀ, so cuBLAS computes with the operands
// swapped: m'=N, n'=M, A'=B (transposed iff TransB), B'=A (transposed iff TransA).
type gemmPlan struct {
	transA, transB    bool // cuBLAS op of A' and B'
	m, n, k           int
	lda, ldb, ldc     int // leading dimensions of A', B', C
	strideA, strideB  int64
	strideC           int64
	batch             int
	offA, offB, offC  int // element offsets of A', B', C
	extA, extB, extC  int // elements of each buffer the product touches, from its offset
	alpha, beta       float32
	sequentialSharedC bool // StrideC == 0 with batch > 1: run the products one after another
}

// planGemm validates p against the buffer lengths and builds the cuBLAS call.
func planGemm(p engine.GemmParams, lenA, lenB, lenC int) (gemmPlan, error) {
	batch := max(p.Batch, 1)
	if p.M < 0 || p.N < 0 || p.K < 0 {
		return gemmPlan{}, fmt.Errorf("%w: gemm %d×%d×%d", engine.ErrShape, p.M, p.N, p.K)
	}
	lda, ldb, ldc := p.Lda, p.Ldb, p.Ldc
	// Stored shapes: A is M×K (K×M when transposed), B is K×N (N×K when transposed).
	aRows, aCols := p.M, p.K
	if p.TransA {
		aRows, aCols = p.K, p.M
	}
	bRows, bCols := p.K, p.N
	if p.TransB {
		bRows, bCols = p.N, p.K
	}
	if lda == 0 {
		lda = aCols
	}
	if ldb == 0 {
		ldb = bCols
	}
	if ldc == 0 {
		ldc = p.N
	}
	lda, ldb, ldc = max(lda, 1), max(ldb, 1), max(ldc, 1)
	if lda < aCols || ldb < bCols || ldc < p.N {
		return gemmPlan{}, fmt.Errorf("%w: gemm leading dimensions %d/%d/%d below row lengths %d/%d/%d", engine.ErrShape, lda, ldb, ldc, aCols, bCols, p.N)
	}
	extent := func(rows, cols, ld, stride int) int {
		if rows == 0 || cols == 0 {
			return 0
		}
		return (batch-1)*stride + (rows-1)*ld + cols
	}
	g := gemmPlan{
		transA: p.TransB, transB: p.TransA,
		m: p.N, n: p.M, k: p.K,
		lda: ldb, ldb: lda, ldc: ldc,
		strideA: int64(p.StrideB), strideB: int64(p.StrideA), strideC: int64(p.StrideC),
		batch: batch, offA: p.OffB, offB: p.OffA, offC: p.OffC,
		extA: extent(bRows, bCols, ldb, p.StrideB), extB: extent(aRows, aCols, lda, p.StrideA),
		extC:  extent(p.M, p.N, ldc, p.StrideC),
		alpha: p.Alpha, beta: p.Beta,
		sequentialSharedC: batch > 1 && p.StrideC == 0,
	}
	if p.StrideA < 0 || p.StrideB < 0 || p.StrideC < 0 || p.OffA < 0 || p.OffB < 0 || p.OffC < 0 {
		return gemmPlan{}, fmt.Errorf("%w: negative gemm offset or stride", engine.ErrShape)
	}
	if p.OffB+g.extA > lenB || p.OffA+g.extB > lenA || p.OffC+g.extC > lenC {
		return gemmPlan{}, fmt.Errorf("%w: gemm %d×%d×%d batch %d reads past its buffers (A %d+%d of %d, B %d+%d of %d, C %d+%d of %d)",
			engine.ErrShape, p.M, p.N, p.K, batch, p.OffA, g.extB, lenA, p.OffB, g.extA, lenB, p.OffC, g.extC, lenC)
	}
	return g, nil
}

// checkLen returns an ErrShape error when a buffer is shorter than an op needs.
func checkLen(op, name string, have, want int) error {
	if have < want {
		return fmt.Errorf("%w: %s: %s has %d elements, need %d", engine.ErrShape, op, name, have, want)
	}
	return nil
}
