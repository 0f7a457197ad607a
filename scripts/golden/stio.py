"""Safetensors reading and writing for the golden-fixture generators (numpy only).

Debian's python3 has no safetensors package, so the generators write the format directly:
an 8-byte little-endian header length, a JSON header ("__metadata__" first, then one entry per
tensor with dtype, shape and data_offsets), padded with spaces to a multiple of 8, then the raw
little-endian bytes. Tensors are laid out in name order so that a rerun writes the same bytes.
"""
import json
import struct

import numpy as np

_NP = {"F32": "<f4", "F64": "<f8", "F16": "<f2", "I64": "<i8", "I32": "<i4", "U8": "u1"}


def bf16_bits(arr):
    """Rounds float32 values to bfloat16 (round to nearest even, as torch does) and returns the
    16-bit patterns as uint16."""
    u = np.ascontiguousarray(arr, dtype="<f4").view("<u4").astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return rounded.astype("<u2")


def bf16_to_f32(bits):
    """Widens bfloat16 bit patterns (uint16) to float32 exactly."""
    return (np.asarray(bits, dtype="<u2").astype("<u4") << 16).view("<f4")


def write(path, tensors, metadata=None):
    """Writes {name: (dtype, np.ndarray)} to path; dtype is a safetensors dtype name
    ("F32", "I64", "BF16", ...). BF16 arrays are given as uint16 bit patterns."""
    header = {"__metadata__": dict(metadata or {"format": "pt"})}
    chunks, off = [], 0
    for name in sorted(tensors):
        dtype, arr = tensors[name]
        np_dtype = "<u2" if dtype == "BF16" else _NP[dtype]
        raw = np.ascontiguousarray(arr).astype(np_dtype, copy=False).tobytes()
        header[name] = {"dtype": dtype, "shape": list(np.shape(arr)), "data_offsets": [off, off + len(raw)]}
        chunks.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for c in chunks:
            f.write(c)


def read(path):
    """Returns ({name: (dtype, np.ndarray)}, metadata); BF16 comes back as uint16 bit patterns."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    base = 8 + n
    meta = header.pop("__metadata__", None)
    out = {}
    for name, info in header.items():
        b, e = info["data_offsets"]
        np_dtype = "<u2" if info["dtype"] == "BF16" else _NP[info["dtype"]]
        arr = np.frombuffer(data[base + b:base + e], dtype=np_dtype).reshape(info["shape"]).copy()
        out[name] = (info["dtype"], arr)
    return out, meta


def check_roundtrip(path, tensors):
    """Reads path back and raises AssertionError unless it holds exactly tensors."""
    got, meta = read(path)
    assert meta is not None and "format" in meta, (path, meta)
    assert sorted(got) == sorted(tensors), (path, sorted(got), sorted(tensors))
    for name, (dtype, arr) in tensors.items():
        gdtype, garr = got[name]
        assert gdtype == dtype, (path, name, gdtype, dtype)
        want = np.asarray(arr).astype("<u2" if dtype == "BF16" else _NP[dtype])
        assert garr.shape == want.shape and garr.tobytes() == want.tobytes(), (path, name)
