"""``cpu-quick`` counts the runs of Assignments 3, 3b and 4 and of notebook 07's own comparison in
optimizer steps (``replearn.recipes.common.counted_in_steps``), so that a rerun repeats the
notebook's numbers whatever the machine's load; ``colab`` and ``full`` keep the wall clock."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from replearn import compare, impl
from replearn.presets import get_preset
from replearn.recipes import contrastive_learning as contrastive
from replearn.recipes import generative_pretext as generative
from replearn.recipes import pretext_tasks as pretext

CONFIGS = {
    "pretext": (pretext.PretextConfig, ("rotation", "ablation", "context", "jigsaw", "exemplar")),
    "generative": (
        generative.GenerativeConfig,
        ("inpaint", "inpaint_adv", "color_class", "color_reg", "split_brain", "cluster"),
    ),
    "contrastive": (contrastive.ContrastiveConfig, ("simclr", "moco", "byol", "simsiam")),
}


def _runs(cls, names):
    return (*names, "supervised") if cls is not generative.GenerativeConfig else names


@pytest.mark.parametrize("recipe", sorted(CONFIGS))
def test_cpu_presets_count_every_run_in_steps_and_gpu_presets_keep_the_clock(recipe):
    cls, names = CONFIGS[recipe]
    for preset in ("smoke", "cpu-quick", "colab", "full"):
        cfg = cls.from_preset(get_preset(preset))
        for run in _runs(cls, names):
            steps = getattr(cfg, f"{run}_steps")
            assert getattr(cfg, f"{run}_s") > 0
            if preset in ("smoke", "cpu-quick"):
                assert isinstance(steps, int) and steps >= 1, (preset, run, steps)
            else:
                assert steps is None, (preset, run, steps)
    quick, smoke = cls.from_preset(get_preset("cpu-quick")), cls.from_preset(get_preset("smoke"))
    for run in _runs(cls, names):  # smoke's counts are tiny, cpu-quick's are not
        assert getattr(smoke, f"{run}_steps") < getattr(quick, f"{run}_steps")


def test_contrastive_steps_follow_the_method_and_default_in_pretrain():
    cfg = contrastive.ContrastiveConfig.from_preset(get_preset("cpu-quick"))
    assert cfg.steps("simsiam-no-stopgrad") == cfg.simsiam_steps
    assert cfg.steps("simclr") == cfg.simclr_steps
    with pytest.raises(ValueError, match="unknown method"):
        cfg.steps("swav")


def test_notebook_07_counts_its_own_comparison_in_steps():
    trained = [m for m in compare.NOTEBOOK_METHODS if m != "random init"]
    for preset in ("smoke", "cpu-quick"):
        steps = compare.NOTEBOOK_STEPS[preset]
        assert sorted(steps) == sorted(trained)
        assert all(isinstance(n, int) and n >= 1 for n in steps.values())
    assert "colab" not in compare.NOTEBOOK_STEPS and "full" not in compare.NOTEBOOK_STEPS


def _images(n: int = 24, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(7)
    x = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=generator)
    return x, torch.arange(n) % 4


def _twice(train) -> list:
    """Two runs of ``train()``: (steps done, encoder weights) of each."""
    out = []
    for _ in range(2):
        run = train()
        out.append((run.history.steps_done, run.encoder.state_dict()))
    return out


def _same(runs, steps: int) -> None:
    (steps_a, weights_a), (steps_b, weights_b) = runs
    assert steps_a == steps_b == steps
    assert weights_a.keys() == weights_b.keys()
    for name in weights_a:
        assert torch.equal(weights_a[name], weights_b[name]), name


@pytest.mark.parametrize("method", ["rotation", "exemplar"])
def test_pretext_runs_counted_in_steps_repeat_to_the_bit(method, one_thread):
    pt = impl.load("pretext_tasks", "solution")
    cfg = dataclasses.replace(
        pretext.PretextConfig.from_preset(get_preset("smoke")),
        max_epochs=10,
        batch_size=8,
        widths=(4, 8, 8, 8),
        exemplar_seeds=6,
    )
    x, _ = _images()
    train = lambda: pretext.pretrain(pt, method, x, cfg, budget_s=3600.0, steps=3, seed=1)
    _same(_twice(train), 3)


def test_generative_runs_counted_in_steps_repeat_to_the_bit(one_thread):
    gp = impl.load("generative_pretext", "solution")
    cfg = dataclasses.replace(
        generative.GenerativeConfig.from_preset(get_preset("smoke")),
        max_epochs=10,
        batch_size=8,
        widths=(4, 8, 8, 8),
    )
    x, _ = _images()
    train = lambda: generative.pretrain(gp, "inpainting", x, cfg, budget_s=3600.0, steps=3, seed=1)
    _same(_twice(train), 3)


@pytest.mark.parametrize("method", ["simclr", "moco"])
def test_contrastive_runs_counted_in_steps_repeat_to_the_bit(method, one_thread):
    """The cfg's count applies when no seconds are given (the notebook's call)."""
    cl = impl.load("contrastive_learning", "solution")
    cfg = dataclasses.replace(
        contrastive.ContrastiveConfig.from_preset(get_preset("smoke")),
        max_epochs=10,
        batch_size=8,
        widths=(4, 8),
        projection_dim=8,
        hidden_dim=16,
        queue_size=32,
        simclr_steps=3,
        moco_steps=3,
    )
    x, y = _images(size=16)
    train = lambda: contrastive.pretrain(cl, method, x, y, cfg, seed=1)
    _same(_twice(train), 3)
