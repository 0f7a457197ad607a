"""Runs the reference implementations (diffusers' AutoencoderKL, transformers' T5EncoderModel)
from their unmodified source trees on Debian's python3-torch 1.13, with no pip packages.

Neither library can be imported whole here: their package __init__ files pull in
huggingface_hub, safetensors, packaging, accelerate, tokenizers and more, none of which Debian
ships for this python. So only the modelling files are imported from the reference tree, and
the few names they take from the rest of their package are supplied by the small shim modules
below, written to a temporary directory that is put first on sys.path. Each shim package
extends its __path__ with the matching directory of the reference tree, so any module that has
no shim is the reference's own file. The shims hold no model arithmetic: configuration
plumbing, logging, no-op decorators, empty mixins, and "is X available" answers.

The reference trees are never copied into this repository; they are read from a directory
given on the command line (see the generators' docstrings for how to export them).
"""
import os
import sys
import tempfile
import textwrap

# Shim modules for diffusers, by path relative to the temporary root. @SRC@ is replaced by
# the quoted path of the reference tree's src/diffusers directory, @VERSION@ by its version.
DIFFUSERS_SHIMS = {
    # The package __init__ imports every pipeline; the shim keeps only the version string
    # (save_pretrained writes it into config.json) and lets submodules load from the tree.
    "diffusers/__init__.py": """
        __version__ = "@VERSION@"
        __path__.append(@SRC@)
    """,
    # utils/__init__ imports huggingface_hub, packaging, tqdm ...; the modelling files need only
    # these names. BaseOutput is the reference's own utils/outputs.py.
    "diffusers/utils/__init__.py": """
        import warnings
        __path__.append(@SRC@ + "/utils")
        from . import logging
        from .import_utils import is_torch_npu_available, is_torch_version, is_torch_xla_available
        from .outputs import BaseOutput

        def deprecate(*args, take_from=None, standard_warn=True, stacklevel=2):
            # The modelling files call this with (name, version, message) triples; none of
            # the code paths used here passes deprecated arguments.
            for i in range(0, len(args) - (len(args) % 3), 3):
                warnings.warn(str(args[i + 2]), FutureWarning, stacklevel=stacklevel)
    """,
    "diffusers/utils/logging.py": """
        import logging

        def get_logger(name=None):
            return logging.getLogger(name)
    """,
    # Answers for a CPU-only torch 1.13 without xformers, NPU, XLA or accelerate.
    "diffusers/utils/import_utils.py": """
        import operator
        import torch

        def _numeric(v):
            out = []
            for part in v.split("+")[0].split("."):
                digits = "".join(ch for ch in part if ch.isdigit()) if part[:1].isdigit() else ""
                if not digits:
                    break
                out.append(int(digits))
                if not part.isdigit():
                    break
            return tuple(out + [0] * (3 - len(out)))

        _OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
                "==": operator.eq, "!=": operator.ne}

        def is_torch_version(operation, version):
            return _OPS[operation](_numeric(torch.__version__), _numeric(version))

        def is_torch_available():
            return True

        def _no(*args, **kwargs):
            return False

        is_torch_npu_available = is_torch_xla_available = is_torch_xla_version = _no
        is_xformers_available = is_accelerate_available = is_torch_mlu_available = _no
        is_torch_neuronx_available = _no
    """,
    # The reference torch_utils touches torch.xpu / torch.mps at import (absent in 1.13).
    "diffusers/utils/torch_utils.py": """
        import torch
        from .import_utils import is_torch_version

        def maybe_allow_in_graph(cls):
            return cls

        def maybe_adjust_dtype_for_device(dtype, device=None):
            return dtype

        def apply_freeu(*args, **kwargs):
            raise NotImplementedError("FreeU is not part of the shimmed reference")

        def randn_tensor(shape, generator=None, device=None, dtype=None, layout=None):
            return torch.randn(shape, generator=generator, device=device, dtype=dtype)
    """,
    # Without accelerate the reference decorator returns the method unchanged.
    "diffusers/utils/accelerate_utils.py": """
        def apply_forward_hook(method):
            return method
    """,
    # register_to_config records every __init__ argument (defaults included) in self.config,
    # as the reference does; to_json_string writes it as save_pretrained's config.json does.
    "diffusers/configuration_utils.py": """
        import functools
        import inspect
        import json
        from . import __version__

        class FrozenDict(dict):
            def __getattr__(self, name):
                try:
                    return self[name]
                except KeyError as e:
                    raise AttributeError(name) from e

        class ConfigMixin:
            config_name = "config.json"

            def register_to_config(self, **kwargs):
                kwargs.pop("kwargs", None)
                self._internal_dict = FrozenDict({**getattr(self, "_internal_dict", {}), **kwargs})

            @property
            def config(self):
                return self._internal_dict

            def to_json_string(self):
                d = dict(self._internal_dict)
                d["_class_name"] = type(self).__name__
                d["_diffusers_version"] = __version__
                d = {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}
                return json.dumps(d, indent=2, sort_keys=True) + "\\n"

        def register_to_config(init):
            @functools.wraps(init)
            def inner(self, *args, **kwargs):
                params = list(inspect.signature(init).parameters.values())[1:]
                cfg = {p.name: p.default for p in params if p.default is not inspect.Parameter.empty
                       and not p.name.startswith("_") and p.kind is not p.VAR_KEYWORD}
                cfg.update({p.name: a for p, a in zip(params, args)})
                cfg.update({k: v for k, v in kwargs.items() if not k.startswith("_")})
                ConfigMixin.register_to_config(self, **cfg)
                init(self, *args, **{k: v for k, v in kwargs.items() if not k.startswith("_")})
            return inner
    """,
    "diffusers/loaders/__init__.py": """
        class PeftAdapterMixin:
            pass
    """,
    "diffusers/loaders/single_file_model.py": """
        class FromOriginalModelMixin:
            pass
    """,
    "diffusers/image_processor.py": """
        class IPAdapterMaskProcessor:
            pass
    """,
    # The models package __init__ is a lazy importer built on utils internals.
    "diffusers/models/__init__.py": """
        __path__.append(@SRC@ + "/models")
    """,
    # ModelMixin's loading/saving needs huggingface_hub and safetensors; the fixtures are
    # written by the generator, so the mixin is a plain module.
    "diffusers/models/modeling_utils.py": """
        import torch

        class ModelMixin(torch.nn.Module):
            _supports_gradient_checkpointing = False

            def __init__(self):
                super().__init__()
                self.gradient_checkpointing = False

            @property
            def dtype(self):
                return next(self.parameters()).dtype

            @property
            def device(self):
                return next(self.parameters()).device
    """,
    "diffusers/models/autoencoders/__init__.py": """
        __path__.append(@SRC@ + "/models/autoencoders")
    """,
    "diffusers/models/unets/__init__.py": """
        __path__.append(@SRC@ + "/models/unets")
    """,
    # unet_2d_blocks imports the cross-attention transformers for blocks the VAE never builds.
    "diffusers/models/transformers/__init__.py": "",
    "diffusers/models/transformers/transformer_2d.py": """
        class Transformer2DModel:
            def __init__(self, *args, **kwargs):
                raise NotImplementedError("not part of the shimmed reference")
    """,
    "diffusers/models/transformers/dual_transformer_2d.py": """
        class DualTransformer2DModel:
            def __init__(self, *args, **kwargs):
                raise NotImplementedError("not part of the shimmed reference")
    """,
}


