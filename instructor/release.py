"""Release tooling: the student stubs and the student hand-out, generated from one source.

``solutions/<module>.py`` is the one source of each assignment module. Every part a student
writes sits between a BEGIN SOLUTION and an END SOLUTION marker line (three hashes, as in
nbgrader), indented like the code around it. Three commands turn the repository into what
students get:

* ``python -m instructor.release starter [--check]`` writes ``starter_code/<module>.py``: each
  solution region becomes ``raise NotImplementedError("<message>")`` at the marker's indentation,
  everything outside the markers is kept byte for byte, and hidden-test regions are dropped.
  ``--check`` writes nothing, prints a unified diff and exits 1 when ``starter_code/`` drifted.
* ``python -m instructor.release notebooks [--out DIR]`` writes the student version of each
  ``assignments/*.ipynb``, made by nbgrader's own ``generate_assignment`` with the course
  configuration in ``instructor/nbgrader/`` (the same markers, so one syntax everywhere).
* ``python -m instructor.release zip [--out FILE|DIR]`` writes the student hand-out
  ``build/release/<course>-student-<version>-<date>.zip`` (deterministic content, with a
  ``MANIFEST.txt`` of sha256 sums): the student README and installer of ``handout/``, the course
  package as a wheel, starter code, released notebooks stamped with the course's identity
  (``[tool.replearn]`` of pyproject.toml), public tests inside the wheel. It refuses to write it
  if any file, or any file inside the wheel, would leak a solution, a hidden test or instructor
  tooling.

Run it from the repository's root folder: like all of ``instructor/``, it is not installed and
never ships (the hand-out's wheel holds ``replearn`` and the grader only).

The stub message is "Implement <function>: see its docstring", or carries a hint written on the
BEGIN line after the marker: a region opened by the marker followed by
``(hint: use torch.logsumexp)`` becomes
``raise NotImplementedError("Implement info_nce_loss (hint: use torch.logsumexp)")``.
"""

from __future__ import annotations

import argparse
import ast
import datetime
import difflib
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from replearn.contract.files import write_deterministic_zip
from replearn.contract.markers import HIDDEN_BEGIN, HIDDEN_END, SOLUTION_BEGIN, SOLUTION_END

__all__ = [
    "HELPER_MODULES",
    "ReleaseError",
    "Region",
    "scan_markers",
    "find_regions",
    "make_starter",
    "generate_starters",
    "write_starters",
    "starter_diff",
    "release_notebooks",
    "student_files",
    "leaks",
    "build_zip",
    "project_version",
    "main",
]

REPO_ROOT = Path(__file__).resolve().parent.parent

# Any spelling of a marker (one to many hashes, any spacing): used to reject near-misses such
# as a two-hash marker, which would otherwise pass through and leak the solution.
_LOOSE_MARKER = re.compile(r"#+\s*(BEGIN|END)\s+(SOLUTION|HIDDEN\s+TESTS)\b")

# Modules of solutions/ copied unchanged because they hold nothing to implement. DESIGN.md puts
# helpers in replearn/, so only a package marker belongs here.
HELPER_MODULES: frozenset[str] = frozenset({"__init__"})

HEADER = (
    "# Generated from solutions/{module}.py by `python -m instructor.release starter`.\n"
    "# Course authors: edit solutions/{module}.py, never this file. Students: keep the names\n"
    "# and signatures as they are, and replace each `raise NotImplementedError(...)` with your code.\n"
)

RUFF_LINE_LENGTH = 100  # pyproject.toml [tool.ruff]; longer stubs are wrapped as ruff would

# What the hand-out holds besides the generated parts (paths relative to the repository). The
# course package (replearn/ and the grader's public part) goes in as a wheel, and the hand-out's
# own README and installer come from handout/ (see handout_files).
REQUIRED_FILES = (
    "LICENSE",
    "constraints.txt",
    "data/README.md",
)
SHIPPED_TREES: tuple[str, ...] = ()
_SKIPPED_PARTS = {"__pycache__", ".ipynb_checkpoints", ".pytest_cache", ".ruff_cache"}
_SKIPPED_SUFFIXES = {".pyc", ".pyo", ".zip", ".db"}
INSTRUCTOR_TREE = "instructor"  # this package: never in a hand-out or a wheel


