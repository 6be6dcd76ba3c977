"""Build the submission zip of one assignment, refusing what the grader would not accept.

    python -m replearn.submit NAME [--out FILE] [--notebook PATH ...] [--artefact PATH ...]
                                   [--root COURSE] [--student-dir FOLDER]

or, from the last cell of a notebook, ``S.package()``. The zip holds

* the student's module ``<module>.py`` (from ``starter_code/``, or the folder named by
  ``--student-dir`` / ``$REPLEARN_STUDENT_DIR``);
* the executed notebooks of the assignment (those whose set-up cell calls
  ``notebook.setup("<module>")``: found in the course's ``assignments/``, else beside the module
  or in the working directory, or named with ``--notebook``);
* the artefacts the assignment asks for (declared in ``submission.json`` beside its tests,
  ``replearn.contract.artefacts``, e.g. a trained encoder's weights), in safetensors format
  only, each under its size limit;
* ``MANIFEST.json``: sha256 and size of every file, the course package version, the preset and
  time of the notebooks' last run, and which module file (by sha256) each notebook ran.

Packaging refuses, listing every reason at once: a missing module, notebook or artefact; a
notebook that was never executed, did not run to ``S.finish()``, ran the reference solution, or
whose last run imported a module file with other bytes than the one being submitted ("its
outputs do not come from the submitted code"); a pickle artefact; a file over the grader's size
limits or of a type the grader drops. It only reads the student's files and writes one new zip
(atomically; it never overwrites anything but an earlier submission zip), so nothing of the
student's work is modified or lost. Every rule it applies is the grader's own, from the
submission contract (``replearn.contract``).
"""

from __future__ import annotations

import argparse
import ast
import datetime as _dt
import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from replearn import __version__
from replearn import impl as impl_mod
from replearn.contract import assignments
from replearn.contract import files as accepted  # what the grader accepts, and its limits
from replearn.contract.artefacts import declared, load_safetensors
from replearn.contract.manifest import FORMAT, MANIFEST_NAME, sha256_file
from replearn.contract.notebooks import (
    check_notebook_run,
    last_run,
    notebook_answers,
    notebook_module,
    read_notebook,
)

__all__ = [
    "SubmissionError",
    "Submission",
    "student_module_path",
    "find_notebooks",
    "collect",
    "package",
    "save_weights",
    "main",
]


class SubmissionError(ValueError):
    """The submission cannot be packaged as it is; the message lists every reason and the fix."""


@dataclass
class Submission:
    """What :func:`collect` gathered: ``files`` maps names inside the zip to the files on disk."""

    name: str  # assignment name
    module: str
    files: dict[str, Path]
    manifest: dict
    warnings: list[str] = field(default_factory=list)
    path: Path | None = None  # the zip, once written

    def describe(self) -> str:
        """What was packed, one file a line, then the warnings."""
        last = self.manifest.get("last_run") or "unknown"
        lines = [f"wrote {self.path}: {self.name} ({self.module}.py, notebooks last run {last})"]
        for arcname, entry in self.manifest["files"].items():
            lines.append(
                f"  {arcname:<40} {entry['bytes']:>11} bytes  sha256 {entry['sha256'][:16]}"
            )
        lines += [f"warning: {w}" for w in self.warnings]
        lines.append(
            "Upload this zip as your course instructs. The grader re-checks every hash in it, "
            "runs your code itself on CPU and never trusts a printed number."
        )
        return "\n".join(lines)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------------------------
# What the assignment asks for
# --------------------------------------------------------------------------------------------


def _resolve_name(name: str) -> tuple[str, str]:
    """Assignment name or alias (``03``, ``pretext_tasks``) -> (assignment name, module name)."""
    try:
        target = assignments.resolve(name)[0] if name != "all" else None
    except KeyError:
        target = None
    if target is not None:
        return target.name, target.module
    if name.isidentifier():
        return name, name
    raise SubmissionError(f"{name!r} is not an assignment name (e.g. pretext_tasks or 03)")


# --------------------------------------------------------------------------------------------
# Where the student's files are
# --------------------------------------------------------------------------------------------


def student_module_path(
    module: str, *, root: str | os.PathLike | None = None, student_dir=None
) -> Path:
    """The student's ``<module>.py``: in ``student_dir`` (or ``$REPLEARN_STUDENT_DIR``), else in
    the course folder's ``starter_code/``. Never the reference solution."""
    folder = student_dir or os.environ.get(impl_mod.STUDENT_DIR_ENV) or None
    if folder is not None:
        path = Path(folder).expanduser().resolve() / f"{module}.py"
    else:
        try:
            path = impl_mod.find_root(root) / "starter_code" / f"{module}.py"
        except impl_mod.ImplError as error:
            raise SubmissionError(str(error)) from None
    if not path.is_file():
        raise SubmissionError(
            f"missing required file {path}: your {module}.py is not there; run this in the "
            "course folder, or name the folder that holds it with --student-dir"
        )
    return path


