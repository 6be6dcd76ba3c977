"""Every assignment notebook end to end on a GPU (or the fake one of ``tests/fakecuda.py``).

The GPU check's notebook step: each notebook runs for real (``replearn.notebook.run_notebook``)
with the reference solutions, in a preset (``smoke`` by default), with ``REPLEARN_DEVICE`` set
so that the notebook's session runs on the device; several notebooks at a time, each in its own
process and kernel, each with its own timeout. A notebook passes when it ran to its last cell and
its closing summary names the device. Writes ``OUT/notebooks.json`` and the executed copies.

    python -m benchmarks.gpu_notebooks --device cuda --out build/bench/gpu/notebooks
    python -m benchmarks.gpu_notebooks --device fakecuda --jobs 2     # a dry run without a GPU
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "assignments").glob("*.ipynb"))


def plain(text: str) -> str:
    """``text`` without the terminal colour codes of a Jupyter traceback."""
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def run_one(job: tuple[str, str, str, str, int, int]) -> dict:
    """One notebook in a fresh process: ``(path, out_dir, device, preset, timeout, threads)``;
    the kernel gets ``threads`` CPU threads, so that notebooks run side by side do not fight
    over the cores."""
    path, out_dir, device, preset, timeout, threads = job
    threads_env = {} if os.environ.get("OMP_NUM_THREADS") else {"OMP_NUM_THREADS": str(threads)}
    from replearn.notebook import run_notebook

    output = Path(out_dir) / Path(path).name
    started = time.perf_counter()
    try:
        if device == "fakecuda":
            sys.path.insert(0, str(REPO / "tests"))
            import fakecuda

            with tempfile.TemporaryDirectory(prefix="fakecuda-ipython-") as ipython_dir:
                env = {**fakecuda.kernel_env(ipython_dir), **threads_env}
                run = run_notebook(
                    path, output, preset=preset, impl="solution", timeout=timeout, extra_env=env
                )
            want = "cuda"
        else:
            run = run_notebook(
                path,
                output,
                preset=preset,
                impl="solution",
                timeout=timeout,
                extra_env={"REPLEARN_DEVICE": device, **threads_env},
            )
            want = device
    except Exception as err:  # the runner itself broke (no kernel, ...): say so, go on
        return {
            "notebook": Path(path).name,
            "ok": False,
            "seconds": round(time.perf_counter() - started, 1),
            "device": None,
            "error": f"{type(err).__name__}: {err}",
        }
    ran_on = run.summary.get("device")
    ok = run.ok and ran_on is not None and ran_on.split(":")[0] == want.split(":")[0]
    error = (
        plain(run.error)[-3000:] if not run.ok else ("" if ok else f"ran on {ran_on}, not {want}")
    )
    return {
        "notebook": Path(path).name,
        "ok": ok,
        "seconds": round(run.seconds, 1),
        "device": ran_on,
        "output": str(output),
        "error": error,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, default=NOTEBOOKS)
    parser.add_argument("--device", default="cuda", help="cuda, cpu, or fakecuda (a dry run)")
    parser.add_argument("--preset", default="smoke")
    parser.add_argument("--jobs", type=int, default=4, help="notebooks at a time")
    parser.add_argument("--timeout", type=int, default=300, help="seconds per cell")
    parser.add_argument("--out", type=Path, default=REPO / "build" / "bench" / "gpu" / "notebooks")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    threads = max(1, (os.cpu_count() or 1) // max(1, args.jobs))
    jobs = [
        (str(p), str(args.out), args.device, args.preset, args.timeout, threads)
        for p in args.notebooks
    ]
    started = time.perf_counter()

    def save(results: list[dict]) -> None:  # after every notebook: a timeout loses only the rest
        summary = {
            "device": args.device,
            "preset": args.preset,
            "jobs": args.jobs,
            "seconds": round(time.perf_counter() - started, 1),
            "notebooks": sorted(results, key=lambda r: r["notebook"]),
        }
        (args.out / "notebooks.json").write_text(json.dumps(summary, indent=1))

    with multiprocessing.get_context("spawn").Pool(max(1, min(args.jobs, len(jobs)))) as pool:
        results = []
        for result in pool.imap_unordered(run_one, jobs):
            results.append(result)
            save(results)
            status = "ok" if result["ok"] else "FAILED"
            print(
                f"{result['notebook']}: {status} in {result['seconds']:.0f} s on {result['device']}",
                flush=True,
            )
            if not result["ok"]:
                print("   ", result["error"][-1500:].replace("\n", "\n    "), flush=True)
    save(results)
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
