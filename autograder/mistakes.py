"""Known mistakes: a public check that fails says which catalogued mistake the output matches.

Each assignment keeps, with its hidden tests, a catalogue of the mistakes students make
(``autograder/tests/<module>/hidden/mistakes.py``: a list ``MISTAKES`` of :class:`Mistake`).
An entry names a graded function, a short id, one sentence that names the mistake, the fix and
where the lecture or the paper says the right thing, and the wrong version itself as a patch of
the reference (text replacements inside that function). The catalogue never ships: its
variants are near-solutions.

``python -m autograder record NAME`` grades every variant on the public tests in the same
grader session as the reference (each variant in its own workers, as a student's module would
run) and keeps, for every public test a variant fails, the check it fails first and the value
it gave there (:data:`RECORD_FILE`, beside ``expected_public.agv``). What ships is that
recording: words and wrong outputs, no code.

When a student's public check fails, ``autograder.api`` asks :func:`explain` whether a
catalogued variant failed the same check of the same test with the same output (within the
check's own tolerance); if so, the message says so in words. Hidden tests never explain.
"""

from __future__ import annotations

import ast
import importlib.util
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

RECORD_FILE = "mistakes_public.agv"  # one codec frame beside expected_public.agv
CATALOGUE = "hidden/mistakes.py"  # relative to autograder/tests/<module>/ (never ships)
_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,60}$")
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"  # the markers of replearn.release


class CatalogueError(ValueError):
    """A catalogue entry is malformed or no longer applies to the reference."""


@dataclass(frozen=True)
class Mistake:
    """One known mistake in one graded function.

    Args:
        function: the graded function (``nt_xent_loss``, ``KeyQueue.enqueue``).
        id: a short id, unique in the assignment (``diagonal-kept``).
        message: one sentence a student can act on: the mistake, the fix, and where the lecture
            or the paper says the right thing. It never quotes the reference's code.
        patch: ``(old, new)`` text replacements applied, in order, inside the solution
            region(s) of ``function`` in the reference; each ``old`` occurs there exactly once.
    """

    function: str
    id: str
    message: str
    patch: tuple[tuple[str, str], ...] = field(default=())

    def __post_init__(self):
        if not _ID.match(self.id):
            raise CatalogueError(f"mistake id {self.id!r}: lower-case words joined by '-'")
        if not self.patch:
            raise CatalogueError(f"{self.function}/{self.id}: no patch")
        if not self.message.strip() or "\n" in self.message.strip():
            raise CatalogueError(f"{self.function}/{self.id}: the message is one sentence")

    @property
    def key(self) -> str:
        return f"{self.function}/{self.id}"

    def apply(self, source: str) -> str:
        """The reference ``source`` with this mistake made in :attr:`function`'s solution
        region(s): the student's part, never the code around it."""
        start, end = function_span(source, self.function)
        pieces = re.split(f"({re.escape(BEGIN)}.*?{re.escape(END)})", source[start:end], flags=re.S)
        regions = list(range(1, len(pieces), 2))  # odd pieces are solution regions
        if not regions:
            raise CatalogueError(f"{self.key}: {self.function} has no solution region")
        for old, new in self.patch:
            count = sum(pieces[i].count(old) for i in regions)
            if count != 1:
                raise CatalogueError(
                    f"{self.key}: {old!r} occurs {count} times in the solution region of "
                    f"{self.function} in the reference (expected once): update the entry"
                )
            i = next(i for i in regions if old in pieces[i])
            pieces[i] = pieces[i].replace(old, new)
        variant = source[:start] + "".join(pieces) + source[end:]
        try:
            compile(variant, f"<{self.key}>", "exec")
        except SyntaxError as error:
            raise CatalogueError(
                f"{self.key}: the patched module does not compile: {error}"
            ) from None
        return variant


def function_span(source: str, qualname: str) -> tuple[int, int]:
    """Character offsets of the definition of ``qualname`` (``f`` or ``Class.method``)."""
    tree = ast.parse(source)
    scope: list[ast.stmt] = tree.body
    node = None
    for part in qualname.split("."):
        node = next(
            (
                n
                for n in scope
                if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
                and n.name == part
            ),
            None,
        )
        if node is None:
            raise CatalogueError(f"the reference defines no {qualname}")
        scope = node.body
    lines = source.splitlines(keepends=True)
    first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    last = node.end_lineno  # the last statement; comments after it (the END marker) belong too
    for number in range(node.end_lineno, len(lines)):
        text = lines[number]
        indent = len(text) - len(text.lstrip())
        if text.strip() and not (text.lstrip().startswith("#") and indent > node.col_offset):
            break
        if text.strip():
            last = number + 1
    start = sum(len(line) for line in lines[: first - 1])
    end = sum(len(line) for line in lines[:last])
    return start, end


