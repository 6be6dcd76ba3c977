"""Known-answer tests of replearn.evaluate: kNN, linear probe, features, fine-tuning, curves."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from replearn.evaluate import (
    DEFAULT_WEIGHT_DECAYS,
    FEW_LABEL_WEIGHT_DECAY,
    KNNMonitor,
    Standardizer,
    extract_features,
    few_label_curve,
    finetune,
    knn_accuracy,
    knn_predict,
    linear_probe,
)
from replearn.train import TensorLoader, TrainConfig, train

pytestmark = pytest.mark.usefixtures("one_thread")


def _clusters(
    num_classes: int = 4, per_class: int = 50, dim: int = 16, spread: float = 0.3, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian clusters around random centres: features [K * per_class, D], labels."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(num_classes, dim, generator=torch.Generator().manual_seed(1234))  # [K, D]
    labels = torch.arange(num_classes).repeat_interleave(per_class)  # [N]
    features = centres[labels] + spread * torch.randn(
        len(labels), dim, generator=generator
    )  # [N, D]
    return features, labels


def _chance_tolerance(num_test: int, num_classes: int) -> float:
    """Four binomial standard deviations of the accuracy of a chance-level classifier."""
    p = 1 / num_classes
    return 4 * math.sqrt(p * (1 - p) / num_test)


# --------------------------------------------------------------------------------------------
# kNN
# --------------------------------------------------------------------------------------------


def test_knn_separable_clusters_are_perfect():
    train_x, train_y = _clusters(seed=0)
    test_x, test_y = _clusters(seed=1)
    assert knn_accuracy(train_x, train_y, test_x, test_y, k=20) == 1.0
    assert knn_accuracy(train_x, train_y, test_x, test_y, k=1, temperature=0.01) == 1.0


def test_knn_k1_on_its_own_training_set_is_perfect():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(300, 32, generator=generator)  # distinct random points
    y = torch.randint(0, 10, (300,), generator=generator)  # arbitrary labels
    assert knn_accuracy(x, y, x, y, k=1) == 1.0


def test_knn_shuffled_labels_give_chance():
    generator = torch.Generator().manual_seed(0)
    x, xt = torch.randn(2000, 32, generator=generator), torch.randn(2000, 32, generator=generator)
    y = torch.randint(0, 10, (2000,), generator=generator)
    yt = torch.randint(0, 10, (2000,), generator=generator)
    accuracy = knn_accuracy(x, y, xt, yt, k=20)
    assert abs(accuracy - 0.1) < _chance_tolerance(2000, 10)


def _brute_force_knn(train_x, train_y, test_x, k, temperature, num_classes):
    """Wu et al. 2018's weighted vote written as plain loops: cosine, top k, exp(s / tau)."""
    predictions = []
    for query in test_x.tolist():
        sims = []
        for row, label in zip(train_x.tolist(), train_y.tolist()):
            dot = sum(a * b for a, b in zip(query, row))
            norm = math.sqrt(sum(a * a for a in query)) * math.sqrt(sum(b * b for b in row))
            sims.append((dot / norm, label))
        sims.sort(key=lambda pair: -pair[0])
        weights = [0.0] * num_classes
        for similarity, label in sims[:k]:
            weights[label] += math.exp(similarity / temperature)
        predictions.append(max(range(num_classes), key=lambda c: (weights[c], -c)))
    return predictions


@pytest.mark.parametrize("k, temperature", [(1, 0.1), (5, 0.5), (7, 0.07), (30, 1.0)])
def test_knn_weighting_matches_a_brute_force_loop(k, temperature):
    generator = torch.Generator().manual_seed(k)
    train_x = torch.randn(30, 5, generator=generator)
    train_y = torch.randint(0, 4, (30,), generator=generator)
    test_x = torch.randn(12, 5, generator=generator)
    got = knn_predict(train_x, train_y, test_x, k=k, temperature=temperature, batch_size=5)
    assert got.tolist() == _brute_force_knn(train_x, train_y, test_x, k, temperature, 4)


