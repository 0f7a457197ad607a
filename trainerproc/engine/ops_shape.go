package engine

// Reshape returns a view of x with a new shape (one dimension may be -1). The view shares x's
// buffer: no copy is made, and the buffer lives until every view is freed.
func (e *Engine) Reshape(x *Tensor, shape ...int) *Tensor {
	e.check(x)
	shape = append([]int(nil), shape...)
	infer, known := -1, 1
	for i, d := range shape {
		if d == -1 {
			if infer >= 0 {
				throwf(ErrShape, "reshape %v to %v: more than one -1", x.shape, shape)
			}
			infer = i
			continue
		}
		known *= d
	}
	if infer >= 0 && known > 0 {
		shape[infer] = x.Numel() / known
	}
	if numel(shape) != x.Numel() {
		throwf(ErrShape, "reshape %v to %v", x.shape, shape)
	}
	y := x.view(shape)
	e.record(y, "reshape", []*Tensor{x}, nil, nil, func(_ *node, gy *Tensor) []*Tensor {
		return []*Tensor{gy.gradView(x.shape)}
	})
	return y
}

// Permute returns a contiguous copy of x with dimensions reordered: output dimension i is
// input dimension perm[i].
func (e *Engine) Permute(x *Tensor, perm ...int) *Tensor {
	e.check(x)
	if len(perm) != x.Rank() {
		throwf(ErrShape, "permute %v by %v", x.shape, perm)
	}
	seen := make([]bool, len(perm))
	out := make([]int, len(perm))
	inv := make([]int, len(perm))
	for i, p := range perm {
		p = normAxis(p, x.Rank())
		if seen[p] {
			throwf(ErrShape, "permute %v by %v: repeated axis", x.shape, perm)
		}
		seen[p] = true
		perm[i] = p
		out[i] = x.shape[p]
		inv[p] = i
	}
	perm = append([]int(nil), perm...)
	y := e.newTensor(out)
	e.be.Permute(y.st.buf, x.st.buf, x.shape, perm)
	e.record(y, "permute", []*Tensor{x}, nil, nil, func(_ *node, gy *Tensor) []*Tensor {
		g := e.newGrad(x.shape)
		e.be.Permute(g.st.buf, gy.st.buf, out, inv)
		return []*Tensor{g}
	})
	return y
}

// Transpose swaps two dimensions (a contiguous copy).
func (e *Engine) Transpose(x *Tensor, a, b int) *Tensor {
	perm := make([]int, x.Rank())
	for i := range perm {
		perm[i] = i
	}
	a, b = normAxis(a, x.Rank()), normAxis(b, x.Rank())
	perm[a], perm[b] = perm[b], perm[a]
	return e.Permute(x, perm...)
}

// axisGeometry returns (outer, axis size, inner) for axis of shape.
func axisGeometry(shape []int, axis int) (outer, size, inner int) {
	return numel(shape[:axis]), shape[axis], numel(shape[axis+1:])
}

// Concat joins tensors along axis; all other dimensions must match.
func (e *Engine) Concat(axis int, ts ...*Tensor) *Tensor {
	if len(ts) == 0 {
		throwf(ErrShape, "concat of nothing")
	}
	e.check(ts...)
	axis = normAxis(axis, ts[0].Rank())
	out := ts[0].Shape()
	out[axis] = 0
	for _, t := range ts {
		for d := range out {
			if t.Rank() != len(out) || (d != axis && t.shape[d] != out[d]) {
				throwf(ErrShape, "concat along %d: %v vs %v", axis, ts[0].shape, t.shape)
			}
		}
		out[axis] += t.shape[axis]
	}
	y := e.newTensor(out)
	outer, total, inner := axisGeometry(out, axis)
	offs := make([]int, len(ts))
	off := 0
	for i, t := range ts {
		offs[i] = off
		cols := t.shape[axis] * inner
		e.be.Copy2D(y.st.buf, off, total*inner, t.st.buf, 0, cols, outer, cols)
		off += cols
	}
	shapes := make([][]int, len(ts))
	for i, t := range ts {
		shapes[i] = t.Shape()
	}
	e.record(y, "concat", ts, nil, nil, func(nd *node, gy *Tensor) []*Tensor {
		grads := make([]*Tensor, len(ts))
		for i := range ts {
			if !nd.needsGrad(i) {
				continue
			}
			g := e.newGrad(shapes[i])
			cols := shapes[i][axis] * inner
			e.be.Copy2D(g.st.buf, 0, cols, gy.st.buf, offs[i], total*inner, outer, cols)
			grads[i] = g
		}
		return grads
	})
	return y
}

// Slice returns the contiguous copy x[..., start:start+length, ...] along axis.
func (e *Engine) Slice(x *Tensor, axis, start, length int) *Tensor {
	e.check(x)
	axis = normAxis(axis, x.Rank())
	if start < 0 || length < 0 || start+length > x.shape[axis] {
		throwf(ErrShape, "slice [%d:%d] of axis %d of %v", start, start+length, axis, x.shape)
	}
	out := x.Shape()
	out[axis] = length
	outer, total, inner := axisGeometry(x.shape, axis)
	cols := length * inner
	y := e.newTensor(out)
	e.be.Copy2D(y.st.buf, 0, cols, x.st.buf, start*inner, total*inner, outer, cols)
	e.record(y, "slice", []*Tensor{x}, nil, nil, func(_ *node, gy *Tensor) []*Tensor {
		g := e.newGrad(x.shape) // zero outside the slice
		e.be.Copy2D(g.st.buf, start*inner, total*inner, gy.st.buf, 0, cols, outer, cols)
		return []*Tensor{g}
	})
	return y
}

// Split cuts x along axis into pieces of the given sizes (which must add up to the axis size).
func (e *Engine) Split(x *Tensor, axis int, sizes ...int) []*Tensor {
	axis = normAxis(axis, x.Rank())
	total := 0
	for _, s := range sizes {
		total += s
	}
	if total != x.shape[axis] {
		throwf(ErrShape, "split of axis %d of %v into %v", axis, x.shape, sizes)
	}
	out := make([]*Tensor, len(sizes))
	start := 0
	for i, s := range sizes {
		out[i] = e.Slice(x, axis, start, s)
		start += s
	}
	return out
}

// Chunk splits x along axis into n equal pieces (adaLN-single's six modulation vectors).
func (e *Engine) Chunk(x *Tensor, n, axis int) []*Tensor {
	axis = normAxis(axis, x.Rank())
	if n <= 0 || x.shape[axis]%n != 0 {
		throwf(ErrShape, "chunk of axis %d of %v into %d", axis, x.shape, n)
	}
	sizes := make([]int, n)
	for i := range sizes {
		sizes[i] = x.shape[axis] / n
	}
	return e.Split(x, axis, sizes...)
}
