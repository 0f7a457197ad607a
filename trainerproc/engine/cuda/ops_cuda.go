//go:build cuda

package cuda

import (
	"fmt"

	"gorgonia.org/cu"

	"simpletuner/trainerproc/engine"
)

// attnScratchBytes bounds the score matrices of the unfused attention path; heads are
// processed in chunks that fit.
const attnScratchBytes = 256 << 20

// Fill implements engine.Backend.
func (b *Backend) Fill(dst engine.Buffer, v float32) {
	d := b.buf(dst)
	if d.n == 0 || b.err != nil {
		return
	}
	defer b.enter()()
	if err := cu.MemsetD32Async(cu.DevicePtr(d.ptr), f32(v), int64(d.n), cu.NoStream); err != nil {
		b.fail(fmt.Errorf("%w: cuMemsetD32: %w", ErrDriver, err))
	}
}

// Copy2D implements engine.Backend.
func (b *Backend) Copy2D(dst engine.Buffer, dstOff, dstStride int, src engine.Buffer, srcOff, srcStride, rows, cols int) {
	if rows == 0 || cols == 0 {
		return
	}
	must(checkLen("Copy2D", "dst", b.length(dst), dstOff+(rows-1)*dstStride+cols))
	must(checkLen("Copy2D", "src", b.length(src), srcOff+(rows-1)*srcStride+cols))
	defer b.enter()()
	b.launch("copy2d_f32", flatLaunch(int64(rows)*int64(cols)), NewArgs(6).
		Ptr(b.ptr(dst, dstOff)).Int(dstStride).Ptr(b.ptr(src, srcOff)).Int(srcStride).Int(rows).Int(cols))
}

// Permute implements engine.Backend.
func (b *Backend) Permute(dst, src engine.Buffer, shape, perm []int) {
	pl, err := planPermute(shape, perm)
	if err != nil {
		b.fail(err)
		return
	}
	must(checkLen("Permute", "dst", b.length(dst), pl.n))
	must(checkLen("Permute", "src", b.length(src), pl.n))
	if pl.n == 0 {
		return
	}
	defer b.enter()()
	a := NewArgs(16).Ptr(b.ptr(dst, 0)).Ptr(b.ptr(src, 0)).Int64(int64(pl.n)).Int(len(pl.shape))
	for i := range MaxPermuteDims {
		if i < len(pl.shape) {
			a.Int(pl.shape[i])
		} else {
			a.Int(1)
		}
	}
	for i := range MaxPermuteDims {
		if i < len(pl.stride) {
			a.Int(pl.stride[i])
		} else {
			a.Int(0)
		}
	}
	b.launch("permute_f32", flatLaunch(int64(pl.n)), a)
}

// Gemm implements engine.Backend through cuBLAS (see gemmPlan for the row-major mapping).
// In bf16 mode the touched range of each operand is rounded to bf16 in a scratch buffer first.
func (b *Backend) Gemm(p engine.GemmParams) {
	g, err := planGemm(p, b.length(p.A), b.length(p.B), b.length(p.C))
	must(err)
	if p.M == 0 || p.N == 0 || b.err != nil {
		return
	}
	defer b.enter()()
	call := gemmCall{plan: g, a: b.ptr(p.B, g.offA), b: b.ptr(p.A, g.offB), c: b.ptr(p.C, g.offC), dtype: cudaR32F, elemAB: f32Bytes}
	if b.opts.Precision == PrecisionBF16 && g.k > 0 {
		ca, okA := b.castBF16(call.a, g.extA)
		cb, okB := b.castBF16(call.b, g.extB)
		defer b.release(ca)
		defer b.release(cb)
		if !okA || !okB {
			return
		}
		call.a, call.b, call.dtype, call.elemAB = ca, cb, cudaR16BF, bf16Bytes
	}
	if err := b.blas.gemm(call); err != nil {
		b.fail(fmt.Errorf("gemm %d×%d×%d batch %d: %w", p.M, p.N, p.K, g.batch, err))
	}
}

