// Host emulation of the CUDA features the kernels use, for checking kernel sources on a
// machine without a GPU (see check.cpp): every block runs as real threads with a barrier for
// __syncthreads, and __shared__ arrays become function statics (blocks run one at a time, so
// one copy is enough). Only what conv.cu, groupnorm.cu and norm.cu need is provided.
#pragma once
#include <algorithm>
#include <barrier>
#include <cmath>
#include <thread>
#include <vector>
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
struct dim3 { unsigned x = 1, y = 1, z = 1; };
thread_local dim3 threadIdx, blockIdx;
dim3 blockDim, gridDim;
std::barrier<>* g_bar;
inline void __syncthreads() { g_bar->arrive_and_wait(); }
using std::max;
using std::min;
template <class F>
void launch(dim3 grid, dim3 block, F f) {
  gridDim = grid;
  blockDim = block;
  int nt = block.x * block.y * block.z;
  for (unsigned bz = 0; bz < grid.z; bz++)
    for (unsigned by = 0; by < grid.y; by++)
      for (unsigned bx = 0; bx < grid.x; bx++) {
        std::barrier<> bar(nt);
        g_bar = &bar;
        std::vector<std::thread> ts;
        for (unsigned tz = 0; tz < block.z; tz++)
          for (unsigned ty = 0; ty < block.y; ty++)
            for (unsigned tx = 0; tx < block.x; tx++)
              ts.emplace_back([=] {
                threadIdx = {tx, ty, tz};
                blockIdx = {bx, by, bz};
                f();
              });
        for (auto& t : ts) t.join();
      }
}