class ReleaseError(ValueError):
    """The sources cannot be released as they are (the message names the file and line)."""


# --------------------------------------------------------------------------------------------
# Regions
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Region:
    """One marked region of a solution module (line numbers are 1-based, markers included)."""

    kind: str  # "solution" or "hidden"
    begin: int  # line of the BEGIN marker
    end: int  # line of the END marker
    indent: str  # the BEGIN marker's indentation, which the stub takes
    hint: str  # text written after the BEGIN marker ("" when none)
    function: str | None  # qualified name of the enclosing function, e.g. "MoCo.update_queue"


def _marker(line: str, where: str) -> tuple[str, str, str] | None:
    """``(kind, "begin"|"end", hint)`` when ``line`` is a marker line, else None.

    A marker stands alone on its line (after indentation). Marker text anywhere else, or a
    near-miss spelling, is an error rather than silently kept.
    """
    stripped = line.strip()
    for kind, begin, end in (
        ("solution", SOLUTION_BEGIN, SOLUTION_END),
        ("hidden", HIDDEN_BEGIN, HIDDEN_END),
    ):
        if stripped.startswith(begin):
            return kind, "begin", stripped[len(begin) :].strip()
        if stripped.startswith(end):
            if stripped != end:
                raise ReleaseError(f"{where}: text after the END marker; put it on its own line")
            return kind, "end", ""
    loose = _LOOSE_MARKER.search(line)
    if loose:
        exact = f"### {loose.group(1)} {' '.join(loose.group(2).split())}"
        raise ReleaseError(
            f"{where}: {loose.group(0)!r} is not a marker line; write {exact!r} alone on its own "
            "line (indented like the code it encloses)"
        )
    return None


