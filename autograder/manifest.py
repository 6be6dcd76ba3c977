"""The submission manifest: what the student's packager writes, and how the grader checks it.

``python -m replearn.submit NAME`` writes ``MANIFEST.json`` beside the student's files in the
submission zip: the sha256 and size of every file, the course package version, and, for every
executed notebook, the run records that ``replearn.notebook.setup()`` and ``Session.finish()``
left in its outputs (which module file the notebook imported, its sha256, the preset, when the
run started and ended).

The grader treats the manifest like any other student file: as evidence to check, never as a
source of trust. :func:`verify` recomputes every hash from the staged files themselves and
compares; the score never depends on what the manifest says. A submission whose manifest does
not match what was submitted is still graded (its code is what it is), with a visible 0-point
"submission integrity" entry and a note at the top of ``results.json`` naming every mismatch,
so that an instructor sees it instead of a silently graded submission; ``python -m autograder
grade --require-manifest`` refuses such a submission (and one without a manifest) instead.

This module holds no torch import: the packager and the grader's parent both read it.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

MANIFEST_NAME = "MANIFEST.json"
FORMAT = "replearn-submission/1"
# Mimetype of the run records that the notebook set-up cell and Session.finish() display; they
# travel in the executed notebook's outputs (a kernel cannot write its notebook's metadata).
RUN_MIMETYPE = "application/vnd.replearn.run+json"
MAX_MANIFEST_BYTES = 1024**2
MAX_NOTEBOOK_BYTES = 200 * 1024**2
_HEX64 = re.compile(r"[0-9a-f]{64}")
INTEGRITY_TEST_NAME = "submission integrity (manifest, hashes, notebook runs)"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# Run records inside an executed notebook
# --------------------------------------------------------------------------------------------


def read_notebook(path: Path, *, max_bytes: int = MAX_NOTEBOOK_BYTES) -> dict:
    """Parse an ``.ipynb`` file (size-capped); raises ``ValueError`` with a readable reason."""
    path = Path(path)
    size = path.stat().st_size
    if size > max_bytes:
        raise ValueError(f"{path.name} is {size} bytes, over the {max_bytes} byte limit")
    try:
        nb = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError):
        raise ValueError(f"{path.name} is not a notebook (not valid JSON)") from None
    if type(nb) is not dict or type(nb.get("cells")) is not list:
        raise ValueError(f"{path.name} is not a notebook (no list of cells)")
    return nb


def _str(value: Any, limit: int = 4096) -> str:
    return value[:limit] if isinstance(value, str) else ""


def run_records(nb: dict) -> list[dict]:
    """The run records of a parsed notebook, in execution order (then cell order).

    Each is a dict with ``event`` ("setup" or "finish"), ``run_id``, ``module``, ``impl``,
    ``module_sha256``, ``preset``, ``time`` and ``execution_count`` (of the cell showing it).
    Anything malformed is skipped: the notebook is student data.
    """
    found: list[tuple[int, int, dict]] = []
    for index, cell in enumerate(nb.get("cells", [])):
        if type(cell) is not dict or cell.get("cell_type") != "code":
            continue
        count = cell.get("execution_count")
        count = count if type(count) is int else -1
        outputs = cell.get("outputs")
        for output in outputs if type(outputs) is list else []:
            if type(output) is not dict:
                continue
            # the data bundle, else the output's metadata (both written by replearn.notebook)
            data, meta = output.get("data"), output.get("metadata")
            record = data.get(RUN_MIMETYPE) if type(data) is dict else None
            if record is None and type(meta) is dict:
                record = meta.get(RUN_MIMETYPE)
            if type(record) is not dict or record.get("event") not in ("setup", "finish"):
                continue
            clean = {
                key: _str(record.get(key))
                for key in ("event", "run_id", "module", "impl", "module_sha256", "preset", "time")
            }
            clean["module_path"] = _str(record.get("module_path"))
            clean["execution_count"] = count
            found.append((count, index, clean))
    return [record for _, _, record in sorted(found, key=lambda item: (item[0], item[1]))]


def executed_code_cells(nb: dict) -> int:
    """How many code cells carry an execution count (0 for a notebook never run)."""
    cells = [c for c in nb.get("cells", []) if type(c) is dict and c.get("cell_type") == "code"]
    return sum(type(c.get("execution_count")) is int for c in cells)


def last_run(nb: dict) -> tuple[dict | None, dict | None]:
    """The latest set-up record and the finish record of the same run (None when missing)."""
    records = run_records(nb)
    setups = [r for r in records if r["event"] == "setup"]
    if not setups:
        return None, None
    setup = setups[-1]
    finishes = [
        r
        for r in records
        if r["event"] == "finish" and r["run_id"] and r["run_id"] == setup["run_id"]
    ]
    return setup, (finishes[-1] if finishes else None)


def notebook_module(nb: dict) -> str | None:
    """The module named by the notebook's ``notebook.setup("<module>")`` call (first 3 code cells)."""
    code = [c for c in nb.get("cells", []) if type(c) is dict and c.get("cell_type") == "code"]
    for cell in code[:3]:
        source = cell.get("source")
        text = "".join(source) if type(source) is list else _str(source, 100_000)
        match = re.search(r"notebook\.setup\(\s*[\"'](\w+)[\"']", text)
        if match:
            return match.group(1)
    return None


