"""Public tests of Assignment 1, transfer learning (they ship to students).

Run them locally with the grader's one command (see the README). Each test names the function
it grades; tiny CPU models stand in for the pretrained network, so the whole file takes seconds.
"""

import math

import pytest
import torch

from autograder.api import expect_close, expect_tensor, expect_true, expected, reference
from autograder.probes import transfer_learning as probes

REF = "transfer_learning"
PROBES = "autograder.probes.transfer_learning"


def _images(rng, n=6, size=8):
    return torch.randint(0, 256, (n, 3, size, size), generator=rng, dtype=torch.uint8)


# ---- Part 1: feature extraction -----------------------------------------------------------------


@pytest.mark.weight(2)
@pytest.mark.functions("make_feature_extractor")
def test_feature_extractor_is_frozen_headless_eval_copy(student):
    x = torch.rand(4, 3, 8, 8, generator=student.rng)  # [N, C, H, W]
    got = student.probe(f"{PROBES}:feature_extractor", 1, x)
    want = expected("feature_extractor", lambda: probes.feature_extractor(reference(REF), 1, x))
    expect_tensor(
        got["features"],
        want["features"],
        rtol=1e-5,
        atol=1e-6,
        name="extractor(x) (the penultimate features [4, 16], head removed)",
    )
    expect_true(
        got["all_frozen"] and got["num_params"] == want["num_params"],
        "every parameter of the extractor must have requires_grad=False",
    )
    expect_true(got["all_eval"], "the extractor must be in eval mode (model.eval())")
    expect_true(
        got["original_untouched"],
        "make_feature_extractor must not change the model it was given: work on a copy",
    )


@pytest.mark.weight(2)
@pytest.mark.functions("extract_features")
def test_extract_features_batches_without_grad(student):
    x = _images(student.rng, n=10)  # [N, C, H, W] uint8
    got = student.probe(f"{PROBES}:extract", 2, x, None, 4)
    want = expected("extract", lambda: probes.extract(reference(REF), 2, x, None, 4))["values"]
    expect_tensor(
        got["values"].get("output"),
        want["output"],
        rtol=1e-5,
        atol=1e-5,
        name="extract_features(model, uint8 images [10, 3, 8, 8], batch_size=4)",
    )
    expect_true(not got["requires_grad"], "features must be computed without gradients")
    expect_true(
        got["restored_training"],
        "extract_features must put the model back in the mode it found it in",
    )


@pytest.mark.weight(2)
@pytest.mark.functions("softmax_regression_loss")
def test_softmax_regression_loss_and_gradients(student):
    feats = torch.randn(7, 4, generator=student.rng)  # [N, D]
    labels = torch.randint(0, 3, (7,), generator=student.rng)  # [N]
    W = torch.randn(4, 3, generator=student.rng) * 0.5  # [D, K]
    b = torch.randn(3, generator=student.rng) * 0.1  # [K]
    loss, dW, db = student.call("softmax_regression_loss", W, b, feats, labels, 0.1)
    want = expected(
        "softmax_regression_loss",
        lambda: reference(REF).softmax_regression_loss(W, b, feats, labels, 0.1),
    )
    expect_close(
        loss,
        float(want[0]),
        rtol=1e-5,
        atol=1e-6,
        name="loss (mean cross-entropy + reg / 2 * ||W||^2)",
    )
    expect_tensor(dW, want[1], rtol=1e-4, atol=1e-6, name="dW [4, 3]")
    expect_tensor(db, want[2], rtol=1e-4, atol=1e-6, name="db [3]")
    # logits in the hundreds: exp overflows to inf (and the loss to NaN) without the max-shift
    big = feats * 300.0  # [N, D]
    loss, dW, db = student.call("softmax_regression_loss", W, b, big, labels, 0.1)
    want = expected(
        "softmax_regression_loss_large_logits",
        lambda: reference(REF).softmax_regression_loss(W, b, big, labels, 0.1),
    )
    expect_close(
        loss,
        float(want[0]),
        rtol=1e-4,
        atol=1e-3,
        name="loss with logits in the hundreds (subtract each row's max logit before exp)",
    )
    expect_tensor(dW, want[1], rtol=1e-4, atol=1e-3, name="dW [4, 3] with logits in the hundreds")


