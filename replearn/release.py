"""Release tooling: the student stubs and the student hand-out, generated from one source.

``solutions/<module>.py`` is the one source of each assignment module. Every part a student
writes sits between a BEGIN SOLUTION and an END SOLUTION marker line (three hashes, as in
nbgrader), indented like the code around it. Three commands turn the repository into what
students get:

* ``python -m replearn.release starter [--check]`` writes ``starter_code/<module>.py``: each
  solution region becomes ``raise NotImplementedError("<message>")`` at the marker's indentation,
  everything outside the markers is kept byte for byte, and hidden-test regions are dropped.
  ``--check`` writes nothing, prints a unified diff and exits 1 when ``starter_code/`` drifted.
* ``python -m replearn.release notebooks [--out DIR]`` writes the student version of each
  ``assignments/*.ipynb``, made by nbgrader's own ``generate_assignment`` with the course
  configuration in ``autograder/nbgrader/`` (the same markers, so one syntax everywhere).
* ``python -m replearn.release zip [--out FILE]`` writes the deterministic student hand-out
  ``build/release/replearn-student-<version>.zip`` with a ``MANIFEST.txt`` of sha256 sums, and
  refuses to write it if any file would leak a solution or a hidden test.

The stub message is "Implement <function>: see its docstring", or carries a hint written on the
BEGIN line after the marker: a region opened by the marker followed by
``(hint: use torch.logsumexp)`` becomes
``raise NotImplementedError("Implement info_nce_loss (hint: use torch.logsumexp)")``.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import hashlib
import io
import re
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "SOLUTION_BEGIN",
    "SOLUTION_END",
    "HIDDEN_BEGIN",
    "HIDDEN_END",
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

# The markers are assembled from two halves so that this file, which ships to students inside
# replearn/, never spells one out (the hand-out is checked for marker text).
_HASHES = "###"
SOLUTION_BEGIN = f"{_HASHES} BEGIN SOLUTION"
SOLUTION_END = f"{_HASHES} END SOLUTION"
HIDDEN_BEGIN = f"{_HASHES} BEGIN HIDDEN TESTS"
HIDDEN_END = f"{_HASHES} END HIDDEN TESTS"

# Any spelling of a marker (one to many hashes, any spacing): used to reject near-misses such
# as a two-hash marker, which would otherwise pass through and leak the solution.
_LOOSE_MARKER = re.compile(r"#+\s*(BEGIN|END)\s+(SOLUTION|HIDDEN\s+TESTS)\b")

# Modules of solutions/ copied unchanged because they hold nothing to implement. DESIGN.md puts
# helpers in replearn/, so only a package marker belongs here.
HELPER_MODULES: frozenset[str] = frozenset({"__init__"})

HEADER = (
    "# Generated from solutions/{module}.py by `python -m replearn.release starter`.\n"
    "# Course authors: edit solutions/{module}.py, never this file. Students: keep the names\n"
    "# and signatures as they are, and replace each `raise NotImplementedError(...)` with your code.\n"
)

RUFF_LINE_LENGTH = 100  # pyproject.toml [tool.ruff]; longer stubs are wrapped as ruff would

# What the hand-out holds besides the generated parts (paths relative to the repository).
REQUIRED_FILES = (
    "README.md",
    "LICENSE",
    "pyproject.toml",
    "constraints.txt",
    "environment.yml",
    "data/README.md",
)
SHIPPED_TREES = ("replearn", "autograder")
_SKIPPED_PARTS = {"__pycache__", ".ipynb_checkpoints", ".pytest_cache", ".ruff_cache"}
_SKIPPED_SUFFIXES = {".pyc", ".pyo", ".zip", ".db"}
# Instructor-only parts of the grader: the nbgrader course loop and anything named solution(s).
_GRADER_EXCLUDED_PREFIXES = ("autograder/nbgrader/",)

# Fixed metadata that makes two builds of the same tree byte-identical.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest date the zip format can store
_ZIP_FILE_MODE = 0o100644  # regular file, rw-r--r--


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
        exact = f"{_HASHES} {loose.group(1)} {' '.join(loose.group(2).split())}"
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
            "do; mark the parts to write, or list the module in replearn.release.HELPER_MODULES"
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
    from autograder.nbgrader import bridge  # instructor tooling; needs nbgrader installed

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
    if relative.startswith(_GRADER_EXCLUDED_PREFIXES):
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
    """Reasons why a set of hand-out files would give away a solution or a hidden test."""
    problems: list[str] = []
    for name, data in sorted(files.items()):
        if _is_solution_path(name):
            problems.append(f"{name}: a solution file")
        if _is_hidden_test(name):
            problems.append(f"{name}: a hidden grader test")
        text = data.decode("utf-8", errors="replace")
        for marker in (SOLUTION_BEGIN, SOLUTION_END, HIDDEN_BEGIN):
            if marker in text:
                line = text[: text.index(marker)].count("\n") + 1
                problems.append(f"{name}:{line}: holds marker text {marker!r}")
    return problems


def student_files(repo: Path = REPO_ROOT, *, notebooks: bool = True) -> dict[str, bytes]:
    """Every file of the hand-out, ``{path inside the hand-out: bytes}`` (no manifest yet).

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
            "`python -m replearn.release starter` and commit:\n" + drift[:4000]
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


def write_deterministic_zip(files: Mapping[str, bytes], out: Path, prefix: str = "") -> Path:
    """Write ``files`` to ``out`` with sorted entries and fixed dates and modes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(prefix + name, date_time=_ZIP_DATE)
            info.create_system = 3  # unix, so that the mode below is read back
            info.external_attr = _ZIP_FILE_MODE << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, files[name], compresslevel=9)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(buffer.getvalue())
    return out


def build_zip(out: Path | None = None, repo: Path = REPO_ROOT, *, notebooks: bool = True) -> Path:
    """Build the student hand-out; returns its path.

    Entries sit under ``replearn-student-<version>/``, with a ``MANIFEST.txt`` of sha256 sums.
    """
    repo = Path(repo)
    version = project_version(repo)
    out = Path(out) if out is not None else repo / f"build/release/replearn-student-{version}.zip"
    files = student_files(repo, notebooks=notebooks)
    files["MANIFEST.txt"] = manifest(files)
    return write_deterministic_zip(files, out, prefix=f"replearn-student-{version}/")


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m replearn.release", description=__doc__)
    parser.add_argument("--repo", type=Path, default=REPO_ROOT, help="repository root")
    commands = parser.add_subparsers(dest="command", required=True)
    starter = commands.add_parser("starter", help="write starter_code/ from solutions/")
    starter.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 with a diff on drift"
    )
    books = commands.add_parser("notebooks", help="student notebooks via nbgrader")
    books.add_argument("--out", type=Path, default=None, help="default build/release/notebooks")
    bundle = commands.add_parser("zip", help="the student hand-out")
    bundle.add_argument("--out", type=Path, default=None, help="default build/release/...zip")
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
                    "`python -m replearn.release starter`",
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
            released = release_notebooks(repo)
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
