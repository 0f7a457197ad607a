// Convolution panels (im2col / col2im around cuBLAS GEMMs) and nearest-neighbour upsampling,
// NCHW. A panel is `samples` images' output pixels [p0, p0+pc) (p = oy·ow + ox); its column
// matrix is [samples, C·KH·KW, pc], row k = (c·KH + i)·KW + j. Nothing accumulates with
// atomics: col2im and the upsampling backward gather per input element in a fixed order.
#include "common.cuh"

// im2col_f32 fills the panel's column matrix from x (pointing at the panel's first sample);
// taps that fall in the padding read zero.
extern "C" __global__ void im2col_f32(float* col, const float* x, int samples, int c, int h, int w, int kh, int kw,
                                      int stride, int pad_top, int pad_left, int ow, int p0, int pc) {
  long long k = (long long)c * kh * kw;
  long long total = (long long)samples * k * pc;
  GRID_LOOP(idx, total) {
    int q = (int)(idx % pc);
    long long t = idx / pc;
    int kk = (int)(t % k);
    int s = (int)(t / k);
    int j = kk % kw, i = (kk / kw) % kh, ch = kk / (kw * kh);
    int p = p0 + q;
    int oy = p / ow, ox = p % ow;
    int y = oy * stride + i - pad_top, xx = ox * stride + j - pad_left;
    float v = 0.f;
    if (y >= 0 && y < h && xx >= 0 && xx < w) v = x[(((long long)s * c + ch) * h + y) * w + xx];
    col[idx] = v;
  }
}

// col2im_f32 adds the panel's column gradients back onto dx (pointing at the panel's first
// sample) for input rows [y0, y0+yrows), the only rows the panel's pixels touch. Each thread
// owns one input element and sums its taps in (i, j) order, so the result does not depend on
// scheduling; panels run one after another in pixel order.
extern "C" __global__ void col2im_f32(float* dx, const float* dcol, int samples, int c, int h, int w, int kh, int kw,
                                      int stride, int pad_top, int pad_left, int oh, int ow, int p0, int pc, int y0,
                                      int yrows) {
  long long k = (long long)c * kh * kw;
  long long total = (long long)samples * c * yrows * w;
  GRID_LOOP(idx, total) {
    int xx = (int)(idx % w);
    long long t = idx / w;
    int y = y0 + (int)(t % yrows);
    t /= yrows;
    int ch = (int)(t % c);
    int s = (int)(t / c);
    const float* dc = dcol + (long long)s * k * pc;
    float acc = 0.f;
    for (int i = 0; i < kh; i++) {
      int ny = y + pad_top - i;
      if (ny < 0 || ny % stride != 0) continue;
      int oy = ny / stride;
      if (oy >= oh) continue;
      for (int j = 0; j < kw; j++) {
        int nx = xx + pad_left - j;
        if (nx < 0 || nx % stride != 0) continue;
        int ox = nx / stride;
        if (ox >= ow) continue;
        int q = oy * ow + ox - p0;
        if (q < 0 || q >= pc) continue;
        acc += dc[((long long)(ch * kh + i) * kw + j) * pc + q];
      }
    }
    dx[(((long long)s * c + ch) * h + y) * w + xx] += acc;
  }
}

// image_index splits a flat index into [images, h, w] into its column x, row y and image.
__device__ __forceinline__ long long image_index(long long idx, int w, int h, int* x, int* y) {
  *x = (int)(idx % w);
  long long t = idx / w;
  *y = (int)(t % h);
  return t / h;
}

// upsample_nearest_f32: dst[r, y, x] = src[r, y/f, x/f] over nc·(h·f)·(w·f) elements.
extern "C" __global__ void upsample_nearest_f32(float* dst, const float* src, int nc, int h, int w, int f) {
  int wf = w * f, hf = h * f;
  GRID_LOOP(idx, (long long)nc * hf * wf) {
    int x, y;
    long long r = image_index(idx, wf, hf, &x, &y);
    dst[idx] = src[(r * h + y / f) * w + x / f];
  }
}

// upsample_nearest_bwd_f32: dx[r, y, x] = Σ_{i,j<f} dy[r, y·f+i, x·f+j], one thread per dx
// element summing its block in row order.
extern "C" __global__ void upsample_nearest_bwd_f32(float* dx, const float* dy, int nc, int h, int w, int f) {
  long long wf = (long long)w * f;
  GRID_LOOP(idx, (long long)nc * h * w) {
    int x, y;
    long long r = image_index(idx, w, h, &x, &y);
    const float* b = dy + (r * h * f + (long long)y * f) * wf + (long long)x * f;
    float acc = 0.f;
    for (int i = 0; i < f; i++)
      for (int j = 0; j < f; j++) acc += b[i * wf + j];
    dx[idx] = acc;
  }
}
