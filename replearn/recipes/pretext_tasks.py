"""Assignment 3 I's experiments: the settings per preset, the training driver that runs every
pretext task through ``replearn.train.train``, and the evaluation (block-wise kNN and linear
probes on whole images, patch-grid features, the pretext confusion matrix, a non-linear probe
for the GPU presets).

Functions that run one of the student's parts take the student's module ``pt`` first.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from replearn import augment
from replearn.backbones import ConvBackbone, SmallCNN
from replearn.data import ImageData, as_float_images, to_float
from replearn.evaluate import knn_and_linear
from replearn.recipes.common import (
    PretrainMethod,
    Run,
    StepContext,
    classification_step,
    counted_in_steps,
)
from replearn.train import BudgetCosine, TensorLoader, TrainConfig, train

__all__ = [
    "METHOD_NAMES",
    "PRETRAIN_METHODS",
    "PretextConfig",
    "best_block",
    "block_features",
    "evaluate_encoder",
    "fit_geometry",
    "light_augment",
    "nonlinear_probe",
    "patch_grid_features",
    "pretrain",
    "probe_features",
    "rotation_confusion",
]

METHOD_NAMES = ("rotation", "context", "jigsaw", "exemplar", "supervised")

# cpu-quick's runs in optimizer steps: what an idle 2-core machine does in each run's seconds
# (benchmarks/README.md, "Budgets in steps")
ROTATION_STEPS, ABLATION_STEPS = 480, 48  # 100 s; 10 s of the four-rotation arm
CONTEXT_STEPS, JIGSAW_STEPS, EXEMPLAR_STEPS, SUPERVISED_STEPS = 650, 95, 340, 170  # 15 s each


@dataclass(frozen=True)
class PretextConfig:
    """The experiment settings of the notebook and the benchmark, per preset.

    Training budgets are wall-clock seconds (a run also stops at ``max_epochs``). Where a run's
    ``*_steps`` is set (``cpu-quick``, ``smoke``), its seconds are spent in exactly that many
    optimizer steps (``replearn.recipes.common.counted_in_steps``: the schedule follows the
    steps), so that a rerun repeats its numbers whatever the machine's load; the counts are what
    an idle 2-core machine does in the seconds. ``None`` keeps the wall clock (``colab``,
    ``full``).
    """

    rotation_s: float  # the main RotNet run
    ablation_s: float  # each run of the number-of-rotations ablation (2 runs)
    context_s: float
    jigsaw_s: float
    exemplar_s: float
    supervised_s: float  # the supervised baseline: the same SmallCNN trained with labels
    max_epochs: int
    batch_size: int  # source images per step (RotNet sees 4x as many rotated copies)
    lr: float = 0.1  # SGD, momentum 0.9, Nesterov, cosine decay over the budget
    weight_decay: float = 5e-4
    widths: tuple[int, ...] = (32, 64, 128, 256)  # SmallCNN block widths
    context_patch: int = 8
    context_gap: int = 3
    context_jitter: int = 1
    jigsaw_cell: int = 10
    jigsaw_tile: int = 8
    num_permutations: int = 100
    exemplar_seeds: int = 1000
    exemplar_copies: int = 8
    probe_blocks: tuple[int, ...] = (2, 3, 4)  # SmallCNN blocks probed (1-based)
    knn_k: int = 20
    probe_iters: int = 100  # L-BFGS iterations of each linear probe
    nonlinear_probe: bool = False  # the MLP probe on block maps (GPU presets)
    checkpoints: bool = False  # train-or-load the runs under checkpoints/
    amp: bool | str = "auto"  # replearn.train.TrainConfig.amp: True also autocasts a bf16 CPU
    channels_last: bool = False  # NHWC training (TrainConfig.channels_last): faster on CPU
    rotation_steps: int | None = None  # optimizer steps standing in for rotation_s; None: clock
    ablation_steps: int | None = None
    context_steps: int | None = None
    jigsaw_steps: int | None = None
    exemplar_steps: int | None = None
    supervised_steps: int | None = None

    @staticmethod
    def from_preset(preset) -> PretextConfig:
        if preset.name == "smoke":
            return PretextConfig(
                rotation_s=2,
                ablation_s=1,
                context_s=1,
                jigsaw_s=1,
                exemplar_s=1,
                supervised_s=1,
                rotation_steps=4,
                ablation_steps=2,
                context_steps=2,
                jigsaw_steps=2,
                exemplar_steps=2,
                supervised_steps=2,
                max_epochs=1,
                batch_size=32,
                num_permutations=10,
                exemplar_seeds=50,
                exemplar_copies=2,
                probe_iters=10,
            )
        if preset.name == "cpu-quick":
            return PretextConfig(
                rotation_s=100,
                ablation_s=10,
                context_s=15,
                jigsaw_s=15,
                exemplar_s=15,
                supervised_s=15,
                rotation_steps=ROTATION_STEPS,
                ablation_steps=ABLATION_STEPS,
                context_steps=CONTEXT_STEPS,
                jigsaw_steps=JIGSAW_STEPS,
                exemplar_steps=EXEMPLAR_STEPS,
                supervised_steps=SUPERVISED_STEPS,
                max_epochs=preset.max_epochs,
                batch_size=64,
            )
        # colab: sized to the notebook header's time on a T4 (benchmarks/README.md, "Colab budgets")
        scale = preset.time_scale
        rotation, ablation, short = (150, 20, 40) if preset.name == "colab" else (300, 60, 60)
        return PretextConfig(
            rotation_s=rotation * scale,
            ablation_s=ablation * scale,
            context_s=short * scale,
            jigsaw_s=short * scale,
            exemplar_s=short * scale,
            supervised_s=short * scale,
            max_epochs=preset.max_epochs,
            batch_size=128,
            exemplar_seeds=4000,
            exemplar_copies=16,
            nonlinear_probe=True,
            checkpoints=True,
        )


def fit_geometry(cfg: PretextConfig, image_size: int) -> PretextConfig:
    """``cfg`` with the context and jigsaw geometry shrunk, if needed, to fit ``image_size``.

    The defaults need 32 px (CIFAR-10); the offline fallback dataset (MNIST) has 28 px. Patches
    stay at least 8 px, the smallest input the SmallCNN's three poolings accept. A shrunk
    context geometry keeps ``sample_context_pairs``' rule ``jitter < gap / 2`` (two jittered
    patches never touch): the gap gets the room there is, the jitter only what the rule leaves
    (on 28 px: gap 2, no jitter).
    """
    context, jigsaw = cfg, cfg
    if 3 * cfg.context_patch + 2 * cfg.context_gap + 2 * cfg.context_jitter > image_size:
        room = max(0, (image_size - 3 * cfg.context_patch) // 2)  # for gap + jitter
        jitter = min(cfg.context_jitter, max(0, (room - 1) // 3))  # 2 * jitter < gap
        context = replace(cfg, context_gap=room - jitter, context_jitter=jitter)
    if 3 * cfg.jigsaw_cell > image_size:
        jigsaw = replace(cfg, jigsaw_cell=image_size // 3)
    fitted = replace(
        cfg,
        context_gap=context.context_gap,
        context_jitter=context.context_jitter,
        jigsaw_cell=jigsaw.jigsaw_cell,
    )
    fitted_jigsaw_tile = min(fitted.jigsaw_tile, fitted.jigsaw_cell)
    return replace(fitted, jigsaw_tile=fitted_jigsaw_tile)


def light_augment(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random crop (70-100% of the area) resized back, and a horizontal flip: ``[N, C, H, W]``.

    The mild augmentation of the rotation, context, jigsaw and supervised runs (RotNet's CIFAR
    code uses crops and flips too); it must not rotate, or it would blur the rotation labels.
    """
    size = (x.shape[2], x.shape[3])
    x = augment.random_resized_crop(x, size, scale=(0.7, 1.0), generator=generator)
    return augment.random_horizontal_flip(x, generator=generator)  # [N, C, H, W]


