"""Release tooling: starter generation from solutions/, and the student hand-out zip."""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import inspect
import io
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from unittest.mock import MagicMock

import nbformat
import pytest

from instructor import release
from instructor.release import ReleaseError, make_starter
from replearn.contract.markers import HIDDEN_BEGIN, HIDDEN_END, SOLUTION_BEGIN, SOLUTION_END

REPO = Path(__file__).resolve().parent.parent
B, E = SOLUTION_BEGIN, SOLUTION_END

# Test data: a small assignment module in the course's conventions (regions opening a body,
# after code, with a hint, in a method, a hidden-test region, and BANNED_APIS kept as written).
TOY_SOLUTION = f'''"""A toy assignment module: stable log-sum-exp and a bounded queue."""

from __future__ import annotations

import math

BANNED_APIS = {{"log_sum_exp": ["scipy.special.logsumexp"]}}


def log_sum_exp(values: list[float]) -> float:
    """log(sum(exp(v))) without overflow.  values [N] -> scalar."""
    {B}  (hint: subtract the maximum first)
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))
    {E}


def normalise(values: list[float]) -> list[float]:
    """Divide each value by the total."""
    total = sum(values)  # kept: the stub raises after this line
    {B}
    return [v / total for v in values]
    {E}


class BoundedQueue:
    """A FIFO that keeps the newest `size` items."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.items: list[int] = []

    def push(self, item: int) -> None:
        """Append `item`, dropping the oldest items beyond `size`."""
        if item < 0:
            raise ValueError("items are non-negative")
        {B}
        self.items.append(item)
        del self.items[: -self.size]
        {E}


def _reference_check() -> bool:
    {HIDDEN_BEGIN}
    assert abs(log_sum_exp([0.0, 0.0]) - math.log(2)) < 1e-12
    {HIDDEN_END}
    return True
'''


