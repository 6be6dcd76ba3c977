"""Run one grading session: stage the submission, run pytest (trusted config only), report.

pytest runs in a child interpreter started with ``-I -B`` and a clean environment::

    python -I -B -c <boot> -c autograder/pytest.ini --rootdir <tests root> --noconftest
        -p no:cacheprovider -p autograder.plugin --ag-config <private json> <test folders>

with ``PYTEST_DISABLE_PLUGIN_AUTOLOAD=1``, working directory = the tests root. The submission
folder is never on pytest's path, never its rootdir and never a source of configuration.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from autograder import GRADER_DIR, REPO_ROOT, results, submission
from replearn.contract import assignments
from replearn.contract.assignments import Assignment

PLATFORM_MARGIN_S = 45.0
PRIVATE_SCRATCH = ("/tmp", "/var/tmp", "/dev/shm")  # replaced by a private tmpfs in each worker
PASS_ENV = (
    "AUTOGRADER_SANDBOX",
    "AUTOGRADER_WORKER_USER",
    "AUTOGRADER_TESTS_ROOT",
    "AUTOGRADER_SOLUTIONS_ROOT",
    "AUTOGRADER_EXPECTED",  # how public tests get reference values (autograder.api.expected)
)


def grade(
    source: Path,
    targets: list[Assignment],
    results_path: Path,
    *,
    public_only: bool = False,
    seed: int | None = None,
    budget_s: float | None = None,
    quiet: bool = False,
    variants: dict | None = None,
) -> dict:
    """Grade ``source`` (folder or zip) on ``targets``; returns the results dict (also written).

    ``variants`` (the instructor's ``record`` and the catalogue's tests, never a student's
    grading): ``{"mistakes": {module: [Mistake]}, "mode": "record" | "replay", "out": path}``
    grades every catalogued mistake, made in the reference, beside the submission in the same
    session (``autograder.mistakes``); what each variant's tests gave is written to ``out``.
    """
    results_path = Path(results_path).resolve()
    results.write_atomic(
        results_path, results.provisional("Grading did not finish; no test has run yet.")
    )
    budget = float(budget_s or sum(a.budget_s for a in targets))
    if variants:  # each variant runs the tests of its function once more
        budget *= 1 + sum(len(c) for c in variants["mistakes"].values())
    stage_root = Path(tempfile.mkdtemp(prefix="autograder-stage-"))
    os.chmod(stage_root, 0o700)
    start = time.monotonic()
    try:
        own = {a.module for a in targets}
        staged = submission.stage(Path(source), stage_root / "submission", own)
        tests_root = assignments.tests_root()
        sol_root = assignments.solutions_root()
        missing = [a.module for a in targets if not (staged.root / f"{a.module}.py").exists()]
        variant_cfg = _stage_variants(staged, variants) if variants else []
        notes = list(staged.notes)
        if missing:
            notes.append("missing from the submission: " + ", ".join(f"{m}.py" for m in missing))
        cfg = {
            "submission_dir": str(staged.root),
            "worker_files": staged.worker_files,
            "notes": notes,
            "results": str(results_path),
            "seed": int(seed if seed is not None else secrets.randbits(62)),
            "budget_s": budget,
            "public_only": public_only,
            "tests_root": str(tests_root),
            "hide": _hide_list(results_path, stage_root, tests_root, sol_root),
            "assignments": [
                {
                    "name": a.name,
                    "module": a.module,
                    "number": a.number,
                    "call_timeout_s": a.call_timeout_s,
                    "budget_s": a.budget_s if not variants else budget,
                    "reference": str(a.reference_path),
                }
                for a in targets
            ],
        }
        if variants:
            cfg.update(
                variants=variant_cfg,
                variant_mode=variants["mode"],
                variant_out=str(Path(variants["out"]).resolve()),
            )
        cfg_path = stage_root / "session.json"
        cfg_path.write_text(json.dumps(cfg))
        os.chmod(cfg_path, 0o600)
        _run_pytest(cfg_path, tests_root, [a.tests_dir for a in targets], budget, quiet)
    finally:
        shutil.rmtree(stage_root, ignore_errors=True)
    data = json.loads(results_path.read_text())
    if any("in progress" in line for line in data.get("output", "").splitlines()):
        data["output"] = data["output"].replace(
            "grading in progress (this file is rewritten after every test)",
            "the grader stopped early; tests marked 'not run' were not graded",
        )
        data["execution_time"] = round(time.monotonic() - start, 2)
        results.write_atomic(results_path, data)
    return data


def _stage_variants(staged, variants: dict) -> list[dict]:
    """Write each catalogued mistake, made in the reference, as ``variants/<folder>/<module>.py``
    of the staged submission; the session's list of them."""
    from autograder.sandbox import VARIANTS_DIR

    listed = []
    for module, catalogue in variants["mistakes"].items():
        source = (assignments.solutions_root() / f"{module}.py").read_text(encoding="utf-8")
        for index, mistake in enumerate(catalogue):
            folder = f"{module}__{index}"
            relative = f"{VARIANTS_DIR}/{folder}/{module}.py"
            path = Path(staged.root) / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(mistake.apply(source), encoding="utf-8")
            staged.worker_files.append(relative)
            listed.append(
                {
                    "id": f"{module}:{mistake.key}",
                    "module": module,
                    "function": mistake.function,
                    "folder": folder,
                }
            )
    return listed


