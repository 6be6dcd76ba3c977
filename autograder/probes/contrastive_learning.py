"""Probes for Assignment 4 (contrastive and Siamese learning).

Each probe runs as ``fn(student_module, *args)`` in a grading worker: it builds the tiny
encoders, the generator and the augmentation itself (none of them can cross the worker
boundary), drives the student's functions, and returns plain data. The parent runs the same
probe on the reference module (public tests: the value recorded in ``expected_public.agv``),
or checks the returned values against properties it computes itself.

A training-step probe grades ONE step function: the other parts of the module it calls (the
projection head, the losses, the momentum update, the queue) are replaced, while it runs, by the
stand-ins below, and put back afterwards. A stand-in has the interface of the part it replaces
but computes something else on purpose (a linear layer for the head, a smooth function of every
argument for a loss): the step is graded on how it wires its parts, so one mistake costs the
tests of that part only, and nothing here solves a part of the assignment.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn as nn

from replearn import augment
from replearn.backbones import SmallCNN

ENCODER_WIDTHS = (4, 8)  # a two-block SmallCNN: [N, 3, 8, 8] -> [N, 8]
FEATURE_DIM = ENCODER_WIDTHS[-1]
PROJECTION_DIM, HIDDEN_DIM = 6, 12


# ---- stand-ins for the parts a step calls ------------------------------------------------------


class StandInHead(nn.Module):
    """Stands in for ``ProjectionHead``: ``tanh(W h + b)`` under the name ``layers``.

    One linear layer and no BatchNorm: a step test needs a trainable module of the right
    widths, not a projection head.
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(in_dim, out_dim), nn.Tanh())

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.layers(h)  # [N, D_in] -> [N, D_out]


def stand_in_pair_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """Stands in for ``nt_xent_loss``: smooth in both batches, unequal in their roles, in the
    order of the rows and in the temperature (so a step that swaps or misaligns them shows)."""
    return ((z1 - 0.5 * z2.roll(1, dims=0)) ** 2).mean() / temperature + (z1 * z2).mean()


def stand_in_queue_loss(q, k, queue, temperature: float) -> torch.Tensor:
    """Stands in for ``moco_loss``. It keeps ``queue`` for the backward pass, so a step that
    changes the queue in place before ``backward`` fails here as it would with the real loss."""
    return ((q - k) ** 2).mean() / temperature + torch.tanh(q @ queue.T).mean()


def stand_in_prediction_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Stands in for ``byol_loss``: smooth in ``p`` and ``z``, unequal in their roles."""
    return ((p - 0.5 * z) ** 2).mean() + (p * z.roll(1, dims=0)).mean()


def stand_in_siamese_loss(p1, p2, z1, z2, stop_gradient: bool = True) -> torch.Tensor:
    """Stands in for ``simsiam_loss``; the ``stop_gradient`` flag detaches ``z1, z2``."""
    if stop_gradient:
        z1, z2 = z1.detach(), z2.detach()
    return ((p1 - z2) ** 2).mean() + 0.5 * ((p2 - z1) ** 2).mean()


@torch.no_grad()
def stand_in_spread(z: torch.Tensor) -> float:
    """Stands in for ``output_std``: a number that depends on which tensor it is given."""
    return float(z.float().abs().mean())


@torch.no_grad()
def stand_in_target_update(online: nn.Module, target: nn.Module, momentum: float) -> None:
    """Stands in for ``momentum_update``: an in-place change of ``target``'s parameters that
    depends on ``online``'s and on ``momentum`` (not a moving average)."""
    for q, k in zip(online.parameters(), target.parameters()):
        k.add_(momentum * torch.tanh(q) - 0.1 * k)


class StandInQueue(nn.Module):
    """Stands in for ``KeyQueue``: fixed starting keys, and an ``enqueue`` that changes every
    row in place from the keys it is given; ``ptr`` counts the keys received."""

    def __init__(self, dim: int, size: int, generator: torch.Generator | None = None):
        super().__init__()
        self.register_buffer("keys", torch.linspace(-1.0, 1.0, size * dim).view(size, dim))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    @property
    def size(self) -> int:
        return self.keys.shape[0]

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        self.keys.mul_(0.5).add_(0.5 * keys.mean(dim=0))  # [K, D], in place
        self.ptr.add_(len(keys))