def check_notebook_run(nb: dict, name: str, module: str, module_sha256: str) -> list[str]:
    """Problems that make ``nb``'s outputs not evidence of running ``module`` with that hash.

    Empty when the notebook's latest run imported the student's implementation of ``module``
    whose bytes hash to ``module_sha256`` and ran to ``S.finish()``.
    """
    if executed_code_cells(nb) == 0:
        return [f"{name} was never executed (no cell has run): run it top to bottom and save it"]
    setup, finish = last_run(nb)
    if setup is None:
        return [
            f"{name} has no output of its set-up cell (notebook.setup): run the whole notebook "
            "(Run All) with the course package and save it"
        ]
    problems = []
    if setup["module"] != module:
        problems.append(f"{name} ran notebook.setup({setup['module']!r}), not {module!r}")
    if setup["impl"] != "starter":
        problems.append(
            f"{name} last ran against the {setup['impl'] or 'unknown'} implementation "
            f"({setup['module_path'] or 'unknown file'}), not your own module: unset "
            "REPLEARN_IMPL, run it again and save it"
        )
    elif setup["module_sha256"] != module_sha256:
        problems.append(
            f"{name}'s outputs do not come from the submitted {module}.py: the last run imported "
            f"a file with sha256 {setup['module_sha256'][:12] or '?'}..., the submitted one has "
            f"{module_sha256[:12]}... (edited after the run, or another copy); run the notebook "
            "again (Run All) and save it"
        )
    if finish is None:
        problems.append(
            f"{name} did not run to the end of its last run (no output of S.finish()): run all "
            "cells and save the notebook"
        )
    return problems


# --------------------------------------------------------------------------------------------
# Grader side: verify a staged submission
# --------------------------------------------------------------------------------------------


@dataclass
class Verdict:
    """What :func:`verify` found: ``status`` is "verified", "failed" or "absent"."""

    status: str
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def text(self) -> str:
        if self.status == "absent":
            return (
                f"submission integrity: no {MANIFEST_NAME} (not packaged with "
                "`python -m replearn.submit`); graded as submitted, nothing to verify"
            )
        if self.status == "verified":
            return "submission integrity: verified (" + "; ".join(self.notes) + ")"
        head = (
            f"SUBMISSION INTEGRITY FAILED: {len(self.problems)} problem(s); the files were "
            "graded as submitted, but the submission does not match its manifest:"
        )
        return "\n".join([head, *(f"  - {p}" for p in self.problems), *self.notes])


def _safe_name(name: Any) -> PurePosixPath | None:
    if not isinstance(name, str) or not name or len(name) > 300 or "\\" in name:
        return None
    rel = PurePosixPath(name)
    if rel.is_absolute() or any(part in ("", ".", "..") for part in rel.parts):
        return None
    return rel


