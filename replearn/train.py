"""One training loop for every method in the course.

Every assignment trains something different (a classifier, an autoencoder, a rotation
predictor, SimCLR, MoCo, an MAE), but the loop around the loss is always the same: draw a
batch, compute the loss, ``zero_grad`` / ``backward`` / clip / ``step`` / schedule, keep a
history, stop when the epochs or the wall-clock budget run out, and save a checkpoint that
a later run can resume from. This module is that loop, written once:

* ``seed_everything`` and ``pick_device``: the set-up every notebook does first;
* ``draw`` and ``init_``: the course's one rule for random draws (made where the generator
  lives, delivered on the device of the tensor they serve), so code runs unchanged on CUDA;
* ``TensorLoader``: batches of in-memory tensors whose order depends only on ``(seed, epoch)``,
  so that a resumed run sees exactly the batches the interrupted one would have seen;
* ``TrainConfig`` and ``train``: the loop (AMP on CUDA, gradient clipping, tqdm, budget,
  hooks for per-step state updates such as MoCo's momentum encoder, per-epoch monitors), as one
  process or as one of several under torchrun (``Replicas``, ``ShardedLoader``; the entry point
  ``replearn.pretrain`` adds DistributedDataParallel around the step);
* ``History``: what happened, as plain data (``as_dict`` for JSON);
* ``save_checkpoint`` / ``load_checkpoint`` / ``train_or_load``: atomic checkpoints and
  exact resume (an interrupted seeded run, resumed, ends with bit-identical weights);
* ``save_weights`` / ``load_weights``: model weights in safetensors (never pickle), for the
  artefacts students submit.

A method supplies only its ``step_fn(model, batch) -> loss`` (or a dict with a ``"loss"`` key
and other scalar metrics):

>>> import torch
>>> from torch import nn
>>> generator = seed_everything(0)
>>> x, y = torch.randn(64, 5, generator=generator), torch.randint(0, 3, (64,), generator=generator)
>>> model = nn.Linear(5, 3)
>>> def step_fn(model, batch):
...     images, labels = batch
...     return nn.functional.cross_entropy(model(images), labels)
>>> history = train(step_fn, model, torch.optim.SGD(model.parameters(), lr=0.1),
...                 TensorLoader(x, y, batch_size=16), TrainConfig(epochs=2, progress=False))
>>> history.steps_done, history.epochs_done, len(history.epochs)
(8, 2.0, 2)
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import random
import tempfile
import time
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

__all__ = [
    "BudgetClock",
    "BudgetCosine",
    "CheckpointError",
    "History",
    "Hook",
    "Replicas",
    "ShardedLoader",
    "TensorLoader",
    "TrainConfig",
    "autocast_dtype",
    "clamp_after_each_step",
    "checkpoint_dir",
    "checkpoint_dir_chosen",
    "describe_checkpoint",
    "draw",
    "draw_device",
    "init_",
    "load_checkpoint",
    "load_weights",
    "pick_device",
    "save_checkpoint",
    "save_weights",
    "atomic_write",
    "seed_everything",
    "step_budget",
    "train",
    "train_or_load",
]

CHECKPOINT_FORMAT = "replearn-checkpoint-v1"


# --------------------------------------------------------------------------------------------
# Set-up: seeds and devices
# --------------------------------------------------------------------------------------------


def seed_everything(seed: int, *, deterministic: bool = False) -> torch.Generator:
    """Seed Python's ``random``, NumPy, torch (CPU and every CUDA device); return a generator.

    The returned CPU ``torch.Generator`` is seeded with the same ``seed``: pass it as
    ``generator=`` to anything that should not depend on the global random state.
    ``deterministic=True`` also asks cuDNN and torch for deterministic kernels (slower on GPU;
    torch only warns where an operation has no deterministic version).
    """
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)  # NumPy's legacy seed is limited to 32 bits
    torch.manual_seed(seed)  # also seeds every CUDA device
    if deterministic:
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def pick_device(preference: str | torch.device | None = "auto") -> torch.device:
    """The device to train on: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``.

    A CUDA device that is asked for but missing is an error, not a silent fall-back to the CPU
    (a run planned for a GPU would otherwise take hours without saying why).

    >>> pick_device("cpu")
    device(type='cpu')
    """
    if preference is None or preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(preference)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"unknown device {preference!r}; use 'auto', 'cpu', 'cuda' or 'cuda:<index>'"
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(
                "device 'cuda' was asked for but torch sees no CUDA GPU "
                f"(torch {torch.__version__}, CUDA build {torch.version.cuda}); "
                "use device='auto' or 'cpu', or on Colab choose Runtime > Change runtime type > GPU"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise RuntimeError(
                f"device {device} was asked for but only {torch.cuda.device_count()} GPU(s) exist"
            )
    return device


# --------------------------------------------------------------------------------------------
# Random draws: one rule for every device
# --------------------------------------------------------------------------------------------


def draw_device(generator: torch.Generator | None) -> torch.device:
    """Where numbers from ``generator`` are drawn: its own device (the CPU for ``None``, which
    means torch's global CPU generator)."""
    return generator.device if generator is not None else torch.device("cpu")


def draw(
    fn: Callable[..., torch.Tensor],
    *args: Any,
    generator: torch.Generator | None = None,
    device: str | torch.device | None = None,
    **kwargs: Any,
) -> torch.Tensor:
    """``fn(*args, generator=generator, **kwargs)`` drawn where ``generator`` lives, on ``device``.

    The course's one rule for random draws: **draw on the generator's device, then move the
    numbers to the device of the tensor they serve**. The course's generators are CPU
    generators (``seed_everything`` returns one), so a seed gives the same crops, masks and
    noise on a laptop, on Colab's GPU and in the grader (which runs on a CPU): results are
    reproducible across devices, and a CPU generator is never handed to a CUDA kernel (which
    raises "Expected a 'cuda' device type for generator"). A CUDA generator also works: its
    draws stay on the GPU. The price is one small host-to-device copy per draw (the random
    numbers of a batch, not the batch). ``replearn.augment`` draws every parameter this way.

    Args:
        fn: a torch random factory taking ``generator=`` and ``device=``: ``torch.rand``,
            ``torch.randn``, ``torch.randint``, ``torch.randperm``, ``torch.normal`` (size form).
        device: where the result is used (e.g. ``x.device``); None: where it was drawn.

    >>> g = torch.Generator().manual_seed(0)
    >>> noise = draw(torch.rand, (2, 3), generator=g, device="cpu")  # [N, L]
    >>> torch.equal(noise, torch.rand((2, 3), generator=torch.Generator().manual_seed(0)))
    True
    >>> draw(torch.randperm, 4, generator=g).tolist()
    [3, 2, 0, 1]
    """
    out = fn(*args, generator=generator, device=draw_device(generator), **kwargs)
    return out if device is None else out.to(device)


@torch.no_grad()
def init_(
    fn: Callable[..., torch.Tensor],
    tensor: torch.Tensor,
    *args: Any,
    generator: torch.Generator | None = None,
    **kwargs: Any,
) -> torch.Tensor:
    """``fn(tensor, *args, generator=generator, **kwargs)`` for a ``torch.nn.init`` function,
    by :func:`draw`'s rule: the values are drawn into a copy on the generator's device and
    copied into ``tensor`` wherever it lives (a layer already on the GPU, initialised from the
    course's CPU generator, gets the values it would get on the CPU). Returns ``tensor``.

    >>> w = torch.empty(3, 4)
    >>> _ = init_(nn.init.uniform_, w, -1.0, 1.0, generator=torch.Generator().manual_seed(0))
    >>> torch.equal(w, nn.init.uniform_(torch.empty(3, 4), -1.0, 1.0,
    ...                                 generator=torch.Generator().manual_seed(0)))
    True
    """
    staged = torch.empty(tensor.shape, dtype=tensor.dtype, device=draw_device(generator))
    fn(staged, *args, generator=generator, **kwargs)
    return tensor.copy_(staged)


# --------------------------------------------------------------------------------------------
# Data: batches of in-memory tensors, reproducible per (seed, epoch)
# --------------------------------------------------------------------------------------------


def _epoch_seed(seed: int, epoch: int) -> int:
    """A 63-bit seed that depends on ``(seed, epoch)`` only, well mixed by NumPy's SeedSequence."""
    state = np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0]
    return int(state) >> 1


