package engine

import (
	"fmt"
)

// node is one recorded op. It keeps references to the storages its backward needs (saved),
// owns scratch tensors such as layer-norm statistics (owned), and computes input gradients
// from the output gradient.
//
// Lifetime: a node lives while its output tensor is live or while a live node consumes its
// output (consumers counts those), so model code may free intermediate handles (e.g. by
// closing a helper's scope) without breaking the graph. Backward releases every node it
// traverses; freeing the loss without calling Backward releases the graph by cascade.
type node struct {
	op        string
	e         *Engine
	out       *Tensor   // weak: cleared when released
	inputs    []*Tensor // operands (their handles may be freed; their nodes stay in inNodes)
	inNodes   []*node   // producer of each input at record time, nil for leaves
	saved     []*storage
	owned     []*Tensor
	backward  func(n *node, gy *Tensor) []*Tensor // one entry per input; nil where none is needed
	consumers int                                 // live nodes that have this node's output as input
	outFreed  bool                                // the output handle was freed
	released  bool
}

// release drops the node's resources. With cascade, producers that are now unreferenced are
// released too.
func (n *node) release(cascade bool) {
	if n.released {
		return
	}
	n.released = true
	for _, s := range n.saved {
		s.release(n.e.be)
	}
	for _, t := range n.owned {
		t.Free()
	}
	inNodes := n.inNodes
	n.saved, n.owned, n.backward, n.inputs, n.inNodes = nil, nil, nil, nil, nil
	if out := n.out; out != nil && out.node == n {
		out.node = nil
		out.requiresGrad = false
	}
	n.out = nil
	for _, p := range inNodes {
		if p != nil {
			p.consumers--
			if cascade {
				p.maybeRelease()
			}
		}
	}
}

// maybeRelease releases the node once neither its output handle nor any consumer needs it.
func (n *node) maybeRelease() {
	if n.outFreed && n.consumers <= 0 {
		n.release(true)
	}
}

// needsGrad reports whether input i of the node wants a gradient.
func (n *node) needsGrad(i int) bool { return n.inputs[i] != nil && n.inputs[i].requiresGrad }

// record attaches a graph node to out when grad mode is on and some input requires a gradient;
// otherwise it frees owned scratch immediately. saved tensors' storages are retained for the
// backward pass.
func (e *Engine) record(out *Tensor, op string, inputs []*Tensor, saved []*Tensor, owned []*Tensor, backward func(n *node, gy *Tensor) []*Tensor) {
	need := false
	if e.GradEnabled() {
		for _, in := range inputs {
			if in != nil && in.requiresGrad {
				need = true
			}
		}
	}
	if !need {
		for _, t := range owned {
			t.Free()
		}
		return
	}
	e.newNode(out, op, inputs, saved, owned, backward)
}

// newNode attaches a graph node to out unconditionally (record decides whether one is needed;
// Checkpoint needs one when only the leaves its function reads require a gradient): it counts
// the node as a consumer of each input's producer and retains the saved tensors' storages.
func (e *Engine) newNode(out *Tensor, op string, inputs []*Tensor, saved []*Tensor, owned []*Tensor, backward func(n *node, gy *Tensor) []*Tensor) {
	n := &node{op: op, e: e, out: out, inputs: inputs, owned: owned, backward: backward, inNodes: make([]*node, len(inputs))}
	for i, in := range inputs {
		if in != nil && in.node != nil {
			n.inNodes[i] = in.node
			in.node.consumers++
		}
	}
	for _, t := range saved {
		if t == nil {
			continue
		}
		t.st.refs++
		n.saved = append(n.saved, t.st)
	}
	out.requiresGrad = true
	out.node = n
}

// newGrad allocates an unscoped tensor for a gradient; gradients are owned by autograd (or by
// the leaf they accumulate into), never by a Scope.
func (e *Engine) newGrad(shape []int) *Tensor {
	buf, err := e.be.Alloc(numel(shape))
	if err != nil {
		throw(fmt.Errorf("engine: alloc grad %v: %w", shape, err))
	}
	return &Tensor{e: e, shape: append([]int(nil), shape...), st: &storage{buf: buf, refs: 1}}
}

