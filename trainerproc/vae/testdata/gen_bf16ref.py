#!/usr/bin/python3
"""Generates tiny_bf16ref.safetensors: diffusers' AutoencoderKL run in fp32 on the golden tiny
model's weights rounded to bfloat16, i.e. what a bf16 checkpoint of that model computed in fp32
must give. The Go test (TestGoldenBF16) rounds the same weights to BF16 itself, stores them as a
BF16 checkpoint, loads it and compares with these outputs.

Rerun (from the repository root; Debian's python3 with python3-torch and python3-numpy, NOT a
pyenv/venv python), with the same diffusers tree as gen_golden.py:

    git --git-dir=<diffusers bare repo> archive 58eb52c0803ea9af3abec60841c2a093bdf1f951 src \
        | tar -x -C /tmp/diffusers-src
    /usr/bin/python3 trainerproc/vae/testdata/gen_bf16ref.py --diffusers-src /tmp/diffusers-src

It reuses gen_golden.py's model (build(), same seeds) and inputs (sample and z from the committed
tiny_io.safetensors), and the same shims (scripts/golden/refshims.py); one thread, so a rerun
writes the same bytes. Reference used for the committed file: diffusers commit
58eb52c0803ea9af3abec60841c2a093bdf1f951, torch 1.13.0a0 (Debian python3-torch).

Output tensors (F32): posterior_mean, posterior_logvar [2,4,12,16] for tiny_io's sample, and
decoded [2,3,48,64] = decode(z).sample for tiny_io's z.
"""
import argparse
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gen_golden  # noqa: E402  (also puts scripts/golden on sys.path)
import refshims  # noqa: E402
import stio  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--diffusers-src", required=True, help="exported diffusers tree (its src/ or root)")
    ap.add_argument("--out", default=HERE, help="output directory (default: this directory)")
    args = ap.parse_args()

    torch.set_num_threads(1)
    model = gen_golden.build(refshims.load_autoencoder_kl(args.diffusers_src))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16).to(torch.float32))  # round to nearest even
    io, _ = stio.read(os.path.join(HERE, "tiny_io.safetensors"))
    sample = torch.from_numpy(io["sample"][1].copy())
    z = torch.from_numpy(io["z"][1].copy())
    with torch.no_grad():
        posterior = model.encode(sample).latent_dist
        decoded = model.decode(z).sample
    out = {
        "posterior_mean": ("F32", posterior.mean.contiguous().numpy()),
        "posterior_logvar": ("F32", posterior.logvar.contiguous().numpy()),
        "decoded": ("F32", decoded.numpy()),
    }
    path = os.path.join(args.out, "tiny_bf16ref.safetensors")
    stio.write(path, out)
    stio.check_roundtrip(path, out)
    for name, (_, arr) in sorted(out.items()):
        print(f"{name:18s} {list(arr.shape)} mean {arr.mean():+.4f} std {arr.std():.4f}")


if __name__ == "__main__":
    main()
