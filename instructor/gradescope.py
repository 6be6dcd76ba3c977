"""Build a Gradescope autograder zip: ``setup.sh``, ``run_autograder``, grader, tests, reference.

    python -m instructor.gradescope --assignment 04 --out a4-autograder.zip   # from the repository

This is the *packaging*, instructor tooling like the rest of ``instructor/``; what runs inside
the image (``run_autograder`` calls ``python -m autograder grade``, which writes
``results.json``) is the grader's.

Layout inside the zip (unpacked by Gradescope into ``/autograder/source``)::

    setup.sh  run_autograder  requirements.txt  constraints.txt
    autograder/               the grader package, with tests/<module>/ (public AND hidden)
    solutions/<module>.py     references of the included assignments
    replearn/                 the course library the student modules import

``requirements.txt`` names every distribution the grader imports
(``autograder.environment.GRADER_DISTRIBUTIONS``), each pinned to the version of the course's
``constraints.txt``; the zip's ``constraints.txt`` is that file without the CUDA packages, so
that everything pip pulls in is pinned too. ``setup.sh`` installs the CPU builds of torch and
torchvision from the PyTorch CPU index (unless the image already has those versions), then the
rest from the registry. The zip is byte-reproducible: sorted entries, fixed dates, fixed modes.

``setup.sh`` and ``run_autograder`` read ``AUTOGRADER_GRADESCOPE_ROOT`` (default
``/autograder``) and ``AUTOGRADER_VENV`` (default ``/opt/grader-venv``), so that the image can
be tried in a temporary tree that stands for ``/autograder``; ``AUTOGRADER_CREATE_USER=0``
leaves out the account that runs student code (for such a trial on a shared machine).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from autograder import GRADER_DIR, REPO_ROOT
from autograder.environment import GRADER_DISTRIBUTIONS
from replearn.contract import assignments
from replearn.contract.assignments import Assignment
from replearn.contract.files import write_deterministic_zip

CPU_INDEX = "https://download.pytorch.org/whl/cpu"
CPU_BUILDS = ("torch", "torchvision")  # installed from CPU_INDEX: no CUDA in a grading image
CUDA_ONLY = re.compile(r"^(nvidia-|cuda-|triton$)", re.IGNORECASE)

SETUP_SH = """#!/usr/bin/env bash
# Gradescope image set-up: runs once, as root, with network access.
set -euo pipefail
ROOT="${AUTOGRADER_GRADESCOPE_ROOT:-/autograder}"
VENV="${AUTOGRADER_VENV:-/opt/grader-venv}"
SOURCE="$ROOT/source"
if ! python3 -c "import ensurepip, venv" 2>/dev/null; then
    apt-get update -y && apt-get install -y --no-install-recommends python3 python3-pip python3-venv
fi
python3 -m venv "$VENV"
PY="$VENV/bin/python"
# CPU builds of torch and torchvision (a grading image needs no CUDA), unless the image has them
if ! "$PY" -c "import importlib.metadata as m, sys; sys.exit(any(m.version(d).split('+')[0] != v for d, v in (('torch', '@TORCH@'), ('torchvision', '@TORCHVISION@'))))" 2>/dev/null; then
    "$PY" -m pip install --no-cache-dir --index-url @CPU_INDEX@ -c "$SOURCE/constraints.txt" \\
        torch==@TORCH@ torchvision==@TORCHVISION@
fi
"$PY" -m pip install --no-cache-dir -r "$SOURCE/requirements.txt" -c "$SOURCE/constraints.txt"
# the unprivileged account that runs student code (no home, no password, no groups)
if [ "${AUTOGRADER_CREATE_USER:-1}" = 1 ]; then
    id -u ag-student >/dev/null 2>&1 || adduser --system --no-create-home --group ag-student
fi
chmod -R go-rwx "$SOURCE/autograder" "$SOURCE/solutions"
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope entry point: grade /autograder/submission, write /autograder/results/results.json.
set -u
ROOT="${AUTOGRADER_GRADESCOPE_ROOT:-/autograder}"
VENV="${AUTOGRADER_VENV:-/opt/grader-venv}"
PY="${AUTOGRADER_PYTHON:-$VENV/bin/python}"
[ -x "$PY" ] || PY=python3
mkdir -p "$ROOT/results"
chmod 700 "$ROOT/results"
if [ "$(id -u)" = 0 ] && id -u ag-student >/dev/null 2>&1; then
    export AUTOGRADER_WORKER_USER="${AUTOGRADER_WORKER_USER:-ag-student}"
fi
cd "$ROOT/source"
unset AUTOGRADER_TESTS_ROOT AUTOGRADER_SOLUTIONS_ROOT
"$PY" -m autograder grade "$ROOT/submission" --assignment auto \\
    --results "$ROOT/results/results.json" --budget "${AUTOGRADER_BUDGET_S:-1500}"
