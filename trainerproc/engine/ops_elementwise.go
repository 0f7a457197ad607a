package engine

// Elementwise binary ops broadcast numpy-style (trailing dimensions aligned, size-1 or missing
// dimensions repeated). Patterns that fold into three runs (see plan3: bias, per-row,
// per-sample, scalar) run as one kernel; others materialise the broadcast first.

// Add returns a+b.
func (e *Engine) Add(a, b *Tensor) *Tensor { return e.binary(OpAdd, "add", a, b) }

// Sub returns a-b.
func (e *Engine) Sub(a, b *Tensor) *Tensor { return e.binary(OpSub, "sub", a, b) }

// Mul returns a*b elementwise.
func (e *Engine) Mul(a, b *Tensor) *Tensor { return e.binary(OpMul, "mul", a, b) }

// Div returns a/b elementwise.
func (e *Engine) Div(a, b *Tensor) *Tensor { return e.binary(OpDiv, "div", a, b) }

func (e *Engine) binary(op BinaryOp, name string, a, b *Tensor) *Tensor {
	e.check(a, b)
	out, pa, pb, ok := broadcastShapes(a.shape, b.shape)
	if !ok {
		throwf(ErrShape, "%s: shapes %v and %v do not broadcast", name, a.shape, b.shape)
	}
	s, spans, ok := plan3(out, [][]bool{pa, pb})
	if !ok {
		// Too irregular for one kernel: materialise the broadcasts, then combine full tensors.
		sc := e.Scope()
		y := sc.Keep(e.binary(op, name, e.BroadcastTo(a, out...), e.BroadcastTo(b, out...)))
		sc.Close()
		return y
	}
	sa, sb := spans[0], spans[1]
	y := e.newTensor(out)
	ab, bb := a.st.buf, b.st.buf
	e.be.Binary(op, y.st.buf, ab, bb, s, sa, sb)
	ashape, bshape := a.Shape(), b.Shape()
	var saved []*Tensor
	switch op {
	case OpMul:
		saved = []*Tensor{a, b}
	case OpDiv:
		saved = []*Tensor{b, y}
	}
	yb := y.st.buf
	e.record(y, name, []*Tensor{a, b}, saved, nil, func(n *node, gy *Tensor) []*Tensor {
		grads := make([]*Tensor, 2)
		switch op {
		case OpAdd, OpSub:
			if n.needsGrad(0) {
				grads[0] = e.reduceTo(gy.st.buf, s, sa, ashape, 1)
			}
			if n.needsGrad(1) {
				alpha := float32(1)
				if op == OpSub {
					alpha = -1
				}
				grads[1] = e.reduceTo(gy.st.buf, s, sb, bshape, alpha)
			}
		case OpMul:
			if n.needsGrad(0) {
				grads[0] = e.productReduce(gy.st.buf, bb, s, sb, sa, ashape, 1)
			}
			if n.needsGrad(1) {
				grads[1] = e.productReduce(gy.st.buf, ab, s, sa, sb, bshape, 1)
			}
		case OpDiv:
			if n.needsGrad(0) {
				t := e.newGrad(out)
				e.be.Binary(OpDiv, t.st.buf, gy.st.buf, bb, s, SpanAll, sb)
				grads[0] = e.reduceTo(t.st.buf, s, sa, ashape, 1)
				t.Free()
			}
			if n.needsGrad(1) {
				// d(a/b)/db = -y/b.
				t := e.newGrad(out)
				e.be.Binary(OpMul, t.st.buf, gy.st.buf, yb, s, SpanAll, SpanAll)
				e.be.Binary(OpDiv, t.st.buf, t.st.buf, bb, s, SpanAll, sb)
				grads[1] = e.reduceTo(t.st.buf, s, sb, bshape, -1)
				t.Free()
			}
		}
		return grads
	})
	return y
}

// reduceTo sums a full [s] gradient over the dimensions span leaves out, into a new gradient
// tensor of the given shape.
func (e *Engine) reduceTo(full Buffer, s Shape3, span Span, shape []int, alpha float32) *Tensor {
	g := e.newGrad(shape)
	e.be.Reduce(g.st.buf, full, s, span, alpha)
	return g
}

// productReduce returns reduceTo(gy ⊙ other) where other has span otherSpan.
func (e *Engine) productReduce(gy, other Buffer, s Shape3, otherSpan, span Span, shape []int, alpha float32) *Tensor {
	t := e.newGrad([]int{s.Size()})
	e.be.Binary(OpMul, t.st.buf, gy, other, s, SpanAll, otherSpan)
	g := e.reduceTo(t.st.buf, s, span, shape, alpha)
	t.Free()
	return g
}

// Affine returns alpha·x + beta.
func (e *Engine) Affine(x *Tensor, alpha, beta float32) *Tensor {
	e.check(x)
	y := e.newTensor(x.shape)
	e.be.Affine(y.st.buf, x.st.buf, alpha, beta)
	e.record(y, "affine", []*Tensor{x}, nil, nil, func(_ *node, gy *Tensor) []*Tensor {
		g := e.newGrad(x.shape)
		e.be.Affine(g.st.buf, gy.st.buf, alpha, 0)
		return []*Tensor{g}
	})
	return y
}

// Scale returns alpha·x.
func (e *Engine) Scale(x *Tensor, alpha float32) *Tensor { return e.Affine(x, alpha, 0) }

// AddScalar returns x + beta.
func (e *Engine) AddScalar(x *Tensor, beta float32) *Tensor { return e.Affine(x, 1, beta) }

// Neg returns -x.
func (e *Engine) Neg(x *Tensor) *Tensor { return e.Affine(x, -1, 0) }

// BroadcastTo returns x repeated numpy-style to shape (a copy). Each broadcast dimension is one
// Expand kernel; the gradient sums over the repeated dimensions.
func (e *Engine) BroadcastTo(x *Tensor, shape ...int) *Tensor {
	e.check(x)
	if len(shape) < x.Rank() {
		throwf(ErrShape, "broadcast %v to %v", x.shape, shape)
	}
	cur := make([]int, len(shape))
	for i := range cur {
		cur[i] = 1
	}
	copy(cur[len(shape)-x.Rank():], x.shape)
	sc := e.Scope()
	y := e.Reshape(x, cur...)
	for d := range shape {
		if cur[d] == shape[d] {
			continue
		}
		if cur[d] != 1 {
			sc.Close()
			throwf(ErrShape, "broadcast %v to %v", x.shape, shape)
		}
		y = e.expandDim(y, d, shape[d])
	}
	y = sc.Keep(e.Reshape(y, shape...))
	sc.Close()
	return y
}

// expandDim repeats size-1 dimension d of x n times.
func (e *Engine) expandDim(x *Tensor, d, n int) *Tensor {
	out := x.Shape()
	out[d] = n
	s := Shape3{Outer: numel(x.shape[:d]), Mid: n, Inner: numel(x.shape[d+1:])}
	y := e.newTensor(out)
	e.be.Expand(y.st.buf, x.st.buf, s, SpanOuter|SpanInner, 1)
	e.record(y, "expand", []*Tensor{x}, nil, nil, func(_ *node, gy *Tensor) []*Tensor {
		return []*Tensor{e.reduceTo(gy.st.buf, s, SpanOuter|SpanInner, x.shape, 1)}
	})
	return y
}
