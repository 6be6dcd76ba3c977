"""Probes any assignment can use: gradients of a student function, a short smoke-train."""

from __future__ import annotations

import torch


def call_with_grad(module, fn_name: str, inputs: list, grad_of: list[int]) -> dict:
    """Call ``module.fn_name(*inputs)``, backpropagate ``output.sum()``.

    Returns ``{"output": tensor, "grads": [d sum / d inputs[i] for i in grad_of]}`` (missing
    gradients come back as None).
    """
    inputs = [
        x.clone().requires_grad_(i in grad_of) if isinstance(x, torch.Tensor) else x
        for i, x in enumerate(inputs)
    ]
    out = getattr(module, fn_name)(*inputs)
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"{fn_name} returned {type(out).__name__}, expected a tensor")
    if out.requires_grad:
        out.sum().backward()
    grads = [inputs[i].grad for i in grad_of]
    return {"output": out.detach(), "grads": [None if g is None else g.detach() for g in grads]}


def smoke_train(
    module, model_fn: str, loss_fn: str, x, y, *, model_args: list, steps: int, lr: float
) -> dict:
    """Build ``module.model_fn(*model_args)``, take ``steps`` full-batch SGD steps on
    ``module.loss_fn(model(x), y)``, and return the trained weights and the losses seen.

    The parent loads the weights into its own architecture and evaluates them itself.
    """
    model = getattr(module, model_fn)(*model_args)
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"{model_fn} returned {type(model).__name__}, expected an nn.Module")
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = getattr(module, loss_fn)(model(x), y)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return {"state_dict": state, "losses": losses}
