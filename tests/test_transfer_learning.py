"""Fast unit tests of the reference module solutions/transfer_learning.py (Assignment 1)."""

import dataclasses
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from autograder.probes.transfer_learning import tiny_classifier
from replearn import impl
from replearn.recipes import transfer_learning as recipe

tl = impl.load("transfer_learning", "solution")


def test_loss_matches_cross_entropy_and_autograd():
    gen = torch.Generator().manual_seed(0)
    feats, labels = torch.randn(11, 6, generator=gen), torch.randint(0, 4, (11,), generator=gen)
    W = torch.randn(6, 4, generator=gen).requires_grad_()  # [D, K]
    b = torch.randn(4, generator=gen).requires_grad_()  # [K]
    loss, dW, db = tl.softmax_regression_loss(W.detach(), b.detach(), feats, labels, 0.2)
    want = F.cross_entropy(feats @ W + b, labels) + 0.1 * (W**2).sum()
    want.backward()
    torch.testing.assert_close(loss, want.detach())
    torch.testing.assert_close(dW, W.grad)
    torch.testing.assert_close(db, b.grad)


def test_loss_is_log_k_at_zero_and_finite_for_huge_logits():
    feats, labels = torch.randn(5, 3) * 1e4, torch.tensor([0, 1, 2, 0, 1])
    loss, _, _ = tl.softmax_regression_loss(torch.zeros(3, 3), torch.zeros(3), feats, labels, 0.0)
    assert math.isclose(float(loss), math.log(3), rel_tol=1e-6)
    loss, dW, _ = tl.softmax_regression_loss(torch.ones(3, 3), torch.zeros(3), feats, labels, 0.0)
    assert torch.isfinite(loss) and torch.isfinite(dW).all()


def test_classifier_separates_blobs_and_applies_to_raw_features():
    gen = torch.Generator().manual_seed(1)
    labels = torch.arange(3).repeat(30)  # [N]
    feats = torch.randn(3, 8, generator=gen)[labels] * 4 + 10 + torch.randn(90, 8, generator=gen)
    W, b = tl.train_softmax_classifier(feats, labels, 3, steps=200)
    assert W.shape == (8, 3) and b.shape == (3,)
    assert tl.accuracy(tl.predict(W, b, feats), labels) > 0.95


def test_feature_extractor_and_extract_features():
    model = tiny_classifier(0)
    ext = tl.make_feature_extractor(model, "fc")
    assert isinstance(model.fc, nn.Linear) and isinstance(ext.fc, nn.Identity)
    assert not any(p.requires_grad for p in ext.parameters()) and not ext.training
    x = torch.randint(0, 256, (7, 3, 8, 8), dtype=torch.uint8)
    feats = tl.extract_features(ext, x, batch_size=3, stages=["stem"], keep_spatial=["stem"])
    assert feats["output"].shape == (7, 16) and feats["stem"].shape == (7, 8, 8, 8)
    torch.testing.assert_close(feats["output"], ext(x.float() / 255))
    with pytest.raises(ValueError, match="no submodule 'head'"):
        tl.make_feature_extractor(model, "head")


def test_finetuning_tools():
    model = tiny_classifier(0)
    head = tl.replace_head(model, 3, "fc", generator=torch.Generator().manual_seed(0))
    assert model.fc is head and head.out_features == 3
    frozen = tl.freeze_up_to(model, "stage1")
    assert frozen == [n for n, _ in model.named_parameters() if n.startswith(("stem", "stage1"))]
    backbone, head_group = tl.param_groups(model, "fc", lr=0.1, backbone_lr_scale=0.1)
    assert math.isclose(backbone["lr"], 0.01) and len(head_group["params"]) == 2
    assert len(backbone["params"]) == 3  # stage2 conv weight, BN weight and bias
    model.train()
    assert tl.set_bn_eval(model) == 3 and not model.stem[1].training and model.training


@pytest.mark.parametrize("stage", ["pool", "flatten"])
def test_freeze_up_to_a_stage_without_parameters_leaves_the_head_trainable(stage):
    model = tiny_classifier(0)
    frozen = tl.freeze_up_to(model, stage)
    assert frozen == [n for n, _ in model.named_parameters() if not n.startswith("fc.")]
    assert all(p.requires_grad for p in model.fc.parameters())
    nested = tiny_classifier(0)
    assert tl.freeze_up_to(nested, "stem.2") == ["stem.0.weight", "stem.1.weight", "stem.1.bias"]


def test_two_stage_finetune_keeps_frozen_layers_and_bn_statistics():
    torch.manual_seed(0)
    model = tiny_classifier(0)
    tl.replace_head(model, 2, "fc", generator=torch.Generator().manual_seed(0))
    tl.freeze_up_to(model, "stem")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    labels = torch.arange(2).repeat(8)
    x = torch.rand(2, 3, 8, 8)[labels] + 0.1 * torch.rand(16, 3, 8, 8)
    losses = tl.two_stage_finetune(
        model,
        x,
        labels,
        epochs=3,
        batch_size=8,
        lr=0.05,
        generator=torch.Generator().manual_seed(0),
    )
    after = model.state_dict()
    assert len(losses) == 6 and losses[-1] < losses[0] + 1e-6
    assert torch.equal(before["stem.0.weight"], after["stem.0.weight"])
    assert all(torch.equal(before[k], after[k]) for k in before if "running" in k)
    assert not torch.equal(before["stage2.0.weight"], after["stage2.0.weight"])


def test_split_at_and_config():
    model = tiny_classifier(0)
    trunk, top = recipe.split_at(model, "stage1")
    assert list(trunk._modules) == ["stem", "stage1"] and list(top._modules)[0] == "stage2"
    x = torch.rand(2, 3, 8, 8)
    torch.testing.assert_close(top(trunk(x)), model(x))
    from replearn.presets import PRESETS

    for preset in PRESETS.values():
        cfg = recipe.TransferConfig.from_preset(preset)
        assert cfg.budgets[0] < cfg.budgets[1]
        assert recipe.finetune_stages(cfg)[0] == cfg.few_stage
    quick = recipe.TransferConfig.from_preset(PRESETS["cpu-quick"])
    assert recipe.finetune_stages(quick) == [quick.few_stage, quick.many_stage]
    smoke = recipe.TransferConfig.from_preset(PRESETS["smoke"])
    assert recipe.finetune_stages(smoke) == [smoke.few_stage, smoke.many_stage]
    without_many = dataclasses.replace(quick, many_stage=None)
    assert recipe.finetune_stages(without_many) == [quick.few_stage]


def test_random_view_picks_one_whole_view_per_sample():
    original = torch.arange(6 * 4 * 2 * 2, dtype=torch.float32).view(6, 4, 2, 2)  # [N, C, H, W]
    mirrored = -original.flip(3)  # [N, C, H, W], distinguishable from the original
    pick = recipe.RandomView(2, torch.Generator().manual_seed(0))
    seen = set()
    for _ in range(5):
        out = pick(torch.cat([original, mirrored], dim=1))  # [N, C, H, W]
        assert out.shape == original.shape
        for i in range(6):
            is_original = torch.equal(out[i], original[i])
            assert is_original or torch.equal(out[i], mirrored[i])
            seen.add(is_original)
    assert seen == {True, False}, "both views must be drawn"
    with pytest.raises(ValueError, match="do not split"):
        recipe.RandomView(3)(torch.zeros(2, 4, 1, 1))