def pretrain(
    pt: ModuleType,
    method: str,
    images: torch.Tensor,
    cfg: PretextConfig,
    *,
    budget_s: float,
    steps: int | None = None,
    labels: torch.Tensor | None = None,
    rotations: Sequence[int] = (0, 1, 2, 3),
    seed: int = 0,
    device: str | torch.device = "cpu",
    checkpoint_path: str | Path | None = None,
    progress: bool = False,
) -> Run:
    """Train a fresh ``SmallCNN`` on one pretext task (or with labels) for ``budget_s`` seconds,
    or, with ``steps``, for exactly ``steps`` optimizer steps (the schedule spread over them).

    Every task uses the same encoder, optimiser (SGD, momentum 0.9, Nesterov, ``cfg.lr``,
    ``cfg.weight_decay``), batch size, cosine schedule over the budget and ``replearn.train``
    loop, so that the encoders differ only in what they were asked to predict.

    Args:
        pt: the student's module (its models, losses and data builders).
        method: the pretext task, one of :data:`METHOD_NAMES`.
        images: uint8 ``[N, C, H, W]`` (the unlabelled training images).
        labels: int64 ``[N]``, only for ``"supervised"``.
        rotations: the rotation set of ``"rotation"`` (the ablation passes ``(0, 2)``).
        checkpoint_path: train-or-load file (``None``: no checkpoint).

    Returns:
        A :class:`~replearn.recipes.Run` (``method`` is the task; ``extra``: the jigsaw's
        ``permutations``, the exemplar's ``seed_index`` and ``num_seeds``).
    """
    if method not in METHOD_NAMES:
        raise ValueError(f"unknown method {method!r}; choose one of {METHOD_NAMES}")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    device = torch.device(device)
    encoder = SmallCNN(in_channels=images.shape[1], widths=cfg.widths)
    extra: dict[str, Any] = {}
    tensors: tuple[torch.Tensor, ...] = (images,)

    def view(batch: torch.Tensor) -> torch.Tensor:
        return light_augment(as_float_images(batch), generator)  # [N, C, H, W]

    if method == "rotation":
        model: nn.Module = pt.PretextClassifier(encoder, len(rotations))
        step = lambda m, x: pt.rotation_loss(m, view(x), rotations)
    elif method == "context":
        model = pt.SiameseContextNet(encoder)
        geometry = dict(patch=cfg.context_patch, gap=cfg.context_gap, jitter=cfg.context_jitter)
        step = lambda m, x: pt.context_loss(m, view(x), **geometry, generator=generator)
    elif method == "jigsaw":
        perms = pt.hamming_permutation_set(cfg.num_permutations, 9, generator).to(device)  # [P, 9]
        extra["permutations"] = perms.cpu()
        model = pt.JigsawNet(encoder, len(perms))
        geometry = dict(cell=cfg.jigsaw_cell, tile=cfg.jigsaw_tile)
        step = lambda m, x: pt.jigsaw_loss(m, view(x), perms, **geometry, generator=generator)
    elif method == "exemplar":
        num_seeds = min(cfg.exemplar_seeds, len(images))
        views, view_labels, seed_index = pt.exemplar_dataset(
            to_float(images), num_seeds, cfg.exemplar_copies, pt.exemplar_augment, generator
        )  # [K*N, C, H, W], [K*N], [N]
        extra.update(seed_index=seed_index, num_seeds=num_seeds)
        tensors = ((views * 255).round().to(torch.uint8), view_labels)  # stored as uint8
        model = pt.exemplar_classifier(encoder, num_seeds)
        step = lambda m, batch: classification_step(m, as_float_images(batch[0]), batch[1])
    else:
        if labels is None:
            raise ValueError("the supervised baseline needs labels")
        tensors = (images, labels)
        model = pt.PretextClassifier(encoder, int(labels.max()) + 1)
        step = lambda m, batch: classification_step(m, view(batch[0]), batch[1])

    model.to(device)
    batch_size = min(cfg.batch_size, len(tensors[0]))
    loader = TensorLoader(*tensors, batch_size=batch_size, seed=seed, device=device)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay
    )
    config = TrainConfig(
        epochs=cfg.max_epochs,
        budget_s=budget_s,
        progress=progress,
        desc=method,
        checkpoint_path=str(checkpoint_path) if checkpoint_path else None,
        grad_clip=5.0,
        amp=cfg.amp,
        channels_last=cfg.channels_last,
    )
    with counted_in_steps(steps):
        scheduler = BudgetCosine(optimizer, budget_s)
        history = train(step, model, optimizer, loader, config, scheduler=scheduler)
    model.eval()
    return Run(method, model, encoder, history, extra)


