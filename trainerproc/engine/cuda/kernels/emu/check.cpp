// check.cpp runs the kernels of conv.cu, groupnorm.cu and norm.cu (the Conv2D, GroupNorm,
// RMSNorm and UpsampleNearest ops) on the host under emu.h, with the host-side sequence of
// ops_conv_cuda.go (panels, chunk counts; GEMMs as plain loops), against float64 references.
// It checks the kernel sources themselves (index arithmetic, barriers, block sums) where no
// GPU is at hand; the parity check on a device (CheckParity) remains the real test. From the
// repository root:
//
//	K=trainerproc/engine/cuda/kernels
//	g++ -std=c++20 -O1 -pthread -I$K/emu/inc -I$K -x c++ $K/emu/check.cpp -o /tmp/kcheck && /tmp/kcheck
//
// (one OS thread per emulated CUDA thread: seconds of CPU, minutes of wall time on a busy
// machine). planConvPanels and normChunks are restated below; keep them in step with
// plan_conv.go.
#include "emu.h"
#include "conv.cu"
#include "groupnorm.cu"
#include "norm.cu"
#include <cstdio>
#include <random>
typedef std::vector<float> vf;
typedef std::vector<double> vd;
std::mt19937_64 rng(1);
vf randv(size_t n, double scale = 1, double off = 0) {
  std::normal_distribution<double> nd;
  vf v(n);
  for (auto& x : v) x = (float)(off + scale * nd(rng));
  return v;
}
int fails = 0;
void check(const char* what, const vf& g, const vd& r, double tol) {
  double num = 0, den = 0;
  bool nan = false;
  for (size_t i = 0; i < r.size(); i++) {
    if (std::isnan(g[i])) nan = true;
    num += (g[i] - r[i]) * (g[i] - r[i]);
    den += r[i] * r[i];
  }
  double e = den > 0 ? sqrt(num / den) : sqrt(num);
  bool ok = !nan && e <= tol;
  if (!ok) fails++;
  printf("%s\t%-60s rel %.2e (tol %.0e)%s\n", ok ? "PASS" : "FAIL", what, e, tol, nan ? " NaN" : "");
}
const dim3 FLAT{3, 1, 1}, B256{256, 1, 1};

struct Panel { int n0, samples, p0, pc; };
std::vector<Panel> plan(int n, int k, int pix, long long budget) {  // planConvPanels in plan_conv.go
  std::vector<Panel> out;
  long long per_pixel = (long long)std::max(k, 1) * 4, img = per_pixel * pix;
  if (img <= budget) {
    int per = (int)std::min((long long)n, budget / img);
    for (int n0 = 0; n0 < n; n0 += per) out.push_back({n0, std::min(per, n - n0), 0, pix});
    return out;
  }
  int pc = (int)std::max(1LL, std::min((long long)pix, budget / per_pixel));
  for (int n0 = 0; n0 < n; n0++)
    for (int p0 = 0; p0 < pix; p0 += pc) out.push_back({n0, 1, p0, std::min(pc, pix - p0)});
  return out;
}

