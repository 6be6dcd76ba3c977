"""The grader's side of the submission manifest: verify a staged submission against it.

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

The manifest's format and the run records it cites are the submission contract
(``replearn.contract.manifest``, ``replearn.contract.notebooks``), shared with the packager.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from replearn.contract.manifest import FORMAT, MANIFEST_NAME, MAX_MANIFEST_BYTES, sha256_file
from replearn.contract.notebooks import check_notebook_run, last_run, notebook_module, read_notebook

_HEX64 = re.compile(r"[0-9a-f]{64}")
INTEGRITY_TEST_NAME = "submission integrity (manifest, hashes, notebook runs)"


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
