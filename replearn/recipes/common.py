"""What every recipe shares: the record of a finished run, the supervised step, and the
record of a method the pretraining entry point (``replearn.pretrain``) can run."""

from __future__ import annotations

import contextlib
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from replearn.data import ImageData
from replearn.distributed import World
from replearn.evaluate import PROBE_WEIGHT_DECAY
from replearn.presets import Preset
from replearn.train import History, step_budget

__all__ = [
    "PROBE_WEIGHT_DECAY",
    "PretrainMethod",
    "Run",
    "StepContext",
    "adamw",
    "classification_step",
    "counted_in_steps",
]


@dataclass
class Run:
    """A finished training run: the model, the part that transfers, and what happened.

    ``encoder`` is what a downstream protocol probes (a backbone, a features module, an image
    tower); ``extra`` holds what a recipe adds (the mask ratio, the permutation set, the
    vocabulary, ...), documented by the function that returns the run.
    """

    method: str
    model: nn.Module
    encoder: nn.Module
    history: History
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def final_loss(self) -> float:
        """Mean training loss over the last 20 steps."""
        return self.history.recent_mean("loss")

    @property
    def pretext_accuracy(self) -> float:
        """Mean training accuracy of the pretext task over the last 20 steps."""
        return self.history.recent_mean("acc")


def classification_step(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor
) -> dict[str, torch.Tensor]:
    """One supervised step's loss (cross-entropy) and accuracy, in ``replearn.train.train``'s
    step convention: the supervised baselines and the Exemplar CNN's seed classes."""
    logits = model(x)  # [N, K]
    acc = (logits.detach().argmax(dim=1) == y).float().mean()
    return {"loss": F.cross_entropy(logits, y), "acc": acc}


def adamw(
    parameters: list[nn.Parameter],
    lr: float,
    weight_decay: float,
    *,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> torch.optim.AdamW:
    """AdamW without weight decay on biases, norms and scalars (tensors of fewer than 2
    dimensions), as MAE and CLIP train their transformers."""
    groups = [
        {"params": [p for p in parameters if p.ndim > 1], "weight_decay": weight_decay},
        {"params": [p for p in parameters if p.ndim <= 1], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps)


def counted_in_steps(steps: int | None) -> contextlib.AbstractContextManager:
    """The run's budget in ``steps`` optimizer steps (``replearn.train.step_budget``), so that a
    rerun repeats its numbers whatever the machine's load; ``None`` keeps the wall clock."""
    return step_budget(steps) if steps is not None else contextlib.nullcontext()


# ---- the pretraining entry point's method table -----------------------------------------------


def _no_augmentation(
    images: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    return images


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
            augmentation the step receives as ``ctx.augment``. Default: none.
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
        lambda module, cfg, images: _no_augmentation
    )
    backbone: bool = True
    batch_size: Callable[[Any], int] = lambda cfg: cfg.batch_size
