"""Hidden tests of Assignment 1, transfer learning (they stay in the grader)."""

import numpy as np
import pytest
import torch

from autograder.api import expect_close, expect_tensor, expect_true, reference
from autograder.probes import transfer_learning as probes

REF = "transfer_learning"
PROBES = "autograder.probes.transfer_learning"


@pytest.mark.weight(2)
@pytest.mark.visibility("hidden")
@pytest.mark.functions("softmax_regression_loss")
def test_softmax_regression_loss_is_stable_for_large_logits(student):
    n, d, k = 13, 9, 6
    feats = torch.randn(n, d, generator=student.rng) * 300  # [N, D], logits in the thousands
    labels = torch.randint(0, k, (n,), generator=student.rng)  # [N]
    W = torch.randn(d, k, generator=student.rng)  # [D, K]
    b = torch.randn(k, generator=student.rng)  # [K]
    loss, dW, db = student.call("softmax_regression_loss", W, b, feats, labels, 0.3)
    want_loss, want_dW, want_db = reference(REF).softmax_regression_loss(W, b, feats, labels, 0.3)
    expect_close(loss, float(want_loss), rtol=1e-4, atol=1e-3, name="loss with huge logits")
    expect_tensor(dW, want_dW, rtol=1e-4, atol=1e-3, name="dW with huge logits")
    expect_tensor(db, want_db, rtol=1e-4, atol=1e-5, name="db with huge logits")


@pytest.mark.weight(2)
@pytest.mark.visibility("hidden")
@pytest.mark.functions("train_softmax_classifier", "softmax_regression_loss")
def test_train_softmax_classifier_agrees_with_sklearn(student):
    from sklearn.linear_model import LogisticRegression

    k, d = 4, 12
    centers = torch.randn(k, d, generator=student.rng) * 1.5 + 5.0  # [K, D], not centred
    labels = torch.arange(k).repeat(40)  # [N]
    feats = centers[labels] + torch.randn(len(labels), d, generator=student.rng) * 2  # [N, D]
    test_labels = torch.arange(k).repeat(25)
    test = centers[test_labels] + torch.randn(len(test_labels), d, generator=student.rng) * 2
    W, b = student.call("train_softmax_classifier", feats, labels, k, reg=1e-2, steps=300)
    expect_true(
        isinstance(W, torch.Tensor) and tuple(W.shape) == (d, k),
        f"W must be a [D, K] = [{d}, {k}] tensor",
    )
    ours = (test @ W + b).argmax(1).numpy()
    # independent implementation: scikit-learn's L-BFGS logistic regression on the same data
    mean, std = feats.mean(0), feats.std(0, unbiased=False)
    sk = LogisticRegression(C=1.0 / (1e-2 * len(labels)), max_iter=2000)
    sk.fit(((feats - mean) / std).numpy(), labels.numpy())
    theirs = sk.predict(((test - mean) / std).numpy())
    agreement = float(np.mean(ours == theirs))
    expect_true(
        agreement >= 0.9,
        f"predictions agree with scikit-learn's logistic regression on {agreement:.0%} of "
        "test points, expected at least 90%",
    )


@pytest.mark.weight(1)
@pytest.mark.visibility("hidden")
@pytest.mark.functions("extract_features")
def test_extract_features_records_stages(student):
    x = _images = torch.randint(0, 256, (9, 3, 8, 8), generator=student.rng, dtype=torch.uint8)
    got = student.probe(f"{PROBES}:extract", 8, x, ["stem", "stage1"], 4)
    want = probes.extract(reference(REF), 8, x, ["stem", "stage1"], 4)["values"]
    expect_true(got["is_dict"], "with stages=..., extract_features must return a dict")
    for name in ("stem", "stage1", "output"):
        expect_tensor(
            got["values"].get(name),
            want[name],
            rtol=1e-5,
            atol=1e-5,
            name=f"pooled features of {name!r}",
        )
    expect_true(got["restored_training"], "extract_features restores the model's mode")


