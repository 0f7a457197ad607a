package engine

// Buffer is an opaque handle to device memory holding Len() float32 elements (a reference
// backend may store float64; see the package doc). Only the backend that allocated a Buffer may
// interpret it; the CPU backend exposes its slice through its own package.
type Buffer interface {
	// Len is the number of elements.
	Len() int
}

// Span says which of the three logical dimensions (outer, mid, inner) of an elementwise or
// reduction shape an operand spans. A dimension the operand does not span is broadcast (for
// inputs) or summed over (for reduction outputs).
type Span uint8

const (
	// SpanOuter means the operand has the outer dimension.
	SpanOuter Span = 1 << iota
	// SpanMid means the operand has the mid dimension.
	SpanMid
	// SpanInner means the operand has the inner (contiguous) dimension.
	SpanInner
	// SpanAll is a full operand.
	SpanAll = SpanOuter | SpanMid | SpanInner
	// SpanNone is a single element (a scalar broadcast to everything, or a total sum).
	SpanNone Span = 0
)

// Shape3 is the logical [Outer, Mid, Inner] row-major shape every elementwise and reduction
// kernel works on. Operand X with span s has shape (Outer if s&SpanOuter else 1, Mid if ...,
// Inner if ...), row-major. Bias add over [B·N, D] is Outer=B·N, Inner=D with the bias spanning
// SpanInner; an adaLN shift [B, D] over [B, N, D] spans SpanOuter|SpanInner.
type Shape3 struct {
	Outer, Mid, Inner int
}

// Size is Outer·Mid·Inner.
func (s Shape3) Size() int { return s.Outer * s.Mid * s.Inner }

// SpanSize is the number of elements of an operand with span sp.
func (s Shape3) SpanSize(sp Span) int {
	n := 1
	if sp&SpanOuter != 0 {
		n *= s.Outer
	}
	if sp&SpanMid != 0 {
		n *= s.Mid
	}
	if sp&SpanInner != 0 {
		n *= s.Inner
	}
	return n
}

// BinaryOp is an elementwise binary operation.
type BinaryOp uint8

const (
	// OpAdd is a+b.
	OpAdd BinaryOp = iota
	// OpSub is a-b.
	OpSub
	// OpMul is a*b.
	OpMul
	// OpDiv is a/b.
	OpDiv
)

// Activation selects the nonlinearity of BiasAct.
type Activation uint8

const (
	// ActNone is the identity.
	ActNone Activation = iota
	// ActGELUTanh is GELU with the tanh approximation: 0.5x(1+tanh(√(2/π)(x+0.044715x³))).
	ActGELUTanh
	// ActSiLU is x·sigmoid(x).
	ActSiLU
)

// GemmParams describes a strided batched row-major GEMM:
//
//	for i in [0,Batch): C_i = Alpha·op(A_i)·op(B_i) + Beta·C_i
//
// where X_i starts at element OffX + i·StrideX of buffer X. op(A) is M×K, op(B) is K×N, C is
// M×N. Lda/Ldb/Ldc are leading dimensions (0 means tight: the row length of the stored matrix).
// A stride of 0 reuses the same matrix for every batch entry (e.g. shared weights).
type GemmParams struct {
	TransA, TransB bool
	M, N, K        int
	Alpha, Beta    float32
	A, B, C        Buffer
	OffA, OffB     int
	OffC           int
	Lda, Ldb, Ldc  int
	// Batch is the number of products; 0 is treated as 1.
	Batch                     int
	StrideA, StrideB, StrideC int
}

// LayerNormParams describes a layer norm over the last axis of X viewed as [Rows, Cols]:
//
//	Y[r,c] = n[r,c]·(WeightOffset + Weight[g,c]) + Bias[g,c],  n = (X[r]-mean)·rstd
//
// with g = r / (Rows/Groups). Plain affine layer norm is Groups=1, WeightOffset=0; adaLN
// "modulate" fused into the norm (x̂·(1+scale)+shift per sample) is Groups=B, WeightOffset=1,
// Weight=scale [B,D], Bias=shift [B,D]. Weight and/or Bias may be nil (no scale / no shift; with
// Weight nil the multiplier is 1). Mean and Rstd ([Rows]) are written for the backward pass.
type LayerNormParams struct {
	X, Y, Weight, Bias, Mean, Rstd Buffer
	Rows, Cols, Groups             int
	WeightOffset, Eps              float32
}

