"""Trusted probes for Assignment 1 (transfer learning).

Each probe runs as ``fn(student_module, *args)`` in a grading worker: it builds a tiny classifier
with named stages (never the real pretrained weights: grading is CPU-only and fast), drives the
student's functions with it, and returns plain data. The parent runs the same probe on the
reference module and compares.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn
from torch.optim.optimizer import register_optimizer_step_pre_hook

NUM_CLASSES = 5


def tiny_classifier(seed: int, num_classes: int = NUM_CLASSES, nested_head: bool = False):
    """A small CNN "pretrained classifier" with named stages, deterministic given ``seed``.

    ``stem -> stage1 -> stage2 -> pool -> flatten -> fc`` (``fc`` = ``classifier.1`` with a
    Dropout in front when ``nested_head``), BatchNorm in every stage, 16-d penultimate features.
    Its BatchNorm running statistics are made non-trivial so that eval and train mode differ.
    """
    gen = torch.Generator().manual_seed(seed)

    def block(cin, cout, stride):
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()
        )

    layers = OrderedDict(
        stem=block(3, 8, 1),
        stage1=block(8, 16, 2),
        stage2=block(16, 16, 1),
        pool=nn.AdaptiveAvgPool2d(1),
        flatten=nn.Flatten(),
    )
    if nested_head:
        layers["classifier"] = nn.Sequential(nn.Dropout(0.5), nn.Linear(16, num_classes))
    else:
        layers["fc"] = nn.Linear(16, num_classes)
    model = nn.Sequential(layers)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                noise = torch.randn(tensor.shape, generator=gen) * 0.3
                if name.endswith("running_var"):
                    tensor.copy_(0.5 + noise.abs())
                elif name.endswith("running_mean"):
                    tensor.copy_(noise * 0.3)
                else:
                    tensor.copy_(noise)
    return model.eval()


def _head(nested: bool) -> str:
    return "classifier.1" if nested else "fc"


def _bn_state(model: nn.Module) -> dict:
    return {
        k: v.detach().clone()
        for k, v in model.state_dict().items()
        if "running" in k or "num_batches" in k
    }


# ---- Part 1 ------------------------------------------------------------------------------------


def feature_extractor(module, seed: int, images: torch.Tensor, nested: bool = False) -> dict:
    """``make_feature_extractor`` on the tiny classifier: its output, frozen, eval, a copy."""
    model = tiny_classifier(seed, nested_head=nested).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    extractor = module.make_feature_extractor(model, _head(nested))
    if not isinstance(extractor, nn.Module):
        raise TypeError(f"make_feature_extractor returned {type(extractor).__name__}")
    with torch.no_grad():
        feats = extractor(images)  # [N, 16]
    original_intact = all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    return {
        "features": feats.detach(),
        "all_frozen": all(not p.requires_grad for p in extractor.parameters()),
        "num_params": sum(1 for _ in extractor.parameters()),
        "all_eval": all(not m.training for m in extractor.modules()),
        "original_untouched": bool(
            original_intact
            and isinstance(model.get_submodule(_head(nested)), nn.Linear)
            and all(p.requires_grad for p in model.parameters())
        ),
    }


def extract(module, seed: int, images: torch.Tensor, stages: list | None, batch_size: int) -> dict:
    """``extract_features`` with a trusted extractor (the tiny classifier without ``fc``)."""
    model = tiny_classifier(seed)
    model.fc = nn.Identity()
    model.train()  # extract_features must switch to eval itself, and restore the flag
    torch.set_grad_enabled(True)
    out = module.extract_features(model, images, batch_size=batch_size, stages=stages)
    values = out if isinstance(out, dict) else {"output": out}
    if not all(isinstance(v, torch.Tensor) for v in values.values()):
        raise TypeError("extract_features must return a tensor, or a dict of tensors")
    return {
        "values": {k: v.detach() for k, v in values.items()},
        "requires_grad": any(v.requires_grad for v in values.values()),
        "is_dict": isinstance(out, dict),
        "restored_training": model.training,
    }


# ---- Part 2 ------------------------------------------------------------------------------------


def head_replaced(module, seed: int, num_classes: int, gen_seed: int, nested: bool = False) -> dict:
    model = tiny_classifier(seed, nested_head=nested)
    old = model.get_submodule(_head(nested))
    gen = torch.Generator().manual_seed(gen_seed)
    head = module.replace_head(model, num_classes, _head(nested), generator=gen)
    new = model.get_submodule(_head(nested))
    return {
        "weight": new.weight.detach().clone(),
        "bias": new.bias.detach().clone(),
        "returned_is_head": head is new,
        "is_new_module": new is not old,
        "requires_grad": new.weight.requires_grad and new.bias.requires_grad,
        "logits_shape": list(model(torch.zeros(2, 3, 8, 8)).shape),
    }


def param_group_settings(
    module, seed: int, freeze_stage: str | None, lr: float, scale: float
) -> dict:
    model = tiny_classifier(seed)
    if freeze_stage:
        for name, p in model.named_parameters():  # trusted freezing, not the student's
            if name.startswith(("stem.", freeze_stage + ".")):
                p.requires_grad_(False)
    names = {id(p): n for n, p in model.named_parameters()}
    groups = module.param_groups(model, "fc", lr, scale, 1e-4)
    out = []
    for g in groups:
        out.append(
            {
                "name": g.get("name"),
                "params": [names.get(id(p), "<not a parameter of the model>") for p in g["params"]],
                "lr": float(g["lr"]),
                "weight_decay": float(g.get("weight_decay", 0.0)),
            }
        )
    # the groups must be usable by an optimizer as they are
    torch.optim.SGD([g for g in groups if len(list(g["params"]))], lr=lr)
    return {"groups": out}


def frozen_up_to(module, seed: int, stage: str) -> dict:
    model = tiny_classifier(seed)
    returned = module.freeze_up_to(model, stage)
    return {
        "returned": list(returned) if returned is not None else None,
        "requires_grad": {n: bool(p.requires_grad) for n, p in model.named_parameters()},
    }


def bn_eval(module, seed: int, images: torch.Tensor) -> dict:
    """``set_bn_eval`` after ``model.train()``: BN frozen, the rest still training, one step."""
    model = tiny_classifier(seed, nested_head=True)
    model.train()
    count = module.set_bn_eval(model)
    before = _bn_state(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = model(images).logsumexp(dim=1).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    after = _bn_state(model)
    return {
        "count": count,
        "bn_training": [m.training for m in model.modules() if isinstance(m, nn.BatchNorm2d)],
        "dropout_training": model.classifier[0].training,
        "stats_unchanged": all(torch.equal(before[k], after[k]) for k in before),
        "affine_moved": not torch.equal(
            model.stem[1].weight.detach(), tiny_classifier(seed, nested_head=True).stem[1].weight
        ),
    }


def two_stage(module, seed: int, images: torch.Tensor, labels: torch.Tensor, freeze: bool) -> dict:
    """``two_stage_finetune`` on the tiny classifier with a new 3-class head.

    ``"rates"``: every optimiser step's learning rate per parameter group, read just before the
    step (a global step pre-hook), so the schedule is checked exactly, not through the weights.
    """
    torch.manual_seed(seed)
    model = tiny_classifier(seed)
    model.fc = nn.Linear(16, 3)
    if freeze:
        for name, p in model.named_parameters():
            if name.startswith("stem."):
                p.requires_grad_(False)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    gen = torch.Generator().manual_seed(seed)
    rates: list[list[float]] = []
    hook = register_optimizer_step_pre_hook(
        lambda opt, args, kwargs: rates.append([float(g["lr"]) for g in opt.param_groups])
    )
    try:
        losses = module.two_stage_finetune(
            model,
            images,
            labels,
            head_name="fc",
            lr=0.05,
            backbone_lr_scale=0.1,
            epochs=2,
            batch_size=8,
            weight_decay=0.0,
            bn_eval=True,
            probe_steps=50,
            generator=gen,
        )
    finally:
        hook.remove()
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return {
        "losses": [float(v) for v in losses],
        "rates": rates,
        "state": state,
        "changed": {k: not torch.equal(before[k], state[k]) for k in state},
    }
