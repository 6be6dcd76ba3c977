"""The worker -> parent codec: round trips, and strict rejection of malformed messages."""

import json
import struct

import numpy as np
import pytest
import torch

from autograder import codec


def test_round_trip_keeps_values_types_and_metadata():
    value = {
        "t": torch.arange(6, dtype=torch.float32).reshape(2, 3).t(),  # non-contiguous [3, 2]
        "s": torch.tensor(2.5, dtype=torch.float64),  # 0-d
        "b": torch.tensor([True, False]),
        "bf": torch.ones(2, dtype=torch.bfloat16),
        "e": torch.empty(0, 4),
        "n": np.arange(3, dtype=np.int64),
        "x": [1, 2.5, "s", None, True, (3, 4)],
        "big": 2**100,
        "nan": float("nan"),
    }
    header, out = codec.decode(codec.encode(value, extra={"nonce": "abc"}))
    assert header == {"nonce": "abc"}
    assert torch.equal(out["t"], value["t"]) and out["t"]._autograder_info["contiguous"] is False
    assert out["s"].shape == () and out["s"].dtype == torch.float64 and float(out["s"]) == 2.5
    assert out["b"].dtype == torch.bool and out["bf"].dtype == torch.bfloat16
    assert out["e"].shape == (0, 4)
    assert isinstance(out["n"], np.ndarray) and out["n"].tolist() == [0, 1, 2]
    assert out["x"] == [1, 2.5, "s", None, True, (3, 4)] and out["big"] == 2**100
    assert out["nan"] != out["nan"]


def test_requires_grad_claim_is_visible_and_subclasses_become_plain_tensors():
    class Sub(torch.Tensor):
        pass

    t = torch.ones(3, requires_grad=True) * 2
    _, out = codec.decode(codec.encode([t, torch.zeros(2).as_subclass(Sub)]))
    assert out[0].requires_grad and out[0]._autograder_info["grad_fn"] == "MulBackward0"
    assert type(out[1]) is torch.Tensor and out[1]._autograder_info["subclass"] == "Sub"


@pytest.mark.parametrize(
    "value",
    [object(), {1: 2}, torch.zeros(2, dtype=torch.complex64), torch.empty(2, device="meta")],
)
def test_encode_refuses_anything_but_plain_data(value):
    with pytest.raises(codec.CodecError):
        codec.encode(value)


def _frame(header: dict, blob: bytes = b"") -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<4sIQ", b"AGv1", len(raw), len(blob)) + raw + blob


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"XXXX" + bytes(12),
        _frame({"value": {"t": "pickle", "v": "cos\nsystem"}}),
        _frame(
            {"value": {"t": "tensor", "dtype": "object", "shape": [1], "offset": 0, "nbytes": 8}},
            bytes(8),
        ),
        _frame(
            {"value": {"t": "tensor", "dtype": "float32", "shape": [3], "offset": 0, "nbytes": 8}},
            bytes(8),
        ),
        _frame(
            {"value": {"t": "tensor", "dtype": "float32", "shape": [4], "offset": 8, "nbytes": 16}},
            bytes(16),
        ),
        _frame(
            {"value": {"t": "tensor", "dtype": "float32", "shape": [-1], "offset": 0, "nbytes": 0}}
        ),
        _frame({"value": {"t": "int", "v": "1e5"}}),
        _frame({"value": {"t": "float", "v": 1.0}}),
        _frame({"value": {"t": "dict", "v": [[1, {"t": "none"}]]}}),
        struct.pack("<4sIQ", b"AGv1", 11, 0) + b'{"a": NaN}X',
        _frame({"value": {"t": "list", "v": [{"t": "none"}]}})[:-1],
    ],
)
def test_decode_rejects_malformed_messages(data):
    with pytest.raises(codec.CodecError):
        codec.decode(data)


def test_decode_rejects_deep_nesting():
    node = {"t": "none"}
    for _ in range(codec.MAX_DEPTH + 2):
        node = {"t": "list", "v": [node]}
    with pytest.raises(codec.CodecError):
        codec.decode(_frame({"value": node}))
