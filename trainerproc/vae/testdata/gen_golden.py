#!/usr/bin/python3
"""Generates the VAE golden fixtures in this directory by running diffusers' own AutoencoderKL.

Rerun (from the repository root; Debian's python3 with python3-torch and python3-numpy, NOT a
pyenv/venv python):

    git --git-dir=<diffusers bare repo> archive 58eb52c0803ea9af3abec60841c2a093bdf1f951 src \
        | tar -x -C /tmp/diffusers-src
    /usr/bin/python3 trainerproc/vae/testdata/gen_golden.py --diffusers-src /tmp/diffusers-src

It rewrites tiny/config.json, tiny/diffusion_pytorch_model.safetensors and tiny_io.safetensors
byte for byte (fixed seeds, one thread, tensors written in name order); `git diff --stat` after
a rerun shows nothing. --out DIR writes elsewhere (to compare two runs).

Reference used for the committed files:
  diffusers commit 58eb52c0803ea9af3abec60841c2a093bdf1f951 (version 0.40.0.dev0), files
  src/diffusers/models/autoencoders/{autoencoder_kl,vae}.py, models/unets/unet_2d_blocks.py,
  models/{attention_processor,attention,resnet,normalization,activations,downsampling,
  upsampling,embeddings,modeling_outputs}.py and utils/outputs.py, unmodified;
  torch 1.13.0a0 (Debian python3-torch), numpy 1.24.2, python 3.11.2.
  torch 1.13 has no F.scaled_dot_product_attention, so the mid-block Attention runs diffusers'
  AttnProcessor (baddbmm + softmax), the same arithmetic as AttnProcessor2_0.

Shims (scripts/golden/refshims.py, DIFFUSERS_SHIMS; none computes anything of the model):
  diffusers/__init__ (version only), utils/__init__ (deprecate as a warning, the names below),
  utils/logging (stdlib logger), utils/import_utils (torch version compare; xformers, NPU, XLA,
  accelerate reported absent), utils/torch_utils (identity decorators, randn_tensor =
  torch.randn), utils/accelerate_utils (apply_forward_hook = identity, as without accelerate),
  configuration_utils (register_to_config records all __init__ arguments; to_json_string as
  save_pretrained writes config.json), loaders (empty PeftAdapterMixin, FromOriginalModelMixin),
  image_processor (empty IPAdapterMaskProcessor), models/modeling_utils (ModelMixin = nn.Module),
  models/transformers/{transformer_2d,dual_transformer_2d} (placeholders; the VAE builds
  neither), and package __init__ files that only extend __path__ to the reference tree.

Fixtures (see also docs of the consumer, trainerproc/vae):
  tiny/config.json                         AutoencoderKL config as save_pretrained writes it
  tiny/diffusion_pytorch_model.safetensors its weights (to_q/to_k/to_v/to_out.0 names), F32
  tiny_io.safetensors                      sample [2,3,48,64] in [-1,1]; posterior_mean,
      posterior_logvar [2,4,12,16] (encoder + quant_conv, logvar clamped to [-30, 20] by
      DiagonalGaussianDistribution); z [2,4,12,16] ~ N(0,1); decoded [2,3,48,64] =
      decode(z).sample (post_quant_conv included, no scaling factor applied).
"""
import argparse
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "scripts", "golden"))
import refshims  # noqa: E402
import stio  # noqa: E402

TINY = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 3,
    up_block_types=("UpDecoderBlock2D",) * 3,
    block_out_channels=(16, 32, 32),
    layers_per_block=2,
    act_fn="silu",
    latent_channels=4,
    norm_num_groups=8,
    sample_size=64,
    scaling_factor=0.13025,
    shift_factor=None,
    force_upcast=True,
    use_quant_conv=True,
    use_post_quant_conv=True,
    mid_block_add_attention=True,
)


def build(AutoencoderKL):
    """The tiny model with torch's default init under seed 0, then every GroupNorm's weight and
    bias moved away from 1 and 0 so that a loader that ignores them fails the comparison, and
    the mid-block attentions' query and key weights doubled: at default init the softmax is
    nearly uniform and a wrong score scale would go unnoticed; doubled, scores have a standard
    deviation near 1.7."""
    torch.manual_seed(0)
    model = AutoencoderKL(**TINY).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, mod in sorted(model.named_modules()):
            if isinstance(mod, torch.nn.GroupNorm):
                mod.weight.copy_(1 + 0.2 * torch.randn(mod.weight.shape, generator=g))
                mod.bias.copy_(0.2 * torch.randn(mod.bias.shape, generator=g))
        for block in (model.encoder.mid_block, model.decoder.mid_block):
            for att in block.attentions:
                att.to_q.weight.mul_(2)
                att.to_k.weight.mul_(2)
    return model


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--diffusers-src", required=True, help="exported diffusers tree (its src/ or root)")
    ap.add_argument("--out", default=HERE, help="output directory (default: this directory)")
    args = ap.parse_args()

    torch.set_num_threads(1)  # one thread: the same summation order on every run
    AutoencoderKL = refshims.load_autoencoder_kl(args.diffusers_src)
    model = build(AutoencoderKL)
    print("attention processor:", type(model.encoder.mid_block.attentions[0].processor).__name__)

    g = torch.Generator().manual_seed(2)
    sample = torch.rand((2, 3, 48, 64), generator=g) * 2 - 1
    z = torch.randn((2, 4, 12, 16), generator=g)
    with torch.no_grad():
        posterior = model.encode(sample).latent_dist
        decoded = model.decode(z).sample

    tiny = os.path.join(args.out, "tiny")
    os.makedirs(tiny, exist_ok=True)
    with open(os.path.join(tiny, "config.json"), "w") as f:
        f.write(model.to_json_string())
    weights = {k: ("F32", v.numpy()) for k, v in model.state_dict().items()}
    io = {
        "sample": ("F32", sample.numpy()),
        "posterior_mean": ("F32", posterior.mean.contiguous().numpy()),
        "posterior_logvar": ("F32", posterior.logvar.contiguous().numpy()),
        "z": ("F32", z.numpy()),
        "decoded": ("F32", decoded.numpy()),
    }
    for path, tensors in (
        (os.path.join(tiny, "diffusion_pytorch_model.safetensors"), weights),
        (os.path.join(args.out, "tiny_io.safetensors"), io),
    ):
        stio.write(path, tensors)
        stio.check_roundtrip(path, tensors)
    for name, (_, arr) in sorted(io.items()):
        print(f"{name:18s} {list(arr.shape)} mean {arr.mean():+.4f} std {arr.std():.4f}")
    print("weights:", len(weights), "tensors,", sum(a.size for _, a in weights.values()), "floats")


if __name__ == "__main__":
    main()
