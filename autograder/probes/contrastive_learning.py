"""Trusted probes for Assignment 4 (contrastive and Siamese learning).

Each probe runs as ``fn(student_module, *args)`` in a grading worker: it builds the tiny
encoders, the generator and the augmentation itself (none of them can cross the worker
boundary), drives the student's functions, and returns plain data. The parent runs the same
probe on the reference module, or checks the returned values against properties it computes
itself.

A training-step probe grades ONE step function: the student parts it calls besides the one
graded (the projection head, the losses, the momentum update, the queue) are swapped for the
trusted versions below while it runs (and put back afterwards), so that one mistake costs the
tests of that part only.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn as nn
import torch.nn.functional as F

from replearn import augment
from replearn.backbones import SmallCNN

ENCODER_WIDTHS = (4, 8)  # a two-block SmallCNN: [N, 3, 8, 8] -> [N, 8]
FEATURE_DIM = ENCODER_WIDTHS[-1]
PROJECTION_DIM, HIDDEN_DIM = 6, 12


# ---- trusted building blocks ----------------------------------------------------------------


class TrustedHead(nn.Module):
    """Linear-BN-ReLU-Linear under the names the assignment prescribes (``layers.0`` ...)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(in_dim, hidden_dim),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, out_dim),
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.layers(h)


def trusted_nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)  # [2N, D]
    logits = (z @ z.T / temperature).masked_fill(torch.eye(2 * n, dtype=torch.bool), -torch.inf)
    return F.cross_entropy(logits, (torch.arange(2 * n) + n) % (2 * n))


@torch.no_grad()
def trusted_momentum_update(online: nn.Module, target: nn.Module, momentum: float) -> None:
    for q, k in zip(online.parameters(), target.parameters()):
        k.copy_(momentum * k + (1 - momentum) * q)
    for q, k in zip(online.buffers(), target.buffers()):
        k.copy_(q)


class TrustedQueue(nn.Module):
    """A key queue with the student's interface (``keys``, ``ptr``, ``enqueue``), seeded keys."""

    def __init__(self, dim: int, size: int, generator: torch.Generator | None = None):
        super().__init__()
        keys = torch.randn(size, dim, generator=torch.Generator().manual_seed(dim * 1000 + size))
        self.register_buffer("keys", F.normalize(keys, dim=1))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        rows = (int(self.ptr) + torch.arange(len(keys))) % len(self.keys)
        self.keys[rows] = keys.detach()
        self.ptr.fill_((int(self.ptr) + len(keys)) % len(self.keys))


def trusted_moco_loss(q, k, queue, temperature):
    q, k, queue = F.normalize(q, dim=1), F.normalize(k.detach(), dim=1), F.normalize(queue.detach(), dim=1)  # fmt: skip
    logits = torch.cat([(q * k).sum(1, keepdim=True), q @ queue.T], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long))


def trusted_byol_loss(p, z):
    return (2 - 2 * F.cosine_similarity(p, z.detach(), dim=1)).mean()


def trusted_simsiam_loss(p1, p2, z1, z2, stop_gradient=True):
    if stop_gradient:
        z1, z2 = z1.detach(), z2.detach()
    return -(F.cosine_similarity(p1, z2, dim=1).mean() + F.cosine_similarity(p2, z1, dim=1).mean()) / 2  # fmt: skip


@torch.no_grad()
def trusted_output_std(z):
    return float(F.normalize(z.float(), dim=1).std(dim=0).mean())


TRUSTED = {
    "ProjectionHead": TrustedHead,
    "nt_xent_loss": trusted_nt_xent,
    "momentum_update": trusted_momentum_update,
    "KeyQueue": TrustedQueue,
    "moco_loss": trusted_moco_loss,
    "byol_loss": trusted_byol_loss,
    "simsiam_loss": trusted_simsiam_loss,
    "output_std": trusted_output_std,
}


@contextlib.contextmanager
def trusted_parts(module, *names: str):
    """Swap ``module.<name>`` for the trusted version while the block runs, then restore it."""
    saved = {name: getattr(module, name) for name in names}
    try:
        for name in names:
            setattr(module, name, TRUSTED[name])
        yield
    finally:
        for name, value in saved.items():
            setattr(module, name, value)


