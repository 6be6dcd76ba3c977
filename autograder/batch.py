"""Grade many submissions in parallel; one row per submission; nothing stops the batch."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from autograder import assignments


def run_batch(
    folder: Path,
    out: Path,
    *,
    jobs: int = 1,
    assignment: str = "all",
    timeout: float | None = None,
    results_dir: Path | None = None,
) -> int:
    """Run ``python -m autograder grade`` once per entry of ``folder`` and write a CSV."""
    targets = assignments.resolve(assignment)
    entries = sorted(p for p in Path(folder).iterdir() if p.is_dir() or p.suffix == ".zip")
    limit = timeout or sum(a.budget_s for a in targets) + 120
    work = Path(results_dir or tempfile.mkdtemp(prefix="autograder-batch-"))
    work.mkdir(parents=True, exist_ok=True)

    def one(entry: Path) -> dict:
        res = work / f"{entry.stem}.json"
        start = time.monotonic()
        row = {"submission": entry.name, "score": 0.0, "max_score": 0.0, "status": "ok"}
        cmd = [
            sys.executable,
            "-m",
            "autograder",
            "grade",
            str(entry),
            "--assignment",
            assignment,
            "--results",
            str(res),
        ]
        try:
            proc = subprocess.run(
                cmd,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                timeout=limit,
                env=dict(os.environ),
                text=True,
                cwd=assignments.REPO_ROOT,
            )
            if proc.returncode != 0:
                row["status"] = f"grader exited {proc.returncode}: {proc.stderr[-200:]}"
        except subprocess.TimeoutExpired:
            row["status"] = f"stopped after {limit:.0f} s"
        try:
            data = json.loads(res.read_text())
            row["score"], row["max_score"] = data.get("score", 0.0), data.get("max_score", 0.0)
            for a in targets:
                row[a.name] = sum(
                    t["score"] for t in data.get("tests", []) if a.name in t.get("tags", [])
                )
        except (OSError, ValueError) as exc:
            row["status"] = f"no results ({type(exc).__name__})"
        row["seconds"] = round(time.monotonic() - start, 1)
        return row

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        rows = list(pool.map(one, entries))
    fields = ["submission", "score", "max_score", *[a.name for a in targets], "status", "seconds"]
    with open(out, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    print(f"graded {len(rows)} submissions -> {out}")
    return 0
