// Elementwise, copy, cast and activation kernels. Activation math runs in double, as the CPU
// reference does, so fp32 results differ from it only by the final rounding.
#include "common.cuh"

extern "C" __global__ void fill_f32(float* dst, float v, long long n) {
  GRID_LOOP(i, n) dst[i] = v;
}

// copy2d_f32 copies rows×cols elements; dst and src already point at their first element.
extern "C" __global__ void copy2d_f32(float* dst, int dst_stride, const float* src, int src_stride,
                                      int rows, int cols) {
  long long n = (long long)rows * cols;
  GRID_LOOP(i, n) {
    long long r = i / cols, c = i % cols;
    dst[r * dst_stride + c] = src[r * src_stride + c];
  }
}

// permute_f32 walks dst in order; shape d0..d5 is dst's (collapsed) shape, s0..s5 the source
// stride of each dst dimension; unused leading dimensions have extent 1.
extern "C" __global__ void permute_f32(float* dst, const float* src, long long n, int nd,
                                       int d0, int d1, int d2, int d3, int d4, int d5,
                                       int s0, int s1, int s2, int s3, int s4, int s5) {
  int d[6] = {d0, d1, d2, d3, d4, d5};
  int s[6] = {s0, s1, s2, s3, s4, s5};
  GRID_LOOP(i, n) {
    long long rem = i, off = 0;
#pragma unroll
    for (int k = 5; k >= 0; k--) {
      if (k < nd) {
        long long c = rem % d[k];
        rem /= d[k];
        off += c * s[k];
      }
    }
    dst[i] = src[off];
  }
}

__device__ __forceinline__ float apply_op(int op, float a, float b) {
  switch (op) {
    case 0: return a + b;
    case 1: return a - b;
    case 2: return a * b;
    default: return a / b;
  }
}

extern "C" __global__ void binary_f32(float* dst, const float* a, const float* b, int op,
                                      int outer, int mid, int inner, int a_span, int b_span) {
  long long n = (long long)outer * mid * inner;
  GRID_LOOP(i, n) {
    long long row = i / inner, c = i % inner;
    long long o = row / mid, m = row % mid;
    long long ai = span_offset(a_span, mid, inner, o, m) + ((a_span & SPAN_INNER) ? c : 0);
    long long bi = span_offset(b_span, mid, inner, o, m) + ((b_span & SPAN_INNER) ? c : 0);
    dst[i] = apply_op(op, a[ai], b[bi]);
  }
}

extern "C" __global__ void affine_f32(float* dst, const float* x, float alpha, float beta, long long n) {
  GRID_LOOP(i, n) dst[i] = alpha * x[i] + beta;
}

extern "C" __global__ void axpy_f32(float* y, const float* x, float alpha, long long n) {
  GRID_LOOP(i, n) y[i] += alpha * x[i];
}

extern "C" __global__ void expand_f32(float* dst, const float* src, int outer, int mid, int inner,
                                      int span, float alpha) {
  long long n = (long long)outer * mid * inner;
  GRID_LOOP(i, n) {
    long long row = i / inner, c = i % inner;
    long long si = span_offset(span, mid, inner, row / mid, row % mid) + ((span & SPAN_INNER) ? c : 0);
    dst[i] = alpha * src[si];
  }
}

#define GELU_C 0.7978845608028654
#define GELU_A 0.044715

__device__ __forceinline__ double act_fwd(int kind, double x) {
  switch (kind) {
    case ACT_GELU_TANH: return 0.5 * x * (1.0 + tanh(GELU_C * (x + GELU_A * x * x * x)));
    case ACT_SILU: return x / (1.0 + exp(-x));
    default: return x;
  }
}

__device__ __forceinline__ double act_grad(int kind, double x) {
  switch (kind) {
    case ACT_GELU_TANH: {
      double t = tanh(GELU_C * (x + GELU_A * x * x * x));
      return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * GELU_C * (1.0 + 3.0 * GELU_A * x * x);
    }
    case ACT_SILU: {
      double s = 1.0 / (1.0 + exp(-x));
      return s * (1.0 + x * (1.0 - s));
    }
    default: return 1.0;
  }
}

// bias_act_f32 fuses the bias add with the activation (GELU-tanh, SiLU or none); bias may be null.
extern "C" __global__ void bias_act_f32(float* dst, const float* x, const float* bias, int act,
                                        int rows, int cols) {
  long long n = (long long)rows * cols;
  GRID_LOOP(i, n) {
    float v = x[i];
    if (bias) v += bias[i % cols];
    dst[i] = (float)act_fwd(act, (double)v);
  }
}

extern "C" __global__ void bias_act_bwd_f32(float* dx, const float* x, const float* bias, const float* dy,
                                            int act, int rows, int cols) {
  long long n = (long long)rows * cols;
  GRID_LOOP(i, n) {
    float v = x[i];
    if (bias) v += bias[i % cols];
    dx[i] = (float)((double)dy[i] * act_grad(act, (double)v));
  }
}

// cast_f32_bf16 rounds to nearest even (NaN stays NaN), as torch's autocast does.
extern "C" __global__ void cast_f32_bf16(__nv_bfloat16* dst, const float* src, long long n) {
  GRID_LOOP(i, n) dst[i] = __float2bfloat16_rn(src[i]);
}

extern "C" __global__ void cast_bf16_f32(float* dst, const __nv_bfloat16* src, long long n) {
  GRID_LOOP(i, n) dst[i] = __bfloat162float(src[i]);
}