def test_knn_temperature_decides_between_one_close_and_two_far_neighbours():
    # one neighbour of class 0 at cosine 0.99, two of class 1 at cosine 0.8
    angle_close, angle_far = math.acos(0.99), math.acos(0.8)
    train_x = torch.tensor(
        [
            [math.cos(angle_close), math.sin(angle_close)],
            [math.cos(angle_far), math.sin(angle_far)],
            [math.cos(angle_far), -math.sin(angle_far)],
        ]
    )
    train_y, query = torch.tensor([0, 1, 1]), torch.tensor([[1.0, 0.0]])
    # exp(0.99/0.05) = 3.9e8 > 2 exp(0.8/0.05) = 1.8e7; exp(0.99) = 2.7 < 2 exp(0.8) = 4.5
    assert knn_predict(train_x, train_y, query, k=3, temperature=0.05).item() == 0
    assert knn_predict(train_x, train_y, query, k=3, temperature=1.0).item() == 1
    # a tiny temperature must not overflow (exp(0.99 / 1e-3) is inf in float32)
    assert knn_predict(train_x, train_y, query, k=3, temperature=1e-3).item() == 0


def test_knn_is_scale_invariant_and_checks_inputs():
    train_x, train_y = _clusters(spread=1.5)
    test_x, _ = _clusters(spread=1.5, seed=3)
    base = knn_predict(train_x, train_y, test_x)
    assert torch.equal(knn_predict(train_x * 7.0, train_y, test_x * 0.01), base)
    with pytest.raises(ValueError, match="differ in width"):
        knn_predict(train_x, train_y, test_x[:, :3])
    with pytest.raises(ValueError, match="one label per row"):
        knn_predict(train_x, train_y[:-1], test_x)
    with pytest.raises(TypeError, match="integer class indices"):
        knn_predict(train_x, train_y.float(), test_x)


# --------------------------------------------------------------------------------------------
# linear probe
# --------------------------------------------------------------------------------------------


def test_linear_probe_separable_clusters_are_perfect():
    train_x, train_y = _clusters(per_class=60, seed=0)
    test_x, test_y = _clusters(per_class=30, seed=1)
    result = linear_probe(train_x, train_y, test_x, test_y)
    assert result.test_accuracy == 1.0 and result.train_accuracy == 1.0
    assert result.selected_on == "validation" and result.weight_decay in DEFAULT_WEIGHT_DECAYS
    assert result.val_accuracy == result.val_accuracies[result.weight_decay] == 1.0
    assert (result.predict(test_x) == test_y).all()
    assert result.classifier(test_x).shape == (len(test_x), 4)


def test_linear_probe_shuffled_labels_give_chance():
    generator = torch.Generator().manual_seed(0)
    x, xt = torch.randn(2000, 32, generator=generator), torch.randn(2000, 32, generator=generator)
    y = torch.randint(0, 10, (2000,), generator=generator)
    yt = torch.randint(0, 10, (2000,), generator=generator)
    result = linear_probe(x, y, xt, yt)
    assert abs(result.test_accuracy - 0.1) < _chance_tolerance(2000, 10)


def test_linear_probe_matches_scikit_learn():
    """Same objective as sklearn's LogisticRegression with C = 1 / (weight_decay * N)."""
    from sklearn.linear_model import LogisticRegression

    train_x, train_y = _clusters(num_classes=3, per_class=80, dim=6, spread=2.0)
    test_x, test_y = _clusters(num_classes=3, per_class=40, dim=6, spread=2.0, seed=5)
    weight_decay = 1e-2
    ours = linear_probe(train_x, train_y, test_x, test_y, weight_decay=weight_decay, max_iter=500)
    standardizer = Standardizer.fit(train_x)
    reference = LogisticRegression(C=1 / (weight_decay * len(train_x)), tol=1e-8, max_iter=5000)
    reference.fit(standardizer(train_x).numpy(), train_y.numpy())
    with torch.no_grad():
        probabilities = ours.classifier(test_x).softmax(dim=1).numpy()
    expected = reference.predict_proba(standardizer(test_x).numpy())
    np.testing.assert_allclose(probabilities, expected, atol=2e-4)
    assert ours.test_accuracy == pytest.approx(
        reference.score(standardizer(test_x).numpy(), test_y.numpy())
    )
    assert ours.selected_on == "given" and ours.val_accuracy is None


