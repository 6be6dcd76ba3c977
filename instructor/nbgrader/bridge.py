"""The nbgrader loop of the course, and the export that joins it with the trusted grader.

nbgrader works on a course folder (``docs/source/user_guide/philosophy.rst`` of nbgrader)::

    <course>/nbgrader_config.py               written here: applies nbgrader_config.configure_course
    <course>/source/<assignment>/<nb>.ipynb   the instructor's notebook, solutions in place
    <course>/release/<assignment>/<nb>.ipynb  generate_assignment: what students get
    <course>/submitted/<student>/<assignment>/ what a student handed in
    <course>/autograded/<student>/<assignment>/ autograde: executed, scored
    <course>/feedback/<student>/<assignment>/<nb>.html   generate_feedback
    <course>/gradebook.db                     scores (SQLite)

One course assignment is one notebook: ``assignments/04_contrastive_learning.ipynb`` becomes the
nbgrader assignment ``04_contrastive_learning`` holding the notebook of the same name. A
student's submission is the executed notebook AND the module it imports
(``contrastive_learning.py``), side by side in ``submitted/<student>/<assignment>/``
(:func:`collect` puts them there from the zips ``python -m replearn.submit`` makes); ``autograde``
runs the notebook on that module (``$REPLEARN_STUDENT_DIR`` is the notebook's own folder), never
on the course's stubs. The course notebooks hold no autograder test cells: the module's points
come from the trusted grader (``python -m autograder batch``), and nbgrader scores the written
answers, by hand. Autograde executes each notebook to show what the student's code produces
(the ``smoke`` preset by default: seconds per notebook, where ``cpu-quick`` takes minutes). Every
nbgrader step runs as ``python -m nbgrader <step>`` with this interpreter, so the kernel, nbgrader
and the course library come from the same environment; a ``python3`` kernelspec pointing at this
interpreter is written into the course folder and put first on ``JUPYTER_PATH``, so a user-level
kernel of the same name cannot take over (nothing outside the course folder is touched).

Grades: :func:`export_grades` writes one CSV row per student and assignment with the module score
of the trusted grader beside nbgrader's notebook score, split into autograded and manually
graded cells::

    python -m instructor.nbgrader.bridge export --gradebook COURSE/gradebook.db \\
        --grades grades.csv --out combined.csv [--assignment NAME]

``--grades`` is the sheet of ``python -m autograder batch`` (its ``student`` column is the
nbgrader student id that :func:`collect` used); ``--results-dir RESULTS`` reads
``RESULTS/<student>/results.json`` (one assignment, named by ``--assignment`` or the file's
``"assignment"`` key) or ``RESULTS/<student>/<assignment>/results.json`` instead. Assignments
are joined on their course name: nbgrader's ``04_contrastive_learning`` and the grader's
``contrastive_learning`` are the same assignment.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from instructor.nbgrader.nbgrader_config import COURSE_ID

__all__ = [
    "NbgraderError",
    "assignment_id",
    "course_name",
    "check_notebook_markers",
    "setup_course",
    "nbgrader_env",
    "run_nbgrader",
    "generate_assignment",
    "submit",
    "collect",
    "autograde",
    "generate_feedback",
    "release_notebooks",
    "ModuleScore",
    "NotebookScore",
    "read_module_results",
    "read_gradebook",
    "export_grades",
    "EXPORT_COLUMNS",
    "main",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
KERNEL_DIR = ".jupyter"  # inside the course folder; holds kernels/python3/kernel.json
COURSE_CONFIG = """\
# Written by instructor.nbgrader.bridge.setup_course: the replearn course configuration, with this
# folder as the course root. Edit instructor/nbgrader/nbgrader_config.py, not this file.
import sys

sys.path.insert(0, {repo!r})  # the instructors' repository: instructor/ is not installed
from instructor.nbgrader.nbgrader_config import configure_course

configure_course(get_config(), root={root!r})
"""


class NbgraderError(RuntimeError):
    """An nbgrader step failed; the message holds the end of its log."""


def assignment_id(notebook: str | os.PathLike) -> str:
    """The nbgrader assignment of a course notebook: its file name without ``.ipynb``."""
    return Path(notebook).stem


def course_name(assignment: str) -> str:
    """The course's name of an assignment, without its order prefix (``04_mae`` -> ``mae``)."""
    return re.sub(r"^\d+[_-]", "", assignment)


# --------------------------------------------------------------------------------------------
# The course folder and the nbgrader steps
# --------------------------------------------------------------------------------------------


