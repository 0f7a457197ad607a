#!/usr/bin/python3
"""Generates the feed-forward variant fixtures (testdata/ffproj/) by running transformers' own
T5EncoderModel, as gen_golden.py does for the main fixtures, with the other feed_forward_proj
values the encoder supports: "relu" (the original T5: one `wi`, ReLU), "gelu" (one `wi`, the
exact erf GELU) and "gated-silu" (`wi_0`/`wi_1`, SiLU).

Rerun (from the repository root, Debian's python3; DIR as in gen_golden.py, the same files at
the same commits, the same shims of scripts/golden/refshims.py):
    /usr/bin/python3 trainerproc/t5/testdata/gen_ffproj.py --transformers-src DIR
It rewrites ffproj/<variant>/{config.json,model.safetensors} and ffproj/io.safetensors byte for
byte (fixed seeds, one thread). Committed files: torch 1.13.0a0 (Debian python3-torch), python
3.11.2.

Each variant: vocab 64, d_model 16, d_kv 4, 3 heads (inner width 12, unlike d_model), d_ff 24,
2 layers, 8 buckets with max distance 20 (the logarithmic buckets start at distance 2, so 12
tokens reach them), eps 1e-6; transformers' own init under seed 0, layer-norm weights then set
to 1 + 0.2*N(0,1) and the relative attention bias scaled by 3, as in gen_golden.py.
io.safetensors: input_ids and attention_mask I64 [2,12] (row 0 full, row 1 seven ids, eos,
padding), and last_hidden_state_<variant> F32 [2,12,16] for each variant.
"""
import argparse
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "scripts", "golden"))
import gen_golden  # noqa: E402  (write_model, the loader of the reference)
import refshims  # noqa: E402
import stio  # noqa: E402

VARIANTS = {"relu": "relu", "gelu": "gelu", "gated_silu": "gated-silu"}
SMALL = dict(vocab_size=64, d_model=16, d_kv=4, num_heads=3, d_ff=24, num_layers=2,
             relative_attention_num_buckets=8, relative_attention_max_distance=20,
             layer_norm_epsilon=1e-6, pad_token_id=0, eos_token_id=1, tie_word_embeddings=False)


def build(T5Config, T5EncoderModel, proj):
    torch.manual_seed(0)
    model = T5EncoderModel(T5Config(feed_forward_proj=proj, **SMALL)).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if name.endswith("layer_norm.weight"):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
        model.encoder.block[0].layer[0].SelfAttention.relative_attention_bias.weight.mul_(3)
    return model


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--transformers-src", required=True)
    ap.add_argument("--out", default=os.path.join(HERE, "ffproj"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    T5Config, T5EncoderModel = refshims.load_t5_encoder(args.transformers_src)
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(2, 64, (2, 12), generator=g)
    ids[0, 11] = 1
    ids[1, 7], ids[1, 8:] = 1, 0
    mask = (torch.arange(12)[None, :] < torch.tensor([[12], [8]])).long()
    io = {"input_ids": ("I64", ids.numpy()), "attention_mask": ("I64", mask.numpy())}
    for name, proj in VARIANTS.items():
        model = build(T5Config, T5EncoderModel, proj)
        with torch.no_grad():
            hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
        gen_golden.write_model(os.path.join(args.out, name), model, "F32")
        io["last_hidden_state_" + name] = ("F32", hidden.numpy())
        print(name, "max|h|", hidden.abs().max().item())
    path = os.path.join(args.out, "io.safetensors")
    stio.write(path, io)
    stio.check_roundtrip(path, io)


if __name__ == "__main__":
    main()
