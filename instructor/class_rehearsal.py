"""A made-up class for Assignment 4, graded with ``autograder batch``: a rehearsal of the road.

    python -m instructor.class_rehearsal [--out build/class-rehearsal] [--jobs 2]

Writes ``OUT/submissions/``: ``alice.zip`` (the reference), ``bob.zip`` (the starter, untouched),
``carol.zip`` (NT-Xent without the self-similarity mask, a mistake the lecture warns about),
``dave/`` (a momentum update with ``m`` and ``1 - m`` swapped), ``erin.zip`` (a copy of alice's
file) and ``frank.zip`` (carol's code with her comments removed), then grades them with
``python -m autograder batch OUT/submissions --out OUT/grades.csv`` (every student's
``results.json`` in ``OUT/grades_results/``) and prints the sheet. The reference and the
starter come from this repository; the mistakes are edits of the reference, checked to apply.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MODULE = "contrastive_learning"

NO_SELF_MASK = (
    '    logits = logits.masked_fill(self_mask, float("-inf"))  # [2N, 2N] k != i\n',
    "",  # the diagonal stays in the softmax: each view counts itself as a negative
)
SWAPPED_MOMENTUM = (
    "theta_k.mul_(momentum).add_(theta_q.detach(), alpha=1.0 - momentum)",
    "theta_k.mul_(1.0 - momentum).add_(theta_q.detach(), alpha=momentum)",
)


def _edit(text: str, old: str, new: str) -> str:
    if text.count(old) != 1:
        raise ValueError(f"the rehearsal's edit {old.strip()[:60]!r} no longer applies")
    return text.replace(old, new)


def _unmarked(source: str) -> str:
    """The reference without its solution-marker lines, as a student's file would be."""
    marker = "#" * 3 + " "
    return "".join(
        line
        for line in source.splitlines(keepends=True)
        if not line.strip().startswith((marker + "BEGIN SOLUTION", marker + "END SOLUTION"))
    )


def _zip(path: Path, source: str) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{MODULE}.py", source)


def make_class(folder: Path) -> Path:
    """Write the six submissions (see the module doc) into ``folder``; returns it."""
    reference = (REPO / "solutions" / f"{MODULE}.py").read_text(encoding="utf-8")
    starter = (REPO / "starter_code" / f"{MODULE}.py").read_text(encoding="utf-8")
    carol = _unmarked(_edit(reference, *NO_SELF_MASK))
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    _zip(folder / "alice.zip", reference)
    _zip(folder / "bob.zip", starter)
    _zip(folder / "carol.zip", carol)
    (folder / "dave").mkdir()
    (folder / "dave" / f"{MODULE}.py").write_text(_unmarked(_edit(reference, *SWAPPED_MOMENTUM)))
    _zip(folder / "erin.zip", reference)
    _zip(folder / "frank.zip", "\n".join(line.split("  # ")[0] for line in carol.splitlines()))
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "build" / "class-rehearsal")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    submissions = make_class(args.out / "submissions")
    sheet = args.out / "grades.csv"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "autograder",
            "batch",
            str(submissions),
            "--out",
            str(sheet),
            "--jobs",
            str(args.jobs),
        ],
        cwd=REPO,
    )
    if done.returncode != 0 or not sheet.is_file():
        return done.returncode or 1
    columns = ("submission", "student", "score", "max_score", "integrity", "flags", "status")
    for row in csv.DictReader(sheet.open(newline="", encoding="utf-8")):
        print(" | ".join(str(row[c]) for c in columns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
