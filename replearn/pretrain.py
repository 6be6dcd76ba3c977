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

Each method is a ``PretrainMethod`` in ``METHODS``: RotNet (Assignment 3), SimCLR, MoCo, BYOL,
SimSiam (with and without the stop-gradient) and the supervised baseline (Assignment 4), MAE
(Assignment 5) and the CLIP-style model (Assignment 6: a CIFAR image tower aligned to frozen
sentence embeddings of captions; the captions are made from the class labels, so ``clip``, like
``supervised``, uses labels). Another module adds its own with ``register_method``. Shapes:
``n`` images on this rank, ``N = W n`` in the global batch, ``D`` embedding width, ``K`` queue
length (MoCo) or classes (CLIP's caption table).
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
from torch import nn

from replearn import distributed
from replearn.backbones import SmallCNN, cifar_resnet18
from replearn.data import load_dataset
from replearn.distributed import World
from replearn.presets import Preset, get_preset
from replearn.recipes import clip_zero_shot as _clip
from replearn.recipes import contrastive_learning as _contrastive
from replearn.recipes import masked_autoencoders as _mae
from replearn.recipes import pretext_tasks as _pretext
from replearn.recipes.clip_zero_shot import CaptionAlignedTower, caption_table
from replearn.recipes.common import PretrainMethod, Run, StepContext
from replearn.train import (
    BudgetCosine,
    History,
    Hook,
    ShardedLoader,
    TrainConfig,
    autocast_dtype,
    checkpoint_dir,
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
    "load_or_pretrain",
]

# --------------------------------------------------------------------------------------------
# The method table
# --------------------------------------------------------------------------------------------


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
    ),
    "resnet18": lambda cfg, channels: cifar_resnet18(channels),
}


# Every assignment's methods live in its recipe (replearn/recipes/<assignment>.py).
for _method in (
    *_pretext.PRETRAIN_METHODS,
    *_contrastive.PRETRAIN_METHODS,
    *_mae.PRETRAIN_METHODS,
    *_clip.PRETRAIN_METHODS,
):
    register_method(_method)


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
    """``cfg`` with fields changed from strings (``{"queue_size": "1024"}``), typed as they are:
    what ``--set key=value`` does to a method's settings.

    >>> from replearn.recipes.contrastive_learning import ContrastiveConfig
    >>> from replearn.presets import get_preset
    >>> cfg = ContrastiveConfig.from_preset(get_preset("smoke"))
    >>> changed = apply_overrides(cfg, {"queue_size": "1024", "widths": "8,16", "knn_every": "0"})
    >>> changed.queue_size, changed.widths, changed.knn_every
    (1024, (8, 16), 0)
    """
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


@dataclass(kw_only=True)
class PretrainOutcome(Run):
    """A finished entry-point run: a :class:`~replearn.recipes.Run` (``method``, ``model``,
    ``encoder``, ``history``) and what the engine adds. On every rank; ``metrics`` and
    ``files`` only from rank 0."""

    world: World
    cfg: Any
    checkpoint_path: Path | None
    digest: str  # sha256 of the whole model's state, equal on every rank
    metrics: dict[str, float] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)


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
    notebook can call it too (:func:`load_or_pretrain` is that call with a notebook's settings)::

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
        data_name,
        train_per_class=per_class,
        test_per_class=preset.test_per_class,
        seed=settings.seed,
    )
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
        raise ValueError(
            f"unknown backbone {settings.backbone!r}; choose one of {sorted(BACKBONES)}"
        )
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
        method=method.name,
        model=model,
        encoder=model.encoder,
        history=history,
        world=world,
        cfg=cfg,
        checkpoint_path=checkpoint_path,
        digest=digest,
    )
    if world.is_main:
        if settings.evaluate and method.evaluate is not None:
            outcome.metrics = {
                k: float(v) for k, v in method.evaluate(module, model.encoder, data, cfg).items()
            }
            _say(
                world,
                settings,
                "evaluation: " + ", ".join(f"{k} {v:.4f}" for k, v in outcome.metrics.items()),
            )
        if settings.out_dir:
            outcome.files = _write_outputs(Path(settings.out_dir), run_name, outcome, settings)
            _say(world, settings, "wrote " + ", ".join(outcome.files.values()))
    return outcome


def load_or_pretrain(
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
    settings = PretrainSettings(
        method,
        preset=preset.name,
        seed=seed,
        device=str(device),
        out_dir=str(root / "runs" / "pretrain"),
        evaluate=False,
        verbose=verbose,
        **changes,
    )
    run_name = settings.run_name(preset, settings.data or preset.dataset)
    settings.checkpoint = str(checkpoint_dir(root) / "pretrain" / f"{run_name}.pt")
    if verbose:
        finished = Path(settings.checkpoint).exists()
        print(
            f"[load_or_pretrain] {run_name}: {'loading or resuming' if finished else 'training'} "
            f"{settings.checkpoint}. On several GPUs, run it first from {root}:\n"
            f"  torchrun --nproc_per_node N -m replearn.pretrain --method {method} --preset "
            f"{preset.name} --seed {seed}"
            + (f" --data {settings.data}" if settings.data else "")
            + (
                ""
                if checkpoint_dir(root) == root / "checkpoints"
                else f" --checkpoint {settings.checkpoint}"
            ),
            flush=True,
        )
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
    add(
        "--impl",
        choices=("solution", "starter"),
        help="whose module; default $REPLEARN_IMPL or solution",
    )
    add("--seed", type=int, default=0)
    add("--device", default="auto", help="auto, cpu or cuda (each process takes GPU LOCAL_RANK)")
    add("--backbone", default="smallcnn", choices=sorted(BACKBONES))
    add("--batch-size", type=int, help="the GLOBAL batch, split over the processes")
    add(
        "--budget-s", type=float, help="wall-clock seconds (0: no time limit); default the config's"
    )
    add("--epochs", type=int, help="default: the config's max_epochs")
    add("--max-steps", type=int)
    add(
        "--train-per-class",
        type=int,
        help="training images per class (0: all); default the preset's",
    )
    add("--sync-bn", action="store_true", help="SyncBatchNorm across processes (GPUs only)")
    add("--amp", action=argparse.BooleanOptionalAction, default=None, help="autocast on CUDA")
    add(
        "--checkpoint",
        default="auto",
        help="path, 'auto' (checkpoints/pretrain/<run>.pt) or 'none'",
    )
    add("--restart", action="store_true", help="ignore an existing checkpoint and start over")
    add("--checkpoint-every-s", type=float, default=300.0)
    add("--checkpoint-every-steps", type=int)
    add("--out-dir", default="runs/pretrain", help="encoder weights and summary; 'none': off")
    add(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="change a config field, e.g. --set queue_size=8192 (repeatable)",
    )
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