void conv(int N, int C, int H, int W, int O, int KH, int KW, int S, int pt, int pb, int pl, int pr, long long budget) {
  int OH = (H + pt + pb - KH) / S + 1, OW = (W + pl + pr - KW) / S + 1, K = C * KH * KW, P = OH * OW;
  vf x = randv((size_t)N * C * H * W), w = randv((size_t)O * K), b = randv(O), dy = randv((size_t)N * O * P);
  vd ry((size_t)N * O * P), rdx(x.size()), rdw(w.size()), rdb(O);
  for (int n = 0; n < N; n++)
    for (int o = 0; o < O; o++)
      for (int oy = 0; oy < OH; oy++)
        for (int ox = 0; ox < OW; ox++) {
          size_t yi = ((size_t)(n * O + o) * OH + oy) * OW + ox;
          double acc = b[o];
          rdb[o] += dy[yi];
          for (int c = 0; c < C; c++)
            for (int i = 0; i < KH; i++)
              for (int j = 0; j < KW; j++) {
                int iy = oy * S + i - pt, ix = ox * S + j - pl;
                if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                size_t xi = ((size_t)(n * C + c) * H + iy) * W + ix, wi = ((size_t)(o * C + c) * KH + i) * KW + j;
                acc += (double)w[wi] * x[xi];
                rdx[xi] += (double)w[wi] * dy[yi];
                rdw[wi] += (double)x[xi] * dy[yi];
              }
          ry[yi] = acc;
        }
  vf y((size_t)N * O * P), dx(x.size(), 0.f), dw(w.size(), 0.f);
  for (int n = 0; n < N; n++)
    for (int o = 0; o < O; o++)
      for (int q = 0; q < P; q++) y[(size_t)(n * O + o) * P + q] = b[o];
  auto panels = plan(N, K, P, budget);
  for (auto pn : panels) {
    vf col((size_t)pn.samples * K * pn.pc, NAN);
    const float* xp = x.data() + (size_t)pn.n0 * C * H * W;
    launch(FLAT, B256, [&] { im2col_f32(col.data(), xp, pn.samples, C, H, W, KH, KW, S, pt, pl, OW, pn.p0, pn.pc); });
    vf dcol(col.size(), 0.f);
    for (int s = 0; s < pn.samples; s++)
      for (int o = 0; o < O; o++)
        for (int k = 0; k < K; k++)
          for (int q = 0; q < pn.pc; q++) {
            size_t yi = (size_t)((pn.n0 + s) * O + o) * P + pn.p0 + q, ci = ((size_t)s * K + k) * pn.pc + q;
            y[yi] += w[(size_t)o * K + k] * col[ci];
            dw[(size_t)o * K + k] += dy[yi] * col[ci];
            dcol[ci] += w[(size_t)o * K + k] * dy[yi];
          }
    int oy0 = pn.p0 / OW, oy1 = (pn.p0 + pn.pc - 1) / OW;  // panelRows
    int y0 = std::max(0, oy0 * S - pt), y1 = std::min(H - 1, oy1 * S + KH - 1 - pt), rows = y1 - y0 + 1;
    if (rows <= 0) continue;
    float* dxp = dx.data() + (size_t)pn.n0 * C * H * W;
    launch(FLAT, B256, [&] {
      col2im_f32(dxp, dcol.data(), pn.samples, C, H, W, KH, KW, S, pt, pl, OH, OW, pn.p0, pn.pc, y0, rows);
    });
  }
  char name[200];
  snprintf(name, sizeof name, "conv N%d C%d %dx%d O%d k%dx%d s%d pad %d,%d,%d,%d: %zu panels", N, C, H, W, O, KH, KW, S,
           pt, pb, pl, pr, panels.size());
  std::string nm(name);
  check((nm + " y").c_str(), y, ry, 1e-5);
  check((nm + " dx").c_str(), dx, rdx, 1e-5);
  check((nm + " dw").c_str(), dw, rdw, 1e-5);
}

void normChunks(int rows, int length, int& chunks, int& chunk) {
  if (length <= 0) { chunks = 1; chunk = 0; return; }
  int want = (1024 + std::max(rows, 1) - 1) / std::max(rows, 1);
  int limit = std::min(64, (length + 4096 - 1) / 4096);
  chunks = std::max(1, std::min(want, limit));
  chunk = (length + chunks - 1) / chunks;
  chunks = (length + chunk - 1) / chunk;
}

