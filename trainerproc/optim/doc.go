// Package optim holds the trainer's optimizers (adamw, adamw_bf16, optimi-adamw, optimi-lion,
// optimi-sgd), global gradient-norm clipping and the learning-rate schedules, all following
// the PyTorch / torch-optimi / diffusers formulas SimpleTuner uses.
//
// Optimizers update parameters in place on the host view of their buffers: zero-copy on the
// float32 CPU backend, download/upload elsewhere. Updates are elementwise, so the split of
// work across goroutines never changes a result, and optimizer state is saved with its exact
// bits (float32 tensors; adamw_bf16's bfloat16 state as BF16 tensors), so a resumed run
// continues bit-identically.
//
// adamw_bf16 is SimpleTuner's AdamWBF16 (bfloat16 weights, bfloat16 exp_avg, exp_avg_sq and
// compensation buffer, delayed weight decay): 6 bytes of state per weight, see StateBytesWith.
package optim
