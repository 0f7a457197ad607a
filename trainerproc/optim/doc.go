// Package optim holds the trainer's optimizers (adamw, adamw_bf16, optimi-adamw, optimi-lion,
// optimi-sgd), global gradient-norm clipping and the learning-rate schedules, all following
// the PyTorch / torch-optimi / diffusers formulas SimpleTuner uses.
//
// Optimizers update parameters in place on the host view of their buffers: zero-copy on the
// float32 CPU backend, download/upload elsewhere. Updates are elementwise, so the split of
// work across goroutines never changes a result, and optimizer state is saved as float32
// tensors (exact bits), so a resumed run continues bit-identically.
package optim
