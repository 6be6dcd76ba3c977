"""Assignment 4's quality benchmark (`benchmarks/contrastive_quality.py`): the overrides reach the runs."""

from __future__ import annotations

import json

import pytest


@pytest.fixture()
def bench(monkeypatch, repo_root):
    monkeypatch.syspath_prepend(str(repo_root))  # benchmarks/ is not an installed package
    import benchmarks.contrastive_quality as bench

    return bench


def test_simclr_and_moco_at_one_budget_with_a_batch_and_temperature_of_choice(bench, tmp_path):
    """The issue's comparison ("--budget-s 300 --methods simclr moco"), shrunk to smoke size."""
    out = tmp_path / "bench" / "contrastive.json"
    result = bench.main(
        [
            "--preset",
            "smoke",
            "--methods",
            "simclr",
            "moco",
            "--budget-s",
            "1",
            "--batch-size",
            "16",
            "--temperature",
            "0.1",
            "--knn-every",
            "0",
            "--skip",
            "ablation",
            "pixels",
            "few-label",
            "--out",
            str(out),
        ]
    )
    saved = json.loads(out.read_text())
    assert saved["config"]["batch_size"] == 16 and saved["config"]["temperature"] == 0.1
    assert saved["config"]["knn_every"] == 0 and saved["budget_s_override"] == 1.0
    assert list(result["rows"]) == ["random init", "simclr", "moco"]  # no second MoCo run
    for name in ("simclr", "moco"):
        row = saved["rows"][name]
        assert row["budget_s"] == 1.0 and row["steps"] >= 1 and 0.0 <= row["knn"] <= 1.0, name
        assert "knn_monitor" not in row, name  # --knn-every 0: no monitor in the budget
    assert set(saved["checks"]) == {
        "simclr kNN - random init kNN",
        "moco kNN - simclr kNN (equal budgets)",
    }
    assert out.with_suffix(".md").read_text().count("| moco |") == 1
