"""What grader tests use: strict comparisons in the parent, the reference, banned APIs.

Every check raises ``AssertionError`` with a message that says what was checked, with which
shapes and at which tolerance. In hidden tests the messages leave out values and differences
(``set_hidden`` is called by the plugin around each test).
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import os
import sys
from pathlib import Path
from typing import Any

import torch

from autograder.banned import read_banned
from replearn.contract import assignments

_state: dict[str, Any] = {
    "hidden": False,
    "tests_dir": None,  # the folder of the running test (public tests: its recorded mistakes)
    "test": None,  # the running test's name, as pytest names it
    "checks": 0,  # checks made so far in the running test
    "variant": False,  # the running test grades a catalogued mistake (autograder.mistakes)
    "capture": None,  # a dict while a catalogued variant is graded: its first failed check
    "found": [],  # the known mistakes the last failed check matched
}


class StudentCodeError(AssertionError):
    """Student code raised, hung, crashed or returned something the grader cannot use."""


class GraderEnvironmentError(RuntimeError):
    """A check could not run because the grading environment lacks one of the grader's packages
    (``autograder.environment``): the grader's failure, reported as such, never the student's."""

    def __init__(self, distribution: str):
        super().__init__(f"the grading environment lacks {distribution!r}")
        self.distribution = distribution


def set_hidden(hidden: bool) -> None:
    _state["hidden"] = bool(hidden)


def begin_test(
    tests_dir: Path | None, test: str | None, *, variant: bool = False, capture: bool = False
) -> None:
    """A test starts: number its checks from 1. ``variant``: the test runs again on a catalogued
    mistake (``expected()`` gives the values it gave the submission's run); ``capture`` keeps
    its first failed check."""
    _state.update(
        tests_dir=None if tests_dir is None else Path(tests_dir),
        test=test,
        checks=0,
        variant=variant,
        capture={} if capture else None,
        found=[],
    )


def captured() -> dict | None:
    """The first check the running test failed, while capturing (None otherwise)."""
    capture = _state["capture"]
    return None if capture is None else capture.get("point")


def found_mistakes() -> list[str]:
    """Ids of the known mistakes the running test's failed check matched."""
    return [m["id"] for m in _state["found"]]


@contextlib.contextmanager
def _check(kind: str, name: str, got: Any, rtol: float = 0.0, atol: float = 0.0):
    """Number a check; when it fails in a public test, name the known mistake it matches
    (``autograder.mistakes``), or keep it while a catalogued variant is graded."""
    _state["checks"] += 1
    index = _state["checks"]
    try:
        yield
    except AssertionError as exc:
        if _state["hidden"] or _state["test"] is None:
            raise
        from autograder import mistakes

        failed = mistakes.point(index, kind, name, got, rtol, atol)
        if _state["capture"] is not None:
            _state["capture"].setdefault("point", failed)
            raise
        found = mistakes.explain(_state["tests_dir"], _state["test"], failed)
        if not found:
            raise
        _state["found"] = found
        raise AssertionError(f"{exc}\n{mistakes.wording(found)}") from None


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
    with _check("tensor", name, got, rtol, atol):
        _expect_tensor(
            got,
            want,
            rtol=rtol,
            atol=atol,
            name=name,
            dtype=dtype,
            allow_requires_grad=allow_requires_grad,
            equal_nan=equal_nan,
            contiguous=contiguous,
        )


def _expect_tensor(
    got, want, *, rtol, atol, name, dtype, allow_requires_grad, equal_nan, contiguous
) -> None:
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
    with _check("close", name, got, rtol, atol):
        _expect_close(got, want, rtol=rtol, atol=atol, name=name)


def _expect_close(got: Any, want: float, *, rtol: float, atol: float, name: str) -> None:
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


def expect_true(cond: bool, message: str, *, observed: Any = None) -> None:
    """Fail with ``message`` unless ``cond`` is exactly ``True``.

    ``observed``: what the student's code gave that the condition is about (a list, a tensor,
    a number), so that a known mistake can be recognised by it; without it, a known mistake
    that fails the same condition is named.
    """
    with _check("true", "", observed, 1e-5, 1e-6):
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


# ---- reference values of PUBLIC tests, recorded for the student hand-out -------------------------
EXPECTED_FILE = "expected_public.agv"  # one codec frame (never pickle) beside the public tests
EXPECTED_MODE_ENV = "AUTOGRADER_EXPECTED"  # "auto" (default), "recorded" or "record"
_recorded: dict[Path, dict[str, Any]] = {}
_computed: dict[tuple[Path, str], Any] = {}  # this session's reference values, for variant runs


def expected(key: str, compute):
    """The reference value of a public test: computed, or read from the recorded copy.

    Public tests ship to students, the solutions do not. With the solutions present (the grader,
    CI) ``compute()`` runs; in the student hand-out the value recorded by
    ``python -m autograder record <assignment>`` is returned instead, so ``autograder check``
    gives the same verdicts as the grader. Hidden tests must call ``reference`` directly.
    """
    caller = Path(sys._getframe(1).f_code.co_filename).resolve()
    if not caller.name.startswith("test_public_"):
        raise RuntimeError(f"expected() is for public tests only, not {caller.name}")
    folder, module = caller.parent, caller.parent.name
    path = folder / EXPECTED_FILE
    mode = os.environ.get(EXPECTED_MODE_ENV, "auto")
    if mode not in ("auto", "recorded", "record"):
        raise ValueError(f"{EXPECTED_MODE_ENV} must be auto, recorded or record, not {mode!r}")
    have_reference = (assignments.solutions_root() / f"{module}.py").exists()
    if mode == "record" or (mode == "auto" and have_reference):
        if _state["variant"] and (path, key) in _computed:
            return _computed[(path, key)]  # the reference's value, as the submission got it
        value = compute()
        _computed[(path, key)] = value
        if mode == "record":
            _record(path, key, value)
        return value
    values = _load_recorded(path)
    if key not in values:
        raise FileNotFoundError(
            f"no recorded reference value {key!r} in {path}; the instructor regenerates them "
            f"with `python -m autograder record {module}`"
        )
    return values[key]


def with_reference(compute):
    """``compute()`` where the reference solutions are present (the grader, CI), else None.

    For the part of a public test that needs the reference on values no recording can hold,
    such as re-scoring the weights a student's code trained: the grader does it, and the
    student's ``autograder check`` (the hand-out has no solutions) reports that it did not.
    """
    caller = Path(sys._getframe(1).f_code.co_filename).resolve()
    module = caller.parent.name
    as_handout = os.environ.get(EXPECTED_MODE_ENV, "auto") == "recorded"
    as_handout |= _state["variant"]  # a catalogued mistake is recorded as the hand-out sees it
    if not as_handout and (assignments.solutions_root() / f"{module}.py").exists():
        return compute()
    return None


def _load_recorded(path: Path) -> dict[str, Any]:
    from autograder import codec

    if path not in _recorded:
        if not path.exists():
            raise FileNotFoundError(
                f"{path} is missing: the public tests need their recorded reference values "
                f"(instructor: `python -m autograder record {path.parent.name}`)"
            )
        _header, values = codec.decode(path.read_bytes())
        if type(values) is not dict:
            raise ValueError(f"{path} does not hold a table of recorded values")
        _recorded[path] = {k: _plain(v) for k, v in values.items()}
    return _recorded[path]


def _plain(value: Any) -> Any:
    """Decoded values as ordinary, writable tensors (recursively)."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if type(value) in (list, tuple):
        return type(value)(_plain(v) for v in value)
    if type(value) is dict:
        return {k: _plain(v) for k, v in value.items()}
    return value


def _record(path: Path, key: str, value: Any) -> None:
    from autograder import codec
    from autograder.results import write_bytes_atomic

    values = dict(_load_recorded(path)) if path.exists() else {}
    if key in _fresh_records.get(path, set()):
        raise KeyError(f"expected() key {key!r} is used twice in {path.parent.name}'s public tests")
    values[key] = value
    write_bytes_atomic(path, codec.encode(dict(sorted(values.items()))), mode=0o644)
    _recorded[path] = values
    _fresh_records.setdefault(path, set()).add(key)


_fresh_records: dict[Path, set[str]] = {}