class TensorLoader:
    """Batches of in-memory tensors, shuffled by a generator seeded with ``(seed, epoch)``.

    Unlike a ``DataLoader`` over a global random state, the batch order of epoch ``e`` is a pure
    function of ``(seed, e)``, so a run interrupted at (epoch, step) and resumed from a
    checkpoint sees exactly the batches the uninterrupted run would have seen. No worker
    processes: the tensors are indexed directly (on the GPU when ``device`` is one), and the
    augmentation runs batched on the device in the step function (see ``replearn.augment``).

    Args:
        *tensors: one or more tensors with the same first dimension ``N`` (e.g. uint8 images
            ``[N, C, H, W]`` and int64 labels ``[N]``).
        batch_size: samples per batch.
        shuffle: draw a fresh permutation per epoch (``False``: the stored order).
        drop_last: drop the last, smaller batch (keeps batch statistics and contrastive
            negatives comparable across steps).
        seed: the shuffling seed.
        device: where batches are delivered. With ``preload`` the tensors are moved there
            once (CIFAR-10 as uint8 is 150 MB, small for a GPU); otherwise per batch.

    A batch is the single tensor when one tensor was given, else a tuple of them.
    ``len(loader)`` is the number of batches per epoch. Iterating the loader itself runs its
    current epoch from its current position and then advances the epoch; ``train`` instead
    asks for ``batches(epoch, start)`` directly.

    >>> loader = TensorLoader(torch.arange(10), batch_size=4, seed=0)
    >>> len(loader), [batch.tolist() for batch in loader] == [b.tolist() for b in loader.batches(0)]
    (2, True)
    """

    def __init__(
        self,
        *tensors: torch.Tensor,
        batch_size: int,
        shuffle: bool = True,
        drop_last: bool = True,
        seed: int = 0,
        device: str | torch.device | None = None,
        preload: bool = True,
    ) -> None:
        if not tensors:
            raise ValueError("TensorLoader needs at least one tensor, e.g. TensorLoader(x, y, ...)")
        tensors = tuple(torch.as_tensor(t) for t in tensors)
        lengths = [len(t) for t in tensors]
        if len(set(lengths)) != 1:
            raise ValueError(f"all tensors must have the same first dimension, got {lengths}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        self.num_samples = lengths[0]
        if drop_last and self.num_samples < batch_size:
            raise ValueError(
                f"batch_size={batch_size} is larger than the {self.num_samples} samples, so "
                "drop_last=True leaves no batch at all; use a smaller batch_size or drop_last=False"
            )
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.device = torch.device(device) if device is not None else None
        self.preload = preload
        if self.device is not None and preload:
            tensors = tuple(t.to(self.device) for t in tensors)
        self.tensors = tensors
        self.epoch = 0  # the epoch that iterating the loader runs next
        self.position = 0  # batches of that epoch already delivered

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)

    def permutation(self, epoch: int) -> torch.Tensor:
        """The sample order of ``epoch``: a function of ``(seed, epoch)`` only. ``[N]`` int64, CPU."""
        if not self.shuffle:
            return torch.arange(self.num_samples)
        generator = torch.Generator()
        generator.manual_seed(_epoch_seed(self.seed, epoch))
        return torch.randperm(self.num_samples, generator=generator)  # [N]

    def batches(
        self, epoch: int, start: int = 0
    ) -> Iterator[torch.Tensor | tuple[torch.Tensor, ...]]:
        """Batches ``start, start+1, ...`` of ``epoch`` (``start`` > 0 resumes mid-epoch)."""
        order = self.permutation(epoch)  # [N]
        index_cache: dict[torch.device, torch.Tensor] = {}
        for batch_index in range(start, len(self)):
            rows = order[batch_index * self.batch_size : (batch_index + 1) * self.batch_size]
            parts = []
            for tensor in self.tensors:
                if tensor.device not in index_cache:
                    index_cache[tensor.device] = rows.to(tensor.device)
                part = tensor[index_cache[tensor.device]]  # [B, ...]
                if self.device is not None and part.device != self.device:
                    part = part.to(self.device, non_blocking=True)
                parts.append(part)
            index_cache.clear()
            yield parts[0] if len(parts) == 1 else tuple(parts)

    def __iter__(self) -> Iterator[torch.Tensor | tuple[torch.Tensor, ...]]:
        for batch in self.batches(self.epoch, self.position):
            self.position += 1  # counted before the yield: a checkpoint now resumes after it
            yield batch
        self.epoch += 1
        self.position = 0

    def state_dict(self) -> dict[str, int]:
        """Where the loader stands: enough, with the seed, to deliver the same next batch."""
        return {
            "seed": self.seed,
            "epoch": self.epoch,
            "position": self.position,
            "batch_size": self.batch_size,
            "num_samples": self.num_samples,
        }

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        for key in ("batch_size", "num_samples"):
            if key in state and state[key] != getattr(self, key):
                raise ValueError(
                    f"loader state has {key}={state[key]} but this loader has "
                    f"{key}={getattr(self, key)}; resume with the same data and batch size"
                )
        self.seed = int(state["seed"])
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])


