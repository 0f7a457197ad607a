// Group norm over NCHW activations, forward and backward. A group of sample n is the
// contiguous run of C/G channels × HW pixels, so its statistics are those of one row of
// length cpg·hw. Rows are split into chunks (grid (rows, chunks)): each block sums its chunk
// in float32 per thread and pairwise across the block, a second kernel combines the chunks
// of a row in a fixed order. No atomics anywhere, so results are bit-reproducible.
#include "common.cuh"

// groupnorm_part_f32 writes, for chunk k of row r ([k·chunk, min(len, (k+1)·chunk))), the
// chunk's mean and its sum of squared deviations from that mean (two passes over the chunk,
// the second from cache): part[(r·chunks + k)·2 + {0, 1}].
extern "C" __global__ void groupnorm_part_f32(float* part, const float* x, int rows, long long len, int chunks,
                                              long long chunk) {
  __shared__ float sh[256];
  long long r = blockIdx.x;
  int k = blockIdx.y;
  long long lo = (long long)k * chunk, hi = min(len, lo + chunk);
  const float* xr = x + r * len;
  float s = 0.f;
  for (long long i = lo + threadIdx.x; i < hi; i += blockDim.x) s += xr[i];
  float mu = block_sum(s, sh);
  if (hi > lo) mu /= (float)(hi - lo);
  float q = 0.f;
  for (long long i = lo + threadIdx.x; i < hi; i += blockDim.x) {
    float d = xr[i] - mu;
    q += d * d;
  }
  q = block_sum(q, sh);
  if (threadIdx.x == 0) {
    part[(r * chunks + k) * 2] = mu;
    part[(r * chunks + k) * 2 + 1] = q;
  }
}

// groupnorm_stats_f32 combines a row's chunks (Chan's parallel variance, chunks in order, in
// double) into its mean and 1/√(var + eps), var being the population variance.
extern "C" __global__ void groupnorm_stats_f32(float* mean, float* rstd, const float* part, int rows, long long len,
                                               int chunks, long long chunk, float eps) {
  GRID_LOOP(r, (long long)rows) {
    const float* pr = part + r * chunks * 2;
    double mu = 0;
    for (int k = 0; k < chunks; k++) {
      long long m = max(0LL, min(chunk, len - (long long)k * chunk));
      mu += (double)m * (double)pr[2 * k];
    }
    mu /= (double)len;
    double m2 = 0;
    for (int k = 0; k < chunks; k++) {
      long long m = max(0LL, min(chunk, len - (long long)k * chunk));
      double d = (double)pr[2 * k] - mu;
      m2 += (double)pr[2 * k + 1] + (double)m * d * d;
    }
    mean[r] = (float)mu;
    rstd[r] = (float)(1.0 / sqrt(m2 / (double)len + (double)eps));
  }
}

// groupnorm_apply_f32: y = (x − mean[g])·rstd[g]·w[c] + b[c] (w, b optional) over total =
// N·C·hw elements; channel row n·C + c belongs to group row (n·C + c)/cpg.
extern "C" __global__ void groupnorm_apply_f32(float* y, const float* x, const float* w, const float* b,
                                               const float* mean, const float* rstd, int c, int hw, int cpg,
                                               long long total) {
  GRID_LOOP(i, total) {
    long long row = i / hw;
    int ch = (int)(row % c);
    long long g = row / cpg;
    float v = (x[i] - mean[g]) * rstd[g];
    if (w) v *= w[ch];
    if (b) v += b[ch];
    y[i] = v;
  }
}

// groupnorm_bwd_part_f32 sums, for chunk k of channel row r (n·C + c, hw pixels), dy and
// dy·x̂ (x̂ the normalised input): part[(r·chunks + k)·2 + {0, 1}].
extern "C" __global__ void groupnorm_bwd_part_f32(float* part, const float* x, const float* dy, const float* mean,
                                                  const float* rstd, int rows, int hw, int cpg, int chunks,
                                                  int chunk) {
  __shared__ float sh[256];
  long long r = blockIdx.x;
  int k = blockIdx.y;
  long long g = r / cpg;
  float mu = mean[g], rs = rstd[g];
  int lo = k * chunk, hi = min(hw, lo + chunk);
  const float* xr = x + r * hw;
  const float* gr = dy + r * hw;
  float s1 = 0.f, s2 = 0.f;
  for (int i = lo + threadIdx.x; i < hi; i += blockDim.x) {
    float d = gr[i];
    s1 += d;
    s2 += d * ((xr[i] - mu) * rs);
  }
  s1 = block_sum(s1, sh);
  s2 = block_sum(s2, sh);
  if (threadIdx.x == 0) {
    part[(r * chunks + k) * 2] = s1;
    part[(r * chunks + k) * 2 + 1] = s2;
  }
}

// groupnorm_bwd_group_f32 turns the channel sums into each group's Σ dn and Σ dn·x̂ with
// dn = dy·w[c] (channels and chunks in order, in double): gsum[g·2 + {0, 1}].
extern "C" __global__ void groupnorm_bwd_group_f32(float* gsum, const float* part, const float* w, int ng, int cpg,
                                                   int c, int chunks) {
  GRID_LOOP(g, (long long)ng) {
    double a = 0, b = 0;
    for (int j = 0; j < cpg; j++) {
      long long row = g * cpg + j;
      double ww = w ? (double)w[row % c] : 1.0;
      double s1 = 0, s2 = 0;
      for (int k = 0; k < chunks; k++) {
        s1 += (double)part[(row * chunks + k) * 2];
        s2 += (double)part[(row * chunks + k) * 2 + 1];
      }
      a += ww * s1;
      b += ww * s2;
    }
    gsum[g * 2] = (float)a;
    gsum[g * 2 + 1] = (float)b;
  }
}

// groupnorm_bwd_dx_f32: dx = rstd·(dn − mean_g(dn) − x̂·mean_g(dn·x̂)), dn = dy·w[c].
extern "C" __global__ void groupnorm_bwd_dx_f32(float* dx, const float* x, const float* dy, const float* w,
                                                const float* mean, const float* rstd, const float* gsum, int c,
                                                int hw, int cpg, long long total) {
  double inv = 1.0 / ((double)cpg * (double)hw);
  GRID_LOOP(i, total) {
    long long row = i / hw;
    int ch = (int)(row % c);
    long long g = row / cpg;
    float rs = rstd[g];
    float xh = (x[i] - mean[g]) * rs;
    float dn = w ? dy[i] * w[ch] : dy[i];
    float mdn = (float)((double)gsum[2 * g] * inv), mdnx = (float)((double)gsum[2 * g + 1] * inv);
    dx[i] = rs * (dn - mdn - xh * mdnx);
  }
}

// groupnorm_param_grad_f32: dw[c] = Σ_n Σ dy·x̂ and db[c] = Σ_n Σ dy from the channel sums
// (samples and chunks in order, in double); either output may be null.
extern "C" __global__ void groupnorm_param_grad_f32(float* dw, float* db, const float* part, int n, int c,
                                                    int chunks) {
  GRID_LOOP(ch, (long long)c) {
    double sw = 0, sb = 0;
    for (int s = 0; s < n; s++) {
      long long row = (long long)s * c + ch;
      for (int k = 0; k < chunks; k++) {
        sb += (double)part[(row * chunks + k) * 2];
        sw += (double)part[(row * chunks + k) * 2 + 1];
      }
    }
    if (dw) dw[ch] = (float)sw;
    if (db) db[ch] = (float)sb;
  }
}
