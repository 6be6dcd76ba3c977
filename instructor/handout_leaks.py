"""Can anything the students get fill in a graded part? The hand-out's leak check.

The release refuses a hand-out that holds a solution file, a hidden test or marker text
(``instructor.release.leaks``). That does not catch working code under another name: hand-outs
once shipped ``autograder/probes`` with trusted versions of eight graded parts of Assignment 4,
which the public checks swapped in around the part under test. This check looks at behaviour,
in two halves:

* :func:`scan_names` (AST, seconds): nothing that ships, outside the student modules, defines a
  function, class or module-level name spelled like a graded part (``nt_xent_loss``; a class
  ``ProjectionHead`` for ``ProjectionHead.__init__``), except the library versions that the
  assignment bans in that very part (``BANNED_APIS``: the grader zeroes their use).
* :func:`find_fill_ins` (minutes): every function, method and class defined in what ships is a
  candidate for every graded part whose call it can accept, and so is every function's code
  pasted into the student's module (where the names it calls are the student module's). The grader's public and hidden
  tests of the assignment run once on the reference (``instructor.grader_harness``) and every
  call into a graded part is replayed on its candidates, with copies of the same arguments and
  the same random state. A candidate that gives the reference's result, and leaves its
  arguments as the reference left them, on every call it saw is a leak (unless its own source
  calls an API the assignment bans in that part: the grader zeroes that), and it is graded for
  real too: the part's public and hidden tests run on the student module with EVERY graded part
  deleted and the candidate in that part's place, and the tests it passes are reported. A test
  that passes with every graded part deleted and no candidate at all is reported as well.

    python -m instructor.handout_leaks ROOT [--student-dir DIR] [--assignment all] [--out F]

``ROOT`` is what ships: the hand-out (``python -m instructor.release zip``; its zip, or the zip
unpacked), whose course package comes as a wheel (unpacked here too), or the course wheel alone
(its file, or its contents). The command puts ``ROOT`` first on
``sys.path`` before it imports ``replearn`` or ``autograder``, so the candidates are the
shipped files, while the hidden tests and the references come from this repository
(``AUTOGRADER_TESTS_ROOT``, ``AUTOGRADER_SOLUTIONS_ROOT``). Candidates run in this process
(they are course code, not student code): run the command in a child process, as
``tests/test_handout_leaks.py`` does.
"""

from __future__ import annotations

import argparse
import ast
import atexit
import contextlib
import copy
import importlib
import importlib.util
import inspect
import io
import json
import math
import os
import random
import shutil
import signal
import sys
import tempfile
import time
import types
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("replearn", "autograder")  # what the hand-out and the wheel ship besides modules
# Shipped modules whose functions act on processes, file descriptors and files (the grader's
# sandbox and runner, the submission tooling and its contract): called with a graded part's
# arguments (small integers among them) they could close a descriptor or signal a process of
# the machine running this check. They hold no tensor code; the names scan still covers them.
NOT_RUN = (
    "autograder.worker",
    "autograder.sandbox",
    "autograder.runner",
    "autograder.lifeline",
    "autograder.batch",
    "autograder.cli",
    "autograder.submission",
    "autograder.results",
    "autograder.manifest",
    "replearn.submit",
    "replearn.notebook",
    "replearn.contract.files",
    "replearn.contract.manifest",
    "replearn.contract.notebooks",
)
CHECKED_CALLS = 3  # a candidate is replayed on at most this many calls of its part
CANDIDATE_LIMIT_S = 0.5  # wall-clock limit of one replayed candidate call
TEST_LIMIT_S = 60.0  # per call into the student module while a suspect is graded


# ----------------------------------------------------------------------------------------------
# Graded parts
# ----------------------------------------------------------------------------------------------


def graded_parts(solutions: Path) -> dict[str, list[str]]:
    """``{module: [qualified names of the functions with a solution region]}``."""
    from instructor import release  # the marker scanner; imports the course package checked

    parts: dict[str, list[str]] = {}
    for path in sorted(Path(solutions).glob("*.py")):
        if path.stem in release.HELPER_MODULES:
            continue
        regions = release.find_regions(path.read_text(encoding="utf-8"), str(path))
        parts[path.stem] = sorted({r.function for r in regions if r.kind == "solution"})
    return parts


