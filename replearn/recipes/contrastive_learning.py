"""Assignment 4's experiments: the settings per preset, the training driver that runs every
method through ``replearn.train.train``, the evaluation protocol, and the methods of the
pretraining entry point (``python -m replearn.pretrain --method simclr|moco|byol|simsiam|...``).

Functions that run one of the student's parts take the student's module ``cl`` first. Every
method trains the same ``SmallCNN`` with the same optimiser, batch and schedule, so that the
encoders differ only in the objective.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from replearn import augment, distributed
from replearn.backbones import ConvBackbone, SmallCNN
from replearn.data import ImageData, as_float_images
from replearn.evaluate import KNNMonitor, extract_features, knn_and_linear
from replearn.recipes.common import (
    PretrainMethod,
    Run,
    StepContext,
    classification_step,
    counted_in_steps,
)
from replearn.train import BudgetCosine, Hook, TensorLoader, TrainConfig, train

__all__ = [
    "METHOD_NAMES",
    "PRETRAIN_METHODS",
    "Classifier",
    "ContrastiveConfig",
    "default_augment",
    "evaluate_encoder",
    "positive_negative_similarity",
    "pretrain",
    "supervised_augment",
]

METHOD_NAMES = ("simclr", "moco", "byol", "simsiam", "simsiam-no-stopgrad", "supervised")

# cpu-quick's runs in optimizer steps: what an idle 2-core machine does in each run's seconds
# (benchmarks/README.md, "Budgets in steps")
# (SimCLR 80 s, MoCo 45 s, BYOL 10 s, SimSiam at batch 64 15 s, supervised 15 s)
SIMCLR_STEPS, MOCO_STEPS, BYOL_STEPS, SIMSIAM_STEPS, SUPERVISED_STEPS = 144, 120, 11, 99, 59

Augment = Callable[[torch.Tensor, "torch.Generator | None"], torch.Tensor]


@dataclass(frozen=True)
class ContrastiveConfig:
    """The experiment settings of the notebook and the benchmark, per preset.

    Budgets are wall-clock seconds per pretraining run (a run also stops at ``max_epochs``).
    Where a method's ``*_steps`` is set (``cpu-quick``, ``smoke``), its seconds are spent in
    exactly that many optimizer steps (``replearn.recipes.common.counted_in_steps``: the
    schedule follows the steps), so that a rerun repeats its numbers whatever the machine's
    load; the counts are what an idle 2-core machine does in the seconds. ``None`` keeps the
    wall clock (``colab``, ``full``). The recipe is sized for a CPU: SmallCNN, batch 256, AdamW with
    warm-up and cosine, tau 0.2, batched SimCLR augmentation; MoCo v2 with a 4,096-key queue and
    m = 0.99.
    """

    simclr_s: float
    moco_s: float
    byol_s: float
    simsiam_s: float  # each of the two SimSiam runs (with and without stop-gradient)
    supervised_s: float  # the supervised baseline: the same SmallCNN trained with labels
    max_epochs: int
    batch_size: int = 256  # images per step (the contrastive methods see 2 views of each)
    lr: float = 2e-3  # AdamW, linear warm-up + cosine decay over the budget
    weight_decay: float = 1e-2  # torch's AdamW default
    supervised_lr: float = 0.1  # SGD, momentum 0.9, Nesterov
    temperature: float = 0.2  # NT-Xent and MoCo
    augmentation: str = "crop+color"  # a replearn.augment pipeline (SimCLR's CIFAR-10 recipe)
    widths: tuple[int, ...] = (32, 64, 128, 256)  # SmallCNN block widths; D = widths[-1]
    projection_dim: int = 128
    hidden_dim: int = 512  # projection / prediction MLP hidden width
    simsiam_hidden_dim: int = 128  # SimSiam's predictor bottleneck
    queue_size: int = 4096  # MoCo's K
    moco_momentum: float = 0.99
    byol_momentum: float = 0.99
    knn_k: int = 20
    knn_every: int = 5  # epochs between kNN monitor evaluations (0: no monitor)
    probe_iters: int = 100  # L-BFGS iterations of the linear probe
    checkpoints: bool = False  # train-or-load the runs under checkpoints/
    amp: bool | str = "auto"  # replearn.train.TrainConfig.amp: True also autocasts a bf16 CPU
    channels_last: bool = False  # NHWC training (TrainConfig.channels_last): faster on CPU
    simclr_steps: int | None = None  # optimizer steps standing in for simclr_s; None: clock
    moco_steps: int | None = None
    byol_steps: int | None = None
    simsiam_steps: int | None = None  # each of the two SimSiam runs
    supervised_steps: int | None = None

    @staticmethod
    def from_preset(preset) -> ContrastiveConfig:
        if preset.name == "smoke":
            return ContrastiveConfig(
                simclr_s=2,
                moco_s=2,
                byol_s=1,
                simsiam_s=1,
                supervised_s=1,
                simclr_steps=3,
                moco_steps=3,
                byol_steps=2,
                simsiam_steps=2,
                supervised_steps=2,
                max_epochs=1,
                batch_size=32,
                queue_size=256,
                knn_every=1,
                probe_iters=10,
            )
        if preset.name == "cpu-quick":
            return ContrastiveConfig(
                simclr_s=80,
                moco_s=45,
                byol_s=10,
                simsiam_s=15,
                supervised_s=15,
                simclr_steps=SIMCLR_STEPS,
                moco_steps=MOCO_STEPS,
                byol_steps=BYOL_STEPS,
                simsiam_steps=SIMSIAM_STEPS,
                supervised_steps=SUPERVISED_STEPS,
                max_epochs=preset.max_epochs,
            )
        scale = preset.time_scale
        # colab: sized to the notebook header's time on a T4 (benchmarks/README.md, "Colab budgets")
        if preset.name == "colab":
            return ContrastiveConfig(
                simclr_s=150 * scale,
                moco_s=75 * scale,
                byol_s=50 * scale,
                simsiam_s=40 * scale,
                supervised_s=25 * scale,
                max_epochs=preset.max_epochs,
                batch_size=512,
                checkpoints=True,
            )
        return ContrastiveConfig(
            simclr_s=300 * scale,
            moco_s=300 * scale,
            byol_s=300 * scale,
            simsiam_s=300 * scale,
            supervised_s=100 * scale,
            max_epochs=preset.max_epochs,
            batch_size=512,
            checkpoints=True,
        )

    def budget(self, method: str) -> float:
        """The wall-clock budget of ``method`` (one of :data:`METHOD_NAMES`)."""
        _check_method(method)
        return float(getattr(self, method.removesuffix("-no-stopgrad") + "_s"))

    def steps(self, method: str) -> int | None:
        """The optimizer steps that stand in for ``method``'s seconds; None: the wall clock."""
        _check_method(method)
        return getattr(self, method.removesuffix("-no-stopgrad") + "_steps")


