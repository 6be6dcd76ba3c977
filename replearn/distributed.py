"""Several processes, one model: torchrun's environment, gathers with gradients, global losses.

Pretraining runs as one process by default. Under ``torchrun --nproc_per_node N`` (one or many
machines) every process runs the same script on its own GPU (or CPU), PyTorch's
``DistributedDataParallel`` averages the gradients, and this module supplies the rest:

* ``init_distributed`` reads torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
  ``MASTER_ADDR``, ``MASTER_PORT``) and starts the process group (NCCL on GPUs, gloo on CPUs);
  without torchrun it returns a one-process ``World`` and starts nothing;
* ``gather_with_grad``: every process's rows, concatenated in rank order, with the gradient
  flowing back to the process that owns each row (``torch.distributed.nn.functional``);
* ``on_global_batch(loss, rows, *args)``: an assignment's own loss (SimCLR's NT-Xent, CLIP's
  symmetric InfoNCE) on the **global** batch, its rows gathered from every process;
* ``sync_batchnorm_stats``, ``state_digest`` / ``check_replicas``: keep (and prove) every
  replica's BatchNorm statistics, momentum networks and queues identical;
* what ``replearn.train.train`` needs to run as one of the processes: ``wrap_ddp`` (the part
  that gets gradients, in DistributedDataParallel), ``SharedClock`` (rank 0's seconds on every
  rank), ``replicas(world, clock)`` (``train``'s view of the others) and ``batchnorm_hook``.

Under DDP (which averages gradients over the ``W`` processes), training on ``W`` shards of ``n``
images gives the loss and the gradients of one process on the global batch of ``N = W n`` images
(up to float rounding and BatchNorm, which normalises per process unless SyncBatchNorm is on).

Shapes: ``n`` rows on this process, ``N = W n`` over all ``W`` processes (every process must hold
the same ``n``: ``all_gather`` needs equal shapes), ``D`` the embedding width.

>>> world = init_distributed("cpu")  # not launched by torchrun: one process, no group
>>> world.rank, world.world_size, world.distributed
(0, 1, False)
>>> z = torch.randn(4, 8)
>>> gather_with_grad(z) is z  # one process: nothing to gather
True
"""

from __future__ import annotations

import datetime
import gc
import hashlib
import inspect
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from replearn.train import Hook, Replicas, pick_device

__all__ = [
    "SharedClock",
    "World",
    "all_reduce_mean",
    "broadcast_object",
    "check_replicas",
    "gather_no_grad",
    "gather_with_grad",
    "get_rank",
    "get_world_size",
    "init_distributed",
    "batchnorm_hook",
    "is_main_process",
    "launched_by_torchrun",
    "on_global_batch",
    "replicas",
    "shutdown_distributed",
    "state_digest",
    "sync_batchnorm_stats",
    "wrap_ddp",
]

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


