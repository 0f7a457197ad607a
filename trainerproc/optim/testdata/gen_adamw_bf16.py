"""Generates adamw_bf16_ref.safetensors: SimpleTuner's own AdamWBF16 over 10 steps.

Rerun (Debian's torch 1.13, not the pyenv python on PATH), from this directory:

    /usr/bin/python3 gen_adamw_bf16.py /work/.mirror/bghira+SimpleTuner/repo

The argument is a bare git clone of SimpleTuner holding commit bc8e6ab77; the script reads
simpletuner/helpers/training/optimizers/adamw_bfloat16/{__init__,stochastic/__init__}.py at
that commit into a temporary directory, imports them as they are and runs them. Reruns give
identical bytes (fixed seed, sorted header).

Patches, so that the run is deterministic and computes bfloat16 arithmetic the way torch
does on CUDA (where SimpleTuner trains) rather than the way torch 1.13 does on the CPU:

1. copy_stochastic_ (the reference's stochastic rounding, which draws from torch's RNG) is
   replaced by a plain copy, i.e. round-to-nearest-even; the Go test switches the Go
   optimizer to nearest rounding the same way.
2. On bfloat16 tensors, mul_(python float) and add_(python float) compute in float32 with
   a float32 scalar and round once (torch 1.13's CPU kernels round the scalar to bfloat16
   first, which turns beta2 = 0.999 into 1.0; torch's CUDA kernels and torch >= 2 CPU keep it
   in float32). add_(tensor, alpha=a) computes self + float32(a)*other in float64 (exact
   product), then rounds to float32 and to bfloat16: a fused multiply-add, as the CUDA
   kernel compiles it.

Everything else (float32 add_/addcdiv_ in the stochastic helpers, bfloat16 addcmul_, sqrt,
sub_) runs on torch's own kernels.

The fixture holds, for parameters a, b, c (bfloat16): init.<p>, grad.<t>.<p> for steps
t = 1..10 (c has no gradient on even steps, so it skips them), and after each step
step.<t>.<p>.{param,exp_avg,exp_avg_sq,shift}, all BF16; metadata: lr.<t>, decay0.<p> (the
owed decay each parameter starts with, drawn by the reference from torch.rand),
weight_decay, eps, beta1, beta2, steps (Python reprs: exact decimal round trips).
"""

import importlib
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch

COMMIT = "bc8e6ab77"
PKG = "simpletuner/helpers/training/optimizers/adamw_bfloat16"
STEPS = 10
WEIGHT_DECAY = 0.5
BETAS = (0.9, 0.999)
EPS = 1e-6


def load_reference(mirror):
    tmp = tempfile.mkdtemp()
    for rel in ("__init__.py", "stochastic/__init__.py"):
        src = subprocess.run(
            ["git", "--git-dir", mirror, "show", f"{COMMIT}:{PKG}/{rel}"],
            check=True, capture_output=True,
        ).stdout
        path = os.path.join(tmp, "adamw_bfloat16", rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(src)
    sys.path.insert(0, tmp)
    ref = importlib.import_module("adamw_bfloat16")
    stochastic = importlib.import_module("adamw_bfloat16.stochastic")
    return ref, stochastic


def f32(x):
    return torch.tensor(x, dtype=torch.float32)


def patch(stochastic):
    stochastic.copy_stochastic_ = lambda target, source: target.copy_(source)

    base = torch._C._TensorBase
    orig_mul, orig_add = base.mul_, base.add_

    def mul_(self, other):
        if self.dtype == torch.bfloat16 and isinstance(other, float):
            return self.copy_((self.float() * f32(other)).bfloat16())
        return orig_mul(self, other)

    def add_(self, other, *, alpha=1):
        if self.dtype == torch.bfloat16:
            if isinstance(other, float):
                return self.copy_((self.float() + f32(other)).bfloat16())
            if alpha != 1:
                a = float(f32(alpha))
                return self.copy_((self.double() + other.double() * a).float().bfloat16())
        return orig_add(self, other, alpha=alpha)

    torch.Tensor.mul_ = mul_
    torch.Tensor.add_ = add_


def bf16_bytes(t):
    return t.contiguous().view(torch.int16).numpy().astype("<i2").tobytes()


def write_safetensors(path, tensors, meta):
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name]
        data = bf16_bytes(t)
        header[name] = {"dtype": "BF16", "shape": list(t.shape), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    header["__metadata__"] = meta
    h = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def main():
    ref, stochastic = load_reference(sys.argv[1])
    patch(stochastic)
    torch.manual_seed(14)
    shapes = {"a": (37,), "b": (8, 5), "c": (3, 7, 2)}
    scales = {"a": 1e-3, "b": 1.0, "c": 30.0}
    params = {n: torch.nn.Parameter((torch.randn(s) * 0.5).bfloat16()) for n, s in shapes.items()}
    out = {f"init.{n}": p.detach().clone() for n, p in params.items()}
    meta = {"weight_decay": repr(WEIGHT_DECAY), "eps": repr(EPS), "beta1": repr(BETAS[0]),
            "beta2": repr(BETAS[1]), "steps": str(STEPS), "reference": COMMIT}

    draws = []
    orig_rand = torch.rand

    def rand(*a, **k):
        t = orig_rand(*a, **k)
        draws.append(t.clone())
        return t

    torch.rand = rand
    opt = ref.AdamWBF16(list(params.values()), lr=1e-3, betas=BETAS, eps=EPS, weight_decay=WEIGHT_DECAY)
    for t in range(1, STEPS + 1):
        lr = 2e-3 * (1 - 0.05 * t)
        opt.param_groups[0]["lr"] = lr
        meta[f"lr.{t}"] = repr(lr)
        fresh = []
        for n, p in params.items():
            if n == "c" and t % 2 == 0:
                p.grad = None
                continue
            g = (torch.randn(p.shape) * scales[n]).bfloat16()
            if t == 3:
                g[0] = 0  # a zero gradient still moves the state
            p.grad = g
            out[f"grad.{t}.{n}"] = g.clone()
            if len(opt.state[p]) == 0:
                fresh.append(n)
        before = len(draws)
        opt.step()
        assert len(draws) - before == len(fresh)
        for n, r in zip(fresh, draws[before:]):
            meta[f"decay0.{n}"] = repr(float(r * ref.AdamWBF16.decay_threshold))
        for n, p in params.items():
            st = opt.state[p]
            if len(st) == 0:
                continue
            out[f"step.{t}.{n}.param"] = p.detach().clone()
            for slot in ("exp_avg", "exp_avg_sq", "shift"):
                out[f"step.{t}.{n}.{slot}"] = st[slot].clone()
    torch.rand = orig_rand
    write_safetensors(os.path.join(os.path.dirname(os.path.abspath(__file__)), "adamw_bf16_ref.safetensors"), out, meta)


if __name__ == "__main__":
    main()
