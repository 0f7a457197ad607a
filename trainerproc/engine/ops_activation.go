package engine

// GELU returns the tanh-approximated GELU of x (PixArt's MLP activation).
func (e *Engine) GELU(x *Tensor) *Tensor { return e.activation(x, ActGELUTanh, "gelu_tanh") }

// SiLU returns x·sigmoid(x) (used on the timestep embedding).
func (e *Engine) SiLU(x *Tensor) *Tensor { return e.activation(x, ActSiLU, "silu") }

func (e *Engine) activation(x *Tensor, act Activation, name string) *Tensor {
	e.check(x)
	cols := 1
	if x.Rank() > 0 {
		cols = x.Dim(-1)
	}
	rows := x.Numel() / max(cols, 1)
	y := e.newTensor(x.shape)
	xb := x.st.buf
	e.be.BiasAct(act, y.st.buf, xb, nil, rows, cols)
	e.record(y, name, []*Tensor{x}, []*Tensor{x}, nil, func(_ *node, gy *Tensor) []*Tensor {
		g := e.newGrad(x.shape)
		e.be.BiasActBackward(act, g.st.buf, nil, xb, nil, gy.st.buf, rows, cols)
		return []*Tensor{g}
	})
	return y
}

// Softmax returns the softmax of x over its last axis.
func (e *Engine) Softmax(x *Tensor) *Tensor {
	e.check(x)
	cols := x.Dim(-1)
	rows := x.Numel() / max(cols, 1)
	y := e.newTensor(x.shape)
	e.be.Softmax(y.st.buf, x.st.buf, rows, cols)
	yb := y.st.buf
	e.record(y, "softmax", []*Tensor{x}, []*Tensor{y}, nil, func(_ *node, gy *Tensor) []*Tensor {
		g := e.newGrad(x.shape)
		e.be.SoftmaxBackward(g.st.buf, yb, gy.st.buf, rows, cols)
		return []*Tensor{g}
	})
	return y
}
