#!/usr/bin/python3
"""Generates the T5 encoder golden fixtures in this directory by running transformers' own
T5EncoderModel.

Rerun (from the repository root; Debian's python3 with python3-torch and python3-numpy, NOT a
pyenv/venv python). The whole transformers repository is not needed (nor importable here); put
these files of it, at these commits, under DIR/src/transformers/:
    models/t5/modeling_t5.py       6b8b757dfcb582379a64f013cdce46c43629f2b0 (see below: excerpt)
    models/t5/configuration_t5.py  038869d4d54db478c18dbe58a02aefc67f62beb0 (whole file)
    activations.py                 00e12e7c54598e50e7bef1540db3408f81916de1 (whole file)
then
    /usr/bin/python3 trainerproc/t5/testdata/gen_golden.py --transformers-src DIR

It rewrites tiny/{config.json,model.safetensors}, tiny_bf16/{config.json,model.safetensors}
and tiny_io.safetensors byte for byte (fixed seeds, one thread, tensors in name order);
`git diff --stat` after a rerun shows nothing. --out DIR writes elsewhere.

Reference used for the committed files (torch 1.13.0a0 from Debian python3-torch, numpy
1.24.2, python 3.11.2): the files above. configuration_t5.py and activations.py ran whole and
unmodified (their stored versions are older than modeling_t5.py's commit; T5Config's
feed_forward_proj parsing and NewGELUActivation are the same in both). modeling_t5.py ran as a
verbatim excerpt: the imports, T5LayerNorm, T5DenseActDense, T5DenseGatedActDense, T5LayerFF,
T5Attention, T5LayerSelfAttention, T5LayerCrossAttention, T5Block, T5PreTrainedModel, T5Stack
and T5EncoderModel as they are; left out were the TF checkpoint loader, docstring constants
(empty strings), T5Stack's decoder-only causal-mask helpers and the seq2seq, classification and
QA heads (empty classes under their names, for _init_weights' isinstance test). So
T5EncoderModel.forward and T5Stack.forward below are the reference's own.

Shims (scripts/golden/refshims.py, TRANSFORMERS_SHIMS; none computes anything of the model):
  configuration_utils.PretrainedConfig (base attributes and their defaults, attribute_map,
  use_return_dict, to_json_string as save_pretrained's use_diff output), modeling_utils.
  PreTrainedModel (nn.Module; post_init applies the model's _init_weights once per module and
  ties weights; get_head_mask without head masks), modeling_outputs (dataclass outputs),
  utils (docstring decorators as identity, flex attention / fx / dynamo reported absent,
  DUMMY_INPUTS), utils.logging (stdlib logger with warning_once), utils.model_parallel_utils,
  pytorch_utils (ALL_LAYERNORM_LAYERS; pruning raises), cache_utils / generation /
  modeling_attn_mask_utils / onnx / models.deprecated._archive_maps (empty names the decoder and
  ONNX paths use), packaging.version.parse (numeric tuple), package __init__ files extending
  __path__ to the tree.
What save_pretrained would also do, done here by the generator: drop encoder.embed_tokens.weight
(it is the same tensor as shared.weight and listed in T5EncoderModel._tied_weights_keys, so
model.safetensors holds shared.weight only), set architectures ["T5EncoderModel"] and
torch_dtype; transformers_version is not written (the shim does not know it).

Fixtures:
  tiny/config.json, tiny/model.safetensors    T5Config (vocab 128, d_model 32, d_kv 8, 4 heads,
      d_ff 64, 3 layers, 32 buckets, max distance 128, gated-gelu, eps 1e-6, pad 0, eos 1,
      tie_word_embeddings false as in T5 v1.1) and F32 weights under transformers' names.
  tiny_bf16/config.json, tiny_bf16/model.safetensors   the same weights rounded to BF16 (round
      to nearest even, as torch's .to(torch.bfloat16)), torch_dtype "bfloat16".
  tiny_io.safetensors   input_ids I64 [3,20] (row 0: 19 ids then eos 1; rows 1 and 2: 12 and 5
      ids, eos, then pad 0; ids up to 127 = vocab end), attention_mask I64 [3,20] (1 through
      the eos), last_hidden_state F32 [3,20,32] (eval mode, fp32, every position including the
      padded ones), last_hidden_state_bf16ref F32 [3,20,32] (the same run in fp32 on the
      bf16-rounded weights).
Weights: transformers' own _init_weights (Mesh TensorFlow scaling: q std (d_model*d_kv)^-1/2,
k and v d_model^-1/2, o (heads*d_kv)^-1/2, wi d_model^-1/2, wo d_ff^-1/2, embeddings 1) under
seed 0, then every T5LayerNorm weight set to 1 + 0.2*N(0,1) (not all ones, so a loader that
ignores them fails) and the relative attention bias scaled by 3 (std ~0.53, so the position
bias visibly moves the scores).
"""
import argparse
import copy
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "scripts", "golden"))
import refshims  # noqa: E402
import stio  # noqa: E402

