"""The lecture's transfer protocols, one function each.

Self-supervised pretraining (stage 1) is judged by how well its encoder transfers (stage 2):
"Transfer encoder to downstream tasks via linear classifier, K-NN, fine-tuning" (lecture,
"Self-Supervised Learning Pipeline"). The lecture also warns that the protocol's details
change the numbers ("Linear probe? From which layer? How to train linear models? ... K-NN?
What value of K? Normalization on features?"), so every notebook uses these functions, with
the choices written down once, here:

* ``extract_features``: the frozen encoder's features ``[N, D]`` (eval mode, no gradients);
* ``knn_predict`` / ``knn_accuracy``: cosine similarity, temperature-weighted votes;
* ``linear_probe``: standardised features, multinomial logistic regression by full-batch
  L-BFGS, the L2 strength chosen on a held-out validation split, then refit;
* ``finetune``: the whole encoder plus a new head, trained with ``replearn.train.train``;
* ``few_label_curve``: accuracy against labels per class, mean and spread over seeds;
* ``KNNMonitor``: a ``Hook`` that reports kNN accuracy after each epoch of pretraining.

Features live on the CPU unless you put them elsewhere; each function computes where its
inputs are (or on ``device``).

>>> import torch
>>> generator = torch.Generator().manual_seed(0)
>>> centres = 10 * torch.randn(3, 8, generator=generator)  # [K, D]
>>> labels = torch.arange(3).repeat(20)  # [N]
>>> features = centres[labels] + torch.randn(60, 8, generator=generator)  # [N, D]
>>> knn_accuracy(features, labels, features, labels, k=5)
1.0
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from replearn.data import as_float_images, few_label_indices
from replearn.train import History, Hook, TensorLoader, TrainConfig, draw, pick_device, train

__all__ = [
    "DEFAULT_WEIGHT_DECAYS",
    "FEW_LABEL_WEIGHT_DECAY",
    "PROBE_WEIGHT_DECAY",
    "SEARCH_PATIENCE",
    "FinetuneResult",
    "KNNMonitor",
    "ProbeResult",
    "Standardizer",
    "extract_features",
    "few_label_curve",
    "finetune",
    "knn_accuracy",
    "knn_and_linear",
    "knn_predict",
    "linear_probe",
]

# L2 strengths searched by ``linear_probe``, strongest first. The penalty is
# ``0.5 * weight_decay * ||W||^2`` added to the mean cross-entropy, so scikit-learn's
# ``LogisticRegression(C=C)`` on n samples is ``weight_decay = 1 / (C * n)``:
# C = 1 on 4,500 samples is about 2e-4, inside the grid.
DEFAULT_WEIGHT_DECAYS: tuple[float, ...] = (
    1.0,
    3e-1,
    1e-1,
    3e-2,
    1e-2,
    3e-3,
    1e-3,
    3e-4,
    1e-4,
    1e-5,
)

# The search stops once this many weaker values in a row score below the best on validation:
# weak penalties are the slow fits (L-BFGS runs to max_iter) and rarely win.
SEARCH_PATIENCE = 2

# Used when a labelled set is too small to hold out at least one validation example per class
# (few-label budgets below 10 per class at val_fraction 0.1): with a handful of labels a strong
# penalty is the safe choice (benchmarks/README.md, "Measurements behind the settings").
FEW_LABEL_WEIGHT_DECAY = 1e-1

# The linear probe's L2 strength where the notebooks fix it rather than search it (Assignments
# 3 to 7 probe many encoders on a CPU budget): scikit-learn's C = 1 on 4,500 samples.
PROBE_WEIGHT_DECAY = 2e-4


# --------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------


def _check_features(features: torch.Tensor, labels: torch.Tensor | None, name: str) -> None:
    if not isinstance(features, torch.Tensor) or features.dim() != 2:
        shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features)
        raise ValueError(f"{name} features must be a 2-D tensor [N, D], got {shape}")
    if labels is None:
        return
    if labels.dim() != 1 or len(labels) != len(features):
        raise ValueError(
            f"{name} labels must be 1-D with one label per row of the features: features "
            f"{tuple(features.shape)}, labels {tuple(labels.shape)}"
        )
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise TypeError(f"{name} labels must be integer class indices, got dtype {labels.dtype}")
    if len(labels) and int(labels.min()) < 0:
        raise ValueError(f"{name} labels must be class indices >= 0, got min {int(labels.min())}")


def _num_classes(num_classes: int | None, *label_sets: torch.Tensor) -> int:
    seen = max((int(labels.max()) + 1 for labels in label_sets if len(labels)), default=0)
    if num_classes is None:
        return seen
    if num_classes < seen:
        raise ValueError(f"num_classes={num_classes} but the labels go up to {seen - 1}")
    return num_classes


# --------------------------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------------------------


@torch.no_grad()
def extract_features(
    encoder: nn.Module,
    images: torch.Tensor,
    *,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """The frozen encoder's features of ``images``, ``[N, D]`` float32 on the CPU.

    Runs under ``torch.no_grad()`` with the encoder in eval mode (BatchNorm uses its running
    statistics, dropout is off), and puts every submodule back in the mode it was in.

    Args:
        encoder: maps a float batch ``[N, C, H, W]`` to ``[N, D]`` (pool or flatten inside it).
        images: ``[N, C, H, W]``, uint8 in [0, 255] or float in [0, 1], on any device.
        batch_size: images per forward pass.
        device: where to run (default: where the encoder's parameters, or buffers, are). The
            encoder is not moved; pass the device it is on.
        transform: applied to each float batch on the device before the encoder, e.g.
            resize + ImageNet normalisation for a pretrained network.
    """
    images = torch.as_tensor(images)
    if images.dim() != 4:
        raise ValueError(f"images must be [N, C, H, W], got shape {tuple(images.shape)}")
    device = torch.device(device) if device is not None else _parameter_device(encoder)
    modes = [(module, module.training) for module in encoder.modules()]
    encoder.eval()
    chunks = []
    try:
        for start in range(0, len(images), batch_size):
            batch = as_float_images(images[start : start + batch_size].to(device))  # [n, C, H, W]
            if transform is not None:
                batch = transform(batch)  # [n, C, H', W']
            features = encoder(batch)  # [n, D]
            if not isinstance(features, torch.Tensor) or features.dim() != 2:
                shape = (
                    tuple(features.shape) if isinstance(features, torch.Tensor) else type(features)
                )
                raise ValueError(
                    f"the encoder returned {shape}; extract_features needs [N, D] (one row per image): pool or "
                    "flatten inside the encoder, e.g. nn.Sequential(encoder, nn.Flatten())"
                )
            chunks.append(features.float().cpu())
    finally:
        for module, was_training in modes:
            module.training = was_training
    if not chunks:
        raise ValueError("no images to extract features from (N = 0)")
    return torch.cat(chunks)  # [N, D]


# --------------------------------------------------------------------------------------------
# k-nearest neighbours
# --------------------------------------------------------------------------------------------


@torch.no_grad()
def knn_predict(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    test_feats: torch.Tensor,
    *,
    k: int = 20,
    temperature: float = 0.1,
    num_classes: int | None = None,
    batch_size: int = 256,
) -> torch.Tensor:
    """Weighted kNN predictions ``[M]`` (int64, on ``train_feats``' device).

    The weighted kNN of Wu et al. 2018, "Unsupervised Feature Learning via Non-Parametric
    Instance Discrimination" (Section 3.4): the similarity of a test feature to a training
    feature is the cosine ``s_i``; the ``k`` most similar training samples vote, neighbour ``i``
    with weight ``alpha_i = exp(s_i / tau)``, and the class with the largest total weight
    ``w_c = sum_i alpha_i * 1(c_i = c)`` wins. lightly's CIFAR-10 benchmark uses this rule with
    ``tau = 0.1`` (perf_anchors.md, section 1.1); ties go to the lower class index.

    Args:
        train_feats: ``[N, D]`` features of the labelled samples.
        train_labels: ``[N]`` int64 class indices.
        test_feats: ``[M, D]`` features to classify.
        k: neighbours that vote (capped at N).
        temperature: ``tau``; small values approach a plain nearest-neighbour vote.
        num_classes: ``K`` (default: the largest training label + 1).
        batch_size: test rows per similarity block (memory ``batch_size x N``).
    """
    _check_features(train_feats, train_labels, "train")
    _check_features(test_feats, None, "test")
    if train_feats.shape[1] != test_feats.shape[1]:
        raise ValueError(
            f"train and test features differ in width: {train_feats.shape[1]} vs "
            f"{test_feats.shape[1]}; extract both with the same encoder"
        )
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature!r}")
    if len(train_feats) == 0:
        raise ValueError("kNN needs at least one training sample")
    device = train_feats.device
    num_classes = _num_classes(num_classes, train_labels)
    k = min(k, len(train_feats))
    bank = F.normalize(train_feats.float(), dim=1)  # [N, D] unit rows
    bank_labels = train_labels.to(device)  # [N]
    predictions = []
    for start in range(0, len(test_feats), batch_size):
        queries = F.normalize(
            test_feats[start : start + batch_size].to(device).float(), dim=1
        )  # [n, D]
        similarity = queries @ bank.T  # [n, N] cosine similarities
        top_sim, top_index = similarity.topk(k, dim=1)  # [n, k], [n, k], most similar first
        # exp(s_i / tau), shifted by the row's best s: the same argmax, no overflow for tiny tau
        weights = torch.exp((top_sim - top_sim[:, :1]) / temperature)  # [n, k]
        votes = torch.zeros(len(queries), num_classes, device=device)  # [n, K]
        votes.scatter_add_(1, bank_labels[top_index], weights)  # w_c = sum_i alpha_i 1(c_i = c)
        predictions.append(votes.argmax(dim=1))  # [n]
    return (
        torch.cat(predictions) if predictions else torch.empty(0, dtype=torch.long, device=device)
    )


def knn_accuracy(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    test_feats: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    k: int = 20,
    temperature: float = 0.1,
    num_classes: int | None = None,
    batch_size: int = 256,
) -> float:
    """Top-1 accuracy in [0, 1] of ``knn_predict`` (cosine similarity, exp(s/tau) votes)."""
    _check_features(test_feats, test_labels, "test")
    predictions = knn_predict(
        train_feats,
        train_labels,
        test_feats,
        k=k,
        temperature=temperature,
        num_classes=_num_classes(num_classes, train_labels, test_labels),
        batch_size=batch_size,
    )
    if len(test_labels) == 0:
        raise ValueError("no test samples to score")
    return (predictions.cpu() == test_labels.cpu()).float().mean().item()


# --------------------------------------------------------------------------------------------
# Linear probe
# --------------------------------------------------------------------------------------------


class Standardizer(nn.Module):
    """``(x - mean) / std`` per feature, with statistics fitted on training features.

    >>> scaler = Standardizer.fit(torch.tensor([[0.0, 1.0], [2.0, 3.0]]))
    >>> scaler(torch.tensor([[1.0, 2.0]])).tolist()
    [[0.0, 0.0]]
    """

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean)  # [D]
        self.register_buffer("std", std)  # [D]

    @classmethod
    def fit(cls, features: torch.Tensor, eps: float = 1e-6) -> Standardizer:
        """Mean and standard deviation of ``features`` ``[N, D]``; constant features get std 1."""
        features = features.float()
        mean = features.mean(dim=0)  # [D]
        std = features.std(dim=0, unbiased=False)  # [D]
        std = torch.where(std > eps, std, torch.ones_like(std))
        return cls(mean, std)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return (features.float() - self.mean) / self.std  # [N, D]


@dataclass
class ProbeResult:
    """A linear probe's outcome. ``classifier`` = ``Sequential(standardizer, linear)``."""

    test_accuracy: float
    val_accuracy: float | None  # accuracy of the chosen weight decay on the validation split
    train_accuracy: float  # of the refit model on all training features
    weight_decay: float  # the chosen L2 strength
    selected_on: str  # "validation", "given" or "few-label default"
    val_accuracies: dict[float, float]  # validation accuracy of every weight decay tried
    linear: nn.Linear
    standardizer: Standardizer
    time_s: float

    @property
    def classifier(self) -> nn.Sequential:
        return nn.Sequential(self.standardizer, self.linear)

    @torch.no_grad()
    def predict(self, features: torch.Tensor) -> torch.Tensor:
        """Class predictions ``[M]`` for raw (unstandardised) features ``[M, D]``."""
        device = self.linear.weight.device
        return self.classifier(features.to(device)).argmax(dim=1)

    def as_dict(self) -> dict[str, Any]:
        """The numbers, as plain data for JSON."""
        return {
            "test_accuracy": self.test_accuracy,
            "val_accuracy": self.val_accuracy,
            "train_accuracy": self.train_accuracy,
            "weight_decay": self.weight_decay,
            "selected_on": self.selected_on,
            "val_accuracies": {str(k): v for k, v in self.val_accuracies.items()},
            "time_s": self.time_s,
        }


def _stratified_split(
    labels: torch.Tensor, val_fraction: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (fit, val): ``floor(val_fraction * n_c)`` random samples of each class to val."""
    fit_parts, val_parts = [], []
    for c in torch.unique(labels).tolist():
        members = torch.nonzero(labels == c).flatten()  # [n_c]
        members = members[torch.randperm(len(members), generator=generator)]
        n_val = int(math.floor(val_fraction * len(members)))
        val_parts.append(members[:n_val])
        fit_parts.append(members[n_val:])
    return torch.cat(fit_parts).sort().values, torch.cat(val_parts).sort().values


def _fit_logistic(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    weight_decay: float,
    *,
    method: str,
    init: tuple[torch.Tensor, torch.Tensor] | None,
    max_iter: int,
    epochs: int,
    lr: float,
    batch_size: int,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimise mean cross-entropy + 0.5 * weight_decay * ||W||^2 over (W [K, D], b [K])."""
    dim = features.shape[1]
    if init is None:
        weight = torch.zeros(num_classes, dim, device=features.device)  # [K, D]
        bias = torch.zeros(num_classes, device=features.device)  # [K]
    else:
        weight, bias = (t.detach().clone() for t in init)
    weight.requires_grad_(True)
    bias.requires_grad_(True)

    def objective(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = x @ weight.T + bias  # [N, K]
        return F.cross_entropy(logits, y) + 0.5 * weight_decay * weight.pow(2).sum()

    if method == "lbfgs":
        # full batch: the problem is convex, so a quasi-Newton method with a strong-Wolfe line
        # search reaches the optimum in tens of iterations, with no learning rate to tune
        optimizer = torch.optim.LBFGS(
            [weight, bias],
            lr=1.0,
            max_iter=max_iter,
            history_size=20,
            line_search_fn="strong_wolfe",
        )

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            loss = objective(features, labels)
            loss.backward()
            return loss

        optimizer.step(closure)
    elif method == "adam":
        optimizer = torch.optim.Adam([weight, bias], lr=lr)
        steps_per_epoch = math.ceil(len(features) / batch_size)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * steps_per_epoch)
        for _ in range(epochs):
            order = draw(
                torch.randperm, len(features), generator=generator, device=features.device
            )  # [N]
            for start in range(0, len(features), batch_size):
                rows = order[start : start + batch_size]  # [n]
                optimizer.zero_grad()
                objective(features[rows], labels[rows]).backward()
                optimizer.step()
                schedule.step()
    else:
        raise ValueError(f"method must be 'lbfgs' or 'adam', got {method!r}")
    return weight.detach(), bias.detach()


def _accuracy(weight: torch.Tensor, bias: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return ((x @ weight.T + bias).argmax(dim=1) == y).float().mean().item()


def linear_probe(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    test_feats: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    weight_decay: float | Sequence[float] | None = None,
    val_fraction: float = 0.1,
    method: Literal["lbfgs", "adam"] = "lbfgs",
    max_iter: int = 100,
    epochs: int = 100,
    lr: float = 1e-2,
    batch_size: int = 1024,
    num_classes: int | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
) -> ProbeResult:
    """Multinomial logistic regression on frozen, standardised features.

    The protocol, close to the CLIP paper's linear probes (Radford et al. 2021, Appendix A.3,
    which fit scikit-learn's L-BFGS logistic regression and choose the L2 strength on a
    validation split): features are standardised with the training statistics; a class-
    stratified ``val_fraction`` of the training set is held out; one model per weight decay
    is fitted on the rest (strongest first, each warm-started from the previous one) and
    scored on the held-out part; the best weight decay (ties: the stronger) is refitted on
    all training features and scored once on the test set. The test set never chooses anything.
    The search stops early once ``SEARCH_PATIENCE`` weaker values in a row score below the best.

    Args:
        train_feats, train_labels: ``[N, D]`` features and ``[N]`` int64 labels.
        test_feats, test_labels: ``[M, D]`` and ``[M]``.
        weight_decay: ``None`` searches ``DEFAULT_WEIGHT_DECAYS``; a sequence searches it; a
            single float is used as given. The penalty is ``0.5 * wd * ||W||^2`` on top of
            the mean cross-entropy (the bias is not penalised).
        val_fraction: share of each class held out for the search. When that leaves fewer
            validation samples than classes (under 10 labels per class at 0.1), there is no
            search and ``FEW_LABEL_WEIGHT_DECAY`` is used.
        method: ``"lbfgs"`` (full batch, default) or ``"adam"`` (mini-batches of
            ``batch_size`` for ``epochs`` passes at ``lr`` with a cosine schedule, for feature
            sets too large for one batch on the device).
        max_iter: L-BFGS iterations per fit (on CIFAR-10 features of a random CNN, 100 came
            within half a point of 200 and 300 in test accuracy; raise it for exact optima).
        num_classes: ``K`` (default: the largest label + 1).
        seed: the validation split (and Adam's batch order).
        device: where to fit (default: where ``train_feats`` are).
    """
    start_time = time.perf_counter()
    _check_features(train_feats, train_labels, "train")
    _check_features(test_feats, test_labels, "test")
    if train_feats.shape[1] != test_feats.shape[1]:
        raise ValueError(
            f"train and test features differ in width: {train_feats.shape[1]} vs {test_feats.shape[1]}"
        )
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    device = pick_device(device) if device is not None else train_feats.device
    num_classes = _num_classes(num_classes, train_labels, test_labels)
    generator = torch.Generator().manual_seed(seed)

    standardizer = Standardizer.fit(train_feats.to(device))
    x_train = standardizer(train_feats.to(device))  # [N, D]
    y_train = train_labels.to(device)  # [N]
    x_test = standardizer(test_feats.to(device))  # [M, D]
    y_test = test_labels.to(device)  # [M]
    fit_kwargs = dict(
        method=method,
        max_iter=max_iter,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        generator=generator,
    )

    if weight_decay is None:
        candidates = list(DEFAULT_WEIGHT_DECAYS)
    elif isinstance(weight_decay, (int, float)):
        candidates = [float(weight_decay)]
    else:
        candidates = sorted((float(wd) for wd in weight_decay), reverse=True)
    if not candidates or any(wd < 0 for wd in candidates):
        raise ValueError(
            f"weight_decay must be >= 0 (or a non-empty list of them), got {weight_decay!r}"
        )

    fit_index, val_index = _stratified_split(train_labels.cpu(), val_fraction, generator)
    val_accuracies: dict[float, float] = {}
    init = None
    if len(candidates) == 1:
        chosen, selected_on = candidates[0], "given"
    elif len(val_index) < num_classes:
        chosen, selected_on = FEW_LABEL_WEIGHT_DECAY, "few-label default"
    else:
        fit_index, val_index = fit_index.to(device), val_index.to(device)
        x_fit, y_fit = x_train[fit_index], y_train[fit_index]  # [N_fit, D], [N_fit]
        x_val, y_val = x_train[val_index], y_train[val_index]  # [N_val, D], [N_val]
        best, worse_in_a_row = None, 0
        for wd in candidates:  # strongest first; each fit starts from the previous optimum
            init = _fit_logistic(x_fit, y_fit, num_classes, wd, init=init, **fit_kwargs)
            val_accuracies[wd] = _accuracy(*init, x_val, y_val)
            if best is None or val_accuracies[wd] > val_accuracies[best[0]]:
                best, worse_in_a_row = (wd, init), 0
                if val_accuracies[wd] == 1.0:
                    break  # weaker values could only tie, and ties go to the stronger
            elif val_accuracies[wd] < val_accuracies[best[0]]:
                worse_in_a_row += 1
                if worse_in_a_row >= SEARCH_PATIENCE:
                    break
        chosen, selected_on = best[0], "validation"
        init = best[1]

    weight, bias = _fit_logistic(x_train, y_train, num_classes, chosen, init=init, **fit_kwargs)
    linear = nn.Linear(train_feats.shape[1], num_classes).to(device)
    with torch.no_grad():
        linear.weight.copy_(weight)
        linear.bias.copy_(bias)
    return ProbeResult(
        test_accuracy=_accuracy(weight, bias, x_test, y_test),
        val_accuracy=val_accuracies.get(chosen),
        train_accuracy=_accuracy(weight, bias, x_train, y_train),
        weight_decay=chosen,
        selected_on=selected_on,
        val_accuracies=val_accuracies,
        linear=linear,
        standardizer=standardizer,
        time_s=time.perf_counter() - start_time,
    )


def knn_and_linear(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    test_feats: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    k: int = 20,
    max_iter: int = 100,
    weight_decay: float | Sequence[float] | None = PROBE_WEIGHT_DECAY,
) -> dict[str, float]:
    """``{"knn": acc, "linear": acc}`` in [0, 1]: the two frozen-feature protocols every
    self-supervised notebook reports, ``knn_accuracy`` (``k`` neighbours) and ``linear_probe``
    (``weight_decay`` fixed at :data:`PROBE_WEIGHT_DECAY` unless given; None searches it).

    >>> generator = torch.Generator().manual_seed(0)
    >>> labels = torch.arange(2).repeat(20)  # [N]
    >>> centres = 10 * torch.eye(2, 4)  # [K, D]
    >>> feats = centres[labels] + torch.randn(40, 4, generator=generator)  # [N, D]
    >>> knn_and_linear(feats, labels, feats, labels, k=5)
    {'knn': 1.0, 'linear': 1.0}
    """
    knn = knn_accuracy(train_feats, train_labels, test_feats, test_labels, k=k)
    probe = linear_probe(
        train_feats,
        train_labels,
        test_feats,
        test_labels,
        weight_decay=weight_decay,
        max_iter=max_iter,
    )
    return {"knn": knn, "linear": probe.test_accuracy}


# --------------------------------------------------------------------------------------------
# Fine-tuning
# --------------------------------------------------------------------------------------------


@dataclass
class FinetuneResult:
    """A fine-tuning run's outcome; ``model`` is ``Sequential(encoder, head)``, fine-tuned."""

    test_accuracy: float
    history: History
    model: nn.Sequential
    config: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "test_accuracy": self.test_accuracy,
            "history": self.history.as_dict(),
            **self.config,
        }


_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def finetune(
    encoder: nn.Module,
    head: nn.Module,
    train_images: torch.Tensor,
    train_labels: torch.Tensor,
    test_images: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    epochs: int | None = None,
    budget_s: float | None = None,
    lr: float = 1e-3,
    backbone_lr_scale: float = 0.1,
    weight_decay: float = 1e-2,
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    batch_size: int = 128,
    device: str | torch.device | None = None,
    freeze_bn: bool = False,
    seed: int = 0,
    progress: bool = False,
    in_place: bool = False,
) -> FinetuneResult:
    """Fine-tune ``encoder`` with a new ``head`` on labelled images; score on the test images.

    The lecture's recipe ("Transfer Learning with CNNs: Fine-Tuning", after Donahue et al.
    2014): add a randomly initialised head for the new task and continue training the whole
    model, with "~1/10 of LR used in original training" for the pretrained part
    (``backbone_lr_scale``) and, optionally, "BatchNorm in 'test' mode" (``freeze_bn``: the
    running statistics stay as pretrained; the affine parameters still learn).
    ``backbone_lr_scale=0`` freezes the encoder entirely (feature extraction + trained head).

    AdamW (``lr`` for the head, ``lr * backbone_lr_scale`` for the encoder), cosine decay
    over the steps when ``epochs`` is given (constant under a budget alone), cross-entropy,
    trained by ``replearn.train.train`` (AMP on CUDA). The encoder is copied first unless
    ``in_place=True``, so a notebook can still probe the original afterwards.

    Args:
        encoder: maps float images ``[N, C, H, W]`` to features ``[N, D]``.
        head: maps ``[N, D]`` to logits ``[N, K]`` (e.g. ``nn.Linear(D, K)``).
        train_images, test_images: ``[N, C, H, W]`` uint8 or float in [0, 1].
        train_labels, test_labels: ``[N]`` int64.
        epochs, budget_s: training length; whichever ends first (at least one is needed).
        augment: batched augmentation of float images on the device (training only), e.g.
            ``functools.partial(replearn.augment.<fn>, generator=...)``.
        transform: applied after ``augment`` in training and alone at test time (e.g. resize
            + ImageNet normalisation for a pretrained network).
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` (default: where the encoder is).
    """
    if backbone_lr_scale < 0:
        raise ValueError(f"backbone_lr_scale must be >= 0, got {backbone_lr_scale!r}")
    if len(train_images) != len(train_labels):
        raise ValueError(f"{len(train_images)} training images but {len(train_labels)} labels")
    if not in_place:  # keep the caller's encoder as it was (a later probe may need it)
        encoder, head = copy.deepcopy(encoder), copy.deepcopy(head)
    device = pick_device(device) if device is not None else _parameter_device(encoder)
    model = nn.Sequential(encoder, head).to(device)
    frozen_encoder = backbone_lr_scale == 0
    if frozen_encoder:
        encoder.requires_grad_(False)
    groups = [{"params": [p for p in head.parameters() if p.requires_grad], "lr": lr}]
    if not frozen_encoder:
        groups.append(
            {
                "params": [p for p in encoder.parameters() if p.requires_grad],
                "lr": lr * backbone_lr_scale,
            }
        )
    optimizer = torch.optim.AdamW(groups, weight_decay=weight_decay)
    loader = TensorLoader(
        train_images,
        train_labels,
        batch_size=min(batch_size, len(train_images)),
        seed=seed,
        device=device,
    )
    scheduler = None
    if epochs is not None:
        total_steps = max(epochs * len(loader), 1)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps)),
        )
    # layers kept in eval mode during training: all of the frozen encoder, or its BatchNorms
    eval_layers = (
        [encoder]
        if frozen_encoder
        else [m for m in encoder.modules() if isinstance(m, _BATCH_NORMS)]
        if freeze_bn
        else []
    )

    def step_fn(
        model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        images, labels = batch  # [N, C, H, W], [N]
        for layer in eval_layers:  # train() put them back in training mode
            layer.eval()
        x = as_float_images(images)  # [N, C, H, W]
        if augment is not None:
            x = augment(x)  # [N, C, H, W]
        if transform is not None:
            x = transform(x)  # [N, C, H', W']
        logits = model(x)  # [N, K]
        loss = F.cross_entropy(logits, labels)
        return {"loss": loss, "accuracy": (logits.argmax(dim=1) == labels).float().mean()}

    history = train(
        step_fn,
        model,
        optimizer,
        loader,
        TrainConfig(epochs=epochs, budget_s=budget_s, progress=progress, desc="finetune"),
        scheduler=scheduler,
        device=device,
    )
    logits = extract_features(
        model, test_images, batch_size=256, device=device, transform=transform
    )  # [M, K]
    accuracy = (logits.argmax(dim=1) == test_labels.cpu()).float().mean().item()
    settings = dict(
        lr=lr,
        backbone_lr_scale=backbone_lr_scale,
        weight_decay=weight_decay,
        batch_size=loader.batch_size,
        freeze_bn=freeze_bn,
        seed=seed,
    )
    return FinetuneResult(test_accuracy=accuracy, history=history, model=model, config=settings)


def _parameter_device(module: nn.Module) -> torch.device:
    """Where ``module`` lives: its first parameter's device, else its first buffer's (a model
    updated by hand, such as an RBM, keeps its weights in buffers), else the CPU."""
    tensor = next(module.parameters(), None)
    if tensor is None:
        tensor = next(module.buffers(), None)
    return tensor.device if tensor is not None else torch.device("cpu")


# --------------------------------------------------------------------------------------------
# Few-label curves
# --------------------------------------------------------------------------------------------


def few_label_curve(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    test_feats: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    per_class: Sequence[int] = (1, 5, 10, 50, 100),
    seeds: Sequence[int] = (0, 1, 2),
    method: Literal["linear", "knn"] = "linear",
    k: int = 20,
    temperature: float = 0.1,
    probe_kwargs: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Test accuracy against the number of labels per class, mean and spread over seeds.

    The ``n``-per-class subsets come from ``replearn.data.few_label_indices(labels, n, seed)``,
    class-balanced and nested for one seed (the 5-per-class set holds the 1-per-class set), so
    the curve's steps measure the labels added, not a new draw, and a notebook that draws the
    same subset gets the same images. Each subset is scored with
    ``linear_probe`` (``method="linear"``, with ``probe_kwargs``) or ``knn_accuracy``
    (``"knn"``, ``k`` capped at the subset size). Budgets above the smallest class are
    dropped with a warning.

    Returns plain data: ``{"method", "per_class": [n...], "seeds": [...], "mean": [...],
    "std": [...], "accuracies": [[acc per seed] per n]}``; ``std`` is the sample standard
    deviation over seeds (0 with one seed).
    """
    _check_features(train_feats, train_labels, "train")
    _check_features(test_feats, test_labels, "test")
    if method not in ("linear", "knn"):
        raise ValueError(f"method must be 'linear' or 'knn', got {method!r}")
    if not seeds:
        raise ValueError("few_label_curve needs at least one seed")
    labels_cpu = train_labels.cpu()
    classes_present = torch.unique(labels_cpu)
    counts = torch.stack([(labels_cpu == c).sum() for c in classes_present])
    smallest_class = int(counts.min())
    budgets = sorted({int(n) for n in per_class})
    if any(n < 1 for n in budgets):
        raise ValueError(f"per_class budgets must be >= 1, got {list(per_class)}")
    dropped = [n for n in budgets if n > smallest_class]
    budgets = [n for n in budgets if n <= smallest_class]
    if dropped:
        warnings.warn(
            f"few_label_curve: budgets {dropped} per class exceed the smallest class "
            f"({smallest_class} samples) and are skipped",
            stacklevel=2,
        )
    if not budgets:
        raise ValueError(
            f"no budget in {list(per_class)} fits the smallest class ({smallest_class})"
        )
    num_classes = _num_classes(None, train_labels, test_labels)

    accuracies: list[list[float]] = [[] for _ in budgets]
    for seed in seeds:
        for i, n in enumerate(budgets):
            index = few_label_indices(labels_cpu, n, seed)  # [n * K] CPU indices suit any device
            feats, labels = train_feats[index], train_labels[index]  # [n*K, D], [n*K]
            if method == "knn":
                accuracy = knn_accuracy(
                    feats,
                    labels,
                    test_feats,
                    test_labels,
                    k=k,
                    temperature=temperature,
                    num_classes=num_classes,
                )
            else:
                options = {"seed": seed, "num_classes": num_classes, **(probe_kwargs or {})}
                accuracy = linear_probe(
                    feats, labels, test_feats, test_labels, **options
                ).test_accuracy
            accuracies[i].append(accuracy)
    return {
        "method": method,
        "per_class": budgets,
        "seeds": list(seeds),
        "mean": [float(np.mean(a)) for a in accuracies],
        "std": [float(np.std(a, ddof=1)) if len(a) > 1 else 0.0 for a in accuracies],
        "accuracies": accuracies,
    }


# --------------------------------------------------------------------------------------------
# A kNN monitor for pretraining
# --------------------------------------------------------------------------------------------


class KNNMonitor(Hook):
    """A ``train`` hook: kNN accuracy of the encoder after every ``every`` epochs.

    The cheap progress signal of self-supervised pretraining (lightly's benchmarks report it
    every epoch): features of a labelled bank and a test set, weighted kNN, no training.
    The result joins the epoch record under ``name``.

    Args:
        train_images, train_labels: the labelled bank ``[N, C, H, W]``, ``[N]``.
        test_images, test_labels: the images scored ``[M, C, H, W]``, ``[M]``.
        encoder_of: picks the encoder out of the trained model (default: the model itself),
            e.g. ``lambda model: model.encoder``.
    """

    def __init__(
        self,
        train_images: torch.Tensor,
        train_labels: torch.Tensor,
        test_images: torch.Tensor,
        test_labels: torch.Tensor,
        *,
        encoder_of: Callable[[nn.Module], nn.Module] | None = None,
        every: int = 1,
        k: int = 20,
        temperature: float = 0.1,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        batch_size: int = 256,
        name: str = "knn",
    ) -> None:
        super().__init__()
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive int, got {every!r}")
        self.train_images, self.train_labels = train_images, train_labels
        self.test_images, self.test_labels = test_images, test_labels
        self.encoder_of = encoder_of
        self.every, self.k, self.temperature = every, k, temperature
        self.transform, self.batch_size, self.name = transform, batch_size, name

    def on_epoch_end(
        self, model: nn.Module, epoch: int, history: History
    ) -> dict[str, float] | None:
        if (epoch + 1) % self.every:
            return None
        encoder = self.encoder_of(model) if self.encoder_of is not None else model
        options = dict(batch_size=self.batch_size, transform=self.transform)
        bank = extract_features(encoder, self.train_images, **options)  # [N, D]
        queries = extract_features(encoder, self.test_images, **options)  # [M, D]
        accuracy = knn_accuracy(
            bank,
            self.train_labels,
            queries,
            self.test_labels,
            k=self.k,
            temperature=self.temperature,
        )
        return {self.name: accuracy}
