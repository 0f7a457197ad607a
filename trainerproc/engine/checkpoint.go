package engine

import (
	"errors"
	"fmt"
)

// Checkpoint runs f on in without keeping f's intermediate activations (gradient
// checkpointing): the forward pass records one node whose backward re-runs f with gradients
// on and back-propagates through the recomputed graph. Parameters (leaves) f reads get their
// gradients accumulated as if f had run normally; inputs that require a gradient get theirs
// through the node. Memory: between the forward and the backward pass only the inputs and
// the output stay alive; the backward pass holds one recomputed graph at a time.
//
// f must be deterministic (the same result when re-run: draw random numbers outside it and
// pass them in) and must not keep the tensors it creates: everything it allocates is freed
// when Checkpoint returns. in may hold nil entries (passed to f as nil) and tensors that need
// no gradient (masks, constants). Under NoGrad, or when nothing f reads requires a gradient,
// Checkpoint just calls f (still freeing its temporaries). A failure while f is re-run during
// Backward (an op error, a panic, an output of another shape) is returned by Backward,
// wrapping ErrGrad and the op's own sentinel error.
func (e *Engine) Checkpoint(f func(in []*Tensor) *Tensor, in ...*Tensor) *Tensor {
	e.check(in...)
	inputs := append([]*Tensor(nil), in...)
	s := e.Scope()
	closed := false
	defer func() {
		if !closed {
			s.Close() // f panicked: its temporaries go now, the panic goes on
		}
	}()
	out := f(append([]*Tensor(nil), inputs...))
	if out == nil || out.e != e {
		throwf(ErrGrad, "Checkpoint: f returned %v, need a tensor of this engine", out)
	}
	out.mustLive()
	if !e.GradEnabled() || out.node == nil || out.scope != s {
		// Nothing to save: no graph, or f returned a tensor it did not create (an input, a
		// captured tensor), whose graph belongs to the caller.
		s.Keep(out)
		closed = true
		s.Close()
		return out
	}
	// res shares out's buffer; closing the scope frees out's handle and so, by cascade, the
	// whole graph f recorded (its nodes' consumers are all inside it).
	res := &Tensor{e: e, shape: append([]int(nil), out.shape...), st: out.st}
	out.st.refs++
	closed = true
	s.Close()
	e.adopt(res)
	e.newNode(res, "checkpoint", inputs, inputs, nil, func(nd *node, gy *Tensor) []*Tensor {
		grads, err := e.recompute(f, nd, gy)
		switch {
		case errors.Is(err, ErrGrad):
			throw(fmt.Errorf("recomputing a checkpointed segment: %w", err))
		case err != nil:
			throw(fmt.Errorf("%w: recomputing a checkpointed segment: %w", ErrGrad, err))
		}
		return grads
	})
	return res
}

// recompute re-runs a checkpointed f on the storages its node saved and back-propagates gy
// through the new graph. Leaves f reads accumulate their gradients directly; the returned
// slice holds the gradient of each input that needs one. Whatever happens, every tensor it
// made is freed before it returns (the gradients it returns excepted).
func (e *Engine) recompute(f func(in []*Tensor) *Tensor, nd *node, gy *Tensor) (grads []*Tensor, err error) {
	// Fresh leaves over the saved buffers cut the recomputed graph off from the outer one, so
	// the inner traversal stops at them and leaves their gradients in Grad.
	leaves := make([]*Tensor, len(nd.inputs))
	k := 0
	for i, in := range nd.inputs {
		if in == nil {
			continue
		}
		st := nd.saved[k]
		k++
		st.refs++
		leaves[i] = &Tensor{e: e, shape: append([]int(nil), in.shape...), st: st, requiresGrad: nd.needsGrad(i)}
	}
	defer func() {
		for _, l := range leaves {
			if l != nil {
				l.Free() // frees a gradient not handed back, too
			}
		}
	}()
	// Backward may run under NoGrad (an optimizer loop); the recompute must record.
	saved := e.noGrad
	e.noGrad = 0
	defer func() { e.noGrad = saved }()
	s := e.Scope()
	defer s.Close()

	var out *Tensor
	if err := catchAll(func() { out = f(append([]*Tensor(nil), leaves...)) }); err != nil {
		return nil, err
	}
	switch {
	case out == nil || out.e != e || out.st == nil:
		return nil, fmt.Errorf("%w: f returned %v on the re-run", ErrGrad, out)
	case !equalInts(out.shape, gy.shape):
		return nil, fmt.Errorf("%w: f returned %v on the re-run but %v the first time (f must be deterministic)", ErrShape, out.shape, gy.shape)
	case out.node == nil:
		return nil, fmt.Errorf("%w: f's re-run recorded no graph (f must be deterministic)", ErrGrad)
	}
	// The seed shares gy's buffer: backwardFrom frees its reference, the caller frees gy.
	if err := e.backwardFrom(out.node, gy.gradView(gy.shape)); err != nil {
		return nil, err
	}
	grads = make([]*Tensor, len(leaves))
	for i, l := range leaves {
		if l != nil && l.grad != nil {
			grads[i], l.grad = l.grad, nil
		}
	}
	return grads, nil
}

// catchAll is Catch that also turns a panic of another kind into an error: a checkpointed
// function runs again inside Backward, which must report its failure instead of crashing the
// training step midway.
func catchAll(fn func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			if op, ok := r.(opPanic); ok {
				err = op.err
				return
			}
			err = fmt.Errorf("%w: checkpointed function panicked: %v", ErrGrad, r)
		}
	}()
	fn()
	return nil
}