def test_linear_probe_with_few_labels_uses_the_default_weight_decay():
    train_x, train_y = _clusters(per_class=3)
    test_x, test_y = _clusters(per_class=20, seed=2)
    result = linear_probe(train_x, train_y, test_x, test_y)
    assert (
        result.selected_on == "few-label default" and result.weight_decay == FEW_LABEL_WEIGHT_DECAY
    )
    assert result.test_accuracy == 1.0


def test_linear_probe_is_deterministic_and_adam_agrees():
    train_x, train_y = _clusters(per_class=60, spread=1.2)
    test_x, test_y = _clusters(per_class=60, spread=1.2, seed=9)
    first = linear_probe(train_x, train_y, test_x, test_y, seed=3)
    second = linear_probe(train_x, train_y, test_x, test_y, seed=3)
    assert first.as_dict() | {"time_s": 0} == second.as_dict() | {"time_s": 0}
    assert torch.equal(first.linear.weight, second.linear.weight)
    adam = linear_probe(
        train_x,
        train_y,
        test_x,
        test_y,
        method="adam",
        weight_decay=first.weight_decay,
        epochs=60,
        lr=0.05,
        batch_size=64,
    )
    assert abs(adam.test_accuracy - first.test_accuracy) <= 0.05


# --------------------------------------------------------------------------------------------
# features
# --------------------------------------------------------------------------------------------


def _encoder() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )


def test_extract_features_restores_modes_and_tracks_no_gradient():
    encoder = _encoder()
    encoder.train()
    encoder[1].eval()  # a mixed state (frozen BatchNorm) must come back exactly
    modes = [m.training for m in encoder.modules()]
    running_mean = encoder[1].running_mean.clone()
    images = torch.randint(0, 256, (37, 3, 8, 8), dtype=torch.uint8)
    features = extract_features(encoder, images, batch_size=10)
    assert features.shape == (37, 4) and features.dtype == torch.float32
    assert not features.requires_grad and features.grad_fn is None
    assert [m.training for m in encoder.modules()] == modes
    assert torch.equal(encoder[1].running_mean, running_mean)  # eval mode: statistics untouched
    # deterministic (dropout off), batch-size independent, uint8 == float / 255
    again = extract_features(encoder, images.float() / 255, batch_size=256)
    torch.testing.assert_close(features, again)


def test_extract_features_applies_the_transform_and_checks_the_output():
    encoder = _encoder()
    images = torch.rand(6, 3, 8, 8)
    shifted = extract_features(encoder, images, transform=lambda x: x * 0 + 0.5)
    assert torch.allclose(shifted, shifted[:1].expand_as(shifted))  # every image became the same
    with pytest.raises(ValueError, match="pool or flatten"):
        extract_features(nn.Conv2d(3, 2, 1), images)
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        extract_features(encoder, images[0])


# --------------------------------------------------------------------------------------------
# few-label curves
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["linear", "knn"])
def test_few_label_curve_is_deterministic_and_rises_with_labels(method):
    train_x, train_y = _clusters(num_classes=5, per_class=60, dim=8, spread=1.4, seed=0)
    test_x, test_y = _clusters(num_classes=5, per_class=100, dim=8, spread=1.4, seed=1)
    options = dict(per_class=(1, 3, 10, 50), seeds=(0, 1, 2), method=method)
    curve = few_label_curve(train_x, train_y, test_x, test_y, **options)
    assert curve == few_label_curve(train_x, train_y, test_x, test_y, **options)
    assert curve["per_class"] == [1, 3, 10, 50] and curve["method"] == method
    assert len(curve["accuracies"]) == 4 and all(len(a) == 3 for a in curve["accuracies"])
    assert curve["mean"][-1] > curve["mean"][0] + 0.05  # more labels help
    assert curve["mean"][-1] >= max(curve["mean"]) - 0.02
    np.testing.assert_allclose(curve["std"], [np.std(a, ddof=1) for a in curve["accuracies"]])
    np.testing.assert_allclose(curve["mean"], [np.mean(a) for a in curve["accuracies"]])