void groupnorm(int N, int C, int HW, int G, bool affine) {
  int cpg = C / G, ng = N * G, nc = N * C, L = cpg * HW;
  size_t total = (size_t)N * C * HW;
  vf x = randv(total, 2, 3), dy = randv(total), w = randv(C), b = randv(C);
  const float* wp = affine ? w.data() : nullptr;
  const float* bp = affine ? b.data() : nullptr;
  vd rmean(ng), rrstd(ng), ry(total), rdx(total), rdw(C), rdb(C);
  for (int g = 0; g < ng; g++) {
    double mu = 0, v = 0;
    for (int i = 0; i < L; i++) mu += x[(size_t)g * L + i];
    mu /= L;
    for (int i = 0; i < L; i++) v += (x[(size_t)g * L + i] - mu) * (x[(size_t)g * L + i] - mu);
    double rs = 1 / sqrt(v / L + 1e-6);
    rmean[g] = mu, rrstd[g] = rs;
    double sdn = 0, sdnx = 0;
    for (int i = 0; i < L; i++) {
      size_t idx = (size_t)g * L + i;
      int ch = (int)((idx / HW) % C);
      double xh = (x[idx] - mu) * rs, ww = affine ? w[ch] : 1;
      ry[idx] = xh * ww + (affine ? b[ch] : 0);
      sdn += dy[idx] * ww;
      sdnx += dy[idx] * ww * xh;
      rdw[ch] += dy[idx] * xh;
      rdb[ch] += dy[idx];
    }
    for (int i = 0; i < L; i++) {
      size_t idx = (size_t)g * L + i;
      int ch = (int)((idx / HW) % C);
      double xh = (x[idx] - mu) * rs, ww = affine ? w[ch] : 1;
      rdx[idx] = rs * (dy[idx] * ww - sdn / L - xh * sdnx / L);
    }
  }
  int chunks, chunk;
  normChunks(ng, L, chunks, chunk);
  vf part((size_t)ng * chunks * 2, NAN), mean(ng, NAN), rstd(ng, NAN), y(total, NAN);
  launch({(unsigned)ng, (unsigned)chunks, 1}, B256, [&] { groupnorm_part_f32(part.data(), x.data(), ng, L, chunks, chunk); });
  launch(FLAT, B256, [&] { groupnorm_stats_f32(mean.data(), rstd.data(), part.data(), ng, L, chunks, chunk, 1e-6f); });
  launch(FLAT, B256, [&] {
    groupnorm_apply_f32(y.data(), x.data(), wp, bp, mean.data(), rstd.data(), C, HW, cpg, (long long)total);
  });
  char name[200];
  snprintf(name, sizeof name, "groupnorm N%d C%d HW%d G%d affine %d (%d chunks)", N, C, HW, G, affine, chunks);
  std::string nm(name);
  check((nm + " y").c_str(), y, ry, 1e-5);
  check((nm + " mean").c_str(), mean, rmean, 1e-6);
  check((nm + " rstd").c_str(), rstd, rrstd, 1e-6);
  int bch, bchunk;
  normChunks(nc, HW, bch, bchunk);
  vf bpart(((size_t)nc * bch + ng) * 2, NAN), dx(total, NAN), dw(C, NAN), db(C, NAN);
  float* gsum = bpart.data() + (size_t)nc * bch * 2;
  launch({(unsigned)nc, (unsigned)bch, 1}, B256, [&] {
    groupnorm_bwd_part_f32(bpart.data(), x.data(), dy.data(), mean.data(), rstd.data(), nc, HW, cpg, bch, bchunk);
  });
  launch(FLAT, B256, [&] { groupnorm_bwd_group_f32(gsum, bpart.data(), wp, ng, cpg, C, bch); });
  launch(FLAT, B256, [&] {
    groupnorm_bwd_dx_f32(dx.data(), x.data(), dy.data(), wp, mean.data(), rstd.data(), gsum, C, HW, cpg, (long long)total);
  });
  launch(FLAT, B256, [&] { groupnorm_param_grad_f32(dw.data(), db.data(), bpart.data(), N, C, bch); });
  check((nm + " dx").c_str(), dx, rdx, 1e-5);
  check((nm + " dw").c_str(), dw, rdw, 1e-5);
  check((nm + " db").c_str(), db, rdb, 1e-5);
}

