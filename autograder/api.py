"""What grader tests use: strict comparisons in the parent, the reference, banned APIs.

Every check raises ``AssertionError`` with a message that says what was checked, with which
shapes and at which tolerance. In hidden tests the messages leave out values and differences
(``set_hidden`` is called by the plugin around each test).
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from typing import Any

import torch

from autograder import assignments
from autograder.banned import read_banned

_state = {"hidden": False}


class StudentCodeError(AssertionError):
    """Student code raised, hung, crashed or returned something the grader cannot use."""


def set_hidden(hidden: bool) -> None:
    _state["hidden"] = bool(hidden)


def _fmt_shape(shape) -> str:
    return "(" + ", ".join(str(int(s)) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def describe(value: Any) -> str:
    """Short type description of a returned value, for messages."""
    if isinstance(value, torch.Tensor):
        return (
            f"a tensor of shape {_fmt_shape(value.shape)} {str(value.dtype).replace('torch.', '')}"
        )
    if value is None:
        return "None"
    if type(value) in (list, tuple):
        return f"a {type(value).__name__} of length {len(value)}"
    return f"a {type(value).__name__}"


def expect_tensor(
    got: Any,
    want: torch.Tensor,
    *,
    rtol: float,
    atol: float,
    name: str,
    dtype: torch.dtype | None = None,
    allow_requires_grad: bool = False,
    equal_nan: bool = False,
    contiguous: bool = False,
) -> None:
    """Exact shape, dtype, no grad, finite, then ``torch.testing.assert_close``.

    ``want`` is the parent's reference value; ``dtype`` overrides its dtype as the expected one.
    No broadcasting, no dtype promotion, NaN/Inf only where ``equal_nan`` allows them.
    """
    want = want.detach()
    want_dtype = dtype or want.dtype
    spec = f"{_fmt_shape(want.shape)} {str(want_dtype).replace('torch.', '')}"
    if not isinstance(got, torch.Tensor):
        raise AssertionError(f"{name}: returned {describe(got)}, expected a tensor of shape {spec}")
    if tuple(got.shape) != tuple(want.shape):
        raise AssertionError(
            f"{name}: shape {_fmt_shape(got.shape)}, expected {_fmt_shape(want.shape)} "
            "(shapes must match exactly; broadcasting is not accepted)"
        )
    if got.dtype != want_dtype:
        raise AssertionError(
            f"{name}: dtype {str(got.dtype).replace('torch.', '')}, expected "
            f"{str(want_dtype).replace('torch.', '')} (shape {_fmt_shape(want.shape)})"
        )
    info = getattr(got, "_autograder_info", {}) or {}
    if not allow_requires_grad and (got.requires_grad or info.get("requires_grad")):
        raise AssertionError(
            f"{name}: the returned tensor requires grad (grad_fn={info.get('grad_fn')}); "
            "this function must return a result without autograd history (use .detach() or "
            "torch.no_grad())"
        )
    if contiguous and not info.get("contiguous", True):
        raise AssertionError(f"{name}: the returned tensor is not contiguous (call .contiguous())")
    got = got.detach()
    if not equal_nan and got.is_floating_point():
        bad = int((~torch.isfinite(got)).sum())
        if bad:
            raise AssertionError(
                f"{name}: {bad} of {got.numel()} values are NaN or Inf (shape {_fmt_shape(got.shape)})"
            )
    try:
        torch.testing.assert_close(
            got, want.to(want_dtype), rtol=rtol, atol=atol, equal_nan=equal_nan, check_dtype=True
        )
    except AssertionError:
        diff = (got.double() - want.to(want_dtype).double()).abs()
        tol = atol + rtol * want.to(want_dtype).double().abs()
        mismatched = int((~(diff <= tol)).sum())
        where = (
            f"{name} of shape {spec} differs from the reference beyond rtol={rtol:g}, atol={atol:g}"
        )
        if _state["hidden"]:
            raise AssertionError(f"{where} ({mismatched} of {got.numel()} elements)") from None
        finite = torch.isfinite(diff)
        worst = float(diff[finite].max()) if finite.any() else math.inf
        raise AssertionError(
            f"{where}: {mismatched} of {got.numel()} elements mismatched, max abs diff {worst:.3g}"
        ) from None


def expect_close(got: Any, want: float, *, rtol: float, atol: float, name: str) -> None:
    """A Python number (not bool, finite) within tolerance of ``want``."""
    if isinstance(got, torch.Tensor) and got.numel() == 1 and got.dim() == 0:
        got = got.item()
    if type(got) not in (int, float):
        raise AssertionError(f"{name}: returned {describe(got)}, expected a number")
    if not math.isfinite(got):
        raise AssertionError(f"{name}: returned {got}, expected a finite number")
    if not math.isclose(got, want, rel_tol=rtol, abs_tol=atol):
        if _state["hidden"]:
            raise AssertionError(
                f"{name} differs from the reference beyond rtol={rtol:g}, atol={atol:g}"
            )
        raise AssertionError(
            f"{name}: got {got:.6g}, expected {want:.6g} (rtol={rtol:g}, atol={atol:g})"
        )


def expect_true(cond: bool, message: str) -> None:
    """Fail with ``message`` unless ``cond`` is exactly ``True``."""
    if cond is not True:
        raise AssertionError(message)


def load_weights(model: torch.nn.Module, state: Any, *, name: str = "weights") -> torch.nn.Module:
    """Load a returned state dict into the PARENT's own ``model`` after strict checks."""
    if type(state) is not dict:
        raise AssertionError(f"{name}: returned {describe(state)}, expected a dict of tensors")
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise AssertionError(f"{name}: missing keys {missing[:5]}, unexpected keys {extra[:5]}")
    for key, ref in expected.items():
        got = state[key]
        if not isinstance(got, torch.Tensor) or got.shape != ref.shape or got.dtype != ref.dtype:
            raise AssertionError(f"{name}[{key!r}]: {describe(got)}, expected {describe(ref)}")
        if got.is_floating_point() and not bool(torch.isfinite(got).all()):
            raise AssertionError(f"{name}[{key!r}] contains NaN or Inf")
    model.load_state_dict({k: v.detach() for k, v in state.items()}, strict=True)
    return model


_references: dict[str, Any] = {}


def reference(module_name: str):
    """Import ``solutions/<module>.py`` in the PARENT under a private name (never in a worker)."""
    if module_name not in _references:
        path = assignments.solutions_root() / f"{module_name}.py"
        if not path.exists():
            raise FileNotFoundError(f"no reference solution at {path}")
        private = f"_autograder_reference_{module_name}"
        spec = importlib.util.spec_from_file_location(private, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[private] = module
        spec.loader.exec_module(module)
        _references[module_name] = module
    return _references[module_name]


def banned_apis(module_name: str) -> dict[str, list[str]]:
    """``BANNED_APIS`` of ``solutions/<module>.py`` (literal_eval; empty if none)."""
    return read_banned(Path(assignments.solutions_root()) / f"{module_name}.py")