def _check_method(method: str) -> None:
    if method not in METHOD_NAMES:
        raise ValueError(f"unknown method {method!r}; choose one of {METHOD_NAMES}")


class Classifier(nn.Module):
    """The supervised baseline: the encoder and one linear layer on its features."""

    def __init__(self, encoder: ConvBackbone, head: nn.Linear):
        super().__init__()
        if not isinstance(head, nn.Linear) or head.in_features != encoder.feature_dim:
            raise TypeError(
                f"head must be an nn.Linear on the encoder's {encoder.feature_dim} features, "
                f"got {head!r}"
            )
        self.encoder, self.head = encoder, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))  # [N, D] -> [N, K classes]


def supervised_augment(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """The supervised baseline's mild augmentation: crop (70-100% of the area) and flip."""
    size = (x.shape[2], x.shape[3])
    x = augment.random_resized_crop(x, size, scale=(0.7, 1.0), generator=generator)
    return augment.random_horizontal_flip(x, generator=generator)  # [N, C, H, W]


def default_augment(cfg: ContrastiveConfig, images: torch.Tensor) -> augment.SimCLRAugment:
    """``cfg.augmentation`` at the images' size; colour ops are dropped for grey images."""
    pipeline = augment.get_pipeline(cfg.augmentation, size=images.shape[-1])
    if images.shape[1] != 3 and pipeline.color:
        pipeline = augment.get_pipeline(cfg.augmentation, size=images.shape[-1], color=False)
    return pipeline


def _build(
    cl: types.ModuleType, method: str, cfg: ContrastiveConfig, encoder: nn.Module, num_classes: int
) -> nn.Module:
    """The whole model of ``method`` around ``encoder``, from the module's parts."""
    dim = encoder.feature_dim
    if method == "simclr":
        return cl.SimCLR(encoder, dim, cfg.projection_dim, cfg.hidden_dim)
    if method == "moco":
        return cl.MoCo(
            encoder,
            dim,
            cfg.projection_dim,
            cfg.queue_size,
            cfg.moco_momentum,
            cfg.temperature,
            cfg.hidden_dim,
        )
    if method == "byol":
        return cl.BYOL(encoder, dim, cfg.projection_dim, cfg.hidden_dim, cfg.byol_momentum)
    if method.startswith("simsiam"):
        return cl.SimSiam(encoder, dim, cfg.projection_dim, cfg.simsiam_hidden_dim)
    return Classifier(encoder, nn.Linear(dim, num_classes))


def _supervised_optimizer(cfg: ContrastiveConfig, params: list[nn.Parameter]):
    return torch.optim.SGD(
        params, lr=cfg.supervised_lr, momentum=0.9, nesterov=True, weight_decay=5e-4
    )


def _adamw(cfg: ContrastiveConfig, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def pretrain(
    cl: types.ModuleType,
    method: str,
    images: torch.Tensor,
    labels: torch.Tensor | None,
    cfg: ContrastiveConfig,
    *,
    budget_s: float | None = None,
    steps: int | None = None,
    augment: Augment | None = None,
    seed: int = 0,
    monitor: Hook | tuple[torch.Tensor, ...] | None = None,
    progress: bool = False,
    device: str | torch.device = "cpu",
    checkpoint_path: str | Path | None = None,
) -> Run:
    """Train a fresh ``SmallCNN`` with one method for ``budget_s`` seconds of wall clock, or for
    exactly ``steps`` optimizer steps (the schedule spread over them).

    Every self-supervised method uses the same encoder, AdamW (``cfg.lr``,
    ``cfg.weight_decay``), batch size, warm-up + cosine schedule over the budget
    (``replearn.train.BudgetCosine``) and ``replearn.train.train`` loop, so that the encoders
    differ only in the objective: the module's ``simclr_step``, ``MoCo.step``, ``BYOL.step`` or
    ``simsiam_step``. The supervised baseline uses SGD with ``cfg.supervised_lr``.

    Args:
        cl: the student's module.
        method: one of :data:`METHOD_NAMES`.
        images: uint8 ``[N, C, H, W]`` (the unlabelled training images).
        labels: int64 ``[N]``; used only by ``"supervised"`` (may be None otherwise).
        budget_s: seconds (default: ``cfg.budget(method)``).
        steps: optimizer steps standing in for the seconds (default: ``cfg.steps(method)``
            when ``budget_s`` is not given, else the wall clock).
        augment: ``(x, generator) -> view``; default ``cfg.augmentation``'s pipeline.
        monitor: a ``replearn.train.Hook`` (e.g. a ``KNNMonitor``), or a tuple
            ``(train_x, train_y, test_x, test_y)`` from which a ``KNNMonitor`` on the encoder
            is built (every ``cfg.knn_every`` epochs; its accuracy joins the epoch records
            as ``"knn"``).
        checkpoint_path: train-or-load file (``None``: no checkpoint).

    Returns:
        A :class:`~replearn.recipes.Run`; ``run.encoder`` is in eval mode.
    """
    _check_method(method)
    if images.ndim != 4 or images.dtype != torch.uint8:
        raise ValueError(
            f"images must be uint8 [N, C, H, W] as stored by replearn.data, got {images.dtype} "
            f"{tuple(images.shape)}"
        )
    if method == "supervised" and labels is None:
        raise ValueError("the supervised baseline needs labels (int64 [N])")
    if budget_s is None:
        budget_s, steps = cfg.budget(method), cfg.steps(method) if steps is None else steps
    budget_s = float(budget_s)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    device = torch.device(device)
    encoder = SmallCNN(in_channels=images.shape[1], widths=cfg.widths)
    view = augment if augment is not None else default_augment(cfg, images)
    num_classes = int(labels.max()) + 1 if method == "supervised" else 0
    model = _build(cl, method, cfg, encoder, num_classes).to(device)
    tensors: tuple[torch.Tensor, ...] = (images,)

    if method == "simclr":
        step = lambda m, x: cl.simclr_step(m, x, view, cfg.temperature, generator)
    elif method in ("moco", "byol"):
        step = lambda m, x: m.step(x, view, generator)
    elif method.startswith("simsiam"):
        stop = method == "simsiam"
        step = lambda m, x: cl.simsiam_step(m, x, view, generator, stop_gradient=stop)
    else:
        tensors = (images, labels)

        def step(m: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> dict:
            x = supervised_augment(as_float_images(batch[0]), generator)  # [N, C, H, W]
            return classification_step(m, x, batch[1])

    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = (_supervised_optimizer if method == "supervised" else _adamw)(cfg, trained)
    batch_size = min(cfg.batch_size, len(images))
    loader = TensorLoader(*tensors, batch_size=batch_size, seed=seed, device=device)
    hooks: list[Hook] = []
    if isinstance(monitor, Hook):
        hooks.append(monitor)
    elif monitor is not None and cfg.knn_every > 0:
        train_x, train_y, test_x, test_y = monitor
        knn = KNNMonitor(
            train_x,
            train_y,
            test_x,
            test_y,
            encoder_of=lambda m: m.encoder,
            every=cfg.knn_every,
            k=cfg.knn_k,
        )
        hooks.append(knn)
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
        history = train(step, model, optimizer, loader, config, scheduler=scheduler, hooks=hooks)
    model.eval()
    return Run(method, model, encoder, history)


def evaluate_encoder(
    encoder: nn.Module,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    cfg: ContrastiveConfig | None = None,
) -> dict[str, float]:
    """``{"knn": acc, "linear": acc}`` of the frozen encoder's pooled features, in [0, 1].

    ``replearn.evaluate.knn_and_linear``: kNN with ``cfg.knn_k`` neighbours, a linear probe of
    ``cfg.probe_iters`` L-BFGS iterations. Images are uint8 or float ``[N, C, H, W]``; the
    encoder runs in eval mode.
    """
    k, iters = (cfg.knn_k, cfg.probe_iters) if cfg is not None else (20, 100)
    train_feats = extract_features(encoder, train_x)  # [N, D]
    test_feats = extract_features(encoder, test_x)  # [M, D]
    return knn_and_linear(train_feats, train_y, test_feats, test_y, k=k, max_iter=iters)


@torch.no_grad()
def positive_negative_similarity(
    model: nn.Module,
    images: torch.Tensor,
    augment: Augment,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """Mean cosine similarity of the encoder's features for positive pairs and for negatives.

    Two views of each image through ``model.encoder`` (eval mode): the diagonal of the
    ``[N, N]`` cross-view similarity is the positives, the rest the negatives. A good
    contrastive encoder makes the first high and the second near 0; a collapsed one makes
    both 1.
    """
    encoder = model.encoder if hasattr(model, "encoder") else model
    was_training = encoder.training
    encoder.eval()
    x = as_float_images(images.to(next(encoder.parameters()).device))  # [N, C, H, W]
    h1 = F.normalize(encoder(augment(x, generator)), dim=1)  # [N, D]
    h2 = F.normalize(encoder(augment(x, generator)), dim=1)  # [N, D]
    sims = h1 @ h2.T  # [N, N]
    off_diagonal = ~torch.eye(len(x), dtype=torch.bool, device=sims.device)  # [N, N]
    encoder.train(was_training)
    return {"positive": float(sims.diagonal().mean()), "negative": float(sims[off_diagonal].mean())}


# ---- the pretraining entry point's methods (python -m replearn.pretrain --method NAME) -------
#
# The steps below are the module's steps with the negatives of the global batch: NT-Xent and
# MoCo's queue gather every process's embeddings, and the online network's forward goes through
# ``ctx.trained`` (the DDP wrapper). With one process they equal the module's own steps.


def _two_views(ctx: StepContext, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Two augmented views, in the reference's order (view 1, then view 2, same generator)."""
    x = as_float_images(images)  # [n, C, H, W]
    return ctx.augment(x, ctx.generator), ctx.augment(x, ctx.generator)  # [n, C, H, W] each


def _simclr_step(ctx: StepContext, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """``simclr_step`` with the global batch's negatives."""
    view1, view2 = _two_views(ctx, images)
    z = ctx.trained(torch.cat([view1, view2]))  # [2n, D] one forward, BN over both views
    z1, z2 = z.chunk(2)  # [n, D] each
    loss = distributed.on_global_batch(ctx.module.nt_xent_loss, (z1, z2), ctx.cfg.temperature)
    return {"loss": loss}


def _moco_step(ctx: StepContext, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """``MoCo.step`` with the queue fed by every rank's keys (MoCo's ``concat_all_gather``)."""
    m, model = ctx.module, ctx.model
    m.momentum_update(model.encoder, model.key_encoder, model.momentum)
    m.momentum_update(model.projector, model.key_projector, model.momentum)
    view_q, view_k = _two_views(ctx, images)
    q = ctx.trained(view_q)  # [n, D] queries, through DDP
    k = model.keys(view_k)  # [n, D] unit keys, no gradient
    loss = m.moco_loss(q, k, model.queue.keys.clone(), model.temperature)
    model.queue.enqueue(distributed.gather_no_grad(k))  # [N, D] the same keys on every rank
    return {"loss": loss}


def _byol_step(ctx: StepContext, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """``BYOL.step`` with the online network's forward through DDP; no gather is needed."""
    m, model = ctx.module, ctx.model
    m.momentum_update(model.encoder, model.target_encoder, model.momentum)
    m.momentum_update(model.projector, model.target_projector, model.momentum)
    views = torch.cat(_two_views(ctx, images))  # [2n, C, H, W]
    p1, p2 = ctx.trained(views).chunk(2)  # [n, D] each, online predictions
    z1, z2 = model.targets(views).chunk(2)  # [n, D] each, no gradient
    return {"loss": (m.byol_loss(p1, z2) + m.byol_loss(p2, z1)) / 2}


def _simsiam_step(stop_gradient: bool) -> Callable[[StepContext, torch.Tensor], Mapping]:
    def step(ctx: StepContext, images: torch.Tensor) -> Mapping[str, Any]:
        # simsiam_step calls model(views) -> (p, z): passing the DDP wrapper keeps DDP in the loop
        return ctx.module.simsiam_step(
            ctx.trained, images, ctx.augment, ctx.generator, stop_gradient
        )

    return step


def _supervised_step(ctx: StepContext, batch: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
    images, labels = batch  # [n, C, H, W], [n]
    x = supervised_augment(as_float_images(images), ctx.generator)  # [n, C, H, W]
    return classification_step(ctx.trained, x, labels)


def _entry(name: str, step: Callable, **fields: Any) -> PretrainMethod:
    def build(cl: types.ModuleType, cfg: ContrastiveConfig, encoder, data: ImageData | None):
        num_classes = data.num_classes if name == "supervised" else 0
        return _build(cl, name, cfg, encoder, num_classes)

    def evaluate(cl: types.ModuleType, encoder: nn.Module, data: ImageData, cfg) -> dict:
        return evaluate_encoder(encoder, data.x_train, data.y_train, data.x_test, data.y_test, cfg)

    return PretrainMethod(
        name=name,
        module="contrastive_learning",
        config=lambda cl, preset: ContrastiveConfig.from_preset(preset),
        budget=lambda cfg: cfg.budget(name),
        build=build,
        step=step,
        optimizer=fields.pop("optimizer", _adamw),
        evaluate=evaluate,
        augment=lambda cl, cfg, images: default_augment(cfg, images),
        **fields,
    )


PRETRAIN_METHODS = (
    _entry("simclr", _simclr_step, description="SimCLR, NT-Xent over the global batch"),
    _entry(
        "moco",
        _moco_step,
        trained=lambda model: nn.Sequential(model.encoder, model.projector),
        description="MoCo v2, the queue fed by every rank's keys",
    ),
    _entry(
        "byol",
        _byol_step,
        trained=lambda model: nn.Sequential(model.encoder, model.projector, model.predictor),
        description="BYOL, a momentum target network outside DDP",
    ),
    _entry("simsiam", _simsiam_step(True), description="SimSiam"),
    _entry(
        "simsiam-no-stopgrad",
        _simsiam_step(False),
        description="SimSiam without the stop-gradient (collapses)",
    ),
    _entry(
        "supervised",
        _supervised_step,
        optimizer=_supervised_optimizer,
        tensors=lambda data, cfg: (data.x_train, data.y_train),
        description="the supervised baseline (labels, cross-entropy)",
    ),
)