// castBF16 rounds n float32 at src into a new bf16 scratch block.
func (b *Backend) castBF16(src uintptr, n int) (uintptr, bool) {
	if n == 0 {
		return 0, true
	}
	p, ok := b.scratch(int64(n) * bf16Bytes)
	if !ok {
		return 0, false
	}
	b.launch("cast_f32_bf16", flatLaunch(int64(n)), NewArgs(3).Ptr(p).Ptr(src).Int64(int64(n)))
	return p, true
}

// Binary implements engine.Backend.
func (b *Backend) Binary(op engine.BinaryOp, dst, x, y engine.Buffer, s engine.Shape3, xs, ys engine.Span) {
	if op > engine.OpDiv {
		panic(fmt.Sprintf("cuda: unknown binary op %d", op))
	}
	must(checkLen("Binary", "dst", b.length(dst), s.Size()))
	must(checkLen("Binary", "a", b.length(x), s.SpanSize(xs)))
	must(checkLen("Binary", "b", b.length(y), s.SpanSize(ys)))
	defer b.enter()()
	b.launch("binary_f32", flatLaunch(int64(s.Size())), NewArgs(9).Ptr(b.ptr(dst, 0)).Ptr(b.ptr(x, 0)).Ptr(b.ptr(y, 0)).
		Int(int(op)).Int(s.Outer).Int(s.Mid).Int(s.Inner).Int(int(xs)).Int(int(ys)))
}

// Affine implements engine.Backend.
func (b *Backend) Affine(dst, x engine.Buffer, alpha, beta float32) {
	n := b.length(dst)
	must(checkLen("Affine", "x", b.length(x), n))
	defer b.enter()()
	b.launch("affine_f32", flatLaunch(int64(n)), NewArgs(5).Ptr(b.ptr(dst, 0)).Ptr(b.ptr(x, 0)).Float(alpha).Float(beta).Int64(int64(n)))
}

// Axpy implements engine.Backend.
func (b *Backend) Axpy(y, x engine.Buffer, alpha float32) {
	n := b.length(y)
	must(checkLen("Axpy", "x", b.length(x), n))
	defer b.enter()()
	b.launch("axpy_f32", flatLaunch(int64(n)), NewArgs(4).Ptr(b.ptr(y, 0)).Ptr(b.ptr(x, 0)).Float(alpha).Int64(int64(n)))
}

// Reduce implements engine.Backend.
func (b *Backend) Reduce(dst, src engine.Buffer, s engine.Shape3, dstSpan engine.Span, alpha float32) {
	must(checkLen("Reduce", "src", b.length(src), s.Size()))
	must(checkLen("Reduce", "dst", b.length(dst), s.SpanSize(dstSpan)))
	defer b.enter()()
	b.reduce(b.ptr(dst, 0), b.ptr(src, 0), s, dstSpan, alpha)
}

// reduce sums src [O,M,I] into dst over the dimensions dstSpan leaves out.
func (b *Backend) reduce(dst, src uintptr, s engine.Shape3, dstSpan engine.Span, alpha float32) {
	n := s.Size()
	switch {
	case n == 0:
		if m := s.SpanSize(dstSpan); m > 0 {
			b.launch("fill_f32", flatLaunch(int64(m)), NewArgs(3).Ptr(dst).Float(0).Int64(int64(m)))
		}
	case dstSpan == engine.SpanAll:
		b.launch("affine_f32", flatLaunch(int64(n)), NewArgs(5).Ptr(dst).Ptr(src).Float(alpha).Float(0).Int64(int64(n)))
	default:
		pl := planReduce(s, dstSpan)
		a := NewArgs(8).Ptr(dst).Ptr(src).Int(pl.groups).Int(pl.start).Int(pl.stride).Int(pl.count).Int(pl.inner).Float(alpha)
		if pl.keepInner {
			l, err := colLaunch(pl.groups, pl.inner)
			if err != nil {
				b.fail(err)
				return
			}
			b.launch("reduce_cols_f32", l, a)
		} else {
			b.launch("reduce_rows_f32", rowLaunch(pl.groups), a)
		}
	}
}