class ShardedLoader(TensorLoader):
    """Rank ``rank``'s share of each global batch of a ``TensorLoader``: the data side of training
    as one of ``world_size`` processes (torchrun).

    Every rank computes the same permutation of epoch ``e`` from ``(seed, e)``; global batch
    ``b`` is rows ``b N .. (b + 1) N - 1`` of it and rank ``r`` takes the ``r``-th block of
    ``n = N / W`` of those rows, so the ranks' shares, concatenated in rank order, are exactly
    the one-process batch. Like ``DistributedSampler`` with ``drop_last``, every rank gets the
    same number of batches and no sample twice per epoch. ``len``, the state (``batch_size`` is
    the global ``N``) and resuming are the ``TensorLoader``'s, so a run may resume on another
    number of processes.

    >>> shards = [ShardedLoader(torch.arange(8), global_batch_size=4, rank=r, world_size=2,
    ...                         shuffle=False) for r in (0, 1)]
    >>> [[b.tolist() for b in s.batches(0)] for s in shards]
    [[[0, 1], [4, 5]], [[2, 3], [6, 7]]]
    """

    def __init__(
        self,
        *tensors: torch.Tensor,
        global_batch_size: int,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        shuffle: bool = True,
        device: str | torch.device | None = None,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in 0..{world_size - 1}, got {rank}")
        if global_batch_size % world_size:
            raise ValueError(
                f"the global batch of {global_batch_size} does not split into {world_size} equal "
                f"shares; use a batch size divisible by the number of processes, e.g. "
                f"{global_batch_size - global_batch_size % world_size}"
            )
        super().__init__(
            *tensors, batch_size=global_batch_size, shuffle=shuffle, seed=seed, device=device
        )
        self.rank, self.world_size = rank, world_size
        self.local_batch_size = global_batch_size // world_size  # n

    @property
    def global_batch_size(self) -> int:
        return self.batch_size

    def batches(
        self, epoch: int, start: int = 0
    ) -> Iterator[torch.Tensor | tuple[torch.Tensor, ...]]:
        """This rank's share of batches ``start, start + 1, ...`` of ``epoch``."""
        order = self.permutation(epoch)  # [N_data]
        big, small = self.batch_size, self.local_batch_size
        for index in range(start, len(self)):
            first = index * big + self.rank * small
            rows = order[first : first + small]  # [n]
            parts = []
            for tensor in self.tensors:
                part = tensor[rows.to(tensor.device)]  # [n, ...]
                if self.device is not None and part.device != self.device:
                    part = part.to(self.device, non_blocking=True)
                parts.append(part)
            yield parts[0] if len(parts) == 1 else tuple(parts)


# --------------------------------------------------------------------------------------------
# Configuration, hooks and history
# --------------------------------------------------------------------------------------------


@dataclass
class TrainConfig:
    """How long and how to train. Training stops at whichever limit comes first.

    ``epochs``, ``budget_s`` and ``max_steps`` are totals over the whole run, resumes
    included: a run resumed with the same config does only the part that is left.
    """

    epochs: int | None = None  # passes over the loader; None: no limit from epochs
    budget_s: float | None = None  # wall-clock seconds (hooks included); see step_budget
    max_steps: int | None = None  # optimizer steps; None: no limit from steps
    grad_clip: float | None = None  # clip the global gradient L2 norm to this; None: no clipping
    amp: bool | Literal["auto"] = (
        "auto"  # autocast: CUDA bf16 on Ampere+, else fp16 + GradScaler; CPU bf16 only if True
    )
    channels_last: bool = False  # NHWC weights and activations (see train)
    log_every: int = 20  # steps between metric syncs from the GPU and progress-bar updates
    progress: bool = True  # show a tqdm progress bar
    desc: str = "train"  # progress-bar label
    stop_on_nonfinite: bool = True  # raise when the loss becomes NaN or inf
    checkpoint_path: str | None = None  # where to save checkpoints; None: no checkpoints
    checkpoint_every_s: float | None = 300.0  # seconds between checkpoints (and one at the end)
    checkpoint_every_steps: int | None = None  # steps between checkpoints
    resume: bool = True  # continue from checkpoint_path when that file exists

    def __post_init__(self) -> None:
        if self.epochs is None and self.budget_s is None and self.max_steps is None:
            raise ValueError("TrainConfig needs a limit: set epochs, budget_s or max_steps")
        for name in ("epochs", "max_steps", "checkpoint_every_steps"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise ValueError(f"{name} must be a non-negative int or None, got {value!r}")
        for name in ("budget_s", "grad_clip", "checkpoint_every_s"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive or None, got {value!r}")
        if self.amp not in (True, False, "auto"):
            raise ValueError(f"amp must be True, False or 'auto', got {self.amp!r}")
        if not isinstance(self.log_every, int) or self.log_every < 1:
            raise ValueError(f"log_every must be a positive int, got {self.log_every!r}")


# --------------------------------------------------------------------------------------------
# Budgets: wall-clock seconds, or a fixed number of steps standing in for them
# --------------------------------------------------------------------------------------------

_STEP_BUDGETS: list[int] = []  # the innermost ``step_budget`` block's steps, last


@contextlib.contextmanager
def step_budget(steps: int) -> Iterator[None]:
    """Inside the block, every wall-clock budget is spent in exactly ``steps`` optimizer steps.

    A budget in seconds is fair between methods (each gets the same compute) but not
    reproducible: a rerun on a busier machine takes fewer steps and lands elsewhere. Under
    ``step_budget(n)``, a budget of ``budget_s`` seconds given to ``train`` (``TrainConfig``),
    ``BudgetCosine`` or ``BudgetClock`` inside the block ends after ``n`` steps, and its
    seconds advance by ``budget_s / n`` per step, so the learning-rate schedule and a
    loop's rounds follow the steps. Time spent outside optimizer steps (k-means in
    DeepCluster, evaluation) costs nothing. ``replearn.compare`` counts the steps each method
    takes in its budget once, then trains every seed for exactly that many.

    >>> with step_budget(3):
    ...     clock = BudgetClock(30.0)
    ...     for _ in range(3):
    ...         clock.tick()
    >>> clock.elapsed(), clock.done()
    (30.0, True)
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"step_budget needs a positive number of steps, got {steps!r}")
    _STEP_BUDGETS.append(steps)
    try:
        yield
    finally:
        _STEP_BUDGETS.pop()


def active_step_budget() -> int | None:
    """The steps of the innermost ``step_budget`` block around this call; None: wall clock."""
    return _STEP_BUDGETS[-1] if _STEP_BUDGETS else None


class BudgetClock:
    """How much of a budget of ``budget_s`` seconds is spent.

    On the wall clock (the default) the seconds since the first reading. Inside a
    ``step_budget(n)`` block (read when the clock is made) the optimizer steps counted with
    ``tick()``, at ``budget_s / n`` seconds each. ``clock``, a function returning what is
    spent, replaces both: for a loop that keeps its own time (``replearn.pretrain`` reads rank
    0's seconds, the same on every rank) or counts in steps instead of seconds.
    """

    def __init__(self, budget_s: float, clock: Callable[[], float] | None = None):
        if not budget_s > 0:
            raise ValueError(f"budget_s must be a positive number of seconds, got {budget_s!r}")
        self.budget_s = float(budget_s)
        self.read_clock = clock
        self.steps = None if clock is not None else active_step_budget()  # None: not steps
        self.ticks, self.elapsed_before, self.started = 0, 0.0, None

    def tick(self) -> None:
        """Count one optimizer step."""
        self.ticks += 1

    def elapsed(self) -> float:
        if self.read_clock is not None:
            return float(self.read_clock())
        if self.steps is not None:
            return self.budget_s * self.ticks / self.steps
        now = time.perf_counter()
        if self.started is None:
            self.started = now
        return self.elapsed_before + now - self.started

    def done(self) -> bool:
        if self.steps is not None:
            return self.ticks >= self.steps  # exact: no rounding of seconds
        return self.elapsed() >= self.budget_s

    def state_dict(self) -> dict[str, float]:
        return {"elapsed": self.elapsed(), "ticks": self.ticks}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.elapsed_before, self.started = float(state["elapsed"]), None
        self.ticks = int(state.get("ticks", 0))


class BudgetCosine:
    """Learning rate: linear warm-up, then cosine decay to 0 at the end of a wall-clock budget.

    A step-count schedule needs the number of steps in advance, which a time budget on a shared
    machine does not give; this one reads the clock at every ``step()``, so the rate reaches 0
    when the budget does however fast the steps run. The elapsed time is saved in checkpoints.
    Inside a ``step_budget(n)`` block it is an ordinary cosine over ``n`` steps; with ``clock``
    it follows that function instead (``BudgetClock``).
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        budget_s: float,
        warmup: float = 0.05,
        clock: Callable[[], float] | None = None,
    ):
        if not 0.0 <= warmup < 1.0:
            raise ValueError(f"warmup is a fraction of the budget in [0, 1), got {warmup!r}")
        self.clock = BudgetClock(budget_s, clock=clock)
        self.optimizer, self.budget_s, self.warmup = optimizer, self.clock.budget_s, warmup
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        self._set(0.0)

    def _factor(self, fraction: float) -> float:
        if fraction < self.warmup:
            return max(fraction / self.warmup, 0.01)
        progress = min(1.0, (fraction - self.warmup) / (1.0 - self.warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    def _set(self, fraction: float) -> None:
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * self._factor(fraction)

    def elapsed(self) -> float:
        return self.clock.elapsed()

    def step(self) -> None:
        self.clock.tick()
        self._set(self.elapsed() / self.budget_s)

    def state_dict(self) -> dict[str, float]:
        return self.clock.state_dict()

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.clock.load_state_dict(state)


class Hook:
    """Things to do around the optimizer step. Subclass it, or pass functions.

    * ``before_step(model, step)``: called before each step's forward pass, with ``step`` the
      0-based index of the step about to be taken, under ``torch.no_grad()``. For per-step
      random streams (``replearn.pretrain`` seeds each step's augmentation from its index).
    * ``after_step(model, step)``: called after every optimizer (and scheduler) step, with
      ``step`` the 0-based index of the step just taken, under ``torch.no_grad()``. For state
      that is updated without gradients: MoCo's and BYOL's momentum encoders, BatchNorm
      statistics averaged over processes.
    * ``on_epoch_end(model, epoch, history) -> dict | None``: called after each full epoch;
      the scalars it returns join that epoch's record (e.g. ``{"knn": 0.47}`` from a kNN
      monitor). The model is put back in training mode afterwards.
    * ``on_start(model, history)``: called once before the first step, after a resume restored
      the history (``history.steps_done`` steps already taken).
    * ``on_log(records, history)``: called with the new per-step records each time the metrics
      come back from the device (every ``log_every`` steps, at checkpoints and epoch ends).

    A hook that has ``state_dict()`` / ``load_state_dict()`` is saved in checkpoints.

    >>> hook = Hook(after_step=lambda model, step: None)
    """

    def __init__(
        self,
        *,
        before_step: Callable[[nn.Module, int], None] | None = None,
        after_step: Callable[[nn.Module, int], None] | None = None,
        on_epoch_end: Callable[[nn.Module, int, History], Mapping[str, float] | None] | None = None,
        on_start: Callable[[nn.Module, History], None] | None = None,
        on_log: Callable[[list[dict[str, Any]], History], None] | None = None,
    ) -> None:
        for name, function in (
            ("before_step", before_step),
            ("after_step", after_step),
            ("on_epoch_end", on_epoch_end),
            ("on_start", on_start),
            ("on_log", on_log),
        ):
            if function is not None:
                setattr(self, name, function)

    def before_step(self, model: nn.Module, step: int) -> None:
        """Called before each step's forward pass (no gradients)."""

    def after_step(self, model: nn.Module, step: int) -> None:
        """Called after each optimizer step (no gradients)."""

    def on_epoch_end(
        self, model: nn.Module, epoch: int, history: History
    ) -> Mapping[str, float] | None:
        """Called after each full epoch; returns extra scalars for the epoch record."""
        return None

    def on_start(self, model: nn.Module, history: History) -> None:
        """Called once before the first step (after a resume)."""

    def on_log(self, records: list[dict[str, Any]], history: History) -> None:
        """Called with the per-step records that just came back from the device."""


def _same(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class Replicas:
    """The other processes, when ``train`` runs as one of several that hold identical replicas.

    Under torchrun every process runs ``train`` on its share of each global batch
    (``ShardedLoader``), and DistributedDataParallel averages the gradients inside the step.
    What ``train`` itself must agree on across processes comes through here;
    ``replearn.distributed.replicas(world)`` builds it, and the defaults are one process:

    * ``count``: the number of processes; a step's images are counted over all of them;
    * ``is_main``: this process writes the checkpoint and shows progress (rank 0);
    * ``share(obj)``: the main process's ``obj`` on every process (the checkpoint rank 0 read,
      so that every rank resumes from it even when other machines cannot see the file);
    * ``clock(seconds)``: this process's elapsed seconds to the run's (rank 0's, broadcast):
      the same stops, checkpoint times and budget on every process. A collective, called once
      per step by every process;
    * ``mean(values)``: the mean over the processes of the logged metrics ``[k]``.
    """

    count: int = 1
    is_main: bool = True
    share: Callable[[Any], Any] = _same
    clock: Callable[[float], float] = _same
    mean: Callable[[torch.Tensor], torch.Tensor] = _same


@dataclass
class History:
    """What a training run did, as plain data.

    ``steps`` holds one record per optimizer step (``step``, ``epoch``, ``lr``, ``time_s`` and
    every scalar the step function returned, ``loss`` first); ``epochs`` one record per full
    epoch (the mean of each metric, ``time_s``, ``images_per_s`` and the hooks' scalars).
    """

    steps: list[dict[str, float]] = field(default_factory=list)
    epochs: list[dict[str, float]] = field(default_factory=list)
    steps_done: int = 0  # optimizer steps over the whole run, resumes included
    epochs_done: float = (
        0.0  # steps_done / batches per epoch (19.8 = 19 full epochs and most of one)
    )
    images_seen: int = 0  # samples drawn from the loader (not counting views made from them)
    wall_time_s: float = 0.0  # training wall time, resumes included, hooks included
    stopped_by: str | None = None  # "epochs", "budget", "max_steps"; None while unfinished
    resumed_at_step: list[int] = field(
        default_factory=list
    )  # steps_done at each resume that trained
    device: str = ""
    amp: str | None = None  # the autocast dtype, or None without AMP

    @property
    def stopped_by_budget(self) -> bool:
        """Whether the wall-clock budget ended the run (rather than its epochs or steps)."""
        return self.stopped_by == "budget"

    @property
    def images_per_s(self) -> float:
        """Samples per second of wall time over the whole run."""
        return self.images_seen / self.wall_time_s if self.wall_time_s > 0 else 0.0

    def metric(self, name: str, per: Literal["step", "epoch"] = "step") -> list[float]:
        """One metric as a list: ``history.metric("loss")``, ``history.metric("knn", "epoch")``."""
        records = self.steps if per == "step" else self.epochs
        return [record[name] for record in records if name in record]

    def recent_mean(self, name: str = "loss", steps: int = 20) -> float:
        """The mean of a per-step metric over the last ``steps`` steps (NaN before any step):
        the "final loss" the modules' results report, smoother than the last step's."""
        values = self.metric(name)[-steps:]
        return float(sum(values) / len(values)) if values else float("nan")

    def as_dict(self) -> dict[str, Any]:
        """Plain data (lists, dicts, numbers, strings) for JSON and checkpoints."""
        data = dataclasses.asdict(self)
        data["stopped_by_budget"] = self.stopped_by_budget
        data["images_per_s"] = self.images_per_s
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> History:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in names})

    def plot(
        self, keys: Sequence[str] | None = None, *, smooth: float = 0.0, title: str | None = None
    ):
        """Loss, accuracy and learning-rate curves: ``replearn.viz.loss_curves(self, ...)``."""
        from replearn.viz import loss_curves

        return loss_curves(self, keys=keys, smooth=smooth, title=title)


# --------------------------------------------------------------------------------------------
# Checkpoints: atomic writes, every random state, clear errors
# --------------------------------------------------------------------------------------------


class CheckpointError(RuntimeError, ValueError):
    """A checkpoint file is missing, corrupt, or does not match the run that loads it (a
    ``ValueError`` too: the file is not what this run can resume from)."""


def _rng_state() -> dict[str, Any]:
    """Every global random state, as tensors and plain numbers (loadable with weights_only)."""
    version, mt_state, gauss_next = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": [version, list(mt_state), gauss_next],
        "numpy": [
            np_name,
            torch.from_numpy(np_keys.astype(np.int64)),
            np_pos,
            np_has_gauss,
            np_gauss,
        ],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, mt_state, gauss_next = state["python"]
    random.setstate((version, tuple(mt_state), gauss_next))
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
    np.random.set_state(
        (np_name, np_keys.numpy().astype(np.uint32), np_pos, np_has_gauss, np_gauss)
    )
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
        else:
            warnings.warn(
                f"checkpoint holds {len(cuda_states)} CUDA random states but "
                f"{torch.cuda.device_count()} GPUs are visible; CUDA random streams not restored",
                stacklevel=3,
            )


def save_checkpoint(path: str | os.PathLike, **state: Any) -> Path:
    """Write ``state`` to ``path`` atomically; return the path.

    The bytes go to a temporary file in the same folder, are flushed and fsync'ed, and only then
    replace ``path`` with ``os.replace``: a crash or a full disk mid-write leaves the previous
    checkpoint intact, never half a file. ``state`` should hold tensors, state dicts and plain
    data, so that ``load_checkpoint`` can read it without unpickling arbitrary objects.
    """
    state.setdefault("format", CHECKPOINT_FORMAT)
    return atomic_write(path, lambda temp_name: torch.save(state, temp_name))


def atomic_write(path: str | os.PathLike, write: Callable[[str], Any]) -> Path:
    """Create ``path`` through ``write(temp_name)`` so that no reader ever sees half a file.

    ``write`` fills a temporary file in the same folder; it is fsync'ed and only then replaces
    ``path`` (``os.replace``), and the folder is fsync'ed so that the rename survives a crash.
    On any error the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(temp_name)
        with open(temp_name, "rb+") as file:
            os.fsync(file.fileno())
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable (POSIX only)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    return path


def load_checkpoint(
    path: str | os.PathLike, *, map_location: str | torch.device = "cpu", trusted: bool = False
) -> dict[str, Any]:
    """Read a checkpoint written by ``save_checkpoint``.

    Loads with ``weights_only=True`` (tensors and plain data, no arbitrary code) unless
    ``trusted=True`` is passed for a file you wrote yourself that holds other objects.
    Raises ``CheckpointError`` naming the file when it is missing, truncated or not a checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"no checkpoint at {path}; train first (TrainConfig(checkpoint_path=...)) "
            "or check the path"
        )
    try:
        state = torch.load(path, map_location=map_location, weights_only=not trusted)
    except Exception as error:
        hint = (
            "it holds objects other than tensors and plain data; if you wrote it yourself, "
            "pass trusted=True"
            if "weights_only" in str(error) or "Unsupported global" in str(error)
            else "it is truncated or not a torch checkpoint; delete it and train again"
        )
        raise CheckpointError(
            f"cannot read checkpoint {path} ({path.stat().st_size} bytes): {hint}. "
            f"Cause: {type(error).__name__}: {str(error)[:300]}"
        ) from error
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a checkpoint dict")
    return state


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------


def _to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor in a (nested) batch to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch if batch.device == device else batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {key: _to_device(value, device) for key, value in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(value, device) for value in batch)
    return batch


def _batch_size(batch: Any) -> int:
    """The number of samples in a batch: the first dimension of its first tensor."""
    if isinstance(batch, torch.Tensor):
        return len(batch) if batch.dim() > 0 else 1
    if isinstance(batch, Mapping):
        batch = list(batch.values())
    if isinstance(batch, (list, tuple)) and batch:
        return _batch_size(batch[0])
    return 0


def _split_metrics(output: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor | float]]:
    """``step_fn``'s output as (loss, {name: scalar}), with ``loss`` first in the metrics."""
    if isinstance(output, torch.Tensor):
        loss, extras = output, {}
    elif isinstance(output, Mapping):
        if "loss" not in output:
            raise ValueError(
                f"step_fn returned a dict with keys {sorted(output)} but no 'loss'; "
                "return the loss tensor, or a dict {'loss': loss, 'other_metric': value, ...}"
            )
        loss, extras = output["loss"], {k: v for k, v in output.items() if k != "loss"}
    else:
        raise TypeError(
            f"step_fn must return a loss tensor or a dict with a 'loss' key, got {type(output).__name__}"
        )
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise ValueError(f"the loss must be a scalar tensor, got {loss!r:.80}")
    if not loss.requires_grad:
        raise ValueError(
            "the loss does not require grad: step_fn detached it, called .item(), or ran "
            "under torch.no_grad(); return the tensor that backward() should start from"
        )
    metrics: dict[str, torch.Tensor | float] = {"loss": loss.detach().float().reshape(())}
    for name, value in extras.items():
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                raise ValueError(
                    f"metric {name!r} must be a scalar, got shape {tuple(value.shape)}"
                )
            metrics[name] = value.detach().float().reshape(())
        elif isinstance(value, (int, float)):
            metrics[name] = float(value)
        else:
            raise TypeError(
                f"metric {name!r} must be a scalar tensor or number, got {type(value).__name__}"
            )
    return loss, metrics


def cpu_supports_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX): oneDNN's test."""
    return bool(
        torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    )


def autocast_dtype(device: torch.device, amp: bool | str) -> torch.dtype | None:
    """The dtype ``train`` autocasts to for ``TrainConfig.amp``, or None for float32.

    bf16 on GPUs that have it natively (Ampere, compute capability 8+), else fp16. CPU: bf16
    when asked for explicitly (``amp=True``) and the CPU has it natively, else None."""
    if device.type == "cpu":
        return torch.bfloat16 if amp is True and cpu_supports_bf16() else None
    if device.type != "cuda" or amp is False:
        return None
    major, _ = torch.cuda.get_device_capability(device)
    return torch.bfloat16 if major >= 8 else torch.float16


def _model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


class _MetricLog:
    """Per-step metrics kept on the device and turned into floats every ``log_every`` steps.

    ``.item()`` after every step would stall the GPU pipeline; one stacked transfer per
    ``log_every`` steps costs nothing.
    """

    def __init__(self) -> None:
        self.pending: list[tuple[dict[str, Any], dict[str, torch.Tensor | float]]] = []

    def add(self, record: dict[str, Any], metrics: dict[str, torch.Tensor | float]) -> None:
        self.pending.append((record, metrics))

    def flush(self, reduce: Callable[[torch.Tensor], torch.Tensor] = _same) -> list[dict[str, Any]]:
        """The pending records as floats; ``reduce`` maps the stacked tensor metrics ``[k]``
        (the mean over processes under ``Replicas``)."""
        tensors = [
            v
            for _, metrics in self.pending
            for v in metrics.values()
            if isinstance(v, torch.Tensor)
        ]
        values = iter(reduce(torch.stack(tensors)).cpu().tolist()) if tensors else iter(())
        records = []
        for record, metrics in self.pending:
            for name, value in metrics.items():
                record[name] = next(values) if isinstance(value, torch.Tensor) else value
            records.append(record)
        self.pending.clear()
        return records


def _resume_state(
    path: Path, batches_per_epoch: int | None, run: Mapping[str, Any], replicas: Replicas
) -> dict[str, Any] | None:
    """The checkpoint at ``path`` to resume from, or None when there is none.

    The main process reads and checks it and ``replicas.share`` hands it to the others (which may
    not see the file); a checkpoint of another run raises ``CheckpointError`` on every process.
    """
    state, problem = None, None
    if replicas.is_main and path.exists():
        try:
            state = load_checkpoint(path)
            if state.get("format") != CHECKPOINT_FORMAT:
                raise CheckpointError(
                    f"{path} is not a training checkpoint of this library (format "
                    f"{state.get('format')!r}); delete it or choose another checkpoint_path"
                )
            saved_run = state.get("run") or {}
            for key, value in run.items():
                if saved_run.get(key) != value:
                    raise CheckpointError(
                        f"{path} was written with {key}={saved_run.get(key)!r} but this run has "
                        f"{key}={value!r}; resume with the same settings, or use another "
                        "checkpoint (or delete it)"
                    )
            if batches_per_epoch is not None and state["batches_per_epoch"] != batches_per_epoch:
                raise CheckpointError(
                    f"{path} was written with {state['batches_per_epoch']} batches per epoch but "
                    f"this loader has {batches_per_epoch}; resume with the same data and batch "
                    "size, or use another checkpoint_path"
                )
        except CheckpointError as error:
            if replicas.count == 1:
                raise
            state, problem = None, str(error)
    if replicas.count > 1:  # the others stop with the main process's error instead of waiting
        state, problem = replicas.share((state, problem))
    if problem is not None:
        raise CheckpointError(problem)
    return state


def train(
    step_fn: Callable[[nn.Module, Any], torch.Tensor | Mapping[str, Any]],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: Iterable,
    config: TrainConfig,
    *,
    scheduler: Any | None = None,
    device: str | torch.device | None = None,
    hooks: Hook | Sequence[Hook] = (),
    replicas: Replicas | None = None,
    run: Mapping[str, Any] | None = None,
) -> History:
    """Train ``model`` with ``step_fn`` until ``config``'s epochs, budget or steps run out.

    Each step: the hooks' ``before_step``, ``loss = step_fn(model, batch)`` (under autocast
    when AMP is on), then ``zero_grad``, ``backward`` (through the GradScaler with fp16),
    gradient clipping, ``optimizer.step()``, ``scheduler.step()`` (once per step: build
    schedules in steps, or on a clock such as ``BudgetCosine``), and the hooks' ``after_step``.
    After each full epoch the hooks' ``on_epoch_end`` may add metrics (a kNN monitor). With
    ``config.checkpoint_path`` the run is checkpointed every ``checkpoint_every_s`` seconds /
    ``checkpoint_every_steps`` steps and at the end; with ``config.resume`` a run that finds its
    checkpoint continues from it, restoring the model, optimizer, scheduler, scaler, loader
    position, hooks and every random state, so that a seeded run that was interrupted and
    resumed ends with the same weights, bit for bit, as one that never stopped (on the same
    hardware; exact for a ``TensorLoader``).

    Two speed options change how, not what, is computed. ``config.amp=True`` on a CPU with
    native bfloat16 (AVX512-BF16 or AMX) autocasts to bfloat16, as on a GPU. With
    ``config.channels_last`` a convolutional model trains in NHWC layout (oneDNN's faster CPU
    kernels; tensor cores with AMP) and is handed back in the default layout; its convolution
    outputs are NHWC during training, so a step that calls ``.view`` on one must use
    ``.reshape``.

    Args:
        step_fn: ``step_fn(model, batch)`` returns the loss tensor or a dict with a ``"loss"``
            key and other scalar metrics (tensors or numbers), which the history records.
        model: moved to ``device`` when one is given; otherwise trained where it is.
        optimizer: built over the model's parameters.
        loader: a ``TensorLoader`` (exact resume) or any iterable of batches (on resume its
            first batches are skipped, which is exact only if its order is fixed).
        config: a ``TrainConfig``.
        scheduler: a learning-rate scheduler stepped after every optimizer step.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, a ``torch.device``, or None (the model's).
        hooks: a ``Hook`` or a sequence of them.
        replicas: the other processes when this is one of several (``Replicas``; with a
            ``ShardedLoader`` and a step that goes through DistributedDataParallel).
        run: what makes this run this run (method, data, seed, ...): saved in the checkpoint
            with the number of processes, and resuming a checkpoint whose values differ is a
            ``CheckpointError``.

    Returns:
        The run's ``History`` (also saved in the checkpoint).
    """
    from tqdm.auto import tqdm

    hooks = [hooks] if isinstance(hooks, Hook) else list(hooks)
    replicas = replicas or Replicas()
    run = dict(run or {})
    shared = replicas.count > 1  # the clock and the metrics come from every process
    device = pick_device(device) if device is not None else _model_device(model)
    model.to(device)
    try:
        batches_per_epoch = len(loader)
    except TypeError:
        batches_per_epoch = None
    if config.epochs is not None and batches_per_epoch is None:
        raise ValueError("config.epochs needs a loader with len(); use budget_s or max_steps")
    if batches_per_epoch == 0:
        raise ValueError(
            "the loader yields no batch per epoch; lower batch_size or drop_last=False"
        )

    amp_dtype = autocast_dtype(device, config.amp)
    if config.amp is True and amp_dtype is None:
        warnings.warn(
            f"amp=True has no effect on this {device.type} (bfloat16 on a CPU needs AVX512-BF16 "
            "or AMX); training in float32",
            stacklevel=2,
        )
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    trained_params = [p for group in optimizer.param_groups for p in group["params"]]

    history = History(
        device=str(device), amp=str(amp_dtype).removeprefix("torch.") if amp_dtype else None
    )
    epoch, position = 0, 0
    epoch_sums: dict[str, float] = {}
    epoch_count, epoch_images, epoch_time = 0, 0, 0.0

    # ---- resume -------------------------------------------------------------------------
    checkpoint_path = Path(config.checkpoint_path) if config.checkpoint_path else None
    state = None
    if checkpoint_path is not None and config.resume:
        state = _resume_state(checkpoint_path, batches_per_epoch, run, replicas)
    resumed, resumed_finished = state is not None, bool(state and state.get("finished"))
    if state is not None:
        try:
            model.load_state_dict(state["model"])
        except RuntimeError as error:
            raise CheckpointError(
                f"{checkpoint_path} does not fit this model: {error}. Delete it or use another "
                "checkpoint_path"
            ) from error
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state.get("scheduler") is not None:
            scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler") and scaler.is_enabled():
            scaler.load_state_dict(state["scaler"])
        if isinstance(loader, TensorLoader) and state.get("loader"):
            loader.load_state_dict(state["loader"])
        for hook, hook_state in zip(hooks, state.get("hooks", [])):
            if hook_state is not None and hasattr(hook, "load_state_dict"):
                hook.load_state_dict(hook_state)
        history = History.from_dict(state["history"])
        history.device = str(device)
        history.stopped_by = None
        epoch, position = state["epoch"], state["position"]
        epoch_sums = dict(state["epoch_sums"])
        epoch_count, epoch_images, epoch_time = state["epoch_progress"]
        _set_rng_state(state["rng"])

    def save() -> None:
        if checkpoint_path is None or not replicas.is_main:
            return
        save_checkpoint(
            checkpoint_path,
            model=model.state_dict(),
            optimizer=optimizer.state_dict(),
            scheduler=scheduler.state_dict() if scheduler is not None else None,
            scaler=scaler.state_dict() if scaler.is_enabled() else None,
            loader=loader.state_dict() if isinstance(loader, TensorLoader) else None,
            hooks=[h.state_dict() if hasattr(h, "state_dict") else None for h in hooks],
            rng=_rng_state(),
            epoch=epoch,
            position=position,
            batches_per_epoch=batches_per_epoch,
            epoch_sums=epoch_sums,
            epoch_progress=[epoch_count, epoch_images, epoch_time],
            history=history.as_dict(),
            finished=history.stopped_by is not None,
            config=dataclasses.asdict(config),
            run={**run, "world_size": replicas.count},
        )

    # ---- the clock and the stopping rules ---------------------------------------------------
    prior_wall = history.wall_time_s
    start = time.perf_counter()
    now = prior_wall  # the run's seconds at the last step: rank 0's with several processes

    def elapsed() -> float:
        """This process's training seconds, resumes included."""
        return prior_wall + time.perf_counter() - start

    def run_seconds() -> float:
        return now if shared else elapsed()

    budget = None  # seconds, or steps over the whole run inside a step_budget block
    if config.budget_s is not None:
        budget = BudgetClock(config.budget_s, clock=(lambda: now) if shared else None)
        budget.load_state_dict({"elapsed": prior_wall, "ticks": history.steps_done})

    def stop_reason() -> str | None:
        if config.max_steps is not None and history.steps_done >= config.max_steps:
            return "max_steps"
        if config.epochs is not None and epoch >= config.epochs:
            return "epochs"
        if budget is not None and budget.done():
            return "budget"
        return None

    total_steps = None
    if config.epochs is not None:
        total_steps = config.epochs * batches_per_epoch
    if config.max_steps is not None:
        total_steps = min(total_steps or config.max_steps, config.max_steps)
    if budget is not None and budget.steps is not None:
        total_steps = min(total_steps or budget.steps, budget.steps)
    bar = tqdm(
        total=total_steps,
        initial=history.steps_done,
        desc=config.desc,
        disable=not config.progress or not replicas.is_main,
        dynamic_ncols=True,
        leave=True,
    )
    metric_log = _MetricLog()
    last_save_time, last_save_step = run_seconds(), history.steps_done

    def flush_metrics() -> None:
        records = metric_log.flush(reduce=replicas.mean)
        for record in records:
            for name, value in record.items():
                if name in ("step", "epoch", "lr", "time_s"):
                    continue
                if config.stop_on_nonfinite and name == "loss" and not math.isfinite(value):
                    raise FloatingPointError(
                        f"the loss is {value} at step {record['step']} (epoch {record['epoch']}); "
                        "lower the learning rate, set TrainConfig.grad_clip, or check the inputs"
                    )
                epoch_sums[name] = epoch_sums.get(name, 0.0) + value
        history.steps.extend(records)
        if records:
            for hook in hooks:
                hook.on_log(records, history)
            bar.set_postfix(
                {
                    k: f"{v:.4g}"
                    for k, v in records[-1].items()
                    if k not in ("step", "epoch", "time_s")
                },
                refresh=False,
            )

    def maybe_save(force: bool = False) -> None:
        nonlocal last_save_time, last_save_step
        if checkpoint_path is None:
            return
        due_time = config.checkpoint_every_s is not None and (
            run_seconds() - last_save_time >= config.checkpoint_every_s
        )
        due_steps = config.checkpoint_every_steps is not None and (
            history.steps_done - last_save_step >= config.checkpoint_every_steps
        )
        if force or due_time or due_steps:
            flush_metrics()
            history.wall_time_s = run_seconds()
            save()
            last_save_time, last_save_step = run_seconds(), history.steps_done

    # ---- epochs and steps -----------------------------------------------------------------
    steps_at_start = history.steps_done
    model.train()
    if config.channels_last:  # parameters keep their identity: the optimizer still holds them
        model.to(memory_format=torch.channels_last)
    for hook in hooks:
        hook.on_start(model, history)
    try:
        reason = stop_reason()
        while reason is None:
            if isinstance(loader, TensorLoader):
                batches = loader.batches(epoch, position)
            else:
                batches = iter(loader)
                for _ in range(position):  # resume a generic iterable by skipping batches
                    next(batches, None)
            epoch_start = time.perf_counter()
            exhausted = True  # the loop ran to the end of the epoch
            for batch in batches:
                batch = _to_device(batch, device)
                with torch.no_grad():
                    for hook in hooks:
                        hook.before_step(model, history.steps_done)
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    loss, metrics = _split_metrics(step_fn(model, batch))
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()  # DistributedDataParallel averages gradients here
                if config.grad_clip is not None:
                    scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
                    metrics["grad_norm"] = nn.utils.clip_grad_norm_(
                        trained_params, config.grad_clip
                    )
                lr = float(optimizer.param_groups[0]["lr"])  # the rate this step used
                scaler.step(optimizer)
                scaler.update()
                now = replicas.clock(elapsed())  # before the schedule, which may read it
                if scheduler is not None:
                    scheduler.step()
                with torch.no_grad():
                    for hook in hooks:
                        hook.after_step(model, history.steps_done)
                n_images = _batch_size(batch) * replicas.count
                if shared:  # numbers too travel to the mean over the processes
                    metrics = {
                        k: v if isinstance(v, torch.Tensor) else torch.tensor(v, device=device)
                        for k, v in metrics.items()
                    }
                metric_log.add(
                    {"step": history.steps_done, "epoch": epoch, "lr": lr, "time_s": run_seconds()},
                    metrics,
                )
                history.steps_done += 1
                if budget is not None:
                    budget.tick()
                history.images_seen += n_images
                position += 1
                epoch_count += 1
                epoch_images += n_images
                if batches_per_epoch:
                    history.epochs_done = history.steps_done / batches_per_epoch
                if history.steps_done % config.log_every == 0:
                    flush_metrics()
                bar.update(1)
                reason = stop_reason()
                if reason is not None:
                    exhausted = position == batches_per_epoch
                    break
                maybe_save()
            epoch_time += time.perf_counter() - epoch_start
            if not exhausted:
                break  # stopped mid-epoch: no epoch record; the checkpoint keeps the partial sums
            if position == 0:
                raise ValueError("the loader yielded no batch this epoch; check its contents")

            # a full epoch: record it, let the hooks measure, reset the epoch accumulators
            flush_metrics()
            record = {name: total / max(epoch_count, 1) for name, total in epoch_sums.items()}
            record.update(
                epoch=epoch,
                end_step=history.steps_done,
                time_s=epoch_time,
                images_per_s=epoch_images / epoch_time if epoch_time > 0 else 0.0,
            )
            for hook in hooks:
                extra = hook.on_epoch_end(model, epoch, history)
                if extra:
                    record.update({k: float(v) for k, v in extra.items()})
            model.train()
            history.epochs.append(record)
            if batches_per_epoch is None:
                history.epochs_done = float(len(history.epochs))
            epoch, position = epoch + 1, 0
            epoch_sums, epoch_count, epoch_images, epoch_time = {}, 0, 0, 0.0
            bar.set_postfix(
                {k: f"{v:.4g}" for k, v in record.items() if k not in ("epoch", "end_step")},
                refresh=True,
            )
            reason = reason or stop_reason()
            if reason is None:
                maybe_save()
        flush_metrics()
        history.stopped_by = reason
        now = replicas.clock(elapsed())
        history.wall_time_s = now
        if resumed and history.steps_done > steps_at_start:
            history.resumed_at_step.append(steps_at_start)
        if history.steps_done > steps_at_start or not resumed_finished:
            maybe_save(force=True)
    finally:
        bar.close()
        if config.channels_last:  # the caller gets the layout it gave
            model.to(memory_format=torch.contiguous_format)
        if isinstance(loader, TensorLoader):
            loader.epoch, loader.position = epoch, position
    return history


def train_or_load(
    path: str | os.PathLike,
    build_and_train_fn: Callable[[str], Any],
    *,
    retrain: bool = False,
    verbose: bool = True,
) -> Any:
    """Reuse a finished training run's checkpoint when present; otherwise train (or resume).

    ``build_and_train_fn(checkpoint_path)`` builds the model, optimizer and loader and calls
    ``train(..., config=TrainConfig(..., checkpoint_path=checkpoint_path, resume=True))``;
    whatever it returns is returned. When the checkpoint is from a finished run, ``train``
    only restores it (no step is taken); when it is from an interrupted run (a closed Colab
    tab), training continues where it stopped; without a checkpoint it trains from scratch.
    ``retrain=True`` deletes the checkpoint first.

    Name the checkpoint after everything that changes the result (method, preset, seed), e.g.
    ``f"checkpoints/simclr-{preset.name}-seed0.pt"``: a smoke run must not reuse a full one.
    """
    path = Path(path)
    if retrain and path.exists():
        path.unlink()
    if path.exists():
        state = load_checkpoint(path)
        history = state.get("history", {})
        status = "reusing finished" if state.get("finished") else "resuming interrupted"
        message = (
            f"{status} checkpoint {path} ({history.get('steps_done', 0)} steps, "
            f"{history.get('epochs_done', 0):.1f} epochs, {history.get('wall_time_s', 0):.0f} s); "
            "pass retrain=True to train again"
        )
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        message = f"no checkpoint at {path}: training from scratch"
    if verbose:
        print(message)
    result = build_and_train_fn(str(path))
    if not path.exists():
        warnings.warn(
            f"build_and_train_fn did not write {path}: pass checkpoint_path to its TrainConfig, "
            "or the next call will train again",
            stacklevel=2,
        )
    return result


CHECKPOINT_DIR_ENV = "REPLEARN_CHECKPOINT_DIR"


def colab_drive() -> Path | None:
    """Google Drive's ``MyDrive`` when it is mounted on Colab (``drive.mount("/content/drive")``)."""
    from replearn.presets import colab_content_dir, on_colab

    drive = Path(colab_content_dir()) / "drive" / "MyDrive"
    return drive if on_colab() and drive.is_dir() else None


def checkpoint_dir_chosen() -> bool:
    """Whether the student chose where checkpoints go (``$REPLEARN_CHECKPOINT_DIR``, or Google
    Drive mounted on Colab): then the notebooks keep checkpoints in any preset."""
    return bool(os.environ.get(CHECKPOINT_DIR_ENV)) or colab_drive() is not None


def checkpoint_dir(root: str | os.PathLike | None = None) -> Path:
    """The folder where long runs keep their checkpoints, so that a notebook run again continues.

    ``$REPLEARN_CHECKPOINT_DIR`` when set; else, on Colab with Google Drive mounted
    (``from google.colab import drive; drive.mount("/content/drive")``),
    ``MyDrive/replearn-checkpoints``, which outlives the runtime; else ``checkpoints/`` in
    ``root`` (the course folder) or, without one, in the working folder.
    """
    chosen = os.environ.get(CHECKPOINT_DIR_ENV)
    if chosen:
        return Path(chosen).expanduser()
    drive = colab_drive()
    if drive is not None:
        return drive / "replearn-checkpoints"
    return Path(root if root else Path.cwd()) / "checkpoints"


def describe_checkpoint(path: str | os.PathLike) -> str:
    """What a run with this checkpoint file will do: load a finished run, continue an
    interrupted one, or train from scratch."""
    path = Path(path)
    if not path.exists():
        return f"no checkpoint at {path} yet: training from scratch"
    state = load_checkpoint(path)
    history = state.get("history", {})
    status = (
        "loading the finished run" if state.get("finished") else "continuing the interrupted run"
    )
    return (
        f"{status} of {path} ({history.get('steps_done', 0)} steps, "
        f"{history.get('epochs_done', 0):.1f} epochs, {history.get('wall_time_s', 0):.0f} s)"
    )


# --------------------------------------------------------------------------------------------
# Weights for submission artefacts: safetensors, never pickle
# --------------------------------------------------------------------------------------------


def save_weights(
    weights: nn.Module | Mapping[str, torch.Tensor],
    path: str | os.PathLike,
    *,
    max_bytes: int | None = None,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Save a module's parameters and buffers (or a state dict's tensors) as safetensors,
    atomically.

    safetensors stores raw tensors and a JSON header, so loading one runs no code (unlike a
    pickled ``torch.save``): the format a grader can accept from students. A module's tied
    weights are stored once. ``max_bytes`` refuses to write a file larger than a submission
    limit. ``replearn.submit`` exports this same function for students.
    """
    from safetensors.torch import save_file, save_model

    meta = dict(metadata) if metadata else None
    if isinstance(weights, nn.Module):
        tensors = weights.state_dict()
        what = type(weights).__name__ + " weights"
        write = lambda temp_name: save_model(weights, temp_name, metadata=meta)
    else:
        state = dict(weights)
        bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
        if bad:
            raise TypeError(f"save_weights takes tensors only; not tensors: {', '.join(bad[:5])}")
        tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
        what = "the weights"
        write = lambda temp_name: save_file(tensors, temp_name, metadata=meta)
    size = sum(t.numel() * t.element_size() for t in tensors.values())
    if max_bytes is not None and size > max_bytes:
        raise ValueError(
            f"{what} take {size} bytes ({size / 2**20:.1f} MiB), over the {max_bytes} byte "
            "limit; submit a smaller model (or the encoder only)"
        )
    return atomic_write(path, write)


def load_weights(
    module: nn.Module,
    path: str | os.PathLike,
    *,
    max_bytes: int | None = None,
    strict: bool = True,
) -> nn.Module:
    """Load a safetensors file written by ``save_weights`` into ``module``; return the module.

    Refuses files over ``max_bytes`` before reading them. Raises ``FileNotFoundError`` for a
    missing file and ``ValueError`` for a file that is not safetensors or whose tensors do not
    match the module (names and shapes are listed).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_model

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no weights file at {path}; save one with save_weights(module, path)"
        )
    size = path.stat().st_size
    if max_bytes is not None and size > max_bytes:
        raise ValueError(
            f"{path} is {size / 2**20:.1f} MiB, over the {max_bytes / 2**20:.1f} MiB limit"
        )
    device = _model_device(module)
    try:
        missing, unexpected = load_model(module, path, strict=False, device=str(device))
    except SafetensorError as error:
        raise ValueError(
            f"{path} is not a valid safetensors file ({error}); write it with save_weights"
        ) from error
    except RuntimeError as error:  # shape mismatches come from load_state_dict
        raise ValueError(f"{path} does not fit {type(module).__name__}: {error}") from error
    if strict and (missing or unexpected):
        raise ValueError(
            f"{path} does not fit {type(module).__name__}: missing {sorted(missing)[:8]}, "
            f"unexpected {sorted(unexpected)[:8]} (first 8 of each); was it saved from the "
            "same architecture?"
        )
    return module


# --------------------------------------------------------------------------------------------
# Clipping a parameter after each optimiser step
# --------------------------------------------------------------------------------------------

_CLAMPED: weakref.WeakSet[nn.Module] = weakref.WeakSet()  # modules with a clamp_() to call
_CLAMP_HOOK: list = []  # the one optimiser hook, once registered


def clamp_after_each_step(module: nn.Module) -> None:
    """Call ``module.clamp_()`` after every optimiser step that updates one of its parameters.

    open_clip clips CLIP's logit scale in its training loop, after each optimiser step; the
    course has several training loops (the notebooks', the distributed entry point's, the
    grader's probes), so one global optimiser hook does it for all of them. The module is held
    by a weak reference: the hook forgets it when it is deleted.
    """
    _CLAMPED.add(module)
    if not _CLAMP_HOOK:
        from torch.optim.optimizer import register_optimizer_step_post_hook

        _CLAMP_HOOK.append(register_optimizer_step_post_hook(_clamp_trained))


def _clamp_trained(optimizer: torch.optim.Optimizer, args, kwargs) -> None:
    trained = {id(p) for group in optimizer.param_groups for p in group["params"]}
    for module in list(_CLAMPED):
        if any(id(p) in trained for p in module.parameters()):
            module.clamp_()