status=$?
# results.json is valid whatever happened (written atomically, provisional first)
exit 0
"""

SKIP = {"__pycache__", ".pytest_cache"}
SCRIPTS = ("setup.sh", "run_autograder")  # executable in the zip


def pins(constraints: Path) -> dict[str, str]:
    """``{normalised name: version}`` of the ``name==version`` lines of a constraints file."""
    found = {}
    for line in Path(constraints).read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = (part.strip() for part in line.split("==", 1))
            found[_normalise(name)] = version
    return found


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(constraints: Path) -> str:
    """``requirements.txt``: every distribution the grader imports, pinned as constraints pins it.

    Raises:
        ValueError: a grader distribution that ``constraints.txt`` does not pin.
    """
    pinned = pins(constraints)
    unpinned = [d for d in GRADER_DISTRIBUTIONS if _normalise(d) not in pinned]
    if unpinned:
        raise ValueError(f"{constraints} pins no version of {', '.join(unpinned)}; run `make lock`")
    lines = [f"{dist}=={pinned[_normalise(dist)]}" for dist in sorted(GRADER_DISTRIBUTIONS)]
    return (
        "# What the autograder imports, pinned as constraints.txt pins it.\n"
        + "\n".join(lines)
        + "\n"
    )


def image_constraints(constraints: Path) -> str:
    """The course's ``constraints.txt`` without the CUDA packages (a grading image has none)."""
    kept = []
    for line in Path(constraints).read_text(encoding="utf-8").splitlines():
        name = line.split("==", 1)[0].strip()
        if "==" in line and not line.lstrip().startswith("#") and CUDA_ONLY.match(name):
            continue
        kept.append(line)
    return "\n".join(kept) + "\n"


def _tree(src: Path, arc: str, *, skip_dirs: set[str] = SKIP) -> dict[str, bytes]:
    files = {}
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if any(part in skip_dirs for part in rel.parts) or not path.is_file() or path.is_symlink():
            continue
        if path.suffix in (".pyc", ".pyo"):
            continue
        files[f"{arc}/{rel.as_posix()}"] = path.read_bytes()
    return files


def contents(targets: list[Assignment], repo: Path | None = None) -> dict[str, bytes]:
    """``{path in the zip: bytes}`` of the autograder for ``targets``."""
    repo = Path(repo or REPO_ROOT)
    constraints = repo / "constraints.txt"
    versions = pins(constraints)
    setup = SETUP_SH.replace("@CPU_INDEX@", CPU_INDEX)
    for dist in CPU_BUILDS:
        setup = setup.replace(f"@{dist.upper()}@", versions[dist])
    files = {
        "setup.sh": setup.encode(),
        "run_autograder": RUN_AUTOGRADER.encode(),
        "requirements.txt": requirements(constraints).encode(),
        "constraints.txt": image_constraints(constraints).encode(),
    }
    files.update(_tree(GRADER_DIR, "autograder", skip_dirs=SKIP | {"tests"}))
    for a in targets:
        if not a.tests_dir.is_dir() or not a.reference_path.exists():
            raise FileNotFoundError(f"{a.name}: tests or reference missing ({a.tests_dir})")
        files.update(_tree(a.tests_dir, f"autograder/tests/{a.module}"))
        files[f"solutions/{a.module}.py"] = a.reference_path.read_bytes()
    files.update(_tree(repo / "replearn", "replearn"))
    return files


def build_zip(out: Path, targets: list[Assignment]) -> Path:
    """Write the autograder zip for ``targets`` to ``out``: the same bytes every time."""
    return write_deterministic_zip(contents(targets), Path(out).resolve(), executables=SCRIPTS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m instructor.gradescope",
        description="Write the Gradescope autograder zip of one assignment (or all of them).",
    )
    parser.add_argument("--out", type=Path, default=Path("autograder.zip"))
    parser.add_argument("--assignment", default="all", help="a name or alias, or 'all'")
    parser.add_argument("--tests-root", help="folder holding <module>/test_*.py")
    parser.add_argument("--solutions-root", help="folder holding the reference <module>.py")
    args = parser.parse_args(argv)
    if args.tests_root:
        os.environ["AUTOGRADER_TESTS_ROOT"] = str(Path(args.tests_root).resolve())
    if args.solutions_root:
        os.environ["AUTOGRADER_SOLUTIONS_ROOT"] = str(Path(args.solutions_root).resolve())
    try:
        path = build_zip(args.out, assignments.resolve(args.assignment))
    except KeyError as error:
        print(f"error: {error.args[0]}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
