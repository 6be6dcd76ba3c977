"""How long grading takes: one assignment of one submission, and a whole submission.

    python benchmarks/grading_speed.py [--assignment all] [--submission DIR] [--repeat 1]

Without ``--submission`` it grades the reference solutions (``solutions/``) of every course
assignment that has tests; if none has tests yet it grades the grader's fixture assignment.
It also times the worker pool itself: zygote start-up and one warm call. Budgets from the
grader issue: <= 60 s per assignment, <= 4 min for a whole submission, on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

from instructor.demo import grade

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def time_worker_pool() -> tuple[float, float]:
    """Zygote start-up (imports torch once) and the median of 10 warm calls."""
    import torch

    from autograder.sandbox import Sandbox

    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)
        Path(tmp, "bench_mod.py").write_text("def double(x):\n    return x * 2\n")
        box = Sandbox(Path(tmp), ["bench_mod.py"], [REPO / "autograder"])
        start = time.monotonic()
        box.call("bench_mod", "double", (torch.ones(4),))
        first = time.monotonic() - start
        times = []
        for _ in range(10):
            t = time.monotonic()
            assert box.call("bench_mod", "double", (torch.ones(4),)).status == "ok"
            times.append(time.monotonic() - t)
        box.close()
    return first, sorted(times)[len(times) // 2]


def grade_once(submission: Path, assignment: str, env: dict) -> float:
    """Seconds for one ``python -m autograder grade`` of ``submission`` (fails loudly)."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.monotonic()
        outcome = grade(Path(submission), Path(tmp, "r.json"), assignment=assignment, env=env)
        if outcome["status"] != "graded":
            raise RuntimeError(f"grading {submission} failed: {outcome['status']}")
        return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--assignment", default="all")
    parser.add_argument("--submission", type=Path)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    from replearn.contract import assignments

    env = dict(os.environ)
    if not assignments.available():
        fixture = REPO / "tests" / "fixtures" / "grader_assignment"
        env["AUTOGRADER_TESTS_ROOT"] = str(fixture / "tests")
        env["AUTOGRADER_SOLUTIONS_ROOT"] = str(fixture / "solutions")
        os.environ.update(
            {k: env[k] for k in ("AUTOGRADER_TESTS_ROOT", "AUTOGRADER_SOLUTIONS_ROOT")}
        )
    targets = assignments.resolve(args.assignment)
    submission = args.submission
    tmp = None
    if submission is None:
        tmp = Path(tempfile.mkdtemp())
        for a in targets:
            shutil.copy(a.reference_path, tmp)
        submission = tmp
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}"
    )
    first, warm = time_worker_pool()
    print(
        f"worker pool: zygote start + first call {first:.2f} s, warm call (median of 10) "
        f"{warm * 1000:.0f} ms"
    )
    total = 0.0
    for a in targets:
        for r in range(args.repeat):
            seconds = grade_once(submission, a.name, env)
            print(f"{a.name}: {seconds:.1f} s (run {r + 1}; budget 60 s)")
        total += seconds
    if len(targets) > 1:
        seconds = grade_once(submission, "all", env)
        print(
            f"whole submission ({len(targets)} assignments, one session): {seconds:.1f} s "
            "(budget 240 s)"
        )
    if tmp:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