# ---- evaluation: the same protocol for every encoder ----------------------------------------


@torch.no_grad()
def block_features(
    encoder: ConvBackbone,
    images: torch.Tensor,
    blocks: Sequence[int] = (2, 3, 4),
    *,
    batch_size: int = 500,
    pool: bool = True,
    grid: int | None = None,
) -> dict[int, torch.Tensor]:
    """The outputs of several blocks of ``encoder`` for whole images, in one pass.

    ``pool=True`` averages each map over space (``[N, D_b]``, what kNN and the linear probe
    use); ``pool=False`` keeps ``grid x grid`` average-pooled maps, flattened
    (``[N, D_b * grid * grid]``, what the non-linear probe uses, as RotNet's classifiers read
    the spatial conv maps). Eval mode (BatchNorm running statistics), float32 on the CPU.
    """
    device = next(encoder.parameters()).device
    was_training = encoder.training
    encoder.eval()
    out: dict[int, list[torch.Tensor]] = {b: [] for b in blocks}
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].to(device)
        x = as_float_images(x)  # [N_b, C, H, W]
        for index, block in enumerate(encoder.blocks, start=1):
            x = block(x)  # [n, D_b, H_b, W_b]
            if index in out:
                if pool:
                    out[index].append(x.mean(dim=(2, 3)).float().cpu())  # [n, D_b]
                else:
                    kept = F.adaptive_avg_pool2d(x, grid or x.shape[2])  # [n, D_b, g, g]
                    out[index].append(kept.flatten(1).half().cpu())  # [n, D_b*g*g]
            if index >= max(blocks):
                break
    encoder.train(was_training)
    return {b: torch.cat(parts) for b, parts in out.items()}