def catalogue_path(tests_dir: Path) -> Path:
    return Path(tests_dir) / CATALOGUE


def load_catalogue(tests_dir: Path, kind: str = "MISTAKES") -> list[Mistake]:
    """``MISTAKES`` of an assignment's catalogue (trusted grader material; [] when none).

    ``kind="ALLOWED"`` gives the catalogue's other list: correct alternatives that the lecture,
    the paper or the docstring allows but the reference does not take (a max-shift, the other
    order of two halves, a library call with the right reduction), in the same form, the
    message saying why each is right. Every one must pass every public and hidden test of its
    function (``tests/test_mistakes.py``).
    """
    path = catalogue_path(tests_dir)
    if not path.is_file():
        return []
    name = f"_autograder_mistakes_{Path(tests_dir).name}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    entries = list(getattr(module, kind, []))
    seen: set[str] = set()
    for entry in entries:
        if not isinstance(entry, Mistake):
            raise CatalogueError(f"{path}: {kind} holds {type(entry).__name__}, not Mistake")
        if entry.key in seen:
            raise CatalogueError(f"{path}: {entry.key} is listed twice")
        seen.add(entry.key)
    return entries


# --------------------------------------------------------------------------------------------
# The recording and the explanation
# --------------------------------------------------------------------------------------------
_tables: dict[Path, dict] = {}


def point(index: int, kind: str, name: str, got: Any, rtol: float, atol: float) -> dict:
    """Where a check failed and what it was given: the unit of the recording."""
    return {
        "index": int(index),
        "kind": kind,
        "name": name,
        "got": _plain(got),
        "rtol": float(rtol),
        "atol": float(atol),
    }


def _plain(value: Any) -> Any:
    """A value the codec can store (tensors detached; anything else it cannot hold: None)."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if value is None or type(value) in (bool, int, str):
        return value
    if type(value) is float:
        return value
    if type(value) in (list, tuple):
        return [_plain(v) for v in value]
    if type(value) is dict and all(type(k) is str for k in value):
        return {k: _plain(v) for k, v in value.items()}
    return None


def table(tests_dir: Path) -> dict:
    """The recording of an assignment: ``{"mistakes": {id: {function, message}}, "failures":
    {test: [{id, point}]}}`` (empty when there is none)."""
    path = Path(tests_dir) / RECORD_FILE
    if path not in _tables:
        data: dict = {"mistakes": {}, "failures": {}}
        if path.is_file():
            from autograder import codec

            try:
                _header, loaded = codec.decode(path.read_bytes())
            except codec.CodecError:
                loaded = None
            if type(loaded) is dict and {"mistakes", "failures"} <= set(loaded):
                data = loaded
        _tables[path] = data
    return _tables[path]


def listing(tests_dir: Path) -> list[dict]:
    """The recorded catalogue in words: ``[{function, id, message, tests}]`` in catalogue order,
    ``tests`` being the public tests that name the entry. Read from :data:`RECORD_FILE` (what
    ships), so it shows no code and works on a student's hand-out as on the instructor's side."""
    data = table(tests_dir)
    named: dict[str, list[str]] = {}
    for test, entries in data["failures"].items():
        for entry in entries:
            named.setdefault(entry["id"], []).append(test)
    return [
        {
            "function": about["function"],
            "id": key.split("/", 1)[-1],
            "message": about["message"],
            "tests": sorted(named.get(key, [])),
        }
        for key, about in data["mistakes"].items()
    ]


def forget_tables() -> None:
    _tables.clear()


def explain(tests_dir: Path, test: str, failed: dict) -> list[dict]:
    """The catalogued mistakes whose variant failed check ``failed`` of ``test`` as the
    student's code did: ``[{id (function/id), function, message}]`` (empty when none)."""
    data = table(tests_dir)
    found = []
    for entry in data["failures"].get(test, []):
        recorded = entry["point"]
        if (recorded["index"], recorded["kind"], recorded["name"]) != (
            failed["index"],
            failed["kind"],
            failed["name"],
        ):
            continue
        if not same_output(failed["got"], recorded["got"], failed["rtol"], failed["atol"]):
            continue
        about = data["mistakes"].get(entry["id"])
        if about is not None:
            found.append({"id": entry["id"], **about})
    return found


