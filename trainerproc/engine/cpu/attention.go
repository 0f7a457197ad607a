package cpu

import (
	"math"

	"simpletuner/trainerproc/engine"
)

// attnScratchElems bounds the scratch score matrix: heads are processed in chunks whose
// [chunk, Nq, Nk] scores fit, so memory stays bounded for long sequences.
const attnScratchElems = 1 << 22

// attnChunk returns how many (batch, head) pairs are processed together.
func (b *Backend[T]) attnChunk(bh, nq, nk int) int {
	return max(1, min(bh, b.attnScratch/max(1, nq*nk)))
}

// Attention implements engine.Backend. Per chunk of heads: S = scale·QKᵀ (batched GEMM), a
// masked softmax in place that also records the log-sum-exp, then O = P·V (batched GEMM). The
// probabilities never leave the scratch buffer.
func (b *Backend[T]) Attention(p engine.AttentionParams) {
	q, k, v, o, lse := Data[T](p.Q), Data[T](p.K), Data[T](p.V), Data[T](p.O), Data[T](p.LSE)
	mask := Data[T](p.Mask)
	bh := p.B * p.H
	nq, nk, dh := p.Nq, p.Nk, p.Dh
	mustLen("Attention Q", len(q), bh*nq*dh)
	mustLen("Attention K", len(k), bh*nk*dh)
	mustLen("Attention V", len(v), bh*nk*dh)
	mustLen("Attention O", len(o), bh*nq*dh)
	mustLen("Attention LSE", len(lse), bh*nq)
	if mask != nil {
		mustLen("Attention mask", len(mask), p.B*nk)
	}
	chunk := b.attnChunk(bh, nq, nk)
	s, done := b.scratch(chunk * nq * nk)
	defer done()
	sb := &Buffer[T]{data: s}
	for h0 := 0; h0 < bh; h0 += chunk {
		hc := min(chunk, bh-h0)
		b.Gemm(engine.GemmParams{TransB: true, M: nq, N: nk, K: dh, Alpha: p.Scale,
			A: p.Q, OffA: h0 * nq * dh, StrideA: nq * dh,
			B: p.K, OffB: h0 * nk * dh, StrideB: nk * dh,
			C: sb, StrideC: nq * nk, Batch: hc})
		b.pool.rangeFor(hc*nq, grainFor(nk*4), func(lo, hi int) {
			for r := lo; r < hi; r++ {
				head := h0 + r/nq
				row := s[r*nk : (r+1)*nk]
				if mask != nil {
					mrow := mask[(head/p.H)*nk : (head/p.H+1)*nk]
					for j := range row {
						if mrow[j] == 0 {
							row[j] = T(math.Inf(-1))
						}
					}
				}
				lse[head*nq+r%nq] = T(softmaxRow(row, row))
			}
		})
		b.Gemm(engine.GemmParams{M: nq, N: dh, K: nk, Alpha: 1,
			A: sb, StrideA: nq * nk,
			B: p.V, OffB: h0 * nk * dh, StrideB: nk * dh,
			C: p.O, OffC: h0 * nq * dh, StrideC: nq * dh, Batch: hc})
	}
}

