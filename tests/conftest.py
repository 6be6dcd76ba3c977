"""Shared test set-up: headless plots, few threads.

The tests need no data folder: the working sets ship with the package. Tests of the loaders'
folder paths read ``$REPLEARN_DATA_DIR`` when it is set (CI sets it) and skip, saying so, when not.
"""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


# Hostile and fixture submissions are data for the grader's tests: never collect or import them.
collect_ignore_glob = ["attacks/*", "fixtures/*"]
