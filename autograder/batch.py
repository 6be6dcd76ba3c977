"""Grade a class: one row per submission, every student's results kept; nothing stops the batch.

    python -m autograder batch SUBMISSIONS_DIR --out grades.csv [--assignment auto|NAME]
                               [--jobs N] [--results-dir DIR] [--seed S]

Each entry of ``SUBMISSIONS_DIR`` (a folder or a ``.zip``, one per student) is graded by its own
``python -m autograder grade`` process, on the assignment it holds (``auto``, the default: the
``assignment`` of its ``MANIFEST.json``, else the ``<module>.py`` files it holds), or on the one
named. Its ``results.json`` and the grader's log stay in ``<csv name>_results/<entry name>/``
beside the CSV (``--results-dir`` to choose), so a regrade request can be answered; the entry's
own name keeps ``alice/`` and ``alice.zip`` apart. Every submission gets its own random
hidden-test seed (``--seed`` for one seed for all), written in the CSV: ``python -m autograder
grade ENTRY --seed S`` gives the same grade again.

The CSV: the entry, the student (the manifest's ``student``, else the entry's name), the
assignments, score and maximum, then per assignment its score and maximum, the integrity of the
manifest (``verified``, ``failed``, ``absent``), flags, the seed, the grader's status, the
time and the results file. Flags point a human at what the score alone does not show: a module
identical to the reference (byte for byte, or the same code after formatting), one holding the
reference's solution markers, the starter left unchanged, and modules identical to another
submission's (same code after formatting).
"""

from __future__ import annotations

import ast
import csv
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from autograder import REPO_ROOT, lifeline
from replearn.contract import assignments
from replearn.contract.markers import SOLUTION_BEGIN

MAX_STUDENT_CHARS = 120


@dataclass
class Entry:
    """One submission of the batch and what was learned about it before grading."""

    path: Path
    student: str
    targets: list = field(default_factory=list)
    modules: dict[str, str] = field(default_factory=dict)  # module -> source text
    problem: str = ""  # why it cannot be graded ("" when it can)


def entries_of(folder: Path) -> list[Path]:
    """The submissions of ``folder``: its folders and ``.zip`` files (hidden names skipped)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder of submissions")
    found = sorted(
        p
        for p in folder.iterdir()
        if not p.name.startswith(".") and (p.is_dir() or p.suffix.lower() == ".zip")
    )
    if not found:
        raise FileNotFoundError(
            f"{folder} holds no submission: put one folder or .zip per student in it (as "
            "`python -m replearn.submit` writes them, or a Gradescope/LMS download unpacked)"
        )
    return found


def _clean(text: object) -> str:
    """A manifest's free text as one printable CSV cell (the manifest is the student's)."""
    value = "".join(ch for ch in str(text) if ch.isprintable())[:MAX_STUDENT_CHARS].strip()
    return value.lstrip("=+-@\t") or value  # no spreadsheet formulas


def read_manifest(root: Path) -> dict:
    """The staged submission's ``MANIFEST.json`` as a dict ({} when absent or unreadable)."""
    from replearn.contract.manifest import MANIFEST_NAME, MAX_MANIFEST_BYTES

    path = Path(root) / MANIFEST_NAME
    if not path.is_file() or path.stat().st_size > MAX_MANIFEST_BYTES:
        return {}
    try:
        loaded = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError):
        return {}
    return loaded if type(loaded) is dict else {}


def identity(root: Path, path: Path) -> str:
    """Who submitted: the manifest's ``student`` (``replearn.submit --student``), else the
    submission's file or folder name (what an LMS or Gradescope export names it after)."""
    claimed = read_manifest(root).get("student")
    if isinstance(claimed, str) and _clean(claimed):
        return _clean(claimed)
    path = Path(path)
    return _clean(path.stem if path.suffix.lower() == ".zip" else path.name)