TINY = dict(
    vocab_size=128,
    d_model=32,
    d_kv=8,
    num_heads=4,
    d_ff=64,
    num_layers=3,
    relative_attention_num_buckets=32,
    relative_attention_max_distance=128,
    feed_forward_proj="gated-gelu",
    layer_norm_epsilon=1e-6,
    pad_token_id=0,
    eos_token_id=1,
    tie_word_embeddings=False,
)


def build(T5Config, T5EncoderModel):
    """The tiny encoder, initialised as described in the module docstring."""
    torch.manual_seed(0)
    model = T5EncoderModel(T5Config(**TINY)).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if name.endswith("layer_norm.weight"):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
        bias = model.encoder.block[0].layer[0].SelfAttention.relative_attention_bias.weight
        bias.mul_(3)
    return model


def saved_tensors(model):
    """state_dict as save_pretrained writes it: a tensor that shares storage with one already
    kept is dropped (encoder.embed_tokens.weight, one of _tied_weights_keys)."""
    out, seen = {}, {}
    state = model.state_dict()
    tied = set(getattr(model, "_tied_weights_keys", []))
    for name in sorted(state, key=lambda n: (n in tied, n)):
        ptr = state[name].data_ptr()
        if ptr in seen:
            continue
        seen[ptr] = name
        out[name] = state[name]
    return out


def inputs():
    """input_ids and attention_mask [3,20]: full, medium and short captions ending in eos."""
    g = torch.Generator().manual_seed(2)
    ids = torch.zeros((3, 20), dtype=torch.long)
    mask = torch.zeros((3, 20), dtype=torch.long)
    for row, n in enumerate((19, 12, 5)):
        ids[row, :n] = torch.randint(2, 128, (n,), generator=g)
        mask[row, : n + 1] = 1
        ids[row, n] = 1
    ids[0, 3], ids[0, 10], ids[1, 2], ids[2, 0] = 127, 126, 127, 125  # ids near the vocab end
    return ids, mask


def write_model(dirpath, model, dtype):
    """config.json and model.safetensors for model with weights stored as dtype."""
    os.makedirs(dirpath, exist_ok=True)
    config = copy.deepcopy(model.config)
    config.architectures = [type(model).__name__]
    config.torch_dtype = {"F32": "float32", "BF16": "bfloat16"}[dtype]
    with open(os.path.join(dirpath, "config.json"), "w") as f:
        f.write(config.to_json_string())
    tensors = {}
    for name, t in saved_tensors(model).items():
        if dtype == "BF16":
            bits = t.to(torch.bfloat16).view(torch.int16).numpy().view("<u2")
            assert (bits == stio.bf16_bits(t.numpy())).all(), name  # torch and numpy agree
            tensors[name] = ("BF16", bits)
        else:
            tensors[name] = ("F32", t.numpy())
    path = os.path.join(dirpath, "model.safetensors")
    stio.write(path, tensors)
    stio.check_roundtrip(path, tensors)
    return tensors


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--transformers-src", required=True, help="directory holding src/transformers/...")
    ap.add_argument("--out", default=HERE, help="output directory (default: this directory)")
    args = ap.parse_args()

    torch.set_num_threads(1)  # one thread: the same summation order on every run
    T5Config, T5EncoderModel = refshims.load_t5_encoder(args.transformers_src)
    model = build(T5Config, T5EncoderModel)
    ids, mask = inputs()
    with torch.no_grad():
        hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state

    write_model(os.path.join(args.out, "tiny"), model, "F32")
    bf16 = write_model(os.path.join(args.out, "tiny_bf16"), model, "BF16")

    # The bf16 reference: the same model with every weight replaced by its bf16 value, in fp32.
    with torch.no_grad():
        for name, p in model.named_parameters():
            key = "shared.weight" if name == "encoder.embed_tokens.weight" else name
            p.copy_(torch.from_numpy(stio.bf16_to_f32(bf16[key][1])))
        hidden_bf16 = model(input_ids=ids, attention_mask=mask).last_hidden_state

    io = {
        "input_ids": ("I64", ids.numpy()),
        "attention_mask": ("I64", mask.numpy()),
        "last_hidden_state": ("F32", hidden.numpy()),
        "last_hidden_state_bf16ref": ("F32", hidden_bf16.numpy()),
    }
    path = os.path.join(args.out, "tiny_io.safetensors")
    stio.write(path, io)
    stio.check_roundtrip(path, io)
    h, hb = hidden.numpy(), hidden_bf16.numpy()
    print("input_ids:", ids.tolist())
    print(f"last_hidden_state mean {h.mean():+.4f} std {h.std():.4f} max|.| {np.abs(h).max():.3f}")
    print(f"bf16ref - fp32: max|d| {np.abs(hb - h).max():.3e} (relative {np.abs(hb - h).max() / np.abs(h).max():.2e})")


if __name__ == "__main__":
    main()
