"""Does the reference solution score full marks whatever the hidden seed? A grader audit.

Hidden tests draw their inputs from a seed that is random for every grading run (so that a
submission cannot be tuned to fixed inputs), and smoke-train checks train on those inputs. A
threshold that the reference passes for one seed can fail it for another, and then a correct
student loses points by chance. This grades the reference solutions (or ``--submission``) once per
seed with ``python -m autograder grade --seed S``, as an instructor's grading run would, and
reports every test that lost points, with how many seeds it failed for.

    python -m benchmarks.grader_seeds [--seeds 8] [--first 11] [--assignment all]

About 45 s per seed for all seven assignments on 2 idle cores. Writes
``build/bench/grader_seeds.json`` and ``.md``. A check that fails for a fraction ``p`` of seeds
shows up in ``n`` seeds with probability ``1 - (1 - p)^n`` (10% in 8 seeds: 57%); a clean run
bounds ``p`` only that far.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from benchmarks.common import load_average, machine_info
from replearn.demo import REPO, grade

OUT = Path("build/bench/grader_seeds.json")


def audit(submission: Path, assignment: str, seeds: list[int], folder: Path) -> dict:
    """Grade ``submission`` once per seed; the tests below full marks, seed by seed."""
    runs, lost = [], {}
    for seed in seeds:
        results = folder / f"seed{seed}.json"
        start = time.monotonic()
        outcome = grade(submission, results, assignment=assignment, seed=seed)
        if outcome["status"] != "graded":
            raise RuntimeError(f"grading with seed {seed} failed: {outcome['status']}")
        tests = json.loads(results.read_text())["tests"]
        below = [t for t in tests if t.get("score", 0) < t.get("max_score", 0)]
        for t in below:
            lost.setdefault(t["name"], []).append(
                {
                    "seed": seed,
                    "score": t["score"],
                    "max_score": t["max_score"],
                    "output": str(t.get("output", ""))[:500],
                }  # fmt: skip
            )
        runs.append({"seed": seed, "score": outcome["score"], "max_score": outcome["max_score"],
                     "seconds": round(time.monotonic() - start, 1),
                     "tests_below_full_marks": [t["name"] for t in below]})  # fmt: skip
        print(f"seed {seed}: {outcome['score']:g}/{outcome['max_score']:g}"
              + (f", lost in {[t['name'] for t in below]}" if below else ""), flush=True)  # fmt: skip
    return {"submission": str(submission), "assignment": assignment, "seeds": seeds,
            "runs": runs, "lost": lost}  # fmt: skip


def to_markdown(report: dict) -> str:
    runs = report["runs"]
    full = sum(r["score"] == r["max_score"] for r in runs)
    lines = [f"Grading `{report['submission']}` ({report['assignment']}) with {len(runs)} hidden-test "
             f"seeds {report['seeds']}: full marks with {full} of {len(runs)} seeds; "
             f"{report['machine']['cpu_count']} CPUs, {sum(r['seconds'] for r in runs):.0f} s.", ""]  # fmt: skip
    if not report["lost"]:
        return "\n".join(lines + ["No test lost points with any seed."]) + "\n"
    lines += [
        "| test | seeds failed | points lost each time | first message |",
        "|---|---|---|---|",
    ]
    for name, fails in sorted(report["lost"].items(), key=lambda kv: -len(kv[1])):
        first = fails[0]
        lines.append(f"| {name} | {len(fails)} of {len(runs)} | {first['max_score'] - first['score']:g} "
                     f"| {first['output'][:200].replace('|', '/')} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submission", type=Path, default=REPO / "solutions")
    parser.add_argument("--assignment", default="all")
    parser.add_argument("--seeds", type=int, default=8, help="how many seeds")
    parser.add_argument("--first", type=int, default=11, help="seeds first, 2*first, 3*first, ...")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    seeds = [args.first * (i + 1) for i in range(args.seeds)]
    folder = args.out.parent / (args.out.stem + "_results")
    folder.mkdir(parents=True, exist_ok=True)
    report = audit(args.submission, args.assignment, seeds, folder)
    report["machine"] = {**machine_info(), "load_average_1min_after": load_average()}
    args.out.write_text(json.dumps(report, indent=2))
    markdown = to_markdown(report)
    args.out.with_suffix(".md").write_text(markdown)
    print(markdown)
    return report


if __name__ == "__main__":
    main()
