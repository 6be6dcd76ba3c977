"""Does the reference score full marks whatever the hidden seed? The grader's seed audit.

Hidden tests draw their inputs from a seed that is random for every grading run (so that a
submission cannot be tuned to fixed inputs). A comparison that the reference passes for one seed
can fail it for another, and then a correct student loses points by chance: in a class of 300,
a check that fails 1 seed in 100 costs three correct students their points.

This runs every hidden test of every assignment once per seed, reference against reference, the
way the grader runs it (``instructor.grader_harness``: the student side under the worker's
conditions, one torch thread, seeded generators, arguments and results through the codec; the
reference side with the parent's two threads), and reports for each test how many seeds failed
and how close its comparisons came to their tolerances (the margin: 0 for identical values, 1 at
the tolerance). A margin far below 1 over many seeds says a correct student whose arithmetic
differs a little from the reference's (another order of operations) passes too.

    python -m benchmarks.grader_seeds [--seeds 1000] [--first 1] [--assignment all]
                                      [--test SUBSTRING] [--jobs N]
    python -m benchmarks.grader_seeds --graded 4   # cross-check through the real grader

Writes ``build/bench/grader_seeds.json`` and ``.md`` (rewritten after every test, so a long run
can be read while it goes; ``--resume`` skips the tests already done with the same seeds).
``--graded N`` instead grades the reference N times with ``python -m autograder grade --seed S``
(about 45 s a seed on 2 idle cores), the whole assignment through workers and pytest.
"""

from __future__ import annotations

import os

# Idle OpenMP threads sleep instead of spinning: the same arithmetic (still two threads on the
# parent side), two to three times faster on a shared machine. Set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ProcessPoolExecutor, as_completed  # noqa: E402
from multiprocessing import get_context  # noqa: E402
from pathlib import Path  # noqa: E402

from benchmarks.common import load_average, machine_info  # noqa: E402

OUT = Path("build/bench/grader_seeds.json")
MARGIN_WARNING = 0.5  # a comparison this close to its tolerance is reported as fragile


def audit_test(module_name: str, test_name: str, seeds: list[int]) -> dict:
    """Run one hidden test for every seed of ``seeds``: failures, margins and time."""
    from instructor import grader_harness

    fn = grader_harness.test_functions(module_name, "hidden")[test_name]
    factory = grader_harness.reference_copies(module_name)
    part = {
        "assignment": module_name,
        "test": test_name,
        "done": [],
        "failures": [],
        "margins": [],
        "worst_margin": 0.0,
        "worst_comparison": "",
        "seconds": 0.0,
    }
    for seed in seeds:
        run = grader_harness.run_test(fn, module_name, factory, hidden=True, grading_seed=seed)
        part["seconds"] += run.seconds
        part["done"].append(seed)
        part["margins"].append(run.margins.worst)
        if not run.passed:
            part["failures"].append({"seed": seed, "message": run.message[:300]})
        for name, ratio in run.margins.ratios.items():
            if ratio >= part["worst_margin"]:
                part["worst_margin"], part["worst_comparison"] = ratio, f"{name} (seed {seed})"
    return part