// Expand implements engine.Backend.
func (b *Backend) Expand(dst, src engine.Buffer, s engine.Shape3, srcSpan engine.Span, alpha float32) {
	must(checkLen("Expand", "dst", b.length(dst), s.Size()))
	must(checkLen("Expand", "src", b.length(src), s.SpanSize(srcSpan)))
	defer b.enter()()
	b.launch("expand_f32", flatLaunch(int64(s.Size())), NewArgs(7).Ptr(b.ptr(dst, 0)).Ptr(b.ptr(src, 0)).
		Int(s.Outer).Int(s.Mid).Int(s.Inner).Int(int(srcSpan)).Float(alpha))
}

func checkAct(kind engine.Activation) {
	if kind > engine.ActSiLU {
		panic(fmt.Sprintf("cuda: unknown activation %d", kind))
	}
}

// BiasAct implements engine.Backend (bias add and activation fused).
func (b *Backend) BiasAct(kind engine.Activation, dst, x, bias engine.Buffer, rows, cols int) {
	checkAct(kind)
	must(checkLen("BiasAct", "dst", b.length(dst), rows*cols))
	must(checkLen("BiasAct", "x", b.length(x), rows*cols))
	if bias != nil {
		must(checkLen("BiasAct", "bias", b.length(bias), cols))
	}
	defer b.enter()()
	b.launch("bias_act_f32", flatLaunch(int64(rows)*int64(cols)), NewArgs(6).Ptr(b.ptr(dst, 0)).Ptr(b.ptr(x, 0)).Ptr(b.ptr(bias, 0)).
		Int(int(kind)).Int(rows).Int(cols))
}

// BiasActBackward implements engine.Backend.
func (b *Backend) BiasActBackward(kind engine.Activation, dx, dbias, x, bias, dy engine.Buffer, rows, cols int) {
	checkAct(kind)
	must(checkLen("BiasActBackward", "dx", b.length(dx), rows*cols))
	must(checkLen("BiasActBackward", "x", b.length(x), rows*cols))
	must(checkLen("BiasActBackward", "dy", b.length(dy), rows*cols))
	if dbias != nil {
		must(checkLen("BiasActBackward", "dbias", b.length(dbias), cols))
	}
	defer b.enter()()
	b.launch("bias_act_bwd_f32", flatLaunch(int64(rows)*int64(cols)), NewArgs(7).Ptr(b.ptr(dx, 0)).Ptr(b.ptr(x, 0)).Ptr(b.ptr(bias, 0)).
		Ptr(b.ptr(dy, 0)).Int(int(kind)).Int(rows).Int(cols))
	if dbias != nil {
		b.reduce(b.ptr(dbias, 0), b.ptr(dx, 0), engine.Shape3{Outer: 1, Mid: rows, Inner: cols}, engine.SpanInner, 1)
	}
}

// Softmax implements engine.Backend.
func (b *Backend) Softmax(dst, x engine.Buffer, rows, cols int) {
	must(checkLen("Softmax", "dst", b.length(dst), rows*cols))
	must(checkLen("Softmax", "x", b.length(x), rows*cols))
	if cols == 0 {
		return
	}
	defer b.enter()()
	b.launch("softmax_f32", rowLaunch(rows), NewArgs(4).Ptr(b.ptr(dst, 0)).Ptr(b.ptr(x, 0)).Int(rows).Int(cols))
}

// SoftmaxBackward implements engine.Backend.
func (b *Backend) SoftmaxBackward(dx, y, dy engine.Buffer, rows, cols int) {
	must(checkLen("SoftmaxBackward", "dx", b.length(dx), rows*cols))
	must(checkLen("SoftmaxBackward", "y", b.length(y), rows*cols))
	must(checkLen("SoftmaxBackward", "dy", b.length(dy), rows*cols))
	if cols == 0 {
		return
	}
	defer b.enter()()
	b.launch("softmax_bwd_f32", rowLaunch(rows), NewArgs(5).Ptr(b.ptr(dx, 0)).Ptr(b.ptr(y, 0)).Ptr(b.ptr(dy, 0)).Int(rows).Int(cols))
}