def _course_root(root) -> Path | None:
    try:
        return impl_mod.find_root(root)
    except impl_mod.ImplError:
        return None


def _read_notebook(path: Path) -> dict | None:
    try:
        return read_notebook(path)
    except (ValueError, OSError):
        return None


def find_notebooks(module: str, folders: list[Path]) -> tuple[list[Path], list[str]]:
    """Notebooks in ``folders`` whose set-up cell names ``module``; and the problems found.

    Two different files with the same name in two folders are a problem (which one is the
    student's?), never a silent pick.
    """
    by_name: dict[str, list[Path]] = {}
    seen: set[Path] = set()
    for folder in folders:
        for path in sorted(Path(folder).glob("*.ipynb")) if Path(folder).is_dir() else []:
            path = path.resolve()
            if path in seen:
                continue
            seen.add(path)
            nb = _read_notebook(path)
            if nb is not None and notebook_module(nb) == module:
                by_name.setdefault(path.name, []).append(path)
    chosen, problems = [], []
    for name, paths in sorted(by_name.items()):
        distinct = {p.read_bytes() for p in paths}
        if len(distinct) > 1:
            problems.append(
                f"two different copies of {name}: {', '.join(map(str, paths))}; name the one to "
                "submit with --notebook PATH"
            )
        chosen.append(paths[0])
    return chosen, problems


# --------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------


def _notebook_warnings(nb: dict, name: str) -> list[str]:
    """Things worth knowing that do not block a submission: errors, unanswered questions."""
    warnings = []
    cells = [c for c in nb.get("cells", []) if type(c) is dict and c.get("cell_type") == "code"]
    errors = sum(
        any(type(o) is dict and o.get("output_type") == "error" for o in c.get("outputs") or [])
        for c in cells
    )
    if errors:
        warnings.append(f"{name}: {errors} cell(s) ended with an error")
    counts = [c.get("execution_count") for c in cells if type(c.get("execution_count")) is int]
    if counts != sorted(counts):
        warnings.append(
            f"{name}: cells were run out of order; Restart & Run All makes outputs match the code"
        )
    answers = notebook_answers(nb, name)
    blank = [a.grade_id for a in answers if not a.text]
    if blank:
        warnings.append(f"{name}: {len(blank)} written answer(s) still empty: {', '.join(blank)}")
    return warnings


def _check_artefact(path: Path, max_bytes: int) -> str | None:
    try:
        load_safetensors(path, max_bytes=max_bytes)  # the grader's own reader
    except ValueError as error:
        return f"artefact {error}"
    except ImportError:  # safetensors missing: the size check still applies
        if path.stat().st_size > max_bytes:
            return f"artefact {path.name} is over the {max_bytes} byte limit"
    return None


