"""Trusted probes for Assignment 2 (autoencoders).

Each probe runs as ``fn(student_module, *args)`` in a grading worker: it builds tiny models with
the student's classes, drives the student's functions, and returns plain data (tensors, numbers,
dicts). The parent runs the same probe on the reference module, or evaluates the returned
weights in its own copy of the architecture, and compares.
"""

from __future__ import annotations

import torch

# A tiny convolutional autoencoder: 8x8 images, two blocks (8 -> 4 -> 2), a 6-d code.
TINY_AE = {"in_channels": 3, "image_size": 8, "widths": (4, 8), "code_dim": 6}


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _build_ae(module, spec: dict, seed: int):
    torch.manual_seed(seed)
    model = module.ConvAutoencoder(
        spec["in_channels"],
        spec["image_size"],
        tuple(spec["widths"]),
        spec["code_dim"],
        spec.get("code_activation", "none"),
    )
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"ConvAutoencoder(...) returned {type(model).__name__}")
    return model


# ---- Part 1 ------------------------------------------------------------------------------------


def autoencoder_forward(module, spec: dict, state: dict, x: torch.Tensor) -> dict:
    """Build the student's ConvAutoencoder, load the parent's weights into it, run it.

    Returns the layer names and shapes the student built (before loading) and the codes and
    reconstructions with the parent's weights (eval mode), which the parent compares with the
    reference architecture's.
    """
    model = _build_ae(module, spec, 0)
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    try:
        model.load_state_dict(state)
    except RuntimeError:
        return {"shapes": shapes, "loaded": False}
    model.eval()
    with torch.no_grad():
        h = model.encode(x)  # [N, D]
        x_hat = model.decode(h)  # [N, C, H, W]
        both = model(x)
    if not (isinstance(both, tuple) and len(both) == 2):
        raise TypeError("ConvAutoencoder.forward must return the pair (x_hat, h)")
    return {"shapes": shapes, "loaded": True, "h": h, "x_hat": x_hat, "forward_x_hat": both[0]}


# ---- Part 3 ------------------------------------------------------------------------------------


def masks(module, x: torch.Tensor, fraction: float, seed: int) -> dict:
    """``mask_pixels`` twice with the same seed and once with another; the input must not move."""
    original = x.clone()
    noisy, mask = module.mask_pixels(x, fraction, torch.Generator().manual_seed(seed))
    again, mask_again = module.mask_pixels(x, fraction, torch.Generator().manual_seed(seed))
    _, other = module.mask_pixels(x, fraction, torch.Generator().manual_seed(seed + 1))
    for name, value in (("x_noisy", noisy), ("mask", mask)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(
                f"mask_pixels must return two tensors; {name} is {type(value).__name__}"
            )
    return {
        "noisy": noisy.detach(),
        "mask": mask.detach(),
        "same_seed_same_result": bool(torch.equal(noisy, again) and torch.equal(mask, mask_again)),
        "other_seed_differs": not torch.equal(mask, other),
        "input_unchanged": bool(torch.equal(x, original)),
    }


def denoising_loss_fixed_mask(
    module, spec: dict, state: dict, x: torch.Tensor, mask: torch.Tensor, fraction: float
) -> dict:
    """``denoising_loss`` with ``mask_pixels`` replaced by a trusted, fixed mask.

    The model is the student's ConvAutoencoder with the parent's weights, in eval mode, so the
    loss is a deterministic function of (weights, x, mask): the parent computes it with the
    reference and compares.
    """
    model = _build_ae(module, spec, 0)
    model.load_state_dict(state)
    model.eval()
    calls = []

    def fixed_mask(images, frac, generator=None):
        calls.append(float(frac))
        return images.masked_fill(mask, 0.0), mask

    module.mask_pixels = fixed_mask  # the student's denoising_loss must corrupt with mask_pixels
    loss = module.denoising_loss(model, x, fraction, torch.Generator().manual_seed(0))
    if not isinstance(loss, torch.Tensor):
        raise TypeError(f"denoising_loss returned {type(loss).__name__}, expected a tensor")
    return {"loss": float(loss.detach()), "mask_calls": calls, "differentiable": loss.requires_grad}


def dae_smoke_train(
    module, spec: dict, seed: int, x: torch.Tensor, steps: int, fraction: float, lr: float
) -> dict:
    """Train the student's ConvAutoencoder with the student's ``denoising_loss`` for ``steps``
    Adam steps on the tiny batch ``x``; return the initial and the final weights."""
    model = _build_ae(module, spec, seed).train()
    initial = _state(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(steps):
        loss = module.denoising_loss(model, x, fraction, generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return {"initial": initial, "final": _state(model), "losses": losses}


# ---- Part 4 ------------------------------------------------------------------------------------


def layerwise(
    module, dims: list, k: int, x: torch.Tensor, epochs: int, batch_size: int, seed: int
) -> dict:
    """``pretrain_layer(stack, k, ...)`` on a seeded stack: which parameters moved, and to what."""
    torch.manual_seed(seed)
    stack = module.StackedAutoencoder(tuple(dims))
    before = _state(stack)
    losses = module.pretrain_layer(
        stack,
        k,
        x,
        epochs=epochs,
        batch_size=batch_size,
        lr=1e-2,
        generator=torch.Generator().manual_seed(seed),
    )
    after = _state(stack)
    return {
        "changed": {name: not torch.equal(before[name], after[name]) for name in before},
        "state": after,
        "losses": [float(v) for v in losses],
        "requires_grad": {n: bool(p.requires_grad) for n, p in stack.named_parameters()},
    }


def layer_input_probe(module, dims: list, k: int, x: torch.Tensor, seed: int) -> dict:
    """``layer_input`` and ``layer_reconstruction_loss`` of a seeded stack, with its gradients."""
    torch.manual_seed(seed)
    stack = module.StackedAutoencoder(tuple(dims))
    a = module.layer_input(stack, x, k)
    out = {"input": a.detach(), "input_requires_grad": bool(a.requires_grad)}
    try:  # a wrong layer_input shows in its own checks first, not as a failed loss
        loss = module.layer_reconstruction_loss(stack, x, k)
        loss.backward()
    except Exception as error:  # noqa: BLE001  (reported to the parent as data)
        return {**out, "loss": None, "has_grad": None, "error": f"{type(error).__name__}: {error}"}
    has_grad = {
        n: p.grad is not None and bool(p.grad.abs().sum() > 0) for n, p in stack.named_parameters()
    }
    return {**out, "loss": float(loss.detach()), "has_grad": has_grad}


def finetune(module, dims: list, x: torch.Tensor, epochs: int, batch_size: int, seed: int) -> dict:
    """``finetune_stack`` on a seeded stack: the final weights and the losses."""
    torch.manual_seed(seed)
    stack = module.StackedAutoencoder(tuple(dims))
    losses = module.finetune_stack(
        stack,
        x,
        epochs=epochs,
        batch_size=batch_size,
        lr=1e-2,
        generator=torch.Generator().manual_seed(seed),
    )
    return {"state": _state(stack), "losses": [float(v) for v in losses]}
