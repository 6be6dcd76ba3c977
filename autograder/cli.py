"""Command line: grade one submission, check locally, grade a batch, build a Gradescope zip.

    python -m autograder grade SUBMISSION [--assignment NAME|all] [--results results.json]
    python -m autograder check NAME [--submission starter_code]
    python -m autograder batch SUBMISSIONS_DIR --out grades.csv [--jobs N]
    python -m autograder gradescope --out autograder.zip [--assignment NAME|all]

``--tests-root`` / ``--solutions-root`` (or ``AUTOGRADER_TESTS_ROOT`` /
``AUTOGRADER_SOLUTIONS_ROOT``) point the grader at another set of tests and references.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path


def _roots(args) -> None:
    if getattr(args, "tests_root", None):
        os.environ["AUTOGRADER_TESTS_ROOT"] = str(Path(args.tests_root).resolve())
    if getattr(args, "solutions_root", None):
        os.environ["AUTOGRADER_SOLUTIONS_ROOT"] = str(Path(args.solutions_root).resolve())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m autograder",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("grade", "check", "batch", "gradescope", "record"):
        p = sub.add_parser(name)
        p.add_argument("--tests-root", help="folder holding <module>/test_*.py")
        p.add_argument("--solutions-root", help="folder holding the reference <module>.py")
        if name == "grade":
            p.add_argument("submission", type=Path, help="folder or .zip of the student's files")
            p.add_argument("--assignment", default="all")
            p.add_argument("--results", type=Path, default=Path("results.json"))
            p.add_argument("--seed", type=int, help="reuse a recorded hidden-test seed")
            p.add_argument("--budget", type=float, help="overall time budget in seconds")
        elif name == "check":
            p.add_argument("name", help="assignment name or alias (e.g. transfer_learning, 01)")
            p.add_argument("--submission", type=Path, default=Path("starter_code"))
        elif name == "record":
            p.add_argument("name", help="assignment name or alias, or all")
            p.add_argument(
                "--no-verify",
                action="store_true",
                help="skip replaying the tests from the recording (they must give full marks)",
            )
        elif name == "batch":
            p.add_argument("submissions", type=Path, help="folder of submission folders/zips")
            p.add_argument("--out", type=Path, default=Path("grades.csv"))
            p.add_argument("--jobs", type=int, default=1)
            p.add_argument("--assignment", default="all")
            p.add_argument(
                "--timeout",
                type=float,
                default=None,
                help="seconds per submission before it is stopped",
            )
            p.add_argument("--results-dir", type=Path, help="keep each results.json here")
        else:
            p.add_argument("--out", type=Path, default=Path("autograder.zip"))
            p.add_argument("--assignment", default="all")
    args = parser.parse_args(argv)
    _roots(args)
    from autograder import assignments, results, runner

    try:
        if args.command == "grade":
            targets = assignments.resolve(args.assignment)
            data = runner.grade(
                args.submission, targets, args.results, seed=args.seed, budget_s=args.budget
            )
            print(results.summary(data))
            print(f"results written to {args.results}")
            return 0
        if args.command == "check":
            targets = assignments.resolve(args.name)
            if not args.submission.exists():
                print(
                    f"no folder {args.submission}: run this where your starter_code/ is, "
                    "or pass --submission PATH",
                    file=sys.stderr,
                )
                return 2
            with tempfile.TemporaryDirectory() as tmp:
                data = runner.grade(
                    args.submission,
                    targets,
                    Path(tmp) / "results.json",
                    public_only=True,
                    seed=0,
                    quiet=True,
                )
            print(results.summary(data))
            return 0
        if args.command == "record":
            return _record(assignments.resolve(args.name), verify=not args.no_verify)
        if args.command == "batch":
            from autograder.batch import run_batch

            return run_batch(
                args.submissions,
                args.out,
                jobs=args.jobs,
                assignment=args.assignment,
                timeout=args.timeout,
                results_dir=args.results_dir,
            )
        from autograder.gradescope import build_zip

        path = build_zip(args.out, assignments.resolve(args.assignment))
        print(f"wrote {path}")
        return 0
    except KeyError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 2


def _record(targets, verify: bool = True) -> int:
    """Record the reference values of the public tests for the student hand-out.

    Grades the reference solutions with ``expected()`` in record mode, then checks that the
    recorded values alone give the reference full public marks.
    """
    from autograder import api, assignments, runner

    failed = 0
    for target in targets:
        path = target.tests_dir / api.EXPECTED_FILE
        path.unlink(missing_ok=True)
        scores = []
        for mode in ("record", "recorded") if verify else ("record",):
            os.environ[api.EXPECTED_MODE_ENV] = mode
            with tempfile.TemporaryDirectory() as tmp:
                data = runner.grade(
                    assignments.solutions_root(),
                    [target],
                    Path(tmp) / "results.json",
                    public_only=True,
                    seed=0,
                    quiet=True,
                )
            got = sum(t["score"] for t in data["tests"])
            scores.append((got, sum(t["max_score"] for t in data["tests"])))
        os.environ.pop(api.EXPECTED_MODE_ENV, None)
        (got, out_of), (replayed, _) = scores[0], scores[-1]
        ok = got == out_of == replayed and path.exists()
        failed += not ok
        print(
            f"{target.name}: reference {got:g}/{out_of:g} while recording, {replayed:g}/{out_of:g}"
            f" from the recording -> {path if path.exists() else 'nothing recorded'}"
            + ("" if ok else "  PROBLEM: the reference must score full marks both ways")
        )
    return 1 if failed else 0