def load_file(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up here
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def stubbed_functions(source: str) -> dict[str, bool]:
    """``{qualified name: whether the stub opens the body}`` of each function holding a stub."""
    found: dict[str, bool] = {}

    def is_stub(node: ast.stmt) -> bool:
        return (
            isinstance(node, ast.Raise)
            and isinstance(node.exc, ast.Call)
            and getattr(node.exc.func, "id", None) == "NotImplementedError"
        )

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = prefix + child.name
                if any(is_stub(n) for n in ast.walk(child) if isinstance(n, ast.stmt)):
                    body = child.body
                    if (
                        body
                        and isinstance(body[0], ast.Expr)
                        and isinstance(body[0].value, ast.Constant)
                    ):
                        body = body[1:]  # the docstring
                    found[name] = bool(body) and is_stub(body[0])
                visit(child, name + ".")
            elif isinstance(child, ast.ClassDef):
                visit(child, prefix + child.name + ".")

    visit(ast.parse(source), "")
    return found


def call_with_placeholders(module, qualname: str):
    """Call ``module.<qualname>`` with a MagicMock for every parameter (``self`` included)."""
    target = module
    for part in qualname.split("."):
        target = (
            inspect.getattr_static(target, part)
            if inspect.isclass(target)
            else getattr(target, part)
        )
    function = getattr(target, "__func__", target)
    required = [
        p
        for p in inspect.signature(function).parameters.values()
        if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    keyword_only = {
        p.name: MagicMock(name=p.name)
        for p in inspect.signature(function).parameters.values()
        if p.default is p.empty and p.kind is p.KEYWORD_ONLY
    }
    return function(*[MagicMock(name=p.name) for p in required], **keyword_only)


def assert_starter_raises(path: Path, name: str) -> dict[str, bool]:
    """Import a starter and call its stubbed functions: each one that opens with its stub
    must raise NotImplementedError naming the function; the others must hold the stub."""
    source = path.read_text()
    stubs = stubbed_functions(source)
    assert stubs, f"{path}: no stubbed function"
    module = load_file(path, name)
    for qualname, opens_body in stubs.items():
        if not opens_body:
            continue
        with pytest.raises(NotImplementedError, match=qualname.split(".")[-1]):
            call_with_placeholders(module, qualname)
    return stubs


# --------------------------------------------------------------------------------------------
# The starter generator
# --------------------------------------------------------------------------------------------


def test_stubs_replace_regions_and_keep_everything_else_byte_for_byte():
    starter = make_starter(TOY_SOLUTION, "toy")
    assert starter.startswith("# Generated from solutions/toy.py by `python -m instructor.release")
    assert (
        'raise NotImplementedError("Implement log_sum_exp (hint: subtract the maximum first)")'
        in starter
    )
    assert '    raise NotImplementedError("Implement normalise: see its docstring")\n' in starter
    assert (
        '        raise NotImplementedError("Implement BoundedQueue.push: see its docstring")\n'
        in starter
    )
    for gone in ("top = max(values)", "self.items.append", "abs(log_sum_exp", "BEGIN", "END"):
        assert gone not in starter
    # Outside the regions, every line of the solution survives in order.
    kept = [line for line in starter.splitlines()[3:] if "NotImplementedError" not in line]
    solution_lines = TOY_SOLUTION.splitlines()
    regions = release.find_regions(TOY_SOLUTION)
    inside = {n for r in regions for n in range(r.begin, r.end + 1)}
    assert kept == [line for n, line in enumerate(solution_lines, 1) if n not in inside]
    ast.parse(starter)


def test_generated_starter_imports_and_raises(tmp_path):
    path = tmp_path / "toy.py"
    path.write_text(make_starter(TOY_SOLUTION, "toy"))
    stubs = assert_starter_raises(path, "toy_starter_under_test")
    assert stubs == {"log_sum_exp": True, "normalise": False, "BoundedQueue.push": False}
    toy = load_file(path, "toy_starter_called_for_real")
    assert toy._reference_check() is True  # the hidden region is gone, the function stays
    assert toy.BANNED_APIS == {"log_sum_exp": ["scipy.special.logsumexp"]}
    with pytest.raises(NotImplementedError, match="Implement normalise"):
        toy.normalise([1.0, 3.0])
    with pytest.raises(NotImplementedError, match="Implement BoundedQueue.push"):
        toy.BoundedQueue(2).push(5)
    with pytest.raises(ValueError, match="non-negative"):  # code before the stub still runs
        toy.BoundedQueue(2).push(-1)


def test_long_stub_lines_are_wrapped_as_ruff_formats_them(tmp_path):
    hint = "(hint: " + "take the maximum over the rows first, then subtract it " * 2 + ")"
    source = f"def f(x):\n    {B} {hint}\n    return x\n    {E}\n"
    starter = make_starter(source, "wide")
    assert '    raise NotImplementedError(\n        "Implement f (hint:' in starter
    (tmp_path / "wide.py").write_text(starter)
    (tmp_path / "toy.py").write_text(make_starter(TOY_SOLUTION, "toy"))
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", "--line-length", "100", "--diff", "."],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("source", "error"),
    [
        (f"def f():\n    {B}\n    return 1\n", r"x\.py:2: BEGIN solution marker without an END"),
        (
            f"def f():\n    return 1\n    {E}\n",
            r"x\.py:3: END solution marker without a matching BEGIN",
        ),
        (f"def f():\n    {B}\n    {B}\n    pass\n    {E}\n", r"x\.py:3: .*cannot nest"),
        (
            f"def f():\n    {B}\n    {HIDDEN_BEGIN}\n    pass\n    {HIDDEN_END}\n    {E}\n",
            r"x\.py:3: .*cannot nest",
        ),
        (
            f"{B}\nX = 1\n{E}\n\n\ndef f():\n    {B}\n    pass\n    {E}\n",
            r"x\.py:1: .*outside a function",
        ),
        ("def f():\n    return 1\n", r"x\.py: no solution region"),
        (f"def f():\n    #{B}\n    return 1\n    #{E}\n", r"x\.py:2: .*not a marker line"),
        ("def f():\n    # BEGIN SOLUTION\n    return 1\n", r"x\.py:2: .*not a marker line"),
        (f"def f():\n    x = 1  {B}\n    return x\n", r"x\.py:2: .*not a marker line"),
        (f"def f():\n    {B}\n    return 1\n    {E} trailing\n", r"x\.py:4: text after the END"),
        (f"def f(:\n    {B}\n    {E}\n", r"x\.py:1: not valid Python"),
        (
            f"def f():\n    if True:\n        {HIDDEN_BEGIN}\n        pass\n        {HIDDEN_END}\n    {B}\n    return 1\n    {E}\n",
            r"x\.py: the generated starter is not valid Python",
        ),
    ],
    ids=[
        "begin-without-end",
        "end-without-begin",
        "nested",
        "nested-hidden",
        "module-level",
        "no-region",
        "near-miss-hashes",
        "near-miss-one-hash",
        "inline-marker",
        "end-with-text",
        "syntax-error",
        "emptied-block",
    ],
)
def test_bad_markers_are_errors_with_file_and_line(source, error):
    with pytest.raises(ReleaseError, match=error):
        make_starter(source, "x", filename="x.py")


def make_repo(root: Path) -> Path:
    """A minimal course repository (test data) with everything a hand-out needs."""
    (root / "solutions").mkdir(parents=True)
    (root / "solutions" / "toy_module.py").write_text(TOY_SOLUTION)
    for name in ("pyproject.toml", "constraints.txt"):
        shutil.copyfile(REPO / name, root / name)
    (root / "README.md").write_text("# replearn (test copy)\n")
    (root / "LICENSE").write_text("MIT License (test copy)\n")
    (root / "environment.yml").write_text("name: replearn\ndependencies: [python=3.11]\n")
    (root / "data").mkdir()
    (root / "data" / "README.md").write_text("Data notes.\n")
    shutil.copytree(REPO / "handout", root / "handout")  # the student README and the installer
    (root / "replearn").mkdir()  # the real files: the contract's markers must not leak
    shutil.copyfile(REPO / "replearn" / "__init__.py", root / "replearn" / "__init__.py")
    no_cache = shutil.ignore_patterns("__pycache__")
    shutil.copytree(REPO / "replearn/contract", root / "replearn/contract", ignore=no_cache)
    shutil.copytree(REPO / "instructor", root / "instructor", ignore=no_cache)  # must not ship
    grader = root / "autograder"
    files = {
        "__init__.py": "",
        "__main__.py": "print('check')\n",
        "tests/toy_module/test_public_toy.py": "def test_public():\n    assert True\n",
        "tests/toy_module/test_hidden_toy.py": "def test_hidden():\n    assert 'secret'\n",
        "tests/toy_module/hidden/expected.json": "[1, 2, 3]\n",
        "solutions/toy_module.py": "SECRET = 1\n",
    }
    for relative, text in files.items():
        (grader / relative).parent.mkdir(parents=True, exist_ok=True)
        (grader / relative).write_text(text)
    (grader / "tests" / "__pycache__").mkdir()
    (grader / "tests" / "__pycache__" / "x.pyc").write_bytes(b"\0")
    return root


def run_release(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "instructor.release", "--repo", str(repo), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
    )


def test_check_fails_with_a_diff_when_starter_code_drifts(tmp_path):
    repo = make_repo(tmp_path / "repo")
    missing = run_release(repo, "starter", "--check")
    assert missing.returncode == 1 and "+++ starter_code/toy_module.py (generated" in missing.stdout
    assert run_release(repo, "starter").returncode == 0
    assert run_release(repo, "starter", "--check").returncode == 0
    starter = repo / "starter_code" / "toy_module.py"
    starter.write_text(starter.read_text().replace("Divide each value", "Divide every value"))
    drifted = run_release(repo, "starter", "--check")
    assert drifted.returncode == 1
    assert '-    """Divide every value by the total."""' in drifted.stdout
    assert '+    """Divide each value by the total."""' in drifted.stdout
    (repo / "starter_code" / "orphan.py").write_text(release.HEADER.format(module="orphan"))
    assert (
        "starter_code/orphan.py: no solutions/orphan.py"
        in run_release(repo, "starter", "--check").stdout
    )
    release.write_starters(repo)
    assert not (repo / "starter_code" / "orphan.py").exists() and not release.starter_diff(repo)


# --------------------------------------------------------------------------------------------
# The hand-out
# --------------------------------------------------------------------------------------------


def read_zip(path: Path | io.BytesIO) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def assert_no_leak(entries: dict[str, bytes], prefix: str) -> None:
    for name, data in entries.items():
        assert name.startswith(prefix), name
        relative = name[len(prefix) :]
        assert not relative.startswith("solutions/") and "/solutions/" not in relative, name
        assert "test_hidden_" not in relative and "/hidden/" not in relative, name
        text = data.decode("utf-8", errors="replace")
        assert SOLUTION_BEGIN not in text and SOLUTION_END not in text, name
        assert HIDDEN_BEGIN not in text, name
        if name.endswith(".ipynb"):
            nb = nbformat.reads(text, as_version=4)
            for cell in nb.cells:
                if cell.metadata.get("nbgrader", {}).get("solution"):
                    from instructor.nbgrader.nbgrader_config import CODE_STUB, TEXT_STUB

                    assert (CODE_STUB if cell.cell_type == "code" else TEXT_STUB) in cell.source


def assert_manifest(entries: dict[str, bytes], prefix: str) -> None:
    listed = entries[prefix + "MANIFEST.txt"].decode().splitlines()
    files = {n[len(prefix) :]: d for n, d in entries.items() if n != prefix + "MANIFEST.txt"}
    assert listed == [f"{hashlib.sha256(files[n]).hexdigest()}  {n}" for n in sorted(files)]


HANDOUT_FILES = [
    "LICENSE",
    "MANIFEST.txt",
    "README.md",
    "constraints.txt",
    "data/README.md",
    "install.py",
    "starter_code/toy_module.py",
    f"wheels/replearn-{release.project_version(REPO)}-py3-none-any.whl",
]
# What the wheel (the course package) holds of the toy repository: its packages and public tests.
WHEEL_PACKAGE_FILES = [
    "autograder/__init__.py",
    "autograder/__main__.py",
    "autograder/tests/toy_module/test_public_toy.py",
    "replearn/__init__.py",
    *(f"replearn/contract/{p.name}" for p in sorted((REPO / "replearn/contract").glob("*.py"))),
]


def build_twice(root: Path, *, notebooks: bool) -> tuple[Path, Path, Path]:
    """The toy repository (with a course notebook if asked), its hand-out built twice: once by
    the command line, once through the API."""
    repo = make_repo(root / "repo")
    release.write_starters(repo)
    (repo / "assignments").mkdir()
    (repo / "assignments" / "figure.svg").write_text("<svg/>")
    if notebooks:
        from test_nbgrader_loop import course_test_notebook

        nbformat.write(course_test_notebook(), repo / "assignments" / "01_toy_module.ipynb")
    args = ["zip", "--out", str(repo / "build/release/a.zip")] + (
        [] if notebooks else ["--no-notebooks"]
    )
    first = run_release(repo, *args)
    assert first.returncode == 0, first.stdout + first.stderr
    second = release.build_zip(repo / "build/release/b.zip", repo, notebooks=notebooks)
    return repo, repo / "build/release/a.zip", second


def check_handout(
    repo: Path, path: Path, expected: list[str], extract_to: Path
) -> dict[str, bytes]:
    entries = read_zip(path)
    prefix = f"replearn-student-{release.project_version(repo)}/"
    assert sorted(name[len(prefix) :] for name in entries) == sorted(expected)
    assert_no_leak(entries, prefix)
    assert_manifest(entries, prefix)
    assert (
        entries[prefix + "starter_code/toy_module.py"]
        == (repo / "starter_code/toy_module.py").read_bytes()
    )
    with zipfile.ZipFile(path) as archive:
        archive.extractall(extract_to)
    assert_starter_raises(
        extract_to / prefix / "starter_code/toy_module.py", f"toy_from_zip_{len(expected)}"
    )
    files = {name[len(prefix) :]: data for name, data in entries.items()}
    assert files["README.md"] == (repo / "handout" / "README.md").read_bytes()
    (wheel,) = [name for name in files if name.startswith("wheels/")]
    inside = read_zip(io.BytesIO(files[wheel]))
    packaged = sorted(n for n in inside if not n.startswith("replearn-"))  # less the dist-info
    assert packaged == WHEEL_PACKAGE_FILES
    assert_no_leak(inside, "")
    return files


def assert_byte_identical(first: Path, second: Path) -> None:
    assert first.read_bytes() == second.read_bytes()
    with zipfile.ZipFile(first) as archive:
        infos = archive.infolist()
    assert [i.filename for i in infos] == sorted(i.filename for i in infos)
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}


