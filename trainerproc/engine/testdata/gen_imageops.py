#!/usr/bin/python3
"""Writes imageops_golden.json: PyTorch's own conv2d, group_norm, interpolate(nearest) and a
T5-style RMS norm (x·rsqrt(mean(x²)+eps)·w), with the gradients of sum(y·r) for a fixed
random r, all in float64. TestImageOpsMatchTorch (ops_conv_test.go) replays them.

Rerun from the repository root with Debian's interpreter (torch 1.13, no other package):

    /usr/bin/python3 trainerproc/engine/testdata/gen_imageops.py

It uses only torch.nn.functional; the RMS norm is the one-line formula above because torch
1.13 has no rms_norm. No shims.
"""
import json
import os

import torch
import torch.nn.functional as F

torch.manual_seed(13)
torch.set_default_dtype(torch.float64)


def t(*shape):
    return torch.randn(*shape, requires_grad=True)


def conv(stride, pad):
    # pad is (top, bottom, left, right); F.pad takes (left, right, top, bottom).
    def f(x, w, b=None):
        return F.conv2d(F.pad(x, (pad[2], pad[3], pad[0], pad[1])), w, b, stride=stride)
    return f


def rms(eps):
    def f(x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w
    return f


CASES = [
    ("conv_downsample", {"stride": 2, "pad": [0, 1, 0, 1]}, conv(2, (0, 1, 0, 1)), [("x", (2, 3, 7, 6)), ("w", (4, 3, 3, 3)), ("b", (4,))]),
    ("conv_same", {"stride": 1, "pad": [1, 1, 1, 1]}, conv(1, (1, 1, 1, 1)), [("x", (1, 2, 5, 4)), ("w", (3, 2, 3, 3)), ("b", (3,))]),
    ("conv_1x1_nobias", {"stride": 1, "pad": [0, 0, 0, 0]}, conv(1, (0, 0, 0, 0)), [("x", (2, 5, 4, 3)), ("w", (2, 5, 1, 1))]),
    ("groupnorm", {"groups": 3, "eps": 1e-6}, lambda x, w, b: F.group_norm(x, 3, w, b, 1e-6), [("x", (2, 6, 4, 5)), ("w", (6,)), ("b", (6,))]),
    ("groupnorm_noaffine", {"groups": 2, "eps": 1e-5}, lambda x: F.group_norm(x, 2, None, None, 1e-5), [("x", (1, 4, 3, 3))]),
    ("rmsnorm", {"eps": 1e-6}, rms(1e-6), [("x", (3, 8)), ("w", (8,))]),
    ("upsample", {"factor": 2}, lambda x: F.interpolate(x, scale_factor=2, mode="nearest"), [("x", (1, 2, 3, 4))]),
]


def enc(v):
    return {"shape": list(v.shape), "data": [float(a) for a in v.detach().reshape(-1).tolist()]}


def main():
    out = {"torch": torch.__version__, "cases": []}
    for name, params, fn, inputs in CASES:
        ins = [t(*shape) for _, shape in inputs]
        y = fn(*ins)
        r = torch.randn(y.shape)
        (y * r).sum().backward()
        out["cases"].append({
            "name": name,
            "params": params,
            "inputs": {n: enc(v) for (n, _), v in zip(inputs, ins)},
            "r": enc(r),
            "y": enc(y),
            "grads": {n: enc(v.grad) for (n, _), v in zip(inputs, ins)},
        })
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "imageops_golden.json")
    with open(path, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