@pytest.mark.weight(1)
@pytest.mark.visibility("hidden")
@pytest.mark.functions("make_feature_extractor", "replace_head")
def test_nested_head_names(student):
    x = torch.rand(3, 3, 8, 8, generator=student.rng)
    got = student.probe(f"{PROBES}:feature_extractor", 9, x, True)
    want = probes.feature_extractor(reference(REF), 9, x, True)
    expect_tensor(
        got["features"],
        want["features"],
        rtol=1e-5,
        atol=1e-6,
        name="features with head_name='classifier.1'",
    )
    expect_true(got["all_frozen"], "the extractor's parameters are frozen")
    expect_true(got["original_untouched"], "the model given to make_feature_extractor is intact")
    got = student.probe(f"{PROBES}:head_replaced", 9, 4, 2, True)
    want = probes.head_replaced(reference(REF), 9, 4, 2, True)
    expect_tensor(
        got["weight"], want["weight"], rtol=1e-6, atol=1e-7, name="new head at 'classifier.1'"
    )
    expect_tensor(got["bias"], want["bias"], rtol=1e-6, atol=1e-7, name="new head's bias")
    expect_true(got["returned_is_head"], "replace_head returns the new head")


@pytest.mark.weight(1)
@pytest.mark.visibility("hidden")
@pytest.mark.functions("param_groups", "freeze_up_to")
def test_param_groups_skip_frozen_and_freeze_last_stage(student):
    got = student.probe(f"{PROBES}:param_group_settings", 10, "stage1", 0.2, 0.25)
    want = probes.param_group_settings(reference(REF), 10, "stage1", 0.2, 0.25)
    expect_true(got == want, f"param groups {got['groups']}, expected {want['groups']}")
    got = student.probe(f"{PROBES}:frozen_up_to", 10, "stage2")
    want = probes.frozen_up_to(reference(REF), 10, "stage2")
    expect_true(got == want, "freeze_up_to(model, 'stage2') froze the wrong parameters")
    got = student.probe(f"{PROBES}:frozen_up_to", 10, "flatten")
    want = probes.frozen_up_to(reference(REF), 10, "flatten")
    expect_true(got == want, "freeze_up_to(model, 'flatten'), a stage without parameters")


@pytest.mark.weight(1)
@pytest.mark.visibility("hidden")
@pytest.mark.functions("set_bn_eval")
def test_set_bn_eval_counts_and_leaves_dropout_training(student):
    x = torch.rand(5, 3, 8, 8, generator=student.rng)  # [N, C, H, W]
    got = student.probe(f"{PROBES}:bn_eval", 13, x)
    expect_true(got["count"] == 3, "set_bn_eval returns the number of BatchNorm layers")
    expect_true(not any(got["bn_training"]) and got["dropout_training"], "only BN in eval mode")
    expect_true(got["stats_unchanged"], "BatchNorm running statistics must not move")


@pytest.mark.weight(3)
@pytest.mark.visibility("hidden")
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
def test_two_stage_finetune_smoke_train(student):
    labels = torch.arange(3).repeat(8)  # [N]
    base = torch.rand(3, 3, 8, 8, generator=student.rng)  # one pattern per class
    x = (base[labels] + 0.2 * torch.rand(24, 3, 8, 8, generator=student.rng)).clamp(0, 1)
    got = student.probe(f"{PROBES}:two_stage", 12, x, labels, True)
    want = probes.two_stage(reference(REF), 12, x, labels, True)
    expect_true(
        len(got["losses"]) == len(want["losses"]),
        f"{len(got['losses'])} losses returned, expected {len(want['losses'])} "
        "(one per stage-2 step: 2 epochs x 3 batches)",
    )
    expect_tensor(
        torch.tensor(got["rates"]),
        torch.tensor(want["rates"]),
        rtol=1e-5,
        atol=1e-8,
        name="learning rate of each group at each stage-2 step (a cosine towards 0)",
    )
    changed = got["changed"]
    expect_true(
        not any(v for k, v in changed.items() if k.startswith("stem.")),
        "the frozen stem changed during fine-tuning",
    )
    expect_true(
        not any(v for k, v in changed.items() if "running" in k or "num_batches" in k),
        "BatchNorm running statistics changed: BN must stay in 'test' mode",
    )
    expect_true(
        changed["stage2.0.weight"] and changed["fc.weight"],
        "the unfrozen layers and the head must train",
    )
    expect_tensor(
        torch.tensor(got["losses"]),
        torch.tensor(want["losses"]),
        rtol=1e-3,
        atol=1e-4,
        name="stage-2 losses (head from the stage-1 linear probe)",
    )
    for key in ("fc.weight", "stage2.0.weight"):
        expect_tensor(
            got["state"][key],
            want["state"][key],
            rtol=1e-3,
            atol=1e-4,
            name=f"{key} after fine-tuning",
        )
