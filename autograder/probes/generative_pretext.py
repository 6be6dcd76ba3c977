"""Trusted probes for Assignment 3, part II (generative pretexts and deep clustering).

Each probe runs as ``fn(student_module, *args)`` in a grading worker: it builds the generators and
the tiny networks itself (none of them can cross the worker boundary), drives the student's
functions, and returns plain data. The parent runs the same probe on the reference module, or
checks the returned values against properties (and independent libraries) it computes itself.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from replearn.backbones import SmallCNN


class TinyDiscriminator(nn.Module):
    """A linear discriminator on flattened images: ``[N, C, H, W]`` -> ``[N]`` logits."""

    def __init__(self, seed: int, in_features: int):
        super().__init__()
        torch.manual_seed(seed)
        self.linear = nn.Linear(in_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1)).squeeze(1)  # [N]


def masked_l2(module, prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> dict:
    """``masked_l2_loss`` and its gradient with respect to the prediction."""
    prediction = prediction.clone().requires_grad_(True)
    loss = module.masked_l2_loss(prediction, target, mask)
    loss.backward()
    grad = prediction.grad
    return {"loss": float(loss.detach()), "grad": None if grad is None else grad.detach().clone()}


def adversarial(module, seed: int, real: torch.Tensor, fake: torch.Tensor) -> dict:
    """Both adversarial losses of a fixed tiny discriminator, and where their gradients go."""
    disc = TinyDiscriminator(seed, real[0].numel())
    fake = fake.clone().requires_grad_(True)
    out = module.adversarial_losses(disc, real, fake)
    if not isinstance(out, dict) or not {"d_loss", "g_loss"} <= set(out):
        raise TypeError("adversarial_losses must return a dict with 'd_loss' and 'g_loss'")
    d_reaches_fake = (
        bool(out["d_loss"].requires_grad)
        and torch.autograd.grad(out["d_loss"], fake, retain_graph=True, allow_unused=True)[0]
        is not None
    )
    d_grad_disc = torch.autograd.grad(out["d_loss"], disc.linear.weight, retain_graph=True)[0]
    g_grad_fake = torch.autograd.grad(out["g_loss"], fake, allow_unused=True)[0]
    return {
        "d_loss": float(out["d_loss"].detach()),
        "g_loss": float(out["g_loss"].detach()),
        "d_reaches_fake": d_reaches_fake,
        "d_grad_disc": d_grad_disc.detach().clone(),
        "g_grad_fake": None if g_grad_fake is None else g_grad_fake.detach().clone(),
    }


def region_masks(module, n: int, size: int, hole: int, seed: int) -> dict:
    """Central and random masks; two random calls with generators seeded alike."""
    center = module.region_mask(n, size, hole, "center", torch.Generator().manual_seed(seed))
    first = module.region_mask(n, size, hole, "random", torch.Generator().manual_seed(seed))
    second = module.region_mask(n, size, hole, "random", torch.Generator().manual_seed(seed))
    return {"center": center, "random": first, "random_again": second}


def kmeans_pp(module, x: torch.Tensor, k: int, seed: int) -> dict:
    """Two k-means++ seedings with generators seeded alike."""
    first = module.kmeans_plusplus_init(x, k, torch.Generator().manual_seed(seed))
    second = module.kmeans_plusplus_init(x, k, torch.Generator().manual_seed(seed))
    return {"first": first, "second": second}


def kmeans_step_result(module, x: torch.Tensor, centroids: torch.Tensor, seed: int) -> dict:
    """One Lloyd step with re-seeding, under a seeded generator."""
    new, assignments = module.kmeans_step(x, centroids.clone(), torch.Generator().manual_seed(seed))
    return {"centroids": new, "assignments": assignments}


def kmeans_fit(module, x: torch.Tensor, k: int, iters: int, seed: int) -> dict:
    centroids, assignments, inertia = module.kmeans(
        x, k, iters, torch.Generator().manual_seed(seed)
    )
    return {"centroids": centroids, "assignments": assignments, "inertia": float(inertia)}


def split_brain(
    module, seed: int, lab: torch.Tensor, centres: torch.Tensor, weights: torch.Tensor
) -> dict:
    """``split_brain_loss`` of a seeded tiny split-brain pair (3-block SmallCNNs, eval mode)."""
    torch.manual_seed(seed)
    model = module.SplitBrainNet(
        SmallCNN(1, (4, 8, 8)), SmallCNN(2, (4, 8, 8)), len(centres)
    ).eval()
    out = module.split_brain_loss(model, lab, centres, weights)
    out["loss"].backward()
    l_grad = model.l_net.encoder.blocks[0][0].weight.grad
    ab_grad = model.ab_net.encoder.blocks[0][0].weight.grad
    return {
        "loss": float(out["loss"].detach()),
        "ab_loss": float(out["ab_loss"].detach()),
        "l_loss": float(out["l_loss"].detach()),
        "both_halves_learn": l_grad is not None and ab_grad is not None,
    }
