// Deterministic reductions (no atomics): every output is summed by one block in a fixed
// order and tree shape, accumulating in double like the CPU reference.
#include "common.cuh"

// reduce_cols_f32 keeps the inner (contiguous) dimension: dst[g, i] = alpha·Σ_{j<count}
// src[(g·start + j·stride)·inner + i]. Block (32, 8): x walks columns (coalesced), y rows.
extern "C" __global__ void reduce_cols_f32(float* dst, const float* src, int groups, int start, int stride,
                                           int count, int inner, float alpha) {
  __shared__ double sh[8][33];
  int i = blockIdx.x * 32 + threadIdx.x;
  int g = blockIdx.y;
  double acc = 0;
  if (i < inner) {
    for (int j = threadIdx.y; j < count; j += 8) {
      long long row = (long long)g * start + (long long)j * stride;
      acc += (double)src[row * inner + i];
    }
  }
  sh[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && i < inner) {
    double s = 0;
#pragma unroll
    for (int k = 0; k < 8; k++) s += sh[k][threadIdx.x];
    dst[(long long)g * inner + i] = (float)((double)alpha * s);
  }
}

// reduce_rows_f32 sums whole rows too: dst[g] = alpha·Σ_{j<count, i<inner}
// src[(g·start + j·stride)·inner + i]. One block of 256 threads per output.
extern "C" __global__ void reduce_rows_f32(float* dst, const float* src, int groups, int start, int stride,
                                           int count, int inner, float alpha) {
  __shared__ double sh[256];
  int g = blockIdx.x;
  long long n = (long long)count * inner;
  double acc = 0;
  for (long long k = threadIdx.x; k < n; k += blockDim.x) {
    long long j = k / inner, i = k % inner;
    long long row = (long long)g * start + j * stride;
    acc += (double)src[row * inner + i];
  }
  double s = block_sum(acc, sh);
  if (threadIdx.x == 0) dst[g] = (float)((double)alpha * s);
}
