#!/usr/bin/python3
"""Times the reference implementations on the CPU with Debian's PyTorch, at the real model sizes
with random weights, for the Go benches (bench/vaeencode, bench/t5encode) to compare against.

Run with Debian's python3 (python3-torch, python3-numpy), not a pyenv/venv python:

  torch_ref.py vae-encode --size 1024 --threads 2 --repeat 3 --diffusers-src DIR
  torch_ref.py vae-decode --size 1024 --threads 2 --repeat 3 --diffusers-src DIR
  torch_ref.py t5-encode --layers 2 --tokens 300 --threads 2 --repeat 3 --transformers-src DIR
  torch_ref.py pixart-train --config CONFIG.json --latent 64 --tokens 300 --real-tokens 120 \
      --threads 2 --repeat 1 --checkpointing --diffusers-src DIR

DIR is an exported reference tree (diffusers: `git archive <commit> src | tar -x -C DIR`;
transformers: the three files listed in trainerproc/t5/testdata/gen_golden.py under
DIR/src/transformers/). The model classes are the references' own, imported behind the shims of
scripts/golden/refshims.py (the golden-fixture generators use the same ones).

Each subcommand builds the model (seed 0, the reference's own random init, fp32, eval mode, no
grad), runs it once to warm up, then `--repeat` timed runs, and prints ONE JSON line:
  what, seconds_per_item (median over the repeats), items (per run), repeat, threads, torch,
  ref_commit, times (every timed run), cpu_seconds_per_item (median process CPU time: on a
  busy machine it shows how much of the wall time was waiting), max_rss_mb (peak resident
  memory of the process), the input/output shapes, and
  for t5-encode seconds_per_layer and seconds_per_item_24_layers (the layer time times 24 plus
  the measured remainder: a T5-XXL encoder's estimate).
VAE: the SDXL VAE config (block_out_channels [128,256,512,512], layers_per_block 2,
norm_num_groups 32, latent_channels 4, sample_size 1024, quant convs); vae-encode times one
size x size RGB image to its posterior mean, vae-decode one (size/8)^2 latent to an image
(post_quant_conv included). T5: T5-XXL dimensions (d_model 4096, d_ff 10240, 64 heads of 64,
vocab 32128, gated-gelu, 32 buckets, max distance 128) with --layers of its 24 blocks (about
0.77 GB of fp32 weights a block), one caption of --tokens ids, attention mask all ones.
PixArt: diffusers' PixArtTransformer2DModel built from --config (a transformer config.json,
e.g. PixArt-Σ 900M's), fp32, train mode, --checkpointing turning on the reference's own
gradient checkpointing (torch.utils.checkpoint per block, use_reentrant=False); pixart-train
times one training step of batch 1 (after --warmup untimed ones) as SimpleTuner takes it: x_t = 0.8·x0 + 0.6·ε of random
--latent² latents at DDPM timestep 500, random caption states [1, --tokens, caption_channels]
with --real-tokens unmasked, forward, mse(pred[:, :4], ε), backward, torch.optim.AdamW
(lr 1e-4, betas 0.9/0.999, eps 1e-8, weight decay 1e-2) step, zero_grad. SimpleTuner's
adamw_bf16 needs bf16 parameters, which torch 1.13 trains slowly on the CPU, so the reference
uses fp32 AdamW (say so next to its figures).
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "scripts", "golden"))
import refshims  # noqa: E402

# The reference commits the golden fixtures were generated from (the default of --ref-commit).
DIFFUSERS_COMMIT = "58eb52c0803ea9af3abec60841c2a093bdf1f951"
TRANSFORMERS_COMMIT = "6b8b757dfcb582379a64f013cdce46c43629f2b0 (modeling_t5.py)"


def timed(fn, repeat, warmup=1):
    """Runs fn warmup times (once by default) to warm up, then repeat times; returns the median
    wall time, all wall times and the median CPU time of the process (all threads), which tells
    a busy machine apart: on an idle one CPU time is about threads x wall time."""
    for _ in range(warmup):
        fn()
    times, cpu = [], []
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(times), times, statistics.median(cpu)


def report(args, what, timing, ref_commit, **extra):
    seconds, times, cpu = timing
    out = dict(
        what=what,
        seconds_per_item=round(seconds, 4),
        items=1,
        repeat=args.repeat,
        threads=args.threads,
        torch=torch.__version__,
        ref_commit=ref_commit,
        times=[round(t, 4) for t in times],
        cpu_seconds_per_item=round(cpu, 4),
        max_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    )
    out.update(extra)
    print(json.dumps(out), flush=True)


def vae(args, decode):
    AutoencoderKL = refshims.load_autoencoder_kl(args.diffusers_src)
    torch.manual_seed(0)
    model = AutoencoderKL(**refshims.SDXL_VAE_CONFIG).eval()
    g = torch.Generator().manual_seed(1)
    image = torch.rand((1, 3, args.size, args.size), generator=g) * 2 - 1
    latent = torch.randn((1, 4, args.size // 8, args.size // 8), generator=g)
    with torch.no_grad():
        if decode:
            timing = timed(lambda: model.decode(latent).sample, args.repeat)
        else:
            timing = timed(lambda: model.encode(image).latent_dist.mean, args.repeat)
    report(
        args,
        "vae-decode" if decode else "vae-encode",
        timing,
        args.ref_commit or DIFFUSERS_COMMIT,
        image=list(image.shape),
        latent=list(latent.shape),
        config="sdxl-vae",
        attention_processor=type(model.encoder.mid_block.attentions[0].processor).__name__,
    )


def t5(args):
    T5Config, T5EncoderModel = refshims.load_t5_encoder(args.transformers_src)
    torch.manual_seed(0)
    model = T5EncoderModel(T5Config(**dict(refshims.T5_XXL_CONFIG, num_layers=args.layers))).eval()
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(2, refshims.T5_XXL_CONFIG["vocab_size"], (1, args.tokens), generator=g)
    ids[0, -1] = 1  # eos
    mask = torch.ones_like(ids)
    with torch.no_grad():
        timing = timed(lambda: model(input_ids=ids, attention_mask=mask).last_hidden_state, args.repeat)
        # The part outside the blocks (embedding lookup, final norm), to scale the layer time.
        hidden = model.shared(ids)
        rest = timed(lambda: model.encoder.final_layer_norm(model.shared(ids)), args.repeat)[0]
    per_layer = max(timing[0] - rest, 0.0) / args.layers
    report(
        args,
        "t5-encode",
        timing,
        args.ref_commit or TRANSFORMERS_COMMIT,
        layers=args.layers,
        tokens=args.tokens,
        input_ids=list(ids.shape),
        last_hidden_state=list(hidden.shape),
        seconds_per_layer=round(per_layer, 4),
        seconds_per_item_24_layers=round(per_layer * 24 + rest, 4),
        config="t5-v1_1-xxl encoder dims",
    )


def pixart(args):
    PixArt = refshims.load_pixart_transformer(args.diffusers_src)
    with open(args.config) as f:
        cfg = json.load(f)
    cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
    torch.manual_seed(0)
    model = PixArt(**cfg).train()
    if args.checkpointing:
        model.enable_gradient_checkpointing()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2)
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn((1, cfg["in_channels"], args.latent, args.latent), generator=g)
    eps = torch.randn(x0.shape, generator=g)
    y = torch.randn((1, args.tokens, cfg["caption_channels"]), generator=g)
    mask = torch.zeros((1, args.tokens))
    mask[:, : args.real_tokens] = 1
    t = torch.tensor([500])
    losses = []

    def step():
        xt = 0.8 * x0 + 0.6 * eps
        pred = model(xt, encoder_hidden_states=y, timestep=t, encoder_attention_mask=mask, return_dict=False)[0]
        loss = torch.nn.functional.mse_loss(pred[:, :4].float(), eps.float())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())

    timing = timed(step, args.repeat, args.warmup)
    report(
        args,
        "pixart-train",
        timing,
        args.ref_commit or DIFFUSERS_COMMIT,
        latents=list(x0.shape),
        caption=list(y.shape),
        real_tokens=args.real_tokens,
        params=sum(p.numel() for p in model.parameters()),
        checkpointing=bool(args.checkpointing),
        optimizer="torch.optim.AdamW fp32",
        loss=losses[-1],
        warmup=args.warmup,
        attention_processor=type(model.transformer_blocks[0].attn1.processor).__name__,
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pixart-train")
    p.add_argument("--config", required=True, help="transformer config.json")
    p.add_argument("--latent", type=int, default=64, help="latent side (512 px: 64)")
    p.add_argument("--tokens", type=int, default=300)
    p.add_argument("--real-tokens", type=int, default=120)
    p.add_argument("--checkpointing", action="store_true")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps before the timed ones")
    p.add_argument("--diffusers-src", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--ref-commit", default="", help="reported as ref_commit (default: the pinned one)")
    for name in ("vae-encode", "vae-decode", "t5-encode"):
        p = sub.add_parser(name)
        p.add_argument("--threads", type=int, default=2)
        p.add_argument("--repeat", type=int, default=3)
        p.add_argument("--ref-commit", default="", help="reported as ref_commit (default: the pinned one)")
        if name.startswith("vae"):
            p.add_argument("--size", type=int, default=1024)
            p.add_argument("--diffusers-src", required=True)
        else:
            p.add_argument("--layers", type=int, default=2)
            p.add_argument("--tokens", type=int, default=300)
            p.add_argument("--transformers-src", required=True)
    args = ap.parse_args()
    if args.repeat < 1 or args.threads < 1:
        ap.error("--repeat and --threads must be at least 1")
    torch.set_num_threads(args.threads)
    if args.cmd == "t5-encode":
        t5(args)
    elif args.cmd == "pixart-train":
        pixart(args)
    else:
        vae(args, decode=args.cmd == "vae-decode")


if __name__ == "__main__":
    main()
