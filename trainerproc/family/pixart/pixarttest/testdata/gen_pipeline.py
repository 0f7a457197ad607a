#!/usr/bin/python3
"""Generates the tiny PixArt-Sigma pipeline pieces in this directory with diffusers' own code:
the transformer (PixArtTransformer2DModel), the scheduler config (DPMSolverMultistepScheduler)
and model_index.json (PixArtSigmaPipeline's components). The VAE, the T5 text encoder and the
tokenizer are the fixtures of trainerproc/vae and trainerproc/family/encoders/encoderstest; the
Go package pixarttest assembles the whole pipeline directory.

Rerun (from the repository root; Debian's python3 with python3-torch and python3-numpy, NOT a
pyenv/venv python):

    git --git-dir=<diffusers bare repo> archive 58eb52c0803ea9af3abec60841c2a093bdf1f951 src \
        | tar -x -C /tmp/diffusers-src
    /usr/bin/python3 trainerproc/family/pixart/pixarttest/testdata/gen_pipeline.py \
        --diffusers-src /tmp/diffusers-src

It rewrites tiny/model_index.json, tiny/scheduler/scheduler_config.json,
tiny/transformer/config.json, tiny/transformer/diffusion_pytorch_model.safetensors,
colourvae/config.json and colourvae/diffusion_pytorch_model.safetensors.gz byte for byte
(fixed seed, one thread, tensors in name order, gzip without a timestamp); `git diff --stat`
after a rerun shows nothing. --out DIR writes elsewhere (tiny/ and colourvae/ under it).

Reference used for the committed files: diffusers commit 58eb52c0803ea9af3abec60841c2a093bdf1f951
(0.40.0.dev0), models/transformers/pixart_transformer_2d.py with models/{attention,
attention_processor,embeddings,normalization,activations,modeling_outputs}.py,
schedulers/scheduling_dpmsolver_multistep.py and models/autoencoders/{autoencoder_kl,vae}.py
with models/unets/unet_2d_blocks.py, models/{resnet,downsampling,upsampling}.py, unmodified; torch 1.13.0a0 (Debian python3-torch),
numpy 1.24.2, python 3.11.2.

Shims: scripts/golden/refshims.py's DIFFUSERS_SHIMS, plus (here) a passthrough __init__ for
models/transformers and schedulers, and schedulers/scheduling_utils (SchedulerMixin and
SchedulerOutput as plain classes, KarrasDiffusionSchedulers as an enum: the reference file
imports huggingface_hub), and utils.is_scipy_available answering False (only the scheduler's
beta-sigma options use scipy). None computes anything of the model.

Fixtures (tiny/):
  transformer/config.json   PixArtTransformer2DModel config as save_pretrained writes it:
      2 layers, 2 heads x 16 (width 32), caption_channels 32 (the tiny T5's d_model), in 4,
      out 8 (learned sigma), patch 2, sample_size 16 (64 px with the tiny VAE's factor 4),
      interpolation_scale 2 (given explicitly, as the 900M config does)
  transformer/diffusion_pytorch_model.safetensors  torch's default init under seed 0, then the
      zero-initialised tables moved off zero (so a loader that skips them fails), stored BF16
      like the real v0.6 checkpoint
  scheduler/scheduler_config.json  the PixArt-Sigma original scheduler: DPMSolverMultistep,
      linear 1e-4 -> 0.02, epsilon
  model_index.json          PixArtSigmaPipeline with T5EncoderModel, T5Tokenizer,
      PixArtTransformer2DModel, AutoencoderKL, DPMSolverMultistepScheduler

Fixture colourvae/ (the learning test's VAE; see colour_vae below): an AutoencoderKL in the
tiny VAE's style (16, 32, 32, 32 channels: four levels, downscale 8, 4 latent channels, 4 norm
groups) whose weights are constructed so that its latents are the image's RGB (averaged over
8x8 pixels, and a fourth channel of zeros) times scaling_factor 2 (which brings the coloured
shapes' latents to about unit variance, as a real VAE's scaling factor does), and
decode(encode(x)) returns x up to about 1e-3: colours survive the round trip, so a test can
read a generated image's colour. Downscale 8, like the real VAE's, keeps the learning test's
token grid small (64 px images: 8x8 latents, 16 tokens).
  colourvae/config.json, colourvae/diffusion_pytorch_model.safetensors.gz (F32, gzipped)
"""
import gzip
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "..", "..", "scripts", "golden"))
import refshims  # noqa: E402
import stio  # noqa: E402

