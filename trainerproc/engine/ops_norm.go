package engine

// LayerNorm normalises x over its last axis (size D) and applies the optional elementwise
// affine transform: w and b are [D] or nil (PixArt's norm1/norm2 have no affine parameters).
func (e *Engine) LayerNorm(x, w, b *Tensor, eps float32) *Tensor {
	e.check(x, w, b)
	d := x.Dim(-1)
	for _, p := range []*Tensor{w, b} {
		if p != nil && (p.Rank() != 1 || p.shape[0] != d) {
			throwf(ErrShape, "layernorm: x %v with parameter %v", x.shape, p.shape)
		}
	}
	return e.layerNorm("layernorm", x, w, b, x.Numel()/max(d, 1), d, 1, 0, eps)
}

// LayerNormModulate fuses a parameter-free layer norm with adaLN modulation:
//
//	y[b,n,:] = LN(x[b,n,:])·(1 + scale[b,:]) + shift[b,:]
//
// for x [B, N, D] and scale, shift [B, D] (either may be nil).
func (e *Engine) LayerNormModulate(x, scale, shift *Tensor, eps float32) *Tensor {
	e.check(x, scale, shift)
	if x.Rank() != 3 {
		throwf(ErrShape, "layernorm_modulate: x %v, want [B,N,D]", x.shape)
	}
	bsz, n, d := x.shape[0], x.shape[1], x.shape[2]
	for _, p := range []*Tensor{scale, shift} {
		if p != nil && !equalInts(p.shape, []int{bsz, d}) {
			throwf(ErrShape, "layernorm_modulate: x %v with modulation %v, want [%d %d]", x.shape, p.shape, bsz, d)
		}
	}
	return e.layerNorm("layernorm_modulate", x, scale, shift, bsz*n, d, bsz, 1, eps)
}

func (e *Engine) layerNorm(name string, x, w, b *Tensor, rows, cols, groups int, off, eps float32) *Tensor {
	y := e.newTensor(x.shape)
	mean, rstd := e.newGrad([]int{rows}), e.newGrad([]int{rows})
	var wb, bb Buffer
	if w != nil {
		wb = w.st.buf
	}
	if b != nil {
		bb = b.st.buf
	}
	xb := x.st.buf
	e.be.LayerNorm(LayerNormParams{X: xb, Y: y.st.buf, Weight: wb, Bias: bb, Mean: mean.st.buf, Rstd: rstd.st.buf,
		Rows: rows, Cols: cols, Groups: groups, WeightOffset: off, Eps: eps})
	saved := []*Tensor{x}
	if w != nil {
		saved = append(saved, w)
	}
	e.record(y, name, []*Tensor{x, w, b}, saved, []*Tensor{mean, rstd}, func(nd *node, gy *Tensor) []*Tensor {
		grads := make([]*Tensor, 3)
		grads[0] = e.newGrad(x.shape) // the kernel always produces dx
		p := LayerNormGradParams{X: xb, Weight: wb, Mean: mean.st.buf, Rstd: rstd.st.buf, DY: gy.st.buf,
			DX: grads[0].st.buf, Rows: rows, Cols: cols, Groups: groups, WeightOffset: off}
		if nd.needsGrad(1) {
			grads[1] = e.newGrad(w.shape)
			p.DWeight = grads[1].st.buf
		}
		if nd.needsGrad(2) {
			grads[2] = e.newGrad(b.shape)
			p.DBias = grads[2].st.buf
		}
		e.be.LayerNormBackward(p)
		if !nd.needsGrad(0) {
			grads[0].Free()
			grads[0] = nil
		}
		return grads
	})
	return y
}

