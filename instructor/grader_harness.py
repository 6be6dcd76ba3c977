"""Grader tests run in one process, as the grader runs them but without pytest or workers.

The grader runs every call into student code in a fresh worker (``autograder.sandbox``): one
torch thread, the torch/NumPy/``random`` generators seeded with the call's seed, arguments and
results through the codec. Its trusted parent computes the reference values with the threads it
was started with (``OMP_NUM_THREADS``, 2 by default). This module reproduces both sides in one
process, so that a grader test can be run thousands of times (the hidden-seed audit,
``benchmarks.grader_seeds``) or against many stand-in submissions (the hand-out leak check,
``instructor.handout_leaks``) at the cost of the arithmetic alone:

* :class:`InProcessStudent` is the ``student`` fixture: ``call`` and ``probe`` run the student
  module (a fresh copy for every call, made by ``module_factory``) under the worker's
  conditions, with arguments and results through ``autograder.codec``, and raise
  ``StudentCodeError`` where the grader would;
* :func:`run_test` runs one test function with it, as the plugin does (``set_hidden``, the
  per-test seed of ``autograder.plugin``), and records how close every comparison came to its
  tolerance (:class:`Margins`): 0 for identical values, 1 at the tolerance, above 1 a failure.

Instructor tooling: it needs the hidden tests and the reference, and it never ships.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import math
import random
import signal
import sys
import time
import types
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from autograder import api, codec
from autograder.plugin import _seed_for
from replearn.contract import assignments

WORKER_THREADS = 1  # autograder.worker: torch.set_num_threads(1)
PARENT_THREADS = 2  # autograder.runner: OMP_NUM_THREADS defaults to 2 in the grading session


def load_module(path: Path, name: str) -> types.ModuleType:
    """Execute ``path`` as a fresh module called ``name`` (registered in ``sys.modules``)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def module_copies(
    path: Path, name: str, prepare: Callable[[types.ModuleType], None] | None = None
) -> Callable[[], types.ModuleType]:
    """A factory of fresh modules executed from ``path`` (compiled once), each ``prepare``-d.

    The worker imports the submission afresh for every call; so does each copy. ``prepare``
    may change a copy before the call sees it (delete or replace a function, wrap one).
    """
    code = compile(Path(path).read_text(encoding="utf-8"), str(path), "exec")

    def fresh() -> types.ModuleType:
        module = types.ModuleType(name)
        module.__file__ = str(path)
        sys.modules[name] = module  # dataclasses and pickling look the module up by name
        exec(code, module.__dict__)
        if prepare is not None:
            prepare(module)
        return module

    return fresh


def reference_copies(module_name: str) -> Callable[[], types.ModuleType]:
    """A factory of fresh copies of ``solutions/<module>.py``: the reference as a submission."""
    path = assignments.solutions_root() / f"{module_name}.py"
    return module_copies(path, module_name)  # the worker imports it under its own name


def test_functions(module_name: str, kind: str) -> dict[str, Callable]:
    """``{test name: function}`` of ``test_<kind>_<module>.py`` (kind: public or hidden)."""
    path = assignments.tests_root() / module_name / f"test_{kind}_{module_name}.py"
    with warnings.catch_warnings():  # the grader's marks are registered in its own session only
        warnings.simplefilter("ignore", pytest.PytestUnknownMarkWarning)
        module = load_module(path, f"_harness_tests_{kind}_{module_name}")
    return {
        name: fn
        for name, fn in vars(module).items()
        if name.startswith("test_")
        and callable(fn)
        and getattr(fn, "__module__", "") == module.__name__
    }


def marks(fn: Callable, name: str) -> tuple:
    """The arguments of the pytest mark ``name`` on ``fn`` (empty when absent)."""
    for mark in getattr(fn, "pytestmark", []):
        if mark.name == name:
            return tuple(mark.args)
    return ()


@contextlib.contextmanager
def _threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _through_codec(value: Any) -> Any:
    return codec.decode(codec.encode(value))[1]


@contextlib.contextmanager
def _own_generators():
    """The worker's global generators are its own: the parent's are restored afterwards."""
    state = torch.get_rng_state(), np.random.get_state(), random.getstate()
    try:
        yield
    finally:
        torch.set_rng_state(state[0])
        np.random.set_state(state[1])
        random.setstate(state[2])


