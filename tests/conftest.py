"""Shared test set-up: headless plots, few threads.

The tests need no data folder: the working sets ship with the package. Tests of the loaders'
folder paths read ``$REPLEARN_DATA_DIR`` when it is set (CI sets it) and skip, saying so, when not.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture
def one_thread():
    """One torch thread for tests of tiny models: a second thread only adds synchronisation, and
    on a loaded machine a pool that waits for a descheduled worker makes each small op slow."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def built_handout(tmp_path_factory) -> Path:
    """The real student hand-out zip, built once per session by `make release`'s command."""
    out = tmp_path_factory.mktemp("release")
    done = subprocess.run(
        [sys.executable, "-m", "instructor.release", "zip", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (path,) = out.glob("*-student-*.zip")
    return path


@pytest.fixture(scope="session")
def fresh_recordings(tmp_path_factory) -> Path:
    """Every course module's public tests copied, with their catalogue of known mistakes, and
    recorded afresh in one grader session (``python -m autograder record``). The folder also
    holds ``verdicts.json``: what each known mistake's public tests gave, and what the hand-out
    would name (``autograder.mistakes``)."""
    from autograder import api, mistakes

    root = tmp_path_factory.mktemp("recorded")
    course = REPO / "autograder" / "tests"
    modules = sorted(
        p.name for p in course.iterdir() if p.is_dir() and any(p.glob("test_public_*.py"))
    )
    for module in modules:
        shutil.copytree(course / module, root / module)
        (root / module / api.EXPECTED_FILE).unlink(missing_ok=True)
        (root / module / mistakes.RECORD_FILE).unlink(missing_ok=True)
    env = {**os.environ, "AUTOGRADER_TESTS_ROOT": str(root)}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "autograder",
            "record",
            *modules,
            "--no-verify",
            "--verdicts",
            str(root / "verdicts.json"),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    # exit status 1 also reports a known mistake that its public check does not name: the
    # catalogue's own tests say which (tests/test_mistakes.py)
    assert done.returncode in (0, 1) and "PROBLEM: the reference" not in done.stdout, (
        done.stdout + done.stderr
    )
    assert (root / "verdicts.json").is_file(), done.stdout + done.stderr
    return root


# Hostile and fixture submissions are data for the grader's tests: never collect or import them.
collect_ignore_glob = ["attacks/*", "fixtures/*"]