def inspect_entry(path: Path, assignment: str) -> Entry:
    """Stage ``path`` with the grading rules; read its manifest's claims and its modules."""
    from autograder import submission

    everything = assignments.resolve("all")
    entry = Entry(path, student=_clean(path.stem if path.suffix.lower() == ".zip" else path.name))
    scratch = Path(tempfile.mkdtemp(prefix="autograder-batch-"))
    try:
        staged = submission.stage(path, scratch / "s", {a.module for a in everything})
        manifest = read_manifest(staged.root)
        entry.student = identity(staged.root, path)
        if assignment != "auto":
            entry.targets = assignments.resolve(assignment)
        else:
            claimed = [a for a in everything if manifest.get("assignment") in (a.name, a.module)]
            held = [a for a in everything if (staged.root / f"{a.module}.py").is_file()]
            entry.targets = claimed or held
            if not entry.targets:
                entry.problem = (
                    "holds no assignment module ("
                    + ", ".join(f"{a.module}.py" for a in everything)
                    + ") and no manifest naming one; grade it with --assignment NAME"
                )
        for a in entry.targets:
            module = staged.root / f"{a.module}.py"
            if module.is_file():
                entry.modules[a.module] = module.read_text(encoding="utf-8", errors="replace")
    except (OSError, ValueError) as exc:
        entry.problem = f"cannot be read: {type(exc).__name__}: {str(exc)[:200]}"
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return entry


def code_fingerprint(source: str) -> str:
    """The same for two modules whose code is the same (comments, blank lines and formatting
    aside); the bytes' hash when the text does not parse."""
    try:
        text = ast.dump(ast.parse(source), annotate_fields=False)
    except SyntaxError:
        text = source
    return hashlib.sha256(text.encode()).hexdigest()


def flags(entries: list[Entry]) -> dict[Path, list[str]]:
    """Per entry, what a human should look at (see the module doc)."""
    reference, starter = {}, {}
    for a in assignments.resolve("all"):
        if a.reference_path.is_file():
            text = a.reference_path.read_text(encoding="utf-8")
            reference[a.module] = (text, code_fingerprint(text))
        path = assignments.starter_root() / f"{a.module}.py"
        if path.is_file():
            starter[a.module] = code_fingerprint(path.read_text(encoding="utf-8"))
    found: dict[Path, list[str]] = {e.path: [] for e in entries}
    groups: dict[tuple[str, str], list[Entry]] = {}
    for e in entries:
        for module, text in e.modules.items():
            print_ = code_fingerprint(text)
            ref_text, ref_print = reference.get(module, (None, None))
            if text == ref_text:
                found[e.path].append(f"{module}.py identical to the reference")
            elif print_ == ref_print:
                found[e.path].append(f"{module}.py the reference's code, reformatted")
            elif SOLUTION_BEGIN in text:
                found[e.path].append(f"{module}.py holds the reference's solution markers")
            if print_ == starter.get(module):
                found[e.path].append(f"{module}.py is the starter code, unchanged")
            elif print_ != ref_print:
                groups.setdefault((module, print_), []).append(e)
    for (module, _), same in groups.items():
        for e in same:
            others = [o.path.name for o in same if o is not e]
            if others:
                found[e.path].append(f"{module}.py same code as {', '.join(sorted(others)[:5])}")
    return found


def _score_columns(targets) -> list[str]:
    return [column for a in targets for column in (a.name, f"{a.name}_max")]


