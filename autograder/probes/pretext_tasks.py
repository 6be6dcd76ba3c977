"""Trusted probes for Assignment 3, part I (discriminative pretext tasks).

Each probe runs as ``fn(student_module, *args)`` in a grading worker: it builds the generator,
the tiny trunks and the transforms itself (none of them can cross the worker boundary), drives
the student's functions, and returns plain data. The parent runs the same probe on the
reference module, or checks the returned values against properties it computes itself.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from replearn.backbones import SmallCNN

TRUNK_WIDTHS = (4, 8)  # a two-block SmallCNN: 8x8 patches -> 4x4 -> [N, 8]


def tiny_trunk(seed: int, widths=TRUNK_WIDTHS) -> SmallCNN:
    torch.manual_seed(seed)
    return SmallCNN(in_channels=3, widths=widths)


class TinyRotNet(nn.Module):
    """The probe's rotation classifier: a three-block SmallCNN and a linear 4-way head."""

    def __init__(self, seed: int, num_rotations: int = 4):
        super().__init__()
        torch.manual_seed(seed)
        self.encoder = SmallCNN(in_channels=3, widths=(8, 16, 16))
        self.head = nn.Linear(16, num_rotations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))  # [N, 4]


def oriented_images(n: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """Synthetic "photographs" with an up direction: bright sky, dark ground, a random object.

    ``[N, 3, size, size]`` in [0, 1]. The vertical brightness ramp and the ground band make the
    rotation recognisable from the image alone, so a classifier can learn it in a few steps.
    """
    rows = torch.linspace(1.0, 0.2, size).view(1, 1, size, 1)  # [1, 1, H, 1] sky to ground
    tint = 0.5 + 0.5 * torch.rand(n, 3, 1, 1, generator=generator)  # [N, 3, 1, 1]
    images = (rows * tint).expand(n, 3, size, size).clone()  # [N, 3, H, W]
    images[:, :, -size // 4 :, :] *= 0.3  # dark ground band
    side = size // 4
    for i in range(n):  # one coloured square per image, anywhere above the ground
        top = int(torch.randint(0, size - 2 * side, (1,), generator=generator))
        left = int(torch.randint(0, size - side, (1,), generator=generator))
        images[i, :, top : top + side, left : left + side] = torch.rand(
            3, 1, 1, generator=generator
        )
    noise = 0.05 * torch.randn(images.shape, generator=generator)
    return (images + noise).clamp(0.0, 1.0)


# ---- Part 1: rotation ---------------------------------------------------------------------------


def rotation_loss_value(module, seed: int, images: torch.Tensor, rotations: list) -> dict:
    """``rotation_loss`` of the probe's fixed (eval-mode) classifier: loss, accuracy, gradient."""
    model = TinyRotNet(seed, len(rotations)).eval()
    out = module.rotation_loss(model, images, tuple(rotations))
    if not isinstance(out, dict) or "loss" not in out or "acc" not in out:
        raise TypeError("rotation_loss must return a dict with 'loss' and 'acc'")
    out["loss"].backward()
    grad = model.head.weight.grad
    return {
        "loss": float(out["loss"].detach()),
        "acc": float(out["acc"]),
        "head_grad": None if grad is None else grad.detach().clone(),
    }


def rotation_smoke_train(module, seed: int, steps: int, n: int = 16, size: int = 16) -> dict:
    """Train the probe's TinyRotNet with the student's ``rotation_loss``; return its weights.

    Full-batch Adam on ``n`` synthetic oriented images (all four rotations each). The parent
    loads the weights into its own TinyRotNet and measures rotation accuracy itself.
    """
    generator = torch.Generator().manual_seed(seed)
    images = oriented_images(n, size, generator)  # [n, 3, size, size]
    model = TinyRotNet(seed).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(steps):
        out = module.rotation_loss(model, images)
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        losses.append(float(out["loss"].detach()))
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return {"state_dict": state, "losses": losses}


# ---- Part 2: context prediction -------------------------------------------------------------------


def context_pairs(module, images, seed: int, patch: int, gap: int, jitter: int) -> dict:
    """``sample_context_pairs`` with a seeded generator, twice (the same seed both times)."""
    outs = []
    for _ in range(2):
        generator = torch.Generator().manual_seed(seed)
        result = module.sample_context_pairs(images, patch, gap, jitter, generator)
        outs.append([t.detach().clone() if isinstance(t, torch.Tensor) else t for t in result])
    return {"first": outs[0], "second": outs[1]}


def _trunk_counter(trunk: nn.Module) -> list[int]:
    seen = []
    trunk.register_forward_hook(lambda _m, inputs, _out: seen.append(int(inputs[0].shape[0])))
    return seen


def _sharing(model: nn.Module, trunk: nn.Module, others: list[nn.Module]) -> dict:
    """Whether ``model`` holds exactly the given trunk and heads' parameters, once each."""
    model_ids = [id(p) for p in model.parameters()]
    expected = {id(p) for m in [trunk, *others] for p in m.parameters()}
    return {
        "trunk_is_given": getattr(model, "trunk", None) is trunk,
        "params_are_trunk_and_heads": len(model_ids) == len(set(model_ids)) == len(expected)
        and set(model_ids) == expected,
    }


def siamese_forward(module, seed: int, centre: torch.Tensor, neighbour: torch.Tensor) -> dict:
    """``SiameseContextNet`` on a tiny trunk: logits, how the trunk was used, gradients."""
    trunk = tiny_trunk(seed)
    torch.manual_seed(seed + 1)
    model = module.SiameseContextNet(trunk, hidden=16)
    model.eval()
    seen = _trunk_counter(trunk)
    with torch.no_grad():
        logits = model(centre, neighbour)  # [N, 8]
    samples_seen = sum(seen)
    model.train()
    c, nb = centre.clone().requires_grad_(), neighbour.clone().requires_grad_()
    model(c, nb).sum().backward()
    trunk_grads = [p.grad for p in trunk.parameters()]
    return {
        "logits": logits.detach(),
        "samples_seen": samples_seen,
        **_sharing(model, trunk, [model.pair_head]),
        "grad_centre": c.grad is not None and bool(c.grad.abs().sum() > 0),
        "grad_neighbour": nb.grad is not None and bool(nb.grad.abs().sum() > 0),
        "trunk_trained": all(g is not None for g in trunk_grads),
    }


# ---- Part 3: jigsaw -----------------------------------------------------------------------------


def min_hamming_distance(permutations: torch.Tensor) -> int:
    """The smallest Hamming distance between two different rows of ``[P, T]`` (parent side)."""
    distance = (permutations[:, None, :] != permutations[None, :, :]).sum(dim=2)  # [P, P]
    distance.fill_diagonal_(permutations.shape[1] + 1)
    return int(distance.min())


def hamming_set(module, num: int, tiles: int, seed: int, pool_size=None) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    perms = module.hamming_permutation_set(num, tiles, generator, pool_size)
    return perms.detach().clone() if isinstance(perms, torch.Tensor) else perms


def jigsaw(module, images, seed: int, grid: int, cell: int, tile: int, perms) -> dict:
    """Random tiles (seeded), centred tiles, shuffled tiles and the shuffle undone."""
    generator = torch.Generator().manual_seed(seed)
    tiles = module.jigsaw_tiles(images, grid, cell, tile, generator)
    centred = module.jigsaw_tiles(images, grid, cell, tile, None, random=False)
    shuffled = module.shuffle_tiles(tiles, perms)
    inverse = module.invert_permutations(perms)
    restored = module.shuffle_tiles(shuffled, inverse)
    return {
        "tiles": tiles,
        "centred": centred,
        "shuffled": shuffled,
        "inverse": inverse,
        "restored": restored,
    }


def jigsaw_forward(module, seed: int, tiles: torch.Tensor, num_permutations: int) -> dict:
    """``JigsawNet`` on a tiny trunk: logits, how often and on what the trunk ran."""
    trunk = tiny_trunk(seed)
    torch.manual_seed(seed + 1)
    model = module.JigsawNet(
        trunk, num_permutations, num_tiles=tiles.shape[1], tile_hidden=6, hidden=16
    )
    model.eval()
    seen = _trunk_counter(trunk)
    with torch.no_grad():
        logits = model(tiles)  # [N, P]
    samples_seen = sum(seen)
    model.train()
    model(tiles).sum().backward()
    return {
        "logits": logits.detach(),
        "samples_seen": samples_seen,
        **_sharing(model, trunk, [model.tile_fc, model.puzzle_head]),
        "trunk_trained": all(p.grad is not None for p in trunk.parameters()),
    }


# ---- Part 4: exemplar CNN -------------------------------------------------------------------------


def _noise_transform(x: torch.Tensor, generator) -> torch.Tensor:
    """A trusted random transform: brightness shift and noise, drawn from ``generator``."""
    shift = 0.2 * torch.rand(len(x), 1, 1, 1, generator=generator) - 0.1  # [N, 1, 1, 1]
    return (x + shift + 0.05 * torch.randn(x.shape, generator=generator)).clamp(0.0, 1.0)


def exemplar(module, images, seed: int, num_seeds: int, copies: int) -> dict:
    """``exemplar_dataset`` with a trusted transform, and the head of ``exemplar_classifier``."""
    generator = torch.Generator().manual_seed(seed)
    views, labels, seed_index = module.exemplar_dataset(
        images, num_seeds, copies, _noise_transform, generator
    )
    model = module.exemplar_classifier(tiny_trunk(seed, (4, 8, 8)), num_seeds)
    heads = [m for m in model.modules() if isinstance(m, nn.Linear)]
    model.eval()
    with torch.no_grad():
        logits = model(images[:2])
    return {
        "views": views.detach(),
        "labels": labels.detach(),
        "seed_index": seed_index.detach(),
        "logits_shape": list(logits.shape),
        "last_linear_out": heads[-1].out_features if heads else None,
    }
