#!/usr/bin/python3
"""Generates the PixArt-Σ transformer fixtures in this directory by running diffusers' own
PixArtTransformer2DModel (forward, SimpleTuner's loss, backward).

Rerun (from the repository root; Debian's python3 with python3-torch and python3-numpy, NOT a
pyenv/venv python):

    git --git-dir=<diffusers bare repo> archive 58eb52c0803ea9af3abec60841c2a093bdf1f951 src \
        | tar -x -C /tmp/diffusers-src
    /usr/bin/python3 trainerproc/model/testdata/gen_pixart.py --diffusers-src /tmp/diffusers-src

It rewrites pixart_tiny/config.json, pixart_tiny/diffusion_pytorch_model.safetensors,
pixart_tiny/diffusion_pytorch_model.bf16.safetensors and pixart_io.safetensors byte for byte
(fixed seeds, one thread, tensors written in name order); `git diff --stat` after a rerun
shows nothing. --out DIR writes elsewhere (to compare two runs).

Reference used for the committed files:
  diffusers commit 58eb52c0803ea9af3abec60841c2a093bdf1f951 (version 0.40.0.dev0), files
  src/diffusers/models/transformers/pixart_transformer_2d.py, models/{attention,
  attention_processor,embeddings,normalization,activations,modeling_outputs}.py and
  utils/outputs.py, unmodified; torch 1.13.0a0 (Debian python3-torch), numpy 1.24.2,
  python 3.11.2. torch 1.13 has no F.scaled_dot_product_attention, so attention runs
  diffusers' AttnProcessor (baddbmm + softmax), the same arithmetic as AttnProcessor2_0.

Shims: scripts/golden/refshims.py (load_pixart_transformer; none computes anything of the
model). Weights are written the way save_pretrained lays them out (state_dict names and
shapes, "format": "pt" metadata; variant "bf16" as diffusion_pytorch_model.bf16.safetensors)
by scripts/golden/stio.py, since Debian's python has no safetensors package; config.json is
the reference config's to_json_string as save_pretrained writes it.

Model: PixArt-Σ's architecture scaled down: 2 layers, 2 heads of 8 (width 16), caption
channels 24 (unlike the width, so a transposed caption projection fails), 4 latent channels
in, 8 out (learned sigma), patch 2, sample_size 8, interpolation_scale 2 (PixArt-Σ 900M's
config value), use_additional_conditions false. Torch's default init under seed 0, then every
parameter gets N(0, 0.05) added so that no gradient is trivially zero and the attention
scores are not uniform.

Fixtures:
  pixart_tiny/config.json                               the config
  pixart_tiny/diffusion_pytorch_model.safetensors       F32 weights
  pixart_tiny/diffusion_pytorch_model.bf16.safetensors  the same weights rounded to BF16
  pixart_io.safetensors:
    xt [2,4,8,12]      latents of a non-square bucket (token grid 4x6 on a base grid of 4)
    timesteps [2]      DDPM timesteps 999 and 137 (F32)
    y [2,5,24]         caption states; mask [2,5] F32 (sample 0: 3 real tokens, 2 padding)
    eps [2,4,8,12]     the noise the loss compares with
    pred [2,8,8,12]    model(xt, timesteps, y, mask) from the F32 weights
    loss []            SimpleTuner's loss: mse(pred[:, :4].float(), eps.float()), mean
    grad.<name>        d loss / d parameter, for every parameter
"""
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "scripts", "golden"))
import refshims  # noqa: E402
import stio  # noqa: E402

TINY = dict(
    num_layers=2,
    num_attention_heads=2,
    attention_head_dim=8,
    in_channels=4,
    out_channels=8,
    caption_channels=24,
    cross_attention_dim=16,
    sample_size=8,
    patch_size=2,
    interpolation_scale=2,
    use_additional_conditions=False,
)


def main():
    args = refshims.generator_args(__doc__, "--diffusers-src", "exported diffusers tree (its src/ or root)", HERE)
    PixArt = refshims.load_pixart_transformer(args.diffusers_src)
    torch.manual_seed(0)
    model = PixArt(**TINY)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    print("attention processor:", type(model.transformer_blocks[0].attn1.processor).__name__)

    g = torch.Generator().manual_seed(2)
    xt = torch.randn((2, 4, 8, 12), generator=g)
    eps = torch.randn((2, 4, 8, 12), generator=g)
    y = torch.randn((2, 5, 24), generator=g)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.float32)
    timesteps = torch.tensor([999, 137], dtype=torch.long)

    pred = model(xt, encoder_hidden_states=y, timestep=timesteps, encoder_attention_mask=mask, return_dict=False)[0]
    loss = torch.nn.functional.mse_loss(pred[:, :4].float(), eps.float(), reduction="none").mean()
    loss.backward()

    out = os.path.join(args.out, "pixart_tiny")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "config.json"), "w") as f:
        f.write(model.to_json_string())
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    stio.write(os.path.join(out, "diffusion_pytorch_model.safetensors"), {k: ("F32", v.numpy()) for k, v in sd.items()})
    stio.write(os.path.join(out, "diffusion_pytorch_model.bf16.safetensors"),
               {k: ("BF16", stio.bf16_bits(v.numpy())) for k, v in sd.items()})
    io = {
        "xt": ("F32", xt.numpy()),
        "timesteps": ("F32", timesteps.float().numpy()),
        "y": ("F32", y.numpy()),
        "mask": ("F32", mask.numpy()),
        "eps": ("F32", eps.numpy()),
        "pred": ("F32", pred.detach().numpy()),
        "loss": ("F32", loss.detach().numpy()),
    }
    for name, p in model.named_parameters():
        io["grad." + name] = ("F32", p.grad.numpy())
    stio.write(os.path.join(args.out, "pixart_io.safetensors"), io)
    print("parameters:", len(sd), "tensors,", sum(v.numel() for v in sd.values()), "floats")
    print("pred mean %+.4f std %.4f, loss %.6f" % (pred.mean(), pred.std(), loss))


if __name__ == "__main__":
    main()
