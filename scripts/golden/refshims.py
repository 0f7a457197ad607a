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
import argparse
import os
import sys
import tempfile
import textwrap

import torch
import torch.utils.checkpoint

# The SDXL VAE's AutoencoderKL arguments (the timing script builds it at this size; the golden
# fixtures shrink it). The reference's own defaults fill in the rest.
SDXL_VAE_CONFIG = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    act_fn="silu",
    latent_channels=4,
    norm_num_groups=32,
    sample_size=1024,
    scaling_factor=0.13025,
    shift_factor=None,
    force_upcast=True,
    use_quant_conv=True,
    use_post_quant_conv=True,
    mid_block_add_attention=True,
)

# T5 v1.1 XXL encoder's T5Config arguments (num_layers 24 in the real model; callers choose).
T5_XXL_CONFIG = dict(
    vocab_size=32128,
    d_model=4096,
    d_kv=64,
    d_ff=10240,
    num_heads=64,
    relative_attention_num_buckets=32,
    relative_attention_max_distance=128,
    feed_forward_proj="gated-gelu",
    layer_norm_epsilon=1e-6,
    pad_token_id=0,
    eos_token_id=1,
    tie_word_embeddings=False,
)


def generator_args(doc, src_flag, src_help, default_out):
    """Parses a golden generator's command line (the reference tree, --out) and pins torch to
    one thread, so that every run sums in the same order and rewrites the same bytes."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument(src_flag, required=True, help=src_help)
    ap.add_argument("--out", default=default_out, help="output directory (default: the script's own)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    return args

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
    # The package __init__ files of models/, models/autoencoders/ and models/unets/ (lazy
    # importers built on utils internals, or importers of every model) are replaced by ones
    # that only extend __path__: see DIFFUSERS_PASSTHROUGH.
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


# Shim modules for transformers; @SRC@ is the quoted path of the tree's src/transformers. The
# tree needs only activations.py, models/t5/configuration_t5.py and models/t5/modeling_t5.py.
TRANSFORMERS_SHIMS = {
    "transformers/__init__.py": """
        __path__.append(@SRC@)
    """,
    # activations.py compares torch versions with packaging, which Debian's python lacks here.
    "packaging/__init__.py": "",
    "packaging/version.py": """
        def parse(v):
            out = []
            for part in str(v).split("+")[0].split("."):
                digits = ""
                for ch in part:
                    if not ch.isdigit():
                        break
                    digits += ch
                if not digits:
                    break
                out.append(int(digits))
            return tuple(out + [0] * (3 - len(out)))
    """,
    "transformers/utils/__init__.py": """
        from . import logging

        DUMMY_INPUTS = [[7, 6, 0, 0, 1], [1, 2, 3, 0, 0], [0, 0, 0, 4, 5]]
        DUMMY_MASK = [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [0, 0, 0, 1, 1]]

        def _keep(*args, **kwargs):
            return lambda fn: fn

        add_start_docstrings = add_start_docstrings_to_model_forward = replace_return_docstrings = _keep

        def is_torch_flex_attn_available():
            return False

        def is_torch_fx_proxy(x):
            return False

        def is_torchdynamo_compiling():
            return False
    """,
    "transformers/utils/logging.py": """
        import logging

        class _Logger(logging.LoggerAdapter):
            def warning_once(self, msg, *args):
                self.warning(msg, *args)

        def get_logger(name=None):
            return _Logger(logging.getLogger(name), {})
    """,
    "transformers/utils/model_parallel_utils.py": """
        def assert_device_map(*args, **kwargs):
            raise NotImplementedError("model parallelism is not part of the shimmed reference")

        get_device_map = assert_device_map
    """,
    # Decoder-only machinery: the encoder stack never builds a cache, a causal mask or a
    # generation loop.
    "transformers/cache_utils.py": """
        class Cache:
            pass

        class DynamicCache(Cache):
            pass

        class EncoderDecoderCache(Cache):
            pass

        class StaticCache(Cache):
            pass
    """,
    "transformers/generation/__init__.py": """
        class GenerationMixin:
            pass
    """,
    "transformers/modeling_attn_mask_utils.py": """
        class AttentionMaskConverter:
            pass
    """,
    # Output containers: dataclasses with attribute access and tuple-style indexing over the
    # fields that are set, as the reference ModelOutput behaves.
    "transformers/modeling_outputs.py": """
        from dataclasses import dataclass
        from typing import Any, Optional

        class ModelOutput:
            def to_tuple(self):
                return tuple(v for v in self.__dict__.values() if v is not None)

            def __getitem__(self, i):
                return self.to_tuple()[i]

        @dataclass
        class BaseModelOutput(ModelOutput):
            last_hidden_state: Any = None
            hidden_states: Optional[Any] = None
            attentions: Optional[Any] = None

        @dataclass
        class BaseModelOutputWithPastAndCrossAttentions(ModelOutput):
            last_hidden_state: Any = None
            past_key_values: Optional[Any] = None
            hidden_states: Optional[Any] = None
            attentions: Optional[Any] = None
            cross_attentions: Optional[Any] = None

        Seq2SeqLMOutput = Seq2SeqModelOutput = Seq2SeqQuestionAnsweringModelOutput = ModelOutput
        Seq2SeqSequenceClassifierOutput = TokenClassifierOutput = ModelOutput
    """,
    # PreTrainedModel as a thin nn.Module: post_init applies the model's own _init_weights once
    # per module (the reference marks modules initialised the same way) and ties weights; no
    # loading or saving (the generator writes the files).
    "transformers/modeling_utils.py": """
        import torch

        class PreTrainedModel(torch.nn.Module):
            def __init__(self, config, *inputs, **kwargs):
                super().__init__()
                self.config = config

            def _initialize_weights(self, module):
                if getattr(module, "_is_hf_initialized", False):
                    return
                self._init_weights(module)
                module._is_hf_initialized = True

            def post_init(self):
                self.apply(self._initialize_weights)
                for module in self.modules():
                    if hasattr(module, "_tie_weights"):
                        module._tie_weights()

            def _tie_or_clone_weights(self, output_embeddings, input_embeddings):
                output_embeddings.weight = input_embeddings.weight

            def get_head_mask(self, head_mask, num_hidden_layers, is_attention_chunked=False):
                if head_mask is not None:
                    raise NotImplementedError("head masks are not part of the shimmed reference")
                return [None] * num_hidden_layers

            @property
            def dtype(self):
                return next(self.parameters()).dtype
    """,
    "transformers/pytorch_utils.py": """
        from torch import nn

        ALL_LAYERNORM_LAYERS = [nn.LayerNorm]

        def find_pruneable_heads_and_indices(*args, **kwargs):
            raise NotImplementedError("head pruning is not part of the shimmed reference")

        prune_linear_layer = find_pruneable_heads_and_indices
    """,
    # PretrainedConfig keeps the attributes the model reads, maps attribute_map aliases, and
    # writes config.json as save_pretrained does (use_diff: the model's own attributes, plus the
    # base attributes that differ from the base defaults, sorted, indented by 2).
    "transformers/configuration_utils.py": """
        import copy
        import json

        _BASE_DEFAULTS = dict(
            return_dict=True, output_hidden_states=False, output_attentions=False, torchscript=False,
            torch_dtype=None, tie_word_embeddings=True, is_encoder_decoder=False, is_decoder=False,
            add_cross_attention=False, architectures=None, bos_token_id=None, pad_token_id=None,
            eos_token_id=None, sep_token_id=None, decoder_start_token_id=None,
        )

        class PretrainedConfig:
            model_type = ""
            attribute_map = {}

            def __setattr__(self, key, value):
                key = type(self).attribute_map.get(key, key)
                super().__setattr__(key, value)

            def __getattr__(self, key):
                mapped = type(self).attribute_map.get(key)
                if mapped is None:
                    raise AttributeError(key)
                return getattr(self, mapped)

            def __init__(self, **kwargs):
                for key, default in _BASE_DEFAULTS.items():
                    setattr(self, key, kwargs.pop(key, copy.deepcopy(default)))
                self._attn_implementation = kwargs.pop("attn_implementation", None) or "eager"
                for key, value in kwargs.items():
                    setattr(self, key, value)

            @property
            def use_return_dict(self):
                return self.return_dict and not self.torchscript

            def to_dict(self):
                d = {k: copy.deepcopy(v) for k, v in self.__dict__.items() if not k.startswith("_")}
                d["model_type"] = self.model_type
                return d

            def to_json_string(self):
                d = self.to_dict()
                keep = {k: v for k, v in d.items() if k not in _BASE_DEFAULTS or v != _BASE_DEFAULTS[k]}
                return json.dumps(keep, indent=2, sort_keys=True) + "\\n"
    """,
    "transformers/onnx/__init__.py": """
        class OnnxSeq2SeqConfigWithPast:
            pass
    """,
    # models/ and models/t5/ __init__ files: see TRANSFORMERS_PASSTHROUGH.
    "transformers/models/deprecated/__init__.py": "",
    "transformers/models/deprecated/_archive_maps.py": """
        T5_PRETRAINED_CONFIG_ARCHIVE_MAP = {}
    """,
}

# Subpackages whose reference __init__ is replaced by one that only extends __path__ to the
# tree's directory, so their modules load from the tree without running the lazy importers.
DIFFUSERS_PASSTHROUGH = ["models", "models/autoencoders", "models/unets"]
TRANSFORMERS_PASSTHROUGH = ["models", "models/t5"]


def _write_shims(shims, fmt, package, passthrough):
    """Writes shims (and a path-extending __init__ for each passthrough subpackage of package)
    to a new temporary directory, put first on sys.path; returns the directory."""
    shims = dict(shims)
    for sub in passthrough:
        shims[f"{package}/{sub}/__init__.py"] = f'__path__.append(@SRC@ + "/{sub}")\n'
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
    fmt = {"SRC": repr(src), "VERSION": diffusers_version(src)}
    _write_shims(DIFFUSERS_SHIMS, fmt, "diffusers", DIFFUSERS_PASSTHROUGH)
    from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
    return AutoencoderKL


def load_pixart_transformer(diffusers_src):
    """Imports diffusers' PixArtTransformer2DModel from diffusers_src (as load_autoencoder_kl)
    behind the shims; returns the class. models/transformers/ extends its __path__ to the tree
    (the placeholders of transformer_2d and dual_transformer_2d stay first), and the shimmed
    ModelMixin gains enable_gradient_checkpointing with the reference's default function
    (torch.utils.checkpoint.checkpoint of the block, use_reentrant=False on torch >= 1.11)."""
    src = os.path.abspath(diffusers_src)
    if os.path.isdir(os.path.join(src, "src", "diffusers")):
        src = os.path.join(src, "src", "diffusers")
    elif os.path.isdir(os.path.join(src, "diffusers")):
        src = os.path.join(src, "diffusers")
    fmt = {"SRC": repr(src), "VERSION": diffusers_version(src)}
    shims = dict(DIFFUSERS_SHIMS)
    shims["diffusers/models/transformers/__init__.py"] = '__path__.append(@SRC@ + "/models/transformers")\n'
    _write_shims(shims, fmt, "diffusers", DIFFUSERS_PASSTHROUGH)
    from diffusers.models.modeling_utils import ModelMixin
    from diffusers.models.transformers.pixart_transformer_2d import PixArtTransformer2DModel

    def enable_gradient_checkpointing(self):
        def func(module, *args):
            return torch.utils.checkpoint.checkpoint(module.__call__, *args, use_reentrant=False)

        for m in self.modules():
            if hasattr(m, "gradient_checkpointing"):
                m._gradient_checkpointing_func = func
                m.gradient_checkpointing = True

    ModelMixin.enable_gradient_checkpointing = enable_gradient_checkpointing
    return PixArtTransformer2DModel


def load_t5_encoder(transformers_src):
    """Imports transformers' T5Config and T5EncoderModel from transformers_src (a directory
    holding src/transformers/..., transformers/..., or the package directory itself) behind the
    shims; returns (T5Config, T5EncoderModel)."""
    src = os.path.abspath(transformers_src)
    for sub in (("src", "transformers"), ("transformers",)):
        if os.path.isdir(os.path.join(src, *sub)):
            src = os.path.join(src, *sub)
            break
    _write_shims(TRANSFORMERS_SHIMS, {"SRC": repr(src)}, "transformers", TRANSFORMERS_PASSTHROUGH)
    from transformers.models.t5.configuration_t5 import T5Config
    from transformers.models.t5.modeling_t5 import T5EncoderModel
    return T5Config, T5EncoderModel
