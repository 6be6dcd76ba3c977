"""Stage a submission (folder or zip) into a private folder, keeping only safe file names.

Only plain files with whitelisted extensions are kept, at bounded sizes; symlinks, paths that
escape the folder, pytest configuration (``conftest.py``, ``pytest.ini``), interpreter hooks
(``sitecustomize.py``, ``*.pth``) and modules that would shadow an installed package
(``torch.py``) are dropped and listed in the notes shown to the student. The rules and limits
are the submission contract (``replearn.contract.files.why_refused``), which the student's
packager (``replearn.submit``) applies up front.

:func:`written_answers` exports the free-response answers of a submission's notebooks (nbgrader
"manually graded answer" cells, ``replearn.contract.notebooks.notebook_answers``) to one
Markdown document for the people who grade them.
"""

from __future__ import annotations

import os
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from replearn.contract.files import (
    MAX_FILE_BYTES,
    MAX_FILES,
    MAX_TOTAL_BYTES,
    MAX_WORKER_FILE_BYTES,
    SKIP_DIRS,
    WORKER_SUFFIXES,
    why_refused,
)
from replearn.contract.notebooks import Answer, notebook_answers


@dataclass
class StagedSubmission:
    root: Path  # private copy (root-only when grading as root)
    worker_files: list[str] = field(default_factory=list)  # relative paths a worker receives
    notes: list[str] = field(default_factory=list)


def _check_name(rel: PurePosixPath, size: int, own: set[str], notes: list[str]) -> bool:
    reason = why_refused(rel, size, own)
    if reason is None:
        return True
    silent = (
        rel.is_absolute()
        or ".." in rel.parts
        or any(p in SKIP_DIRS for p in rel.parts[:-1])
        or any(p.startswith(".") for p in rel.parts)
        or rel.suffix == ".pyc"
        or rel.name == ".DS_Store"
    )
    if not silent:
        notes.append(f"ignored {rel}: {reason}")
    return False


def _strip_common_folder(names: list[PurePosixPath], own: set[str]) -> PurePosixPath | None:
    """The folder holding the student modules when a zip wraps them in one (or more) folders."""
    hits = [n for n in names if n.suffix == ".py" and n.stem in own]
    if not hits:
        return None
    parents = {n.parent for n in hits}
    return min(parents, key=lambda p: len(p.parts)) if parents else None


def stage(source: Path, dest: Path, own_modules: set[str]) -> StagedSubmission:
    """Copy the acceptable files of ``source`` (folder or .zip) into ``dest``."""
    source = Path(source)
    dest.mkdir(parents=True, exist_ok=True)
    os.chmod(dest, 0o700)
    staged = StagedSubmission(root=dest)
    entries: list[tuple[PurePosixPath, int, object]] = []
    if source.is_file() and zipfile.is_zipfile(source):
        archive = zipfile.ZipFile(source)
        for info in archive.infolist()[: MAX_FILES * 4]:
            mode = info.external_attr >> 16
            if info.is_dir() or stat.S_ISLNK(mode):
                continue
            entries.append((PurePosixPath(info.filename), info.file_size, info))
    elif source.is_dir():
        for dirpath, dirnames, filenames in os.walk(source, followlinks=False):
            dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS and not d.startswith(".")]
            for fname in filenames:
                full = Path(dirpath) / fname
                if full.is_symlink() or not full.is_file():
                    continue
                rel = PurePosixPath(full.relative_to(source).as_posix())
                entries.append((rel, full.stat().st_size, full))
    else:
        raise FileNotFoundError(f"submission {source} is neither a folder nor a zip file")
    base = _strip_common_folder([e[0] for e in entries], own_modules)
    total = 0
    for rel, size, handle in sorted(entries, key=lambda e: str(e[0])):
        if base is not None and base.parts:
            if rel.parts[: len(base.parts)] != base.parts:
                continue
            rel = PurePosixPath(*rel.parts[len(base.parts) :])
        if not _check_name(rel, size, own_modules, staged.notes):
            continue
        if len(staged.worker_files) >= MAX_FILES or total + size > MAX_TOTAL_BYTES:
            staged.notes.append(f"ignored {rel}: the submission is over the size/count limit")
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(handle, zipfile.ZipInfo):
            with archive.open(handle) as src, open(target, "wb") as out:
                data = src.read(MAX_FILE_BYTES + 1)  # never trust the declared size
                if len(data) > MAX_FILE_BYTES:
                    staged.notes.append(f"ignored {rel}: over the size limit once unpacked")
                    target.unlink(missing_ok=True)
                    continue
                out.write(data)
        else:
            with open(handle, "rb") as src, open(target, "wb") as out:
                out.write(src.read(MAX_FILE_BYTES + 1)[:MAX_FILE_BYTES])
        total += target.stat().st_size
        if rel.suffix in WORKER_SUFFIXES and target.stat().st_size <= MAX_WORKER_FILE_BYTES:
            staged.worker_files.append(str(rel))
    return staged


# --------------------------------------------------------------------------------------------
# Written answers, for the people who grade them by hand
# --------------------------------------------------------------------------------------------


def written_answers(source: Path, *, title: str | None = None) -> tuple[str, list[Answer]]:
    """All written answers of the submission ``source`` (folder or zip) as one Markdown text.

    The submission is staged with the grader's rules first, so a hostile archive is handled
    the same way as when grading; a notebook that cannot be read is named, never skipped
    silently.
    """
    import json
    import shutil
    import tempfile

    from autograder.results import sanitize

    scratch = Path(tempfile.mkdtemp(prefix="autograder-answers-"))
    try:
        staged = stage(Path(source), scratch / "submission", set())
        books = sorted(staged.root.rglob("*.ipynb"))
        answers: list[Answer] = []
        problems: list[str] = []
        for book in books:
            rel = book.relative_to(staged.root).as_posix()
            try:
                nb = json.loads(book.read_bytes())
                if not isinstance(nb, dict):
                    raise ValueError("not a JSON object")
            except (ValueError, UnicodeDecodeError) as error:
                problems.append(f"{rel} could not be read as a notebook ({error})")
                continue
            answers += notebook_answers(nb, rel)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    lines = [f"# Written answers: {title or Path(source).name}", ""]
    if not books:
        lines += ["_No notebook in this submission._", ""]
    lines += [f"> **{problem}**" for problem in problems]
    current = None
    for answer in answers:
        if answer.notebook != current:
            current = answer.notebook
            lines += [f"## {current}", ""]
        plural = "" if answer.points == 1 else "s"
        points = "" if answer.points is None else f" ({answer.points:g} point{plural})"
        lines += [f"### {answer.grade_id}{points}", ""]
        if answer.question:
            lines += ["> " + line if line else ">" for line in answer.question.splitlines()]
            lines.append("")
        lines += [answer.text if answer.text else "_(no answer)_", ""]
    return sanitize("\n".join(lines), 10**7), answers
