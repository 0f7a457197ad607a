package engine

import "simpletuner/trainerproc/engine/philox"

// RNG is a counter-based random stream: a seed and the next unused Philox counter block. Every
// draw consumes a fixed number of blocks that depends only on the tensor size, so the values
// are reproducible across thread counts and backends, and the state (two integers) can be
// saved in a checkpoint. An RNG is owned by its caller; there is no package-level generator.
type RNG struct {
	seed, offset uint64
}

// NewRNG returns a stream starting at counter block 0.
func NewRNG(seed uint64) *RNG { return &RNG{seed: seed} }

// State returns the seed and the next counter block, for checkpoints.
func (r *RNG) State() (seed, offset uint64) { return r.seed, r.offset }

// SetState restores a state returned by State.
func (r *RNG) SetState(seed, offset uint64) { r.seed, r.offset = seed, offset }

// RandN returns a tensor of normal(mean, std) samples drawn from r.
func (e *Engine) RandN(r *RNG, mean, std float32, shape ...int) *Tensor {
	t := e.newTensor(shape)
	e.be.RandNormal(t.st.buf, r.seed, r.offset, mean, std)
	r.offset += philox.NormalBlocks(t.Numel())
	return t
}

// RandU returns a tensor of uniform [lo, hi) samples drawn from r.
func (e *Engine) RandU(r *RNG, lo, hi float32, shape ...int) *Tensor {
	t := e.newTensor(shape)
	e.be.RandUniform(t.st.buf, r.seed, r.offset, lo, hi)
	r.offset += philox.UniformBlocks(t.Numel())
	return t
}
