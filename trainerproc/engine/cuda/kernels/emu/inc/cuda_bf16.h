// Empty stand-in for the CUDA header common.cuh includes; the emulated kernels use no bf16.
