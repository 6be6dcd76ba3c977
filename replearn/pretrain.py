"""Pretraining from the command line, as one process or many (torchrun + DistributedDataParallel).

The notebooks train each method for minutes; the ``full`` preset's runs, a larger dataset or
bigger contrastive batches need one or more GPUs for hours. This module runs the same reference
(or student) code for that, with PyTorch's own distributed engine::

    python -m replearn.pretrain --method simclr --data cifar10 --preset full        # 1 process
    torchrun --nproc_per_node 4 -m replearn.pretrain --method simclr --preset full  # 4 GPUs
    torchrun --nnodes 2 --nproc_per_node 8 --rdzv-backend c10d \\
        --rdzv-endpoint HOST:29500 -m replearn.pretrain --method moco --preset full  # 2 nodes

What happens under torchrun (``W`` processes, ranks ``0 .. W-1``):

* **data**: every rank holds the dataset and draws the same permutation from ``(seed, epoch)``;
  global batch ``b`` is split into ``W`` contiguous shares of ``n = N / W`` images, rank ``r``
  taking share ``r`` (``DistributedSampler`` semantics: disjoint shares that cover each epoch).
  ``--batch-size`` is the **global** batch, so the learning rate needs no rescaling;
* **augmentation**: batched on the rank's device (``replearn.augment``), with a generator
  seeded from ``(seed, rank, step)``: every rank draws different views, and a resumed run draws
  the views the interrupted one would have drawn;
* **model**: ``DistributedDataParallel`` wraps the part that is trained (the online network);
  MoCo's key encoder, BYOL's target network and MoCo's queue stay outside it and are updated
  identically on every rank; BatchNorm statistics are averaged over ranks after every step
  (``replearn.distributed.sync_batchnorm_stats``), or synchronised in the forward pass with
  ``--sync-bn`` (SyncBatchNorm, GPUs only; SimCLR's "global BN");
* **losses**: NT-Xent and CLIP's loss gather the embeddings of every rank with gradients, so
  the negatives are the global batch; MoCo enqueues the keys of every rank; BYOL, SimSiam and
  MAE compare an image with itself and need no gather;
* **the loop** is the course's one, ``replearn.train.train``: rank 0 logs and writes its
  checkpoint atomically, every rank resumes from rank 0's checkpoint (read by rank 0 and
  broadcast, so other nodes need not see the file), and rank 0 evaluates and saves the encoder;
* **stopping** (epochs, steps, wall-clock budget) and the learning-rate schedule follow rank 0's
  clock, broadcast every step, so that every rank takes the same number of steps at the same
  rates; ``check_replicas`` proves at the end that every rank holds bit-identical weights.

Each method is a ``PretrainMethod`` in ``METHODS``: RotNet (Assignment 3), SimCLR, MoCo, BYOL, SimSiam (with and
without the stop-gradient) and the supervised baseline (Assignment 4), MAE (Assignment 5) and the
CLIP-style model (Assignment 6: a CIFAR image tower aligned to frozen sentence embeddings of
captions; the captions are made from the class labels, so ``clip``, like ``supervised``, uses
labels). Another module adds its own with ``register_method``. Shapes: ``n`` images on this
rank, ``N = W n`` in the global batch, ``D`` embedding width, ``K`` queue length (MoCo) or
classes (CLIP's caption table).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from replearn import captions, distributed
from replearn.backbones import SmallCNN, cifar_resnet18
from replearn.data import ImageData, load_dataset, to_float
from replearn.distributed import World
from replearn.presets import Preset, get_preset
from replearn.train import (
    BudgetCosine,
    History,
    Hook,
    ShardedLoader,
    TrainConfig,
    autocast_dtype,
    checkpoint_dir,
    draw,
    step_budget,
    train,
)

__all__ = [
    "BACKBONES",
    "METHODS",
    "CaptionAlignedTower",
    "PretrainMethod",
    "PretrainOutcome",
    "PretrainSettings",
    "StepContext",
    "apply_overrides",
    "caption_table",
    "get_method",
    "main",
    "register_method",
    "run_pretraining",
    "train_or_load",
]

# --------------------------------------------------------------------------------------------
# The method table
# --------------------------------------------------------------------------------------------


@dataclass
class StepContext:
    """What a method's step function gets, besides the batch.

    ``trained`` is what the forward pass must go through: the DDP-wrapped online network under
    torchrun (so that DDP sees the forward and averages the gradients), the plain one otherwise.
    ``model`` is the whole unwrapped model (momentum networks, queue), ``module`` the assignment
    module the method's parts come from, ``generator`` this rank's generator for this step,
    ``step`` the 0-based index of the optimizer step being computed (for schedules).
    """

    module: types.ModuleType
    model: nn.Module
    trained: nn.Module
    cfg: Any
    augment: Callable[[torch.Tensor, torch.Generator | None], torch.Tensor]
    generator: torch.Generator
    world: World
    step: int = 0


@dataclass(frozen=True)
class PretrainMethod:
    """One pretraining method: where its parts live and how the engine drives them.

    Attributes:
        name: the ``--method`` name.
        module: the assignment module with its parts, loaded with ``replearn.impl.load``.
        config: ``(module, preset) -> cfg``, the method's settings for a preset (a dataclass,
            so that ``--set key=value`` can change a field).
        budget: ``cfg -> seconds``, the wall-clock budget of one run.
        build: ``(module, cfg, encoder, data) -> model``, the whole model (``model.encoder``
            is what transfers).
        trained: ``model -> nn.Module``, the part that gets gradients and that DDP wraps; its
            forward is the online forward pass. Default: the whole model.
        step: ``(StepContext, batch) -> {"loss": tensor, ...}``, one step's loss on this rank's
            share (scalars besides the loss are logged, averaged over ranks).
        optimizer: ``(cfg, parameters) -> torch.optim.Optimizer``.
        tensors: ``(data, cfg) -> tensors`` the loader iterates (a batch is their rows).
        evaluate: ``(module, encoder, data, cfg) -> {name: float}``, run by rank 0 at the end;
            None: no evaluation.
        grad_clip: the global gradient-norm clip, or None.
        augment: ``(module, cfg, sample_images) -> (images, generator) -> images``, the batched
            augmentation the step receives as ``ctx.augment``. Default: the module's
            ``default_augment``.
        backbone: whether ``build`` takes an encoder from ``--backbone``; False for methods
            that build their own (MAE's ViT, CLIP's image tower), which then get ``None``.
        batch_size: ``cfg -> int``, the default global batch (``--batch-size`` overrides it).
    """

    name: str
    module: str
    config: Callable[[types.ModuleType, Preset], Any]
    budget: Callable[[Any], float]
    build: Callable[[types.ModuleType, Any, nn.Module, ImageData], nn.Module]
    step: Callable[[StepContext, Any], Mapping[str, Any]]
    optimizer: Callable[[Any, list[nn.Parameter]], torch.optim.Optimizer]
    trained: Callable[[nn.Module], nn.Module] = lambda model: model
    tensors: Callable[[ImageData, Any], tuple[torch.Tensor, ...]] = lambda data, cfg: (
        data.x_train,
    )
    evaluate: Callable[[types.ModuleType, nn.Module, ImageData, Any], dict] | None = None
    grad_clip: float | None = 5.0
    description: str = ""
    augment: Callable[[types.ModuleType, Any, torch.Tensor], Callable] = (
        lambda module, cfg, images: module.default_augment(cfg, images)
    )
    backbone: bool = True
    batch_size: Callable[[Any], int] = lambda cfg: cfg.batch_size


METHODS: dict[str, PretrainMethod] = {}


def register_method(method: PretrainMethod, *, replace: bool = False) -> PretrainMethod:
    """Add ``method`` to ``METHODS`` (``replace=True`` to overwrite one of the same name)."""
    if not isinstance(method, PretrainMethod):
        raise TypeError(f"register_method needs a PretrainMethod, got {type(method).__name__}")
    if method.name in METHODS and not replace:
        raise ValueError(f"method {method.name!r} is already registered; pass replace=True")
    METHODS[method.name] = method
    return method


def get_method(name: str) -> PretrainMethod:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; choose one of {sorted(METHODS)}") from None


# Encoders by ``--backbone`` name: ``(cfg, in_channels) -> ConvBackbone``.
BACKBONES: dict[str, Callable[[Any, int], nn.Module]] = {
    "smallcnn": lambda cfg, channels: SmallCNN(
        channels, widths=getattr(cfg, "widths", None) or (32, 64, 128, 256)
    ),  # fmt: skip
    "resnet18": lambda cfg, channels: cifar_resnet18(channels),
}


# ---- Assignment 4: contrastive_learning ------------------------------------------------------


def _contrastive_config(module: types.ModuleType, preset: Preset) -> Any:
    return module.ContrastiveConfig.from_preset(preset)


def _adamw(cfg: Any, parameters: list[nn.Parameter]) -> torch.optim.Optimizer:
    return torch.optim.AdamW(parameters, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _two_views(ctx: StepContext, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Two augmented views, in the reference's order (view 1, then view 2, same generator)."""
    x = ctx.module.as_float_images(images)  # [n, C, H, W]
    return ctx.augment(x, ctx.generator), ctx.augment(x, ctx.generator)  # [n, C, H, W] each