def _enclosing_functions(tree: ast.Module) -> list[tuple[int, int, str]]:
    """``(first line, last line, qualified name)`` of every function, outermost first."""
    spans: list[tuple[int, int, str]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = prefix + child.name
                spans.append((child.lineno, child.end_lineno or child.lineno, name))
                visit(child, name + ".")
            elif isinstance(child, ast.ClassDef):
                visit(child, prefix + child.name + ".")
            else:
                visit(child, prefix)

    visit(tree, "")
    return spans


def scan_markers(text: str, where: str = "<source>") -> list[tuple[str, int, int, str, str]]:
    """``(kind, begin line, end line, indent, hint)`` of each marked region of ``text``.

    Checks marker lines only (no Python parsing), so it serves notebook cells too.

    Raises:
        ReleaseError: a BEGIN without END, an END without BEGIN, nested regions, or a marker
            that is not alone on its line.
    """
    spans: list[tuple[str, int, int, str, str]] = []
    open_kind: str | None = None
    open_line, open_indent, open_hint = 0, "", ""
    for number, line in enumerate(text.splitlines(), start=1):
        found = _marker(line, f"{where}:{number}")
        if found is None:
            continue
        kind, edge, hint = found
        if edge == "begin":
            if open_kind is not None:
                raise ReleaseError(
                    f"{where}:{number}: BEGIN {kind} marker inside the region opened at line "
                    f"{open_line}; regions cannot nest: close the first one with its END marker"
                )
            open_kind, open_line, open_hint = kind, number, hint
            open_indent = line[: len(line) - len(line.lstrip())]
            continue
        if open_kind != kind:
            opened = f" (line {open_line} opened a {open_kind} region)" if open_kind else ""
            raise ReleaseError(
                f"{where}:{number}: END {kind} marker without a matching BEGIN{opened}"
            )
        spans.append((kind, open_line, number, open_indent, open_hint))
        open_kind = None
    if open_kind is not None:
        raise ReleaseError(f"{where}:{open_line}: BEGIN {open_kind} marker without an END")
    return spans


def find_regions(source: str, filename: str = "<source>") -> list[Region]:
    """All solution and hidden-test regions of ``source``, checked for balance and nesting.

    Raises:
        ReleaseError: see :func:`scan_markers`; also a solution region outside any function
            (its stub would raise at import time), or a file that is not valid Python.
    """
    try:
        tree = ast.parse(source, filename=filename)
    except SyntaxError as error:
        raise ReleaseError(f"{filename}:{error.lineno}: not valid Python: {error.msg}") from error
    functions = _enclosing_functions(tree)
    regions: list[Region] = []
    for kind, begin, end, indent, hint in scan_markers(source, filename):
        inside = [name for first, last, name in functions if first < begin <= last]
        function = inside[-1] if inside else None  # the innermost enclosing function
        if kind == "solution" and function is None:
            raise ReleaseError(
                f"{filename}:{begin}: solution region outside a function: its stub would "
                "raise when the module is imported; move the code into a function"
            )
        regions.append(Region(kind, begin, end, indent, hint, function))
    return regions


def stub_message(region: Region) -> str:
    """The text of a region's NotImplementedError: what to implement, and the hint if given."""
    if not region.hint:
        return f"Implement {region.function}: see its docstring"
    if region.hint.startswith("(") and region.hint.endswith(")"):
        return f"Implement {region.function} {region.hint}"
    return f"Implement {region.function}: {region.hint}"


def _string_literal(text: str) -> str:
    """A Python string literal for ``text`` in the quotes ruff's formatter would choose."""
    text = text.replace("\\", "\\\\")
    if '"' in text and "'" not in text:
        return f"'{text}'"
    return '"' + text.replace('"', '\\"') + '"'


def _stub_lines(indent: str, message: str) -> list[str]:
    """``raise NotImplementedError(...)`` at ``indent``, wrapped as ruff format wraps it."""
    literal = _string_literal(message)
    one_line = f"{indent}raise NotImplementedError({literal})"
    if len(one_line) <= RUFF_LINE_LENGTH:
        return [one_line]
    return [f"{indent}raise NotImplementedError(", f"{indent}    {literal}", f"{indent})"]


def make_starter(source: str, module: str, filename: str | None = None) -> str:
    """The starter version of one solution module's source.

    Args:
        source: the text of ``solutions/<module>.py``.
        module: the module name, used in the header comment.
        filename: shown in error messages (default ``solutions/<module>.py``).

    Raises:
        ReleaseError: see :func:`find_regions`; also when the module has no solution region
            (the student would have nothing to do) or the stubbed file is not valid Python.
    """
    filename = filename or f"solutions/{module}.py"
    regions = find_regions(source, filename)
    if not any(region.kind == "solution" for region in regions):
        raise ReleaseError(
            f"{filename}: no solution region, so the starter would give the student nothing to "
            "do; mark the parts to write, or list the module in instructor.release.HELPER_MODULES"
        )
    lines = source.splitlines(keepends=True)
    newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
    out: list[str] = []
    cursor = 0  # index of the next source line to copy
    for region in regions:
        out.extend(lines[cursor : region.begin - 1])
        if region.kind == "solution":
            out.extend(line + newline for line in _stub_lines(region.indent, stub_message(region)))
        cursor = region.end  # skip the markers and everything between them
    out.extend(lines[cursor:])

    shebang = 1 if out and out[0].startswith("#!") else 0
    header = HEADER.format(module=module).replace("\n", newline)
    starter = "".join(out[:shebang]) + header + "".join(out[shebang:])
    try:
        ast.parse(starter, filename=f"starter_code/{module}.py")
    except SyntaxError as error:
        raise ReleaseError(
            f"{filename}: the generated starter is not valid Python (line {error.lineno} of the "
            f"starter: {error.msg}); a hidden-test region may have emptied a block"
        ) from error
    return starter


# --------------------------------------------------------------------------------------------
# starter_code/
# --------------------------------------------------------------------------------------------


def generate_starters(
    repo: Path = REPO_ROOT, helpers: Iterable[str] = HELPER_MODULES
) -> dict[str, str]:
    """``{"starter_code/<module>.py": text}`` for every module of ``repo/solutions/``."""
    solutions = Path(repo) / "solutions"
    helpers = set(helpers)
    starters: dict[str, str] = {}
    for path in sorted(solutions.glob("*.py")):
        source = path.read_text(encoding="utf-8")
        if path.stem in helpers:
            starters[f"starter_code/{path.name}"] = source
        else:
            starters[f"starter_code/{path.name}"] = make_starter(
                source, path.stem, f"solutions/{path.name}"
            )
    return starters


def _generated_by_us(path: Path) -> bool:
    return path.read_text(encoding="utf-8").startswith(HEADER.splitlines()[0].split("{")[0])


def starter_diff(repo: Path = REPO_ROOT, helpers: Iterable[str] = HELPER_MODULES) -> str:
    """A unified diff from ``starter_code/`` on disk to what the generator writes ("" if none).

    A starter file without its solution is reported too (delete it, or restore the solution).
    """
    repo = Path(repo)
    expected = generate_starters(repo, helpers)
    on_disk = {
        f"starter_code/{p.name}": p.read_text(encoding="utf-8")
        for p in sorted((repo / "starter_code").glob("*.py"))
    }
    chunks: list[str] = []
    for name in sorted(set(expected) | set(on_disk)):
        want, have = expected.get(name), on_disk.get(name)
        if want == have:
            continue
        if want is None:
            chunks.append(f"{name}: no solutions/{Path(name).name} generates it; delete it\n")
            continue
        chunks.extend(
            difflib.unified_diff(
                (have or "").splitlines(keepends=True),
                want.splitlines(keepends=True),
                fromfile=f"{name} (on disk)" if have is not None else "/dev/null",
                tofile=f"{name} (generated from solutions/{Path(name).name})",
            )
        )
    return "".join(chunks)


def write_starters(repo: Path = REPO_ROOT, helpers: Iterable[str] = HELPER_MODULES) -> list[Path]:
    """Write ``starter_code/`` from ``solutions/``; returns the files that changed.

    Generated starters whose solution was removed are deleted; other files are left alone.
    """
    repo = Path(repo)
    expected = generate_starters(repo, helpers)
    (repo / "starter_code").mkdir(exist_ok=True)
    changed: list[Path] = []
    for name, text in expected.items():
        path = repo / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8", newline="")
            changed.append(path)
    for path in sorted((repo / "starter_code").glob("*.py")):
        if f"starter_code/{path.name}" not in expected and _generated_by_us(path):
            path.unlink()
            changed.append(path)
    return changed


# --------------------------------------------------------------------------------------------
# Notebooks (nbgrader's generate_assignment, through the course configuration)
# --------------------------------------------------------------------------------------------


def assignment_notebooks(repo: Path = REPO_ROOT) -> list[Path]:
    """The source notebooks, ``assignments/*.ipynb``, in order."""
    return sorted((Path(repo) / "assignments").glob("*.ipynb"))


def release_notebooks(repo: Path = REPO_ROOT, work_dir: Path | None = None) -> dict[str, bytes]:
    """``{"assignments/<name>.ipynb": student notebook}`` made by ``nbgrader generate_assignment``.

    Empty when the repository has no notebooks. The nbgrader course folder is temporary unless
    ``work_dir`` is given.
    """
    notebooks = assignment_notebooks(repo)
    if not notebooks:
        return {}
    from instructor.nbgrader import bridge  # needs nbgrader installed

    with tempfile.TemporaryDirectory(prefix="replearn-nbgrader-") as scratch:
        course = Path(work_dir) if work_dir is not None else Path(scratch)
        try:
            released = bridge.release_notebooks(notebooks, course)
        except (ValueError, bridge.NbgraderError) as error:
            raise ReleaseError(f"cannot release the notebooks: {error}") from error
    return {f"assignments/{name}": data for name, data in released.items()}


# --------------------------------------------------------------------------------------------
# The student hand-out
# --------------------------------------------------------------------------------------------


def project_version(repo: Path = REPO_ROOT) -> str:
    """``[project] version`` of ``repo/pyproject.toml``."""
    text = (Path(repo) / "pyproject.toml").read_text(encoding="utf-8")
    project = re.search(r"^\[project\]\s*$(.*?)(?=^\[|\Z)", text, re.M | re.S)
    version = project and re.search(r'^version\s*=\s*"([^"]+)"', project.group(1), re.M)
    if not version:
        raise ReleaseError(f"{repo}/pyproject.toml: no version in its [project] table")
    return version.group(1)


def _is_hidden_test(relative: str) -> bool:
    """Hidden grader tests: ``test_hidden_*.py`` and anything under ``autograder/tests/*/hidden/``."""
    parts = relative.split("/")
    if parts[:2] != ["autograder", "tests"]:
        return False
    return parts[-1].startswith("test_hidden_") or "hidden" in parts[2:-1]


def _is_solution_path(relative: str) -> bool:
    parts = relative.split("/")
    return parts[0] == "solutions" or any(
        part in ("solutions", "solution") or part.startswith("solution_") for part in parts[1:]
    )


def _shipped(relative: str) -> bool:
    parts = relative.split("/")
    if any(part in _SKIPPED_PARTS for part in parts) or Path(relative).suffix in _SKIPPED_SUFFIXES:
        return False
    if parts[0] == INSTRUCTOR_TREE:
        return False
    return not (_is_hidden_test(relative) or _is_solution_path(relative))


def _tree_files(repo: Path, folder: str) -> dict[str, bytes]:
    root = repo / folder
    files: dict[str, bytes] = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(repo).as_posix()
        if path.is_file() and not path.is_symlink() and _shipped(relative):
            files[relative] = path.read_bytes()
    return files


def leaks(files: Mapping[str, bytes]) -> list[str]:
    """Reasons why a set of hand-out files would give away a solution or a hidden test, or
    carry instructor tooling."""
    problems: list[str] = []
    for name, data in sorted(files.items()):
        if _is_solution_path(name):
            problems.append(f"{name}: a solution file")
        if name.split("/")[0] == INSTRUCTOR_TREE:
            problems.append(f"{name}: instructor tooling")
        if _is_hidden_test(name):
            problems.append(f"{name}: a hidden grader test")
        text = data.decode("utf-8", errors="replace")
        for marker in (SOLUTION_BEGIN, SOLUTION_END, HIDDEN_BEGIN):
            if marker in text:
                line = text[: text.index(marker)].count("\n") + 1
                problems.append(f"{name}:{line}: holds marker text {marker!r}")
    return problems


def student_files(repo: Path = REPO_ROOT, *, notebooks: bool = True) -> dict[str, bytes]:
    """The hand-out's files taken from the repository, ``{path inside the hand-out: bytes}``:
    starter code, released notebooks, licence, pins (:func:`handout_files` adds the rest).

    Raises:
        ReleaseError: a required file is missing, ``starter_code/`` drifted from
            ``solutions/``, or a file would leak a solution or a hidden test.
    """
    repo = Path(repo)
    missing = [name for name in REQUIRED_FILES if not (repo / name).is_file()]
    if missing:
        raise ReleaseError(f"{repo}: cannot build the hand-out without {', '.join(missing)}")
    drift = starter_diff(repo)
    if drift:
        raise ReleaseError(
            "starter_code/ differs from what solutions/ generates; run "
            "`python -m instructor.release starter` and commit:\n" + drift[:4000]
        )
    starters = generate_starters(repo)
    if not any(name != "starter_code/__init__.py" for name in starters):
        raise ReleaseError(f"{repo}/solutions holds no module: nothing to hand out")

    files: dict[str, bytes] = {name: text.encode("utf-8") for name, text in starters.items()}
    for folder in SHIPPED_TREES:
        files.update(_tree_files(repo, folder))
    for name in REQUIRED_FILES:
        files[name] = (repo / name).read_bytes()
    if notebooks:
        files.update(release_notebooks(repo))
        extras = _tree_files(repo, "assignments") if (repo / "assignments").is_dir() else {}
        files.update({k: v for k, v in extras.items() if not k.endswith(".ipynb")})

    problems = leaks(files)
    if problems:
        raise ReleaseError("the hand-out would leak:\n  " + "\n  ".join(problems))
    return files


def manifest(files: Mapping[str, bytes]) -> bytes:
    """``sha256sum``-format lines, sorted by path: check with ``sha256sum -c MANIFEST.txt``."""
    lines = [f"{hashlib.sha256(files[name]).hexdigest()}  {name}\n" for name in sorted(files)]
    return "".join(lines).encode("utf-8")


def build_zip(out: Path | None = None, repo: Path = REPO_ROOT, *, notebooks: bool = True) -> Path:
    """Build the student hand-out; returns its path.

    ``out`` is the zip's path, or a folder for :func:`handout_zip_name`'s name (default
    ``build/release/``). Entries sit under ``<course>-student-<version>/``, with a
    ``MANIFEST.txt`` of sha256 sums.
    """
    repo = Path(repo)
    identity = course_identity(repo)
    out = Path(out) if out is not None else repo / "build" / "release"
    if out.suffix != ".zip":
        out = out / handout_zip_name(identity)
    files = handout_files(repo, notebooks=notebooks)
    files["MANIFEST.txt"] = manifest(files)
    return write_deterministic_zip(files, out, prefix=f"{identity.folder}/")


# --------------------------------------------------------------------------------------------
# The course's identity, and what the hand-out holds besides the repository's files
# --------------------------------------------------------------------------------------------

HANDOUT_SOURCE = "handout"  # the repository's folder of files that sit at the hand-out's root
HANDOUT_ROOT_FILES = ("README.md", "install.py")  # the student README and the installer
WHEELS = "wheels"  # the hand-out's folder holding the course package's wheel
_PACKAGE_SOURCES = ("pyproject.toml", "README.md", "LICENSE", "replearn", "autograder")
_PLACEHOLDER = re.compile(r"[<>{}\s]|\b(owner|your-[\w-]+|example)\b", re.I)


@dataclass(frozen=True)
class CourseIdentity:
    """The course's name and version, and where its public hand-out lives, if anywhere.

    Configured once, in ``[tool.replearn]`` of pyproject.toml (``course``, ``handout_url``,
    ``handout_ref``); ``make release`` stamps it into the released notebooks.
    """

    course: str
    version: str
    handout_url: str = ""  # a public git repository holding the unpacked hand-out; "" if none
    handout_ref: str = ""  # its tag or branch

    @property
    def folder(self) -> str:
        """The hand-out's top folder inside the zip (and on the student's disk)."""
        return f"{self.course}-student-{self.version}"

    @property
    def github(self) -> tuple[str, str] | None:
        """``(owner, repository)`` when the hand-out lives on github.com (Colab opens it there)."""
        found = re.fullmatch(r"https://github\.com/([\w.-]+)/([\w.-]+)", self.handout_url)
        return (found.group(1), found.group(2)) if found else None

    def colab_url(self, notebook: str) -> str | None:
        """Colab's address of a released notebook (``assignments/<name>.ipynb``), or None."""
        if self.github is None:
            return None
        owner, name = self.github
        return f"https://colab.research.google.com/github/{owner}/{name}/blob/{self.handout_ref}/{notebook}"


def course_identity(repo: Path = REPO_ROOT) -> CourseIdentity:
    """``[tool.replearn]`` of ``repo/pyproject.toml``, checked.

    Raises:
        ReleaseError: the URL is not a plain ``https://`` address, or still a placeholder.
    """
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]

    path = Path(repo) / "pyproject.toml"
    table = tomllib.loads(path.read_text(encoding="utf-8")).get("tool", {}).get("replearn", {})
    version = project_version(repo)
    course = str(table.get("course") or "replearn")
    url = str(table.get("handout_url") or "").strip().rstrip("/").removesuffix(".git")
    if url and (not url.startswith("https://") or _PLACEHOLDER.search(url[len("https://") :])):
        raise ReleaseError(
            f"{path}: [tool.replearn] handout_url = {url!r} is not the address of a public "
            'repository (https://host/owner/name); set the real one, or "" for none'
        )
    if not re.fullmatch(r"[A-Za-z0-9][\w.-]*", course):
        raise ReleaseError(f"{path}: [tool.replearn] course = {course!r} must be a plain name")
    ref = str(table.get("handout_ref") or "").strip() or (f"v{version}" if url else "")
    return CourseIdentity(course, version, url, ref)


