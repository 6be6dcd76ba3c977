"""The submission's ``MANIFEST.json``: its name, its format and its size limit.

``python -m replearn.submit`` writes it beside the student's files in the submission zip (the
sha256 and size of every file, the course package version, the notebooks' last runs);
``autograder.manifest`` verifies a staged submission against it, recomputing every hash.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

MANIFEST_NAME = "MANIFEST.json"
FORMAT = "replearn-submission/1"
MAX_MANIFEST_BYTES = 1024**2


def sha256_file(path: Path) -> str:
    """The sha256 of a file's bytes, read in blocks (a notebook may be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()
