package engine

// MatMul returns op(a)·op(b) over the last two dimensions, where op transposes when the flag is
// set. a is [..., M, K] ([..., K, M] with transA); b is either [..., K, N] with the same leading
// dimensions as a, or a 2-D matrix shared by every batch entry.
func (e *Engine) MatMul(a, b *Tensor, transA, transB bool) *Tensor {
	e.check(a, b)
	if a.Rank() < 2 || b.Rank() < 2 {
		throwf(ErrShape, "matmul of %v and %v: need rank ≥ 2", a.shape, b.shape)
	}
	ar, br := a.Rank(), b.Rank()
	m, k := a.shape[ar-2], a.shape[ar-1]
	if transA {
		m, k = k, m
	}
	kb, n := b.shape[br-2], b.shape[br-1]
	if transB {
		kb, n = n, kb
	}
	batchShape := a.shape[:ar-2]
	batch := numel(batchShape)
	shared := br == 2
	if k != kb || (!shared && (br != ar || !equalInts(b.shape[:br-2], batchShape))) {
		throwf(ErrShape, "matmul of %v (transA=%v) and %v (transB=%v)", a.shape, transA, b.shape, transB)
	}
	outShape := append(append([]int(nil), batchShape...), m, n)
	y := e.newTensor(outShape)
	ab, bb := a.st.buf, b.st.buf
	strideB := k * n
	if shared {
		strideB = 0
	}
	gemm := func(c Buffer, ta, tb bool, m, n, k int, x Buffer, sx int, w Buffer, sw int, sc int, beta float32) {
		e.be.Gemm(GemmParams{TransA: ta, TransB: tb, M: m, N: n, K: k, Alpha: 1, Beta: beta,
			A: x, B: w, C: c, Batch: batch, StrideA: sx, StrideB: sw, StrideC: sc})
	}
	if shared && !transA {
		// Fold the batch into M: one large GEMM instead of many small ones.
		e.be.Gemm(GemmParams{TransB: transB, M: batch * m, N: n, K: k, Alpha: 1, A: ab, B: bb, C: y.st.buf})
	} else {
		gemm(y.st.buf, transA, transB, m, n, k, ab, m*k, bb, strideB, m*n, 0)
	}
	e.record(y, "matmul", []*Tensor{a, b}, []*Tensor{a, b}, nil, func(nd *node, gy *Tensor) []*Tensor {
		grads := make([]*Tensor, 2)
		g := gy.st.buf
		if nd.needsGrad(0) {
			ga := e.newGrad(a.shape)
			switch {
			case !transA && shared:
				e.be.Gemm(GemmParams{TransB: !transB, M: batch * m, N: k, K: n, Alpha: 1, A: g, B: bb, C: ga.st.buf})
			case !transA:
				gemm(ga.st.buf, false, !transB, m, k, n, g, m*n, bb, strideB, m*k, 0)
			default:
				// a is [K,M]: dA = op(B)·dCᵀ.
				gemm(ga.st.buf, transB, true, k, m, n, bb, strideB, g, m*n, m*k, 0)
			}
			grads[0] = ga
		}
		if nd.needsGrad(1) {
			gb := e.newGrad(b.shape)
			bs := k * n
			if shared {
				bs = 0
			}
			switch {
			case shared && !transA && !transB:
				e.be.Gemm(GemmParams{TransA: true, M: k, N: n, K: batch * m, Alpha: 1, A: ab, B: g, C: gb.st.buf})
			case shared && !transA && transB:
				e.be.Gemm(GemmParams{TransA: true, M: n, N: k, K: batch * m, Alpha: 1, A: g, B: ab, C: gb.st.buf})
			case !transB:
				// dB = op(A)ᵀ·dC; with a shared B the batch entries accumulate (beta 1 on zeros).
				gemm(gb.st.buf, !transA, false, k, n, m, ab, m*k, g, m*n, bs, 1)
			default:
				// b is [N,K]: dB = dCᵀ·op(A).
				gemm(gb.st.buf, true, transA, n, k, m, g, m*n, ab, m*k, bs, 1)
			}
			grads[1] = gb
		}
		return grads
	})
	return y
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Linear returns x·Wᵀ + b for x [..., in], w [out, in] and b [out] (b may be nil). The bias is
// fused into the GEMM (C is preloaded with the bias and the GEMM runs with beta = 1).
func (e *Engine) Linear(x, w, b *Tensor) *Tensor { return e.LinearAct(x, w, b, ActNone) }

// LinearAct returns act(x·Wᵀ + b). For ActGELUTanh/ActSiLU the bias add and the activation
// run as one fused pass after the GEMM, and the pre-activation is kept for the backward pass.
func (e *Engine) LinearAct(x, w, b *Tensor, act Activation) *Tensor {
	e.check(x, w, b)
	if x.Rank() < 1 || w.Rank() != 2 || x.Dim(-1) != w.shape[1] || (b != nil && (b.Rank() != 1 || b.shape[0] != w.shape[0])) {
		var bs []int
		if b != nil {
			bs = b.shape
		}
		throwf(ErrShape, "linear: x %v, w %v, b %v", x.shape, w.shape, bs)
	}
	in, outF := w.shape[1], w.shape[0]
	rows := x.Numel() / in
	outShape := append(append([]int(nil), x.shape[:x.Rank()-1]...), outF)
	y := e.newTensor(outShape)
	xb, wb := x.st.buf, w.st.buf
	var bb Buffer
	if b != nil {
		bb = b.st.buf
	}
	var pre *Tensor // pre-activation x·Wᵀ (without bias); only for act != ActNone
	if act == ActNone {
		beta := float32(0)
		if b != nil {
			e.be.Expand(y.st.buf, bb, Shape3{Outer: 1, Mid: rows, Inner: outF}, SpanInner, 1)
			beta = 1
		}
		e.be.Gemm(GemmParams{TransB: true, M: rows, N: outF, K: in, Alpha: 1, Beta: beta, A: xb, B: wb, C: y.st.buf})
	} else {
		pre = e.newGrad([]int{rows, outF}) // unscoped: owned by the node (or freed below)
		e.be.Gemm(GemmParams{TransB: true, M: rows, N: outF, K: in, Alpha: 1, A: xb, B: wb, C: pre.st.buf})
		e.be.BiasAct(act, y.st.buf, pre.st.buf, bb, rows, outF)
	}
	var owned []*Tensor
	if pre != nil {
		owned = []*Tensor{pre}
	}
	e.record(y, "linear", []*Tensor{x, w, b}, []*Tensor{x, w}, owned, func(nd *node, gy *Tensor) []*Tensor {
		grads := make([]*Tensor, 3)
		g := gy.st.buf
		var gpre *Tensor
		if pre != nil {
			gpre = e.newGrad([]int{rows, outF})
			var db Buffer
			if nd.needsGrad(2) {
				grads[2] = e.newGrad([]int{outF})
				db = grads[2].st.buf
			}
			e.be.BiasActBackward(act, gpre.st.buf, db, pre.st.buf, bb, g, rows, outF)
			g = gpre.st.buf
		} else if nd.needsGrad(2) {
			grads[2] = e.reduceTo(g, Shape3{Outer: 1, Mid: rows, Inner: outF}, SpanInner, []int{outF}, 1)
		}
		if nd.needsGrad(0) {
			grads[0] = e.newGrad(x.shape)
			e.be.Gemm(GemmParams{M: rows, N: in, K: outF, Alpha: 1, A: g, B: wb, C: grads[0].st.buf})
		}
		if nd.needsGrad(1) {
			grads[1] = e.newGrad(w.shape)
			e.be.Gemm(GemmParams{TransA: true, M: outF, N: in, K: rows, Alpha: 1, A: g, B: xb, C: grads[1].st.buf})
		}
		if gpre != nil {
			gpre.Free()
		}
		return grads
	})
	return y
}