def banned_apis(solutions: Path, module: str) -> dict[str, list[str]]:
    """``BANNED_APIS`` of ``solutions/<module>.py`` (read with ``ast.literal_eval``)."""
    tree = ast.parse((Path(solutions) / f"{module}.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "BANNED_APIS" for t in node.targets
        ):
            return {k: list(v) for k, v in ast.literal_eval(node.value).items()}
    return {}


# ----------------------------------------------------------------------------------------------
# The names scan
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NameHit:
    """A definition in shipped code spelled like a graded part."""

    where: str  # path:line inside ROOT
    name: str  # the name defined
    part: str  # "module:qualified part"

    def __str__(self) -> str:
        return f"{self.where}: defines {self.name!r}, the name of the graded part {self.part}"


def _code_sources(root: Path, student_dir: str) -> Iterable[tuple[str, str]]:
    """``(path inside root, Python source)`` of every shipped .py and notebook code cell."""
    for path in sorted(Path(root).rglob("*")):
        rel = path.relative_to(root).as_posix()
        if not path.is_file() or rel.startswith(student_dir + "/") or "__pycache__" in rel:
            continue
        if path.suffix == ".py":
            yield rel, path.read_text(encoding="utf-8", errors="replace")
        elif path.suffix == ".ipynb":
            notebook = json.loads(path.read_text(encoding="utf-8"))
            for i, cell in enumerate(notebook.get("cells", [])):
                if cell.get("cell_type") == "code":
                    lines = [
                        ln
                        for ln in "".join(cell.get("source", [])).splitlines()
                        if not ln.lstrip().startswith(("%", "!"))
                    ]
                    yield f"{rel}[cell {i}]", "\n".join(lines)


def _defined_names(tree: ast.AST) -> Iterable[tuple[str, int, ast.AST]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            yield node.name, node.lineno, node
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    yield target.id, node.lineno, node
        elif isinstance(node, ast.ImportFrom | ast.Import):
            for alias in node.names:
                if alias.asname:
                    yield alias.asname, node.lineno, node


def scan_names(
    root: Path,
    parts: dict[str, list[str]],
    banned: dict[str, dict[str, list[str]]],
    student_dir: str = "starter_code",
) -> list[NameHit]:
    """Definitions outside ``student_dir`` named like a graded part (see the module doc).

    A top-level part ``f`` is hit by any function, class, assignment or import alias named
    ``f``; a method ``C.m`` by a class named ``C``. A library function the assignment bans in
    that part (by its qualified name ``package.module.f``) is allowed.
    """
    wanted: dict[str, list[str]] = {}
    for module, names in parts.items():
        for part in names:
            wanted.setdefault(part.split(".")[0], []).append(f"{module}:{part}")
    hits = []
    for rel, source in _code_sources(Path(root), student_dir):
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        dotted = rel.split("[")[0].removesuffix(".py").replace("/", ".").removesuffix(".__init__")
        for name, line, _node in _defined_names(tree):
            for part in wanted.get(name, []):
                module, qualified = part.split(":")
                allowed = banned.get(module, {}).get(qualified, [])
                if f"{dotted}.{name}" in allowed:
                    continue
                hits.append(NameHit(f"{rel}:{line}", name, part))
    return hits


# ----------------------------------------------------------------------------------------------
# Candidates
# ----------------------------------------------------------------------------------------------


@dataclass
class Candidate:
    """A function, method or class defined in shipped code.

    ``copied``: the function's code run with the student module's globals, as if its source
    were pasted into the student's file (then the names it calls, such as ``nt_xent_loss``,
    are the student module's, stand-ins included).
    """

    name: str  # "replearn.data.to_float", "autograder.probes.x.StandInHead.forward"
    obj: Any
    is_class: bool
    copied: bool = False
    banned: bool = False  # the assignment bans it (by this name) in the part it is tried for

    def bound_in(self, module) -> Any:
        """The object to put in ``module``: itself, or its code re-homed in ``module``."""
        return rehome(self.obj, module) if self.copied else self.obj


def _global_names(code) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


def rehome(function, module):
    """``function``'s code with ``module``'s globals (its source pasted into ``module``)."""
    copied = types.FunctionType(
        function.__code__,
        vars(module),
        function.__name__,
        function.__defaults__,
        function.__closure__,
    )
    copied.__kwdefaults__ = function.__kwdefaults__
    copied.__qualname__ = function.__qualname__
    return copied


def differs_when_copied(function, module) -> bool:
    """Would ``function`` call other things from ``module`` than from its own module?"""
    own, there = function.__globals__, vars(module)
    return any(n in there and own.get(n) is not there[n] for n in _global_names(function.__code__))


def shipped_modules(root: Path, student_dir: str = "starter_code") -> tuple[list, list[str]]:
    """Import every shipped module under ``root`` (packages by name, test files by path).

    Returns the modules and the ``"path: error"`` of those that could not be imported.
    """
    modules, errors = [], []
    for path in sorted(Path(root).rglob("*.py")):
        rel = path.relative_to(root)
        if rel.parts[0] == student_dir or "__pycache__" in rel.parts or rel.name == "__main__.py":
            continue
        dotted = ".".join(rel.with_suffix("").parts).removesuffix(".__init__")
        if dotted in NOT_RUN:
            continue
        try:
            if rel.parts[0] in PACKAGES and all(
                (root / Path(*rel.parts[:i]) / "__init__.py").exists()
                for i in range(1, len(rel.parts))
            ):
                module = importlib.import_module(dotted)
            else:  # test files and loose scripts: by path, under a private name
                spec = importlib.util.spec_from_file_location(f"_shipped_{abs(hash(dotted))}", path)
                module = importlib.util.module_from_spec(spec)
                sys.modules[spec.name] = module
                with _quiet():
                    spec.loader.exec_module(module)
                module.__dict__.setdefault("_shipped_as", dotted)
        except BaseException as exc:  # noqa: BLE001  (an import may exit or raise anything)
            errors.append(f"{rel}: {type(exc).__name__}: {str(exc)[:200]}")
            continue
        modules.append(module)
    return modules, errors


def candidates(modules: list) -> list[Candidate]:
    """Every function, class and method (of such a class) defined in ``modules``."""
    found, seen = [], set()
    for module in modules:
        label = getattr(module, "_shipped_as", module.__name__)
        for name, obj in sorted(vars(module).items()):
            if getattr(obj, "__module__", None) != module.__name__ or id(obj) in seen:
                continue
            if inspect.isfunction(obj):
                seen.add(id(obj))
                found.append(Candidate(f"{label}.{name}", obj, False))
            elif inspect.isclass(obj):
                seen.add(id(obj))
                found.append(Candidate(f"{label}.{name}", obj, True))
                for attr, member in vars(obj).items():
                    function = (
                        member.__func__
                        if isinstance(member, staticmethod | classmethod)
                        else member
                    )
                    if inspect.isfunction(function) and id(function) not in seen:
                        seen.add(id(function))
                        found.append(Candidate(f"{label}.{name}.{attr}", function, False))
    return found


def _required_positional(fn) -> int:
    params = inspect.signature(fn).parameters.values()
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(p.kind in kinds and p.default is inspect.Parameter.empty for p in params)


def _accepts(obj, count: int) -> bool:
    try:
        inspect.signature(obj).bind(*([None] * count))
        return True
    except (TypeError, ValueError):
        return False


def pool_for(part: str, reference_obj, pool: list[Candidate], banned: list[str]) -> list[Candidate]:
    """The candidates that can take a call of ``part`` (minus the ones its tests ban)."""
    method = "." in part
    needed = _required_positional(reference_obj)  # self included for a method
    chosen = []
    for cand in pool:
        if cand.name in banned:  # the grader zeroes a part that calls it: reported, not a leak
            cand = Candidate(cand.name, cand.obj, cand.is_class, banned=True)
        if cand.is_class:
            if method and not part.endswith(".__init__"):
                continue  # a class stands in for a whole class, which only __init__ builds
            if _accepts(cand.obj, needed - 1 if method else needed):
                chosen.append(cand)
        elif _accepts(cand.obj, needed):
            chosen.append(cand)
            chosen.append(
                Candidate(
                    f"{cand.name} (its code in the student module)",
                    cand.obj,
                    False,
                    True,
                    cand.banned,
                )
            )
    return chosen


# ----------------------------------------------------------------------------------------------
# Replaying calls on candidates
# ----------------------------------------------------------------------------------------------


class _Expired(BaseException):
    pass


def _importing(frame) -> bool:
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


@contextlib.contextmanager
def _limit(seconds: float):
    def expire(signum, frame):
        if _importing(frame):  # never leave a half-imported module behind: retry shortly
            signal.setitimer(signal.ITIMER_REAL, 0.05)
            return
        raise _Expired()

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def _quiet():
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def _copy(value: Any) -> Any:
    """A deep copy that also copies tensors inside an autograd graph (as fresh leaves)."""
    import torch

    if isinstance(value, torch.Tensor):
        out = value.detach().clone()
        return out.requires_grad_(value.requires_grad) if out.is_floating_point() else out
    if isinstance(value, torch.Generator):
        twin = torch.Generator(device=value.device)
        twin.set_state(value.get_state())
        return twin
    if type(value) in (list, tuple):
        return type(value)(_copy(v) for v in value)
    if type(value) is dict:
        return {k: _copy(v) for k, v in value.items()}
    return copy.deepcopy(value)


def _snapshot(value: Any, depth: int = 0) -> Any:
    """Plain, comparable data of a value: tensors detached, modules as their state and layers."""
    import torch

    if depth > 8:
        return ("deep", type(value).__name__)
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, torch.nn.Module):  # its layers (not its own class name) and state
        layers = [(name, type(m).__name__) for name, m in value.named_modules() if name]
        state = {k: v.detach().clone() for k, v in value.state_dict().items()}
        return ("module", layers, state)
    if isinstance(value, torch.Generator):
        return ("generator", value.get_state())
    if type(value) in (list, tuple):
        return (type(value).__name__, [_snapshot(v, depth + 1) for v in value])
    if type(value) is dict:
        return ("dict", {k: _snapshot(v, depth + 1) for k, v in value.items()})
    if isinstance(value, bool | int | float | str | type(None)):
        return value
    return ("object", type(value).__name__)


def _same(a: Any, b: Any) -> bool:
    import torch

    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            return False
        if a.shape != b.shape or a.dtype != b.dtype:
            return False
        if a.is_floating_point():
            return bool(
                torch.allclose(a.double(), b.double(), rtol=1e-4, atol=1e-5, equal_nan=True)
            )
        return bool(torch.equal(a, b))
    if type(a) is not type(b):
        if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
            return math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-5)
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-5)
    if isinstance(a, tuple | list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


@contextlib.contextmanager
def _guarded_state():
    """Put back what a candidate may change for everyone: generators, dtype, grad mode, cwd."""
    import numpy as np
    import torch

    saved = (
        torch.get_rng_state(),
        np.random.get_state(),
        random.getstate(),
        torch.get_default_dtype(),
        torch.is_grad_enabled(),
        torch.get_num_threads(),
        os.getcwd(),
    )
    standard = {fd: os.dup(fd) for fd in (0, 1, 2)}
    try:
        yield saved
    finally:
        for fd, copy_fd in standard.items():
            os.dup2(copy_fd, fd)  # a candidate that closed stdin, stdout or stderr
            os.close(copy_fd)
        torch.set_rng_state(saved[0])
        np.random.set_state(saved[1])
        random.setstate(saved[2])
        torch.set_default_dtype(saved[3])
        torch.set_grad_enabled(saved[4])
        torch.set_num_threads(saved[5])
        os.chdir(saved[6])


@dataclass
class Screen:
    """Per graded part: the candidates still agreeing with the reference, and how often."""

    pool: list[Candidate]
    agreed: dict[str, int] = field(default_factory=dict)
    rejected: set[str] = field(default_factory=set)
    calls: int = 0

    def survivors(self) -> list[Candidate]:
        return [c for c in self.pool if c.name not in self.rejected and self.agreed.get(c.name)]


def _tap(part: str, original, screen: Screen, module, bound_class=None):
    """Wrap ``original`` (a graded function or method): call it, then replay the call on
    every candidate of ``screen`` that is still in and has been checked fewer times than
    ``CHECKED_CALLS``."""
    import numpy as np
    import torch

    init = part.endswith(".__init__")

    def tapped(*args, **kwargs):
        screen.calls += 1
        live = [
            c
            for c in screen.pool
            if c.name not in screen.rejected and screen.agreed.get(c.name, 0) < CHECKED_CALLS
        ]
        before = None
        if live:
            try:
                before = _copy((args[1:], kwargs) if init else (args, kwargs))
            except Exception:  # noqa: BLE001  (an argument that cannot be copied: no replay)
                before = None
        states = (torch.get_rng_state(), np.random.get_state(), random.getstate())
        result = original(*args, **kwargs)
        if before is None:
            return result
        want = _snapshot(args[0] if init else (result, args, kwargs))
        after = (torch.get_rng_state(), np.random.get_state(), random.getstate())
        for cand in live:
            ok = False
            if cand.copied and not differs_when_copied(cand.obj, module):
                screen.rejected.add(cand.name)  # it would behave as its original does
                continue
            with _guarded_state():
                torch.set_rng_state(states[0])
                np.random.set_state(states[1])
                random.setstate(states[2])
                try:
                    call_args, call_kwargs = _copy(before)
                    with _quiet(), _limit(CANDIDATE_LIMIT_S):
                        if init and cand.is_class:
                            got = _snapshot(cand.obj(*call_args, **call_kwargs))
                        elif init:
                            blank = object.__new__(bound_class)
                            cand.bound_in(module)(blank, *call_args, **call_kwargs)
                            got = _snapshot(blank)
                        else:
                            out = cand.bound_in(module)(*call_args, **call_kwargs)
                            got = _snapshot((out, call_args, call_kwargs))
                    ok = _same(got, want)
                except BaseException:  # noqa: BLE001  (a candidate may raise anything)
                    ok = False
            if ok:
                screen.agreed[cand.name] = screen.agreed.get(cand.name, 0) + 1
            else:
                screen.rejected.add(cand.name)
        torch.set_rng_state(after[0])
        np.random.set_state(after[1])
        random.setstate(after[2])
        return result

    return tapped


def _resolve(module, part: str) -> tuple[Any, str, Any]:
    """``(owner, attribute, object)`` of ``part`` in ``module`` (owner: module or class)."""
    owner = module
    *path, attr = part.split(".")
    for name in path:
        owner = getattr(owner, name)
    found = owner.__dict__.get(attr) if isinstance(owner, type) else getattr(owner, attr, None)
    return owner, attr, found


# ----------------------------------------------------------------------------------------------
# The check
# ----------------------------------------------------------------------------------------------


@dataclass
class Finding:
    part: str  # "module:qualified part"
    candidate: str  # the shipped object that filled it in ("" when nothing was put in)
    test: str  # the test it passed ("" when it agreed with the reference but passed none)
    calls: int = 0  # how many replayed calls it agreed on

    def __str__(self) -> str:
        if not self.candidate:
            return f"{self.part}: {self.test} passes with every graded part deleted"
        if not self.test:
            return (
                f"{self.part}: {self.candidate} gives the reference's results on all "
                f"{self.calls} replayed calls (no whole test passes with it alone)"
            )
        return f"{self.part}: {self.candidate} passes {self.test}"


def banned_in(cand: Candidate, apis: list[str]) -> list[str]:
    """The APIs of ``apis`` that ``cand``'s own source names (the grader zeroes a part that
    calls one of them, whoever wrote the call), read with ``autograder.banned.scan``."""
    from autograder import banned

    try:
        source = Path(inspect.getsourcefile(cand.obj)).read_text(encoding="utf-8")
    except (TypeError, OSError):
        return []
    qualified = cand.obj.__qualname__.replace(".<locals>", "")
    return sorted({f.api for f in banned.scan(source, {qualified: apis})})


def _tests_of(module_name: str) -> list[tuple[str, Callable, bool, tuple]]:
    from instructor import grader_harness

    found = []
    for kind in ("public", "hidden"):
        for name, fn in grader_harness.test_functions(module_name, kind).items():
            found.append((name, fn, kind == "hidden", grader_harness.marks(fn, "functions")))
    return found


def _stripped(parts: list[str], part: str | None = None, cand: Candidate | None = None):
    """``prepare`` for a student module: delete every graded part, then put ``cand`` in
    ``part``'s place (a class candidate of ``C.__init__`` replaces the class ``C``)."""

    def prepare(module) -> None:
        for name in parts:
            owner, attr, _ = _resolve(module, name)
            if isinstance(owner, type):
                if attr in owner.__dict__:
                    delattr(owner, attr)
            elif hasattr(owner, attr):
                delattr(owner, attr)
        if cand is None:
            return
        owner, attr, _ = _resolve(module, part)
        if cand.is_class and part.endswith(".__init__"):
            setattr(module, part.split(".")[0], cand.obj)
        else:
            setattr(owner, attr, cand.bound_in(module))

    return prepare


def find_fill_ins(
    module_name: str,
    parts: list[str],
    pool: list[Candidate],
    banned: dict,
    student_path: Path,
    log=print,
) -> dict:
    """Screen every candidate on the reference's calls, then grade the survivors for real."""
    from instructor import grader_harness
    from replearn.contract import assignments

    tests = _tests_of(module_name)
    reference_path = assignments.solutions_root() / f"{module_name}.py"
    sample = grader_harness.module_copies(reference_path, module_name)()
    screens = {}
    for part in parts:
        _, _, obj = _resolve(sample, part)
        screens[part] = Screen(pool_for(part, obj, pool, banned.get(part, [])))

    def tapped_reference(module) -> None:
        for part, screen in screens.items():
            owner, attr, obj = _resolve(module, part)
            setattr(
                owner,
                attr,
                _tap(part, obj, screen, module, owner if isinstance(owner, type) else None),
            )

    start = time.monotonic()
    # once untapped: the reference passes every test, and every lazy import is done before a
    # candidate's time limit could fall in the middle of one
    plain = grader_harness.module_copies(reference_path, module_name)
    reference_failures = []
    for name, fn, hidden, _declared in tests:
        run = grader_harness.run_test(fn, module_name, plain, hidden=hidden)
        if not run.passed:
            reference_failures.append(f"{name}: {run.message[:200]}")
    factory = grader_harness.module_copies(reference_path, module_name, tapped_reference)
    for name, fn, hidden, _declared in tests:
        run = grader_harness.run_test(fn, module_name, factory, hidden=hidden)
        if not run.passed:
            reference_failures.append(
                f"{name} (while its calls were replayed): {run.message[:200]}"
            )
    screened = sum(len(s.pool) for s in screens.values())
    log(
        f"{module_name}: {len(tests)} tests, {len(parts)} graded parts, {screened} candidate "
        f"pairs screened in {time.monotonic() - start:.0f} s"
    )

    findings: list[Finding] = []
    unexercised = [p for p, s in screens.items() if s.calls == 0]
    baseline = grader_harness.module_copies(student_path, module_name, _stripped(parts))
    for name, fn, hidden, _declared in tests:
        run = grader_harness.run_test(
            fn, module_name, baseline, hidden=hidden, call_limit_s=TEST_LIMIT_S
        )
        if run.passed:
            findings.append(Finding(f"{module_name}:-", "", name))
    suspects, excused = [], []
    for part, screen in screens.items():
        for cand in screen.survivors():
            uses = banned_in(cand, banned.get(part, []))
            if uses:  # the grader's banned-API check zeroes it
                excused.append(f"{part} <- {cand.name} (calls {', '.join(uses)})")
                continue
            if cand.banned:  # a library function the assignment bans in this part, by name
                excused.append(f"{part} <- {cand.name} (banned in {part} by BANNED_APIS)")
                continue
            suspects.append(f"{part} <- {cand.name}")
            factory = grader_harness.module_copies(
                student_path, module_name, _stripped(parts, part, cand)
            )
            passed = []
            for name, fn, hidden, declared in tests:
                if part not in declared:
                    continue
                run = grader_harness.run_test(
                    fn, module_name, factory, hidden=hidden, call_limit_s=TEST_LIMIT_S
                )
                if run.passed:
                    passed.append(name)
                    findings.append(Finding(f"{module_name}:{part}", cand.name, name))
            if not passed:  # it agrees with the reference wherever the tests call the part
                findings.append(
                    Finding(f"{module_name}:{part}", cand.name, "", screen.agreed[cand.name])
                )
    log(
        f"{module_name}: {len(suspects)} suspect(s) graded, {len(findings)} fill-in(s); "
        f"{time.monotonic() - start:.0f} s"
    )
    return {
        "assignment": module_name,
        "parts": len(parts),
        "pairs_screened": screened,
        "parts_not_called_by_any_test": unexercised,
        "reference_failures": reference_failures,
        "suspects": suspects,
        "excused_by_bans": excused,
        "findings": [str(f) for f in findings],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="what ships, unpacked (hand-out or wheel)")
    parser.add_argument(
        "--student-dir",
        type=Path,
        default=None,
        help="the folder of the student modules (default ROOT/starter_code)",
    )
    parser.add_argument("--assignment", default="all")
    parser.add_argument("--names-only", action="store_true", help="only the names scan")
    parser.add_argument("--out", type=Path, help="write the report here (JSON)")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    if root.is_file() and zipfile.is_zipfile(root):  # a hand-out zip or a wheel: unpack it
        unpacked = Path(tempfile.mkdtemp(prefix="handout-leaks-"))
        atexit.register(shutil.rmtree, unpacked, ignore_errors=True)  # imported from until exit
        with zipfile.ZipFile(root) as zf:
            zf.extractall(unpacked)
        tops = [p for p in unpacked.iterdir()]
        root = tops[0] if len(tops) == 1 and tops[0].is_dir() else unpacked
    student_dir = (args.student_dir or root / "starter_code").resolve()
    os.environ.setdefault("AUTOGRADER_TESTS_ROOT", str(REPO / "autograder" / "tests"))
    os.environ.setdefault("AUTOGRADER_SOLUTIONS_ROOT", str(REPO / "solutions"))
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if any(name.split(".")[0] in PACKAGES for name in sys.modules):
        parser.error("replearn or autograder is already imported: run this as its own process")
    roots = [root]  # where the shipped code is: the hand-out, and the wheel it carries
    if not (root / "replearn").is_dir():
        wheels = sorted(root.rglob("*.whl"))
        if not wheels:
            parser.error(f"{root} holds neither the course package nor a wheel of it")
        unpacked = Path(tempfile.mkdtemp(prefix="handout-wheel-"))
        atexit.register(shutil.rmtree, unpacked, ignore_errors=True)
        for wheel in wheels:
            with zipfile.ZipFile(wheel) as zf:
                zf.extractall(unpacked)
        roots = [unpacked, root]
    sys.path.insert(0, str(roots[0]))
    import autograder
    import replearn

    for package in (replearn, autograder):
        if roots[0] not in Path(package.__file__).resolve().parents:
            parser.error(
                f"{package.__name__} was imported from {package.__file__}, not from {roots[0]}"
            )

    solutions = Path(os.environ["AUTOGRADER_SOLUTIONS_ROOT"])
    parts = graded_parts(solutions)
    from replearn.contract import assignments

    chosen = [a.module for a in assignments.resolve(args.assignment) if a.module in parts]
    banned = {m: banned_apis(solutions, m) for m in parts}
    student_rel = (
        os.path.relpath(student_dir, root) if root in student_dir.parents else "starter_code"
    )
    hits = [h for r in roots for h in scan_names(r, parts, banned, student_rel)]
    report: dict[str, Any] = {"root": str(root), "names": [str(h) for h in hits]}
    status = 1 if report["names"] else 0
    for hit in report["names"]:
        print("name:", hit)
    if not args.names_only:
        modules, errors = [], []
        for r in roots:
            found, failed = shipped_modules(r, student_rel)
            modules += found
            errors += failed
        pool = candidates(modules)
        report.update(
            modules=len(modules), candidates=len(pool), import_errors=errors, assignments=[]
        )
        print(
            f"{len(modules)} shipped modules, {len(pool)} candidates; {len(errors)} not importable"
        )
        for module_name in chosen:
            result = find_fill_ins(
                module_name,
                parts[module_name],
                pool,
                banned[module_name],
                student_dir / f"{module_name}.py",
            )
            report["assignments"].append(result)
            for finding in result["findings"]:
                print("fill-in:", finding)
            status |= bool(
                result["findings"]
                or result["reference_failures"]
                or result["parts_not_called_by_any_test"]
            )
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
    return status


if __name__ == "__main__":
    sys.exit(main())