// LayerNormGradParams is the backward of LayerNormParams. DX is overwritten; DWeight and DBias
// ([Groups, Cols]) are overwritten when non-nil.
type LayerNormGradParams struct {
	X, Weight, Mean, Rstd, DY Buffer
	DX, DWeight, DBias        Buffer
	Rows, Cols, Groups        int
	WeightOffset              float32
}

// Conv2DParams describes a 2-D cross-correlation (PyTorch's conv2d) in NCHW layout:
//
//	Y[n,o,y,x] = Bias[o] + Σ_{c,i,j} W[o,c,i,j]·X[n, c, y·Stride+i−PadTop, x·Stride+j−PadLeft]
//
// with X [N,C,H,W], W [O,C,KH,KW], Bias [O] or nil and Y [N,O,OH,OW], where
// OH = (H+PadTop+PadBottom−KH)/Stride+1 and OW = (W+PadLeft+PadRight−KW)/Stride+1; inputs
// outside X read as zero. Asymmetric padding is what a VAE's downsampler needs (pad right and
// bottom by one, then a stride-2 3×3 convolution).
type Conv2DParams struct {
	X, W, Bias, Y                        Buffer
	N, C, H, Wd, O, KH, KW, Stride       int
	PadTop, PadBottom, PadLeft, PadRight int
}

// Conv2DGradParams is the backward of Conv2DParams: DX ([N,C,H,W]), DW ([O,C,KH,KW]) and DBias
// ([O]) are overwritten when non-nil.
type Conv2DGradParams struct {
	Conv2DParams
	DY, DX, DW, DBias Buffer
}

// GroupNormParams describes a group norm over X [N, C, HW] (HW = spatial size) with C split
// into Groups groups of C/Groups channels:
//
//	Y[n,c,s] = (X[n,c,s]−mean[n,g])·rstd[n,g]·Weight[c] + Bias[c],  g = c/(C/Groups)
//
// Weight and Bias ([C]) may be nil (1 and 0). Mean and Rstd ([N,Groups]) are written for the
// backward pass. Statistics are computed in float64 on the CPU and with a two-pass or Welford
// reduction on a GPU, because a group spans up to 32·128·128 elements.
type GroupNormParams struct {
	X, Y, Weight, Bias, Mean, Rstd Buffer
	N, C, HW, Groups               int
	Eps                            float32
}

// GroupNormGradParams is the backward of GroupNormParams. DX is overwritten; DWeight and DBias
// ([C]) are overwritten when non-nil.
type GroupNormGradParams struct {
	X, Weight, Mean, Rstd, DY Buffer
	DX, DWeight, DBias        Buffer
	N, C, HW, Groups          int
}

// RMSNormParams describes T5's layer norm over the last axis of X viewed as [Rows, Cols]:
//
//	Y[r,c] = X[r,c]·rstd[r]·Weight[c],  rstd[r] = 1/√(mean_c X[r,c]² + Eps)
//
// (no mean subtraction, no bias). Weight may be nil (1). Rstd ([Rows]) is written for the
// backward pass. The sum of squares is accumulated in float32 or wider, never in bf16.
type RMSNormParams struct {
	X, Y, Weight, Rstd Buffer
	Rows, Cols         int
	Eps                float32
}

// RMSNormGradParams is the backward of RMSNormParams. DX is overwritten; DWeight ([Cols]) is
// overwritten when non-nil.
type RMSNormGradParams struct {
	X, Weight, Rstd, DY Buffer
	DX, DWeight         Buffer
	Rows, Cols          int
}