// layerNormShape validates a layer norm's geometry and returns its group size.
func (b *Backend) layerNormShape(op string, rows, cols, groups int, x, w, bias engine.Buffer) int {
	groups = max(groups, 1)
	if rows%groups != 0 {
		panic(fmt.Sprintf("cuda: %s: %d rows not divisible into %d groups", op, rows, groups))
	}
	must(checkLen(op, "x", b.length(x), rows*cols))
	if w != nil {
		must(checkLen(op, "weight", b.length(w), groups*cols))
	}
	if bias != nil {
		must(checkLen(op, "bias", b.length(bias), groups*cols))
	}
	return groups
}

// LayerNorm implements engine.Backend, with adaLN's modulate fused into the normalisation.
func (b *Backend) LayerNorm(p engine.LayerNormParams) {
	groups := b.layerNormShape("LayerNorm", p.Rows, p.Cols, p.Groups, p.X, p.Weight, p.Bias)
	must(checkLen("LayerNorm", "y", b.length(p.Y), p.Rows*p.Cols))
	must(checkLen("LayerNorm", "mean", b.length(p.Mean), p.Rows))
	must(checkLen("LayerNorm", "rstd", b.length(p.Rstd), p.Rows))
	if p.Cols == 0 {
		return
	}
	defer b.enter()()
	b.launch("layernorm_f32", rowLaunch(p.Rows), NewArgs(11).Ptr(b.ptr(p.Y, 0)).Ptr(b.ptr(p.Mean, 0)).Ptr(b.ptr(p.Rstd, 0)).
		Ptr(b.ptr(p.X, 0)).Ptr(b.ptr(p.Weight, 0)).Ptr(b.ptr(p.Bias, 0)).Int(p.Rows).Int(p.Cols).Int(p.Rows/groups).
		Float(p.WeightOffset).Float(p.Eps))
}

// LayerNormBackward implements engine.Backend.
func (b *Backend) LayerNormBackward(p engine.LayerNormGradParams) {
	groups := b.layerNormShape("LayerNormBackward", p.Rows, p.Cols, p.Groups, p.X, p.Weight, nil)
	must(checkLen("LayerNormBackward", "dx", b.length(p.DX), p.Rows*p.Cols))
	must(checkLen("LayerNormBackward", "dy", b.length(p.DY), p.Rows*p.Cols))
	must(checkLen("LayerNormBackward", "mean", b.length(p.Mean), p.Rows))
	must(checkLen("LayerNormBackward", "rstd", b.length(p.Rstd), p.Rows))
	if p.DWeight != nil {
		must(checkLen("LayerNormBackward", "dweight", b.length(p.DWeight), groups*p.Cols))
	}
	if p.DBias != nil {
		must(checkLen("LayerNormBackward", "dbias", b.length(p.DBias), groups*p.Cols))
	}
	if p.Cols == 0 {
		return
	}
	defer b.enter()()
	per := p.Rows / groups
	b.launch("layernorm_bwd_f32", rowLaunch(p.Rows), NewArgs(10).Ptr(b.ptr(p.DX, 0)).Ptr(b.ptr(p.X, 0)).Ptr(b.ptr(p.Weight, 0)).
		Ptr(b.ptr(p.Mean, 0)).Ptr(b.ptr(p.Rstd, 0)).Ptr(b.ptr(p.DY, 0)).Int(p.Rows).Int(p.Cols).Int(per).Float(p.WeightOffset))
	if p.DWeight != nil || p.DBias != nil {
		l, err := colLaunch(groups, p.Cols)
		if err != nil {
			b.fail(err)
			return
		}
		b.launch("layernorm_param_grad_f32", l, NewArgs(9).Ptr(b.ptr(p.DWeight, 0)).Ptr(b.ptr(p.DBias, 0)).Ptr(b.ptr(p.X, 0)).
			Ptr(b.ptr(p.DY, 0)).Ptr(b.ptr(p.Mean, 0)).Ptr(b.ptr(p.Rstd, 0)).Int(groups).Int(per).Int(p.Cols))
	}
}