def collect(
    name: str,
    *,
    root: str | os.PathLike | None = None,
    student_dir: str | os.PathLike | None = None,
    notebooks: list[str | os.PathLike] | None = None,
    artefacts: list[str | os.PathLike] | None = None,
    expect_run_id: str | None = None,
) -> Submission:
    """Gather and check the files of a submission; raises :class:`SubmissionError` listing
    every problem. ``expect_run_id``: one notebook must hold this run's records (used by
    ``Session.package()``, so that an unsaved notebook is caught)."""
    assignment, module = _resolve_name(name)
    try:
        asked = declared(module)
    except ValueError as error:
        raise SubmissionError(str(error)) from None
    module_path = student_module_path(module, root=root, student_dir=student_dir)
    module_sha = sha256_file(module_path)
    course = _course_root(root)
    problems: list[str] = []
    warnings: list[str] = []
    files: dict[str, Path] = {f"{module}.py": module_path}
    try:
        ast.parse(module_path.read_bytes(), filename=str(module_path))
    except SyntaxError as error:
        warnings.append(f"{module}.py does not parse (line {error.lineno}: {error.msg})")

    # ---- notebooks
    if notebooks:
        books = [Path(p).expanduser().resolve() for p in notebooks]
        problems += [f"missing required file {p}" for p in books if not p.is_file()]
        books = [p for p in books if p.is_file()]
    else:  # the course's own notebooks; beside the module or here only when it has none
        folders = [course / "assignments"] if course is not None else []
        books, found_problems = find_notebooks(module, folders)
        if not books:
            folders += [module_path.parent, Path.cwd()]
            books, found_problems = find_notebooks(module, folders)
        problems += found_problems
        if not books:
            problems.append(
                f"missing required file: no notebook of {module} (one whose set-up cell calls "
                f'notebook.setup("{module}")) in {", ".join(str(f) for f in folders)}; name it '
                "with --notebook PATH"
            )
    runs: dict[str, dict] = {}
    for book in books:
        nb = _read_notebook(book)
        if nb is None:
            problems.append(f"{book} is not a readable notebook")
            continue
        if notebook_module(nb) not in (None, module):
            problems.append(f"{book.name} is the notebook of {notebook_module(nb)}")
            continue
        problems += check_notebook_run(nb, book.name, module, module_sha)
        warnings += _notebook_warnings(nb, book.name)
        setup, finish = last_run(nb)
        if setup is not None:
            runs[book.name] = {
                "run_id": setup["run_id"],
                "module_sha256": setup["module_sha256"],
                "preset": setup["preset"],
                "started": setup["time"],
                "finished": finish["time"] if finish else None,
            }
        if book.name in files:
            problems.append(f"two notebooks named {book.name}")
        files[book.name] = book
    if expect_run_id and books and not any(r["run_id"] == expect_run_id for r in runs.values()):
        problems.append(
            "the notebook file on disk does not hold this run's outputs yet: save the notebook "
            "(Ctrl+S or File > Save) and run this cell again"
        )

    # ---- artefacts
    given = {Path(p).name: Path(p).expanduser().resolve() for p in artefacts or []}
    search = list(dict.fromkeys([module_path.parent, *(b.parent for b in books), Path.cwd()]))
    for art_name, rule in asked.items():
        path = given.pop(art_name, None)
        if path is None:
            hits = [f / art_name for f in search if (f / art_name).is_file()]
            if len({h.read_bytes() for h in hits}) > 1:
                problems.append(
                    f"two different copies of {art_name}: {', '.join(map(str, hits))}; name "
                    "the one to submit with --artefact PATH"
                )
            path = hits[0] if hits else None
        if path is None or not path.is_file():
            stem = Path(art_name).stem
            pickles = [f / (stem + s) for f in search for s in accepted.PICKLE_SUFFIXES]
            pickled = next((p for p in pickles if p.is_file()), None)
            hint = (
                f"; found {pickled}, a pickle file the grader never loads: save the weights "
                "with replearn.submit.save_weights(model, path) instead"
                if pickled
                else ""
            )
            what = f" ({rule['what']})" if rule.get("what") else ""
            problems.append(f"missing required file {art_name}{what}{hint}")
            continue
        error = _check_artefact(path, int(rule["max_bytes"]))
        if error:
            problems.append(error)
        files[art_name] = path
    for art_name, path in given.items():  # extra artefacts the student chose to add
        if path.suffix in accepted.PICKLE_SUFFIXES or path.suffix != ".safetensors":
            problems.append(
                f"{art_name}: only safetensors artefacts are accepted (pickle files can run code "
                "when loaded); save with replearn.submit.save_weights(model, path)"
            )
            continue
        error = _check_artefact(path, accepted.MAX_FILE_BYTES)
        if error:
            problems.append(error)
        files[art_name] = path

    # ---- what the grader would drop, and the size limits
    total = 0
    for arcname, path in files.items():
        size = path.stat().st_size
        total += size
        reason = accepted.why_refused(arcname, size, {module})
        if reason:
            problems.append(f"{arcname}: the grader would drop it ({reason})")
        if arcname == f"{module}.py" and size > accepted.MAX_WORKER_FILE_BYTES:
            problems.append(
                f"{arcname} is {size} bytes, over the {accepted.MAX_WORKER_FILE_BYTES} byte limit for code"
            )
    if total > accepted.MAX_TOTAL_BYTES:
        problems.append(
            f"the submission is {total} bytes, over the {accepted.MAX_TOTAL_BYTES} byte limit"
        )
    if len(files) + 1 > accepted.MAX_FILES:
        problems.append(f"{len(files)} files is over the limit of {accepted.MAX_FILES}")
    if problems:
        raise SubmissionError(
            f"cannot package {assignment}:\n  - " + "\n  - ".join(dict.fromkeys(problems))
        )

    finished = [r["finished"] for r in runs.values() if r.get("finished")]
    record = {
        "format": FORMAT,
        "assignment": assignment,
        "module": module,
        "replearn": __version__,
        "created": _now(),
        "preset": sorted({r["preset"] for r in runs.values()}) or None,
        "last_run": max(finished) if finished else None,
        "files": {
            arcname: {"sha256": sha256_file(path), "bytes": path.stat().st_size}
            for arcname, path in sorted(files.items())
        },
        "notebooks": runs,
        "artefacts": sorted(asked),
    }
    return Submission(assignment, module, files, record, warnings)