void rmsnorm(int R, int Cc, bool weight) {
  size_t n = (size_t)R * Cc;
  vf x = randv(n), dy = randv(n), w = randv(Cc);
  const float* wp = weight ? w.data() : nullptr;
  vd ry(n), rrs(R), rdx(n), rdw(Cc);
  for (int r = 0; r < R; r++) {
    double ss = 0, s = 0;
    for (int c = 0; c < Cc; c++) ss += (double)x[r * Cc + c] * x[r * Cc + c];
    double rs = 1 / sqrt(ss / Cc + 1e-6);
    rrs[r] = rs;
    for (int c = 0; c < Cc; c++) {
      double ww = weight ? w[c] : 1;
      ry[r * Cc + c] = x[r * Cc + c] * rs * ww;
      s += dy[r * Cc + c] * ww * x[r * Cc + c];
      rdw[c] += dy[r * Cc + c] * x[r * Cc + c] * rs;
    }
    for (int c = 0; c < Cc; c++) {
      double ww = weight ? w[c] : 1;
      rdx[r * Cc + c] = rs * (dy[r * Cc + c] * ww - x[r * Cc + c] * rs * rs * s / Cc);
    }
  }
  vf y(n, NAN), rs(R, NAN), dx(n, NAN), dw(Cc, NAN);
  launch({(unsigned)R, 1, 1}, B256, [&] { rmsnorm_f32(y.data(), rs.data(), x.data(), wp, R, Cc, 1e-6f); });
  launch({(unsigned)R, 1, 1}, B256, [&] { rmsnorm_bwd_f32(dx.data(), x.data(), wp, rs.data(), dy.data(), R, Cc); });
  launch({(unsigned)((Cc + 31) / 32), 1, 1}, {32, 8, 1},
         [&] { rmsnorm_weight_grad_f32(dw.data(), x.data(), rs.data(), dy.data(), R, Cc); });
  char name[100];
  snprintf(name, sizeof name, "rmsnorm %dx%d weight %d", R, Cc, weight);
  std::string nm(name);
  check((nm + " y").c_str(), y, ry, 1e-6);
  check((nm + " rstd").c_str(), rs, rrs, 1e-6);
  check((nm + " dx").c_str(), dx, rdx, 1e-5);
  check((nm + " dw").c_str(), dw, rdw, 1e-5);
}

void upsample(int NC, int H, int W, int F) {
  size_t ns = (size_t)NC * H * W, nl = ns * F * F;
  vf x = randv(ns), g = randv(nl);
  vd ry(nl), rdx(ns);
  for (int r = 0; r < NC; r++)
    for (int yy = 0; yy < H * F; yy++)
      for (int xx = 0; xx < W * F; xx++) {
        size_t li = ((size_t)r * H * F + yy) * W * F + xx, si = ((size_t)r * H + yy / F) * W + xx / F;
        ry[li] = x[si];
        rdx[si] += g[li];
      }
  vf y(nl, NAN), dx(ns, NAN);
  launch(FLAT, B256, [&] { upsample_nearest_f32(y.data(), x.data(), NC, H, W, F); });
  launch(FLAT, B256, [&] { upsample_nearest_bwd_f32(dx.data(), g.data(), NC, H, W, F); });
  char name[100];
  snprintf(name, sizeof name, "upsample NC%d %dx%d x%d", NC, H, W, F);
  std::string nm(name);
  check((nm + " y").c_str(), y, ry, 0);
  check((nm + " dx").c_str(), dx, rdx, 1e-6);
}

int main() {
  conv(2, 3, 9, 7, 4, 3, 3, 1, 1, 1, 1, 1, 1 << 20);
  conv(2, 3, 9, 7, 4, 3, 3, 1, 1, 1, 1, 1, 27 * 4 * 10);  // 10-pixel panels
  conv(2, 4, 16, 12, 3, 3, 3, 2, 0, 1, 0, 1, 1 << 20);     // VAE downsampler
  conv(1, 4, 16, 12, 3, 3, 3, 2, 0, 1, 0, 1, 36 * 4 * 7);  // ... in 7-pixel panels
  conv(1, 2, 9, 5, 2, 2, 3, 3, 2, 0, 1, 0, 4);             // odd kernel, stride 3, one-pixel panels
  conv(3, 2, 4, 4, 2, 1, 1, 2, 0, 0, 0, 0, 1 << 20);       // 1×1 stride 2 (not direct)
  conv(1, 1, 3, 3, 1, 3, 3, 1, 3, 3, 3, 3, 9 * 4 * 3);     // panels of padding only
  groupnorm(2, 8, 300, 4, true);
  groupnorm(1, 4, 3 * 4096 + 7, 2, true);  // several chunks a group, short last chunk
  groupnorm(3, 6, 50, 3, false);
  groupnorm(2, 32, 64, 32, true);
  rmsnorm(37, 512, true);
  rmsnorm(4, 4096, false);
  rmsnorm(300, 64, true);
  rmsnorm(3, 5, true);
  upsample(6, 7, 5, 2);
  upsample(2, 3, 4, 3);
  upsample(2, 3, 4, 1);
  printf("%d failures\n", fails);
  return fails != 0;
}