func (b *Backend) checkAttention(op string, p engine.AttentionParams) {
	bh := p.B * p.H
	must(checkLen(op, "Q", b.length(p.Q), bh*p.Nq*p.Dh))
	must(checkLen(op, "K", b.length(p.K), bh*p.Nk*p.Dh))
	must(checkLen(op, "V", b.length(p.V), bh*p.Nk*p.Dh))
	must(checkLen(op, "O", b.length(p.O), bh*p.Nq*p.Dh))
	must(checkLen(op, "LSE", b.length(p.LSE), bh*p.Nq))
	if p.Mask != nil {
		must(checkLen(op, "mask", b.length(p.Mask), p.B*p.Nk))
	}
}

// useFlash reports whether attention with head size dh runs on the flash kernels.
func (b *Backend) useFlash(dh int) (int, bool) {
	if b.opts.UnfusedAttention {
		return 0, false
	}
	return flashDim(dh)
}

// Attention implements engine.Backend: the flash kernel, or the unfused path (scores through
// cuBLAS, masked softmax with log-sum-exp, then P·V) for large heads or when asked.
func (b *Backend) Attention(p engine.AttentionParams) {
	b.checkAttention("Attention", p)
	bh := p.B * p.H
	if bh == 0 || p.Nq == 0 {
		return
	}
	if dm, ok := b.useFlash(p.Dh); ok {
		l, err := flashLaunch(p.Nq, bh, flashQueries)
		if err != nil {
			b.fail(err)
			return
		}
		defer b.enter()()
		b.launch(fmt.Sprintf("attn_fwd_d%d", dm), l, NewArgs(11).Ptr(b.ptr(p.O, 0)).Ptr(b.ptr(p.LSE, 0)).Ptr(b.ptr(p.Q, 0)).
			Ptr(b.ptr(p.K, 0)).Ptr(b.ptr(p.V, 0)).Ptr(b.ptr(p.Mask, 0)).Int(p.H).Int(p.Nq).Int(p.Nk).Int(p.Dh).Float(p.Scale))
		return
	}
	b.attentionUnfused(p)
}

// attnChunk is how many (batch, head) pairs of nq×nk scores fit the scratch budget.
func attnChunk(bh, nq, nk int) int {
	return max(1, min(bh, attnScratchBytes/f32Bytes/max(1, nq*nk)))
}

// AttentionWorkspace implements engine.Workspacer: the flash kernels keep only one float
// per query row (backward); the unfused path holds a chunk of scores (and, backward, their
// gradient) as the CPU backend does.
func (b *Backend) AttentionWorkspace(bsz, h, nq, nk, dh int, backward bool) int64 {
	if _, ok := b.useFlash(dh); ok {
		if backward {
			return int64(bsz) * int64(h) * int64(nq) * f32Bytes
		}
		return 0
	}
	n := int64(attnChunk(bsz*h, nq, nk)) * int64(nq) * int64(nk) * f32Bytes
	if backward {
		return 2 * n
	}
	return n
}

// internal wraps a scratch block as a Buffer for the GEMM path; it is never handed out.
func (b *Backend) internal(p uintptr, n int) *Buffer { return &Buffer{ptr: p, n: n, owner: b} }

func (b *Backend) attentionUnfused(p engine.AttentionParams) {
	bh, nq, nk, dh := p.B*p.H, p.Nq, p.Nk, p.Dh
	chunk := attnChunk(bh, nq, nk)
	defer b.enter()()
	sp, ok := b.scratch(int64(chunk) * int64(nq) * int64(nk) * f32Bytes)
	if !ok {
		return
	}
	defer b.release(sp)
	s := b.internal(sp, chunk*nq*nk)
	for h0 := 0; h0 < bh; h0 += chunk {
		hc := min(chunk, bh-h0)
		b.Gemm(engine.GemmParams{TransB: true, M: nq, N: nk, K: dh, Alpha: p.Scale,
			A: p.Q, OffA: h0 * nq * dh, StrideA: nq * dh,
			B: p.K, OffB: h0 * nk * dh, StrideB: nk * dh,
			C: s, StrideC: nq * nk, Batch: hc})
		b.launch("attn_mask_softmax_f32", rowLaunch(hc*nq), NewArgs(7).Ptr(sp).Ptr(b.ptr(p.LSE, 0)).Ptr(b.ptr(p.Mask, 0)).
			Int(p.H).Int(nq).Int(nk).Int(h0))
		b.Gemm(engine.GemmParams{M: nq, N: dh, K: nk, Alpha: 1,
			A: s, StrideA: nq * nk,
			B: p.V, OffB: h0 * nk * dh, StrideB: nk * dh,
			C: p.O, OffC: h0 * nq * dh, StrideC: nq * dh, Batch: hc})
	}
}