def _write_kernelspec(course: Path) -> Path:
    """A ``python3`` kernelspec that starts this interpreter, inside the course folder."""
    folder = course / KERNEL_DIR / "kernels" / "python3"
    folder.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"Python 3 (replearn, {sys.executable})",
        "language": "python",
    }
    path = folder / "kernel.json"
    path.write_text(json.dumps(spec, indent=1) + "\n", encoding="utf-8")
    return path


def check_notebook_markers(notebook: str | os.PathLike) -> None:
    """Refuse a notebook whose markers nbgrader would misread, naming the cell and line.

    nbgrader finds a delimiter anywhere in a line (``delimiter in line``), so prose that
    mentions a marker opens a region that never ends ("no end solution statement found", with
    no cell named). Here every marker must stand alone on its line and regions must balance
    within their cell, the rules of ``instructor.release`` for ``.py`` files.
    """
    import nbformat

    from instructor.release import ReleaseError, scan_markers

    nb = nbformat.read(os.fspath(notebook), as_version=4)
    for index, cell in enumerate(nb.cells):
        where = f"{Path(notebook).name} cell {index} ({cell.cell_type})"  # then ":<line>"
        try:
            spans = scan_markers(cell.source, where)
        except ReleaseError as error:
            raise ValueError(
                f"{error} (in prose, write the marker without its hashes, e.g. `BEGIN SOLUTION`)"
            ) from error
        nbgrader = cell.metadata.get("nbgrader", {})
        if spans and not (nbgrader.get("solution") or nbgrader.get("grade")):
            raise ValueError(
                f"{where}:{spans[0][1]}: a marked region in a cell that is neither a solution "
                "nor an autograder-tests cell; set its nbgrader metadata"
            )


def setup_course(
    course: str | os.PathLike, notebooks: Sequence[str | os.PathLike] = ()
) -> list[str]:
    """Make ``course`` an nbgrader course folder holding ``notebooks`` as source assignments.

    Writes ``nbgrader_config.py`` (the course configuration with this root), the kernelspec, and
    ``source/<assignment>/<assignment>.ipynb`` for each notebook. Returns the assignment ids.
    """
    course = Path(course).resolve()
    course.mkdir(parents=True, exist_ok=True)
    (course / "nbgrader_config.py").write_text(
        COURSE_CONFIG.format(root=str(course), repo=str(REPO_ROOT)), encoding="utf-8"
    )
    _write_kernelspec(course)
    ids: list[str] = []
    for notebook in notebooks:
        notebook = Path(notebook)
        if notebook.suffix != ".ipynb" or not notebook.is_file():
            raise FileNotFoundError(f"{notebook}: not a notebook file (expected an .ipynb)")
        check_notebook_markers(notebook)
        ident = assignment_id(notebook)
        target = course / "source" / ident / notebook.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(notebook, target)
        ids.append(ident)
    return ids