@pytest.mark.weight(1)
@pytest.mark.functions("softmax_regression_loss")
def test_softmax_regression_loss_of_zero_weights_is_log_k(student):
    feats = torch.randn(5, 6, generator=student.rng)  # [N, D]
    labels = torch.tensor([0, 1, 2, 3, 0])  # [N]
    loss, _, _ = student.call(
        "softmax_regression_loss", torch.zeros(6, 4), torch.zeros(4), feats, labels, 0.0
    )
    expect_close(
        loss,
        math.log(4),
        rtol=1e-5,
        atol=1e-6,
        name="loss with W = 0, b = 0 and K = 4 classes (should be log 4)",
    )


@pytest.mark.weight(2)
@pytest.mark.functions("train_softmax_classifier", "softmax_regression_loss")
def test_train_softmax_classifier_matches_reference(student):
    centers = torch.randn(3, 5, generator=student.rng) * 3  # [K, D]
    labels = torch.arange(3).repeat(10)  # [N]
    feats = centers[labels] + torch.randn(30, 5, generator=student.rng)  # [N, D]
    W, b = student.call("train_softmax_classifier", feats, labels, 3, reg=1e-3, steps=50)
    W_ref, b_ref = expected(
        "train_softmax_classifier",
        lambda: reference(REF).train_softmax_classifier(feats, labels, 3, reg=1e-3, steps=50),
    )
    expect_tensor(W, W_ref, rtol=1e-3, atol=1e-4, name="W [5, 3] after 50 steps")
    expect_tensor(b, b_ref, rtol=1e-3, atol=1e-4, name="b [3] after 50 steps")


# ---- Part 2: fine-tuning ------------------------------------------------------------------------


@pytest.mark.weight(1)
@pytest.mark.functions("replace_head")
def test_replace_head(student):
    got = student.probe(f"{PROBES}:head_replaced", 3, 7, 11)
    want = expected("replace_head", lambda: probes.head_replaced(reference(REF), 3, 7, 11))
    expect_true(
        got["is_new_module"] and got["returned_is_head"],
        "replace_head must put a NEW nn.Linear at model.fc and return it",
    )
    expect_true(
        got["logits_shape"] == [2, 7], f"logits shape {got['logits_shape']}, expected [2, 7]"
    )
    expect_tensor(
        got["weight"],
        want["weight"],
        rtol=1e-6,
        atol=1e-7,
        name="new head weight [7, 16] (nn.Linear's default init drawn from generator)",
    )
    expect_tensor(got["bias"], want["bias"], rtol=1e-6, atol=1e-7, name="new head bias [7]")


@pytest.mark.weight(1)
@pytest.mark.functions("param_groups")
def test_param_groups_lower_lr_for_backbone(student):
    got = student.probe(f"{PROBES}:param_group_settings", 4, None, 0.01, 0.1)
    want = expected(
        "param_groups", lambda: probes.param_group_settings(reference(REF), 4, None, 0.01, 0.1)
    )
    expect_true(
        got == want, f"param groups {got['groups']}, expected {want['groups']}", observed=got
    )
    got = student.probe(f"{PROBES}:param_group_settings", 4, "stage1", 0.01, 0.1)
    want = expected(
        "param_groups_frozen",
        lambda: probes.param_group_settings(reference(REF), 4, "stage1", 0.01, 0.1),
    )
    expect_true(
        got == want,
        f"with stem and stage1 frozen: param groups {got['groups']}, expected {want['groups']} "
        "(frozen parameters belong to no group)",
        observed=got,
    )