// AttentionBackward implements engine.Backend.
func (b *Backend) AttentionBackward(p engine.AttentionGradParams) {
	b.checkAttention("AttentionBackward", p.AttentionParams)
	bh := p.B * p.H
	must(checkLen("AttentionBackward", "dO", b.length(p.DO), bh*p.Nq*p.Dh))
	must(checkLen("AttentionBackward", "dQ", b.length(p.DQ), bh*p.Nq*p.Dh))
	must(checkLen("AttentionBackward", "dK", b.length(p.DK), bh*p.Nk*p.Dh))
	must(checkLen("AttentionBackward", "dV", b.length(p.DV), bh*p.Nk*p.Dh))
	if bh == 0 {
		return
	}
	dm, ok := b.useFlash(p.Dh)
	if !ok {
		b.attentionBackwardUnfused(p)
		return
	}
	defer b.enter()()
	if p.Nq == 0 || p.Nk == 0 {
		// Nothing attends: every gradient is zero.
		for _, x := range []engine.Buffer{p.DQ, p.DK, p.DV} {
			if n := b.length(x); n > 0 {
				b.launch("fill_f32", flatLaunch(int64(n)), NewArgs(3).Ptr(b.ptr(x, 0)).Float(0).Int64(int64(n)))
			}
		}
		return
	}
	rows := bh * p.Nq
	dp, ok := b.scratch(int64(rows) * f32Bytes)
	if !ok {
		return
	}
	defer b.release(dp)
	b.launch("attn_bwd_delta_f32", flatLaunch(int64(rows)), NewArgs(5).Ptr(dp).Ptr(b.ptr(p.O, 0)).Ptr(b.ptr(p.DO, 0)).Int64(int64(rows)).Int(p.Dh))
	lq, err := flashLaunch(p.Nq, bh, flashQueries)
	if err != nil {
		b.fail(err)
		return
	}
	b.launch(fmt.Sprintf("attn_bwd_dq_d%d", dm), lq, NewArgs(13).Ptr(b.ptr(p.DQ, 0)).Ptr(b.ptr(p.Q, 0)).Ptr(b.ptr(p.K, 0)).
		Ptr(b.ptr(p.V, 0)).Ptr(b.ptr(p.LSE, 0)).Ptr(dp).Ptr(b.ptr(p.DO, 0)).Ptr(b.ptr(p.Mask, 0)).
		Int(p.H).Int(p.Nq).Int(p.Nk).Int(p.Dh).Float(p.Scale))
	lk, err := flashLaunch(p.Nk, bh, flashKeys)
	if err != nil {
		b.fail(err)
		return
	}
	b.launch(fmt.Sprintf("attn_bwd_dkdv_d%d", dm), lk, NewArgs(14).Ptr(b.ptr(p.DK, 0)).Ptr(b.ptr(p.DV, 0)).Ptr(b.ptr(p.Q, 0)).
		Ptr(b.ptr(p.K, 0)).Ptr(b.ptr(p.V, 0)).Ptr(b.ptr(p.LSE, 0)).Ptr(dp).Ptr(b.ptr(p.DO, 0)).Ptr(b.ptr(p.Mask, 0)).
		Int(p.H).Int(p.Nq).Int(p.Nk).Int(p.Dh).Float(p.Scale))
}

