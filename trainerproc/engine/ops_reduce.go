package engine

// SumAll returns the sum of all elements as a tensor of shape [1].
func (e *Engine) SumAll(x *Tensor) *Tensor { return e.reduceAxes("sum", x, false, 1, allAxes(x)) }

// MeanAll returns the mean of all elements as a tensor of shape [1].
func (e *Engine) MeanAll(x *Tensor) *Tensor {
	return e.reduceAxes("mean", x, false, 1/float32(max(x.Numel(), 1)), allAxes(x))
}

// Sum sums over the given axes (negative axes count from the end). With keepDims the reduced
// axes stay as size 1. Any axis set works; patterns that interleave reduced and kept axes more
// than twice run as two kernels.
func (e *Engine) Sum(x *Tensor, keepDims bool, axes ...int) *Tensor {
	return e.reduceAxes("sum", x, keepDims, 1, axes)
}

// Mean averages over the given axes.
func (e *Engine) Mean(x *Tensor, keepDims bool, axes ...int) *Tensor {
	n := 1
	for _, a := range axes {
		n *= x.Dim(normAxis(a, x.Rank()))
	}
	return e.reduceAxes("mean", x, keepDims, 1/float32(max(n, 1)), axes)
}

func allAxes(x *Tensor) []int {
	axes := make([]int, x.Rank())
	for i := range axes {
		axes[i] = i
	}
	return axes
}

func (e *Engine) reduceAxes(name string, x *Tensor, keepDims bool, alpha float32, axes []int) *Tensor {
	e.check(x)
	reduced := make([]bool, x.Rank())
	for _, a := range axes {
		reduced[normAxis(a, x.Rank())] = true
	}
	kept := make([]bool, x.Rank())
	full := make([]bool, x.Rank())
	var outShape []int
	for d, n := range x.shape {
		full[d] = true
		kept[d] = !reduced[d]
		switch {
		case !reduced[d]:
			outShape = append(outShape, n)
		case keepDims:
			outShape = append(outShape, 1)
		}
	}
	if len(outShape) == 0 {
		outShape = []int{1}
	}
	s, spans, ok := plan3(x.shape, [][]bool{full, kept})
	if !ok {
		// Reduced and kept axes interleave more than the kernel's three runs allow: sum the
		// last reduced axis first (keeping it as size 1, which folds away), then the rest.
		last := -1
		var all []int
		for d := range reduced {
			if reduced[d] {
				last = d
				all = append(all, d)
			}
		}
		sc := e.Scope()
		part := e.reduceAxes("sum", x, true, 1, []int{last})
		y := sc.Keep(e.reduceAxes(name, part, keepDims, alpha, all))
		sc.Close()
		return y
	}
	span := spans[1]
	y := e.newTensor(outShape)
	e.be.Reduce(y.st.buf, x.st.buf, s, span, alpha)
	e.record(y, name, []*Tensor{x}, nil, nil, func(_ *node, gy *Tensor) []*Tensor {
		g := e.newGrad(x.shape)
		e.be.Expand(g.st.buf, gy.st.buf, s, span, alpha)
		return []*Tensor{g}
	})
	return y
}
