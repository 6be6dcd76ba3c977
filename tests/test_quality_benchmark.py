"""The one-protocol benchmark (`benchmarks/quality.py`): every method runs, and the report adds up."""

from __future__ import annotations

import json

import pytest

from replearn import data


@pytest.fixture()
def quality(monkeypatch, repo_root):
    monkeypatch.syspath_prepend(str(repo_root))  # benchmarks/ is not an installed package
    import benchmarks.quality as quality

    return quality


def test_every_taught_method_is_in_the_protocol(quality):
    names = quality.method_names()
    assert len(names) == len(set(names))
    # the list: supervised, random init, autoencoders, rotation, context, jigsaw,
    # inpainting, colorization, deep clustering, SimCLR, MoCo, BYOL, SimSiam, MAE, CLIP-style
    for needed in ("supervised", "random init", "autoencoder", "denoising autoencoder",
                   "rotation", "context (relative patch)", "jigsaw", "inpainting",
                   "colorization", "deep clustering", "SimCLR", "MoCo", "BYOL", "SimSiam",
                   "MAE", "CLIP-style (captions from labels)"):  # fmt: skip
        assert needed in names
    labelled = {m.name for m in quality.METHODS if m.uses_labels}
    assert labelled == {"supervised", "CLIP-style (captions from labels)"}


def test_summary_is_mean_and_sample_std_over_seeds(quality):
    runs = [{"seed": 0, "knn": 0.4, "steps": 10}, {"seed": 1, "knn": 0.5, "steps": 14}]
    summary = quality.summarise(runs)
    assert summary["knn"]["mean"] == pytest.approx(0.45)
    assert summary["knn"]["std"] == pytest.approx(0.0707107, rel=1e-5)
    assert summary["steps"]["mean"] == 12 and "seed" not in summary


def test_unknown_method_is_refused_with_the_choices(quality, capsys):
    with pytest.raises(SystemExit):
        quality.main(["--preset", "smoke", "--methods", "SimCLR", "simclr-v9"])
    err = capsys.readouterr().err
    assert "simclr-v9" in err and "MoCo" in err


def test_two_seeds_of_two_methods_write_json_markdown_and_plots(quality, tmp_path):
    out = tmp_path / "bench" / "quality.json"
    result = quality.main(["--preset", "smoke", "--seeds", "0", "1", "--out", str(out),
                           "--methods", "random init", "SimCLR"])  # fmt: skip
    saved = json.loads(out.read_text())
    assert saved["rows"].keys() == {"random init", "SimCLR"} == result["rows"].keys()
    simclr = saved["rows"]["SimCLR"]
    assert [r["seed"] for r in simclr["runs"]] == [0, 1]
    assert simclr["budget_s"] == 1.0 and saved["rows"]["random init"]["budget_s"] == 0.0
    knn = [r["knn"] for r in simclr["runs"]]
    assert simclr["summary"]["knn"]["mean"] == pytest.approx(sum(knn) / 2)
    for run in simclr["runs"]:
        assert 0 <= run["knn"] <= 1 and 0 <= run["linear"] <= 1 and run["steps"] >= 1
        assert {"few_1", "few_10", "block3_knn", "block3_linear"} <= run.keys()
    # random init is seeded: the same seed gives the same encoder, so the same scores
    again = quality.main(["--preset", "smoke", "--seeds", "0", "--out", str(tmp_path / "b.json"),
                          "--methods", "random init", "--no-plots"])  # fmt: skip
    assert again["rows"]["random init"]["runs"][0]["knn"] == saved["rows"]["random init"]["runs"][0]["knn"]  # fmt: skip
    table = out.with_suffix(".md").read_text()
    assert "| SimCLR | A4 | SmallCNN | no |" in table and "seeds [0, 1]" in table
    assert (out.parent / "quality.png").stat().st_size > 0
    assert (out.parent / "few_label.png").stat().st_size > 0


@pytest.mark.slow
def test_every_method_runs_under_the_protocol(quality, tmp_path):
    """All 18 rows in the smoke preset (about 25 s on 2 cores): every adapter still fits its
    assignment's module."""
    result = quality.main(["--preset", "smoke", "--seeds", "0", "--no-plots",
                           "--out", str(tmp_path / "q.json")])  # fmt: skip
    assert list(result["rows"]) == quality.method_names()
    expected_train = len(data.load_dataset("cifar10-5k", train_per_class=20, test_per_class=10).y_train)  # fmt: skip
    assert result["train_images"] == expected_train
    for name, row in result["rows"].items():
        run = row["runs"][0]
        assert 0 <= run["knn"] <= 1 and 0 <= run["linear"] <= 1, name
        if name != "random init":
            assert run["steps"] >= 1, name
        has_blocks = "block3_knn" in run
        assert has_blocks == (name not in {"autoencoder", "denoising autoencoder", "MAE"}), name
