// Package cuda is the engine's CUDA backend: engine.Backend on an NVIDIA GPU through
// gorgonia.org/cu (the driver API: the device's primary context, modules loaded from embedded
// PTX, kernel launches, device memory), with GEMMs in cuBLAS, which is loaded with dlopen at
// run time (libcublas.so.13, .12, .11 in that order) so one binary works with whichever CUDA
// libraries the GPU machine carries.
//
// # Build tags
//
// gorgonia.org/cu calls cuInit in its package init and exits the process when there is no
// GPU, so everything that imports it sits behind the `cuda` build tag and ends up only in
// simpletuner-trainer-cuda. The host-side logic (argument packing, launch geometry, shape
// and plan computation, bf16 conversion, the cuBLAS search order and symbol table, the
// caching allocator, the embedded PTX and its kernel signature table) has no tag, so its
// unit tests run in the default `make test` on machines without CUDA.
//
// # Kernels
//
// kernels/*.cu are compiled to PTX (compute_80, which newer drivers JIT for Hopper) by
// `make kernels` and the PTX is committed and embedded. Each kernel's parameter list is
// declared once in the Go signature table (kernels.go); a test parses the PTX and checks that
// every entry's parameters match it, because a mismatch would only show on a GPU as garbage.
//
// # Precision
//
// Buffers are float32 (master weights, activations and accumulation). With PrecisionBF16
// (--mixed_precision=bf16, the GPU default) GEMM operands are rounded to bf16 on the fly and
// multiplied by cuBLAS with fp32 accumulation and an fp32 result, as torch.autocast does;
// with PrecisionFP32 (--mixed_precision=no) GEMMs are plain fp32 with TF32 off.
//
// # Errors
//
// engine.Backend methods return no error. A failed launch or cuBLAS call is recorded as the
// backend's sticky error; later launches are skipped and the next Alloc, Upload or Download
// returns it (wrapping engine.ErrBackend), so the training step fails through engine.Catch
// instead of continuing on wrong numbers. Unsupported requests record ErrUnsupported the same
// way.
//
// # Determinism
//
// No kernel accumulates with atomics: every reduction is summed by one block in a fixed order,
// so results are bit-reproducible run to run on the same GPU and library versions. cuBLAS may
// pick different algorithms on different GPUs or versions.
package cuda