STAND_INS = {
    "ProjectionHead": StandInHead,
    "nt_xent_loss": stand_in_pair_loss,
    "momentum_update": stand_in_target_update,
    "KeyQueue": StandInQueue,
    "moco_loss": stand_in_queue_loss,
    "byol_loss": stand_in_prediction_loss,
    "simsiam_loss": stand_in_siamese_loss,
    "output_std": stand_in_spread,
}


@contextlib.contextmanager
def stand_ins(module, *names: str):
    """Replace ``module.<name>`` by its stand-in while the block runs, then restore it."""
    missing = object()
    saved = {name: getattr(module, name, missing) for name in names}
    try:
        for name in names:
            setattr(module, name, STAND_INS[name])
        yield
    finally:
        for name, value in saved.items():
            if value is missing:
                delattr(module, name)
            else:
                setattr(module, name, value)


def probe_images(
    n: int, generator: torch.Generator, size: int = 8, uint8: bool = False
) -> torch.Tensor:
    """``[n, 3, size, size]`` images that differ in colour and layout, plus a little noise.

    Not i.i.d. noise: the globally pooled features of noise images are nearly the same for
    every image, and a BatchNorm over them divides by almost nothing, which turns rounding
    differences between two correct computations into failed comparisons.
    """
    ramp = torch.linspace(0, 1, size)
    base, slope_y, slope_x = (torch.rand(n, 3, 1, 1, generator=generator) for _ in range(3))
    x = 0.4 * base + 0.3 * slope_y * ramp.view(1, 1, -1, 1) + 0.3 * slope_x * ramp.view(1, 1, 1, -1)
    x = (x + 0.1 * torch.rand(n, 3, size, size, generator=generator)).clamp(0, 1)  # [n, 3, s, s]
    return (x * 255).round().to(torch.uint8) if uint8 else x