# --------------------------------------------------------------------------------------------
# The process group
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class World:
    """Where this process stands: its rank among ``world_size`` processes and its device.

    ``backend`` is None for a plain single process (no process group); ``"nccl"`` or
    ``"gloo"`` when ``init_distributed`` started one.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0  # the rank among the processes of this machine (picks the GPU)
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    @property
    def distributed(self) -> bool:
        """Whether a process group is running (torchrun launched this process)."""
        return self.backend is not None

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs, writes checkpoints and evaluates."""
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """Whether torchrun (``python -m torch.distributed.run``) started this process."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def _env_int(name: str) -> int:
    value = os.environ.get(name)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise RuntimeError(
            f"environment variable {name}={value!r} is not an integer; launch with torchrun "
            "(python -m torch.distributed.run --nproc_per_node N ...), which sets "
            f"{', '.join(TORCHRUN_VARIABLES)}"
        ) from None


def init_distributed(
    device: str | torch.device | None = "auto",
    backend: str | None = None,
    timeout_s: float = 1800.0,
) -> World:
    """Join the process group torchrun set up, or describe the single process we are.

    Without torchrun's variables nothing is started and ``World(device=<device>)`` comes back,
    so the same script runs as one process. Under torchrun each process takes GPU
    ``LOCAL_RANK`` when ``device`` is ``"auto"`` / ``"cuda"`` and CUDA is present (backend
    NCCL), or the CPU (backend gloo). Calling it again returns the running group's ``World``.

    Args:
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` (this process's GPU is ``cuda:LOCAL_RANK``).
        backend: ``"nccl"`` / ``"gloo"``; default from the device.
        timeout_s: how long a collective waits for a missing process before failing.
    """
    wanted = pick_device(device)
    if not launched_by_torchrun():
        return World(device=wanted)
    rank, world_size, local_rank = (
        _env_int("RANK"),
        _env_int("WORLD_SIZE"),
        _env_int("LOCAL_RANK"),
    )
    if wanted.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(
                f"LOCAL_RANK={local_rank} but this machine has {torch.cuda.device_count()} "
                "GPU(s); start at most that many processes per node (--nproc_per_node)"
            )
        wanted = torch.device("cuda", local_rank)
        torch.cuda.set_device(wanted)
    backend = backend or ("nccl" if wanted.type == "cuda" else "gloo")
    if not dist.is_initialized():
        dist.init_process_group(
            backend=backend,
            init_method="env://",
            timeout=datetime.timedelta(seconds=timeout_s),
        )
    if dist.get_rank() != rank or dist.get_world_size() != world_size:
        raise RuntimeError(
            f"the running process group has rank {dist.get_rank()} of {dist.get_world_size()}, "
            f"but the environment says {rank} of {world_size}"
        )
    return World(rank, world_size, local_rank, wanted, dist.get_backend())


def shutdown_distributed(wait_for_peers: bool = True) -> None:
    """Leave the process group once every rank is done with it (a no-op for a single process).

    Rank 0 still evaluates and saves after the other ranks finish training, so each rank first
    frees what still holds the group (DDP's reducer sits in reference cycles), then waits at a
    barrier: no rank tears its connections down while a peer may still use them. After an
    error pass ``wait_for_peers=False``: the peers are blocked elsewhere and would never arrive.
    """
    global _CONTROL_GROUP
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        if wait_for_peers and dist.get_world_size() > 1:
            dist.barrier(group=_control_group())  # gloo, whatever the main backend
        dist.destroy_process_group()
    _CONTROL_GROUP = None


def _running() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    """The number of processes ``W`` (1 without a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main_process() -> bool:
    return get_rank() == 0


_CONTROL_GROUP: Any = None


def _control_group():
    """A gloo group for small CPU-side messages (the shared clock), whatever the main backend.

    With NCCL, a CPU number would have to travel through the GPU and stall its queue of work
    every step; a gloo group carries it on the CPU instead.
    """
    global _CONTROL_GROUP
    if dist.get_backend() == "gloo":
        return None  # the default group is already CPU-side
    if _CONTROL_GROUP is None:
        _CONTROL_GROUP = dist.new_group(backend="gloo")
    return _CONTROL_GROUP


def broadcast_cpu_scalars(values: list[float], src: int = 0) -> list[float]:
    """``values`` as rank ``src`` has them, on every rank (float64, CPU-side, no GPU sync)."""
    if not _running():
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64)  # [k]
    dist.broadcast(tensor, src=src, group=_control_group())
    return tensor.tolist()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s Python object on every rank (pickled: use for our own state only)."""
    if not _running():
        return obj
    holder = [obj if get_rank() == src else None]
    dist.broadcast_object_list(holder, src=src)
    return holder[0]


# --------------------------------------------------------------------------------------------
# Gathers and reductions
# --------------------------------------------------------------------------------------------


def _check_rows(x: torch.Tensor, who: str) -> None:
    if x.ndim < 1 or x.shape[0] < 1:
        raise ValueError(f"{who} needs a tensor with at least one row, got shape {tuple(x.shape)}")


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Every process's ``x`` concatenated in rank order, differentiable: ``[n, ...] -> [N, ...]``.

    ``torch.distributed.nn.functional.all_gather`` is autograd-aware: in the backward pass the
    gradient of each gathered block is summed over the processes and returned to the process
    that owns the block (reduce-scatter on NCCL, an all-to-all on gloo). A plain
    ``dist.all_gather`` would cut the graph, so that no process learns from its rows' role as
    another process's negatives. Every process must pass the same shape.
    """
    _check_rows(x, "gather_with_grad")
    if not _running():
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x), dim=0)  # [N, ...] = W blocks of [n, ...]


@torch.no_grad()
def gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """Every process's ``x`` concatenated in rank order, without gradient (MoCo's keys)."""
    _check_rows(x, "gather_no_grad")
    if not _running():
        return x.detach()
    blocks = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(blocks, x.detach().contiguous())
    return torch.cat(blocks, dim=0)  # [N, ...]


@torch.no_grad()
def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    """The mean of ``x`` over the processes, in place (and returned). For logging."""
    if _running():
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
        x.div_(dist.get_world_size())
    return x


@torch.no_grad()
def sync_batchnorm_stats(module: nn.Module) -> None:
    """Average the running mean and variance of every BatchNorm layer over the processes.

    Each process's BatchNorm updates its running statistics from its own shard (and so does a
    momentum network's, which MoCo and BYOL run in training mode), so the replicas drift apart.
    Averaging them after every step keeps every replica identical (the mean of the shards'
    means is the global batch's mean; the mean of their variances leaves out the spread between
    the shards' means, a small bias SyncBatchNorm avoids). ``num_batches_tracked`` counts the
    same steps everywhere and is left alone. Other buffers (MoCo's queue) are not touched.
    """
    if not _running():
        return
    statistics = [
        buffer
        for layer in module.modules()
        if isinstance(layer, nn.modules.batchnorm._NormBase) and layer.track_running_stats
        for buffer in (layer.running_mean, layer.running_var)
        if buffer is not None
    ]
    if not statistics:
        return
    flat = torch.cat([b.reshape(-1).float() for b in statistics])  # [sum of sizes]
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat.div_(dist.get_world_size())
    offset = 0
    for buffer in statistics:
        count = buffer.numel()
        buffer.copy_(flat[offset : offset + count].view_as(buffer))
        offset += count


def _tensor_digest(name: str, tensor: torch.Tensor) -> str:
    data = tensor.detach().cpu().contiguous()
    digest = hashlib.sha256(f"{name}:{tuple(data.shape)}:{data.dtype};".encode())
    digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def state_digest(module: nn.Module) -> str:
    """A sha256 of every parameter and buffer (names, shapes, dtypes and exact bytes)."""
    parts = sorted(f"{n}={_tensor_digest(n, t)}" for n, t in module.state_dict().items())
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def check_replicas(module: nn.Module, what: str = "model") -> str:
    """Raise unless every process holds bit-identical parameters and buffers; return the digest.

    Parameters are kept equal by DDP, momentum networks by identical updates, BatchNorm
    statistics by ``sync_batchnorm_stats``, MoCo's queue by enqueueing the same gathered keys;
    a mismatch means a bug (a rank-dependent update) that would otherwise silently waste the
    run. The error names the tensors that differ.
    """
    digests = {name: _tensor_digest(name, t) for name, t in module.state_dict().items()}
    combined = state_digest(module)
    if not _running():
        return combined
    everyone: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, digests)
    differing = sorted(name for name in digests if len({d.get(name) for d in everyone}) != 1)
    if differing or any(set(d) != set(digests) for d in everyone):
        raise RuntimeError(
            f"the {what} differs across processes: {', '.join(differing[:8]) or 'tensor names'}"
            + (f" and {len(differing) - 8} more" if len(differing) > 8 else "")
        )
    return combined


# --------------------------------------------------------------------------------------------
# What the training loop needs to run as one of several processes
# --------------------------------------------------------------------------------------------


class SharedClock:
    """Rank 0's elapsed seconds, the same on every rank: ``clock(seconds)`` broadcasts rank 0's
    reading and keeps it in ``seconds`` for whatever else follows the run's time (the
    learning-rate schedule, ``BudgetCosine(..., clock=lambda: clock.seconds)``).

    A collective: every rank calls it once per step (``train`` does). Broadcast over a gloo
    group, so that an NCCL queue never waits on it; with one process it returns its argument.
    """

    def __init__(self) -> None:
        self.seconds = 0.0

    def __call__(self, seconds: float) -> float:
        self.seconds = broadcast_cpu_scalars([seconds])[0]
        return self.seconds


def replicas(world: World, clock: SharedClock | None = None) -> Replicas:
    """What ``replearn.train.train`` needs to know of the other processes of ``world``: their
    number, whether this is rank 0 (checkpoints, progress), rank 0's checkpoint on every rank,
    the shared clock, and the mean of the logged metrics over the ranks."""
    return Replicas(
        count=world.world_size,
        is_main=world.is_main,
        share=broadcast_object,
        clock=clock or SharedClock(),
        mean=all_reduce_mean,
    )


def wrap_ddp(trained: nn.Module, world: World) -> nn.Module:
    """``trained`` in DistributedDataParallel under several processes (as is with one): the
    forward the step must call, so that DDP sees it and averages the gradients in backward.

    BatchNorm buffers are not broadcast from rank 0 in every forward pass: ``batchnorm_hook``
    averages the statistics after each step instead (newer torch calls the keyword
    ``forward_sync_buffers``).
    """
    if not (world.distributed and world.world_size > 1):
        return trained
    from torch.nn.parallel import DistributedDataParallel

    no_buffer_broadcast = (
        {"forward_sync_buffers": False}
        if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
        else {"broadcast_buffers": False}
    )
    return DistributedDataParallel(
        trained,
        device_ids=[world.device.index] if world.device.type == "cuda" else None,
        **no_buffer_broadcast,
    )


def batchnorm_hook() -> Hook:
    """A ``train`` hook that averages every BatchNorm's running statistics over the processes
    after each step (``sync_batchnorm_stats``: online and momentum networks alike)."""
    return Hook(after_step=lambda model, step: sync_batchnorm_stats(model))


# --------------------------------------------------------------------------------------------
# Losses over the global batch
# --------------------------------------------------------------------------------------------


def on_global_batch(
    loss: Callable[..., torch.Tensor], rows: Sequence[torch.Tensor], *args: Any
) -> torch.Tensor:
    """``loss`` of the global batch: each of ``rows`` gathered from every process, with gradients.

    A contrastive loss needs the negatives of every process: SimCLR trains with batches up to
    8192 split over many devices (Chen et al. 2020, arXiv:2002.05709, Sec. 2.2) and CLIP with
    32,768 (Radford et al. 2021, arXiv:2103.00020, Sec. 2.5). Here every process gathers the
    ``[n, ...]`` tensors of ``rows`` into ``[N, ...]`` (rank order, so row ``i`` of one tensor
    still pairs with row ``i`` of the other) and calls the assignment's own loss on them:
    ``loss(*gathered, *args)``, for example the student's ``nt_xent_loss(z1, z2, temperature)``
    or ``clip_loss(image_features, text_features, logit_scale)``. The course library thus holds
    no second implementation of a graded loss.

    Every process computes the same global loss. In backward, ``gather_with_grad`` sums each
    block's gradient over the processes, so a process's rows get ``W`` times the one-process
    gradient, and DDP's average over the ``W`` processes makes the parameter gradients exactly
    the one-process ones on the global batch (parameters outside the gather, such as CLIP's
    temperature, get the one-process gradient on every rank, averaged unchanged). The price is
    that each process scores all ``2N`` rows rather than its own ``2n``: a ``[2N, 2N]`` logit
    matrix, small next to an encoder's activations at the course's batch sizes.

    Args:
        loss: the loss of one process's batch, taking the gathered tensors first.
        rows: ``[n, ...]`` tensors, the same ``n`` on every process.
        *args: passed on unchanged (a temperature, a logit scale).

    Returns:
        The scalar loss of the global batch (the same value on every process).
    """
    if not rows or any(r.ndim < 1 or r.shape[0] != rows[0].shape[0] for r in rows):
        shapes = [tuple(r.shape) for r in rows]
        raise ValueError(f"rows must be tensors with the same number of rows, got shapes {shapes}")
    return loss(*(gather_with_grad(r) for r in rows), *args)