@torch.no_grad()
def patch_grid_features(
    encoder: ConvBackbone, images: torch.Tensor, patch: int, stride: int, *, batch_size: int = 200
) -> torch.Tensor:
    """Mean of the encoder's (pooled, last-block) features over a centred 3x3 grid of patches.

    The inputs a patch-trained encoder saw during pretraining: ``patch`` px patches whose
    corners are ``stride`` px apart. Comparing probes on these features with probes on
    whole-image features measures how much of what a context or jigsaw network learnt
    survives the change from patches to whole images. Returns ``[N, D]``.
    """
    device = next(encoder.parameters()).device
    was_training = encoder.training
    encoder.eval()
    n, _, height, width = images.shape
    extent = 2 * stride + patch
    grid_top, grid_left = (height - extent) // 2, (width - extent) // 2
    corners = [(grid_top + r * stride, grid_left + c * stride) for r in range(3) for c in range(3)]
    chunks = []
    for start in range(0, n, batch_size):
        x = images[start : start + batch_size].to(device)
        x = as_float_images(x)  # [N_b, C, H, W]
        patches = torch.stack(
            [x[:, :, top : top + patch, left : left + patch] for top, left in corners], 1
        )  # [n, 9, C, p, p]
        feats = encoder(patches.flatten(0, 1)).view(len(x), 9, -1)  # [n, 9, D]
        chunks.append(feats.mean(dim=1).cpu())  # [n, D]
    encoder.train(was_training)
    return torch.cat(chunks)  # [N, D]


def probe_features(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    test_feats: torch.Tensor,
    test_labels: torch.Tensor,
    cfg: PretextConfig | None = None,
) -> dict[str, float]:
    """kNN (cosine, ``cfg.knn_k`` neighbours, temperature 0.1) and linear-probe test accuracy,
    the probe's L2 strength fixed (``replearn.evaluate.PROBE_WEIGHT_DECAY``) so that probing
    eight encoders fits the ``cpu-quick`` budget."""
    k, iters = (cfg.knn_k, cfg.probe_iters) if cfg is not None else (20, 100)
    return knn_and_linear(train_feats, train_labels, test_feats, test_labels, k=k, max_iter=iters)


def evaluate_encoder(
    encoder: ConvBackbone,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    blocks: Sequence[int] = (2, 3, 4),
    cfg: PretextConfig | None = None,
) -> dict[int, dict[str, float]]:
    """``{block: {"knn": acc, "linear": acc}}`` on whole images, pooled block outputs."""
    train = block_features(encoder, x_train, blocks)
    test = block_features(encoder, x_test, blocks)
    return {b: probe_features(train[b], y_train, test[b], y_test, cfg) for b in blocks}


def best_block(scores: dict[int, dict[str, float]], metric: str = "linear") -> int:
    """The block with the highest ``metric`` (ties: the earlier block)."""
    return max(sorted(scores), key=lambda b: (scores[b][metric], -b))


