package engine

import "math"

// Attention is fused multi-head scaled dot-product attention. q is [B,H,Nq,Dh]; k and v are
// [B,H,Nk,Dh] (Nk ≠ Nq for cross-attention); mask is nil or [B,Nk] with 1 for real keys and 0
// for padding (it never receives a gradient). scale ≤ 0 means 1/√Dh. The result is [B,H,Nq,Dh].
// The backward pass recomputes the probabilities from the saved log-sum-exp instead of storing
// the [Nq,Nk] matrix.
func (e *Engine) Attention(q, k, v, mask *Tensor, scale float32) *Tensor {
	e.check(q, k, v, mask)
	if q.Rank() != 4 || k.Rank() != 4 || !equalInts(k.shape, v.shape) ||
		q.shape[0] != k.shape[0] || q.shape[1] != k.shape[1] || q.shape[3] != k.shape[3] {
		throwf(ErrShape, "attention: q %v, k %v, v %v", q.shape, k.shape, v.shape)
	}
	bsz, h, nq, dh := q.shape[0], q.shape[1], q.shape[2], q.shape[3]
	nk := k.shape[2]
	var mb Buffer
	if mask != nil {
		if mask.Numel() != bsz*nk {
			throwf(ErrShape, "attention: mask %v, want [%d %d]", mask.shape, bsz, nk)
		}
		mb = mask.st.buf
	}
	if scale <= 0 {
		scale = float32(1 / math.Sqrt(float64(dh)))
	}
	y := e.newTensor(q.shape)
	lse := e.newGrad([]int{bsz, h, nq})
	p := AttentionParams{Q: q.st.buf, K: k.st.buf, V: v.st.buf, O: y.st.buf, LSE: lse.st.buf, Mask: mb,
		B: bsz, H: h, Nq: nq, Nk: nk, Dh: dh, Scale: scale}
	e.be.Attention(p)
	saved := []*Tensor{q, k, v, y}
	if mask != nil {
		saved = append(saved, mask)
	}
	e.record(y, "attention", []*Tensor{q, k, v}, saved, []*Tensor{lse}, func(nd *node, gy *Tensor) []*Tensor {
		dq, dk, dv := e.newGrad(q.shape), e.newGrad(k.shape), e.newGrad(v.shape)
		e.be.AttentionBackward(AttentionGradParams{AttentionParams: p, DO: gy.st.buf, DQ: dq.st.buf, DK: dk.st.buf, DV: dv.st.buf})
		grads := []*Tensor{dq, dk, dv}
		for i, g := range grads {
			if !nd.needsGrad(i) {
				g.Free()
				grads[i] = nil
			}
		}
		return grads
	})
	return y
}