def _simclr_step(ctx: StepContext, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """``contrastive_learning.simclr_step`` with the global batch's negatives."""
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
        return ctx.module.simsiam_step(ctx.trained, images, ctx.augment, ctx.generator, stop_gradient)  # fmt: skip

    return step


def _supervised_step(ctx: StepContext, batch: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
    images, labels = batch  # [n, C, H, W], [n]
    x = ctx.module.supervised_augment(ctx.module.as_float_images(images), ctx.generator)
    logits = ctx.trained(x)  # [n, K classes]
    accuracy = (logits.detach().argmax(dim=1) == labels).float().mean()
    return {"loss": F.cross_entropy(logits, labels), "acc": accuracy}


def _contrastive_evaluate(module, encoder: nn.Module, data: ImageData, cfg: Any) -> dict:
    return module.evaluate_encoder(encoder, data.x_train, data.y_train, data.x_test, data.y_test, cfg)  # fmt: skip


def _register_contrastive() -> None:
    def method(name: str, **fields: Any) -> None:
        fields.setdefault("optimizer", _adamw)
        register_method(
            PretrainMethod(
                name=name,
                module="contrastive_learning",
                config=_contrastive_config,
                budget=lambda cfg: cfg.budget(name),
                evaluate=_contrastive_evaluate,
                **fields,
            )
        )

    method(
        "simclr",
        build=lambda m, cfg, enc, data: m.SimCLR(
            enc, enc.feature_dim, cfg.projection_dim, cfg.hidden_dim
        ),  # fmt: skip
        step=_simclr_step,
        description="SimCLR, NT-Xent over the global batch",
    )
    method(
        "moco",
        build=lambda m, cfg, enc, data: m.MoCo(
            enc,
            enc.feature_dim,
            cfg.projection_dim,
            cfg.queue_size,
            cfg.moco_momentum,
            cfg.temperature,
            cfg.hidden_dim,
        ),  # fmt: skip
        trained=lambda model: nn.Sequential(model.encoder, model.projector),
        step=_moco_step,
        description="MoCo v2, the queue fed by every rank's keys",
    )
    method(
        "byol",
        build=lambda m, cfg, enc, data: m.BYOL(
            enc, enc.feature_dim, cfg.projection_dim, cfg.hidden_dim, cfg.byol_momentum
        ),  # fmt: skip
        trained=lambda model: nn.Sequential(model.encoder, model.projector, model.predictor),
        step=_byol_step,
        description="BYOL, a momentum target network outside DDP",
    )
    for name, stop in (("simsiam", True), ("simsiam-no-stopgrad", False)):
        method(
            name,
            build=lambda m, cfg, enc, data: m.SimSiam(
                enc, enc.feature_dim, cfg.projection_dim, cfg.simsiam_hidden_dim
            ),  # fmt: skip
            step=_simsiam_step(stop),
            description="SimSiam" + ("" if stop else " without the stop-gradient (collapses)"),
        )
    method(
        "supervised",
        build=lambda m, cfg, enc, data: m.Classifier(enc, data.num_classes),
        step=_supervised_step,
        optimizer=lambda cfg, params: torch.optim.SGD(
            params, lr=cfg.supervised_lr, momentum=0.9, nesterov=True, weight_decay=5e-4
        ),  # fmt: skip
        tensors=lambda data, cfg: (data.x_train, data.y_train),
        description="the supervised baseline (labels, cross-entropy)",
    )


_register_contrastive()


# ---- Assignment 3: pretext_tasks -------------------------------------------------------------


def _rotation_step(ctx: StepContext, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """``pretext_tasks.pretrain("rotation")``'s step: RotNet's four quarter turns of every image
    after the light crop-and-flip (``light_augment``), cross-entropy over the rotations."""
    x = ctx.module.light_augment(to_float(images), ctx.generator)  # [n, C, H, W]
    return dict(ctx.module.rotation_loss(ctx.trained, x))  # over [4n, C, H, W]


def _pretext_evaluate(m: types.ModuleType, encoder: nn.Module, data: ImageData, cfg: Any) -> dict:
    """The notebook's protocol: kNN and linear probe of each probed block's pooled features."""
    scores = m.evaluate_encoder(encoder, data.x_train, data.y_train, data.x_test, data.y_test,
                                cfg.probe_blocks, cfg)  # fmt: skip
    return {f"block{b}_{k}": v for b, s in scores.items() for k, v in s.items()}


register_method(
    PretrainMethod(
        name="rotation",
        module="pretext_tasks",
        config=lambda module, preset: module.PretextConfig.from_preset(preset),
        budget=lambda cfg: cfg.rotation_s,
        build=lambda m, cfg, encoder, data: m.PretextClassifier(encoder, 4),
        step=_rotation_step,
        optimizer=lambda cfg, params: torch.optim.SGD(
            params, lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay
        ),  # fmt: skip
        evaluate=_pretext_evaluate,
        augment=lambda module, cfg, images: lambda x, generator=None: x,  # the step augments
        description="RotNet: predict which of four quarter turns an image was given",
    )
)


# ---- Assignment 5: masked_autoencoders -------------------------------------------------------


def _mae_step(ctx: StepContext, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """``masked_autoencoders.pretrain``'s step: each rank masks its share with its generator."""
    x = ctx.module.as_float_images(images)  # [n, C, H, W]
    return {"loss": ctx.trained(x, ctx.cfg.mask_ratio, ctx.generator)["loss"]}


def _mae_optimizer(cfg: Any, parameters: list[nn.Parameter]) -> torch.optim.Optimizer:
    """MAE's AdamW: betas (0.9, 0.95), no weight decay on biases and norms (1-D tensors)."""
    groups = [
        {"params": [p for p in parameters if p.ndim > 1], "weight_decay": cfg.weight_decay},
        {"params": [p for p in parameters if p.ndim <= 1], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95))


register_method(
    PretrainMethod(
        name="mae",
        module="masked_autoencoders",
        config=lambda module, preset: module.MAEConfig.from_preset(preset),
        budget=lambda cfg: cfg.pretrain_s,
        build=lambda m, cfg, encoder, data: m.build_mae(
            cfg, data.image_shape[-1], data.image_shape[0]
        ),  # fmt: skip
        step=_mae_step,
        optimizer=_mae_optimizer,
        evaluate=lambda m, encoder, data, cfg: m.evaluate_encoder(
            encoder, data.x_train, data.y_train, data.x_test, data.y_test, cfg
        ),  # fmt: skip
        augment=lambda module, cfg, images: lambda x, generator=None: x,  # MAE: none
        backbone=False,
        description="masked autoencoder, a ViT on the visible patches (--backbone does not apply)",
    )
)


# ---- Assignment 6: clip_zero_shot ------------------------------------------------------------


class CaptionAlignedTower(nn.Module):
    """``clip_zero_shot.train_cifar_aligned``'s model, shaped for DDP and a global-batch loss.

    ``clip`` is the module's ``FrozenTextCLIP`` (its ``ImageEncoder`` and learnable
    ``LogitScale``), the part that learns; ``caption_table`` holds the frozen sentence embeddings
    of every prompt template filled with every class name, ``[K, M, D]`` (``K`` classes, ``M``
    templates), computed once. ``FrozenTextCLIP.forward`` computes the one-process loss itself;
    here ``forward`` stops before the loss and returns what the module's ``clip_loss`` needs, so
    that the negatives can come from every rank while DDP still sees the forward pass.
    """

    def __init__(self, clip: nn.Module, caption_table: torch.Tensor):
        super().__init__()
        if caption_table.ndim != 3:
            raise ValueError(f"caption_table must be [K, M, D], got {tuple(caption_table.shape)}")
        self.clip = clip
        # recomputed from the frozen sentence encoder, so not saved in checkpoints
        self.register_buffer("caption_table", caption_table, persistent=False)  # [K, M, D]

    @property
    def encoder(self) -> nn.Module:
        """The image tower: what transfers (its ``features`` are what a linear probe reads)."""
        return self.clip.image_encoder

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images ``[n, C, H, W]`` in [0, 1] -> (image embeddings ``[n, D]``, logit scale ``[]``)."""
        return self.clip.image_encoder(images), self.clip.logit_scale()  # [n, D], []


def _heldout_ids(data: ImageData, cfg: Any) -> list[int]:
    """Label ids of ``cfg.cifar_heldout``, the classes CLIP never sees a caption of."""
    names = list(data.class_names)
    unknown = [name for name in cfg.cifar_heldout if name not in names]
    if unknown:
        raise ValueError(
            f"held-out classes {unknown} are not classes of {data.name} ({names}); choose some "
            f"with --set cifar_heldout=NAME,NAME or hold none out with --set cifar_heldout="
        )
    return [names.index(name) for name in cfg.cifar_heldout]


def _clip_tensors(data: ImageData, cfg: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """The training images and labels of every class but the held-out ones."""
    keep = ~torch.isin(data.y_train, torch.tensor(_heldout_ids(data, cfg), dtype=torch.int64))
    return data.x_train[keep], data.y_train[keep]  # [N', C, H, W], [N']


def caption_table(classnames: Sequence[str], templates: Sequence[str] | None = None) -> torch.Tensor:  # fmt: skip
    """Frozen all-MiniLM-L6-v2 embeddings of every template x class name: ``[K, M, 384]``.

    The table of ``clip_zero_shot.train_cifar_aligned`` (``replearn.captions.prompts``, class
    by class, then ``sentence_embeddings``). Rank 0 embeds and broadcasts, so every rank trains
    against the same numbers even where thread counts make float sums differ.
    """
    templates = list(captions.CIFAR_TEMPLATES if templates is None else templates)
    table = None
    if distributed.get_rank() == 0:
        texts = captions.prompts(classnames, templates)  # [K * M] class by class
        table = captions.sentence_embeddings(texts).view(len(classnames), len(templates), -1)
    return distributed.broadcast_object(table)  # [K, M, 384]


def _clip_build(m: types.ModuleType, cfg: Any, encoder: None, data: ImageData) -> CaptionAlignedTower:  # fmt: skip
    _heldout_ids(data, cfg)  # a wrong class name fails before the sentence encoder loads
    with torch.random.fork_rng(devices=[]):  # the initial weights depend on the seed alone,
        table = caption_table(data.class_names)  # [K, M, D] not on what loading the encoder draws
    image_encoder = m.ImageEncoder(table.shape[-1], cfg.cifar_widths, data.image_shape[0])
    return CaptionAlignedTower(m.FrozenTextCLIP(image_encoder), table)


def _clip_step(ctx: StepContext, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:  # fmt: skip
    """``train_cifar_aligned``'s step with the global batch's negatives.

    Each image gets the caption "a template drawn at random, filled with its class name", whose
    frozen embedding is the positive; the other captions of the GLOBAL batch are the negatives
    (``distributed.on_global_batch`` gathers both sides from every rank, with gradients). The template
    is drawn before the augmentation, as the module's step does, from this step's generator.
    """
    images, labels = batch  # [n, C, H, W] uint8, [n]
    table = ctx.model.caption_table  # [K, M, D]
    which = draw(torch.randint, table.shape[1], (len(labels),), generator=ctx.generator, device=labels.device)  # [n]  # fmt: skip
    texts = table[labels, which]  # [n, D] one caption per image
    views = ctx.augment(ctx.module.as_float_images(images), ctx.generator)  # [n, C, H, W]
    image_features, logit_scale = ctx.trained(views)  # [n, D], [] through DDP
    loss = distributed.on_global_batch(ctx.module.clip_loss, (image_features, texts), logit_scale)
    return {"loss": loss, "logit_scale": logit_scale.detach()}


def _clip_optimizer(cfg: Any, parameters: list[nn.Parameter]) -> torch.optim.Optimizer:
    """``clip_zero_shot._adamw``: CLIP's betas (0.9, 0.98) and eps 1e-6 (Radford et al. 2021,
    Table 19), no weight decay on biases, norms and the temperature (tensors < 2-D)."""
    groups = [
        {"params": [p for p in parameters if p.ndim > 1], "weight_decay": cfg.weight_decay},
        {"params": [p for p in parameters if p.ndim <= 1], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.cifar_lr, betas=(0.9, 0.98), eps=1e-6)


def _clip_evaluate(m: types.ModuleType, encoder: nn.Module, data: ImageData, cfg: Any) -> dict:
    """The notebook's protocol: a linear probe on the pooled features (every class labelled), and
    zero-shot accuracies with the 18-template ensemble (``cifar_zero_shot``: the held-out classes
    among their names and among all, the seen classes, all; chance is 1 / candidates)."""
    metrics = {"linear": m.linear_probe_accuracy(encoder, data.x_train, data.y_train,
                                                 data.x_test, data.y_test, cfg)}  # fmt: skip
    if cfg.cifar_heldout:
        scores = m.cifar_zero_shot(encoder, data.x_test, data.y_test, cfg.cifar_heldout,
                                   classnames=data.class_names)  # fmt: skip
        metrics.update({f"zero_shot_{k}": v for k, v in scores.items() if not k.startswith("chance")})  # fmt: skip
    else:  # nothing held out: zero-shot over every class
        from replearn.evaluate import extract_features

        weights = m.zero_shot_classifier(m.sentence_encoder_fn, list(data.class_names), captions.CIFAR_TEMPLATES)  # fmt: skip
        predicted = m.zero_shot_predict(extract_features(encoder, data.x_test), weights)  # [M]
        metrics["zero_shot_all"] = float((predicted == data.y_test).float().mean())
    return metrics


register_method(
    PretrainMethod(
        name="clip",
        module="clip_zero_shot",
        config=lambda module, preset: module.CLIPConfig.from_preset(preset),
        budget=lambda cfg: cfg.cifar_s,
        build=_clip_build,
        step=_clip_step,
        optimizer=_clip_optimizer,
        tensors=_clip_tensors,
        evaluate=_clip_evaluate,
        augment=lambda module, cfg, images: (
            lambda x, generator=None: module.cifar_augment(generator)(x)
        ),  # fmt: skip
        backbone=False,
        batch_size=lambda cfg: cfg.cifar_batch_size,
        description="CLIP-style: image tower vs frozen sentence embeddings of captions made "
        "from the labels, CLIP loss over the global batch (--backbone does not apply)",
    )
)


# --------------------------------------------------------------------------------------------
# Randomness: each rank's generator for each step (the data side is train.ShardedLoader)
# --------------------------------------------------------------------------------------------


def _mixed_seed(*numbers: int) -> int:
    """A 63-bit seed from integers, well mixed by NumPy's SeedSequence."""
    return int(np.random.SeedSequence(list(numbers)).generate_state(1, dtype=np.uint64)[0]) >> 1


def step_generator(seed: int, rank: int, step: int) -> torch.Generator:
    """The augmentation generator of ``step`` on ``rank``: a pure function, so resume is exact."""
    return torch.Generator().manual_seed(_mixed_seed(seed, rank, step))


# --------------------------------------------------------------------------------------------
# Settings, overrides, outcome
# --------------------------------------------------------------------------------------------


@dataclass
class PretrainSettings:
    """One pretraining run. ``None`` means "what the preset and the method's config say"."""

    method: str
    data: str | None = None  # a replearn.data dataset name; None: the preset's dataset
    preset: str | None = None  # None: $REPLEARN_PRESET, else cpu-quick
    impl: str | None = None  # "solution" / "starter"; None: $REPLEARN_IMPL, else "solution"
    seed: int = 0
    device: str = "auto"
    backbone: str = "smallcnn"  # a key of BACKBONES
    batch_size: int | None = None  # the GLOBAL batch (split over the processes)
    budget_s: float | None = None  # wall-clock seconds; 0: no time limit (schedule by steps)
    epochs: int | None = None  # None: the config's max_epochs
    max_steps: int | None = None  # optimizer steps over the whole run
    train_per_class: int | None = None  # None: the preset's; 0: every training image
    sync_bn: bool = False  # SyncBatchNorm in the trained part (GPUs, several processes)
    amp: bool | None = None  # autocast on CUDA; None: the preset's
    checkpoint: str | None = "auto"  # path; "auto": checkpoints/pretrain/<run>.pt; None: off
    resume: bool = True  # continue from the checkpoint when it exists
    checkpoint_every_s: float | None = 300.0
    checkpoint_every_steps: int | None = None
    out_dir: str | None = "runs/pretrain"  # encoder weights, history and metrics; None: off
    overrides: dict[str, str] = field(default_factory=dict)  # cfg field -> value (``--set``)
    log_every: int = 20
    evaluate: bool = True  # the method's evaluation on the test split (rank 0, at the end)
    verbose: bool = True

    def run_name(self, preset: Preset, data_name: str) -> str:
        backbone = "" if self.backbone == "smallcnn" else f"-{self.backbone}"
        return f"{self.method}{backbone}-{data_name}-{preset.name}-seed{self.seed}"


def _parse_value(text: str, current: Any, name: str) -> Any:
    """``text`` as the type of the field's current value (bool, int, float, tuple, str)."""
    try:
        if isinstance(current, bool):
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError(text)
            return text.lower() in ("true", "1")
        if isinstance(current, int):
            return int(text)
        if isinstance(current, float):
            return float(text)
        if isinstance(current, tuple):
            kind = type(current[0]) if current else int
            return tuple(kind(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(
            f"--set {name}={text}: expected a {type(current).__name__} like {current!r}"
        ) from None
    return text


def apply_overrides(cfg: Any, overrides: Mapping[str, str]) -> Any:
    """``cfg`` with fields changed from strings (``{"queue_size": "1024"}``), typed as they are."""
    if not overrides:
        return cfg
    if not dataclasses.is_dataclass(cfg):
        raise TypeError(f"the method's config {type(cfg).__name__} is not a dataclass")
    fields_by_name = {f.name: f for f in dataclasses.fields(cfg)}
    changes = {}
    for name, text in overrides.items():
        if name not in fields_by_name:
            raise ValueError(
                f"--set {name}=...: {type(cfg).__name__} has no field {name!r}; fields: "
                f"{', '.join(sorted(fields_by_name))}"
            )
        changes[name] = _parse_value(str(text), getattr(cfg, name), name)
    return dataclasses.replace(cfg, **changes)


@dataclass
class PretrainOutcome:
    """What a run left behind (on every rank; ``metrics`` and files only from rank 0)."""

    method: str
    model: nn.Module
    encoder: nn.Module
    history: History
    world: World
    cfg: Any
    checkpoint_path: Path | None
    digest: str  # sha256 of the whole model's state, equal on every rank
    metrics: dict[str, float] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)

    @property
    def final_loss(self) -> float:
        """Mean training loss over the last 20 steps (as the assignment modules' results)."""
        return self.history.recent_mean("loss")


# --------------------------------------------------------------------------------------------
# One run: replearn.train.train, as one process or one of several
# --------------------------------------------------------------------------------------------


def _say(world: World, settings: PretrainSettings, message: str) -> None:
    if world.is_main and settings.verbose:
        print(message, flush=True)


class _EngineHook(Hook):
    """What the entry point adds around ``train``'s steps: each step's context (its generator,
    seeded from ``(seed, rank, step)``, so a resumed run draws the views the interrupted one
    would have drawn), and rank 0's log lines."""

    def __init__(
        self,
        make_context: Callable[[int], StepContext],
        world: World,
        settings: PretrainSettings,
        checkpoint: str | None,
    ) -> None:
        self.make_context, self.world, self.settings = make_context, world, settings
        self.checkpoint = checkpoint
        self.context: StepContext | None = None

    def before_step(self, model: nn.Module, step: int) -> None:
        self.context = self.make_context(step)

    def on_start(self, model: nn.Module, history: History) -> None:
        if history.steps_done:
            where = f"{history.steps_done} ({history.epochs_done:.2f} epochs)"
            _say(self.world, self.settings, f"resuming {self.checkpoint} at step {where}")

    def on_log(self, records: list[dict[str, Any]], history: History) -> None:
        last = records[-1]
        names = [k for k in last if k not in ("step", "epoch", "lr", "time_s")]
        rate = history.images_seen / max(last["time_s"], 1e-9)
        metrics = " ".join(f"{name} {last[name]:.4g}" for name in names)
        line = f"step {last['step'] + 1} epoch {last['epoch']} {metrics} lr {last['lr']:.3g}"
        _say(self.world, self.settings, f"{line} {last['time_s']:.0f}s {rate:.0f} img/s")


def run_pretraining(
    settings: PretrainSettings,
    world: World | None = None,
    *,
    module: types.ModuleType | None = None,
) -> PretrainOutcome:
    """Pretrain one method on this process's share; the entry point's work, callable from Python.

    Call it in every process (torchrun starts them; ``init_distributed`` is called here when
    ``world`` is None). One process: the same code without DDP, gathers or broadcasts, so a
    notebook can call it too (:func:`train_or_load` is that call with a notebook's settings)::

        outcome = run_pretraining(PretrainSettings("simclr", data="cifar10", preset="full"))
        outcome.encoder  # the pretrained encoder, eval mode

    The loop, its checkpoints and its resume are ``replearn.train.train``'s; this function adds
    what only a pretraining run needs: the method's model and step, this rank's share of every
    global batch (``ShardedLoader``), DistributedDataParallel around the trained part
    (``distributed.wrap_ddp``), BatchNorm statistics averaged after each step, and rank 0's
    clock (``distributed.SharedClock``) for the stops and the learning-rate schedule.

    ``module``: the assignment module to take the method's parts from, already imported (a
    notebook's student module); default: ``replearn.impl.load`` with ``settings.impl``.
    """
    from replearn import impl

    method = get_method(settings.method)
    world = world or distributed.init_distributed(settings.device)
    preset = get_preset(settings.preset)
    if module is None:
        implementation = settings.impl or os.environ.get("REPLEARN_IMPL") or "solution"
        module = impl.load(method.module, impl=implementation)
    cfg = apply_overrides(method.config(module, preset), settings.overrides)
    if settings.log_every < 1:
        raise ValueError(f"log_every must be a positive int, got {settings.log_every}")

    # ---- data ----------------------------------------------------------------------------
    data_name = settings.data or preset.dataset
    per_class = settings.train_per_class
    per_class = preset.train_per_class if per_class is None else (per_class or None)
    data = load_dataset(
        data_name, train_per_class=per_class, test_per_class=preset.test_per_class, seed=settings.seed
    )  # fmt: skip
    tensors = method.tensors(data, cfg)
    global_batch = settings.batch_size or method.batch_size(cfg)
    global_batch = min(global_batch, len(tensors[0]) - len(tensors[0]) % world.world_size)
    loader = ShardedLoader(
        *tensors,
        global_batch_size=global_batch,
        rank=world.rank,
        world_size=world.world_size,
        seed=settings.seed,
        device=world.device,
    )

    # ---- model, DDP, optimizer ---------------------------------------------------------------
    if settings.backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {settings.backbone!r}; choose one of {sorted(BACKBONES)}")  # fmt: skip
    torch.manual_seed(settings.seed)  # the same initial weights, queue and targets on every rank
    encoder = BACKBONES[settings.backbone](cfg, data.image_shape[0]) if method.backbone else None
    model = method.build(module, cfg, encoder, data).to(world.device)
    trained = method.trained(model)
    if settings.sync_bn and world.world_size > 1:
        if world.device.type != "cuda":
            raise ValueError(
                "--sync-bn needs GPUs: torch implements SyncBatchNorm for CUDA only; drop it on "
                "CPU (BatchNorm statistics are then per process, averaged after each step)"
            )
        trained = nn.SyncBatchNorm.convert_sync_batchnorm(trained)  # in place for children
    optimizer = method.optimizer(cfg, [p for p in trained.parameters() if p.requires_grad])
    forward = distributed.wrap_ddp(trained, world)

    # ---- limits and the schedule on rank 0's clock --------------------------------------------
    budget_s = method.budget(cfg) if settings.budget_s is None else float(settings.budget_s)
    budget_s = budget_s if budget_s > 0 else None
    epochs = settings.epochs if settings.epochs is not None else getattr(cfg, "max_epochs", None)
    if budget_s is None and epochs is None and settings.max_steps is None:
        raise ValueError("the run has no limit: give --budget-s, --epochs or --max-steps")
    clock = distributed.SharedClock()
    if budget_s is not None:  # cosine over the budget, on rank 0's clock
        scheduler = BudgetCosine(optimizer, budget_s, clock=lambda: clock.seconds)
    else:  # cosine over the steps
        total = settings.max_steps or epochs * len(loader)
        if epochs is not None and settings.max_steps is not None:
            total = min(total, epochs * len(loader))
        with step_budget(max(total, 1)):  # the schedule's seconds are its steps
            scheduler = BudgetCosine(optimizer, float(max(total, 1)))
    amp = preset.amp if settings.amp is None else settings.amp
    run_name = settings.run_name(preset, data_name)
    checkpoint = settings.checkpoint
    if checkpoint == "auto":
        checkpoint = str(Path("checkpoints") / "pretrain" / f"{run_name}.pt")
    config = TrainConfig(
        epochs=epochs,
        budget_s=budget_s,
        max_steps=settings.max_steps,
        grad_clip=method.grad_clip,
        amp="auto" if amp else False,  # autocast on CUDA only, as the presets promise
        log_every=settings.log_every,
        progress=False,  # rank 0 prints a line every log_every steps instead
        checkpoint_path=checkpoint,
        checkpoint_every_s=settings.checkpoint_every_s,
        checkpoint_every_steps=settings.checkpoint_every_steps,
        resume=settings.resume,
    )
    amp_name = autocast_dtype(world.device, config.amp)

    _say(
        world,
        settings,
        f"[replearn.pretrain] {method.name} ({method.description}) with {impl.describe(module)}\n"
        f"  data: {data.summary()}\n"
        f"  preset {preset.name}; {world.world_size} process(es), backend {world.backend or 'none'}, "
        f"device {world.device}; global batch {loader.global_batch_size} = {world.world_size} x "
        f"{loader.local_batch_size}; {len(loader)} steps/epoch; limits: epochs={epochs}, "
        f"max_steps={settings.max_steps}, budget_s={budget_s}; "
        f"amp={str(amp_name).removeprefix('torch.') if amp_name else None}; "
        f"sync_bn={settings.sync_bn and world.world_size > 1}; torch {torch.__version__}",
    )

    # ---- the loop: replearn.train.train ------------------------------------------------------
    augment = method.augment(module, cfg, data.x_train[:1])  # the module's pipeline

    def context(step: int) -> StepContext:
        generator = step_generator(settings.seed, world.rank, step)
        return StepContext(module, model, forward, cfg, augment, generator, world, step)

    engine = _EngineHook(context, world, settings, checkpoint)

    def step_fn(_: nn.Module, batch: Any) -> Mapping[str, Any]:
        output = method.step(engine.context, batch)
        if "loss" not in output:
            raise ValueError(f"{method.name}'s step returned {sorted(output)}, no 'loss'")
        return output

    identity = {
        "method": method.name,
        "data": data_name,
        "num_samples": loader.num_samples,
        "global_batch_size": loader.global_batch_size,
        "backbone": settings.backbone,
        "seed": settings.seed,
    }
    forward.train()
    history = train(
        step_fn,
        model,
        optimizer,
        loader,
        config,
        scheduler=scheduler,
        hooks=[engine, distributed.batchnorm_hook()],
        replicas=distributed.replicas(world, clock),
        run=identity,
    )
    digest = distributed.check_replicas(model, f"{method.name} model")
    _say(
        world,
        settings,
        f"stopped by {history.stopped_by} after {history.steps_done} steps "
        f"({history.epochs_done:.2f} epochs, {history.wall_time_s:.0f} s, "
        f"{history.images_per_s:.0f} images/s over all processes); replicas identical "
        f"(sha256 {digest[:12]})",
    )

    # ---- rank 0: evaluate and save --------------------------------------------------------
    model.eval()
    checkpoint_path = Path(checkpoint) if checkpoint else None
    outcome = PretrainOutcome(
        method.name, model, model.encoder, history, world, cfg, checkpoint_path, digest
    )
    if world.is_main:
        if settings.evaluate and method.evaluate is not None:
            outcome.metrics = {k: float(v) for k, v in method.evaluate(module, model.encoder, data, cfg).items()}  # fmt: skip
            _say(world, settings, "evaluation: " + ", ".join(f"{k} {v:.4f}" for k, v in outcome.metrics.items()))  # fmt: skip
        if settings.out_dir:
            outcome.files = _write_outputs(Path(settings.out_dir), run_name, outcome, settings)
            _say(world, settings, "wrote " + ", ".join(outcome.files.values()))
    return outcome


def train_or_load(
    method: str,
    preset: Preset | str | None = None,
    *,
    module: types.ModuleType | None = None,
    seed: int = 0,
    device: str | torch.device = "auto",
    root: str | os.PathLike | None = None,
    verbose: bool = True,
    **changes: Any,
) -> PretrainOutcome:
    """The run ``python -m replearn.pretrain --method METHOD --preset PRESET --seed SEED`` makes,
    as a notebook's ``full`` preset uses it: loaded when it finished, resumed when it stopped,
    started here (one process) when it never ran.

    The checkpoint is the entry point's default one, under the course folder
    (``<root>/checkpoints/pretrain/<run>.pt``; under ``$REPLEARN_CHECKPOINT_DIR/pretrain/`` or
    Google Drive when :func:`replearn.train.checkpoint_dir` says so), so a run launched from the course folder on
    several GPUs (``torchrun --nproc_per_node N -m replearn.pretrain ...``, the command is printed)
    is the one the notebook then loads: the notebook itself never needs more than one process.
    The method's own evaluation is skipped (the notebook evaluates); the encoder and the history
    are also written to ``<root>/runs/pretrain/``.

    Args:
        method: a ``--method`` name (``simclr``, ``moco``, ``byol``, ``simsiam``, ``mae``, ``clip``, ...).
        preset: the preset (default ``$REPLEARN_PRESET``, else cpu-quick).
        module: the assignment module already imported (the notebook's ``S.impl``).
        root: the course folder (default: ``replearn.impl.find_root()``, else the working
            directory).
        changes: any other ``PretrainSettings`` field (``data``, ``backbone``, ``budget_s``, ...).

    Returns:
        The ``PretrainOutcome``: ``model``, ``encoder`` (eval mode), ``history``, ``final_loss``.
    """
    from replearn import impl

    preset = get_preset(preset)
    if root is None:
        try:
            root = impl.find_root()
        except impl.ImplError:
            root = Path.cwd()
    root = Path(root)
    get_method(method)  # an unknown name fails here, with the choices
    settings = PretrainSettings(method, preset=preset.name, seed=seed, device=str(device),
                                out_dir=str(root / "runs" / "pretrain"), evaluate=False,
                                verbose=verbose, **changes)  # fmt: skip
    run_name = settings.run_name(preset, settings.data or preset.dataset)
    settings.checkpoint = str(checkpoint_dir(root) / "pretrain" / f"{run_name}.pt")
    if verbose:
        finished = Path(settings.checkpoint).exists()
        print(f"[train_or_load] {run_name}: {'loading or resuming' if finished else 'training'} "
              f"{settings.checkpoint}. On several GPUs, run it first from {root}:\n"
              f"  torchrun --nproc_per_node N -m replearn.pretrain --method {method} --preset "
              f"{preset.name} --seed {seed}" + (f" --data {settings.data}" if settings.data else "")
              + ("" if checkpoint_dir(root) == root / "checkpoints"
                 else f" --checkpoint {settings.checkpoint}"),
              flush=True)  # fmt: skip
    return run_pretraining(settings, module=module)


def _write_outputs(
    folder: Path, run_name: str, outcome: PretrainOutcome, settings: PretrainSettings
) -> dict[str, str]:
    from replearn.train import save_weights

    folder.mkdir(parents=True, exist_ok=True)
    weights = save_weights(outcome.encoder, folder / f"{run_name}-encoder.safetensors")
    summary = {
        "method": outcome.method,
        "settings": dataclasses.asdict(settings),
        "world_size": outcome.world.world_size,
        "metrics": outcome.metrics,
        "digest": outcome.digest,
        "history": outcome.history.as_dict(),
    }
    report = folder / f"{run_name}.json"
    temporary = report.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(summary, indent=1, default=str))
    os.replace(temporary, report)
    return {"encoder": str(weights), "summary": str(report)}


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m replearn.pretrain",
        description="Pretrain an encoder with one method, as one process or under torchrun "
        "(DistributedDataParallel). Every rank runs this same command.",
        epilog="methods:\n"
        + "".join(f"  {name:<20} {m.description}\n" for name, m in sorted(METHODS.items()))
        + "\nsupervised and clip use the labels: CLIP pretrains on image-caption pairs, and here\n"
        "the captions are made from the class labels (a prompt template filled with the class\n"
        "name, embedded by a frozen sentence encoder).\n\n"
        "examples:\n"
        "  python -m replearn.pretrain --method simclr --data cifar10 --preset full\n"
        "  torchrun --nproc_per_node 4 -m replearn.pretrain --method moco --preset full --sync-bn\n"
        "  torchrun --nproc_per_node 2 -m replearn.pretrain --method clip --set cifar_heldout=cat,truck",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--method", required=True, choices=sorted(METHODS), help="see 'methods' below")
    add("--data", help="dataset name (cifar10, cifar10-5k, mnist, ...); default: the preset's")
    add("--preset", help="smoke, cpu-quick, colab, full; default $REPLEARN_PRESET or cpu-quick")
    add("--impl", choices=("solution", "starter"), help="whose module; default $REPLEARN_IMPL or solution")  # fmt: skip
    add("--seed", type=int, default=0)
    add("--device", default="auto", help="auto, cpu or cuda (each process takes GPU LOCAL_RANK)")
    add("--backbone", default="smallcnn", choices=sorted(BACKBONES))
    add("--batch-size", type=int, help="the GLOBAL batch, split over the processes")
    add("--budget-s", type=float, help="wall-clock seconds (0: no time limit); default the config's")  # fmt: skip
    add("--epochs", type=int, help="default: the config's max_epochs")
    add("--max-steps", type=int)
    add("--train-per-class", type=int, help="training images per class (0: all); default the preset's")  # fmt: skip
    add("--sync-bn", action="store_true", help="SyncBatchNorm across processes (GPUs only)")
    add("--amp", action=argparse.BooleanOptionalAction, default=None, help="autocast on CUDA")
    add("--checkpoint", default="auto", help="path, 'auto' (checkpoints/pretrain/<run>.pt) or 'none'")  # fmt: skip
    add("--restart", action="store_true", help="ignore an existing checkpoint and start over")
    add("--checkpoint-every-s", type=float, default=300.0)
    add("--checkpoint-every-steps", type=int)
    add("--out-dir", default="runs/pretrain", help="encoder weights and summary; 'none': off")
    add("--set", action="append", default=[], metavar="FIELD=VALUE", help="change a config field, e.g. --set queue_size=8192 (repeatable)")  # fmt: skip
    add("--log-every", type=int, default=20)
    add(
        "--no-eval",
        action="store_true",
        help="skip the evaluation (kNN / linear probe / zero-shot)",
    )
    add("--quiet", action="store_true")
    return parser


def _settings_from_args(args: argparse.Namespace) -> PretrainSettings:
    overrides = {}
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise SystemExit(f"--set expects FIELD=VALUE, got {item!r}")
        overrides[name.strip()] = value.strip()
    none = lambda text: None if text is None or text.lower() == "none" else text  # noqa: E731
    return PretrainSettings(
        method=args.method,
        data=args.data,
        preset=args.preset,
        impl=args.impl,
        seed=args.seed,
        device=args.device,
        backbone=args.backbone,
        batch_size=args.batch_size,
        budget_s=args.budget_s,
        epochs=args.epochs,
        max_steps=args.max_steps,
        train_per_class=args.train_per_class,
        sync_bn=args.sync_bn,
        amp=args.amp,
        checkpoint=none(args.checkpoint),
        resume=not args.restart,
        checkpoint_every_s=args.checkpoint_every_s,
        checkpoint_every_steps=args.checkpoint_every_steps,
        out_dir=none(args.out_dir),
        overrides=overrides,
        log_every=args.log_every,
        evaluate=not args.no_eval,
        verbose=not args.quiet,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """The ``python -m replearn.pretrain`` entry point (run by every rank under torchrun)."""
    settings = _settings_from_args(_parser().parse_args(argv))
    world = distributed.init_distributed(settings.device)
    try:
        run_pretraining(settings, world)
    except BaseException:
        distributed.shutdown_distributed(wait_for_peers=False)
        raise
    distributed.shutdown_distributed()
    return 0


if __name__ == "__main__":
    status = main()
    if distributed.launched_by_torchrun():
        # Everything is written and the group is closed. Skip the interpreter's teardown, where
        # gloo's C++ threads can still be destroyed after Python's objects and abort the process
        # ("terminate called without an active exception") once the work is done.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)
