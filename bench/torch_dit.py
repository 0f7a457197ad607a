#!/usr/bin/env python3
"""PyTorch reference of the trainer's dit model (trainerproc/model), the project's own code.

It loads weights written by the Go trainer (diffusers layout: transformer/ and text_encoder/
safetensors + config.json) and recomputes, with PyTorch, what the Go engine computes, so that
numerics and speed are checked against the framework everyone trusts. The architecture follows
diffusers' PixArtTransformer2DModel (the patch embedding is a real strided Conv2d here, the
unpatchify the diffusers einsum) plus the small caption encoder of trainerproc/model.

Modes:
  parity  --model DIR --batch IN.safetensors --out OUT.safetensors
          loss, prediction and every parameter gradient of the rectified-flow loss on a fixed
          batch (x0, eps, t, tokens, mask); OUT holds "loss", "output" and "grad.<name>".
  bench   --model DIR --batch-size B --resolution R --tokens L --steps N --warmup W
          timed training steps (forward, backward, AdamW update); prints one JSON line.

Needs only torch and numpy (safetensors is parsed directly; the package is optional). Set
OMP_NUM_THREADS / OPENBLAS_NUM_THREADS before starting Python to fix the thread count.
"""
import argparse
import json
import math
import os
import resource
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

_DT = {"F32": np.float32, "F64": np.float64, "I32": np.int32, "I64": np.int64, "F16": np.float16, "U8": np.uint8}
_TD = {np.dtype(v): k for k, v in _DT.items()}