def test_handout_holds_what_students_need_and_nothing_secret(tmp_path):
    repo, first, second = build_twice(tmp_path, notebooks=False)
    check_handout(repo, first, HANDOUT_FILES, tmp_path / "unzipped")
    assert_byte_identical(first, second)


@pytest.mark.slow
def test_handout_notebooks_are_nbgrader_releases(tmp_path):
    repo, first, second = build_twice(tmp_path, notebooks=True)
    files = check_handout(
        repo,
        first,
        HANDOUT_FILES + ["assignments/01_toy_module.ipynb", "assignments/figure.svg"],
        tmp_path / "x",
    )
    notebook = nbformat.reads(files["assignments/01_toy_module.ipynb"].decode(), as_version=4)
    assert (
        "return [i**2" not in notebook.cells[1].source
        and "hidden_check" not in notebook.cells[2].source
    )
    assert notebook.cells[3].metadata["nbgrader"]["grade"]  # free response, manually graded
    assert_byte_identical(first, second)


def test_build_refuses_stale_starters_missing_files_and_leaks(tmp_path):
    repo = make_repo(tmp_path / "repo")
    with pytest.raises(ReleaseError, match="starter_code/ differs"):
        release.build_zip(tmp_path / "x.zip", repo, notebooks=False)
    release.write_starters(repo)
    (repo / "replearn" / "notes.md").write_text(f"Mark code with\n{SOLUTION_BEGIN}\n")
    with pytest.raises(ReleaseError, match=r"replearn/notes.md:2: holds marker text"):
        release.build_zip(tmp_path / "x.zip", repo, notebooks=False)
    (repo / "replearn" / "notes.md").unlink()
    assert release.leaks({"instructor/demo.py": b"x = 1\n"}) == [
        "instructor/demo.py: instructor tooling"
    ]
    (repo / "LICENSE").unlink()
    with pytest.raises(ReleaseError, match="without LICENSE"):
        release.build_zip(tmp_path / "x.zip", repo, notebooks=False)
    assert not (tmp_path / "x.zip").exists()


