"""`make demo`: run every assignment notebook against the reference, grade, and write a report.

    python -m instructor.demo [--preset cpu-quick] [--only 01] [--out build/demo]

1. executes each ``assignments/*.ipynb`` for real (nbclient) with the reference solutions;
2. grades the reference solutions and the generated starter code with the autograder;
3. writes ``build/demo/index.html``: per notebook its run time, data, headline numbers and
   grade, with links to the executed notebook and to its page in the course book, which
   ``make book`` renders from these executed copies (figures, equations, text; nothing re-run).

The ``cpu-quick`` preset runs on the data that ships with the package, so the demo needs no network
and no data folder; the report states, per notebook, which data it used.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

from replearn import __version__
from replearn.notebook import NotebookRun, run_notebook

REPO = Path(__file__).resolve().parent.parent
BOOK = REPO / "build" / "book"  # where `make book` renders these notebooks (instructor.book)


def find_notebooks(only: str | None = None) -> list[Path]:
    notebooks = sorted((REPO / "assignments").glob("*.ipynb"))
    return [p for p in notebooks if only is None or p.name.startswith(only) or only in p.stem]


def grade(
    submission: Path,
    results: Path,
    timeout: int = 900,
    *,
    assignment: str = "all",
    env: dict[str, str] | None = None,
    seed: int | None = None,
) -> dict:
    """Grade a folder of modules with the autograder CLI; returns score, max score and status.

    ``env``: the environment of the grading command (default: this process's), e.g. with
    ``AUTOGRADER_TESTS_ROOT`` pointing at another course tree. ``seed``: the hidden tests' seed
    (default: a random one, as in a real grading run).
    """
    if not (REPO / "autograder" / "__main__.py").exists():
        return {"status": "autograder not available"}
    results.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "autograder",
        "grade",
        str(submission),
        "--assignment",
        assignment,
        "--results",
        str(results),
        *(["--seed", str(seed)] if seed is not None else []),
    ]
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, cwd=REPO, timeout=timeout, env=env
        )
    except subprocess.TimeoutExpired:
        return {"status": f"grading timed out after {timeout} s"}
    if not results.exists():
        return {"status": f"no results (exit {done.returncode}): {done.stderr[-500:]}"}
    data = json.loads(results.read_text())
    tests = data.get("tests", [])
    score = data.get("score", sum(t.get("score", 0) for t in tests))
    max_score = sum(t.get("max_score", 0) for t in tests)
    per_module: dict[str, list[float]] = {}
    for t in tests:
        module = (t.get("tags") or ["?"])[0]
        got, out_of = per_module.setdefault(module, [0.0, 0.0])
        per_module[module] = [got + t.get("score", 0), out_of + t.get("max_score", 0)]
    return {
        "status": "graded",
        "score": score,
        "max_score": max_score,
        "per_module": per_module,
        "summary": done.stdout[-3000:],
    }


def write_index(
    out: Path,
    runs: list[NotebookRun],
    grades: dict[str, dict],
    preset: str,
    seconds: float,
    book: Path = BOOK,
) -> Path:
    """The report page; each notebook links to its page in the book built from these runs."""
    e = html.escape
    book_link = Path(os.path.relpath(book, out)).as_posix()
    book_note = (
        f'<p>Figures, equations and text of every notebook: <a href="{e(book_link)}/index.html">'
        "the course book</a>, which <code>make book</code> renders from the executed notebooks "
        "below (<code>make demo</code> runs it after this page).</p>"
    )
    rows = []
    for run in runs:
        summary = run.summary or {}
        records = "".join(
            f"<tr><td>{e(str(r['name']))}</td><td>{e(_fmt(r['value']))}</td>"
            f"<td>{e(r.get('promised') or '-')}</td><td>{_ok(r.get('ok'))}</td></tr>"
            for r in summary.get("records", [])
        )
        status = "ran" if run.ok else "FAILED"
        rows.append(
            f"<section><h2>{e(run.path.stem)} <small>{status} in {run.seconds:.0f} s</small></h2>"
            f"<p>{'<br>'.join(e(d) for d in summary.get('data', [])) or 'data: (not reported)'}</p>"
            f"<p>implementation: {e(summary.get('impl', '-'))}</p>"
            f'<p><a href="{e(book_link)}/{e(run.path.stem)}.html">in the book</a> | '
            f'<a href="{e(str(run.output.relative_to(out)))}">executed notebook</a></p>'
            + (f"<pre>{e(run.error)}</pre>" if run.error else "")
            + (
                f"<table><tr><th>quantity</th><th>this run</th><th>promised</th><th></th></tr>{records}</table>"
                if records
                else ""
            )
            + "</section>"
        )
    grade_rows = "".join(
        f"<tr><td>{e(name)}</td><td>{e(_grade_text(g))}</td></tr>" for name, g in grades.items()
    )
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>replearn demo</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left}}
pre{{background:#f6f6f6;overflow:auto}}</style>
</head><body><h1>replearn {e(__version__)}: demo run</h1>
<p>preset <b>{e(preset)}</b>, torch {e(torch.__version__)}, {e(platform.platform())},
{os.cpu_count()} cores, {seconds:.0f} s in all, {time.strftime("%Y-%m-%d %H:%M")}</p>
{book_note}<h2>Grades</h2><table><tr><th>submission</th><th>score</th></tr>{grade_rows}</table>
{"".join(rows) or "<p>No assignment notebooks yet.</p>"}
</body></html>"""
    index = out / "index.html"
    index.write_text(page)
    return index


def _fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _ok(ok) -> str:
    return {True: "ok", False: "BELOW", None: ""}.get(ok, "")


def _grade_text(g: dict) -> str:
    if g.get("status") != "graded":
        return g.get("status", "?")
    parts = ", ".join(f"{m} {s:g}/{t:g}" for m, (s, t) in sorted(g.get("per_module", {}).items()))
    return f"{g['score']:g} / {g['max_score']:g}" + (f" ({parts})" if parts else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default=os.environ.get("REPLEARN_PRESET", "cpu-quick"))
    parser.add_argument("--only", help="run only notebooks whose name starts with / contains this")
    parser.add_argument("--out", default=str(REPO / "build" / "demo"))
    parser.add_argument("--no-grade", action="store_true", help="skip grading")
    parser.add_argument("--timeout", type=int, default=900, help="per-cell timeout in seconds")
    args = parser.parse_args(argv)

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    data_dir = os.environ.get("REPLEARN_DATA_DIR")
    print(
        f"replearn demo: preset {args.preset}; data "
        f"{'folder ' + data_dir if data_dir else 'shipped with replearn, or downloaded'}"
    )

    notebooks = find_notebooks(args.only)
    runs = []
    for i, path in enumerate(notebooks, 1):
        print(f"[{i}/{len(notebooks)}] running {path.name} ...", flush=True)
        run = run_notebook(
            path,
            out / "notebooks" / path.name,
            preset=args.preset,
            impl="solution",
            timeout=args.timeout,
        )
        print(f"    {'ok' if run.ok else 'FAILED'} in {run.seconds:.0f} s")
        if not run.ok:
            print("    " + run.error.strip().splitlines()[-1] if run.error.strip() else "")
        runs.append(run)

    grades: dict[str, dict] = {}
    if not args.no_grade:
        for name, folder in (
            ("reference solutions", "solutions"),
            ("starter code", "starter_code"),
        ):
            print(f"grading the {name} ...", flush=True)
            grades[name] = grade(REPO / folder, out / "grades" / f"{folder}.json")
            print(f"    {_grade_text(grades[name])}")

    index = write_index(out, runs, grades, args.preset, time.perf_counter() - start)
    print(summary_text(runs))
    print(f"report: {index}")
    failed = [r for r in runs if not r.ok]
    return 1 if failed else 0


def summary_text(runs: list[NotebookRun]) -> str:
    """The demo's closing lines: per notebook its status, time and data; why a failure failed."""
    lines = ["", "summary:"]
    for run in runs:
        summary = run.summary or {}
        lines.append(
            f"  {run.path.stem:<32} {'ok' if run.ok else 'FAILED':<6} {run.seconds:5.0f} s"
        )
        for note in summary.get("data", []) or ["data: (the notebook did not say)"]:
            lines.append(f"      {note}")
        if not run.ok:
            last = [line for line in run.error.strip().splitlines() if line.strip()]
            lines.append(f"      failed: {last[-1] if last else 'no error message'}")
    failed = [run.path.stem for run in runs if not run.ok]
    lines.append(
        f"  {len(runs) - len(failed)} of {len(runs)} notebooks ran"
        + (f"; FAILED: {', '.join(failed)}" if failed else "")
    )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