class CallTimeout(BaseException):
    """Raised inside a call that ran past its limit (SIGALRM; main thread only)."""


@contextlib.contextmanager
def _deadline(seconds: float | None):
    if not seconds or seconds <= 0:
        yield
        return

    def expire(signum, frame):
        scan = frame
        while scan is not None:  # never leave a half-imported module behind: retry shortly
            if scan.f_code.co_filename.startswith("<frozen importlib"):
                signal.setitimer(signal.ITIMER_REAL, 0.05)
                return
            scan = scan.f_back
        raise CallTimeout(f"ran past {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass
class InProcessStudent:
    """The ``student`` fixture of ``autograder.plugin``, with every call made in this process.

    Args:
        module_factory: returns a fresh student module for each call (the worker imports the
            submission afresh every time).
        seed: the test's seed (``student.rng`` is seeded with it).
        hidden: whether the test is hidden (messages leave values out).
        banned: ``{function: [qualified APIs]}`` a call may not reach; ``banned_hits`` says
            which of them the module's source names (AST) are checked by the caller.
        call_limit_s: wall-clock limit of one call (None: no limit).
    """

    module_factory: Callable[[], types.ModuleType]
    seed: int
    hidden: bool
    call_limit_s: float | None = None
    rng: torch.Generator = field(init=False)
    checked: list[str] = field(default_factory=list)
    output: str = ""
    extra: dict = field(default_factory=dict)
    calls: int = 0

    def __post_init__(self) -> None:
        self.rng = torch.Generator().manual_seed(self.seed)

    def call(self, func_name: str, *args, timeout=None, check_inputs_unchanged=False, **kwargs):
        def run(module, a, k):
            func = getattr(module, func_name, None)
            if func is None:
                raise AttributeError(f"module has no function {func_name!r}")
            return func(*a, **k)

        return self._run(run, args, kwargs, func_name, check_inputs_unchanged)

    def probe(self, target: str, *args, timeout=None, **kwargs):
        mod, _, fn = target.partition(":")
        if not mod.startswith("autograder.probes.") or not fn.isidentifier():
            raise ValueError(f"probe {target!r} must be 'autograder.probes.<module>:<function>'")
        probe = getattr(importlib.import_module(mod), fn)
        return self._run(lambda module, a, k: probe(module, *a, **k), args, kwargs, fn, False)

    def artefact(self, name: str, *, max_bytes: int = 0):
        raise api.StudentCodeError(f"no submitted artefact {name!r} in an in-process run")

    def _run(self, run, args, kwargs, label, check_inputs):
        self.calls += 1
        call_seed = _seed_for(self.seed, self.calls)
        sent_args, sent_kwargs = _through_codec(list(args)), _through_codec(dict(kwargs))
        kept = _through_codec(list(args)) if check_inputs else None
        with _threads(WORKER_THREADS), _own_generators():
            torch.manual_seed(call_seed)
            np.random.seed(call_seed % 2**32)
            random.seed(call_seed)
            try:
                module = self.module_factory()
                with _deadline(self.call_limit_s):
                    value = run(module, sent_args, sent_kwargs)
                value = _through_codec(value)
            except CallTimeout as exc:
                raise api.StudentCodeError(f"{label} timed out: {exc}") from None
            except codec.CodecError as exc:
                raise api.StudentCodeError(
                    f"{label} returned a value the grader cannot read: {exc}"
                ) from None
            except Exception as exc:  # noqa: BLE001  (whatever the student module raises)
                raise api.StudentCodeError(
                    f"{label} raised {type(exc).__name__}: {str(exc)[:300]}"
                ) from None
        if check_inputs:
            for i, (before, after) in enumerate(zip(kept, sent_args)):
                if isinstance(before, torch.Tensor) and not torch.equal(before, after.detach()):
                    raise api.StudentCodeError(f"{label} modified its input argument {i} in place")
        self.checked.append(label)
        return value


@dataclass
class Margins:
    """How close each comparison of one test run came to its tolerance (name -> worst ratio)."""

    ratios: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, ratio: float) -> None:
        self.ratios[name] = max(self.ratios.get(name, 0.0), ratio)

    @property
    def worst(self) -> float:
        return max(self.ratios.values(), default=0.0)


