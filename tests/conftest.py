"""Shared test set-up: headless plots, few threads.

The tests need no data folder: the working sets ship with the package. Tests of the loaders'
folder paths read ``$REPLEARN_DATA_DIR`` when it is set (CI sets it) and skip, saying so, when not.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def built_handout(tmp_path_factory) -> Path:
    """The real student hand-out zip, built once per session by `make release`'s command."""
    out = tmp_path_factory.mktemp("release")
    done = subprocess.run(
        [sys.executable, "-m", "instructor.release", "zip", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    (path,) = out.glob("*-student-*.zip")
    return path


# Hostile and fixture submissions are data for the grader's tests: never collect or import them.
collect_ignore_glob = ["attacks/*", "fixtures/*"]
