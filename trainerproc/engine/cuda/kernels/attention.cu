// Flash-style multi-head attention in [B, H, N, Dh] layout: the score matrix never reaches
// device memory. Forward: one thread per query row keeps q and the output accumulator in
// registers and streams K/V tiles through shared memory with an online softmax. Backward:
// dQ with one thread per query row and dK/dV with one thread per key row, each recomputing
// P = exp(scale·q·k − LSE), so every gradient element is summed by one thread in a fixed
// order (deterministic, no atomics). DM is the head dimension rounded up to a compiled size;
// Dh > 128 takes the unfused path (cuBLAS GEMMs + attn_mask_softmax_f32) on the Go side.
#include "common.cuh"

#define TK 32  // keys per shared-memory tile (forward, dQ)

template <int DM>
__device__ __forceinline__ void attn_fwd(float* o, float* lse, const float* q, const float* k, const float* v,
                                         const float* mask, int heads, int nq, int nk, int dh, float scale) {
  __shared__ float ks[TK][DM];
  __shared__ float vs[TK][DM];
  __shared__ float ms[TK];
  int bh = blockIdx.y;
  int qi = blockIdx.x * blockDim.x + threadIdx.x;
  bool active = qi < nq;
  const float* qp = q + ((long long)bh * nq + (active ? qi : 0)) * dh;
  float qr[DM], acc[DM];
#pragma unroll
  for (int d = 0; d < DM; d++) {
    qr[d] = (active && d < dh) ? qp[d] * scale : 0.f;
    acc[d] = 0.f;
  }
  float m = -INFINITY, l = 0.f;
  const float* kb = k + (long long)bh * nk * dh;
  const float* vb = v + (long long)bh * nk * dh;
  const float* mrow = mask ? mask + (long long)(bh / heads) * nk : 0;
  for (int j0 = 0; j0 < nk; j0 += TK) {
    int tk = min(TK, nk - j0);
    for (int e = threadIdx.x; e < TK * DM; e += blockDim.x) {
      int jj = e / DM, d = e % DM;
      bool in = jj < tk && d < dh;
      ks[jj][d] = in ? kb[(long long)(j0 + jj) * dh + d] : 0.f;
      vs[jj][d] = in ? vb[(long long)(j0 + jj) * dh + d] : 0.f;
    }
    for (int e = threadIdx.x; e < TK; e += blockDim.x) ms[e] = (e < tk && (!mrow || mrow[j0 + e] != 0.f)) ? 1.f : 0.f;
    __syncthreads();
    for (int jj = 0; jj < tk; jj++) {
      if (ms[jj] == 0.f) continue;
      float s = 0.f;
#pragma unroll
      for (int d = 0; d < DM; d++) s += qr[d] * ks[jj][d];
      float mn = fmaxf(m, s);
      float corr = __expf(m - mn);
      float p = __expf(s - mn);
      l = l * corr + p;
#pragma unroll
      for (int d = 0; d < DM; d++) acc[d] = acc[d] * corr + p * vs[jj][d];
      m = mn;
    }
    __syncthreads();
  }
  if (!active) return;
  float* op = o + ((long long)bh * nq + qi) * dh;
  float* lp = lse + (long long)bh * nq + qi;
  if (l == 0.f) {  // every key masked: zero output, as the CPU backend
#pragma unroll
    for (int d = 0; d < DM; d++)
      if (d < dh) op[d] = 0.f;
    *lp = INFINITY;
    return;
  }
  float inv = 1.f / l;
#pragma unroll
  for (int d = 0; d < DM; d++)
    if (d < dh) op[d] = acc[d] * inv;
  *lp = m + logf(l);
}