TRANSFORMER = dict(
    num_layers=2,
    num_attention_heads=2,
    attention_head_dim=16,
    cross_attention_dim=32,
    caption_channels=32,
    in_channels=4,
    out_channels=8,
    patch_size=2,
    sample_size=16,
    interpolation_scale=2,
    use_additional_conditions=False,
    norm_type="ada_norm_single",
    norm_elementwise_affine=False,
    norm_eps=1e-6,
    activation_fn="gelu-approximate",
    attention_bias=True,
    num_embeds_ada_norm=1000,
    upcast_attention=False,
)

SCHEDULER = dict(
    num_train_timesteps=1000,
    beta_start=0.0001,
    beta_end=0.02,
    beta_schedule="linear",
    prediction_type="epsilon",
)

EXTRA_SHIMS = {
    "diffusers/schedulers/scheduling_utils.py": """
        import enum
        from dataclasses import dataclass

        import torch

        class KarrasDiffusionSchedulers(enum.Enum):
            DDIMScheduler = 1

        @dataclass
        class SchedulerOutput:
            prev_sample: torch.Tensor

        class SchedulerMixin:
            config_name = "scheduler_config.json"
    """,
}


def load(src):
    """Imports the reference classes behind the shims; returns (PixArtTransformer2DModel,
    DPMSolverMultistepScheduler, ConfigMixin, AutoencoderKL)."""
    src = os.path.abspath(src)
    for sub in (("src", "diffusers"), ("diffusers",)):
        if os.path.isdir(os.path.join(src, *sub)):
            src = os.path.join(src, *sub)
            break
    fmt = {"SRC": repr(src), "VERSION": refshims.diffusers_version(src)}
    shims = dict(refshims.DIFFUSERS_SHIMS, **EXTRA_SHIMS)
    # The DPM-Solver file asks whether scipy is there (only its beta-sigma options use it).
    shims["diffusers/utils/__init__.py"] += """
        def is_scipy_available():
            return False
    """
    refshims._write_shims(shims, fmt, "diffusers",
                          refshims.DIFFUSERS_PASSTHROUGH + ["models/transformers", "schedulers"])
    from diffusers.configuration_utils import ConfigMixin
    from diffusers.models.transformers.pixart_transformer_2d import PixArtTransformer2DModel
    from diffusers.schedulers.scheduling_dpmsolver_multistep import DPMSolverMultistepScheduler
    from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
    return PixArtTransformer2DModel, DPMSolverMultistepScheduler, ConfigMixin, AutoencoderKL


# The colour VAE's AutoencoderKL arguments.
COLOUR_VAE = dict(
    refshims.SDXL_VAE_CONFIG,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(16, 32, 32, 32),
    norm_num_groups=4,
    sample_size=64,
    scaling_factor=2.0,
)

# Anchor magnitude: a GroupNorm group holding [x, -x, A, -A, 0...] has mean 0 and a standard
# deviation of A·sqrt(2/n)·(1 + O(x²/A²)), so it passes x through, scaled, to 1e-4.
ANCHOR = 100.0
# Offset of the kept channels before each SiLU, where SiLU(u) = u to 1e-4 (u ≥ 11).
LIFT = 12.0


