// Layer norm with the adaLN modulate fused in (y = n·(woff + w[g]) + b[g]), its backward, and
// the row softmax. One block per row; statistics in double as in the CPU reference.
#include "common.cuh"

extern "C" __global__ void layernorm_f32(float* y, float* mean, float* rstd, const float* x, const float* w,
                                         const float* b, int rows, int cols, int per, float woff, float eps) {
  __shared__ double sh[256];
  int r = blockIdx.x;
  const float* xr = x + (long long)r * cols;
  float* yr = y + (long long)r * cols;
  double s = 0;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) s += (double)xr[c];
  double mu = block_sum(s, sh) / cols;
  double v = 0;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) {
    double d = (double)xr[c] - mu;
    v += d * d;
  }
  double rs = 1.0 / sqrt(block_sum(v, sh) / cols + (double)eps);
  if (threadIdx.x == 0) {
    mean[r] = (float)mu;
    rstd[r] = (float)rs;
  }
  long long g = r / per;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) {
    double n = ((double)xr[c] - mu) * rs;
    double scale = w ? (double)woff + (double)w[g * cols + c] : 1.0;
    double out = n * scale;
    if (b) out += (double)b[g * cols + c];
    yr[c] = (float)out;
  }
}

// layernorm_bwd_f32: dx = rstd·(dn − mean(dn) − n·mean(dn·n)) with dn = dy·scale. It uses the
// stored float32 mean and rstd, as the CPU backend does.
extern "C" __global__ void layernorm_bwd_f32(float* dx, const float* x, const float* w, const float* mean,
                                             const float* rstd, const float* dy, int rows, int cols, int per,
                                             float woff) {
  __shared__ double sh[256];
  int r = blockIdx.x;
  long long g = r / per;
  double mu = (double)mean[r], rs = (double)rstd[r];
  const float* xr = x + (long long)r * cols;
  const float* gr = dy + (long long)r * cols;
  double sdn = 0, sdnn = 0;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) {
    double dn = (double)gr[c];
    if (w) dn *= (double)woff + (double)w[g * cols + c];
    double n = ((double)xr[c] - mu) * rs;
    sdn += dn;
    sdnn += dn * n;
  }
  sdn = block_sum(sdn, sh) / cols;
  sdnn = block_sum(sdnn, sh) / cols;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) {
    double dn = (double)gr[c];
    if (w) dn *= (double)woff + (double)w[g * cols + c];
    double n = ((double)xr[c] - mu) * rs;
    dx[(long long)r * cols + c] = (float)(rs * (dn - sdn - n * sdnn));
  }
}

// layernorm_param_grad_f32: dw[g,c] = Σ_r dy·n and db[g,c] = Σ_r dy over the group's rows
// (either may be null). Block (32, 8) like reduce_cols_f32; grid (⌈cols/32⌉, groups).
extern "C" __global__ void layernorm_param_grad_f32(float* dw, float* db, const float* x, const float* dy,
                                                    const float* mean, const float* rstd, int groups, int per,
                                                    int cols) {
  __shared__ double shw[8][33];
  __shared__ double shb[8][33];
  int c = blockIdx.x * 32 + threadIdx.x;
  int g = blockIdx.y;
  double aw = 0, ab = 0;
  if (c < cols) {
    for (int j = threadIdx.y; j < per; j += 8) {
      long long r = (long long)g * per + j;
      long long i = r * cols + c;
      double d = (double)dy[i];
      ab += d;
      // The CPU backend rounds dy·n to float32 before summing; do the same.
      aw += (double)(float)(d * ((double)x[i] - (double)mean[r]) * (double)rstd[r]);
    }
  }
  shw[threadIdx.y][threadIdx.x] = aw;
  shb[threadIdx.y][threadIdx.x] = ab;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    double sw = 0, sb = 0;
#pragma unroll
    for (int k = 0; k < 8; k++) {
      sw += shw[k][threadIdx.x];
      sb += shb[k][threadIdx.x];
    }
    if (dw) dw[(long long)g * cols + c] = (float)sw;
    if (db) db[(long long)g * cols + c] = (float)sb;
  }
}

// softmax_row writes softmax(x) of one row into d (in place allowed) and returns log Σ exp(x),
// +inf for a row that is all −inf (its output is zero, as the CPU backend's).
__device__ float softmax_row(float* d, const float* x, int cols, double* shd, float* shf) {
  float m = -INFINITY;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) m = fmaxf(m, x[c]);
  m = block_max(m, shf);
  if (m == -INFINITY) {
    for (int c = threadIdx.x; c < cols; c += blockDim.x) d[c] = 0.f;
    return INFINITY;
  }
  double s = 0;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) {
    double e = exp((double)x[c] - (double)m);
    s += e;
  }
  s = block_sum(s, shd);
  double inv = 1.0 / s;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) d[c] = (float)(exp((double)x[c] - (double)m) * inv);
  return (float)((double)m + log(s));
}

extern "C" __global__ void softmax_f32(float* dst, const float* x, int rows, int cols) {
  __shared__ double shd[256];
  __shared__ float shf[256];
  long long r = blockIdx.x;
  softmax_row(dst + r * cols, x + r * cols, cols, shd, shf);
}

