package engine

import (
	"fmt"
)

// storage is a reference-counted backend buffer. Tensors that view it (Reshape) and graph
// nodes that saved it for the backward pass each hold one reference; the buffer is freed when
// the last reference goes.
type storage struct {
	buf  Buffer
	refs int
}

// Tensor is an n-dimensional float32 array on the engine's backend, row-major, with optional
// autograd state. The zero value is not usable; tensors come from Engine constructors and ops.
type Tensor struct {
	e            *Engine
	shape        []int
	st           *storage // nil once freed
	requiresGrad bool
	grad         *Tensor // accumulated gradient of a leaf; owned by the tensor
	node         *node   // op that produced the tensor, while its graph is alive
	scope        *Scope  // scope that frees the tensor, or nil
}

// numel returns the product of shape.
func numel(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// newTensor allocates a zero-filled tensor and registers it with the innermost scope.
func (e *Engine) newTensor(shape []int) *Tensor {
	for _, d := range shape {
		if d < 0 {
			throwf(ErrShape, "negative dimension in %v", shape)
		}
	}
	buf, err := e.be.Alloc(numel(shape))
	if err != nil {
		throw(fmt.Errorf("engine: alloc %v: %w", shape, err))
	}
	t := &Tensor{e: e, shape: append([]int(nil), shape...), st: &storage{buf: buf, refs: 1}}
	e.adopt(t)
	return t
}

// adopt registers t with the innermost open scope.
func (e *Engine) adopt(t *Tensor) {
	if s := e.currentScope(); s != nil {
		t.scope = s
		s.tensors = append(s.tensors, t)
	}
}

// view returns a tensor sharing t's storage with another shape.
func (t *Tensor) view(shape []int) *Tensor {
	t.mustLive()
	t.st.refs++
	v := &Tensor{e: t.e, shape: append([]int(nil), shape...), st: t.st}
	t.e.adopt(v)
	return v
}

// Zeros returns a zero-filled tensor.
func (e *Engine) Zeros(shape ...int) *Tensor { return e.newTensor(shape) }

// Full returns a tensor with every element set to v.
func (e *Engine) Full(v float32, shape ...int) *Tensor {
	t := e.newTensor(shape)
	if v != 0 {
		e.be.Fill(t.st.buf, v)
	}
	return t
}

// FromHost returns a tensor holding a copy of data, which must have numel(shape) elements.
func (e *Engine) FromHost(data []float32, shape ...int) *Tensor {
	if len(data) != numel(shape) {
		throwf(ErrShape, "FromHost: %d values for shape %v", len(data), shape)
	}
	t := e.newTensor(shape)
	if err := e.be.Upload(t.st.buf, data); err != nil {
		t.Free()
		throw(fmt.Errorf("%w: upload: %w", ErrBackend, err))
	}
	return t
}

// Shape returns a copy of the tensor's shape.
func (t *Tensor) Shape() []int { return append([]int(nil), t.shape...) }

// Rank is the number of dimensions.
func (t *Tensor) Rank() int { return len(t.shape) }

// Dim returns the size of dimension i; negative i counts from the end.
func (t *Tensor) Dim(i int) int {
	if i < 0 {
		i += len(t.shape)
	}
	return t.shape[i]
}

// Numel is the number of elements.
func (t *Tensor) Numel() int { return numel(t.shape) }

// Engine returns the engine the tensor belongs to.
func (t *Tensor) Engine() *Engine { return t.e }

// Buffer returns the backend buffer (for backends' own helpers and tests). It panics with an
// engine error if the tensor was freed.
func (t *Tensor) Buffer() Buffer {
	t.mustLive()
	return t.st.buf
}

// RequiresGrad reports whether gradients flow to (or through) the tensor.
func (t *Tensor) RequiresGrad() bool { return t.requiresGrad }

// SetRequiresGrad marks a leaf tensor as needing a gradient. It panics for op outputs.
func (t *Tensor) SetRequiresGrad(v bool) *Tensor {
	if t.node != nil {
		throwf(ErrGrad, "SetRequiresGrad on a non-leaf tensor")
	}
	t.requiresGrad = v
	return t
}

// Grad returns the gradient accumulated by Backward into this leaf, or nil.
func (t *Tensor) Grad() *Tensor { return t.grad }

// ZeroGrad frees the accumulated gradient; the next Backward starts from zero.
func (t *Tensor) ZeroGrad() {
	if t.grad != nil {
		t.grad.Free()
		t.grad = nil
	}
}

// IsFreed reports whether Free has been called.
func (t *Tensor) IsFreed() bool { return t.st == nil }

func (t *Tensor) mustLive() {
	if t.st == nil {
		throwf(ErrFreed, "tensor %v", t.shape)
	}
}

// Free releases the tensor's reference to its buffer and its gradient. The graph node that
// produced it survives while later ops of a live graph still need it (see node). Free is
// idempotent; other views of the same storage stay valid.
func (t *Tensor) Free() {
	if t.st == nil {
		return
	}
	t.st.release(t.e.be)
	t.st = nil
	if n := t.node; n != nil {
		t.node = nil
		n.outFreed = true
		n.maybeRelease()
	}
	t.ZeroGrad()
}

func (s *storage) release(be Backend) {
	s.refs--
	if s.refs == 0 {
		be.Free(s.buf)
		s.buf = nil
	}
}

// ToHost copies the tensor to a new host slice. Errors (e.g. a failed device kernel surfacing
// at synchronisation) wrap ErrBackend.
func (t *Tensor) ToHost() ([]float32, error) {
	if t.st == nil {
		return nil, fmt.Errorf("%w: ToHost of %v", ErrFreed, t.shape)
	}
	out := make([]float32, t.Numel())
	if err := t.e.be.Download(out, t.st.buf); err != nil {
		return nil, fmt.Errorf("%w: download: %w", ErrBackend, err)
	}
	return out, nil
}

// Item returns the single value of a one-element tensor.
func (t *Tensor) Item() (float32, error) {
	if t.Numel() != 1 {
		return 0, fmt.Errorf("%w: Item of shape %v", ErrShape, t.shape)
	}
	v, err := t.ToHost()
	if err != nil {
		return 0, err
	}
	return v[0], nil
}

// Detach returns a view of t that shares its buffer but has no graph and needs no gradient.
func (t *Tensor) Detach() *Tensor { return t.view(t.shape) }

// String describes the tensor without reading its data.
func (t *Tensor) String() string {
	state := ""
	if t.st == nil {
		state = " freed"
	}
	if t.requiresGrad {
		state += " grad"
	}
	return fmt.Sprintf("Tensor%v%s", t.shape, state)
}

// check panics unless all tensors (nil entries ignored) belong to e and are live.
func (e *Engine) check(ts ...*Tensor) {
	for _, t := range ts {
		if t == nil {
			continue
		}
		if t.e != e {
			throwf(ErrMixedEngines, "tensor %v", t.shape)
		}
		t.mustLive()
	}
}
