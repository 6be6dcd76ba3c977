"""The side-by-side speed benchmark of the SSL methods runs, and its loss parity holds."""

from __future__ import annotations

import json


def test_method_speed_runs_both_contenders_and_losses_agree(monkeypatch, repo_root, tmp_path):
    monkeypatch.syspath_prepend(str(repo_root))  # benchmarks/ is not an installed package
    from benchmarks.method_speed import main

    out = tmp_path / "speed.json"
    args = "--methods byol mae --rounds 1 --steps 1 --loss-n 64 --loss-repeats 1".split()
    report = main([*args, "--out", str(out)])
    assert json.loads(out.read_text())["methods"].keys() == {"byol", "mae"}
    for row in report["methods"].values():
        assert row["ours"] > 0 and row["lightly"] > 0
        assert abs(row["ratio"] - row["ours"] / row["lightly"]) < 1e-9
    assert len(report["losses"]) == 2
    for name, row in report["losses"].items():
        assert row["max_abs_loss_diff"] < 1e-5, name
        assert row["max_abs_grad_diff"] < 1e-6, name
    assert "| byol | 256 |" in out.with_suffix(".md").read_text()
    # the diagnostic row (our model with the views in two passes) for the joint-forward methods
    assert report["methods"]["byol"]["split_ratio"] > 0
    assert "split_ratio" not in report["methods"]["mae"]


def test_grader_seed_audit_grades_the_reference_once_per_seed(monkeypatch, repo_root, tmp_path):
    monkeypatch.syspath_prepend(str(repo_root))
    from benchmarks.grader_seeds import main

    out = tmp_path / "seeds.json"
    report = main(
        ["--assignment", "transfer_learning", "--graded", "2", "--first", "5", "--out", str(out)]
    )
    assert [r["seed"] for r in report["graded"]] == [5, 6]
    assert all(r["score"] == r["max_score"] > 0 for r in report["graded"]), report["graded"]
    assert report["lost"] == {}
    assert json.loads((tmp_path / "seeds_graded.json").read_text())["graded"] == report["graded"]
    recorded = json.loads((tmp_path / "seeds_results" / "seed6.json").read_text())
    hidden_seeds = {
        t["extra_data"]["seed"] for t in recorded["tests"] if "seed" in t.get("extra_data", {})
    }
    assert hidden_seeds == {6}, "the hidden tests must have run with the seed asked for"
