"""The one-protocol comparison (`replearn.compare`, run by `benchmarks/quality.py` and read by
Assignment 7's notebook): every method runs, and the report adds up."""

from __future__ import annotations

import json

import pytest

from replearn import data


@pytest.fixture()
def quality():
    import replearn.compare as quality

    return quality


def test_every_taught_method_is_in_the_protocol(quality):
    names = quality.method_names()
    assert len(names) == len(set(names))
    # the list: supervised, random init, autoencoders, rotation, context, jigsaw,
    # inpainting, colorization, deep clustering, SimCLR, MoCo, BYOL, SimSiam, MAE, CLIP-style
    for needed in (
        "supervised",
        "random init",
        "autoencoder",
        "denoising autoencoder",
        "rotation",
        "context (relative patch)",
        "jigsaw",
        "inpainting",
        "colorization",
        "deep clustering",
        "SimCLR",
        "MoCo",
        "BYOL",
        "SimSiam",
        "MAE",
        "CLIP-style (captions from labels)",
    ):
        assert needed in names
    labelled = {m.name for m in quality.COMPARED if m.uses_labels}
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
    result = quality.main(
        [
            "--preset",
            "smoke",
            "--seeds",
            "0",
            "1",
            "--out",
            str(out),
            "--methods",
            "random init",
            "SimCLR",
        ]
    )
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
    again = quality.main(
        [
            "--preset",
            "smoke",
            "--seeds",
            "0",
            "--out",
            str(tmp_path / "b.json"),
            "--methods",
            "random init",
            "--no-plots",
        ]
    )
    assert (
        again["rows"]["random init"]["runs"][0]["knn"]
        == saved["rows"]["random init"]["runs"][0]["knn"]
    )
    table = out.with_suffix(".md").read_text()
    assert "| SimCLR | A4 | SmallCNN | no |" in table and "seeds [0, 1]" in table
    assert (out.parent / "quality.png").stat().st_size > 0
    assert (out.parent / "few_label.png").stat().st_size > 0


@pytest.mark.slow
def test_every_method_runs_under_the_protocol(quality, tmp_path):
    """All 18 rows in the smoke preset (about 25 s on 2 cores): every adapter still fits its
    assignment's module."""
    result = quality.main(
        ["--preset", "smoke", "--seeds", "0", "--no-plots", "--out", str(tmp_path / "q.json")]
    )
    assert list(result["rows"]) == quality.method_names()
    expected_train = len(
        data.load_dataset("cifar10-5k", train_per_class=20, test_per_class=10).y_train
    )
    assert result["train_images"] == expected_train
    for name, row in result["rows"].items():
        run = row["runs"][0]
        assert 0 <= run["knn"] <= 1 and 0 <= run["linear"] <= 1, name
        if name != "random init":
            assert run["steps"] >= 1, name
        has_blocks = "block3_knn" in run
        assert has_blocks == (name not in {"autoencoder", "denoising autoencoder", "MAE"}), name


def fake_result(scores: dict[str, tuple[float, float]], preset: str = "smoke") -> dict:
    rows = {
        name: {"summary": {"knn": {"mean": k, "std": 0.0}, "linear": {"mean": lin, "std": 0.0}}}
        for name, (k, lin) in scores.items()
    }
    return {"preset": preset, "rows": rows, "seeds": [0], "budget_s": 1.0, "seconds": 1.0}


def test_rankings_and_their_rank_correlation(quality):
    same = fake_result({"a": (0.5, 0.6), "b": (0.4, 0.5), "c": (0.3, 0.4)})
    assert quality.ranking(same, "knn") == ["a", "b", "c"]
    assert quality.rank_correlation(same, "knn", "linear") == pytest.approx(1.0)
    reversed_ = fake_result({"a": (0.5, 0.4), "b": (0.4, 0.5), "c": (0.3, 0.6)})
    assert quality.rank_correlation(reversed_, "knn", "linear") == pytest.approx(-1.0)