def probe_augment(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """A cheap seeded view: Gaussian noise (sigma 0.1), clamped, then a random horizontal flip."""
    noisy = (x + 0.1 * torch.randn(x.shape, generator=generator)).clamp(0, 1)
    return augment.random_horizontal_flip(noisy, generator=generator)


@torch.no_grad()
def reseed(model: nn.Module, seed: int, scale: float = 0.3) -> nn.Module:
    """Overwrite every trained parameter, in name order, with seeded Gaussian noise.

    Makes the weights independent of the order in which the student's code built its layers.
    BatchNorm scales get ``1 + noise``: scales around 0 would switch most ReLUs off, and the
    few live features would barely vary from image to image.
    """
    norm_scales = {
        f"{name}.weight" if name else "weight"
        for name, m in model.named_modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine
    }
    generator = torch.Generator().manual_seed(seed)
    for name, param in sorted(model.named_parameters()):
        noise = torch.randn(param.shape, generator=generator) * scale
        param.copy_(noise + 1.0 if name in norm_scales else noise)
    return model


def tiny_encoder(seed: int) -> SmallCNN:
    torch.manual_seed(seed)
    return SmallCNN(in_channels=3, widths=ENCODER_WIDTHS)


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _grad(param: torch.Tensor) -> torch.Tensor | None:
    return None if param.grad is None else param.grad.detach().clone()


def _loss(out, who: str) -> torch.Tensor:
    if not isinstance(out, dict) or "loss" not in out:
        raise TypeError(f"{who} must return a dict with a 'loss' entry, got {type(out).__name__}")
    loss = out["loss"]
    if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
        raise TypeError(f"{who}'s 'loss' must be a scalar tensor")
    return loss


# ---- Part 2: SimCLR -------------------------------------------------------------------------


def projection_head(module, in_dim: int, hidden_dim: int, out_dim: int, seed: int, h) -> dict:
    """The student's ``ProjectionHead``: its layers, and its output under seeded weights."""
    head = module.ProjectionHead(in_dim, hidden_dim, out_dim)
    layers = getattr(head, "layers", None)
    kinds = [type(m).__name__ for m in layers] if isinstance(layers, nn.Sequential) else None
    shapes = {k: list(v.shape) for k, v in head.state_dict().items()}
    reseed(head, seed).train()
    out = head(h)
    return {"kinds": kinds, "shapes": shapes, "z": out.detach().clone()}


def simclr_step_value(module, seed: int, images: torch.Tensor, temperature: float) -> dict:
    """One ``simclr_step`` on a seeded tiny SimCLR (stand-in head and loss): loss, gradient."""
    with stand_ins(module, "ProjectionHead", "nt_xent_loss"):
        model = module.SimCLR(tiny_encoder(seed), FEATURE_DIM, PROJECTION_DIM, HIDDEN_DIM)
        reseed(model, seed).train()
        generator = torch.Generator().manual_seed(seed)
        loss = _loss(
            module.simclr_step(model, images, probe_augment, temperature, generator), "simclr_step"
        )
        loss.backward()
    return {"loss": float(loss.detach()), "grad": _grad(model.encoder.blocks[0][0].weight)}


def simclr_smoke_train(module, seed: int, steps: int) -> dict:
    """Train a tiny SimCLR with the student's whole Part 2 (head, loss, step); return weights.

    Adam (lr 1e-2) on 32 fixed random 16x16 images, two ``probe_augment`` views per step. The
    grader loads the weights into the reference's architecture and measures the loss itself.
    """
    torch.manual_seed(seed)
    model = module.SimCLR(SmallCNN(widths=(8, 16)), 16, 16, 32)
    generator = torch.Generator().manual_seed(seed)
    images = smoke_images(seed)  # [32, 3, 16, 16]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(steps):
        loss = _loss(
            module.simclr_step(model, images, probe_augment, 0.2, generator), "simclr_step"
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return {"state_dict": _state(model), "losses": losses}


def smoke_images(seed: int) -> torch.Tensor:
    return torch.rand(32, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


# ---- Part 3: MoCo ---------------------------------------------------------------------------


def momentum_update_result(module, seed: int, momentum: float) -> dict:
    """``momentum_update`` on a Linear+BatchNorm pair with non-trivial buffers."""
    generator = torch.Generator().manual_seed(seed)
    online = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    target = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    reseed(online, seed)
    reseed(target, seed + 1)
    online(torch.randn(8, 4, generator=generator))  # running statistics move
    out = module.momentum_update(online, target, momentum)
    return {"returned": out, "online": _state(online), "target": _state(target)}


def queue_trace(module, dim: int, size: int, batches: list) -> dict:
    """A student ``KeyQueue`` (seeded starting keys): its keys and pointer after each batch."""
    queue = module.KeyQueue(dim, size, generator=torch.Generator().manual_seed(dim * 1000 + size))
    initial = queue.keys.detach().clone()
    trace = []
    for keys in batches:
        queue.enqueue(keys.clone().requires_grad_(True))
        trace.append(
            {
                "keys": queue.keys.detach().clone(),
                "ptr": int(queue.ptr),
                "requires_grad": bool(queue.keys.requires_grad),
            }
        )
    return {"initial": initial, "trace": trace}


def queue_too_large(module, dim: int, size: int) -> str:
    """The error type and message of enqueuing ``size + 1`` keys."""
    queue = module.KeyQueue(dim, size)
    try:
        queue.enqueue(torch.zeros(size + 1, dim))
    except ValueError as error:
        return f"ValueError: {error}"
    return "no error"


def moco_steps(module, seed: int, images: torch.Tensor, steps: int) -> dict:
    """``steps`` MoCo steps (stand-in head, queue, loss and momentum update) with SGD."""
    with stand_ins(module, "ProjectionHead", "KeyQueue", "moco_loss", "momentum_update"):
        model = module.MoCo(
            tiny_encoder(seed),
            FEATURE_DIM,
            PROJECTION_DIM,
            queue_size=10,
            momentum=0.5,
            temperature=0.2,
            hidden_dim=HIDDEN_DIM,
        )
        reseed(model.encoder, seed)
        reseed(model.projector, seed + 1)
        # the key network starts apart from the query one (MoCo copies it; apart, a step that
        # skips the momentum update or takes its keys from the query encoder shows at once)
        reseed(model.key_encoder, seed + 2)
        reseed(model.key_projector, seed + 3)
        model.train()
        generator = torch.Generator().manual_seed(seed)
        trained = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.SGD(trained, lr=0.5)
        losses = []
        for _ in range(steps):
            loss = _loss(module.moco_step(model, images, probe_augment, generator), "MoCo.step")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
    return {
        "losses": losses,
        "queue": model.queue.keys.detach().clone(),
        "ptr": int(model.queue.ptr),
        "key_weight": model.key_encoder.blocks[0][0].weight.detach().clone(),
        "num_trained": len(trained),
    }


# ---- Part 4: BYOL ---------------------------------------------------------------------------


def byol_steps(module, seed: int, images: torch.Tensor, steps: int) -> dict:
    """``steps`` BYOL steps (stand-in MLPs, loss and momentum update) with SGD."""
    with stand_ins(module, "ProjectionHead", "byol_loss", "momentum_update"):
        model = module.BYOL(tiny_encoder(seed), FEATURE_DIM, PROJECTION_DIM, HIDDEN_DIM, 0.5)
        reseed(model.encoder, seed)
        reseed(model.projector, seed + 1)
        reseed(model.predictor, seed + 2)
        reseed(model.target_encoder, seed + 3)  # apart from the online network, as in moco_steps
        reseed(model.target_projector, seed + 4)
        model.train()
        generator = torch.Generator().manual_seed(seed)
        trained = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.SGD(trained, lr=0.5)
        losses, predictor_grads = [], []
        for _ in range(steps):
            loss = _loss(module.byol_step(model, images, probe_augment, generator), "BYOL.step")
            optimizer.zero_grad()
            loss.backward()
            predictor_grads.append(_grad(model.predictor.layers[0].weight))
            optimizer.step()
            losses.append(float(loss.detach()))
    return {
        "losses": losses,
        "predictor_grads": predictor_grads,
        "target_weight": model.target_projector.layers[0].weight.detach().clone(),
        "num_trained": len(trained),
    }


# ---- Part 5: SimSiam ------------------------------------------------------------------------


def simsiam_step_value(module, seed: int, images: torch.Tensor, stop_gradient: bool) -> dict:
    """One ``simsiam_step`` (stand-in predictor, loss and spread) on a seeded tiny SimSiam."""
    with stand_ins(module, "ProjectionHead", "simsiam_loss", "output_std"):
        model = module.SimSiam(tiny_encoder(seed), FEATURE_DIM, PROJECTION_DIM, HIDDEN_DIM)
        reseed(model, seed).train()
        generator = torch.Generator().manual_seed(seed)
        out = module.simsiam_step(model, images, probe_augment, generator, stop_gradient)
        loss = _loss(out, "simsiam_step")
        loss.backward()
    return {
        "loss": float(loss.detach()),
        "std": out.get("std") if isinstance(out.get("std"), float) else None,
        "grad": _grad(model.encoder.blocks[0][0].weight),
    }


def simsiam_loss_grads(module, tensors: list, stop_gradient: bool) -> dict:
    """``simsiam_loss(p1, p2, z1, z2, stop_gradient)`` and the gradient of each input."""
    leaves = [t.clone().requires_grad_(True) for t in tensors]
    loss = module.simsiam_loss(*leaves, stop_gradient=stop_gradient)
    if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
        raise TypeError("simsiam_loss must return a scalar tensor")
    if loss.requires_grad:
        loss.backward()
    return {"loss": loss.detach(), "grads": [_grad(t) for t in leaves]}
