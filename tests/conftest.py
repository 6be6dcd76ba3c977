"""Shared test set-up: headless plots, few threads, the offline data folder when it exists."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("OMP_NUM_THREADS", "2")
if "REPLEARN_DATA_DIR" not in os.environ and SHARED_DATA.is_dir():
    os.environ["REPLEARN_DATA_DIR"] = str(SHARED_DATA)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


# Hostile and fixture submissions are data for the grader's tests: never collect or import them.
collect_ignore_glob = ["attacks/*", "fixtures/*"]