def nbgrader_env(
    course: str | os.PathLike,
    *,
    repo: str | os.PathLike | None = None,
    preset: str | None = None,
    impl: str | None = None,
) -> dict[str, str]:
    """The environment of an nbgrader step and of the kernels it starts.

    ``repo`` goes first on ``PYTHONPATH`` (the course library and this package) and, with
    ``impl``, becomes ``$REPLEARN_ROOT``; ``preset`` and ``impl`` set ``$REPLEARN_PRESET`` and
    ``$REPLEARN_IMPL`` for the notebooks.
    """
    env = dict(os.environ)
    repo = Path(repo or REPO_ROOT).resolve()
    paths = [str(repo)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    kernels = str(Path(course).resolve() / KERNEL_DIR)
    env["JUPYTER_PATH"] = os.pathsep.join(
        [kernels] + [p for p in env.get("JUPYTER_PATH", "").split(os.pathsep) if p]
    )
    # nbgrader runs the `alembic` executable by name when it creates a gradebook, so this
    # interpreter's scripts folder goes first on PATH (a venv used without activation lacks it).
    scripts = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(
        [scripts] + [p for p in env.get("PATH", "").split(os.pathsep) if p]
    )
    env.setdefault("MPLBACKEND", "Agg")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if preset is not None:
        env["REPLEARN_PRESET"] = preset
    if impl is not None:
        env["REPLEARN_IMPL"] = impl
        env["REPLEARN_ROOT"] = str(repo)
    return env


def run_nbgrader(
    course: str | os.PathLike,
    step: str,
    *args: str,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess:
    """Run ``python -m nbgrader <step> <args>`` in ``course``; raise :class:`NbgraderError` on failure."""
    course = Path(course).resolve()
    command = [sys.executable, "-m", "nbgrader", step, *args]
    done = subprocess.run(
        command,
        cwd=course,
        env=dict(env) if env is not None else nbgrader_env(course),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        log = (done.stdout + done.stderr)[-6000:]
        raise NbgraderError(f"`nbgrader {step} {' '.join(args)}` exited {done.returncode}:\n{log}")
    return done


def _notebooks_in(folder: Path, what: str) -> list[Path]:
    found = sorted(folder.glob("*.ipynb")) if folder.is_dir() else []
    if not found:
        raise NbgraderError(f"{what}: no notebook in {folder}")
    return found


def generate_assignment(
    course: str | os.PathLike, assignment: str, *, timeout: float | None = None
) -> list[Path]:
    """``nbgrader generate_assignment``: the release notebooks of ``assignment``."""
    course = Path(course).resolve()
    run_nbgrader(course, "generate_assignment", assignment, "--force", timeout=timeout)
    return _notebooks_in(course / "release" / assignment, "generate_assignment")


def submit(
    course: str | os.PathLike,
    assignment: str,
    student: str,
    files: Mapping[str, bytes | str | os.PathLike],
    *,
    timestamp: datetime | None = None,
) -> Path:
    """Place a submission in ``submitted/<student>/<assignment>/`` (what ``collect`` would do).

    Args:
        files: ``{relative path: content}``: bytes, text (``str``), or a ``Path`` to copy. Notebooks keep the
            release notebook's name; other files (e.g. the student's module) may go along.
        timestamp: written to ``timestamp.txt`` for late-submission penalties (default now).
    """
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.@-]*", student):
        raise ValueError(f"student id {student!r}: use letters, digits and _ . @ - only")
    folder = Path(course).resolve() / "submitted" / student / assignment
    folder.mkdir(parents=True, exist_ok=True)
    for relative, content in files.items():
        target = folder / relative
        if folder not in target.resolve().parents:
            raise ValueError(f"{relative!r}: a submitted file must stay inside {folder}")
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        elif isinstance(content, str):
            target.write_text(content, encoding="utf-8")
        else:
            shutil.copyfile(content, target)
    when = timestamp or datetime.now(timezone.utc)
    (folder / "timestamp.txt").write_text(when.strftime("%Y-%m-%d %H:%M:%S.%f %Z"))
    return folder


STUDENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]*")


def nbgrader_student_id(name: str) -> str:
    """A student id nbgrader accepts (letters, digits, ``_ . @ -``) made from ``name``."""
    cleaned = re.sub(r"[^A-Za-z0-9_.@-]+", "_", name.strip()).strip("_.-@")
    if not cleaned or not STUDENT_ID.fullmatch(cleaned):
        raise ValueError(f"cannot make an nbgrader student id from {name!r}")
    return cleaned


def collect(course: str | os.PathLike, submissions: str | os.PathLike) -> dict[str, list[Path]]:
    """Put each submission of a folder (one folder or ``.zip`` per student, as ``autograder
    batch`` reads it) into ``submitted/<student>/<assignment>/``: its notebooks and modules.

    The student id is the one ``autograder batch`` writes in its sheet (the manifest's
    ``student``, else the file name), made an nbgrader id; the assignment is each notebook's
    own (``04_contrastive_learning.ipynb`` -> ``04_contrastive_learning``), and the module it
    imports goes beside it. Every submission is staged with the grading rules first.
    Returns ``{student: [submitted folders]}``.
    """
    import tempfile

    from autograder import submission as staging
    from autograder.batch import entries_of, identity

    course = Path(course).resolve()
    placed: dict[str, list[Path]] = {}
    owners: dict[str, str] = {}
    for entry in entries_of(Path(submissions)):
        with tempfile.TemporaryDirectory(prefix="replearn-collect-") as scratch:
            staged = staging.stage(entry, Path(scratch) / "s", set())
            student = nbgrader_student_id(identity(staged.root, entry))
            if student in owners:
                raise ValueError(f"{entry.name} and {owners[student]} are both {student!r}")
            owners[student] = entry.name
            books = sorted(staged.root.rglob("*.ipynb"))
            modules = {p.name: p for p in staged.root.rglob("*.py")}
            for book in books:
                files: dict[str, bytes | str | os.PathLike] = {book.name: book.read_bytes()}
                files.update({name: path.read_bytes() for name, path in modules.items()})
                placed.setdefault(student, []).append(
                    submit(course, assignment_id(book), student, files)
                )
    return placed


def autograde(
    course: str | os.PathLike,
    assignment: str,
    student: str | None = None,
    *,
    repo: str | os.PathLike | None = None,
    preset: str | None = "smoke",
    impl: str | None = None,
    timeout: float | None = None,
) -> Path:
    """``nbgrader autograde``: execute and score the submissions (one student, or all).

    Each notebook runs on the module submitted beside it (``$REPLEARN_STUDENT_DIR`` is the
    folder nbgrader executes it in); ``impl="solution"`` runs it on the reference instead (a
    check of the notebook itself). ``preset`` is the notebooks' ``$REPLEARN_PRESET``.
    """
    course = Path(course).resolve()
    args = [assignment, "--force"] + ([f"--student={student}"] if student else [])
    env = nbgrader_env(course, repo=repo, preset=preset, impl=impl)
    if impl != "solution":
        env["REPLEARN_STUDENT_DIR"] = "."  # the notebook's folder: the student's own module
    run_nbgrader(course, "autograde", *args, env=env, timeout=timeout)
    return course / "autograded"


def generate_feedback(
    course: str | os.PathLike,
    assignment: str,
    student: str | None = None,
    *,
    timeout: float | None = None,
) -> list[Path]:
    """``nbgrader generate_feedback``: the HTML feedback files (hidden tests removed)."""
    course = Path(course).resolve()
    args = [assignment, "--force"] + ([f"--student={student}"] if student else [])
    run_nbgrader(course, "generate_feedback", *args, timeout=timeout)
    pattern = f"{student or '*'}/{assignment}/*.html"
    return sorted((course / "feedback").glob(pattern))


def release_notebooks(
    notebooks: Sequence[str | os.PathLike],
    course: str | os.PathLike,
    *,
    timeout: float | None = 600,
) -> dict[str, bytes]:
    """``{notebook file name: student version}`` made by ``generate_assignment`` in ``course``."""
    released: dict[str, bytes] = {}
    for ident in setup_course(course, notebooks):
        for path in generate_assignment(course, ident, timeout=timeout):
            released[path.name] = path.read_bytes()
    return released


# --------------------------------------------------------------------------------------------
# Grades: the trusted grader's results.json beside nbgrader's gradebook
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModuleScore:
    """The trusted grader's score of one student's module for one assignment."""

    student: str
    assignment: str  # course name, e.g. "contrastive_learning"
    score: float
    max_score: float | None  # sum of the tests' max_score; None when the file lists no test
    source: str  # the results.json it came from


@dataclass(frozen=True)
class NotebookScore:
    """nbgrader's score of one student's notebook(s) for one assignment."""

    student: str
    assignment: str  # course name
    nbgrader_assignment: str  # nbgrader's id, e.g. "04_contrastive_learning"
    submitted: bool
    autograded_score: float  # autograder test cells (with any manual override)
    manual_score: float  # manually graded answers (free response) and tasks
    score: float  # nbgrader's total, extra credit included
    max_score: float
    needs_manual_grade: bool


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what}: expected a number, got {value!r}")
    return float(value)