// attn_bwd_dq: dQ[i] = scale·Σ_j P_ij(dO_i·V_j − Δ_i)·K_j.
template <int DM>
__device__ __forceinline__ void attn_bwd_dq(float* dq, const float* q, const float* k, const float* v,
                                            const float* lse, const float* delta, const float* dout,
                                            const float* mask, int heads, int nq, int nk, int dh, float scale) {
  __shared__ float ks[TK][DM];
  __shared__ float vs[TK][DM];
  __shared__ float ms[TK];
  int bh = blockIdx.y;
  int qi = blockIdx.x * blockDim.x + threadIdx.x;
  bool active = qi < nq;
  long long row = (long long)bh * nq + (active ? qi : 0);
  float qr[DM], dor[DM], acc[DM];
#pragma unroll
  for (int d = 0; d < DM; d++) {
    bool in = active && d < dh;
    qr[d] = in ? q[row * dh + d] * scale : 0.f;
    dor[d] = in ? dout[row * dh + d] : 0.f;
    acc[d] = 0.f;
  }
  float l = active ? lse[row] : INFINITY;
  float di = active ? delta[row] : 0.f;
  const float* kb = k + (long long)bh * nk * dh;
  const float* vb = v + (long long)bh * nk * dh;
  const float* mrow = mask ? mask + (long long)(bh / heads) * nk : 0;
  for (int j0 = 0; j0 < nk; j0 += TK) {
    int tk = min(TK, nk - j0);
    for (int e = threadIdx.x; e < TK * DM; e += blockDim.x) {
      int jj = e / DM, d = e % DM;
      bool in = jj < tk && d < dh;
      ks[jj][d] = in ? kb[(long long)(j0 + jj) * dh + d] : 0.f;
      vs[jj][d] = in ? vb[(long long)(j0 + jj) * dh + d] : 0.f;
    }
    for (int e = threadIdx.x; e < TK; e += blockDim.x) ms[e] = (e < tk && (!mrow || mrow[j0 + e] != 0.f)) ? 1.f : 0.f;
    __syncthreads();
    for (int jj = 0; jj < tk; jj++) {
      if (ms[jj] == 0.f) continue;
      float s = 0.f, dp = 0.f;
#pragma unroll
      for (int d = 0; d < DM; d++) {
        s += qr[d] * ks[jj][d];
        dp += dor[d] * vs[jj][d];
      }
      float p = expf(s - l);
      float ds = p * (dp - di);
#pragma unroll
      for (int d = 0; d < DM; d++) acc[d] += ds * ks[jj][d];
    }
    __syncthreads();
  }
  if (!active) return;
#pragma unroll
  for (int d = 0; d < DM; d++)
    if (d < dh) dq[row * dh + d] = acc[d] * scale;
}

