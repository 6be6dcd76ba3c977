"""Assignment 1's experiments: pretrained networks as named stages, the settings per preset, the
decision table (linear probe, fine-tune a few layers, fine-tune many) and the stage-wise probe.

Functions that run one of the student's parts take the student's module ``tl`` first (the
module's ``linear_probe_accuracy``, ``replace_head``, ``two_stage_finetune``, ``accuracy``).
Fine-tuning runs on cached outputs of the frozen layers: the lecture's "freeze lower layers to
save computation", taken literally.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType

import torch
import torch.nn as nn

from replearn.data import as_float_images

__all__ = [
    "RandomView",
    "TransferConfig",
    "as_stages",
    "class_budget_indices",
    "decision_table",
    "finetune_from_cache",
    "finetune_stages",
    "predict_model",
    "split_at",
    "stage_probe",
]


@dataclass(frozen=True)
class TransferConfig:
    """The experiment settings of the notebook and the benchmark, per preset."""

    size: int  # input resolution fed to the pretrained network
    budgets: tuple[int, int]  # labelled images per class: "very little" and "quite a lot"
    test_per_class: int  # test images per class
    few_stage: str  # fine-tune "a few layers": everything after this stage
    many_stage: str | None  # fine-tune "a larger number of layers" after it; None: skip
    probe_stages: tuple[str, ...]  # earlier stages for the stage-wise linear probe
    epochs: tuple[int, int]  # fine-tuning epochs at the two budgets
    finetune_all: bool  # also fine-tune every layer from the images (needs a GPU)
    lr: float = 0.01
    batch_size: int = 64
    probe_steps: int = 300  # gradient steps of every hand-written linear probe
    compare: tuple[str, ...] = ("efficientnet_lite0", "efficientnet_lite2")

    @staticmethod
    def from_preset(preset) -> TransferConfig:
        # EfficientNet-Lite stage names (see as_stages). "A few layers": the 1x1 head convolution
        # and the classifier; "many": also the last two inverted-residual blocks (deeper
        # fine-tuning is slow on a CPU, where depthwise convolutions backpropagate slowly).
        stages = dict(few_stage="blocks_15", many_stage="blocks_13")
        probes = ("blocks_2", "blocks_4", "blocks_7", "blocks_10")
        if preset.name == "smoke":
            return TransferConfig(
                32,
                (2, 5),
                5,
                **stages,
                probe_stages=probes,
                epochs=(1, 1),
                finetune_all=False,
                probe_steps=40,
                compare=("efficientnet_lite0",),
            )
        if preset.name == "cpu-quick":
            # the choices measured in benchmarks/README.md, "Assignment 1"
            return TransferConfig(
                preset.pretrained_size,
                (10, 100),
                50,
                **stages,
                probe_stages=probes,
                epochs=(10, 6),
                finetune_all=False,
                lr=0.03,
                probe_steps=100,
            )
        return TransferConfig(
            preset.pretrained_size,
            (10, 500),
            100,
            **stages,
            probe_stages=probes,
            epochs=(15, 5),
            finetune_all=True,
            compare=("efficientnet_lite0", "efficientnet_lite2", "resnet18", "resnet50"),
        )


def finetune_stages(cfg: TransferConfig) -> list[str]:
    """The stages whose (spatial) outputs fine-tuning starts from: few, and many if run."""
    return [stage for stage in (cfg.few_stage, cfg.many_stage) if stage is not None]


def as_stages(net) -> nn.Sequential:
    """A :class:`replearn.backbones.PretrainedNet` as ``nn.Sequential`` of named stages + ``fc``.

    The children keep the network's own names with dots as underscores (EfficientNet-Lite:
    ``stem, blocks_0 .. blocks_15, head, pool, flatten, fc``; ResNet: ``conv1, bn1, relu,
    maxpool, layer1 .. layer4, avgpool, flatten, fc``), so ``freeze_up_to(m, "blocks_10")``
    and ``extract_features(..., stages=["layer3"])`` read like the architecture. ``fc`` is the
    ImageNet classifier; it shares its parameters with ``net``.
    """
    names = {id(module): name for name, module in net.model.named_modules()}
    children = OrderedDict()
    for index, module in enumerate(net.features.children()):
        name = names.get(id(module)) or {nn.Flatten: "flatten"}.get(type(module), "pool")
        name = name.replace(".", "_") or f"stage{index}"
        children[name] = module
    children["fc"] = net.classifier
    return nn.Sequential(children)


def split_at(model: nn.Sequential, stage_name: str) -> tuple[nn.Sequential, nn.Sequential]:
    """``(trunk, top)``: the stages up to and including ``stage_name``, and the rest.

    When the trunk is frozen and in eval mode its output is a fixed function of the image, so it
    can be computed once (``extract_features`` with ``keep_spatial``) and only the top trained
    on it.
    """
    names = list(model._modules)
    if stage_name not in names:
        raise ValueError(f"no stage {stage_name!r}; stages are {names}")
    cut = names.index(stage_name) + 1
    return model[:cut], model[cut:]


def class_budget_indices(labels: torch.Tensor, per_class: int) -> torch.Tensor:
    """Indices ``[K * per_class]`` of the first ``per_class`` images of every class.

    Budgets are nested (the 10 images per class are among the 100), so one feature extraction
    serves every budget.
    """
    chosen = []
    for cls in labels.unique().tolist():
        where = (labels == cls).nonzero().flatten()  # [n_c]
        if len(where) < per_class:
            raise ValueError(f"class {cls} has {len(where)} images, fewer than {per_class}")
        chosen.append(where[:per_class])
    return torch.cat(chosen).sort().values  # [K * per_class]


@torch.no_grad()
def predict_model(model: nn.Module, inputs: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """``model(inputs).argmax(1)`` ``[N]`` in eval mode, in batches (inputs: images
    ``[N, C, H, W]``, uint8 or float, or cached activations of frozen layers, ``[N, C, H, W]``
    or ``[N, D]``)."""
    if inputs.ndim not in (2, 4):
        raise ValueError(
            "inputs must be images or activations [N, C, H, W], or features [N, D]; got shape "
            f"{tuple(inputs.shape)}"
        )
    model.eval()
    device = next(model.parameters()).device
    preds = []
    for start in range(0, inputs.shape[0], batch_size):
        batch = inputs[start : start + batch_size].to(device)  # [n, ...]
        if batch.dtype == torch.uint8:
            batch = as_float_images(batch)  # [n, C, H, W]
        preds.append(model(batch).argmax(dim=1).cpu())  # [n]
    return torch.cat(preds)  # [N]


class RandomView:
    """Cached augmentation: the inputs hold ``views`` versions of each sample side by side.

    A frozen trunk cannot augment its cached output: a feature map of an image is not the
    mirror image of the feature map of its mirror image. So the trunk runs once per view (for
    example the image and its horizontal flip) and the views are concatenated along channels,
    ``[N, V * C, H, W]``; on every call this transform keeps one view per sample, drawn from
    ``generator``, ``[n, C, H, W]``. Passed as ``transform`` to ``two_stage_finetune``, every
    epoch sees a different mix: flip augmentation at the cost of one more pass of the trunk.
    """

    def __init__(self, views: int, generator: torch.Generator | None = None):
        if views < 1:
            raise ValueError(f"views must be at least 1, got {views}")
        self.views, self.generator = views, generator

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        num, stacked = batch.shape[:2]
        if stacked % self.views:
            raise ValueError(f"{stacked} channels do not split into {self.views} equal views")
        grouped = batch.reshape(num, self.views, -1, *batch.shape[2:])  # [n, V, C, ...]
        pick = torch.randint(0, self.views, (num,), generator=self.generator)  # [n]
        return grouped[torch.arange(num), pick.to(batch.device)]  # [n, C, ...]


def finetune_from_cache(
    tl: ModuleType,
    model: nn.Sequential,
    stage: str,
    train_inputs: torch.Tensor,
    train_labels: torch.Tensor,
    test_inputs: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    num_classes: int,
    epochs: int,
    lr: float = 0.01,
    batch_size: int = 64,
    seed: int = 0,
    probe_steps: int = 300,
    flipped_inputs: torch.Tensor | None = None,
) -> float:
    """Fine-tune the layers after ``stage`` on cached ``stage`` outputs; return test accuracy.

    The layers up to ``stage`` stay frozen with BatchNorm in "test" mode, so their output is a
    fixed function of the image and ``tl.extract_features(..., keep_spatial=[stage])`` computed
    it once. The module's ``two_stage_finetune``: head first, then everything above ``stage`` at
    the lower rate. ``flipped_inputs``: the same cache for the horizontally flipped images; when
    given, each step trains on the image or its flip, at random (:class:`RandomView`).
    """
    _, top = split_at(copy.deepcopy(model), stage)
    generator = torch.Generator().manual_seed(seed)
    tl.replace_head(top, num_classes, "fc", generator=generator)
    for param in top.parameters():
        param.requires_grad_(True)
    transform = None
    if flipped_inputs is not None:
        if flipped_inputs.shape != train_inputs.shape:
            raise ValueError(
                f"flipped_inputs {tuple(flipped_inputs.shape)} must match train_inputs "
                f"{tuple(train_inputs.shape)}: the same images, flipped, through the same layers"
            )
        train_inputs = torch.cat([train_inputs, flipped_inputs], dim=1)  # [N, 2C, H, W]
        transform = RandomView(2, generator)
    tl.two_stage_finetune(
        top,
        train_inputs,
        train_labels,
        lr=lr,
        epochs=epochs,
        batch_size=batch_size,
        probe_steps=probe_steps,
        transform=transform,
        generator=generator,
    )
    return tl.accuracy(predict_model(top, test_inputs), test_labels)


def decision_table(
    tl: ModuleType,
    model: nn.Sequential,
    train: dict[str, torch.Tensor],
    y_train: torch.Tensor,
    test: dict[str, torch.Tensor],
    y_test: torch.Tensor,
    cfg: TransferConfig,
    *,
    seed: int = 0,
    flipped: dict[str, torch.Tensor] | None = None,
) -> dict[int, dict[str, float]]:
    """Linear probe, fine-tune a few layers, fine-tune many layers, at both label budgets.

    ``train``/``test`` come from one ``tl.extract_features`` pass with ``stages`` including
    ``cfg.few_stage`` and ``cfg.many_stage`` (kept spatial). Returns
    ``{budget: {"linear probe": acc, "fine-tune few": acc, "fine-tune many": acc}}``, without
    "fine-tune many" where ``cfg.many_stage`` is None.
    ``flipped``: the same stages for the horizontally flipped training images, for flip
    augmentation during fine-tuning (leave it out where a flip changes the class, e.g. digits).
    """
    num_classes = int(y_train.max()) + 1
    table = {}
    for budget, epochs in zip(cfg.budgets, cfg.epochs):
        idx = class_budget_indices(y_train, budget)  # [K * budget]
        probe = tl.linear_probe_accuracy(
            train["output"][idx], y_train[idx], test["output"], y_test, steps=cfg.probe_steps
        )
        row = {"linear probe": probe}
        for label, stage in (("fine-tune few", cfg.few_stage), ("fine-tune many", cfg.many_stage)):
            if stage is None:
                continue
            row[label] = finetune_from_cache(
                tl,
                model,
                stage,
                train[stage][idx],
                y_train[idx],
                test[stage],
                y_test,
                num_classes=num_classes,
                epochs=epochs,
                lr=cfg.lr,
                batch_size=cfg.batch_size,
                seed=seed,
                probe_steps=cfg.probe_steps,
                flipped_inputs=None if flipped is None else flipped[stage][idx],
            )
        table[budget] = row
    return table


def stage_probe(
    tl: ModuleType,
    train: dict[str, torch.Tensor],
    y_train: torch.Tensor,
    test: dict[str, torch.Tensor],
    y_test: torch.Tensor,
    stages: Sequence[str],
    per_class: int,
    steps: int = 300,
) -> dict[str, float]:
    """Linear-probe accuracy of the pooled features of every stage (and ``"output"``)."""
    idx = class_budget_indices(y_train, per_class)
    result = {}
    for stage in [*stages, "output"]:
        a, b = train[stage], test[stage]
        if a.ndim > 2:  # a stage kept spatial for fine-tuning: pool it here
            a, b = a.mean(dim=(2, 3)), b.mean(dim=(2, 3))  # [N, C]
        result[stage] = tl.linear_probe_accuracy(a[idx], y_train[idx], b, y_test, steps=steps)
    return result
