"""Build a Gradescope autograder zip: ``setup.sh``, ``run_autograder``, grader, tests, reference.

Layout inside the zip (unpacked by Gradescope into ``/autograder/source``)::

    setup.sh  run_autograder  requirements.txt
    autograder/               the grader package, with tests/<module>/ (public AND hidden)
    solutions/<module>.py     references of the included assignments
    replearn/                 the course library the student modules import

``run_autograder`` reads ``AUTOGRADER_GRADESCOPE_ROOT`` (default ``/autograder``) so that it
can be tried in a temporary tree that stands for ``/autograder``.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from autograder import assignments
from autograder.assignments import Assignment

SETUP_SH = """#!/usr/bin/env bash
# Gradescope image set-up (runs once, as root, with network access).
set -euo pipefail
apt-get update -y && apt-get install -y --no-install-recommends python3 python3-pip python3-venv
python3 -m venv /opt/grader-venv
/opt/grader-venv/bin/pip install --no-cache-dir \\
    --extra-index-url https://download.pytorch.org/whl/cpu -r /autograder/source/requirements.txt
# the unprivileged account that runs student code (no home, no password, no groups)
id -u ag-student >/dev/null 2>&1 || adduser --system --no-create-home --group ag-student
chmod -R go-rwx /autograder/source/autograder /autograder/source/solutions
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope entry point: grade /autograder/submission, write /autograder/results/results.json.
set -u
ROOT="${AUTOGRADER_GRADESCOPE_ROOT:-/autograder}"
PY="${AUTOGRADER_PYTHON:-/opt/grader-venv/bin/python}"
[ -x "$PY" ] || PY=python3
mkdir -p "$ROOT/results"
chmod 700 "$ROOT/results"
if [ "$(id -u)" = 0 ] && id -u ag-student >/dev/null 2>&1; then
    export AUTOGRADER_WORKER_USER="${AUTOGRADER_WORKER_USER:-ag-student}"
fi
cd "$ROOT/source"
unset AUTOGRADER_TESTS_ROOT AUTOGRADER_SOLUTIONS_ROOT
"$PY" -m autograder grade "$ROOT/submission" --assignment all \\
    --results "$ROOT/results/results.json" --budget "${AUTOGRADER_BUDGET_S:-1500}"
status=$?
# results.json is valid whatever happened (written atomically, provisional first)
exit 0
"""

REQUIREMENTS = """torch>=2.6
torchvision>=0.21
numpy>=1.24
safetensors>=0.4
pytest>=8.0
scikit-learn>=1.3
matplotlib>=3.7
tqdm>=4.60
pillow>=9.0
"""

SKIP = {"__pycache__", ".pytest_cache"}


def _add_tree(zf: zipfile.ZipFile, src: Path, arc: str, *, skip_dirs: set[str] = SKIP) -> None:
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if any(part in skip_dirs for part in rel.parts) or not path.is_file():
            continue
        if path.suffix in (".pyc",):
            continue
        zf.write(path, f"{arc}/{rel.as_posix()}")


def build_zip(out: Path, targets: list[Assignment]) -> Path:
    """Write the autograder zip for ``targets`` to ``out``."""
    out = Path(out).resolve()
    grader = assignments.GRADER_DIR
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, text in (("setup.sh", SETUP_SH), ("run_autograder", RUN_AUTOGRADER)):
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o100755 << 16
            zf.writestr(info, text)
        zf.writestr("requirements.txt", REQUIREMENTS)
        _add_tree(zf, grader, "autograder", skip_dirs=SKIP | {"tests"})
        for a in targets:
            if not a.tests_dir.is_dir() or not a.reference_path.exists():
                raise FileNotFoundError(f"{a.name}: tests or reference missing ({a.tests_dir})")
            _add_tree(zf, a.tests_dir, f"autograder/tests/{a.module}")
            zf.write(a.reference_path, f"solutions/{a.module}.py")
        replearn = assignments.REPO_ROOT / "replearn"
        if replearn.is_dir():
            _add_tree(zf, replearn, "replearn")
    return out