// GroupNorm normalises x [N,C,...] (any number of trailing spatial dimensions) over groups of
// C/groups channels and all their positions, then applies the per-channel affine transform
// w, b ([C] or nil): the VAE's normalisation.
func (e *Engine) GroupNorm(x *Tensor, groups int, w, b *Tensor, eps float32) *Tensor {
	e.check(x, w, b)
	if x.Rank() < 2 || groups < 1 || x.shape[1]%groups != 0 {
		throwf(ErrShape, "groupnorm: x %v in %d groups", x.shape, groups)
	}
	n, c := x.shape[0], x.shape[1]
	hw := numel(x.shape[2:])
	for _, p := range []*Tensor{w, b} {
		if p != nil && (p.Rank() != 1 || p.shape[0] != c) {
			throwf(ErrShape, "groupnorm: x %v with parameter %v", x.shape, p.shape)
		}
	}
	y := e.newTensor(x.shape)
	mean, rstd := e.newGrad([]int{n, groups}), e.newGrad([]int{n, groups})
	p := GroupNormParams{X: x.st.buf, Y: y.st.buf, Mean: mean.st.buf, Rstd: rstd.st.buf, N: n, C: c, HW: hw, Groups: groups, Eps: eps}
	saved := []*Tensor{x}
	if w != nil {
		p.Weight = w.st.buf
		saved = append(saved, w)
	}
	if b != nil {
		p.Bias = b.st.buf
	}
	e.be.GroupNorm(p)
	e.record(y, "groupnorm", []*Tensor{x, w, b}, saved, []*Tensor{mean, rstd}, func(nd *node, gy *Tensor) []*Tensor {
		grads := make([]*Tensor, 3)
		grads[0] = e.newGrad(x.shape) // the kernel always produces dx
		gp := GroupNormGradParams{X: p.X, Weight: p.Weight, Mean: p.Mean, Rstd: p.Rstd, DY: gy.st.buf,
			DX: grads[0].st.buf, N: n, C: c, HW: hw, Groups: groups}
		if nd.needsGrad(1) {
			grads[1] = e.newGrad(w.shape)
			gp.DWeight = grads[1].st.buf
		}
		if nd.needsGrad(2) {
			grads[2] = e.newGrad(b.shape)
			gp.DBias = grads[2].st.buf
		}
		e.be.GroupNormBackward(gp)
		if !nd.needsGrad(0) {
			grads[0].Free()
			grads[0] = nil
		}
		return grads
	})
	return y
}

// RMSNorm scales x by the reciprocal root mean square of its last axis (size D) and by w ([D]
// or nil), with no mean subtraction and no bias: T5's layer norm.
func (e *Engine) RMSNorm(x, w *Tensor, eps float32) *Tensor {
	e.check(x, w)
	if x.Rank() < 1 || (w != nil && (w.Rank() != 1 || w.shape[0] != x.Dim(-1))) {
		throwf(ErrShape, "rmsnorm: x %v with weight %v", x.shape, shapeOf(w))
	}
	d := x.Dim(-1)
	rows := x.Numel() / max(d, 1)
	y := e.newTensor(x.shape)
	rstd := e.newGrad([]int{rows})
	p := RMSNormParams{X: x.st.buf, Y: y.st.buf, Rstd: rstd.st.buf, Rows: rows, Cols: d, Eps: eps}
	saved := []*Tensor{x}
	if w != nil {
		p.Weight = w.st.buf
		saved = append(saved, w)
	}
	e.be.RMSNorm(p)
	e.record(y, "rmsnorm", []*Tensor{x, w}, saved, []*Tensor{rstd}, func(nd *node, gy *Tensor) []*Tensor {
		grads := make([]*Tensor, 2)
		grads[0] = e.newGrad(x.shape) // the kernel always produces dx
		gp := RMSNormGradParams{X: p.X, Weight: p.Weight, Rstd: p.Rstd, DY: gy.st.buf, DX: grads[0].st.buf, Rows: rows, Cols: d}
		if nd.needsGrad(1) {
			grads[1] = e.newGrad(w.shape)
			gp.DWeight = grads[1].st.buf
		}
		e.be.RMSNormBackward(gp)
		if !nd.needsGrad(0) {
			grads[0].Free()
			grads[0] = nil
		}
		return grads
	})
	return y
}