def _module_score(path: Path, student: str, assignment: str | None) -> ModuleScore:
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not a readable results.json ({error})") from error
    if not isinstance(results, dict):
        raise ValueError(f"{path}: expected a JSON object (Gradescope results format)")
    assignment = assignment or results.get("assignment")
    if not assignment:
        raise ValueError(
            f"{path}: which assignment is this? pass --assignment NAME, or use the layout "
            "<results-dir>/<student>/<assignment>/results.json"
        )
    tests = results.get("tests", [])
    if not isinstance(tests, list) or not all(isinstance(t, dict) for t in tests):
        raise ValueError(f"{path}: 'tests' must be a list of objects")
    test_scores = [_number(t.get("score", 0.0), f"{path}: a test's score") for t in tests]
    if "score" in results:
        score = _number(results["score"], f"{path}: score")
    else:
        score = sum(test_scores)
    maxima = [t["max_score"] for t in tests if "max_score" in t]
    max_score = sum(_number(m, f"{path}: a test's max_score") for m in maxima) if maxima else None
    if max_score is None and "max_score" in results:
        max_score = _number(results["max_score"], f"{path}: max_score")
    return ModuleScore(student, course_name(str(assignment)), score, max_score, str(path))


def read_module_results(
    results_dir: str | os.PathLike, assignment: str | None = None
) -> dict[tuple[str, str], ModuleScore]:
    """``{(student, assignment): ModuleScore}`` from a folder of the grader's ``results.json``."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise FileNotFoundError(f"{results_dir}: no such results folder")
    scores: dict[tuple[str, str], ModuleScore] = {}
    for student_dir in sorted(p for p in results_dir.iterdir() if p.is_dir()):
        found = []
        if (student_dir / "results.json").is_file():
            found.append(_module_score(student_dir / "results.json", student_dir.name, assignment))
        for path in sorted(student_dir.glob("*/results.json")):
            found.append(_module_score(path, student_dir.name, path.parent.name))
        for score in found:
            if assignment and score.assignment != course_name(assignment):
                continue
            key = (score.student, score.assignment)
            if key in scores:
                raise ValueError(
                    f"{score.source}: a second result for {key} ({scores[key].source})"
                )
            scores[key] = score
    return scores


def read_batch_sheet(
    sheet: str | os.PathLike, assignment: str | None = None
) -> dict[tuple[str, str], ModuleScore]:
    """``{(student, assignment): ModuleScore}`` from the CSV of ``python -m autograder batch``
    (student ids made nbgrader ids, as :func:`collect` makes them)."""
    sheet = Path(sheet)
    scores: dict[tuple[str, str], ModuleScore] = {}
    with sheet.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if not row.get("results"):
                continue  # not graded (the sheet's status says why)
            student = nbgrader_student_id(row["student"])
            for name in row.get("assignments", "").split():
                if assignment and name != course_name(assignment):
                    continue
                score = _number(float(row.get(name) or 0.0), f"{sheet}: {name}")
                maximum = _number(float(row.get(f"{name}_max") or 0.0), f"{sheet}: {name}_max")
                key = (student, course_name(name))
                if key in scores:
                    raise ValueError(f"{sheet}: two rows for {key}")
                scores[key] = ModuleScore(
                    student, key[1], score, maximum, f"{sheet}:{row['submission']}"
                )
    return scores


def read_gradebook(
    gradebook: str | os.PathLike, assignment: str | None = None
) -> dict[tuple[str, str], NotebookScore]:
    """``{(student, assignment): NotebookScore}`` for every student and assignment of a gradebook.

    A student without a submission scores 0, as in ``nbgrader export``.
    """
    from nbgrader.api import Gradebook, MissingEntry

    gradebook = Path(gradebook)
    if not gradebook.is_file():
        raise FileNotFoundError(f"{gradebook}: no such gradebook (nbgrader's gradebook.db)")
    scores: dict[tuple[str, str], NotebookScore] = {}
    with Gradebook(f"sqlite:///{gradebook.resolve()}", COURSE_ID) as gb:
        for entry in gb.assignments:
            name = course_name(entry.name)
            if assignment and name != course_name(assignment):
                continue
            for student in gb.students:
                try:
                    submission = gb.find_submission(entry.name, student.id)
                except MissingEntry:
                    scores[(student.id, name)] = NotebookScore(
                        student.id,
                        name,
                        entry.name,
                        False,
                        0.0,
                        0.0,
                        0.0,
                        float(entry.max_score),
                        False,
                    )
                    continue
                auto = manual = 0.0
                for notebook in submission.notebooks:
                    # A grade cell that is also a solution cell is a manually graded answer
                    # (nbgrader scores an untouched one 0 by itself); a task cell is manual too.
                    answers = {cell.name for cell in notebook.notebook.solution_cells}
                    tasks = {cell.name for cell in notebook.notebook.task_cells}
                    for grade in notebook.grades:
                        if grade.name in answers or grade.name in tasks:
                            manual += grade.score
                        else:
                            auto += grade.score
                scores[(student.id, name)] = NotebookScore(
                    student.id,
                    name,
                    entry.name,
                    True,
                    float(auto),
                    float(manual),
                    float(submission.score),
                    float(submission.max_score),
                    bool(submission.needs_manual_grade),
                )
    return scores


EXPORT_COLUMNS = (
    "student_id",
    "assignment",
    "nbgrader_assignment",
    "module_score",
    "module_max_score",
    "notebook_autograded_score",
    "notebook_manual_score",
    "notebook_score",
    "notebook_max_score",
    "notebook_needs_manual_grade",
    "total_score",
    "total_max_score",
)


def _cell(value: float | bool | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    return value


def export_grades(
    gradebook: str | os.PathLike,
    results_dir: str | os.PathLike,
    out: str | os.PathLike,
    *,
    assignment: str | None = None,
) -> list[dict[str, str]]:
    """Write the joined grades CSV (:data:`EXPORT_COLUMNS`, sorted by student and assignment).

    A missing side stays blank and counts 0 in ``total_score``; ``total_max_score`` adds the
    maxima that are known.
    """
    if Path(results_dir).suffix.lower() == ".csv":
        modules = read_batch_sheet(results_dir, assignment)
    else:
        modules = read_module_results(results_dir, assignment)
    notebooks = read_gradebook(gradebook, assignment)
    rows: list[dict[str, str]] = []
    for key in sorted(set(modules) | set(notebooks)):
        module, notebook = modules.get(key), notebooks.get(key)
        scores = [module.score if module else None, notebook.score if notebook else None]
        maxima = [module.max_score if module else None, notebook.max_score if notebook else None]
        row = {
            "student_id": key[0],
            "assignment": key[1],
            "nbgrader_assignment": notebook.nbgrader_assignment if notebook else None,
            "module_score": module.score if module else None,
            "module_max_score": module.max_score if module else None,
            "notebook_autograded_score": notebook.autograded_score if notebook else None,
            "notebook_manual_score": notebook.manual_score if notebook else None,
            "notebook_score": notebook.score if notebook else None,
            "notebook_max_score": notebook.max_score if notebook else None,
            "notebook_needs_manual_grade": notebook.needs_manual_grade if notebook else None,
            "total_score": sum(s for s in scores if s is not None),
            "total_max_score": sum(m for m in maxima if m is not None),
        }
        rows.append({column: _cell(row[column]) for column in EXPORT_COLUMNS})
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=EXPORT_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return rows


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m instructor.nbgrader.bridge",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    setup = commands.add_parser("setup", help="make a course folder from notebooks")
    setup.add_argument("--course", type=Path, required=True)
    setup.add_argument("notebooks", nargs="*", type=Path, help="default: assignments/*.ipynb")
    for step in ("release", "autograde", "feedback"):
        sub = commands.add_parser(step, help=f"run the nbgrader {step} step")
        sub.add_argument("--course", type=Path, required=True)
        sub.add_argument("assignment")
        if step != "release":
            sub.add_argument("--student", default=None, help="default: every student")
        if step == "autograde":
            sub.add_argument(
                "--preset",
                default="smoke",
                help="REPLEARN_PRESET for the notebooks (default smoke)",
            )
            sub.add_argument(
                "--impl",
                default=None,
                help="'solution' runs the notebooks on the reference instead of the "
                "module submitted beside them",
            )
    gather = commands.add_parser(
        "collect", help="put a folder of submission zips/folders into submitted/"
    )
    gather.add_argument("--course", type=Path, required=True)
    gather.add_argument("submissions", type=Path)
    export = commands.add_parser("export", help="grades CSV: module scores beside nbgrader's")
    export.add_argument("--gradebook", type=Path, required=True)
    source = export.add_mutually_exclusive_group(required=True)
    source.add_argument("--grades", type=Path, help="the sheet of `python -m autograder batch`")
    source.add_argument("--results-dir", type=Path, help="RESULTS/<student>/results.json")
    export.add_argument("--out", type=Path, required=True)
    export.add_argument("--assignment", default=None)
    args = parser.parse_args(argv)

    try:
        if args.command == "setup":
            notebooks = args.notebooks or sorted((REPO_ROOT / "assignments").glob("*.ipynb"))
            ids = setup_course(args.course, notebooks)
            print(f"course folder {args.course.resolve()}: assignments {', '.join(ids) or 'none'}")
        elif args.command == "release":
            for path in generate_assignment(args.course, args.assignment):
                print(f"released {path}")
        elif args.command == "autograde":
            autograde(
                args.course, args.assignment, args.student, preset=args.preset, impl=args.impl
            )
            print(f"autograded {args.assignment} in {args.course.resolve() / 'autograded'}")
        elif args.command == "feedback":
            for path in generate_feedback(args.course, args.assignment, args.student):
                print(f"feedback {path}")
        elif args.command == "collect":
            placed = collect(args.course, args.submissions)
            for student, folders in placed.items():
                print(f"{student}: {', '.join(f.name for f in folders)}")
            print(f"collected {len(placed)} students into {args.course.resolve() / 'submitted'}")
        else:
            rows = export_grades(
                args.gradebook,
                args.grades or args.results_dir,
                args.out,
                assignment=args.assignment,
            )
            print(f"wrote {args.out} ({len(rows)} rows)")
    except (NbgraderError, ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