def merge(row: dict | None, part: dict) -> dict:
    """One test's summary with another chunk of its seeds added."""
    row = row or {
        "assignment": part["assignment"],
        "test": part["test"],
        "seed_list": [],
        "all_margins": [],
        "failures": [],
        "failed": 0,
        "worst_margin": 0.0,
        "worst_comparison": "",
        "seconds": 0.0,
    }
    row["seed_list"] = sorted(row["seed_list"] + part["done"])
    row["all_margins"] += part["margins"]
    row["failed"] += len(part["failures"])
    row["failures"] = (row["failures"] + part["failures"])[:20]
    if part["worst_margin"] >= row["worst_margin"]:
        row["worst_margin"], row["worst_comparison"] = (
            part["worst_margin"],
            part["worst_comparison"],
        )
    row["seconds"] = round(row["seconds"] + part["seconds"], 1)
    finite = sorted(m for m in row["all_margins"] if math.isfinite(m))
    row["runs"] = len(row["seed_list"])
    row["seeds"] = [row["seed_list"][0], row["seed_list"][-1]] if row["seed_list"] else []
    row["median_margin"] = finite[len(finite) // 2] if finite else None
    row["p99_margin"] = finite[min(len(finite) - 1, int(0.99 * len(finite)))] if finite else None
    return row


def hidden_tests(assignment: str, pattern: str | None) -> list[tuple[str, str]]:
    """``(module, test name)`` of every hidden test of ``assignment`` (or all) matching."""
    from instructor import grader_harness
    from replearn.contract import assignments

    found = []
    for target in assignments.resolve(assignment):
        for name in grader_harness.test_functions(target.module, "hidden"):
            if pattern is None or pattern in name:
                found.append((target.module, name))
    return found


def to_markdown(report: dict) -> str:
    rows = report["tests"]
    runs = sum(r["runs"] for r in rows)
    failed = sum(r["failed"] for r in rows)
    seeds = report["seeds"]
    lines = [
        f"Hidden-seed audit, reference against reference: {len(rows)} hidden tests, seeds "
        f"{seeds[0]}..{seeds[-1]} ({len(seeds)} per test), {runs} runs, {failed} failed; "
        f"{report['machine']['cpu_count']} CPUs, load {report['load_average_1min_before']} "
        f"before; {sum(r['seconds'] for r in rows):.0f} s of test time.",
        "",
        "| assignment | hidden test | seeds | failed | worst margin | median | where |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (-r["failed"], -r["worst_margin"])):
        median = "-" if r["median_margin"] is None else f"{r['median_margin']:.2g}"
        lines.append(
            f"| {r['assignment']} | {r['test']} | {r['runs']} | {r['failed']} | "
            f"{r['worst_margin']:.3g} | {median} | {r['worst_comparison'][:90].replace('|', '/')} |"
        )
    fragile = [r for r in rows if r["worst_margin"] >= MARGIN_WARNING]
    lines += ["", f"{len(fragile)} test(s) came within {MARGIN_WARNING:g} of a tolerance."]
    for r in rows:
        for f in r["failures"][:3]:
            lines.append(f"- {r['test']} failed with seed {f['seed']}: {f['message'][:200]}")
    return "\n".join(lines) + "\n"


def audit(args) -> dict:
    """Every hidden test, seeds in chunks of ``--chunk``: the first chunk of every test, then
    the second, ... so that a run stopped early has covered every test evenly."""
    seeds = list(range(args.first, args.first + args.seeds))
    tests = hidden_tests(args.assignment, args.test)
    report = {
        "seeds": seeds,
        "tests": [],
        "machine": machine_info(),
        "load_average_1min_before": load_average(),
    }
    rows: dict[tuple[str, str], dict] = {}
    if args.resume and args.out.exists():
        earlier = json.loads(args.out.read_text())
        if earlier.get("seeds") == seeds:
            rows = {(r["assignment"], r["test"]): r for r in earlier["tests"]}
    chunks = [seeds[i : i + args.chunk] for i in range(0, len(seeds), args.chunk)]
    todo = []
    for chunk in chunks:
        for key in tests:
            left = [s for s in chunk if s not in set(rows.get(key, {}).get("seed_list", []))]
            if left:
                todo.append((key, left))

    def save() -> None:
        report["tests"] = list(rows.values())
        report["load_average_1min_after"] = load_average()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))
        args.out.with_suffix(".md").write_text(to_markdown(report))

    start = time.monotonic()
    # Worker processes are spawned, never forked: a fork of a process whose torch threads hold a
    # lock can hang forever in the child (it did, under pytest). One job runs in this process.
    if args.jobs <= 1:
        pool = contextlib.nullcontext()
        parts = (audit_test(m, t, left) for (m, t), left in todo)
    else:
        pool = ProcessPoolExecutor(max_workers=args.jobs, mp_context=get_context("spawn"))
        futures = [pool.submit(audit_test, m, t, left) for (m, t), left in todo]
        parts = (future.result() for future in as_completed(futures))
    with pool:
        for part in parts:
            key = (part["assignment"], part["test"])
            row = rows[key] = merge(rows.get(key), part)
            save()
            print(
                f"[{time.monotonic() - start:7.0f} s] {row['assignment']}: {row['test']}: "
                f"{row['failed']} of {row['runs']} seeds failed, worst margin "
                f"{row['worst_margin']:.3g}",
                flush=True,
            )
    save()
    print(to_markdown(report))
    return report


def graded(args) -> dict:
    """The reference graded ``--graded`` times through the real grader, seed by seed."""
    from instructor.demo import REPO, grade

    folder = args.out.parent / (args.out.stem + "_results")
    folder.mkdir(parents=True, exist_ok=True)
    runs, lost = [], {}
    for seed in range(args.first, args.first + args.graded):
        results = folder / f"seed{seed}.json"
        outcome = grade(REPO / "solutions", results, assignment=args.assignment, seed=seed)
        if outcome["status"] != "graded":
            raise RuntimeError(f"grading with seed {seed} failed: {outcome['status']}")
        below = [t for t in json.loads(results.read_text())["tests"] if t["score"] < t["max_score"]]
        for t in below:
            lost.setdefault(t["name"], []).append(seed)
        runs.append({"seed": seed, "score": outcome["score"], "max_score": outcome["max_score"]})
        print(
            f"seed {seed}: {outcome['score']:g}/{outcome['max_score']:g}"
            + (f", lost in {[t['name'] for t in below]}" if below else ""),
            flush=True,
        )
    report = {"graded": runs, "lost": lost, "machine": machine_info()}
    args.out.with_name(args.out.stem + "_graded.json").write_text(json.dumps(report, indent=2))
    return report


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assignment", default="all")
    parser.add_argument("--test", help="only the hidden tests whose name contains this")
    parser.add_argument("--seeds", type=int, default=1000, help="seeds per hidden test")
    parser.add_argument("--first", type=int, default=1, help="the first seed")
    parser.add_argument("--jobs", type=int, default=1, help="processes (one chunk at a time each)")
    parser.add_argument("--chunk", type=int, default=100, help="seeds per task")
    parser.add_argument("--resume", action="store_true", help="keep the tests already in --out")
    parser.add_argument(
        "--graded",
        type=int,
        default=0,
        help="instead grade the reference this many times through the grader",
    )
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.graded < 0:
        parser.error("--seeds must be at least 1 and --graded at least 0")
    return graded(args) if args.graded else audit(args)


if __name__ == "__main__":
    main()
