package engine

// shapeOf is t's shape for messages, nil for an absent optional operand.
func shapeOf(t *Tensor) []int {
	if t == nil {
		return nil
	}
	return t.shape
}

// Conv2D returns the 2-D cross-correlation of x [N,C,H,W] with w [O,C,KH,KW] plus b [O] (b may
// be nil), PyTorch's conv2d without dilation or groups; pad is {top, bottom, left, right}, so
// a VAE downsampler's "pad right and bottom by one, then stride 2" is one call. The result is
// [N,O,OH,OW] with OH = (H+top+bottom−KH)/stride+1 and OW likewise.
func (e *Engine) Conv2D(x, w, b *Tensor, stride int, pad [4]int) *Tensor {
	e.check(x, w, b)
	if x.Rank() != 4 || w.Rank() != 4 || x.shape[1] != w.shape[1] || (b != nil && (b.Rank() != 1 || b.shape[0] != w.shape[0])) {
		throwf(ErrShape, "conv2d: x %v, w %v, b %v", x.shape, w.shape, shapeOf(b))
	}
	n, c, h, wd := x.shape[0], x.shape[1], x.shape[2], x.shape[3]
	o, kh, kw := w.shape[0], w.shape[2], w.shape[3]
	if stride < 1 || min(pad[0], pad[1], pad[2], pad[3]) < 0 || kh < 1 || kw < 1 ||
		h+pad[0]+pad[1] < kh || wd+pad[2]+pad[3] < kw {
		throwf(ErrShape, "conv2d: x %v, w %v with stride %d and padding %v", x.shape, w.shape, stride, pad)
	}
	oh, ow := (h+pad[0]+pad[1]-kh)/stride+1, (wd+pad[2]+pad[3]-kw)/stride+1
	y := e.newTensor([]int{n, o, oh, ow})
	p := Conv2DParams{X: x.st.buf, W: w.st.buf, Y: y.st.buf, N: n, C: c, H: h, Wd: wd, O: o, KH: kh, KW: kw,
		Stride: stride, PadTop: pad[0], PadBottom: pad[1], PadLeft: pad[2], PadRight: pad[3]}
	if b != nil {
		p.Bias = b.st.buf
	}
	e.be.Conv2D(p)
	e.record(y, "conv2d", []*Tensor{x, w, b}, []*Tensor{x, w}, nil, func(nd *node, gy *Tensor) []*Tensor {
		grads := make([]*Tensor, 3)
		gp := Conv2DGradParams{Conv2DParams: p, DY: gy.st.buf}
		gp.Y, gp.Bias = nil, nil // the backward reads neither (and b is not saved)
		for i, dst := range []*Buffer{&gp.DX, &gp.DW, &gp.DBias} {
			if nd.needsGrad(i) {
				grads[i] = e.newGrad(nd.inputs[i].shape)
				*dst = grads[i].st.buf
			}
		}
		e.be.Conv2DBackward(gp)
		return grads
	})
	return y
}

// UpsampleNearest returns x [N,C,H,W] with every pixel repeated factor×factor times:
// [N,C,H·factor,W·factor] (PyTorch's interpolate with mode "nearest" and an integer scale).
func (e *Engine) UpsampleNearest(x *Tensor, factor int) *Tensor {
	e.check(x)
	if x.Rank() != 4 || factor < 1 {
		throwf(ErrShape, "upsample_nearest: x %v by factor %d, want [N,C,H,W] and factor ≥ 1", x.shape, factor)
	}
	nc, h, w := x.shape[0]*x.shape[1], x.shape[2], x.shape[3]
	y := e.newTensor([]int{x.shape[0], x.shape[1], h * factor, w * factor})
	e.be.UpsampleNearest(y.st.buf, x.st.buf, nc, h, w, factor)
	e.record(y, "upsample_nearest", []*Tensor{x}, nil, nil, func(_ *node, gy *Tensor) []*Tensor {
		g := e.newGrad(x.shape)
		e.be.UpsampleNearestBackward(g.st.buf, gy.st.buf, nc, h, w, factor)
		return []*Tensor{g}
	})
	return y
}
