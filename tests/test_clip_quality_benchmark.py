"""Assignment 6's quality benchmark (`benchmarks/clip_quality.py`): every row runs, the report adds up."""

from __future__ import annotations

import json

import pytest


@pytest.fixture()
def bench(monkeypatch, repo_root):
    monkeypatch.syspath_prepend(str(repo_root))  # benchmarks/ is not an installed package
    import benchmarks.clip_quality as bench

    return bench


def test_summary_over_seeds_and_the_checks_are_differences_of_means(bench):
    runs = [{"seed": 0, "zs_all": 0.30, "steps": 10}, {"seed": 1, "zs_all": 0.40, "steps": 14}]
    summary = bench.summarise(runs)
    assert summary["zs_all"]["mean"] == pytest.approx(0.35) and "seed" not in summary
    assert summary["zs_all"]["std"] == pytest.approx(0.0707107, rel=1e-5)  # sample std
    assert bench.summarise(runs[:1])["steps"] == {"mean": 10.0, "std": None}  # one seed: no spread
    aligned = "CIFAR-10: aligned to MiniLM (captions of 7 classes)"
    rows = {
        aligned: {
            "summary": {
                "zs_all": {"mean": 0.35},
                "zs1_all": {"mean": 0.30},
                "probe_all": {"mean": 0.5},
            }
        }
    }
    checks = bench.checks(rows)
    assert checks["CIFAR all zero-shot: 18 templates - 1 prompt"] == pytest.approx(0.05)
    assert checks["CIFAR all classes, linear probe - zero-shot (aligned tower)"] == pytest.approx(
        0.15
    )
    assert len(checks) == 2  # a difference whose rows did not run is left out, not made up


@pytest.mark.slow
def test_smoke_run_reports_every_promised_number_with_chance(bench, tmp_path):
    """Two seeds of every row in the smoke preset (about 30 s on 2 busy cores)."""
    out = tmp_path / "bench" / "clip.json"
    result = bench.main(["--preset", "smoke", "--seeds", "0", "1", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert (
        saved["rows"].keys()
        == result["rows"].keys()
        == {
            "shapes: random-init CLIP",
            "shapes: CLIP (both towers)",
            "CIFAR-10: random-init tower",
            "CIFAR-10: aligned to MiniLM (captions of 7 classes)",
            "CIFAR-10: supervised (labels of the same 7 classes)",
        }
    )
    for name, row in saved["rows"].items():
        assert [run["seed"] for run in row["runs"]] == [0, 1], name
        for key, stats in row["summary"].items():
            values = [run[key] for run in row["runs"]]
            assert stats["mean"] == pytest.approx(sum(values) / 2), (name, key)
    shapes = saved["rows"]["shapes: CLIP (both towers)"]["runs"][0]
    assert {
        "seen",
        "unseen",
        "unseen_among_unseen",
        "attr_colour",
        "attr_position",
    } <= shapes.keys()
    aligned = saved["rows"]["CIFAR-10: aligned to MiniLM (captions of 7 classes)"]["runs"][0]
    for key in (
        "zs_heldout",
        "zs_heldout_among_all",
        "zs_seen",
        "zs_all",
        "zs1_heldout",
        "zs1_all",
        "probe_all",
        "probe_heldout",
        "probe_seen",
    ):
        assert 0 <= aligned[key] <= 1, key
    for row in (
        "shapes: CLIP (both towers)",
        "CIFAR-10: supervised (labels of the same 7 classes)",
    ):
        run = saved["rows"][row]["runs"][0]
        assert run["steps"] >= 1 and run["images_per_s"] > 0, row
    assert saved["chance"]["shapes_all"] == pytest.approx(1 / 96)
    assert saved["chance"]["cifar_heldout"] == pytest.approx(1 / 3)
    assert saved["heldout_classes"] == ["cat", "horse", "truck"]
    table = out.with_suffix(".md").read_text()
    assert "| chance | | | | | 1.0 | 1.0 | 4.2 | 25.0 | 33.3 | 50.0 | 25.0 |" in table
    assert "| supervised (labels of the same 7 classes) |" in table and " ± " in table
