// Shared helpers for the engine's CUDA kernels. Every kernel is extern "C" so its PTX entry
// name is the plain function name the Go side looks up, and every parameter is a pointer,
// an int, a long long, an unsigned long long or a float: gorgonia.org/cu copies each kernel
// argument as 8 bytes, so no structs are passed.
#pragma once
#include <cuda_bf16.h>

// Span bits, as engine.Span.
#define SPAN_OUTER 1
#define SPAN_MID 2
#define SPAN_INNER 4

// Activations, as engine.Activation.
#define ACT_NONE 0
#define ACT_GELU_TANH 1
#define ACT_SILU 2

// Grid-stride loop over [0, n): the Go side caps the grid, so any n works.
#define GRID_LOOP(i, n) \
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
       i += (long long)blockDim.x * gridDim.x)

// span_offset returns the element offset of row (o, m) of an operand with span sp in the
// logical [outer, mid, inner] shape, and whether it varies along inner.
__device__ __forceinline__ long long span_offset(int sp, int mid, int inner, long long o, long long m) {
  long long md = (sp & SPAN_MID) ? mid : 1;
  long long in = (sp & SPAN_INNER) ? inner : 1;
  if (!(sp & SPAN_OUTER)) o = 0;
  if (!(sp & SPAN_MID)) m = 0;
  return (o * md + m) * in;
}

// Block-wide sum of a double (or a float) over blockDim.x threads (a power of two, at most
// 1024), summed pairwise; every thread gets the result. The tree has a fixed shape, so
// results are deterministic.
template <typename T>
__device__ __forceinline__ T block_sum(T v, T* sh) {
  sh[threadIdx.x] = v;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
    __syncthreads();
  }
  T r = sh[0];
  __syncthreads();
  return r;
}

__device__ __forceinline__ float block_max(float v, float* sh) {
  sh[threadIdx.x] = v;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) sh[threadIdx.x] = fmaxf(sh[threadIdx.x], sh[threadIdx.x + s]);
    __syncthreads();
  }
  float r = sh[0];
  __syncthreads();
  return r;
}