def test_load_or_run_reads_a_saved_comparison_of_the_same_preset(quality, tmp_path, capsys):
    path = tmp_path / "quality.json"
    path.write_text(json.dumps(fake_result({"a": (0.5, 0.6), "b": (0.4, 0.5), "c": (0.1, 0.2)})))
    result = quality.load_or_run("smoke", path)
    assert list(result["rows"]) == ["a", "b", "c"] and "read " in capsys.readouterr().out
    path.write_text("{not json")
    with pytest.raises(ValueError, match="delete it and run the benchmark again"):
        quality.load_results(path)
    with pytest.raises(FileNotFoundError, match="python -m benchmarks.quality"):
        quality.load_results(tmp_path / "missing.json")


def test_the_benchmark_script_is_the_library_comparison(repo_root):
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.quality", "--help"],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0 and "--budget-s" in out.stdout


def test_seeds_run_apart_merge_into_one_report_and_a_rerun_is_checked(quality, tmp_path, capsys):
    """Seeds run separately merge (summaries over all seeds, each part's machine kept); a rerun of
    a seed is compared with the first run beside the spread over seeds, not merged."""
    common = ["--preset", "smoke", "--methods", "random init", "SimCLR", "--no-plots"]
    paths = {name: tmp_path / f"{name}.json" for name in ("s0", "s1", "s0_again")}
    first = quality.main(common + ["--seeds", "0", "--out", str(paths["s0"])])
    assert first["clock"] == "steps" and first["calibration"]["calibrated"] == ["SimCLR"]
    steps = first["budget_steps"]["SimCLR"]
    assert first["rows"]["SimCLR"]["runs"][0]["steps"] == steps  # every seed: the calibrated steps
    later = common + ["--steps-from", str(paths["s0"])]
    again = quality.main(later + ["--seeds", "1", "--out", str(paths["s1"])])
    assert again["budget_steps"] == {"SimCLR": steps}
    assert again["calibration"]["given"] == ["SimCLR"]
    quality.main(later + ["--seeds", "0", "--out", str(paths["s0_again"])])
    merged_path = tmp_path / "merged.json"
    merged = quality.main(
        ["--merge", str(paths["s0"]), str(paths["s1"]), "--out", str(merged_path), "--no-plots"]
    )
    assert merged["seeds"] == [0, 1] and len(merged["parts"]) == 2
    knn = [r["knn"] for r in merged["rows"]["SimCLR"]["runs"]]
    assert merged["rows"]["SimCLR"]["summary"]["knn"]["mean"] == pytest.approx(sum(knn) / 2)
    assert quality.load_results(merged_path)["seeds"] == [0, 1]
    assert "seeds [0] on" in merged_path.with_suffix(".md").read_text()

    capsys.readouterr()
    with pytest.raises(SystemExit):  # the same seed twice is a rerun, not more data
        quality.main(
            ["--merge", str(paths["s0"]), str(paths["s0_again"]), "--out", str(tmp_path / "x.json")]
        )
    assert "a seed appears twice" in capsys.readouterr().err
    other = json.loads(paths["s1"].read_text())
    other["budget_s"] = 2.0
    with pytest.raises(ValueError, match="budget_s differs"):
        quality.merge([json.loads(paths["s0"].read_text()), other])
    other = json.loads(paths["s1"].read_text())
    other["budget_steps"] = {"SimCLR": steps + 1}  # a seed calibrated on its own
    with pytest.raises(ValueError, match="budget_steps differs.*--steps-from"):
        quality.merge([json.loads(paths["s0"].read_text()), other])

    agreement = quality.main(["--agreement", str(merged_path), str(paths["s0_again"])])
    assert agreement["seeds"] == [0]
    random_init = agreement["methods"]["random init"]["knn"]
    assert random_init["rerun"] == 0.0  # seeded, untrained: the rerun is identical
    simclr = agreement["methods"]["SimCLR"]
    assert simclr["knn"]["steps"] == (steps, steps)
    # the same steps on the same machine: the rerun repeats the numbers
    assert simclr["knn"]["rerun"] == 0.0 and simclr["linear"]["rerun"] == 0.0
    linear = [r["linear"] for r in merged["rows"]["SimCLR"]["runs"]]  # the two seeds' scores
    assert simclr["linear"]["seed_std"] == pytest.approx(abs(linear[0] - linear[1]) / 2**0.5)
    assert "| SimCLR |" in capsys.readouterr().out