@torch.no_grad()
def rotation_confusion(
    pt: ModuleType,
    model: nn.Module,
    images: torch.Tensor,
    rotations: Sequence[int] = (0, 1, 2, 3),
    batch_size: int = 256,
) -> tuple[torch.Tensor, torch.Tensor]:
    """How the rotation classifier errs: confusion matrix and per-image correctness.

    ``model`` is the rotation classifier; the module's ``rotation_batch`` makes the rotated
    copies. Returns ``(confusion, correct)``: int64 ``[R, R]`` (row: true rotation, column: predicted)
    and bool ``[R, N]`` (whether rotation ``r`` of image ``n`` was recognised), on held-out
    images, in eval mode.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    num = len(rotations)
    confusion = torch.zeros(num, num, dtype=torch.long)
    correct = []
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].to(device)
        x = as_float_images(x)  # [N_b, C, H, W]
        rotated, labels = pt.rotation_batch(x, rotations)  # [R*B, C, H, W], [R*B]
        preds = model(rotated).argmax(dim=1).cpu()  # [R*B]
        labels = labels.cpu()
        confusion += torch.bincount(labels * num + preds, minlength=num * num).view(num, num)
        correct.append((preds == labels).view(num, len(x)))  # [R, B]
    model.train(was_training)
    return confusion, torch.cat(correct, dim=1)  # [R, R], [R, N]


def nonlinear_probe(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    test_feats: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    hidden: int = 512,
    epochs: int = 30,
    lr: float = 1e-3,
    batch_size: int = 256,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> float:
    """Test accuracy of an MLP trained on frozen (cached) features: RotNet's non-linear probe.

    Gidaris et al. (2018) evaluate CIFAR-10 features with non-linear classifiers on the
    frozen conv maps: fully connected layers with BatchNorm and ReLU. Here: BatchNorm ->
    Linear(in, hidden) -> BN -> ReLU -> Dropout(0.3) -> Linear(hidden, hidden) -> BN -> ReLU ->
    Linear(hidden, K), Adam with cosine decay for ``epochs`` passes. The features are usually
    ``block_features(..., pool=False, grid=g)`` (flattened spatial maps).
    """
    torch.manual_seed(seed)
    device = torch.device(device)
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    mlp = nn.Sequential(
        nn.BatchNorm1d(train_feats.shape[1]),
        nn.Linear(train_feats.shape[1], hidden),
        nn.BatchNorm1d(hidden),
        nn.ReLU(),
        nn.Dropout(0.3),
        nn.Linear(hidden, hidden),
        nn.BatchNorm1d(hidden),
        nn.ReLU(),
        nn.Linear(hidden, num_classes),
    ).to(device)
    x_train, y_train = train_feats.to(device), train_labels.to(device)
    optimizer = torch.optim.AdamW(mlp.parameters(), lr=lr, weight_decay=5e-4)
    steps = epochs * math.ceil(len(x_train) / batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        mlp.train()
        order = torch.randperm(len(x_train), generator=generator).to(device)
        for start in range(0, len(order) - 1, batch_size):
            rows = order[start : start + batch_size]
            if len(rows) < 2:
                continue
            loss = F.cross_entropy(mlp(x_train[rows].float()), y_train[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    mlp.eval()
    with torch.no_grad():
        preds = torch.cat(
            [
                mlp(test_feats[i : i + 1024].to(device).float()).argmax(1).cpu()
                for i in range(0, len(test_feats), 1024)
            ]
        )
    return float((preds == test_labels.cpu()).float().mean())


# ---- replearn.pretrain: RotNet as a method of the entry point (the course checkpoints) --------


def _rotation_step(ctx: StepContext, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """:func:`pretrain`'s rotation step: RotNet's four quarter turns of every image after the
    light crop-and-flip (:func:`light_augment`), cross-entropy over the rotations."""
    x = light_augment(as_float_images(images), ctx.generator)  # [n, C, H, W]
    return dict(ctx.module.rotation_loss(ctx.trained, x))  # over [4n, C, H, W]


def _evaluate(pt: ModuleType, encoder: nn.Module, data: ImageData, cfg: PretextConfig) -> dict:
    """The notebook's protocol: kNN and linear probe of each probed block's pooled features."""
    scores = evaluate_encoder(
        encoder, data.x_train, data.y_train, data.x_test, data.y_test, cfg.probe_blocks, cfg
    )
    return {f"block{b}_{k}": v for b, s in scores.items() for k, v in s.items()}


PRETRAIN_METHODS = (
    PretrainMethod(
        name="rotation",
        module="pretext_tasks",
        config=lambda pt, preset: PretextConfig.from_preset(preset),
        budget=lambda cfg: cfg.rotation_s,
        build=lambda pt, cfg, encoder, data: pt.PretextClassifier(encoder, 4),
        step=_rotation_step,
        optimizer=lambda cfg, params: torch.optim.SGD(
            params, lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay
        ),
        evaluate=_evaluate,
        augment=lambda pt, cfg, images: lambda x, generator=None: x,  # the step augments
        description="RotNet: predict which of four quarter turns an image was given",
    ),
)