// gradView is view without scope registration (for gradients).
func (t *Tensor) gradView(shape []int) *Tensor {
	t.st.refs++
	return &Tensor{e: t.e, shape: append([]int(nil), shape...), st: t.st}
}

// Backward computes the gradient of the scalar loss with respect to every leaf tensor that
// requires a gradient, adding it into the leaf's Grad (so calling Backward for several
// micro-batches accumulates). Intermediate gradients are freed as soon as they have been
// propagated, and each node is released after use: the graph cannot be traversed twice.
// Errors wrap ErrGrad.
func (e *Engine) Backward(loss *Tensor) (err error) {
	if loss.e != e {
		return fmt.Errorf("%w: loss from another engine", ErrMixedEngines)
	}
	if loss.Numel() != 1 {
		return fmt.Errorf("%w: Backward from a tensor of shape %v, need a scalar", ErrGrad, loss.shape)
	}
	if loss.node == nil {
		return fmt.Errorf("%w: loss has no graph (no input requires grad, NoGrad was on, or Backward already ran)", ErrGrad)
	}
	var seed *Tensor
	if err := Catch(func() {
		seed = e.newGrad(loss.shape)
		e.be.Fill(seed.st.buf, 1)
	}); err != nil {
		return err
	}
	return e.backwardFrom(loss.node, seed)
}

// backwardFrom back-propagates the output gradient seed (owned by the call, freed by it)
// from the node root to every leaf that requires a gradient. Backward calls it with a seed of
// ones; a Checkpoint node calls it with its own (non-scalar) output gradient on the graph it
// recomputed. On failure every node of the traversal that is still held is released, so
// nothing the graph saved stays allocated; the error wraps ErrGrad or the op's sentinel.
func (e *Engine) backwardFrom(root *node, seed *Tensor) (err error) {
	// Topological order by iterative DFS (post-order), so deep graphs do not grow the stack.
	var order []*node
	visited := map[*node]bool{}
	type frame struct {
		n *node
		i int
	}
	stack := []frame{{n: root}}
	visited[root] = true
	for len(stack) > 0 {
		f := &stack[len(stack)-1]
		if f.n.released {
			seed.Free()
			return fmt.Errorf("%w: graph node %q was freed before Backward", ErrGrad, f.n.op)
		}
		if f.i < len(f.n.inputs) {
			in, p := f.n.inputs[f.i], f.n.inNodes[f.i]
			f.i++
			if p == nil && in != nil && in.requiresGrad && in.st == nil {
				seed.Free()
				return fmt.Errorf("%w: leaf %v used by %q was freed before Backward", ErrGrad, in.shape, f.n.op)
			}
			if p != nil && !visited[p] {
				visited[p] = true
				stack = append(stack, frame{n: p})
			}
			continue
		}
		order = append(order, f.n)
		stack = stack[:len(stack)-1]
	}
	grads := map[*node]*Tensor{root: seed}
	defer func() {
		for _, g := range grads {
			g.Free()
		}
		if err != nil {
			// Release what the failed traversal did not reach; released nodes are skipped.
			for _, n := range order {
				n.release(false)
			}
		}
	}()
	return Catch(func() {
		for i := len(order) - 1; i >= 0; i-- {
			n := order[i]
			gy := grads[n]
			if gy == nil {
				n.release(false)
				continue
			}
			// gy stays in grads until the node's backward returned, so a failing op's output
			// gradient is freed with the rest.
			gins := n.backward(n, gy)
			delete(grads, n)
			gy.Free()
			for j, g := range gins {
				if g == nil {
					continue
				}
				in, p := n.inputs[j], n.inNodes[j]
				switch {
				case p != nil && !p.released:
					accumulate(grads, p, g)
				case p == nil && in.requiresGrad && in.st != nil:
					if in.grad == nil {
						in.grad = g
					} else {
						e.be.Axpy(in.grad.st.buf, g.st.buf, 1)
						g.Free()
					}
				default:
					g.Free()
				}
			}
			// Producers come later in the order and are released there, so no cascade.
			n.release(false)
		}
	})
}

func accumulate(grads map[*node]*Tensor, n *node, g *Tensor) {
	if cur, ok := grads[n]; ok {
		n.e.be.Axpy(cur.st.buf, g.st.buf, 1)
		g.Free()
		return
	}
	grads[n] = g
}
