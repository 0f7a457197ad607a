package engine

// MSELoss returns mean((pred - target)²) as a [1] tensor. Gradients flow to both operands.
func (e *Engine) MSELoss(pred, target *Tensor) *Tensor {
	if !equalInts(pred.shape, target.shape) {
		throwf(ErrShape, "mse: pred %v, target %v", pred.shape, target.shape)
	}
	s := e.Scope()
	d := e.Sub(pred, target)
	sq := e.Mul(d, d)
	loss := s.Keep(e.MeanAll(sq))
	// The intermediates' buffers are retained by the graph as needed; their handles can go.
	s.Close()
	return loss
}

// Modulate returns x·(1 + scale) + shift per sample for x [B, N, D] and scale, shift [B, D]
// (adaLN modulation without the norm; LayerNormModulate is the fused form).
func (e *Engine) Modulate(x, scale, shift *Tensor) *Tensor {
	if x.Rank() != 3 || !equalInts(scale.shape, []int{x.shape[0], x.shape[2]}) || !equalInts(shift.shape, scale.shape) {
		throwf(ErrShape, "modulate: x %v, scale %v, shift %v", x.shape, scale.shape, shift.shape)
	}
	s := e.Scope()
	b, d := x.shape[0], x.shape[2]
	one := e.AddScalar(e.Reshape(scale, b, 1, d), 1)
	y := s.Keep(e.Add(e.Mul(x, one), e.Reshape(shift, b, 1, d)))
	s.Close()
	return y
}