def handout_zip_name(identity: CourseIdentity, date: datetime.date | None = None) -> str:
    """``<course>-student-<version>-<YYYY-MM-DD>.zip``: the day of the build (UTC), or of
    ``$SOURCE_DATE_EPOCH`` when set (reproducible builds)."""
    if date is None:
        epoch = os.environ.get("SOURCE_DATE_EPOCH")
        now = (
            datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc)
            if epoch
            else datetime.datetime.now(datetime.timezone.utc)
        )
        date = now.date()
    return f"{identity.folder}-{date.isoformat()}.zip"


def build_wheel(repo: Path = REPO_ROOT) -> tuple[str, bytes]:
    """``(file name, bytes)`` of the course package's wheel, built by pip from a clean copy of
    the package's sources (setuptools' package data keeps hidden tests out of it), with the
    student README as its description.

    The same sources give the same bytes: file dates come from ``$SOURCE_DATE_EPOCH`` (1980
    unless set).
    """
    repo = Path(repo)
    missing = [name for name in _PACKAGE_SOURCES if not (repo / name).exists()]
    if missing:
        raise ReleaseError(f"{repo}: cannot build the course package without {', '.join(missing)}")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", "*.egg-info", ".*cache")
    with tempfile.TemporaryDirectory(prefix="replearn-wheel-") as scratch:
        source, out = Path(scratch) / "src", Path(scratch) / "wheel"
        source.mkdir()
        for name in _PACKAGE_SOURCES:
            if (repo / name).is_dir():
                shutil.copytree(repo / name, source / name, ignore=ignore)
            else:
                shutil.copyfile(repo / name, source / name)
        student_readme = repo / HANDOUT_SOURCE / "README.md"
        if student_readme.is_file():  # the package's description on the student's machine
            shutil.copyfile(student_readme, source / "README.md")
        env = {**os.environ, "SOURCE_DATE_EPOCH": os.environ.get("SOURCE_DATE_EPOCH", "315532800")}
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                "--no-build-isolation",
                "-q",
                "-w",
                str(out),
                str(source),
            ],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        wheels = sorted(out.glob("*.whl"))
        if done.returncode != 0 or len(wheels) != 1:
            raise ReleaseError(
                f"pip could not build the course package's wheel:\n{done.stdout}{done.stderr}"
            )
        return wheels[0].name, wheels[0].read_bytes()


