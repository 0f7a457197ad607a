// Embedding gather/scatter, Philox random numbers (bit-compatible with package philox) and
// the fused optimizer updates.
#include "common.cuh"

extern "C" __global__ void embedding_f32(float* dst, const float* table, const int* ids, int n, int dim) {
  long long total = (long long)n * dim;
  GRID_LOOP(i, total) {
    long long r = i / dim, c = i % dim;
    dst[i] = table[(long long)ids[r] * dim + c];
  }
}

// embedding_bwd_f32: one thread per column adds the rows in index order, so repeated ids
// accumulate deterministically without atomics.
extern "C" __global__ void embedding_bwd_f32(float* dtable, const float* dy, const int* ids, int n, int dim) {
  GRID_LOOP(c, (long long)dim) {
    for (int i = 0; i < n; i++) dtable[(long long)ids[i] * dim + c] += dy[(long long)i * dim + c];
  }
}

__device__ __forceinline__ void philox_block(unsigned long long key, unsigned long long ctr, unsigned int out[4]) {
  unsigned int c0 = (unsigned int)ctr, c1 = (unsigned int)(ctr >> 32), c2 = 0, c3 = 0;
  unsigned int k0 = (unsigned int)key, k1 = (unsigned int)(key >> 32);
#pragma unroll
  for (int r = 0; r < 10; r++) {
    unsigned int hi0 = __umulhi(0xD2511F53u, c0), lo0 = 0xD2511F53u * c0;
    unsigned int hi1 = __umulhi(0xCD9E8D57u, c2), lo1 = 0xCD9E8D57u * c2;
    unsigned int n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

extern "C" __global__ void rand_uniform_f32(float* dst, long long n, unsigned long long seed,
                                            unsigned long long offset, float lo, float hi) {
  double width = (double)hi - (double)lo;
  GRID_LOOP(j, (n + 3) / 4) {
    unsigned int w[4];
    philox_block(seed, offset + (unsigned long long)j, w);
    for (int t = 0; t < 4; t++) {
      long long i = 4 * j + t;
      if (i < n) dst[i] = (float)((double)lo + width * (double)((float)(w[t] >> 8) * (1.0f / 16777216.0f)));
    }
  }
}

extern "C" __global__ void rand_normal_f32(float* dst, long long n, unsigned long long seed,
                                           unsigned long long offset, float mean, float std) {
  GRID_LOOP(j, (n + 1) / 2) {
    unsigned int w[4];
    philox_block(seed, offset + (unsigned long long)j, w);
    double u1 = ((double)(w[0] >> 8) + 1.0) * (1.0 / 16777216.0);
    double u2 = (double)(w[1] >> 8) * (1.0 / 16777216.0);
    double r = sqrt(-2.0 * log(u1));
    double s, c;
    sincos(2.0 * 3.141592653589793 * u2, &s, &c);
    dst[2 * j] = (float)((double)mean + (double)std * (r * c));
    if (2 * j + 1 < n) dst[2 * j + 1] = (float)((double)mean + (double)std * (r * s));
  }
}

// adamw_f32 is one torch-style AdamW step (decoupled weight decay), the formula of
// trainerproc/optim's "adamw": decay = 1 − lr·wd, step_size = lr/bc1.
extern "C" __global__ void adamw_f32(float* w, const float* g, float* m, float* v, long long n, float decay,
                                     float beta1, float beta2, float eps, float step_size, float sqrt_bc2) {
  GRID_LOOP(i, n) {
    float gi = g[i];
    float wi = w[i] * decay;
    float mi = m[i] * beta1 + (1.f - beta1) * gi;
    float vi = v[i] * beta2 + (1.f - beta2) * gi * gi;
    float denom = (float)sqrt((double)vi) / sqrt_bc2 + eps;
    wi -= step_size * mi / denom;
    m[i] = mi;
    v[i] = vi;
    w[i] = wi;
  }
}

// lion_f32 is one Lion step as trainerproc/optim's "optimi-lion".
extern "C" __global__ void lion_f32(float* w, const float* g, float* m, long long n, float decay, float lr,
                                    float beta1, float beta2) {
  GRID_LOOP(i, n) {
    float mi = m[i], gi = g[i];
    float c = mi + (gi - mi) * (1.f - beta1);
    float sg = c > 0.f ? 1.f : (c < 0.f ? -1.f : 0.f);
    w[i] = w[i] * decay - lr * sg;
    m[i] = mi + (gi - mi) * (1.f - beta2);
  }
}