@pytest.mark.weight(1)
@pytest.mark.functions("freeze_up_to")
def test_freeze_up_to(student):
    got = student.probe(f"{PROBES}:frozen_up_to", 5, "stage1")
    want = expected("freeze_up_to", lambda: probes.frozen_up_to(reference(REF), 5, "stage1"))
    expect_true(
        got["requires_grad"] == want["requires_grad"],
        f"requires_grad after freeze_up_to(model, 'stage1'): {got['requires_grad']}, "
        f"expected {want['requires_grad']}",
        observed=got["requires_grad"],
    )
    expect_true(
        got["returned"] == want["returned"],
        f"returned {got['returned']}, expected the frozen names {want['returned']}",
        observed=got["returned"],
    )
    got = student.probe(f"{PROBES}:frozen_up_to", 5, "pool")
    want = expected("freeze_up_to_pool", lambda: probes.frozen_up_to(reference(REF), 5, "pool"))
    expect_true(
        got["requires_grad"] == want["requires_grad"],
        "freeze_up_to(model, 'pool'), a stage without parameters, must freeze stem, stage1 and "
        f"stage2 and leave fc trainable: requires_grad {got['requires_grad']}",
        observed=got["requires_grad"],
    )


@pytest.mark.weight(1)
@pytest.mark.functions("set_bn_eval")
def test_set_bn_eval_freezes_running_statistics(student):
    x = torch.rand(6, 3, 8, 8, generator=student.rng)  # [N, C, H, W]
    got = student.probe(f"{PROBES}:bn_eval", 6, x)
    expect_true(got["count"] == 3, f"set_bn_eval returned {got['count']}, expected 3 BN layers")
    expect_true(not any(got["bn_training"]), "every BatchNorm layer must be in eval mode")
    expect_true(got["dropout_training"], "only BatchNorm changes mode: Dropout must keep training")
    expect_true(got["stats_unchanged"], "a training step changed the BN running statistics")


@pytest.mark.weight(2)
@pytest.mark.timeout(60)
@pytest.mark.functions(
    "two_stage_finetune",
    "make_feature_extractor",
    "extract_features",
    "train_softmax_classifier",
    "softmax_regression_loss",
    "param_groups",
    "set_bn_eval",
)
def test_two_stage_finetune_head_first_then_cosine_decay(student):
    labels = torch.arange(3).repeat(8)  # [N]
    base = torch.rand(3, 3, 8, 8, generator=student.rng)  # one pattern per class
    x = (base[labels] + 0.2 * torch.rand(24, 3, 8, 8, generator=student.rng)).clamp(0, 1)
    got = student.probe(f"{PROBES}:two_stage", 7, x, labels, False)
    want = expected(
        "two_stage_finetune", lambda: probes.two_stage(reference(REF), 7, x, labels, False)
    )
    expect_true(
        len(got["losses"]) == len(want["losses"]),
        f"{len(got['losses'])} losses returned, expected {len(want['losses'])} "
        "(one per stage-2 step: 2 epochs x 3 batches of 8)",
    )
    expect_true(
        len(got["rates"]) == len(want["rates"]),
        f"{len(got['rates'])} optimiser steps, expected {len(want['rates'])} (stage 2 only, one "
        "torch.optim.SGD step per batch)",
    )
    expect_tensor(
        torch.tensor(got["rates"]),
        torch.tensor(want["rates"]),
        rtol=1e-5,
        atol=1e-8,
        name="learning rate of each group [backbone, head] at each step: a cosine from lr "
        "(backbone: lr * backbone_lr_scale) towards 0 over epochs * ceil(N / batch_size) steps",
    )
    expect_true(
        not any(v for k, v in got["changed"].items() if "running" in k or "num_batches" in k),
        "BatchNorm running statistics changed: BN must stay in 'test' mode",
        observed=[got["state"][k] for k in sorted(got["state"]) if "running" in k],
    )
    expect_tensor(
        torch.tensor(got["losses"]),
        torch.tensor(want["losses"]),
        rtol=1e-3,
        atol=1e-4,
        name="stage-2 losses (head from the stage-1 probe)",
    )
    for key in ("fc.weight", "stage2.0.weight", "stem.0.weight"):
        expect_tensor(
            got["state"][key], want["state"][key], rtol=1e-3, atol=1e-4, name=f"{key} after"
        )
