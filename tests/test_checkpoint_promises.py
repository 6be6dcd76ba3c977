"""benchmarks/checkpoint_promises.py: the promises as margins, the table, the disjoint subset."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from benchmarks import checkpoint_promises as P


def scores(**pairs):
    return {
        name.replace("_", " ").replace("simclr ", "simclr-"): {"knn": knn, "linear": lin}
        for name, (knn, lin) in pairs.items()
    }


def test_each_promise_is_a_margin_and_missing_methods_are_left_out():
    s = scores(
        random_init=(0.30, 0.40),
        rotation=(0.35, 0.38),
        supervised=(0.60, 0.62),
        simclr=(0.50, 0.52),
        simclr_crop=(0.45, 0.53),
        moco=(0.29, 0.45),
    )
    got = P.promises(s)
    assert got["03 rotation - random init (knn)"] == pytest.approx(0.05)
    assert got["03 rotation - random init (linear)"] == pytest.approx(-0.02)  # broken: negative
    assert got["04 crop+color - crop alone (linear)"] == pytest.approx(-0.01)
    assert got["04 moco - random init (knn)"] == pytest.approx(-0.01)
    assert not any("byol" in k or "color alone" in k or "05" in k for k in got)  # not in the bundle
    worst = [k for k in got if k.startswith("07 every")]
    assert worst == ["07 every self-supervised - random init (linear; worst: rotation)"]
    assert got[worst[0]] == pytest.approx(-0.02)
    run = {"seed": 0, "subset": "cifar10-5k", "scores": s, "promises": got}
    table = P.markdown({"runs": [run, {**run, "subset": "disjoint"}]})
    assert "| 03 rotation - random init (linear) | -2.0 | -2.0 | **-2.0** |" in table
    assert "| moco | 29.0 / 45.0 | 29.0 / 45.0 |" in table


@pytest.mark.skipif(
    not (
        Path(os.environ.get("REPLEARN_DATA_DIR", "/nonexistent")) / "cifar10_jpeg_full_bytes.npz"
    ).is_file(),
    reason="needs the full CIFAR-10 file in $REPLEARN_DATA_DIR",
)
def test_the_disjoint_subset_shares_no_image_with_the_working_set():
    from replearn.data import load_dataset

    data_dir = Path(os.environ["REPLEARN_DATA_DIR"])
    subset = P.disjoint_subset(data_dir, seed=3, train_per_class=20, test_per_class=5)
    assert torch.bincount(subset.y_train).tolist() == [20] * 10 and len(subset.y_test) == 50
    course = load_dataset("cifar10-5k")
    for split in ("train", "test"):
        seen = {
            bytes(x)
            for x in getattr(course, f"x_{split}")
            .reshape(len(getattr(course, f"y_{split}")), -1)
            .numpy()
        }
        drawn = (
            getattr(subset, f"x_{split}").reshape(len(getattr(subset, f"y_{split}")), -1).numpy()
        )
        assert not any(bytes(x) in seen for x in drawn)
    again = P.disjoint_subset(data_dir, seed=3, train_per_class=20, test_per_class=5)
    assert torch.equal(again.x_train, subset.x_train)
