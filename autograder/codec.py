"""The only format that crosses the worker -> parent boundary: JSON plus raw tensor bytes.

A message is one frame::

    b"AGv1" | uint32 header length | uint64 blob length | header (UTF-8 JSON) | blobs (raw bytes)

The JSON header is a tree of tagged values from a closed set of tags (``none``, ``bool``,
``int``, ``float``, ``str``, ``list``, ``tuple``, ``dict``, ``tensor``, ``ndarray``). A tensor
is a header entry ``{"t": "tensor", "dtype", "shape", "offset", "nbytes", ...}`` pointing into
the blob section; the parent checks the dtype against a whitelist, that ``prod(shape) *
itemsize == nbytes``, the size caps and the nesting depth, then copies the bytes into a fresh
CPU tensor. Nothing in a message is ever used as a name to import, call or unpickle: the
decoder only builds plain Python containers, numbers, strings and tensors.

The worker uses :func:`encode` (it may be subverted there; that only changes the data the
student sends, which the parent checks anyway). The parent uses :func:`decode`, which must be
safe against any byte string.
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any

import numpy as np
import torch

MAGIC = b"AGv1"
_PREFIX = struct.Struct("<4sIQ")

MAX_HEADER_BYTES = 4 * 1024 * 1024
MAX_BLOB_BYTES = 256 * 1024 * 1024
MAX_DEPTH = 24
MAX_ITEMS = 200_000
MAX_STR = 1_000_000
MAX_INT_BITS = 256

# dtype name -> (torch dtype, numpy dtype or None, itemsize)
DTYPES: dict[str, tuple[torch.dtype, Any, int]] = {
    "float16": (torch.float16, np.float16, 2),
    "bfloat16": (torch.bfloat16, None, 2),
    "float32": (torch.float32, np.float32, 4),
    "float64": (torch.float64, np.float64, 8),
    "uint8": (torch.uint8, np.uint8, 1),
    "int8": (torch.int8, np.int8, 1),
    "int16": (torch.int16, np.int16, 2),
    "int32": (torch.int32, np.int32, 4),
    "int64": (torch.int64, np.int64, 8),
    "bool": (torch.bool, np.bool_, 1),
}
_TORCH_TO_NAME = {v[0]: k for k, v in DTYPES.items()}
_NUMPY_TO_NAME = {np.dtype(v[1]): k for k, v in DTYPES.items() if v[1] is not None}


class CodecError(ValueError):
    """A message (or a value to encode) breaks the format; the text says what and where."""


class TensorInfo(dict):
    """What the worker claimed about a tensor it returned (advisory metadata, never trusted)."""


# ----------------------------------------------------------------------------------- encoding
def encode(value: Any, *, extra: dict | None = None) -> bytes:
    """Encode ``value`` (plain data and tensors) into one frame; ``extra`` goes in the header.

    Raises ``CodecError`` naming the offending type for anything that is not plain data.
    """
    blobs: list[bytes] = []
    offset = [0]

    def enc(v: Any, depth: int, path: str) -> Any:
        if depth > MAX_DEPTH:
            raise CodecError(f"value nested deeper than {MAX_DEPTH} levels at {path}")
        if v is None:
            return {"t": "none"}
        if type(v) is bool:
            return {"t": "bool", "v": v}
        if type(v) is int:
            if v.bit_length() > MAX_INT_BITS:
                raise CodecError(f"integer with more than {MAX_INT_BITS} bits at {path}")
            return {"t": "int", "v": str(v)}
        if type(v) is float:
            return {"t": "float", "v": repr(v)}  # repr keeps nan/inf and the exact value
        if type(v) is str:
            if len(v) > MAX_STR:
                raise CodecError(f"string longer than {MAX_STR} characters at {path}")
            return {"t": "str", "v": v}
        if type(v) in (list, tuple):
            return {
                "t": "list" if type(v) is list else "tuple",
                "v": [enc(x, depth + 1, f"{path}[{i}]") for i, x in enumerate(v)],
            }
        if type(v) is dict:
            items = []
            for k, x in v.items():
                if type(k) is not str:
                    raise CodecError(f"dict key {k!r} at {path} is not a str")
                items.append([k, enc(x, depth + 1, f"{path}[{k!r}]")])
            return {"t": "dict", "v": items}
        if isinstance(v, torch.Tensor):
            return enc_tensor(v, path)
        if isinstance(v, np.ndarray) and type(v) is np.ndarray:
            name = _NUMPY_TO_NAME.get(v.dtype)
            if name is None:
                raise CodecError(f"numpy array of unsupported dtype {v.dtype} at {path}")
            raw = np.ascontiguousarray(v).tobytes()
            entry = {"t": "ndarray", "dtype": name, "shape": list(v.shape)}
            return add_blob(entry, raw)
        if isinstance(v, (np.floating, np.integer, np.bool_)) and type(v).__module__ == "numpy":
            return enc(v.item(), depth, path)
        raise CodecError(f"unsupported type {type(v).__module__}.{type(v).__qualname__} at {path}")

    def add_blob(entry: dict, raw: bytes) -> dict:
        entry["offset"], entry["nbytes"] = offset[0], len(raw)
        offset[0] += len(raw)
        if offset[0] > MAX_BLOB_BYTES:
            raise CodecError(f"tensors larger than {MAX_BLOB_BYTES // 2**20} MiB in total")
        blobs.append(raw)
        return entry

    def enc_tensor(t: torch.Tensor, path: str) -> dict:
        with torch._C.DisableTorchFunctionSubclass():
            name = _TORCH_TO_NAME.get(t.dtype)
            if name is None:
                raise CodecError(f"tensor of unsupported dtype {t.dtype} at {path}")
            if t.device.type == "meta" or t.is_sparse or t.layout != torch.strided:
                raise CodecError(f"{t.layout} tensor on device {t.device} at {path}")
            entry = {
                "t": "tensor",
                "dtype": name,
                "shape": list(t.shape),
                "requires_grad": bool(t.requires_grad),
                "grad_fn": type(t.grad_fn).__name__ if t.grad_fn is not None else None,
                "device": str(t.device),
                "contiguous": bool(t.is_contiguous()),
                "subclass": None if type(t) is torch.Tensor else type(t).__name__,
            }
            plain = torch.Tensor._make_subclass(torch.Tensor, t.detach().cpu(), False)
            flat = plain.contiguous().reshape(-1)  # [numel]
            raw = flat.view(torch.uint8).numpy().tobytes() if t.numel() else b""
        return add_blob(entry, raw)

    tree = enc(value, 0, "value")
    header = dict(extra or {})
    header["value"] = tree
    header_bytes = json.dumps(header, allow_nan=False).encode()
    blob = b"".join(blobs)
    return _PREFIX.pack(MAGIC, len(header_bytes), len(blob)) + header_bytes + blob


# ----------------------------------------------------------------------------------- decoding
def split_frame(data: bytes) -> tuple[dict, memoryview]:
    """Check the frame prefix and sizes; return the parsed header and the blob section."""
    if len(data) < _PREFIX.size:
        raise CodecError(f"message of {len(data)} bytes is shorter than the frame prefix")
    magic, header_len, blob_len = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise CodecError("message does not start with the frame marker")
    if header_len > MAX_HEADER_BYTES or blob_len > MAX_BLOB_BYTES:
        raise CodecError("message header or data section exceeds the size cap")
    if len(data) != _PREFIX.size + header_len + blob_len:
        raise CodecError(
            f"message length {len(data)} does not match its prefix "
            f"({_PREFIX.size} + {header_len} + {blob_len})"
        )
    raw_header = bytes(data[_PREFIX.size : _PREFIX.size + header_len])
    try:
        header = json.loads(raw_header.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise CodecError(f"message header is not valid JSON ({type(exc).__name__})") from None
    if type(header) is not dict:
        raise CodecError("message header is not a JSON object")
    return header, memoryview(data)[_PREFIX.size + header_len :]


def frame_length(prefix: bytes) -> int:
    """Total frame length announced by the first 16 bytes (for streaming readers)."""
    magic, header_len, blob_len = _PREFIX.unpack_from(prefix)
    if magic != MAGIC or header_len > MAX_HEADER_BYTES or blob_len > MAX_BLOB_BYTES:
        raise CodecError("bad frame prefix")
    return _PREFIX.size + header_len + blob_len


PREFIX_SIZE = _PREFIX.size


def _reject_constant(name: str) -> Any:
    raise CodecError(f"bare JSON constant {name} is not allowed")


def decode_value(tree: Any, blobs: memoryview) -> Any:
    """Rebuild a value from a header tree; strict about every tag, type and size."""
    count = [0]

    def dec(node: Any, depth: int) -> Any:
        count[0] += 1
        if count[0] > MAX_ITEMS:
            raise CodecError(f"more than {MAX_ITEMS} values in one message")
        if depth > MAX_DEPTH:
            raise CodecError(f"value nested deeper than {MAX_DEPTH} levels")
        if type(node) is not dict or type(node.get("t")) is not str:
            raise CodecError("malformed value entry")
        tag = node["t"]
        if tag == "none":
            return None
        if tag == "bool":
            return _typed(node.get("v"), bool)
        if tag == "int":
            text = _typed(node.get("v"), str)
            if len(text) > MAX_INT_BITS // 3 + 2 or not text.lstrip("-").isdigit():
                raise CodecError("malformed integer")
            return int(text)
        if tag == "float":
            text = _typed(node.get("v"), str)
            if len(text) > 40:
                raise CodecError("malformed float")
            try:
                return float(text)
            except ValueError:
                raise CodecError("malformed float") from None
        if tag == "str":
            text = _typed(node.get("v"), str)
            if len(text) > MAX_STR:
                raise CodecError("string too long")
            return text
        if tag in ("list", "tuple"):
            items = [dec(x, depth + 1) for x in _typed(node.get("v"), list)]
            return items if tag == "list" else tuple(items)
        if tag == "dict":
            out = {}
            for pair in _typed(node.get("v"), list):
                if type(pair) is not list or len(pair) != 2 or type(pair[0]) is not str:
                    raise CodecError("malformed dict entry")
                out[pair[0]] = dec(pair[1], depth + 1)
            return out
        if tag in ("tensor", "ndarray"):
            return _dec_array(node, blobs, tag)
        raise CodecError(f"unknown value tag {tag[:20]!r}")

    return dec(tree, 0)


def _typed(v: Any, kind: type) -> Any:
    if type(v) is not kind:
        raise CodecError(f"expected a JSON {kind.__name__}, got {type(v).__name__}")
    return v


def _dec_array(node: dict, blobs: memoryview, tag: str) -> Any:
    name = _typed(node.get("dtype"), str)
    if name not in DTYPES:
        raise CodecError(f"dtype {name[:20]!r} is not allowed")
    torch_dtype, np_dtype, itemsize = DTYPES[name]
    shape = _typed(node.get("shape"), list)
    if len(shape) > 8 or any(type(s) is not int or s < 0 for s in shape):
        raise CodecError("malformed shape")
    offset, nbytes = _typed(node.get("offset"), int), _typed(node.get("nbytes"), int)
    numel = math.prod(shape)
    if numel * itemsize != nbytes or offset < 0 or offset + nbytes > len(blobs):
        raise CodecError(f"tensor of shape {tuple(shape)} {name} does not match its byte count")
    raw = bytearray(blobs[offset : offset + nbytes])  # a private copy the tensor owns
    if tag == "ndarray":
        if np_dtype is None:
            raise CodecError("bfloat16 numpy arrays do not exist")
        return np.frombuffer(raw, dtype=np_dtype).reshape(shape).copy()
    if numel == 0:
        tensor = torch.empty(shape, dtype=torch_dtype)  # [*shape]
    else:
        tensor = torch.frombuffer(raw, dtype=torch_dtype).reshape(shape)  # [*shape]
    info = TensorInfo(
        requires_grad=node.get("requires_grad") is True,
        grad_fn=node.get("grad_fn") if type(node.get("grad_fn")) is str else None,
        device=str(node.get("device"))[:40],
        contiguous=node.get("contiguous") is not False,
        subclass=node.get("subclass") if type(node.get("subclass")) is str else None,
    )
    if info["requires_grad"] and tensor.is_floating_point():
        tensor.requires_grad_(True)  # keep the claim visible to the comparator
    tensor._autograder_info = info  # advisory metadata for expect_tensor
    return tensor


def decode(data: bytes) -> tuple[dict, Any]:
    """Decode a full frame into (header without the value, value)."""
    header, blobs = split_frame(data)
    value = decode_value(header.pop("value", {"t": "none"}), blobs)
    return header, value
