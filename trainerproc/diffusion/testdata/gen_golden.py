#!/usr/bin/python3
"""Generates golden.json in this directory by running diffusers' own scheduler classes.

Rerun (from the repository root; Debian's python3 with python3-torch and python3-numpy, NOT a
pyenv/venv python):

    git --git-dir=<diffusers bare repo> archive 58eb52c0803ea9af3abec60841c2a093bdf1f951 src \
        | tar -x -C /tmp/diffusers-src
    /usr/bin/python3 trainerproc/diffusion/testdata/gen_golden.py --diffusers-src /tmp/diffusers-src

It rewrites golden.json byte for byte (fixed inputs, one thread); `git diff --stat` after a
rerun shows nothing. --out FILE writes elsewhere.

Reference used for the committed file: diffusers commit 58eb52c (0.40.0.dev0), files
src/diffusers/schedulers/scheduling_{ddpm,ddim,euler_discrete,dpmsolver_multistep}.py,
unmodified; torch 1.13 (Debian python3-torch), numpy 1.24, python 3.11.

Shims: scripts/golden/refshims.py's DIFFUSERS_SHIMS (register_to_config records every
__init__ argument), plus, here, schedulers/scheduling_utils (SchedulerMixin empty,
KarrasDiffusionSchedulers enum, SchedulerOutput dataclass: none computes anything) and
utils.is_scipy_available (False: only the beta-sigma option needs scipy).

diffusers' from_config(config, **overrides) builds a class from another scheduler's config by
taking the keys the class accepts that were in the file (keys that held defaults are dropped
via _use_default_values) plus the overrides; build() below does exactly that, since the shimmed
ConfigMixin has no from_config.

Float tensors are written as the hex of their float32 bits (8 digits each, concatenated), ints
as JSON lists.
"""
import argparse
import inspect
import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "scripts", "golden"))
import refshims  # noqa: E402

SCHEDULER_SHIMS = {
    "diffusers/schedulers/scheduling_utils.py": """
        from dataclasses import dataclass
        from enum import Enum
        import torch
        from ..utils import BaseOutput

        class KarrasDiffusionSchedulers(Enum):
            DDIMScheduler = 1
            DDPMScheduler = 2
            PNDMScheduler = 3
            LMSDiscreteScheduler = 4
            EulerDiscreteScheduler = 5
            HeunDiscreteScheduler = 6
            EulerAncestralDiscreteScheduler = 7
            DPMSolverMultistepScheduler = 8
            DPMSolverSinglestepScheduler = 9
            KDPM2DiscreteScheduler = 10
            KDPM2AncestralDiscreteScheduler = 11
            DEISMultistepScheduler = 12
            UniPCMultistepScheduler = 13
            DPMSolverSDEScheduler = 14
            EDMEulerScheduler = 15

        @dataclass
        class SchedulerOutput(BaseOutput):
            prev_sample: torch.Tensor

        class SchedulerMixin:
            config_name = "scheduler_config.json"
            _compatibles = []
            has_compatibles = True
    """,
}


def load(src):
    src = os.path.abspath(src)
    if os.path.isdir(os.path.join(src, "src", "diffusers")):
        src = os.path.join(src, "src", "diffusers")
    elif os.path.isdir(os.path.join(src, "diffusers")):
        src = os.path.join(src, "diffusers")
    shims = dict(refshims.DIFFUSERS_SHIMS, **SCHEDULER_SHIMS)
    shims["diffusers/utils/__init__.py"] += """
        def is_scipy_available():
            return False
    """
    fmt = {"SRC": repr(src), "VERSION": refshims.diffusers_version(src)}
    refshims._write_shims(shims, fmt, "diffusers", ["schedulers"])
    from diffusers.schedulers.scheduling_ddpm import DDPMScheduler
    from diffusers.schedulers.scheduling_ddim import DDIMScheduler
    from diffusers.schedulers.scheduling_euler_discrete import EulerDiscreteScheduler
    from diffusers.schedulers.scheduling_dpmsolver_multistep import DPMSolverMultistepScheduler
    return DDPMScheduler, DDIMScheduler, EulerDiscreteScheduler, DPMSolverMultistepScheduler


