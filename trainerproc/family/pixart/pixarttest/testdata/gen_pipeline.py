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
tiny/transformer/config.json and tiny/transformer/diffusion_pytorch_model.safetensors byte for
byte (fixed seed, one thread, tensors in name order); `git diff --stat` after a rerun shows
nothing. --out DIR writes elsewhere.

Reference used for the committed files: diffusers commit 58eb52c0803ea9af3abec60841c2a093bdf1f951
(0.40.0.dev0), models/transformers/pixart_transformer_2d.py with models/{attention,
attention_processor,embeddings,normalization,activations,modeling_outputs}.py and
schedulers/scheduling_dpmsolver_multistep.py, unmodified; torch 1.13.0a0 (Debian python3-torch),
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
"""
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
    """Imports the reference classes behind the shims; returns (transformer, scheduler,
    ConfigMixin, register_to_config)."""
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
    return PixArtTransformer2DModel, DPMSolverMultistepScheduler, ConfigMixin


def write_text(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def main():
    args = refshims.generator_args(__doc__, "--diffusers-src", "diffusers source tree (src/ of commit 58eb52c)",
                                   os.path.join(HERE, "tiny"))
    Transformer, Scheduler, ConfigMixin = load(args.diffusers_src)

    torch.manual_seed(0)
    model = Transformer(**TRANSFORMER).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if not p.any():
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
    tensors = {name: ("BF16", stio.bf16_bits(p.detach().float().numpy()))
               for name, p in model.state_dict().items()}
    out = args.out
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


if __name__ == "__main__":
    main()