def _tensor_ratio(got: Any, want: torch.Tensor, rtol: float, atol: float, dtype) -> float:
    if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(want.shape):
        return math.inf
    want = want.detach().to(dtype or want.dtype)
    got = got.detach()
    if got.numel() == 0:
        return 0.0
    if not (got.is_floating_point() or want.is_floating_point()):
        return 0.0 if torch.equal(got.to(want.dtype), want) else math.inf
    diff = (got.double() - want.double()).abs()
    same = (got.double() == want.double()) | (
        torch.isnan(got.double()) & torch.isnan(want.double())
    )
    tol = atol + rtol * want.double().abs()
    ratio = torch.where(same, torch.zeros_like(diff), diff / tol)
    ratio = torch.nan_to_num(ratio, nan=math.inf, posinf=math.inf)
    return float(ratio.max())


def _close_ratio(got: Any, want: float, rtol: float, atol: float) -> float:
    if isinstance(got, torch.Tensor) and got.numel() == 1 and got.dim() == 0:
        got = got.item()
    if type(got) not in (int, float) or not math.isfinite(got):
        return math.inf
    diff = abs(got - want)
    if diff == 0:
        return 0.0
    tol = max(rtol * max(abs(got), abs(want)), atol)
    return diff / tol if tol > 0 else math.inf


def _measuring(namespace: dict, margins: Margins) -> dict:
    """Replacements of ``expect_tensor``/``expect_close`` that record the margin, then check."""
    original_tensor, original_close = namespace.get("expect_tensor"), namespace.get("expect_close")
    patched = {}
    if original_tensor is not None:

        def expect_tensor(got, want, *, rtol, atol, name, dtype=None, **kw):
            margins.add(name, _tensor_ratio(got, want, rtol, atol, dtype))
            return original_tensor(got, want, rtol=rtol, atol=atol, name=name, dtype=dtype, **kw)

        patched["expect_tensor"] = expect_tensor
    if original_close is not None:

        def expect_close(got, want, *, rtol, atol, name):
            margins.add(name, _close_ratio(got, want, rtol, atol))
            return original_close(got, want, rtol=rtol, atol=atol, name=name)

        patched["expect_close"] = expect_close
    return patched


@dataclass
class TestRun:
    """The outcome of one test run: passed, or the message it failed with; margins; seconds."""

    passed: bool
    message: str
    margins: Margins
    seconds: float


def run_test(
    fn: Callable,
    module_name: str,
    module_factory: Callable[[], types.ModuleType],
    *,
    hidden: bool,
    grading_seed: int = 0,
    call_limit_s: float | None = None,
) -> TestRun:
    """Run test function ``fn`` of ``module_name`` as the grader would with ``grading_seed``.

    The test's own seed is the plugin's: the hidden-test seed of the grading run for hidden
    tests, the fixed public seed otherwise. Reference values are computed in this process with
    the parent's thread count.
    """
    kind = "hidden" if hidden else "public"
    rel = f"{module_name}/test_{kind}_{module_name}.py::{fn.__name__}"
    seed = _seed_for("hidden", grading_seed, rel) if hidden else _seed_for("public", rel)
    student = InProcessStudent(module_factory, seed, hidden, call_limit_s)
    margins = Margins()
    namespace = fn.__globals__
    patched = _measuring(namespace, margins)
    saved = {k: namespace[k] for k in patched}
    start = time.perf_counter()
    api.set_hidden(hidden)
    namespace.update(patched)
    try:
        with _threads(PARENT_THREADS):
            fn(student)
        passed, message = True, "passed"
    except AssertionError as exc:
        passed, message = False, str(exc) or type(exc).__name__
    except Exception as exc:  # noqa: BLE001  (a test that cannot use the answer fails)
        passed, message = False, f"{type(exc).__name__}: {str(exc)[:300]}"
    finally:
        namespace.update(saved)
        api.set_hidden(False)
    return TestRun(passed, message, margins, time.perf_counter() - start)
