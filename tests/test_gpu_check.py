"""The GPU check's parts run without a GPU: the throughput of the notebooks' runs, and the notebook
runner on the fake GPU of tests/fakecuda.py (what `GPU_CHECK_DEVICE=fakecuda` dry-runs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import nbformat
import pytest


def test_colab_throughput_measures_each_run_and_records_failures(monkeypatch, repo_root, tmp_path):
    monkeypatch.syspath_prepend(str(repo_root))  # benchmarks/ is not an installed package
    from benchmarks import colab_throughput as ct

    def broken(bench):
        raise RuntimeError("boom")

    monkeypatch.setitem(ct.RUNS, "99_broken", {"broken run": broken})
    out = tmp_path / "throughput.json"
    result = ct.main(
        [
            "--preset",
            "smoke",
            "--device",
            "cpu",
            "--budget-s",
            "0.3",
            "--assignments",
            "05",
            "99",
            "--out",
            str(out),
        ]
    )
    row = result["rows"]["05_masked_autoencoders"]["MAE pretraining"]
    assert row["steps"] >= 1 and row["images_per_s"] > 0 and row["batch_size"] == 32
    assert row["epoch_s"] > 0, "seconds per epoch of the preset's training images"
    assert "RuntimeError: boom" in result["rows"]["99_broken"]["broken run"]["error"]
    assert json.loads(out.read_text())["device"] == "cpu"


def test_every_assignment_has_throughput_runs(repo_root, monkeypatch):
    monkeypatch.syspath_prepend(str(repo_root))
    from benchmarks.colab_throughput import RUNS

    notebooks = {p.stem for p in (repo_root / "assignments").glob("*.ipynb")}
    assert set(RUNS) == notebooks - {"07_which_method_is_best"}  # 07 trains the others' methods


@pytest.mark.slow
def test_notebook_runner_on_the_fake_gpu(monkeypatch, repo_root, tmp_path):
    monkeypatch.syspath_prepend(str(repo_root))
    from benchmarks.gpu_notebooks import main

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("from replearn import notebook\nS = notebook.setup()"),
        nbformat.v4.new_code_cell("import torch\nx = torch.ones(2, device=S.device)\nS.finish()"),
    ]
    path = tmp_path / "tiny.ipynb"
    nbformat.write(nb, path)
    code = main([str(path), "--device", "fakecuda", "--jobs", "1", "--out", str(tmp_path / "out")])
    summary = json.loads((tmp_path / "out" / "notebooks.json").read_text())
    assert code == 0, summary
    assert summary["notebooks"][0]["device"] == "cuda" and summary["notebooks"][0]["ok"]


def test_gpu_check_script_parses_and_refuses_without_a_gpu(repo_root, tmp_path):
    assert subprocess.run(["bash", "-n", "benchmarks/gpu_check.sh"], cwd=repo_root).returncode == 0
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    done = subprocess.run(
        ["bash", "benchmarks/gpu_check.sh", str(tmp_path / "gpu")],
        cwd=repo_root,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHON": sys.executable},
    )
    assert done.returncode == 2 and "no CUDA device" in done.stderr