def same_output(got: Any, recorded: Any, rtol: float, atol: float) -> bool:
    """Is ``got`` what the variant gave, within the check's tolerance (NaN matching NaN)?"""
    if isinstance(recorded, torch.Tensor):
        if not isinstance(got, torch.Tensor):
            return False
        if tuple(got.shape) != tuple(recorded.shape) or got.dtype != recorded.dtype:
            return False
        if not (got.is_floating_point() or got.is_complex()):
            return bool(torch.equal(got.detach(), recorded))
        return bool(
            torch.allclose(
                got.detach().double(), recorded.double(), rtol=rtol, atol=atol, equal_nan=True
            )
        )
    if isinstance(got, torch.Tensor) and got.numel() == 1 and got.dim() == 0:
        got = got.item()
    if type(recorded) is float or type(got) is float:
        if type(got) not in (int, float) or type(recorded) not in (int, float):
            return False
        if math.isnan(got) or math.isnan(recorded):
            return math.isnan(got) and math.isnan(recorded)
        if math.isinf(got) or math.isinf(recorded):
            return got == recorded
        return math.isclose(got, recorded, rel_tol=rtol, abs_tol=atol)
    if type(recorded) in (list, tuple):
        return (
            type(got) in (list, tuple)
            and len(got) == len(recorded)
            and all(same_output(a, b, rtol, atol) for a, b in zip(got, recorded))
        )
    if type(recorded) is dict:
        return (
            type(got) is dict
            and sorted(got) == sorted(recorded)
            and all(same_output(got[k], recorded[k], rtol, atol) for k in recorded)
        )
    return got == recorded


def wording(found: list[dict]) -> str:
    """The line a failed check gets when its output matches known mistakes."""
    if not found:
        return ""
    if len(found) == 1:
        m = found[0]
        return f"This is what a known mistake in {m['function']} gives: {m['message']}"
    items = "; ".join(f"({i}) in {m['function']}: {m['message']}" for i, m in enumerate(found, 1))
    return f"This is what one of these known mistakes gives: {items}"


def build_table(catalogue: list[Mistake], failures: dict[str, dict[str, dict]]) -> dict:
    """The recording: the catalogue's words and, per public test, each variant's failure.

    ``failures`` is ``{mistake key: {test: point}}`` from the grader's variant runs.
    """
    return {
        "mistakes": {m.key: {"function": m.function, "message": m.message} for m in catalogue},
        "failures": {
            test: [
                {"id": m.key, "point": failures[m.key][test]}
                for m in catalogue
                if test in failures.get(m.key, {})
            ]
            for test in sorted({t for per in failures.values() for t in per})
        },
    }


def variant_problems(
    catalogue: list[Mistake], results: dict[str, dict[str, dict]], module: str, *, hidden: bool
) -> dict[str, list[str]]:
    """What is wrong with each entry's verdicts (``{key: [problems]}``, every entry present).

    ``results`` is what the grader's variant runs gave (``{module:key: {test: outcome}}``). An
    entry is right when a public test fails on it and names exactly this entry, no public test
    names other mistakes without it, and (``hidden``) a hidden test fails on it too. A test
    that fails without naming anything (a crash further down, a smoke test) is fine.
    """
    problems: dict[str, list[str]] = {}
    for mistake in catalogue:
        outcomes = results.get(f"{module}:{mistake.key}", {})
        found: list[str] = []
        public = {t: o for t, o in outcomes.items() if not o.get("hidden")}
        failed = {t: o for t, o in public.items() if not o.get("passed")}
        named = {t: list(o.get("known_mistakes") or []) for t, o in failed.items()}
        if not failed:
            found.append(f"passes every public test of {mistake.function} ({sorted(public)})")
        elif not any(n == [mistake.key] for n in named.values()):
            for test in sorted(failed):
                what = f"names {named[test]}" if named[test] else "names no known mistake"
                found.append(f"{test} {what}: {failed[test].get('message', '')[:300]!r}")
        for test, names in sorted(named.items()):
            if names and mistake.key not in names:
                found.append(f"{test} names {names} instead")
        if hidden and not any(not o.get("passed") for o in outcomes.values() if o.get("hidden")):
            found.append("no hidden test catches it")
        problems[mistake.key] = found
    return problems


def name_from_table(table: dict, results: dict[str, dict[str, dict]], module: str) -> None:
    """Fill in, for every public test a variant failed at a recorded check, the known mistakes
    that :func:`explain` would name there: the hand-out's verdicts, computed from the recording
    alone (the variant's own output at that check is the recorded one)."""
    for key, outcomes in results.items():
        if not key.startswith(f"{module}:"):
            continue
        mine = key.split(":", 1)[1]
        for test, outcome in outcomes.items():
            if outcome.get("hidden") or outcome.get("passed"):
                continue
            point = next(
                (e["point"] for e in table["failures"].get(test, []) if e["id"] == mine), None
            )
            if point is None:
                outcome["known_mistakes"] = []
                continue
            named = []
            for entry in table["failures"][test]:
                other = entry["point"]
                same_place = (other["index"], other["kind"], other["name"]) == (
                    point["index"],
                    point["kind"],
                    point["name"],
                )
                if same_place and same_output(
                    point["got"], other["got"], point["rtol"], point["atol"]
                ):
                    named.append(entry["id"])
            outcome["known_mistakes"] = named
