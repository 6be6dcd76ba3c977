"""Stage a submission (folder or zip) into a private folder, keeping only safe file names.

Only plain files with whitelisted extensions are kept, at bounded sizes; symlinks, paths that
escape the folder, pytest configuration (``conftest.py``, ``pytest.ini``), interpreter hooks
(``sitecustomize.py``, ``*.pth``) and modules that would shadow an installed package
(``torch.py``) are dropped and listed in the notes shown to the student.
"""

from __future__ import annotations

import importlib.util
import os
import stat
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

ALLOWED_SUFFIXES = {".py", ".ipynb", ".safetensors", ".json", ".txt", ".md", ".csv"}
WORKER_SUFFIXES = {".py", ".json", ".txt", ".csv"}  # what a worker gets to import or read
DENIED_NAMES = {"conftest.py", "sitecustomize.py", "usercustomize.py", "pytest.ini", "setup.py"}
MAX_FILE_BYTES = 200 * 1024**2
MAX_WORKER_FILE_BYTES = 2 * 1024**2
MAX_TOTAL_BYTES = 400 * 1024**2
MAX_FILES = 300
SKIP_DIRS = {"__pycache__", ".git", ".ipynb_checkpoints", "__MACOSX", ".venv"}


@dataclass
class StagedSubmission:
    root: Path  # private copy (root-only when grading as root)
    worker_files: list[str] = field(default_factory=list)  # relative paths a worker receives
    notes: list[str] = field(default_factory=list)


def _shadow(stem: str, own_modules: set[str]) -> bool:
    if stem in own_modules:
        return False
    if stem in sys.stdlib_module_names or stem in ("autograder", "solutions", "replearn"):
        return True
    return importlib.util.find_spec(stem) is not None


def _check_name(rel: PurePosixPath, size: int, own: set[str], notes: list[str]) -> bool:
    if rel.is_absolute() or ".." in rel.parts or any(p in SKIP_DIRS for p in rel.parts[:-1]):
        return False
    if any(p.startswith(".") for p in rel.parts):
        return False
    name = rel.name
    if name in DENIED_NAMES or rel.suffix not in ALLOWED_SUFFIXES:
        if rel.suffix not in (".pyc",) and rel.name not in (".DS_Store",):
            notes.append(f"ignored {rel}: not a file type the grader accepts")
        return False
    if rel.suffix == ".py" and _shadow(rel.stem, own):
        notes.append(f"ignored {rel}: it would shadow the installed module {rel.stem!r}")
        return False
    if size > MAX_FILE_BYTES:
        notes.append(f"ignored {rel}: {size} bytes is over the {MAX_FILE_BYTES} byte limit")
        return False
    return True


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
