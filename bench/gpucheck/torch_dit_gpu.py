#!/usr/bin/env python3
"""GPU timing of the PyTorch reference dit (bench/torch_dit.py), for gpucheck bench.

It loads the weights the Go side wrote (identical architecture and initialisation), moves
them to the GPU and times training steps (forward, backward, AdamW) with bf16 autocast
(--precision bf16) or in fp32 (--precision no, TF32 off), eagerly (--mode eager) or through
torch.compile (--mode compile). Prints one JSON line: step_s (median, CUDA-synchronised),
loss, peak_mib (torch.cuda.max_memory_allocated) and the torch version.

    python3 torch_dit_gpu.py --model DIR --mode eager --precision bf16 --batch-size 16 \
        --resolution 64 --tokens 77 --steps 10 --warmup 3

torch_dit.py must sit beside this file (make gpu-check-bundle copies both).
"""
import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_dit as ref  # noqa: E402


class GPUDiT(ref.DiT):
    """The reference DiT with its host-side helpers (numpy timestep and position embeddings)
    computed outside the traced step, so torch.compile sees only tensor code."""

    def core(self, xt, tfreq, pos, tokens, mask):
        P, cfg, D = self.P, self.cfg, self.D
        B, C, H, W = xt.shape
        p = cfg["patch_size"]
        gh, gw = H // p, W // p
        te = "adaln_single.emb.timestep_embedder."
        temb = self.lin(te + "linear_2", F.silu(self.lin(te + "linear_1", tfreq)))
        tmod = self.lin("adaln_single.linear", F.silu(temb)).view(B, 6, D)
        y = self.encode_captions(tokens, mask)
        y = self.lin("caption_projection.linear_2", F.gelu(self.lin("caption_projection.linear_1", y), approximate="tanh"))
        h = F.conv2d(xt, P["pos_embed.proj.weight"], P["pos_embed.proj.bias"], stride=p).flatten(2).transpose(1, 2)
        h = h + pos
        for i in range(cfg["num_layers"]):
            b = f"transformer_blocks.{i}."
            sm, cm, gm, sf, cf, gf = (P[b + "scale_shift_table"][None] + tmod).chunk(6, dim=1)
            n = F.layer_norm(h, (D,), eps=self.eps) * (1 + cm) + sm
            a1 = b + "attn1."
            h = h + gm * self.attention(n, n, cfg["num_attention_heads"], a1 + "to_q", a1 + "to_k", a1 + "to_v", a1 + "to_out.0", None)
            a2 = b + "attn2."
            h = h + self.attention(h, y, cfg["num_attention_heads"], a2 + "to_q", a2 + "to_k", a2 + "to_v", a2 + "to_out.0", mask)
            n = F.layer_norm(h, (D,), eps=self.eps) * (1 + cf) + sf
            h = h + gf * self.lin(b + "ff.net.2", F.gelu(self.lin(b + "ff.net.0.proj", n), approximate="tanh"))
        shift, scale = (P["scale_shift_table"][None] + temb[:, None]).chunk(2, dim=1)
        h = F.layer_norm(h, (D,), eps=self.eps) * (1 + scale) + shift
        h = self.lin("proj_out", h).reshape(B, gh, gw, p, p, C)
        return torch.einsum("nhwpqc->nchpwq", h).reshape(B, C, H, W)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--mode", choices=["eager", "compile"], default="eager")
    ap.add_argument("--precision", choices=["bf16", "no"], default="bf16")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--tokens", type=int, default=77)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    a = ap.parse_args()
    if not torch.cuda.is_available():
        print(json.dumps({"error": "torch sees no CUDA device"}))
        return 1
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = torch.device("cuda")
    cfg, params = ref.load_model(a.model)
    params = {k: v.detach().to(dev).requires_grad_(True) for k, v in params.items()}
    m = GPUDiT(cfg, params)
    B, R, L, C = a.batch_size, a.resolution, a.tokens, cfg["in_channels"]
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(B, C, R, R, generator=g).to(dev)
    eps = torch.randn(B, C, R, R, generator=g).to(dev)
    t = torch.rand(B, generator=g)
    tokens = torch.randint(0, cfg["vocab_size"], (B, L), generator=g, dtype=torch.int32).to(dev)
    mask = torch.ones(B, L)
    mask[:, L * 3 // 4:] = 0
    mask = mask.to(dev)
    p = cfg["patch_size"]
    tfreq = ref.timestep_embedding(t.double().numpy() * 1000.0, 256).to(dev)
    pos = ref.pos_embed_2d(m.D, R // p, R // p, cfg["sample_size"] // p, cfg.get("interpolation_scale", 1.0)).to(dev)
    tt = t.to(dev).view(-1, 1, 1, 1)

    def loss_fn(x0, eps, tt, tfreq, pos, tokens, mask):
        target = eps - x0
        xt = x0 + tt * target
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=a.precision == "bf16"):
            pred = m.core(xt, tfreq, pos, tokens, mask)
        return ((pred.float() - target) ** 2).mean()

    step_fn = torch.compile(loss_fn) if a.mode == "compile" else loss_fn
    opt = torch.optim.AdamW(list(params.values()), lr=1e-4, weight_decay=1e-2, fused=True)
    times = []
    for i in range(a.warmup + a.steps):
        if i == a.warmup:
            torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = step_fn(x0, eps, tt, tfreq, pos, tokens, mask)
        loss.backward()
        opt.step()
        torch.cuda.synchronize()
        if i >= a.warmup:
            times.append(time.perf_counter() - t0)
    times.sort()
    print(json.dumps({
        "torch": torch.__version__, "device": torch.cuda.get_device_name(0), "mode": a.mode,
        "step_s": times[len(times) // 2], "loss": float(loss),
        "peak_mib": torch.cuda.max_memory_allocated() / 2**20,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
