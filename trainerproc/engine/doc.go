// Package engine is the trainer's tensor library: float32 n-dimensional tensors on a pluggable
// Backend, reverse-mode automatic differentiation, and the op set a PixArt-style diffusion
// transformer needs (Linear, LayerNorm, adaLN modulation, GELU-tanh, SiLU, fused multi-head
// self/cross attention, embeddings, residual adds, reshape/permute/concat/slice, MSE loss),
// plus what the VAE and the T5 text encoder need (Conv2D with stride and asymmetric padding,
// GroupNorm, nearest-neighbour upsampling, T5's RMSNorm).
//
// # Backends
//
// Backend is the device boundary, kept at kernel granularity so a CUDA backend can replace the
// CPU backend (package engine/cpu) kernel by kernel; the CPU backend is the reference it is
// tested against. Buffers are opaque handles. Ops validate shapes before calling a kernel, so
// kernels only panic on engine bugs.
//
// # Layout conventions
//
// All tensors are contiguous and row-major. Sequences are [B, N, D] (batch, tokens, features);
// attention takes [B, H, N, Dh] per head; Linear weights are [out, in] (PyTorch's layout,
// y = x·Wᵀ + b); adaLN modulation vectors are [B, D]; key padding masks are [B, Nk] with 1 for
// real tokens. Images are NCHW ([N, C, H, W]) and convolution weights [O, C, KH, KW], as in
// PyTorch. Reshape is a zero-copy view; Permute, Transpose, Concat and Slice copy.
//
// # Lifecycle: who frees buffers
//
//   - Every tensor created by an op or constructor belongs to the innermost open Scope (if
//     any); Scope.Close frees them. Scope.Keep hands a tensor to the enclosing scope (or to the
//     caller when there is none). Tensors created with no scope open are freed by the caller
//     with Tensor.Free.
//   - Buffers are reference counted: views (Reshape, Detach) and graph nodes that saved an
//     operand each hold a reference, so a buffer is freed when its last user lets go.
//   - A graph node lives while its output or a live consumer needs it; Backward releases every
//     node it traverses (including owned scratch such as layer-norm statistics and the
//     attention log-sum-exp) and frees intermediate gradients as soon as they are propagated.
//     A graph can be traversed once.
//   - Leaf gradients (Tensor.Grad) are owned by the leaf: Backward adds into them (gradient
//     accumulation over micro-batches), ZeroGrad / ZeroGrads frees them.
//   - Parameters belong to no scope; the model frees them.
//   - The Engine does not own its Backend; close the backend after freeing all tensors.
//
// # Autograd
//
// Ops record a node when grad mode is on (the default; Engine.NoGrad turns it off for
// inference, validation and optimizer updates) and some input requires a gradient. Backward
// from a scalar computes gradients for every leaf that requires one. Engine.Checkpoint trades
// compute for memory (gradient checkpointing): a segment keeps only its inputs and output
// between the passes and is re-run, with its graph, during Backward.
//
// # Errors
//
// Ops panic with an engine error on shape mismatches, freed tensors or device allocation
// failure, so model code reads like math; Catch converts such a panic back into an error that
// wraps one of the sentinel errors (ErrShape, ErrOutOfMemory, ...). Backward and host copies
// return errors directly.
//
// # Determinism contract
//
// For a fixed backend configuration (including thread count) every op is bit-reproducible
// run to run. Random numbers come from a counter-based generator (Philox4x32-10, package
// philox) addressed by (seed, offset, element index), so they do not depend on thread count or
// device. The CPU backend's own kernels never let the assignment of work to goroutines affect
// a result (reductions use fixed-size blocks combined in a fixed order), which makes them
// identical across thread counts as well; OpenBLAS GEMMs may differ in the last bits between
// thread counts. No op uses atomics to accumulate floats.
//
// # Concurrency
//
// An Engine and its tensors are driven by one goroutine; kernels are parallel inside.
package engine
