"""What a submission may hold: accepted file names and types, size limits, and the zip writer.

The grader stages a submission with these rules (``autograder.submission.stage`` keeps only the
files :func:`why_refused` accepts, within the limits) and the student's packager
(``replearn.submit``) refuses up front what the grader would drop, so a student learns it before
submitting rather than from a score. Pytest configuration (``conftest.py``, ``pytest.ini``),
interpreter hooks (``sitecustomize.py``, ``*.pth``) and modules that would shadow an installed
package (``torch.py``) are never accepted.
"""

from __future__ import annotations

import importlib.util
import io
import sys
import zipfile
from collections.abc import Collection, Mapping
from pathlib import Path, PurePosixPath

ALLOWED_SUFFIXES = {".py", ".ipynb", ".safetensors", ".json", ".txt", ".md", ".csv"}
WORKER_SUFFIXES = {".py", ".json", ".txt", ".csv"}  # what a worker gets to import or read
DENIED_NAMES = {"conftest.py", "sitecustomize.py", "usercustomize.py", "pytest.ini", "setup.py"}
MAX_FILE_BYTES = 200 * 1024**2
MAX_WORKER_FILE_BYTES = 2 * 1024**2  # a student module, or anything else a worker reads
MAX_TOTAL_BYTES = 400 * 1024**2
MAX_FILES = 300
SKIP_DIRS = {"__pycache__", ".git", ".ipynb_checkpoints", "__MACOSX", ".venv"}
PICKLE_SUFFIXES = {".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".joblib"}


def shadows(stem: str, own_modules: Collection[str]) -> bool:
    """Whether a submitted ``<stem>.py`` would shadow a module the grader or the course imports
    (the standard library, an installed package, the course's own packages)."""
    if stem in own_modules:
        return False
    if stem in sys.stdlib_module_names or stem in ("autograder", "solutions", "replearn"):
        return True
    return importlib.util.find_spec(stem) is not None


def why_refused(rel: str | PurePosixPath, size: int, own: Collection[str]) -> str | None:
    """Why the grader would drop the file ``rel`` (relative path) of ``size`` bytes, or None.

    ``own`` are the module names being graded (they may shadow nothing, so they are allowed).
    """
    rel = PurePosixPath(rel)
    if rel.is_absolute() or ".." in rel.parts or any(p in SKIP_DIRS for p in rel.parts[:-1]):
        return "its path leaves the submission folder or sits in a skipped folder"
    if any(p.startswith(".") for p in rel.parts):
        return "hidden files and folders are not graded"
    if rel.name in DENIED_NAMES or rel.suffix not in ALLOWED_SUFFIXES:
        return (
            "not a file type the grader accepts (it takes "
            + ", ".join(sorted(ALLOWED_SUFFIXES))
            + "; no pytest or interpreter configuration)"
        )
    if rel.suffix == ".py" and shadows(rel.stem, own):
        return f"it would shadow the installed module {rel.stem!r}"
    if size > MAX_FILE_BYTES:
        return f"{size} bytes is over the {MAX_FILE_BYTES} byte limit"
    return None


# Fixed metadata that makes two zips of the same files byte-identical.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest date the zip format can store
_FILE_MODE = 0o100644  # regular file, rw-r--r--
_EXECUTABLE_MODE = 0o100755  # regular file, rwxr-xr-x


def write_deterministic_zip(
    files: Mapping[str, bytes],
    out: str | Path,
    *,
    prefix: str = "",
    executables: Collection[str] = (),
) -> Path:
    """Write ``files`` (``{name inside the zip: bytes}``) to ``out``: sorted entries, fixed
    dates and modes (``executables`` get 0755), so the same files always give the same bytes.

    Used for the submission zip, the student hand-out and the Gradescope autograder zip.
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(prefix + name, date_time=_ZIP_DATE)
            info.create_system = 3  # unix, so that the mode below is read back
            mode = _EXECUTABLE_MODE if name in executables else _FILE_MODE
            info.external_attr = mode << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, files[name], compresslevel=9)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(buffer.getvalue())
    return out