def verify(root: Path, modules: set[str]) -> Verdict:
    """Check the staged submission folder ``root`` against its ``MANIFEST.json``.

    ``modules`` are the module names being graded. Every hash is recomputed from ``root``;
    nothing in the manifest is taken on trust, and nothing here raises for hostile input.
    """
    root = Path(root)
    path = root / MANIFEST_NAME
    if not path.is_file():
        return Verdict("absent")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        return Verdict("failed", [f"{MANIFEST_NAME} is over {MAX_MANIFEST_BYTES} bytes"])
    try:
        manifest = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError):
        return Verdict("failed", [f"{MANIFEST_NAME} is not valid JSON"])
    if type(manifest) is not dict or manifest.get("format") != FORMAT:
        return Verdict("failed", [f"{MANIFEST_NAME} is not a {FORMAT} manifest"])

    problems: list[str] = []
    notes: list[str] = []
    module = manifest.get("module")
    if not isinstance(module, str) or module not in modules:
        problems.append(
            f"the manifest is for module {str(module)[:60]!r}, which is not graded here "
            f"({', '.join(sorted(modules)) or 'none'})"
        )
        module = None

    files = manifest.get("files")
    if type(files) is not dict or not files:
        return Verdict("failed", problems + [f"{MANIFEST_NAME} lists no files"])
    listed: dict[str, str] = {}
    for name, entry in list(files.items())[:1000]:
        rel = _safe_name(name)
        digest = entry.get("sha256") if type(entry) is dict else None
        size = entry.get("bytes") if type(entry) is dict else None
        if rel is None or not isinstance(digest, str) or not _HEX64.fullmatch(digest):
            problems.append(f"malformed manifest entry {str(name)[:80]!r}")
            continue
        target = root / rel
        if not target.is_file():
            problems.append(f"{rel} is in the manifest but not in the submission (or was refused)")
            continue
        actual = sha256_file(target)
        listed[str(rel)] = actual
        if actual != digest:
            problems.append(f"{rel} changed after packaging (its sha256 is not the manifest's)")
        elif type(size) is not int or size != target.stat().st_size:
            problems.append(f"{rel}: size differs from the manifest")
    present = sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and p.name != MANIFEST_NAME
    )
    for extra in (p for p in present if p not in listed and p not in files):
        problems.append(f"{extra} was added after packaging (not in the manifest)")

    # The notebooks' own run records must name the submitted module's bytes.
    if module is not None:
        module_file = root / f"{module}.py"
        module_sha = sha256_file(module_file) if module_file.is_file() else ""
        if not module_sha:
            problems.append(f"{module}.py is missing from the submission")
        books = sorted(root.rglob("*.ipynb"))
        declared = manifest.get("notebooks")
        declared = declared if type(declared) is dict else {}
        for book in books:
            rel = book.relative_to(root).as_posix()
            try:
                nb = read_notebook(book)
            except (ValueError, OSError) as error:
                problems.append(str(error))
                continue
            if notebook_module(nb) not in (None, module):
                continue  # a notebook of another assignment: not this manifest's business
            problems += check_notebook_run(nb, rel, module, module_sha)
            setup, finish = last_run(nb)
            claim = declared.get(rel)
            if setup is not None and type(claim) is dict:
                if claim.get("module_sha256") != setup["module_sha256"] or (
                    claim.get("run_id") != setup["run_id"]
                ):
                    problems.append(
                        f"{rel}: the manifest's record of its run is not the notebook's"
                    )
            if setup is not None and finish is not None:
                notes.append(f"{rel} ran {module}.py (preset {setup['preset'] or '?'})")
        if not books:
            notes.append("no notebook submitted")
    version = manifest.get("replearn")
    if isinstance(version, str):
        notes.append(f"packaged with replearn {version[:20]}")
    notes.insert(0, f"{len(listed)} file hashes match")
    return Verdict("failed" if problems else "verified", problems, notes)


def verify_source(source: Path, modules: set[str]) -> Verdict:
    """Stage ``source`` (folder or zip) with the grader's own rules, then :func:`verify` it."""
    from autograder import submission

    scratch = Path(tempfile.mkdtemp(prefix="autograder-manifest-"))
    try:
        staged = submission.stage(Path(source), scratch / "submission", modules)
        return verify(staged.root, modules)
    except Exception as error:  # hostile archives: report, never crash the grading run
        return Verdict("failed", [f"the submission could not be read: {type(error).__name__}"])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def apply(results: dict, verdict: Verdict) -> dict:
    """Put the verdict into a Gradescope results dict: a note on top, and a 0-point test entry.

    The entry (visible, worth nothing) exists only when a manifest was submitted; its status
    is "failed" when the manifest does not match, so a grader cannot miss it.
    """
    from autograder.results import sanitize  # file names in the text come from the student

    results = dict(results)
    text = sanitize(verdict.text())
    output = results.get("output") or ""
    results["output"] = text + ("\n" + output if output else "")
    extra = dict(results.get("extra_data") or {})
    extra["manifest"] = {"status": verdict.status, "problems": verdict.problems[:50]}
    results["extra_data"] = extra
    if verdict.status != "absent":
        tests = [t for t in results.get("tests", []) if t.get("name") != INTEGRITY_TEST_NAME]
        tests.insert(
            0,
            {
                "name": INTEGRITY_TEST_NAME,
                "score": 0.0,
                "max_score": 0.0,
                "status": "passed" if verdict.status == "verified" else "failed",
                "visibility": "visible",
                "output": text,
                "tags": ["integrity"],
            },
        )
        results["tests"] = tests
    return results


def refused(verdict: Verdict) -> dict:
    """The results of a submission refused under ``--require-manifest`` (score 0, the reason)."""
    from autograder import results as results_mod

    data = results_mod.provisional(
        "REFUSED: this course requires a submission made with `python -m replearn.submit` "
        "whose manifest matches its files; nothing was graded."
    )
    if verdict.status == "absent":
        verdict = Verdict(
            "failed", [f"no {MANIFEST_NAME}: package with `python -m replearn.submit`"]
        )
    return apply(data, verdict)