def build(cls, file_config, **overrides):
    """cls.from_config(<scheduler loaded from file_config>.config, **overrides)."""
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    kw = {k: v for k, v in file_config.items() if k in accepted}
    kw.update(overrides)
    return cls(**kw)


def f32hex(t):
    a = np.ascontiguousarray(t.detach().to(torch.float32).numpy().ravel())
    return "".join("%08x" % v for v in a.view(np.uint32).tolist())


# The scheduler configs the fixtures use (as scheduler_config.json would hold them).
CONFIGS = {
    # PixArt-Σ's original scheduler.
    "pixart_dpm": {"_class_name": "DPMSolverMultistepScheduler", "beta_schedule": "linear",
                   "beta_start": 0.0001, "beta_end": 0.02, "num_train_timesteps": 1000,
                   "prediction_type": "epsilon", "solver_order": 2, "algorithm_type": "dpmsolver++",
                   "lower_order_final": True, "steps_offset": 0, "thresholding": False,
                   "timestep_spacing": "linspace", "use_karras_sigmas": False},
    # Every non-default option the solvers implement (each class takes the keys it knows).
    "variants": {"_class_name": "DPMSolverMultistepScheduler", "beta_schedule": "linear",
                 "solver_type": "heun", "final_sigmas_type": "sigma_min", "lower_order_final": False,
                 "lambda_min_clipped": -4.5, "clip_sample": False, "set_alpha_to_one": False,
                 "steps_offset": 1},
    "scaled_linear": {"_class_name": "UniPCMultistepScheduler", "beta_schedule": "scaled_linear",
                      "beta_start": 0.00085, "beta_end": 0.012, "num_train_timesteps": 1000,
                      "prediction_type": "epsilon"},
    "zero_snr": {"_class_name": "DDPMScheduler", "beta_schedule": "scaled_linear",
                 "beta_start": 0.00085, "beta_end": 0.012, "rescale_betas_zero_snr": True,
                 "prediction_type": "v_prediction", "timestep_spacing": "trailing"},
    # An odd, short table: torch.linspace's vector/tail split falls differently.
    "linear_37": {"_class_name": "DDPMScheduler", "beta_schedule": "linear", "beta_start": 0.001,
                  "beta_end": 0.03, "num_train_timesteps": 37},
    "cosine": {"_class_name": "DDPMScheduler", "beta_schedule": "squaredcos_cap_v2",
               "num_train_timesteps": 100},
}