# Folders of the repository a worker never needs (the course library beside them stays visible).
HIDDEN_REPO_FOLDERS = ("tests", ".git", "build", "assignments", "benchmarks", "data", "instructor")


def _hide_list(results_path: Path, *dirs: Path) -> list[str]:
    """Folders a worker must not see: the grader, the tests, the reference, the instructor
    tooling, staging, results."""
    keep = [Path(p).resolve() for p in sys.path if p and Path(p).is_dir()]
    keep.append(REPO_ROOT / "replearn")
    repo = REPO_ROOT
    candidates = [
        GRADER_DIR,
        *(repo / name for name in HIDDEN_REPO_FOLDERS),
        *dirs,
        results_path.parent,
        *_sibling_folders(repo),
    ]
    hidden = []
    for path in candidates:
        path = Path(path).resolve()
        if path == Path("/") or not path.is_dir():
            continue
        if str(path) in PRIVATE_SCRATCH:
            continue  # each worker gets a fresh, empty one of these anyway
        if any(k == path or path in k.parents for k in keep):
            continue  # hiding it would hide the interpreter or the course library
        hidden.append(str(path))
    return sorted(set(hidden))


def _sibling_folders(repo: Path, limit: int = 256) -> list[Path]:
    """Folders beside the course checkout (other clones, shared data): a worker needs none.

    Another copy of the repository elsewhere on the machine would hold the solutions in plain
    sight; the interpreter and the course library stay visible through the ``keep`` rule.
    """
    parent = repo.resolve().parent
    if parent == Path("/") or parent.parent == Path("/") and parent.name in ("home", "usr", "opt"):
        return []
    try:
        entries = sorted(
            p for p in parent.iterdir() if p.is_dir() and p.resolve() != repo.resolve()
        )
    except OSError:
        return []
    return entries[:limit]


def _run_pytest(
    cfg_path: Path, tests_root: Path, test_dirs: list[Path], budget: float, quiet: bool
) -> int:
    boot = (
        "import sys; sys.path.insert(0, sys.argv.pop(1)); "
        "from autograder.lifeline import die_with_parent; die_with_parent(int(sys.argv.pop(1))); "
        "import pytest; sys.exit(pytest.main(sys.argv[1:]))"
    )
    cmd = [
        sys.executable,
        "-I",
        "-B",
        "-c",
        boot,
        str(REPO_ROOT),
        str(os.getpid()),  # the pytest child dies with this process (autograder.lifeline)
        "-c",
        str(GRADER_DIR / "pytest.ini"),
        "--rootdir",
        str(tests_root),
        "--noconftest",
        "-p",
        "no:cacheprovider",
        "-p",
        "autograder.plugin",
        "--ag-config",
        str(cfg_path),
        "-q",
        "--tb=no",
        "-rN",
        *[str(d) for d in test_dirs if d.is_dir()],
    ]
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "LANG": "C.UTF-8",
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    env.update({k: os.environ[k] for k in PASS_ENV if k in os.environ})
    proc = subprocess.Popen(
        cmd,
        cwd=tests_root,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL if quiet else None,
        stdin=subprocess.DEVNULL,
    )
    try:
        return proc.wait(timeout=budget + PLATFORM_MARGIN_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        return proc.wait()
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