// attentionBackwardUnfused mirrors the CPU backend: recompute P from LSE, dV = Pᵀ·dO,
// dP = dO·Vᵀ, dS = P⊙(dP − rowsum(dO⊙O)), dQ = scale·dS·K, dK = scale·dSᵀ·Q.
func (b *Backend) attentionBackwardUnfused(p engine.AttentionGradParams) {
	bh, nq, nk, dh := p.B*p.H, p.Nq, p.Nk, p.Dh
	chunk := attnChunk(bh, nq, nk)
	defer b.enter()()
	sp, ok := b.scratch(int64(chunk) * int64(nq) * int64(nk) * f32Bytes)
	if !ok {
		return
	}
	defer b.release(sp)
	dpp, ok := b.scratch(int64(chunk) * int64(nq) * int64(nk) * f32Bytes)
	if !ok {
		return
	}
	defer b.release(dpp)
	s, dpb := b.internal(sp, chunk*nq*nk), b.internal(dpp, chunk*nq*nk)
	for h0 := 0; h0 < bh; h0 += chunk {
		hc := min(chunk, bh-h0)
		b.Gemm(engine.GemmParams{TransB: true, M: nq, N: nk, K: dh, Alpha: p.Scale,
			A: p.Q, OffA: h0 * nq * dh, StrideA: nq * dh,
			B: p.K, OffB: h0 * nk * dh, StrideB: nk * dh,
			C: s, StrideC: nq * nk, Batch: hc})
		b.launch("attn_bwd_prob_f32", rowLaunch(hc*nq), NewArgs(7).Ptr(sp).Ptr(b.ptr(p.LSE, 0)).Ptr(b.ptr(p.Mask, 0)).
			Int(p.H).Int(nq).Int(nk).Int(h0))
		b.Gemm(engine.GemmParams{TransA: true, M: nk, N: dh, K: nq, Alpha: 1,
			A: s, StrideA: nq * nk,
			B: p.DO, OffB: h0 * nq * dh, StrideB: nq * dh,
			C: p.DV, OffC: h0 * nk * dh, StrideC: nk * dh, Batch: hc})
		b.Gemm(engine.GemmParams{TransB: true, M: nq, N: nk, K: dh, Alpha: 1,
			A: p.DO, OffA: h0 * nq * dh, StrideA: nq * dh,
			B: p.V, OffB: h0 * nk * dh, StrideB: nk * dh,
			C: dpb, StrideC: nq * nk, Batch: hc})
		b.launch("attn_bwd_ds_f32", rowLaunch(hc*nq), NewArgs(8).Ptr(dpp).Ptr(sp).Ptr(b.ptr(p.O, 0)).Ptr(b.ptr(p.DO, 0)).
			Int(nq).Int(nk).Int(dh).Int(h0))
		b.Gemm(engine.GemmParams{M: nq, N: dh, K: nk, Alpha: p.Scale,
			A: dpb, StrideA: nq * nk,
			B: p.K, OffB: h0 * nk * dh, StrideB: nk * dh,
			C: p.DQ, OffC: h0 * nq * dh, StrideC: nq * dh, Batch: hc})
		b.Gemm(engine.GemmParams{TransA: true, M: nk, N: dh, K: nq, Alpha: p.Scale,
			A: dpb, StrideA: nq * nk,
			B: p.Q, OffB: h0 * nq * dh, StrideB: nq * dh,
			C: p.DK, OffC: h0 * nk * dh, StrideC: nk * dh, Batch: hc})
	}
}

// uploadIDs copies embedding ids to a scratch block after checking them like the CPU backend.
func (b *Backend) uploadIDs(ids []int32, rows int) (uintptr, bool) {
	for i, id := range ids {
		if id < 0 || int(id) >= rows {
			panic(fmt.Sprintf("cuda: embedding id %d at %d outside [0,%d)", id, i, rows))
		}
	}
	p, ok := b.scratch(int64(len(ids)) * 4)
	if !ok {
		return 0, false
	}
	if err := cu.MemcpyHtoD(cu.DevicePtr(p), unsafePointer(ids), int64(len(ids))*4); err != nil {
		b.fail(fmt.Errorf("%w: cuMemcpyHtoD ids: %w", ErrDriver, err))
		b.release(p)
		return 0, false
	}
	return p, true
}