def run_batch(
    folder: Path,
    out: Path,
    *,
    jobs: int = 1,
    assignment: str = "auto",
    timeout: float | None = None,
    results_dir: Path | None = None,
    seed: int | None = None,
) -> int:
    """Grade every submission of ``folder`` and write the CSV ``out`` (see the module doc)."""
    out = Path(out)
    paths = entries_of(folder)
    results_dir = Path(results_dir or out.with_name(out.stem + "_results"))
    results_dir.mkdir(parents=True, exist_ok=True)
    entries = [inspect_entry(p, assignment) for p in paths]
    marks = flags(entries)
    graded = [a for a in assignments.resolve("all") if any(a in e.targets for e in entries)]

    def one(entry: Entry) -> dict:
        folder_ = results_dir / entry.path.name
        folder_.mkdir(parents=True, exist_ok=True)
        res, log = folder_ / "results.json", folder_ / "grade.log"
        run_seed = seed if seed is not None else secrets.randbits(62)
        row = {
            "submission": entry.path.name,
            "student": entry.student,
            "assignments": " ".join(a.name for a in entry.targets),
            "score": 0.0,
            "max_score": sum(_max_points(a) for a in entry.targets),
            "integrity": "",
            "flags": "; ".join(marks[entry.path]),
            "seed": run_seed,
            "status": "ok",
            "seconds": 0.0,
            "results": str(res),
        }
        if entry.problem:
            row.update(status=f"not graded: the submission {entry.problem}", results="")
            return row
        limit = timeout or sum(a.budget_s for a in entry.targets) + 120
        cmd = [
            sys.executable,
            "-m",
            "autograder",
            "grade",
            str(entry.path.resolve()),
            "--assignment",
            ",".join(a.name for a in entry.targets),
            "--results",
            str(res.resolve()),
            "--seed",
            str(run_seed),
        ]
        start = time.monotonic()
        # A grader stopped at the time limit is killed before it can remove its staging
        # folder: give each its own temporary folder and remove that here, whatever happened.
        scratch = Path(tempfile.mkdtemp(prefix="autograder-grade-"))
        env = {**os.environ, lifeline.PARENT_ENV: str(os.getpid()), "TMPDIR": str(scratch)}
        try:
            with open(log, "w", encoding="utf-8") as fh:
                proc = subprocess.run(
                    cmd,
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    timeout=limit,
                    env=env,  # the lifeline makes the grader die with us
                    cwd=REPO_ROOT,
                )
            if proc.returncode != 0:
                row["status"] = f"grader exited {proc.returncode} (see {log})"
        except subprocess.TimeoutExpired:
            row["status"] = f"stopped after {limit:.0f} s"
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        row["seconds"] = round(time.monotonic() - start, 1)
        try:
            data = json.loads(res.read_text())
        except (OSError, ValueError) as exc:
            row["status"] = f"no results ({type(exc).__name__}; see {log})"
            return row
        row["score"], row["max_score"] = data.get("score", 0.0), data.get("max_score", 0.0)
        row["integrity"] = ((data.get("extra_data") or {}).get("manifest") or {}).get("status", "")
        for a in entry.targets:
            mine = [t for t in data.get("tests", []) if a.name in t.get("tags", [])]
            row[a.name] = round(sum(t["score"] for t in mine), 4)
            row[f"{a.name}_max"] = sum(t["max_score"] for t in mine)
        errors = [
            t["name"]
            for t in data.get("tests", [])
            if (t.get("extra_data") or {}).get("grader_error")
        ]
        if errors:
            row["status"] = f"grader's environment failed {len(errors)} check(s): regrade"
        return row

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        rows = list(pool.map(one, entries))
    fields = [
        "submission",
        "student",
        "assignments",
        "score",
        "max_score",
        *_score_columns(graded),
        "integrity",
        "flags",
        "seed",
        "status",
        "seconds",
        "results",
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    flagged = sum(bool(r["flags"]) for r in rows)
    failed = sum(r["status"] != "ok" for r in rows)
    print(
        f"graded {len(rows)} submissions -> {out} (results in {results_dir}/); "
        f"{flagged} flagged, {failed} not graded cleanly"
    )
    return 0


def _max_points(a) -> float:
    """The points of an assignment's tests (public and hidden), read from the test files."""
    total = 0.0
    for path in sorted(a.tests_dir.glob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                weight = 1.0
                for deco in node.decorator_list:
                    if (
                        isinstance(deco, ast.Call)
                        and ast.unparse(deco.func).endswith("mark.weight")
                        and deco.args
                        and isinstance(deco.args[0], ast.Constant)
                    ):
                        weight = float(deco.args[0].value)
                total += weight
    return total