def _write_shims(shims, fmt):
    root = tempfile.mkdtemp(prefix="refshims-")
    for rel, text in shims.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            text = textwrap.dedent(text)
            for key, value in fmt.items():
                text = text.replace("@" + key + "@", value)
            f.write(text)
    sys.path.insert(0, root)
    return root


def diffusers_version(src):
    """Reads __version__ from the reference tree's src/diffusers/__init__.py."""
    with open(os.path.join(src, "__init__.py")) as f:
        for line in f:
            if line.startswith("__version__"):
                return line.split("=", 1)[1].strip().strip("\"'")
    raise RuntimeError("no __version__ in " + src)


def load_autoencoder_kl(diffusers_src):
    """Imports diffusers' AutoencoderKL from diffusers_src (the tree's src directory or its
    src/diffusers directory) behind the shims; returns the class."""
    src = os.path.abspath(diffusers_src)
    if os.path.isdir(os.path.join(src, "src", "diffusers")):
        src = os.path.join(src, "src", "diffusers")
    elif os.path.isdir(os.path.join(src, "diffusers")):
        src = os.path.join(src, "diffusers")
    _write_shims(DIFFUSERS_SHIMS, {"SRC": repr(src), "VERSION": diffusers_version(src)})
    from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
    return AutoencoderKL