def test_few_label_curve_skips_budgets_larger_than_a_class():
    train_x, train_y = _clusters(per_class=8)
    test_x, test_y = _clusters(per_class=5, seed=1)
    with pytest.warns(UserWarning, match=r"\[10, 100\]"):
        curve = few_label_curve(
            train_x, train_y, test_x, test_y, per_class=(1, 5, 10, 100), seeds=(0,), method="knn"
        )
    assert curve["per_class"] == [1, 5] and curve["std"] == [0.0, 0.0]


# --------------------------------------------------------------------------------------------
# fine-tuning and the kNN monitor
# --------------------------------------------------------------------------------------------


def _bright_quadrant_images(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 [N, 3, 8, 8] noise with one brighter 4x4 quadrant; the label is which one."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 120, (n, 3, 8, 8), generator=generator, dtype=torch.uint8)
    labels = torch.randint(0, 4, (n,), generator=generator)
    for i, label in enumerate(labels.tolist()):
        row, col = divmod(label, 2)
        images[i, :, 4 * row : 4 * row + 4, 4 * col : 4 * col + 4] += 100
    return images, labels


def _quadrant_encoder() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
    )


def test_finetune_learns_and_leaves_the_original_encoder_alone():
    train_images, train_labels = _bright_quadrant_images(256, seed=0)
    test_images, test_labels = _bright_quadrant_images(128, seed=1)
    encoder = _quadrant_encoder()
    original = {k: v.clone() for k, v in encoder.state_dict().items()}
    result = finetune(
        encoder,
        nn.Linear(32, 4),
        train_images,
        train_labels,
        test_images,
        test_labels,
        epochs=6,
        lr=3e-2,
        batch_size=32,
    )
    assert result.test_accuracy > 0.9  # chance is 0.25
    assert result.history.steps_done == 6 * 8 and result.history.stopped_by == "epochs"
    assert all(torch.equal(v, encoder.state_dict()[k]) for k, v in original.items())
    tuned = result.model[0].state_dict()
    assert not torch.equal(tuned["0.weight"], original["0.weight"])


def test_finetune_freezing_options():
    train_images, train_labels = _bright_quadrant_images(64, seed=0)
    test_images, test_labels = _bright_quadrant_images(32, seed=1)
    encoder = _quadrant_encoder()
    original = {k: v.clone() for k, v in encoder.state_dict().items()}
    args = (train_images, train_labels, test_images, test_labels)

    frozen = finetune(
        encoder, nn.Linear(32, 4), *args, epochs=1, backbone_lr_scale=0, batch_size=16
    )
    assert all(torch.equal(v, frozen.model[0].state_dict()[k]) for k, v in original.items())

    frozen_bn = finetune(encoder, nn.Linear(32, 4), *args, epochs=1, freeze_bn=True, batch_size=16)
    tuned = frozen_bn.model[0].state_dict()
    assert torch.equal(tuned["1.running_mean"], original["1.running_mean"])  # statistics kept
    assert not torch.equal(tuned["0.weight"], original["0.weight"])  # weights still learn
    with pytest.raises(ValueError, match="needs a limit"):
        finetune(encoder, nn.Linear(32, 4), *args)


def test_knn_monitor_reports_after_each_epoch():
    train_images, train_labels = _bright_quadrant_images(64, seed=0)
    test_images, test_labels = _bright_quadrant_images(32, seed=1)
    model = nn.Sequential(_quadrant_encoder(), nn.Linear(32, 4))
    monitor = KNNMonitor(
        train_images, train_labels, test_images, test_labels, encoder_of=lambda m: m[0], k=5
    )

    def step_fn(model, batch):
        images, labels = batch
        return nn.functional.cross_entropy(model(images.float() / 255), labels)

    history = train(
        step_fn,
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        TensorLoader(train_images, train_labels, batch_size=16),
        TrainConfig(epochs=2, progress=False, checkpoint_every_s=None),
        hooks=[monitor],
    )
    knn = history.metric("knn", "epoch")
    assert len(knn) == 2 and all(0.0 <= a <= 1.0 for a in knn)
