#!/usr/bin/env python3
"""PyTorch side of bench/conv: times conv2d forward and forward+backward.

Usage: torch_conv.py THREADS N C O H W K STEPS WARMUP
Prints one JSON line {"fwd_s": median, "step_s": median, "torch": version}. Set
OMP_NUM_THREADS / OPENBLAS_NUM_THREADS to THREADS before starting Python.
"""
import json
import statistics
import sys
import time

import torch


def main():
    threads, n, c, o, h, w, k, steps, warmup = (int(a) for a in sys.argv[1:10])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(c, o, k, padding=k // 2)
    x = torch.randn(n, c, h, w, requires_grad=True)
    with torch.no_grad():
        g = torch.randn_like(conv(x))

    def fwd():
        with torch.no_grad():
            conv(x)

    def step():
        x.grad = None
        conv.zero_grad(set_to_none=True)
        conv(x).backward(g)

    out = {"torch": torch.__version__}
    for name, fn in (("fwd_s", fwd), ("step_s", step)):
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        out[name] = statistics.median(times)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