// AttentionBackward implements engine.Backend. It recomputes P = exp(scale·QKᵀ - LSE) (no
// stored probabilities), then dV = Pᵀ·dO, dP = dO·Vᵀ, dS = P⊙(dP - rowsum(dO⊙O)),
// dQ = scale·dS·K and dK = scale·dSᵀ·Q.
func (b *Backend[T]) AttentionBackward(p engine.AttentionGradParams) {
	lse, mask := Data[T](p.LSE), Data[T](p.Mask)
	o, do := Data[T](p.O), Data[T](p.DO)
	bh := p.B * p.H
	nq, nk, dh := p.Nq, p.Nk, p.Dh
	mustLen("AttentionBackward dO", len(do), bh*nq*dh)
	mustLen("AttentionBackward dQ", len(Data[T](p.DQ)), bh*nq*dh)
	mustLen("AttentionBackward dK", len(Data[T](p.DK)), bh*nk*dh)
	mustLen("AttentionBackward dV", len(Data[T](p.DV)), bh*nk*dh)
	chunk := b.attnChunk(bh, nq, nk)
	s, doneS := b.scratch(chunk * nq * nk)
	defer doneS()
	dp, doneDP := b.scratch(chunk * nq * nk)
	defer doneDP()
	sb, dpb := &Buffer[T]{data: s}, &Buffer[T]{data: dp}
	for h0 := 0; h0 < bh; h0 += chunk {
		hc := min(chunk, bh-h0)
		b.Gemm(engine.GemmParams{TransB: true, M: nq, N: nk, K: dh, Alpha: p.Scale,
			A: p.Q, OffA: h0 * nq * dh, StrideA: nq * dh,
			B: p.K, OffB: h0 * nk * dh, StrideB: nk * dh,
			C: sb, StrideC: nq * nk, Batch: hc})
		b.pool.rangeFor(hc*nq, grainFor(nk*2), func(lo, hi int) {
			for r := lo; r < hi; r++ {
				head := h0 + r/nq
				l := float64(lse[head*nq+r%nq])
				row := s[r*nk : (r+1)*nk]
				var mrow []T
				if mask != nil {
					mrow = mask[(head/p.H)*nk : (head/p.H+1)*nk]
				}
				for j := range row {
					if mrow != nil && mrow[j] == 0 {
						row[j] = 0
						continue
					}
					row[j] = T(math.Exp(float64(row[j]) - l))
				}
			}
		})
		// dV = Pᵀ·dO
		b.Gemm(engine.GemmParams{TransA: true, M: nk, N: dh, K: nq, Alpha: 1,
			A: sb, StrideA: nq * nk,
			B: p.DO, OffB: h0 * nq * dh, StrideB: nq * dh,
			C: p.DV, OffC: h0 * nk * dh, StrideC: nk * dh, Batch: hc})
		// dP = dO·Vᵀ
		b.Gemm(engine.GemmParams{TransB: true, M: nq, N: nk, K: dh, Alpha: 1,
			A: p.DO, OffA: h0 * nq * dh, StrideA: nq * dh,
			B: p.V, OffB: h0 * nk * dh, StrideB: nk * dh,
			C: dpb, StrideC: nq * nk, Batch: hc})
		b.pool.rangeFor(hc*nq, grainFor(nk*2), func(lo, hi int) {
			for r := lo; r < hi; r++ {
				qi := (h0*nq + r) * dh
				var di float64
				for c := 0; c < dh; c++ {
					di += float64(do[qi+c]) * float64(o[qi+c])
				}
				pr, dr := s[r*nk:(r+1)*nk], dp[r*nk:(r+1)*nk]
				for j := range dr {
					dr[j] = T(float64(pr[j]) * (float64(dr[j]) - di))
				}
			}
		})
		// dQ = scale·dS·K
		b.Gemm(engine.GemmParams{M: nq, N: dh, K: nk, Alpha: p.Scale,
			A: dpb, StrideA: nq * nk,
			B: p.K, OffB: h0 * nk * dh, StrideB: nk * dh,
			C: p.DQ, OffC: h0 * nq * dh, StrideC: nq * dh, Batch: hc})
		// dK = scale·dSᵀ·Q
		b.Gemm(engine.GemmParams{TransA: true, M: nk, N: dh, K: nq, Alpha: p.Scale,
			A: dpb, StrideA: nq * nk,
			B: p.Q, OffB: h0 * nq * dh, StrideB: nq * dh,
			C: p.DK, OffC: h0 * nk * dh, StrideC: nk * dh, Batch: hc})
	}
}

// AttentionWorkspace implements engine.Workspacer: one chunk of scores forward, scores and
// their gradient backward (see attnChunk).
func (b *Backend[T]) AttentionWorkspace(bsz, h, nq, nk, _ int, backward bool) int64 {
	n := int64(b.attnChunk(bsz*h, nq, nk)) * int64(nq) * int64(nk) * b.elemSize
	if backward {
		return 2 * n
	}
	return n
}