// Embedding implements engine.Backend.
func (b *Backend) Embedding(dst, table engine.Buffer, ids []int32, dim int) {
	must(checkLen("Embedding", "dst", b.length(dst), len(ids)*dim))
	if len(ids) == 0 || dim == 0 {
		return
	}
	defer b.enter()()
	p, ok := b.uploadIDs(ids, b.length(table)/dim)
	if !ok {
		return
	}
	defer b.release(p)
	b.launch("embedding_f32", flatLaunch(int64(len(ids))*int64(dim)), NewArgs(5).Ptr(b.ptr(dst, 0)).Ptr(b.ptr(table, 0)).Ptr(p).
		Int(len(ids)).Int(dim))
}

// EmbeddingBackward implements engine.Backend (one thread per column, ids in order).
func (b *Backend) EmbeddingBackward(dtable, dy engine.Buffer, ids []int32, dim int) {
	must(checkLen("EmbeddingBackward", "dy", b.length(dy), len(ids)*dim))
	if len(ids) == 0 || dim == 0 {
		return
	}
	defer b.enter()()
	p, ok := b.uploadIDs(ids, b.length(dtable)/dim)
	if !ok {
		return
	}
	defer b.release(p)
	b.launch("embedding_bwd_f32", flatLaunch(int64(dim)), NewArgs(5).Ptr(b.ptr(dtable, 0)).Ptr(b.ptr(dy, 0)).Ptr(p).
		Int(len(ids)).Int(dim))
}

// RandUniform implements engine.Backend with package philox's stream layout.
func (b *Backend) RandUniform(dst engine.Buffer, seed, offset uint64, lo, hi float32) {
	n := b.length(dst)
	defer b.enter()()
	b.launch("rand_uniform_f32", flatLaunch(int64((n+3)/4)), NewArgs(6).Ptr(b.ptr(dst, 0)).Int64(int64(n)).Uint64(seed).Uint64(offset).
		Float(lo).Float(hi))
}

// RandNormal implements engine.Backend with package philox's stream layout.
func (b *Backend) RandNormal(dst engine.Buffer, seed, offset uint64, mean, std float32) {
	n := b.length(dst)
	defer b.enter()()
	b.launch("rand_normal_f32", flatLaunch(int64((n+1)/2)), NewArgs(6).Ptr(b.ptr(dst, 0)).Int64(int64(n)).Uint64(seed).Uint64(offset).
		Float(mean).Float(std))
}

// AdamW applies one AdamW step to w in place on the device (the "adamw" formula of package
// optim: decay = 1 − lr·wd, stepSize = lr/bc1, sqrtBC2 = √bc2).
func (b *Backend) AdamW(w, g, m, v engine.Buffer, decay, beta1, beta2, eps, stepSize, sqrtBC2 float32) {
	n := b.length(w)
	for _, x := range []struct {
		name string
		buf  engine.Buffer
	}{{"grad", g}, {"m", m}, {"v", v}} {
		must(checkLen("AdamW", x.name, b.length(x.buf), n))
	}
	defer b.enter()()
	b.launch("adamw_f32", flatLaunch(int64(n)), NewArgs(11).Ptr(b.ptr(w, 0)).Ptr(b.ptr(g, 0)).Ptr(b.ptr(m, 0)).Ptr(b.ptr(v, 0)).
		Int64(int64(n)).Float(decay).Float(beta1).Float(beta2).Float(eps).Float(stepSize).Float(sqrtBC2))
}

// Lion applies one Lion step to w in place on the device (package optim's "optimi-lion").
func (b *Backend) Lion(w, g, m engine.Buffer, decay, lr, beta1, beta2 float32) {
	n := b.length(w)
	must(checkLen("Lion", "grad", b.length(g), n))
	must(checkLen("Lion", "m", b.length(m), n))
	defer b.enter()()
	b.launch("lion_f32", flatLaunch(int64(n)), NewArgs(8).Ptr(b.ptr(w, 0)).Ptr(b.ptr(g, 0)).Ptr(b.ptr(m, 0)).
		Int64(int64(n)).Float(decay).Float(lr).Float(beta1).Float(beta2))
}
