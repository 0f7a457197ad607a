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
// f must be deterministic (the same result when re-run: use CheckpointRNG when it draws
// random numbers, or draw them outside and pass them in) and must not keep the tensors it
// creates: everything it allocates is freed when Checkpoint returns. Tensors with a graph
// (produced by ops that recorded one) must reach f through in; f may read leaves (parameters)
// and tensors without a graph from its closure (Checkpoint panics with ErrGrad otherwise). in
// may hold nil entries (passed to f as nil) and tensors that need no gradient (masks,
// constants). Under NoGrad, or when nothing f reads requires a gradient,
// Checkpoint just calls f (still freeing its temporaries). A failure while f is re-run during
// Backward (an op error, a panic, an output of another shape) is returned by Backward,
// wrapping ErrGrad and the op's own sentinel error.
func (e *Engine) Checkpoint(f func(in []*Tensor) *Tensor, in ...*Tensor) *Tensor {
	e.check(in...)
	inputs := append([]*Tensor(nil), in...)
	since := e.nodes
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
	if !e.GradEnabled() || out.node == nil || out.scope != s || out.node.seq <= since {
		// Nothing to save: no graph, or f returned a tensor it did not create (an input, a
		// captured tensor), whose graph belongs to the caller.
		s.Keep(out)
		closed = true
		s.Close()
		return out
	}
	if err := foreignInput(out.node, since, inputs); err != nil {
		throw(err)
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

// CheckpointRNG is Checkpoint for an f that draws random numbers from r (dropout): the re-run
// during Backward starts r from the state it had when f first ran, so it draws the same
// numbers, and puts r back afterwards, so the recompute does not advance the stream.
func (e *Engine) CheckpointRNG(r *RNG, f func(in []*Tensor) *Tensor, in ...*Tensor) *Tensor {
	seed, offset := r.State()
	ran := false
	return e.Checkpoint(func(in []*Tensor) *Tensor {
		if !ran {
			ran = true
			return f(in)
		}
		curSeed, curOffset := r.State()
		r.SetState(seed, offset)
		defer r.SetState(curSeed, curOffset)
		return f(in)
	}, in...)
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

	since := e.nodes
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
	if err := foreignInput(out.node, since, nil); err != nil {
		return nil, err
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

// foreignInput checks that the graph recorded after node number since and ending at root
// reaches older nodes only through the producers of inputs. A tensor with a graph that f
// reads from its closure instead would make the recompute back-propagate into the outer graph
// ahead of its turn (wrong gradients, nodes released twice), so it is refused with ErrGrad.
func foreignInput(root *node, since uint64, inputs []*Tensor) error {
	allowed := map[*node]bool{}
	for _, in := range inputs {
		if in != nil && in.node != nil {
			allowed[in.node] = true
		}
	}
	visited := map[*node]bool{root: true}
	stack := []*node{root}
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for j, p := range n.inNodes {
			switch {
			case p == nil || visited[p]:
			case p.seq > since:
				visited[p] = true
				stack = append(stack, p)
			case !allowed[p]:
				return fmt.Errorf("%w: Checkpoint: f used a tensor %v with a graph from before the call (an operand of %q) that is not one of its inputs; pass it to Checkpoint with the inputs", ErrGrad, n.inputs[j].shape, n.op)
			}
		}
	}
	return nil
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
