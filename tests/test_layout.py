"""The layout's import rules (docs/internals.md, "The layout"), read from the sources with ``ast``.

Dependencies point one way, instructor tooling -> grader -> course library: ``replearn`` imports
no other part of the project, ``autograder`` imports ``replearn`` only, ``instructor`` both, and
no two top-level parts import each other. Every ``import`` and ``from ... import`` counts, at
module level or inside a function, and so does ``importlib.import_module("...")`` with a literal
name; nothing is imported to find them.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Which top-level parts each part may import (besides itself, the standard library and
# third-party packages). Notebooks are the ``assignments`` part.
ALLOWED: dict[str, set[str]] = {
    "replearn": set(),
    "autograder": {"replearn"},
    "instructor": {"autograder", "replearn"},
    "solutions": {"replearn"},
    "starter_code": {"replearn"},
    "assignments": {"replearn"},
    "handout": set(),  # install.py runs before the course package is installed
    "data": {"replearn"},
    "benchmarks": {"replearn", "autograder", "instructor", "solutions", "starter_code"},
    "tests": {"replearn", "autograder", "instructor", "solutions", "starter_code", "benchmarks"},
}
WHY = {
    "replearn": "the course library never imports the grader or the instructor tooling; put what "
    "both sides need in replearn/contract/",
    "autograder": "the grader never imports the instructor tooling",
    "handout": "the installer runs with the standard library only",
}
# Deliberately broken student code that the grader's attack tests submit.
UNPARSABLE_ON_PURPOSE = REPO / "tests" / "attacks"


def _python_files(part: str) -> Iterator[Path]:
    for path in sorted((REPO / part).rglob("*.py")):
        if not any(p.startswith(".") or p == "__pycache__" for p in path.relative_to(REPO).parts):
            yield path


def _notebook_sources() -> Iterator[tuple[Path, str]]:
    """Each code cell of each notebook, IPython's magics and shell escapes made ``pass``."""
    for path in sorted((REPO / "assignments").glob("*.ipynb")):
        for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
            if cell["cell_type"] != "code":
                continue
            source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            lines = [
                line[: len(line) - len(line.lstrip())] + "pass"
                if line.lstrip().startswith(("%", "!"))
                else line
                for line in source.splitlines()
            ]
            yield path, "\n".join(lines)


def imported_names(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """``(line, dotted name)`` of every absolute import in ``tree``, at any depth."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
            for alias in node.names:  # `from autograder import manifest` names a submodule
                yield node.lineno, f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            args = node.args
            if name in ("import_module", "__import__") and args:
                if isinstance(args[0], ast.Constant) and isinstance(args[0].value, str):
                    yield node.lineno, args[0].value


def sources() -> Iterator[tuple[str, Path, str]]:
    """``(part, path, source)`` of every module and notebook the rules cover."""
    for part in ALLOWED:
        if part == "assignments":
            for path, source in _notebook_sources():
                yield part, path, source
            continue
        for path in _python_files(part):
            yield part, path, path.read_text(encoding="utf-8")


def edges() -> list[tuple[str, str, str]]:
    """``(importing part, imported part, "file:line imports name")`` across parts."""
    found = []
    for part, path, source in sources():
        try:
            tree = ast.parse(source, filename=str(path))
        except SyntaxError:
            if UNPARSABLE_ON_PURPOSE in path.parents:
                continue
            raise
        by_line: dict[tuple[int, str], list[str]] = {}
        for line, name in imported_names(tree):
            target = name.split(".")[0]
            if target in ALLOWED and target != part:
                by_line.setdefault((line, target), []).append(name)
        for (line, target), names in by_line.items():
            where = f"{path.relative_to(REPO)}:{line} imports {max(names, key=len)}"
            found.append((part, target, where))
    return found


@pytest.fixture(scope="module")
def graph() -> list[tuple[str, str, str]]:
    return edges()


def test_every_top_level_part_with_python_code_has_a_rule():
    parts = {
        p.name
        for p in REPO.iterdir()
        if p.is_dir()
        and not p.name.startswith(".")
        and p.name not in ("build", "docs")
        and (any(p.rglob("*.py")) or any(p.glob("*.ipynb")))
    }
    assert parts <= set(ALLOWED), f"no import rule for {sorted(parts - set(ALLOWED))}"


def test_dependencies_point_one_way(graph):
    wrong = [
        f"{where}: {part} may import only {sorted(ALLOWED[part]) or 'nothing of the project'}"
        + (f" ({WHY[part]})" if part in WHY else "")
        for part, target, where in graph
        if target not in ALLOWED[part]
    ]
    assert not wrong, "\n".join(wrong)


def test_no_cycle_between_top_level_parts(graph):
    arrows: dict[str, set[str]] = {}
    for part, target, _ in graph:
        arrows.setdefault(part, set()).add(target)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in arrows.get(start, ()):
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    cycles = sorted(part for part in arrows if reaches(part, part, {part}))
    assert not cycles, f"import cycles through {cycles}: " + "; ".join(
        where for part, target, where in graph if part in cycles and target in cycles
    )


def test_nothing_outside_the_grader_imports_a_hidden_test(graph):
    hidden = []
    for part, path, source in sources():
        if part in ("autograder", "tests") or UNPARSABLE_ON_PURPOSE in path.parents:
            continue
        for line, name in imported_names(ast.parse(source)):
            if name.startswith("autograder.tests.") and ".test_hidden_" in f".{name}":
                hidden.append(f"{path.relative_to(REPO)}:{line} imports {name}")
    assert not hidden, "\n".join(hidden)


def test_the_walk_sees_function_level_imports_and_import_module():
    tree = ast.parse(
        "import os\n"
        "def f():\n"
        "    from autograder import manifest\n"
        "    importlib.import_module('instructor.release')\n"
    )
    names = {name for _, name in imported_names(tree)}
    assert {"os", "autograder", "autograder.manifest", "instructor.release"} <= names