// AttentionParams describes multi-head scaled dot-product attention in [B,H,N,Dh] layout:
//
//	O[b,h] = softmax(Scale·Q[b,h]·K[b,h]ᵀ + mask)·V[b,h]
//
// Q and O are [B,H,Nq,Dh]; K and V are [B,H,Nk,Dh] (Nk may differ from Nq: cross-attention).
// Mask, when non-nil, is [B,Nk] with 1 for keys to attend to and 0 for padding; a query whose
// keys are all masked gets a zero output. LSE ([B,H,Nq]) receives the log-sum-exp of each
// softmax row, which the backward pass uses to recompute probabilities.
type AttentionParams struct {
	Q, K, V, O, LSE, Mask Buffer
	B, H, Nq, Nk, Dh      int
	Scale                 float32
}

// AttentionGradParams is the backward of AttentionParams; DQ, DK and DV are overwritten.
type AttentionGradParams struct {
	AttentionParams
	DO, DQ, DK, DV Buffer
}

// Backend executes kernels on one device. Buffers are opaque handles; every method takes
// element counts or shapes explicitly, buffers are contiguous and row-major, and every output
// buffer is distinct from every input buffer unless a method says otherwise.
//
// Methods panic on invalid arguments (wrong lengths, foreign buffers): those are programming
// errors that the engine's shape checks rule out. Only resource errors are returned. A backend
// is driven by one goroutine at a time (the engine's); it may use many threads inside a call.
type Backend interface {
	// Describe names the backend and its math libraries, e.g. "cpu (openblas 0.3.21, 2 threads)".
	Describe() string
	// Close releases the backend's resources. Buffers must not be used afterwards.
	Close() error

	// Alloc returns a zero-filled buffer of n elements. Errors wrap ErrOutOfMemory when the
	// device is full.
	Alloc(n int) (Buffer, error)
	// Free releases a buffer. Freeing nil is a no-op; freeing twice panics.
	Free(b Buffer)
	// Upload copies src into dst (len(src) == dst.Len()).
	Upload(dst Buffer, src []float32) error
	// Download copies src into dst (len(dst) == src.Len()), waiting for queued work.
	Download(dst []float32, src Buffer) error

	// Fill sets every element of dst to v.
	Fill(dst Buffer, v float32)
	// Copy2D copies rows×cols elements: dst[dstOff + r·dstStride + c] = src[srcOff + r·srcStride + c].
	// It implements concat, split and slicing along any axis.
	Copy2D(dst Buffer, dstOff, dstStride int, src Buffer, srcOff, srcStride, rows, cols int)
	// Permute writes dst = src.permute(perm) where src has the given shape: dst's dimension i
	// is src's dimension perm[i].
	Permute(dst, src Buffer, shape, perm []int)

	// Gemm runs a strided batched GEMM.
	Gemm(p GemmParams)

	// Binary computes dst[o,m,i] = a[..] op b[..] with a and b broadcast according to their spans.
	// dst is full (SpanAll) and may alias a or b when that operand is full.
	Binary(op BinaryOp, dst, a, b Buffer, s Shape3, aSpan, bSpan Span)
	// Affine computes dst = alpha·x + beta elementwise (scale, add-scalar, negate). dst may alias x.
	Affine(dst, x Buffer, alpha, beta float32)
	// Axpy computes y += alpha·x (gradient accumulation).
	Axpy(y, x Buffer, alpha float32)
	// Reduce computes dst = alpha·(sum of src over the dimensions dst does not span); src is full.
	// The summation order is fixed (see the package doc's determinism contract).
	Reduce(dst, src Buffer, s Shape3, dstSpan Span, alpha float32)
	// Expand is Reduce's adjoint: dst[o,m,i] = alpha·src[..] with src broadcast by its span.
	Expand(dst, src Buffer, s Shape3, srcSpan Span, alpha float32)

	// BiasAct computes dst[r,c] = act(x[r,c] + bias[c]) over [rows, cols] (bias may be nil).
	BiasAct(act Activation, dst, x, bias Buffer, rows, cols int)
	// BiasActBackward computes dx = dy·act'(x+bias) and, when dbias is non-nil, dbias[c] = Σ_r dx[r,c].
	BiasActBackward(act Activation, dx, dbias, x, bias, dy Buffer, rows, cols int)

	// Softmax computes a softmax over the last axis of [rows, cols].
	Softmax(dst, x Buffer, rows, cols int)
	// SoftmaxBackward computes dx = y·(dy - Σ_c dy·y) given the softmax output y.
	SoftmaxBackward(dx, y, dy Buffer, rows, cols int)

	// LayerNorm runs a (grouped, optionally affine) layer norm; see LayerNormParams.
	LayerNorm(p LayerNormParams)
	// LayerNormBackward is its backward.
	LayerNormBackward(p LayerNormGradParams)

	// Conv2D runs a 2-D convolution; see Conv2DParams. Scratch (an im2col panel) is bounded by
	// the backend, never proportional to the whole image.
	Conv2D(p Conv2DParams)
	// Conv2DBackward is its backward.
	Conv2DBackward(p Conv2DGradParams)
	// GroupNorm runs a group norm; see GroupNormParams.
	GroupNorm(p GroupNormParams)
	// GroupNormBackward is its backward.
	GroupNormBackward(p GroupNormGradParams)
	// RMSNorm runs T5's root-mean-square norm; see RMSNormParams.
	RMSNorm(p RMSNormParams)
	// RMSNormBackward is its backward.
	RMSNormBackward(p RMSNormGradParams)
	// UpsampleNearest repeats every pixel of src [NC, H, W] factor×factor times into
	// dst [NC, H·factor, W·factor] (PyTorch's interpolate(mode="nearest") for an integer factor).
	UpsampleNearest(dst, src Buffer, nc, h, w, factor int)
	// UpsampleNearestBackward sums each factor×factor block of dy [NC, H·factor, W·factor] into
	// dx [NC, H, W] (overwritten).
	UpsampleNearestBackward(dx, dy Buffer, nc, h, w, factor int)

	// Attention runs fused multi-head attention (QKᵀ, masked softmax and ·V in one kernel).
	Attention(p AttentionParams)
	// AttentionBackward recomputes the probabilities from LSE and writes DQ, DK, DV.
	AttentionBackward(p AttentionGradParams)

	// Embedding gathers rows: dst[i,:] = table[ids[i],:] with rows of length dim.
	Embedding(dst, table Buffer, ids []int32, dim int)
	// EmbeddingBackward scatter-adds: dtable[ids[i],:] += dy[i,:], in index order per column.
	EmbeddingBackward(dtable, dy Buffer, ids []int32, dim int)

	// RandUniform fills dst with uniform [lo,hi) values from Philox4x32-10 stream (seed,
	// offset) laid out as package philox documents.
	RandUniform(dst Buffer, seed, offset uint64, lo, hi float32)
	// RandNormal fills dst with normal(mean, std) values from stream (seed, offset).
	RandNormal(dst Buffer, seed, offset uint64, mean, std float32)
}

// Workspacer is implemented by backends whose attention kernels hold scratch memory beyond
// their operands while they run (score matrices, row statistics). A memory estimate (see
// model.Config.TrainingMemory) adds it to what the tensors take: at high resolution the
// scores of one head are the largest single allocation of a step.
type Workspacer interface {
	// AttentionWorkspace is the bytes of scratch one Attention call (backward: one
	// AttentionBackward call) over [b, h, nq, dh] queries and nk keys holds.
	AttentionWorkspace(b, h, nq, nk, dh int, backward bool) int64
}

// MemoryReporter is implemented by backends whose tensors live in memory of their own (a
// GPU): it says how much there is. A backend without it keeps tensors in host memory.
type MemoryReporter interface {
	// DeviceMemory returns the device's total memory in bytes and a name for messages
	// ("GPU 0 (NVIDIA H100 80GB HBM3)").
	DeviceMemory() (total int64, name string)
}