def read_safetensors(path):
    """Returns {name: np.ndarray} (little-endian; BF16 widened to float32)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        raw = data[base + b:base + e]
        if info["dtype"] == "BF16":
            arr = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            arr = np.frombuffer(raw, dtype=np.dtype(_DT[info["dtype"]]).newbyteorder("<"))
        out[name] = arr.reshape(info["shape"]).copy()
    return out


def write_safetensors(path, tensors):
    header, chunks, off = {}, [], 0
    for name, arr in tensors.items():
        arr = np.ascontiguousarray(arr)
        raw = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": _TD[np.dtype(arr.dtype)], "shape": list(arr.shape), "data_offsets": [off, off + len(raw)]}
        chunks.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for c in chunks:
            f.write(c)


def load_model(d):
    with open(os.path.join(d, "transformer", "config.json")) as f:
        cfg = json.load(f)
    params = {}
    for k, v in read_safetensors(os.path.join(d, "transformer", "diffusion_pytorch_model.safetensors")).items():
        params[k] = torch.from_numpy(v)
    for k, v in read_safetensors(os.path.join(d, "text_encoder", "model.safetensors")).items():
        params["text_encoder." + k] = torch.from_numpy(v)
    for p in params.values():
        p.requires_grad_(True)
    return cfg, params


def timestep_embedding(ts, dim):
    """diffusers get_timestep_embedding(flip_sin_to_cos=True, shift=0) in float64, rounded once."""
    half = dim // 2
    freqs = np.exp(-math.log(10000) * np.arange(half, dtype=np.float64) / half)
    arg = ts[:, None].astype(np.float64) * freqs[None, :]
    return torch.from_numpy(np.concatenate([np.cos(arg), np.sin(arg)], axis=1).astype(np.float32))


def pos_embed_2d(dim, h, w, base, interp):
    """diffusers get_2d_sincos_pos_embed: first half encodes the column, second half the row."""
    def one_d(d, pos):
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = pos.reshape(-1)[:, None] * omega[None, :]
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    gh = np.arange(h, dtype=np.float64) / (h / base) / interp
    gw = np.arange(w, dtype=np.float64) / (w / base) / interp
    grid = np.meshgrid(gw, gh)  # grid[0]: column coordinate, as in diffusers
    emb = np.concatenate([one_d(dim // 2, grid[0]), one_d(dim // 2, grid[1])], axis=1)
    return torch.from_numpy(emb.astype(np.float32))


class DiT:
    def __init__(self, cfg, params):
        self.cfg, self.P = cfg, params
        self.D = cfg["num_attention_heads"] * cfg["attention_head_dim"]
        self.eps = cfg.get("norm_eps", 1e-6)

    def lin(self, name, x):
        return F.linear(x, self.P[name + ".weight"], self.P[name + ".bias"])

    def attention(self, x, ctx, heads, q, k, v, o, mask):
        B, N, D = x.shape
        M = ctx.shape[1]
        dh = D // heads
        qh = self.lin(q, x).view(B, N, heads, dh).transpose(1, 2)
        kh = self.lin(k, ctx).view(B, M, heads, dh).transpose(1, 2)
        vh = self.lin(v, ctx).view(B, M, heads, dh).transpose(1, 2)
        s = torch.matmul(qh, kh.transpose(-1, -2)) * (1.0 / math.sqrt(dh))
        if mask is not None:
            # A finite fill keeps all-masked rows finite; they are then zeroed (the engine's
            # convention: a query with no key to attend to outputs zero).
            s = s.masked_fill(mask[:, None, None, :] == 0, -1e9)
        p = torch.softmax(s, dim=-1)
        if mask is not None:
            p = p * (mask.sum(dim=1) > 0).to(p.dtype)[:, None, None, None]
        out = torch.matmul(p, vh).transpose(1, 2).reshape(B, N, D)
        return self.lin(o, out)

    def encode_captions(self, tokens, mask):
        P, cfg = self.P, self.cfg
        t = "text_encoder."
        L = tokens.shape[1]
        tw = cfg["caption_channels"]
        h = F.embedding(tokens.long(), P[t + "embed_tokens.weight"]) + P[t + "embed_positions.weight"][:L]
        for i in range(cfg["text_layers"]):
            b = f"{t}layers.{i}."
            n = F.layer_norm(h, (tw,), P[b + "layer_norm1.weight"], P[b + "layer_norm1.bias"], 1e-5)
            sa = b + "self_attn."
            h = h + self.attention(n, n, cfg["text_heads"], sa + "q_proj", sa + "k_proj", sa + "v_proj", sa + "out_proj", mask)
            n = F.layer_norm(h, (tw,), P[b + "layer_norm2.weight"], P[b + "layer_norm2.bias"], 1e-5)
            h = h + self.lin(b + "mlp.fc2", F.gelu(self.lin(b + "mlp.fc1", n), approximate="tanh"))
        return F.layer_norm(h, (tw,), P[t + "final_layer_norm.weight"], P[t + "final_layer_norm.bias"], 1e-5)

    def forward(self, xt, t, tokens, mask):
        P, cfg, D = self.P, self.cfg, self.D
        B, C, H, W = xt.shape
        p = cfg["patch_size"]
        gh, gw = H // p, W // p
        tfreq = timestep_embedding(t.detach().double().numpy() * 1000.0, 256)
        te = "adaln_single.emb.timestep_embedder."
        temb = self.lin(te + "linear_2", F.silu(self.lin(te + "linear_1", tfreq)))
        tmod = self.lin("adaln_single.linear", F.silu(temb)).view(B, 6, D)

        y = self.encode_captions(tokens, mask)
        y = self.lin("caption_projection.linear_2", F.gelu(self.lin("caption_projection.linear_1", y), approximate="tanh"))

        h = F.conv2d(xt, P["pos_embed.proj.weight"], P["pos_embed.proj.bias"], stride=p).flatten(2).transpose(1, 2)
        h = h + pos_embed_2d(D, gh, gw, cfg["sample_size"] // p, cfg.get("interpolation_scale", 1.0))
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

    def flow_loss(self, x0, eps, t, tokens, mask):
        target = eps - x0
        xt = x0 + t.view(-1, 1, 1, 1) * target
        pred = self.forward(xt, t, tokens, mask)
        return ((pred - target) ** 2).mean(), pred


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cmd_parity(a):
    cfg, params = load_model(a.model)
    batch = read_safetensors(a.batch)
    m = DiT(cfg, params)
    x0, eps, t = (torch.from_numpy(batch[k]) for k in ("x0", "eps", "t"))
    tokens, mask = torch.from_numpy(batch["tokens"]), torch.from_numpy(batch["mask"])
    loss, pred = m.flow_loss(x0, eps, t, tokens, mask)
    loss.backward()
    out = {"loss": loss.detach().numpy().reshape(1), "output": pred.detach().numpy()}
    for k, p in params.items():
        g = p.grad if p.grad is not None else torch.zeros_like(p)
        out["grad." + k] = g.numpy()
    write_safetensors(a.out, out)


def cmd_bench(a):
    torch.manual_seed(0)
    cfg, params = load_model(a.model)
    m = DiT(cfg, params)
    B, R, L, C = a.batch_size, a.resolution, a.tokens, cfg["in_channels"]
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(B, C, R, R, generator=g)
    eps = torch.randn(B, C, R, R, generator=g)
    t = torch.rand(B, generator=g)
    tokens = torch.randint(0, cfg["vocab_size"], (B, L), generator=g, dtype=torch.int32)
    mask = torch.ones(B, L)
    mask[:, L * 3 // 4:] = 0
    opt = torch.optim.AdamW(list(params.values()), lr=1e-4, foreach=False)
    times = []
    for i in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss, _ = m.flow_loss(x0, eps, t, tokens, mask)
        loss.backward()
        opt.step()
        dt = time.perf_counter() - t0
        if i >= a.warmup:
            times.append(dt)
    print(json.dumps({
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "step_s": sorted(times)[len(times) // 2], "mean_s": sum(times) / len(times), "min_s": min(times),
        "loss": float(loss), "peak_rss_mib": peak_rss_mib(),
    }))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("parity")
    p.add_argument("--model", required=True)
    p.add_argument("--batch", required=True)
    p.add_argument("--out", required=True)
    b = sub.add_parser("bench")
    b.add_argument("--model", required=True)
    b.add_argument("--batch-size", type=int, default=4)
    b.add_argument("--resolution", type=int, default=32)
    b.add_argument("--tokens", type=int, default=32)
    b.add_argument("--steps", type=int, default=10)
    b.add_argument("--warmup", type=int, default=3)
    b.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    if getattr(a, "threads", 0):
        torch.set_num_threads(a.threads)
    torch.set_grad_enabled(True)
    {"parity": cmd_parity, "bench": cmd_bench}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