# --------------------------------------------------------------------------------------------
# The real repository
# --------------------------------------------------------------------------------------------

REAL_SOLUTIONS = sorted(
    p for p in (REPO / "solutions").glob("*.py") if p.stem not in release.HELPER_MODULES
)


@pytest.mark.skipif(not REAL_SOLUTIONS, reason="no solutions/*.py yet")
@pytest.mark.parametrize("path", REAL_SOLUTIONS, ids=lambda p: p.stem)
def test_real_starters_import_and_raise(path, tmp_path):
    starter = tmp_path / path.name
    starter.write_text(make_starter(path.read_text(), path.stem))
    assert_starter_raises(starter, f"replearn_release_test_{path.stem}")


@pytest.mark.slow
@pytest.mark.skipif(not REAL_SOLUTIONS, reason="no solutions/*.py yet")
def test_real_handout_builds_without_leaks(tmp_path):
    out = release.build_zip(tmp_path / "handout.zip", REPO)
    entries = read_zip(out)
    prefix = f"replearn-student-{release.project_version(REPO)}/"
    assert_no_leak(entries, prefix)
    assert_manifest(entries, prefix)


@pytest.mark.slow
def test_wheel_ships_public_tests_and_manifest_but_no_hidden_test_or_solution(tmp_path):
    """What `pip install git+...` puts on a student's Colab: enough to self-check, no secrets."""
    source = tmp_path / "src"
    shutil.copytree(
        REPO,
        source,
        ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__"),
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "wheel"),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = (tmp_path / "wheel").glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "replearn/data_manifest.json" in names
    assert "autograder/tests/transfer_learning/test_public_transfer_learning.py" in names
    assert "autograder/tests/transfer_learning/expected_public.agv" in names
    assert not [n for n in names if "test_hidden" in n or n.startswith(("solutions/", "tests/"))]