// attn_bwd_dkdv: dV[j] = Σ_i P_ij dO_i and dK[j] = scale·Σ_i P_ij(dO_i·V_j − Δ_i)·Q_i, one
// thread per key; the accumulators live in padded shared memory to spare registers.
template <int DM, int TQ, int NT>
__device__ __forceinline__ void attn_bwd_dkdv(float* dk, float* dv, const float* q, const float* k,
                                              const float* v, const float* lse, const float* delta,
                                              const float* dout, const float* mask, int heads, int nq, int nk,
                                              int dh, float scale) {
  __shared__ float qs[TQ][DM];
  __shared__ float dos[TQ][DM];
  __shared__ float ls[TQ], ds_[TQ];
  __shared__ float dka[NT][DM + 1];
  __shared__ float dva[NT][DM + 1];
  int bh = blockIdx.y;
  int kj = blockIdx.x * NT + threadIdx.x;
  bool active = kj < nk;
  const float* mrow = mask ? mask + (long long)(bh / heads) * nk : 0;
  bool live = active && (!mrow || mrow[kj] != 0.f);
  long long krow = (long long)bh * nk + (active ? kj : 0);
  float kr[DM], vr[DM];
#pragma unroll
  for (int d = 0; d < DM; d++) {
    bool in = active && d < dh;
    kr[d] = in ? k[krow * dh + d] * scale : 0.f;
    vr[d] = in ? v[krow * dh + d] : 0.f;
    dka[threadIdx.x][d] = 0.f;
    dva[threadIdx.x][d] = 0.f;
  }
  const float* qb = q + (long long)bh * nq * dh;
  const float* ob = dout + (long long)bh * nq * dh;
  for (int i0 = 0; i0 < nq; i0 += TQ) {
    int tq = min(TQ, nq - i0);
    for (int e = threadIdx.x; e < TQ * DM; e += NT) {
      int ii = e / DM, d = e % DM;
      bool in = ii < tq && d < dh;
      qs[ii][d] = in ? qb[(long long)(i0 + ii) * dh + d] : 0.f;
      dos[ii][d] = in ? ob[(long long)(i0 + ii) * dh + d] : 0.f;
    }
    for (int e = threadIdx.x; e < TQ; e += NT) {
      ls[e] = e < tq ? lse[(long long)bh * nq + i0 + e] : INFINITY;
      ds_[e] = e < tq ? delta[(long long)bh * nq + i0 + e] : 0.f;
    }
    __syncthreads();
    if (live) {
      for (int ii = 0; ii < tq; ii++) {
        float s = 0.f, dp = 0.f;
#pragma unroll
        for (int d = 0; d < DM; d++) {
          s += kr[d] * qs[ii][d];
          dp += vr[d] * dos[ii][d];
        }
        float p = expf(s - ls[ii]);
        float dsv = p * (dp - ds_[ii]);
#pragma unroll
        for (int d = 0; d < DM; d++) {
          dva[threadIdx.x][d] += p * dos[ii][d];
          dka[threadIdx.x][d] += dsv * qs[ii][d];
        }
      }
    }
    __syncthreads();
  }
  if (!active) return;
#pragma unroll
  for (int d = 0; d < DM; d++) {
    if (d < dh) {
      dk[krow * dh + d] = dka[threadIdx.x][d] * scale;
      dv[krow * dh + d] = dva[threadIdx.x][d];
    }
  }
}

#define ATTN_INSTANCES(DM, TQ)                                                                             \
  extern "C" __global__ void attn_fwd_d##DM(float* o, float* lse, const float* q, const float* k,            \
                                            const float* v, const float* mask, int heads, int nq, int nk,    \
                                            int dh, float scale) {                                           \
    attn_fwd<DM>(o, lse, q, k, v, mask, heads, nq, nk, dh, scale);                                           \
  }                                                                                                          \
  extern "C" __global__ void attn_bwd_dq_d##DM(float* dq, const float* q, const float* k, const float* v,     \
                                               const float* lse, const float* delta, const float* dout,      \
                                               const float* mask, int heads, int nq, int nk, int dh,         \
                                               float scale) {                                                \
    attn_bwd_dq<DM>(dq, q, k, v, lse, delta, dout, mask, heads, nq, nk, dh, scale);                          \
  }                                                                                                          \
  extern "C" __global__ void attn_bwd_dkdv_d##DM(float* dk, float* dv, const float* q, const float* k,       \
                                                 const float* v, const float* lse, const float* delta,       \
                                                 const float* dout, const float* mask, int heads, int nq,    \
                                                 int nk, int dh, float scale) {                              \
    attn_bwd_dkdv<DM, TQ, 32>(dk, dv, q, k, v, lse, delta, dout, mask, heads, nq, nk, dh, scale);            \
  }

ATTN_INSTANCES(16, 32)
ATTN_INSTANCES(32, 32)
ATTN_INSTANCES(64, 32)
ATTN_INSTANCES(80, 32)
ATTN_INSTANCES(128, 8)

// attn_bwd_delta_f32: Δ_i = Σ_d dO[i,d]·O[i,d], one thread per row.
extern "C" __global__ void attn_bwd_delta_f32(float* delta, const float* o, const float* dout, long long rows,
                                              int dh) {
  GRID_LOOP(r, rows) {
    double s = 0;
    for (int d = 0; d < dh; d++) s += (double)dout[r * dh + d] * (double)o[r * dh + d];
    delta[r] = (float)s;
  }
}