extern "C" __global__ void softmax_bwd_f32(float* dx, const float* y, const float* dy, int rows, int cols) {
  __shared__ double sh[256];
  long long r = blockIdx.x;
  const float* yr = y + r * cols;
  const float* gr = dy + r * cols;
  double dot = 0;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) dot += (double)yr[c] * (double)gr[c];
  dot = block_sum(dot, sh);
  for (int c = threadIdx.x; c < cols; c += blockDim.x) dx[r * cols + c] = (float)((double)yr[c] * ((double)gr[c] - dot));
}

// attn_mask_softmax_f32 is the unfused attention's middle step over a chunk of heads: each row of
// s (hc·nq rows of nk scores) gets the key mask (−inf where mask is 0), a softmax in place,
// and its log-sum-exp in lse[head·nq + q].
extern "C" __global__ void attn_mask_softmax_f32(float* s, float* lse, const float* mask, int heads, int nq,
                                                 int nk, int head0) {
  __shared__ double shd[256];
  __shared__ float shf[256];
  long long r = blockIdx.x;
  int head = head0 + (int)(r / nq);
  float* row = s + r * nk;
  if (mask) {
    const float* mrow = mask + (long long)(head / heads) * nk;
    for (int j = threadIdx.x; j < nk; j += blockDim.x)
      if (mrow[j] == 0.f) row[j] = -INFINITY;
    __syncthreads();
  }
  float l = softmax_row(row, row, nk, shd, shf);
  if (threadIdx.x == 0) lse[(long long)head * nq + r % nq] = l;
}

// attn_bwd_prob_f32 recomputes P = exp(S − LSE) in place (masked keys give 0).
extern "C" __global__ void attn_bwd_prob_f32(float* s, const float* lse, const float* mask, int heads, int nq,
                                             int nk, int head0) {
  long long r = blockIdx.x;
  int head = head0 + (int)(r / nq);
  double l = (double)lse[(long long)head * nq + r % nq];
  float* row = s + r * nk;
  const float* mrow = mask ? mask + (long long)(head / heads) * nk : 0;
  for (int j = threadIdx.x; j < nk; j += blockDim.x) {
    if (mrow && mrow[j] == 0.f) {
      row[j] = 0.f;
      continue;
    }
    row[j] = (float)exp((double)row[j] - l);
  }
}

// attn_bwd_ds_f32 turns dP into dS = P ⊙ (dP − rowsum(dO ⊙ O)) in place.
extern "C" __global__ void attn_bwd_ds_f32(float* dp, const float* p, const float* o, const float* dout, int nq,
                                           int nk, int dh, int head0) {
  __shared__ double sh[256];
  long long r = blockIdx.x;
  long long qi = ((long long)head0 * nq + r) * dh;
  double di = 0;
  for (int c = threadIdx.x; c < dh; c += blockDim.x) di += (double)dout[qi + c] * (double)o[qi + c];
  di = block_sum(di, sh);
  const float* pr = p + r * nk;
  float* dr = dp + r * nk;
  for (int j = threadIdx.x; j < nk; j += blockDim.x) dr[j] = (float)((double)pr[j] * ((double)dr[j] - di));
}

// rmsnorm_f32 is T5's norm, one block per row: rstd = 1/√(mean(x²) + eps) (squares summed in
// float32 per thread and pairwise across the block), y = x·rstd·w (w optional).
extern "C" __global__ void rmsnorm_f32(float* y, float* rstd, const float* x, const float* w, int rows, int cols,
                                       float eps) {
  __shared__ float sh[256];
  long long r = blockIdx.x;
  const float* xr = x + r * cols;
  float s = 0.f;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) s += xr[c] * xr[c];
  s = block_sum(s, sh);
  float rs = (float)(1.0 / sqrt((double)s / cols + (double)eps));
  if (threadIdx.x == 0) rstd[r] = rs;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) {
    float v = xr[c] * rs;
    y[r * cols + c] = w ? v * w[c] : v;
  }
}

// rmsnorm_bwd_f32: with g = dy·w, dx = rstd·(g − x·rstd²·mean(g·x)), one block per row.
extern "C" __global__ void rmsnorm_bwd_f32(float* dx, const float* x, const float* w, const float* rstd,
                                           const float* dy, int rows, int cols) {
  __shared__ float sh[256];
  long long r = blockIdx.x;
  const float* xr = x + r * cols;
  const float* gr = dy + r * cols;
  float s = 0.f;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) {
    float g = w ? gr[c] * w[c] : gr[c];
    s += g * xr[c];
  }
  s = block_sum(s, sh);
  float rs = rstd[r];
  float k = rs * rs * s / (float)cols;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) {
    float g = w ? gr[c] * w[c] : gr[c];
    dx[r * cols + c] = rs * (g - xr[c] * k);
  }
}

// rmsnorm_weight_grad_f32: dw[c] = Σ_r dy·x·rstd[r]. Block (32, 8) like reduce_cols_f32:
// x walks columns, y rows; the eight partial sums are added in order.
extern "C" __global__ void rmsnorm_weight_grad_f32(float* dw, const float* x, const float* rstd, const float* dy,
                                                   int rows, int cols) {
  __shared__ float sh[8][33];
  int c = blockIdx.x * 32 + threadIdx.x;
  float acc = 0.f;
  if (c < cols) {
    for (int r = threadIdx.y; r < rows; r += 8) {
      long long i = (long long)r * cols + c;
      acc += dy[i] * x[i] * rstd[r];
    }
  }
  sh[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    float s = 0.f;
#pragma unroll
    for (int k = 0; k < 8; k++) s += sh[k][threadIdx.x];
    dw[c] = s;
  }
}
