"""Artefacts: the trained weights an assignment asks for besides code, in safetensors only.

An assignment that asks for artefacts declares them in ``submission.json`` beside its tests
(``autograder/tests/<module>/submission.json``, which ships with the public tests)::

    {"artefacts": {"encoder.safetensors": {"max_bytes": 50000000, "what": "the encoder"}}}

:func:`declared` reads that file for both sides: ``replearn.submit`` packs and checks the files it
names, the grader's ``student.artefact(name)`` takes its size limit from it. :func:`load_safetensors`
is the one reader of a submitted artefact: size, header, dtypes and byte ranges are checked
before ``safetensors`` parses anything (tier 3 of the grader re-evaluates submitted weights; a
pickle file is never loaded, as it can run code).
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import TYPE_CHECKING

from replearn.contract import assignments

if TYPE_CHECKING:
    import torch

SPEC_FILE = "submission.json"
ALLOWED = {"F16", "BF16", "F32", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL"}
ITEMSIZE = {
    "F16": 2,
    "BF16": 2,
    "F32": 4,
    "F64": 8,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
}
MAX_HEADER = 1024 * 1024


def load_safetensors(path: Path, *, max_bytes: int) -> dict[str, torch.Tensor]:
    """Check size, header JSON, dtypes and offsets, then load with ``safetensors.torch.load``.

    Raises ``ValueError`` with a message for the student when anything is off.
    """
    from safetensors.torch import load

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"the submission has no {path.name}; save it with safetensors")
    size = path.stat().st_size
    if size > max_bytes:
        raise ValueError(f"{path.name} is {size} bytes, over the {max_bytes} byte limit")
    data = path.read_bytes()
    if len(data) < 8:
        raise ValueError(f"{path.name} is not a safetensors file (too short)")
    (header_len,) = struct.unpack("<Q", data[:8])
    if header_len > MAX_HEADER or 8 + header_len > len(data):
        raise ValueError(f"{path.name} is not a safetensors file (bad header length)")
    try:
        header = json.loads(data[8 : 8 + header_len])
    except ValueError:
        raise ValueError(f"{path.name} is not a safetensors file (header is not JSON)") from None
    if type(header) is not dict:
        raise ValueError(f"{path.name}: header is not a JSON object")
    body = len(data) - 8 - header_len
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        if type(entry) is not dict or entry.get("dtype") not in ALLOWED:
            raise ValueError(f"{path.name}: tensor {key!r} has a dtype the grader does not accept")
        shape, offsets = entry.get("shape"), entry.get("data_offsets")
        if type(shape) is not list or any(type(s) is not int or s < 0 for s in shape):
            raise ValueError(f"{path.name}: tensor {key!r} has a malformed shape")
        if type(offsets) is not list or len(offsets) != 2:
            raise ValueError(f"{path.name}: tensor {key!r} has malformed offsets")
        start, end = offsets
        if (
            not (0 <= start <= end <= body)
            or end - start != math.prod(shape) * ITEMSIZE[entry["dtype"]]
        ):
            raise ValueError(f"{path.name}: tensor {key!r} does not match its byte range")
    try:
        return load(data)
    except Exception as exc:  # safetensors raises its own error types
        raise ValueError(f"{path.name} could not be read: {type(exc).__name__}") from None


def declared(module: str) -> dict[str, dict]:
    """``{file name: {"max_bytes": int, "what": str}}``: the artefacts a submission of ``module``
    must hold, from ``submission.json`` beside its tests; empty when the file is absent.

    Raises ``ValueError`` naming the file when it is malformed: every artefact a bare
    ``*.safetensors`` name with an integer ``max_bytes``.
    """
    path = assignments.tests_root() / module / SPEC_FILE
    if not path.is_file():
        return {}
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        raise ValueError(f"{path} is not valid JSON") from None
    artefacts = spec.get("artefacts", {}) if type(spec) is dict else None
    if type(artefacts) is not dict or any(
        type(v) is not dict or type(v.get("max_bytes")) is not int for v in artefacts.values()
    ):
        raise ValueError(f"{path}: 'artefacts' must map file names to {{'max_bytes': int}}")
    for name in artefacts:
        if Path(name).suffix != ".safetensors" or Path(name).name != name:
            raise ValueError(f"{path}: artefact {name!r} must be a bare *.safetensors name")
    return artefacts
