package engine

// Parameter is a trainable leaf tensor with a stable name (the key used by checkpoints and
// optimizers). Parameters belong to no scope: they live until Free.
type Parameter struct {
	// Name is the parameter's path, e.g. "blocks.0.attn1.to_q.weight".
	Name string
	*Tensor
}

// NewParameter turns t into a parameter: it is taken out of its scope and marks requiresGrad.
// t must be a leaf (not produced by an op that recorded a graph).
func (e *Engine) NewParameter(name string, t *Tensor) *Parameter {
	e.check(t)
	if t.node != nil {
		throwf(ErrGrad, "parameter %q from a tensor with a graph; Detach it first", name)
	}
	if t.scope != nil {
		// Removing from the scope's list is not needed: Close skips tensors whose scope changed.
		t.scope = nil
	}
	t.requiresGrad = true
	return &Parameter{Name: name, Tensor: t}
}

// ZeroGrads frees the gradients of params (before the next accumulation cycle).
func ZeroGrads(params []*Parameter) {
	for _, p := range params {
		p.ZeroGrad()
	}
}