def training(DDPM):
    out = {}
    gen = torch.Generator().manual_seed(7)
    x0 = torch.randn(4, 3, 5, generator=gen)
    eps = torch.randn(4, 3, 5, generator=gen)
    for name, cfg in CONFIGS.items():
        # As SimpleTuner builds its training schedule: from_pretrained(subfolder="scheduler",
        # rescale_betas_zero_snr=..., timestep_spacing=...); the spacing does not touch add_noise.
        s = build(DDPM, cfg, rescale_betas_zero_snr=cfg.get("rescale_betas_zero_snr", False),
                  timestep_spacing="trailing")
        n = s.config.num_train_timesteps
        ts = torch.tensor([0, n // 3, n - 2, n - 1])
        noisy = s.add_noise(x0, eps, ts)
        out[name] = {"config": cfg, "betas": f32hex(s.betas), "alphas_cumprod": f32hex(s.alphas_cumprod),
                     "add_noise_t": ts.tolist(), "noisy": f32hex(noisy)}
    return {"x0": f32hex(x0), "eps": f32hex(eps), "shape": [4, 15], "schedules": out}


SOLVERS = {"ddim": "DDIM", "euler": "Euler", "dpm++": "DPM"}


def timesteps(classes):
    """set_timesteps(N) for each solver, spacing and N, on the PixArt config, plus leading with
    steps_offset 1 on the scaled_linear one."""
    out = []
    cases = [("pixart_dpm", sp, 0) for sp in ("linspace", "leading", "trailing")]
    cases.append(("scaled_linear", "leading", 1))
    cases.append(("variants", "linspace", 1))
    for cfg_name, spacing, offset in cases:
        for solver, cls in SOLVERS.items():
            for n in (1, 7, 20, 28):
                s = build(classes[cls], CONFIGS[cfg_name], timestep_spacing=spacing, steps_offset=offset)
                s.set_timesteps(n)
                out.append({"config": cfg_name, "solver": solver, "spacing": spacing, "steps_offset": offset,
                            "steps": n, "timesteps": [float(v) for v in s.timesteps.tolist()],
                            "init_noise_sigma": float(s.init_noise_sigma)})
    return out


def fake_model(x, c):
    """The deterministic stand-in for the transformer: ε = 0.3·x + c."""
    return 0.3 * x + c


def sampling(classes):
    """Whole sampling loops as diffusers' pipelines run them: latents = noise·init_noise_sigma;
    per timestep: scale_model_input, the fake model, step. Records every step's sample and the
    step's predicted x₀."""
    gen = torch.Generator().manual_seed(11)
    noise = torch.randn(2, 3, 4, generator=gen)
    c = torch.rand(2, 3, 4, generator=gen) - 0.5
    runs = []
    # (config, solver, spacing, steps, rescale_betas_zero_snr). The first three are SimpleTuner's
    # defaults for PixArt (inference_scheduler_timestep_spacing "trailing").
    cases = [("pixart_dpm", sol, "trailing", n, False) for sol in SOLVERS for n in (7, 28)]
    cases += [("pixart_dpm", sol, "linspace", 20, False) for sol in SOLVERS]
    cases += [("scaled_linear", sol, "leading", 7, False) for sol in SOLVERS]
    cases += [("zero_snr", sol, "trailing", 7, True) for sol in SOLVERS]
    cases += [("pixart_dpm", sol, "trailing", 1, False) for sol in SOLVERS]
    cases += [("variants", sol, sp, n, False) for sol in SOLVERS for sp, n in (("linspace", 20), ("leading", 7))]
    for cfg_name, solver, spacing, n, rescale in cases:
        cfg = CONFIGS[cfg_name]
        s = build(classes[SOLVERS[solver]], cfg, prediction_type=cfg.get("prediction_type", "epsilon"),
                  timestep_spacing=spacing, rescale_betas_zero_snr=rescale)
        s.set_timesteps(n)
        x = noise * s.init_noise_sigma
        xs, x0s, scaled = [], [], []
        for t in s.timesteps:
            inp = s.scale_model_input(x, t)
            eps = fake_model(inp, c)
            scaled.append(f32hex(inp))
            if solver == "dpm++":
                # DPM-Solver's step returns no x0; its data prediction is convert_model_output
                # at the step's index (initialised here exactly as step itself does first).
                if s.step_index is None:
                    s._init_step_index(t)
                x0s.append(f32hex(s.convert_model_output(eps, sample=x)))
            res = s.step(eps, t, x, return_dict=False)
            x = res[0]
            xs.append(f32hex(x))
            if len(res) > 1:
                x0s.append(f32hex(res[1]))
        runs.append({"config": cfg_name, "solver": solver, "spacing": spacing, "steps": n,
                     "rescale_betas_zero_snr": rescale, "timesteps": [float(v) for v in s.timesteps.tolist()],
                     "scaled_inputs": scaled, "samples": xs, "pred_x0": x0s})
    return {"noise": f32hex(noise), "c": f32hex(c), "runs": runs}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--diffusers-src", required=True)
    p.add_argument("--out", default=os.path.join(HERE, "golden.json"))
    a = p.parse_args()
    torch.set_num_threads(1)
    DDPM, DDIM, Euler, DPM = load(a.diffusers_src)
    classes = {"DDIM": DDIM, "Euler": Euler, "DPM": DPM}
    doc = {"training": training(DDPM), "timesteps": timesteps(classes), "sampling": sampling(classes)}
    with open(a.out, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