# --------------------------------------------------------------------------------------------
# Writing the zip
# --------------------------------------------------------------------------------------------


def _is_submission_zip(path: Path) -> bool:
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            data = json.loads(archive.read(MANIFEST_NAME))
        return type(data) is dict and data.get("format") == FORMAT
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return False


def package(
    name: str,
    *,
    out: str | os.PathLike | None = None,
    root: str | os.PathLike | None = None,
    student_dir: str | os.PathLike | None = None,
    notebooks: list[str | os.PathLike] | None = None,
    artefacts: list[str | os.PathLike] | None = None,
    expect_run_id: str | None = None,
    student: str | None = None,
) -> Submission:
    """Check and write the submission zip of assignment ``name``; returns what was packed.

    ``out`` defaults to ``submissions/<module>_submission.zip`` in the course folder (else the
    working directory). ``student`` (default ``$REPLEARN_STUDENT``) goes into the manifest as
    who submitted (your name or student id, as your course asks), which the instructor's grade
    sheet shows. Raises :class:`SubmissionError` and writes nothing when a check fails.
    """
    sub = collect(
        name,
        root=root,
        student_dir=student_dir,
        notebooks=notebooks,
        artefacts=artefacts,
        expect_run_id=expect_run_id,
    )
    student = (student if student is not None else os.environ.get("REPLEARN_STUDENT", "")).strip()
    if len(student) > 120 or not all(ch.isprintable() for ch in student):
        raise SubmissionError("--student must be one line of at most 120 printable characters")
    if student:
        sub.manifest["student"] = student
    if out is None:
        base = _course_root(root) or Path.cwd()
        out = base / "submissions" / f"{sub.module}_submission.zip"
    out = Path(out).expanduser().resolve()
    if out.suffix != ".zip":
        raise SubmissionError(f"--out {out} must end in .zip")
    if out in {p.resolve() for p in sub.files.values()}:
        raise SubmissionError(f"--out {out} is one of the files being packaged")
    if out.exists() and not _is_submission_zip(out):
        raise SubmissionError(
            f"{out} exists and is not an earlier submission zip; choose another --out (nothing "
            "of yours is overwritten)"
        )
    payload = {arcname: path.read_bytes() for arcname, path in sub.files.items()}
    for arcname, data in payload.items():  # a file edited while packing would break the hashes
        if hashlib.sha256(data).hexdigest() != sub.manifest["files"][arcname]["sha256"]:
            raise SubmissionError(f"{arcname} changed while packaging; run the command again")
    payload[MANIFEST_NAME] = (json.dumps(sub.manifest, indent=1) + "\n").encode()
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        accepted.write_deterministic_zip(payload, tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    sub.path = out
    return sub


def save_weights(weights, path: str | os.PathLike, *, max_bytes: int | None = None) -> Path:
    """Save a module's or a state dict's tensors as safetensors (never pickle) for submission,
    atomically: :func:`replearn.train.save_weights`, imported on first use so that
    ``python -m replearn.submit`` starts without torch."""
    from replearn.train import save_weights as save

    return save(weights, path, max_bytes=max_bytes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m replearn.submit",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("name", help="assignment name or alias, e.g. pretext_tasks or 03")
    parser.add_argument("--out", type=Path, help="the zip to write")
    parser.add_argument("--root", type=Path, help="course folder (holds starter_code/)")
    parser.add_argument("--student-dir", type=Path, help="folder holding your <module>.py")
    parser.add_argument("--notebook", action="append", type=Path, help="an executed notebook")
    parser.add_argument("--artefact", action="append", type=Path, help="a .safetensors file")
    parser.add_argument(
        "--student", help="your name or student id, as your course asks (default $REPLEARN_STUDENT)"
    )
    args = parser.parse_args(argv)
    try:
        sub = package(
            args.name,
            out=args.out,
            root=args.root,
            student_dir=args.student_dir,
            notebooks=args.notebook,
            artefacts=args.artefact,
            student=args.student,
        )
    except SubmissionError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(sub.describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())