def probe_augment(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """A cheap seeded view: Gaussian noise (sigma 0.1), clamped, then a random horizontal flip."""
    noisy = (x + 0.1 * torch.randn(x.shape, generator=generator)).clamp(0, 1)
    return augment.random_horizontal_flip(noisy, generator=generator)


@torch.no_grad()
def reseed(model: nn.Module, seed: int, scale: float = 0.3) -> nn.Module:
    """Overwrite every trained parameter, in name order, with seeded Gaussian noise.

    Makes the weights independent of the order in which the student's code built its layers.
    """
    generator = torch.Generator().manual_seed(seed)
    for _, param in sorted(model.named_parameters()):
        param.copy_(torch.randn(param.shape, generator=generator) * scale)
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
    """One ``simclr_step`` on a seeded tiny SimCLR (trusted head and NT-Xent): loss, gradient."""
    with trusted_parts(module, "ProjectionHead", "nt_xent_loss"):
        model = module.SimCLR(tiny_encoder(seed), FEATURE_DIM, PROJECTION_DIM, HIDDEN_DIM)
        reseed(model, seed).train()
        generator = torch.Generator().manual_seed(seed)
        loss = _loss(module.simclr_step(model, images, probe_augment, temperature, generator), "simclr_step")  # fmt: skip
        loss.backward()
    return {"loss": float(loss.detach()), "grad": _grad(model.encoder.blocks[0][0].weight)}


def simclr_smoke_train(module, seed: int, steps: int) -> dict:
    """Train a tiny SimCLR with the student's whole Part 2 (head, loss, step); return weights.

    Adam (lr 1e-2) on 32 fixed random 16x16 images, two ``probe_augment`` views per step. The
    parent loads the weights into its own architecture and measures the loss itself.
    """
    torch.manual_seed(seed)
    model = module.SimCLR(SmallCNN(widths=(8, 16)), 16, 16, 32)
    generator = torch.Generator().manual_seed(seed)
    images = smoke_images(seed)  # [32, 3, 16, 16]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(steps):
        loss = _loss(module.simclr_step(model, images, probe_augment, 0.2, generator), "simclr_step")  # fmt: skip
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return {"state_dict": _state(model), "losses": losses}


def smoke_images(seed: int) -> torch.Tensor:
    return torch.rand(32, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


class TrustedSimCLR(nn.Module):
    """The parent's copy of the smoke-train architecture (names as the assignment's SimCLR)."""

    def __init__(self, seed: int):
        super().__init__()
        torch.manual_seed(seed)
        self.encoder = SmallCNN(widths=(8, 16))
        self.projector = TrustedHead(16, 32, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projector(self.encoder(x))


@torch.no_grad()
def heldout_nt_xent(model: nn.Module, seed: int, views_seed: int, repeats: int = 4) -> float:
    """The trusted NT-Xent of ``model`` (train-mode BN) on fresh views of the smoke images."""
    images = smoke_images(seed)
    generator = torch.Generator().manual_seed(views_seed)
    model.train()
    total = 0.0
    for _ in range(repeats):
        z = model(torch.cat([probe_augment(images, generator), probe_augment(images, generator)]))
        total += float(trusted_nt_xent(*z.chunk(2), 0.2))
    return total / repeats


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
    """A student ``KeyQueue``: its initial keys' norms, then keys and pointer after each batch."""
    queue = module.KeyQueue(dim, size)
    initial = queue.keys.detach().clone()
    trace = []
    for keys in batches:
        queue.enqueue(keys.clone().requires_grad_(True))
        trace.append({"keys": queue.keys.detach().clone(), "ptr": int(queue.ptr),
                      "requires_grad": bool(queue.keys.requires_grad)})  # fmt: skip
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
    """``steps`` MoCo steps (trusted head, queue, loss and momentum update) with SGD."""
    with trusted_parts(module, "ProjectionHead", "KeyQueue", "moco_loss", "momentum_update"):
        model = module.MoCo(tiny_encoder(seed), FEATURE_DIM, PROJECTION_DIM, queue_size=10,
                            momentum=0.5, temperature=0.2, hidden_dim=HIDDEN_DIM)  # fmt: skip
        reseed(model.encoder, seed)
        reseed(model.projector, seed + 1)
        trusted_momentum_update(model.encoder, model.key_encoder, 0.0)  # keys start as a copy
        trusted_momentum_update(model.projector, model.key_projector, 0.0)
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
    """``steps`` BYOL steps (trusted MLPs, loss and momentum update) with SGD."""
    with trusted_parts(module, "ProjectionHead", "byol_loss", "momentum_update"):
        model = module.BYOL(tiny_encoder(seed), FEATURE_DIM, PROJECTION_DIM, HIDDEN_DIM, 0.5)
        reseed(model.encoder, seed)
        reseed(model.projector, seed + 1)
        reseed(model.predictor, seed + 2)
        trusted_momentum_update(model.encoder, model.target_encoder, 0.0)
        trusted_momentum_update(model.projector, model.target_projector, 0.0)
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
    """One ``simsiam_step`` (trusted MLP, loss and std) on a seeded tiny SimSiam."""
    with trusted_parts(module, "ProjectionHead", "simsiam_loss", "output_std"):
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