def colour_vae(AutoencoderKL):
    """An AutoencoderKL whose latents are the image's colours and whose decoder gives them back.

    Every resnet's conv2 and every attention's to_out are zero, so those blocks pass their
    input through (their residual or 1x1 shortcut); convolutions copy channels at their centre
    tap; the encoder's downsamplers average each 2x2 window. The two GroupNorms outside a
    residual branch (each side's conv_norm_out) see groups laid out [x, -x, A, -A, 0...]: mean
    0 and a deviation set by the anchors A, so the colour x passes through scaled by a known
    constant, which the norm's weight undoes; its bias lifts x to where SiLU is the identity
    and the next convolution's bias takes the lift off. The posterior's log-variance is -30
    (the clamp), so sampling adds nothing visible."""
    model = AutoencoderKL(**COLOUR_VAE).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        enc, dec = model.encoder, model.decoder

        def centre(conv, rows, bias=None):
            # conv.weight[o, i, k/2, k/2] = rows[o][i]
            k = conv.weight.shape[-1] // 2
            for o, row in enumerate(rows):
                for i, w in enumerate(row):
                    conv.weight[o, i, k, k] = w
            if bias is not None:
                conv.bias.copy_(torch.tensor(bias, dtype=torch.float32))

        def copy_rows(n_out, n_in):
            return [[1.0 if i == o else 0.0 for i in range(n_in)] for o in range(n_out)]

        def anchored(n_ch, per_group, sources):
            # The 1x1 map from n_src colour channels to groups [x, -x, A, -A, 0...], one group
            # per source, then groups of anchors only: (rows, bias).
            n_src = len(sources)
            rows = [[0.0] * n_src for _ in range(n_ch)]
            bias = [0.0] * n_ch
            for g in range(n_ch // per_group):
                base = g * per_group
                if g < n_src:
                    rows[base][g], rows[base + 1][g] = 1.0, -1.0
                else:
                    bias[base], bias[base + 1] = ANCHOR, -ANCHOR
                bias[base + 2], bias[base + 3] = ANCHOR, -ANCHOR
            return rows, bias

        # Encoder: RGB in channels 0-2 (16 wide), kept through the first level.
        # (Up- and downsamplers are found block by block, so the depth is COLOUR_VAE's.)
        centre(enc.conv_in, copy_rows(16, 3))
        for block in enc.down_blocks:
            for ds in block.downsamplers or []:
                for c in range(ds.conv.weight.shape[0]):
                    ds.conv.weight[c, c, 0:2, 0:2] = 0.25
        # The second level's first resnet widens 16 -> 32 through its 1x1 shortcut: there the
        # colours take the [x, -x, A, -A, 0...] layout of groups of 8.
        rows, bias = anchored(32, 8, [0, 1, 2])
        sc = enc.down_blocks[1].resnets[0].conv_shortcut
        centre(sc, [r + [0.0] * 13 for r in rows], bias)
        # conv_norm_out: deviation A/2 per group of 8; weight A/2 restores x, bias lifts it.
        for g in range(3):
            enc.conv_norm_out.weight[8 * g] = ANCHOR / 2
            enc.conv_norm_out.bias[8 * g] = LIFT
        # conv_out: means = the colours (lift removed), log-variances -30; quant_conv copies.
        rows = [[0.0] * 32 for _ in range(8)]
        for c in range(3):
            rows[c][8 * c] = 1.0
        centre(enc.conv_out, rows, [-LIFT] * 3 + [0.0] + [-30.0] * 4)
        centre(model.quant_conv, copy_rows(8, 8))

        # Decoder: post_quant_conv copies; conv_in lays the colours out for the last norm's
        # groups of 4 (16 channels), kept in channels 0-15 of 32 and through the upsamplers.
        centre(model.post_quant_conv, copy_rows(4, 4))
        rows, bias = anchored(16, 4, [0, 1, 2])
        centre(dec.conv_in, [r + [0.0] for r in rows] + [[0.0] * 4] * 16, bias + [0.0] * 16)
        for block in dec.up_blocks:
            for us in block.upsamplers or []:
                centre(us.conv, copy_rows(32, 32))
        centre(dec.up_blocks[-1].resnets[0].conv_shortcut, copy_rows(16, 32))
        # conv_norm_out: deviation A/sqrt(2) per group of 4.
        for g in range(3):
            dec.conv_norm_out.weight[4 * g] = ANCHOR / 2 ** 0.5
            dec.conv_norm_out.bias[4 * g] = LIFT
        rows = [[0.0] * 16 for _ in range(3)]
        for c in range(3):
            rows[c][4 * c] = 1.0
        centre(dec.conv_out, rows, [-LIFT] * 3)
    return model


def write_colour_vae(AutoencoderKL, out):
    """Writes colourvae/ and checks the round trip on a coloured rectangle whose edges lie on
    the 8-pixel grid (within an 8x8 cell the latents hold the mean colour)."""
    model = colour_vae(AutoencoderKL)
    g = torch.Generator().manual_seed(2)
    x = torch.rand(2, 3, 1, 1, generator=g).mul(2).sub(1).repeat(1, 1, 32, 48)
    x[:, :, 8:24, 16:40] = torch.rand(2, 3, 1, 1, generator=g).mul(2).sub(1)
    with torch.no_grad():
        z = model.encode(x).latent_dist.mean
        y = model.decode(z).sample
    err = float((y - x).abs().max())
    if err > 2e-3:
        raise RuntimeError("colour VAE round trip error %g" % err)
    tensors = {name: ("F32", p.detach().numpy()) for name, p in model.state_dict().items()}
    d = os.path.join(out, "colourvae")
    os.makedirs(d, exist_ok=True)
    stio.write(os.path.join(d, "diffusion_pytorch_model.safetensors"), tensors)
    path = os.path.join(d, "diffusion_pytorch_model.safetensors")
    with open(path, "rb") as f:
        raw = f.read()
    os.remove(path)
    with open(path + ".gz", "wb") as f:
        f.write(gzip.compress(raw, compresslevel=9, mtime=0))
    write_text(os.path.join(d, "config.json"), model.to_json_string())
    print("colour VAE round trip max error %.2g" % err)


def write_text(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def main():
    args = refshims.generator_args(__doc__, "--diffusers-src", "diffusers source tree (src/ of commit 58eb52c)",
                                   HERE)
    Transformer, Scheduler, ConfigMixin, AutoencoderKL = load(args.diffusers_src)

    torch.manual_seed(0)
    model = Transformer(**TRANSFORMER).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if not p.any():
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
    tensors = {name: ("BF16", stio.bf16_bits(p.detach().float().numpy()))
               for name, p in model.state_dict().items()}
    out = os.path.join(args.out, "tiny")
    os.makedirs(os.path.join(out, "transformer"), exist_ok=True)
    stio.write(os.path.join(out, "transformer", "diffusion_pytorch_model.safetensors"), tensors)
    write_text(os.path.join(out, "transformer", "config.json"), model.to_json_string())

    sched = Scheduler(**SCHEDULER)
    write_text(os.path.join(out, "scheduler", "scheduler_config.json"), sched.to_json_string())

    # DiffusionPipeline.register_modules records each component as [library, class name];
    # save_pretrained writes that config with ConfigMixin's json layout.
    class PixArtSigmaPipeline(ConfigMixin):
        config_name = "model_index.json"

    pipe = PixArtSigmaPipeline()
    pipe.register_to_config(
        scheduler=("diffusers", "DPMSolverMultistepScheduler"),
        text_encoder=("transformers", "T5EncoderModel"),
        tokenizer=("transformers", "T5Tokenizer"),
        transformer=("diffusers", "PixArtTransformer2DModel"),
        vae=("diffusers", "AutoencoderKL"),
    )
    write_text(os.path.join(out, "model_index.json"), pipe.to_json_string())
    print("wrote", out, len(tensors), "tensors")
    write_colour_vae(AutoencoderKL, args.out)


if __name__ == "__main__":
    main()