def wheel_leaks(name: str, data: bytes) -> list[str]:
    """:func:`leaks` of every file inside a wheel (``name`` is its path in the hand-out)."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        inside = {member: archive.read(member) for member in archive.namelist()}
    return [f"{name}!/{problem}" for problem in leaks(inside)]


def stamp_notebook(data: bytes, path: str, identity: CourseIdentity) -> bytes:
    """A released notebook with the course's identity in it: the set-up cell for the hand-out's
    repository (:func:`replearn.notebook.setup_cell_source`) and, when the hand-out lives on
    GitHub, a Colab badge under the title.

    Raises:
        ReleaseError: the first code cell calls ``notebook.setup`` but is not the generated
            set-up cell (an edited or stale copy).
    """
    import nbformat

    from replearn.notebook import setup_cell_source

    nb = nbformat.reads(data.decode("utf-8"), as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    found = code and re.search(r'notebook\.setup\((?:"(\w+)")?\)', code[0].source)
    if found:  # a notebook without the course's set-up cell is released as it is
        module = found.group(1)
        if code[0].source.strip() != setup_cell_source(module).strip():
            raise ReleaseError(
                f"{path}: the first code cell differs from replearn.notebook.setup_cell_source"
                f"({module!r}); paste what it returns"
            )
        code[0].source = setup_cell_source(
            module, handout_url=identity.handout_url, handout_ref=identity.handout_ref
        )
    badge_target = identity.colab_url(path)
    if badge_target and nb.cells[0].cell_type == "markdown":
        title, _, rest = nb.cells[0].source.partition("\n")
        badge = f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({badge_target})"
        nb.cells[0].source = f"{title}\n\n{badge}\n{rest}"
    return (nbformat.writes(nb) + "\n").encode("utf-8")


def handout_files(repo: Path = REPO_ROOT, *, notebooks: bool = True) -> dict[str, bytes]:
    """Every file of the hand-out (no manifest yet): :func:`student_files`, the student README
    and installer from ``handout/``, the course package as a wheel in ``wheels/``, and the
    notebooks stamped with the course's identity.

    Raises:
        ReleaseError: as :func:`student_files`; a missing ``handout/`` file; a leak inside the
            wheel; a notebook without the generated set-up cell.
    """
    repo = Path(repo)
    identity = course_identity(repo)
    files = student_files(repo, notebooks=notebooks)
    for name in HANDOUT_ROOT_FILES:
        source = repo / HANDOUT_SOURCE / name
        if not source.is_file():
            raise ReleaseError(f"{repo}: cannot build the hand-out without {HANDOUT_SOURCE}/{name}")
        files[name] = source.read_bytes()
    wheel_name, wheel = build_wheel(repo)
    files[f"{WHEELS}/{wheel_name}"] = wheel
    for name in [n for n in files if n.startswith("assignments/") and n.endswith(".ipynb")]:
        files[name] = stamp_notebook(files[name], name, identity)
    problems = leaks({n: d for n, d in files.items() if not n.endswith(".whl")})
    problems += wheel_leaks(f"{WHEELS}/{wheel_name}", wheel)
    if problems:
        raise ReleaseError("the hand-out would leak:\n  " + "\n  ".join(problems))
    return files


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m instructor.release", description=__doc__)
    parser.add_argument("--repo", type=Path, default=REPO_ROOT, help="repository root")
    commands = parser.add_subparsers(dest="command", required=True)
    starter = commands.add_parser("starter", help="write starter_code/ from solutions/")
    starter.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 with a diff on drift"
    )
    books = commands.add_parser("notebooks", help="student notebooks via nbgrader")
    books.add_argument("--out", type=Path, default=None, help="default build/release/notebooks")
    bundle = commands.add_parser("zip", help="the student hand-out")
    bundle.add_argument(
        "--out", type=Path, default=None, help="a .zip, or a folder (default build/release/)"
    )
    bundle.add_argument("--no-notebooks", action="store_true", help="leave the notebooks out")
    args = parser.parse_args(argv)
    repo = args.repo.resolve()

    try:
        if args.command == "starter" and args.check:
            drift = starter_diff(repo)
            if drift:
                sys.stdout.write(drift)
                print(
                    "\nstarter_code/ differs from solutions/: run "
                    "`python -m instructor.release starter`",
                    file=sys.stderr,
                )
                return 1
            print(f"starter_code/ matches solutions/ ({len(generate_starters(repo))} modules)")
        elif args.command == "starter":
            changed = write_starters(repo)
            for path in changed:
                print(f"wrote {path.relative_to(repo)}")
            print(f"starter_code/ up to date ({len(changed)} files changed)")
        elif args.command == "notebooks":
            out = args.out or repo / "build/release/notebooks"
            identity = course_identity(repo)
            released = {
                name: stamp_notebook(data, name, identity)
                for name, data in release_notebooks(repo).items()
            }
            if not released:
                print("no assignments/*.ipynb: no notebooks to release")
            for name, data in released.items():
                target = out / Path(name).name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
                print(f"wrote {target}")
        else:
            if not args.no_notebooks and not assignment_notebooks(repo):
                print("notice: no assignments/*.ipynb yet; the hand-out has no notebooks")
            path = build_zip(args.out, repo, notebooks=not args.no_notebooks)
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            print(f"wrote {path} (sha256 {digest})")
    except ReleaseError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
