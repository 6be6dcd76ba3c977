"""Probes for Assignment 6 (CLIP zero-shot).

Each probe runs as ``fn(student_module, *args)`` in a grading worker: it builds what cannot
cross the worker boundary itself (the vocabulary, tiny models, a text encoder given as a
lookup table, a generator), drives the student's code and returns plain data. The parent runs
the same probe on the reference module (public tests: the value recorded in
``expected_public.agv``), or checks the returned values against properties it computes itself.

The test of the text encoder replaces ``causal_mask`` by a stand-in while it runs (and puts it
back afterwards): a mask that lets each position see itself only, stricter than the causal one,
so that the encoder is graded on its own (a wrong ``causal_mask`` costs the tests of the mask)
and tokens after the end-of-text token still cannot reach it. Nothing here solves a part of the
assignment.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn as nn

from replearn import captions
from replearn.captions import Vocab
from replearn.data import as_float_images
from replearn.recipes import clip_zero_shot as recipe

TEXT = dict(embed_dim=8, context_length=12, width=16, depth=2, heads=2)  # the graded tiny tower
SMOKE = dict(embed_dim=16, context_length=12, width=16, depth=1, heads=2)
SMOKE_WIDTHS = (8, 16, 16, 16)  # the smoke-train image tower


def stand_in_attention_mask(length, device=None, dtype=torch.float32) -> torch.Tensor:
    """Stands in for ``causal_mask``: 0 on the diagonal, ``-inf`` everywhere else ``[T, T]``."""
    mask = torch.full((length, length), float("-inf"), device=device, dtype=dtype)
    return mask.fill_diagonal_(0.0)


STAND_INS = {"causal_mask": stand_in_attention_mask}


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


@torch.no_grad()
def reseed(model: nn.Module, seed: int, scale: float = 0.3) -> nn.Module:
    """Overwrite every parameter, in name order, with seeded Gaussian noise (norm weights
    around 1), independent of the order in which the student's code built its layers."""
    generator = torch.Generator().manual_seed(seed)
    for name, param in sorted(model.named_parameters()):
        noise = torch.randn(param.shape, generator=generator) * scale
        param.copy_(
            noise + 1.0 if ("norm" in name or "ln_" in name) and name.endswith("weight") else noise
        )
    return model


def _tensor(value, who: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{who} must return a tensor, got {type(value).__name__}")
    return value


# ---- Part 1: tokenisation ---------------------------------------------------------------------


def tokens_of(module, words: list[str], texts: list[str], context_length: int) -> dict:
    """The student's ``tokenize`` with ``Vocab(words)``."""
    out = module.tokenize(texts, Vocab(words), context_length)
    if not isinstance(out, tuple) or len(out) != 2:
        raise TypeError("tokenize must return (tokens, eot_positions)")
    return {
        "tokens": _tensor(out[0], "tokenize").clone(),
        "eot": _tensor(out[1], "tokenize").clone(),
    }


# ---- Part 2: the text encoder -----------------------------------------------------------------


def text_encoder_forward(
    module, seed: int, vocab_size: int, tokens: torch.Tensor, noisy: torch.Tensor
) -> dict:
    """The student's ``TextEncoder.forward`` on a seeded tiny tower (stand-in mask), on
    ``tokens`` and on ``noisy`` (the same tokens, other ids after each end-of-text token)."""
    with stand_ins(module, "causal_mask"):
        torch.manual_seed(seed)
        encoder = reseed(module.TextEncoder(vocab_size, **TEXT), seed).eval()
        out = _tensor(encoder(tokens), "TextEncoder.forward")
        out.pow(2).sum().backward()
        grad = encoder.token_embedding.weight.grad
        with torch.no_grad():
            again = _tensor(encoder(noisy), "TextEncoder.forward")
    return {
        "out": out.detach().clone(),
        "noisy_out": again.clone(),
        "embedding_grad": None if grad is None else grad.clone(),
    }


# ---- Part 3: the objective --------------------------------------------------------------------


def logit_scale(module, temperature: float, max_scale: float, log_value: float) -> dict:
    """``LogitScale(temperature, max_scale)``: its parameters, its value and gradient at init
    and after setting ``log_scale`` to ``log_value``; the stored value after ``clamp_()``; and
    ``log_scale`` after each of three SGD steps (lr 1e-3) from ``log_value``, the first pushing
    the scale up, the next two pulling it down (``"trace"``)."""
    scale = module.LogitScale(temperature, max_scale)
    names = sorted(name for name, _ in scale.named_parameters())
    if names != ["log_scale"]:
        raise TypeError(f"LogitScale must hold exactly one parameter named log_scale, has {names}")
    initial = scale.log_scale.detach().clone()
    out = []
    for value in (None, log_value):
        if value is not None:
            with torch.no_grad():
                scale.log_scale.fill_(value)
        scale.log_scale.grad = None
        result = _tensor(scale(), "LogitScale.forward")
        if result.ndim != 0:
            raise TypeError(
                f"LogitScale.forward must return a 0-d tensor, got shape {tuple(result.shape)}"
            )
        if result.requires_grad:
            result.backward()
        grad = scale.log_scale.grad
        out.append((result.detach().clone(), None if grad is None else grad.clone()))
    scale.clamp_()
    clamped = scale.log_scale.detach().clone()
    with torch.no_grad():
        scale.log_scale.fill_(log_value)
    optimizer = torch.optim.SGD(scale.parameters(), lr=1e-3)
    trace = []
    for sign in (-1.0, 1.0, 1.0):  # loss = sign * scale: -1 wants it larger, +1 smaller
        optimizer.zero_grad()
        (sign * _tensor(scale(), "LogitScale.forward")).backward()
        optimizer.step()
        trace.append(scale.log_scale.detach().clone())
    return {
        "initial_log_scale": initial,
        "scale": out[0][0],
        "grad": out[0][1],
        "set_scale": out[1][0],
        "set_grad": out[1][1],
        "clamped_log_scale": clamped,
        "trace": torch.stack(trace),
    }


def clip_loss_with_grad(
    module, images: torch.Tensor, texts: torch.Tensor, scale: torch.Tensor
) -> dict:
    """The student's ``clip_loss`` and its gradients w.r.t. both feature sets and the scale."""
    leaves = [t.clone().requires_grad_(True) for t in (images, texts, scale)]
    loss = _tensor(module.clip_loss(*leaves), "clip_loss")
    if loss.ndim != 0:
        raise TypeError(f"clip_loss must return a scalar, got shape {tuple(loss.shape)}")
    if loss.requires_grad:
        loss.backward()
    return {
        "output": loss.detach().clone(),
        "grads": [None if t.grad is None else t.grad.clone() for t in leaves],
    }


# ---- Part 4: zero-shot classification ---------------------------------------------------------


def zero_shot_weights(
    module, texts: list[str], embeddings: torch.Tensor, classnames: list[str], templates: list[str]
) -> dict:
    """The student's ``zero_shot_classifier`` with a text encoder that is a lookup table
    ``texts[i] -> embeddings[i]`` (an unknown text raises, naming it)."""
    table = {t: row for t, row in zip(texts, embeddings)}
    calls = []

    def encode(batch: list[str]) -> torch.Tensor:
        missing = [t for t in batch if t not in table]
        if missing:
            raise KeyError(
                f"zero_shot_classifier asked to encode {missing[0]!r}, which is no template filled with a class name"
            )
        calls.append(len(batch))
        return torch.stack([table[t] for t in batch]).clone().requires_grad_(True)  # [M, D]

    weights = _tensor(
        module.zero_shot_classifier(encode, classnames, templates), "zero_shot_classifier"
    )
    return {"weights": weights, "texts_encoded": sum(calls)}


def tiny_open_clip(seed: int):
    """A one-layer open_clip CLIP (ViT-B-32 family, width 32, random weights) + its tokenizer."""
    import open_clip

    torch.manual_seed(seed)
    model = open_clip.model.CLIP(
        embed_dim=32,
        vision_cfg=dict(layers=1, width=32, patch_size=16, image_size=32, head_width=16),
        text_cfg=dict(context_length=77, vocab_size=49408, width=32, heads=2, layers=1),
    ).eval()
    return model, open_clip.get_tokenizer("ViT-B-32")


def open_clip_weights(
    module, seed: int, images: torch.Tensor, classnames: list[str], templates: list[str]
) -> dict:
    """The recipe's ``open_clip_zero_shot`` (the student's classifier and prediction inside) on a
    seeded tiny open_clip model; ``images`` are already normalised ``[N, 3, 32, 32]``."""
    model, tokenizer = tiny_open_clip(seed)
    out = recipe.open_clip_zero_shot(module, model, tokenizer, images, classnames, templates)
    return {
        "weights": _tensor(out["weights"], "zero_shot_classifier").detach().clone(),
        "predictions": _tensor(out["predictions"], "zero_shot_predict").clone(),
    }


# ---- smoke train ------------------------------------------------------------------------------

SMOKE_SEEN = [
    (0, 0, 1, 0),
    (1, 1, 1, 1),
    (2, 2, 1, 2),
    (3, 0, 1, 3),
    (0, 1, 1, 3),
    (1, 2, 1, 0),
    (2, 0, 1, 1),
    (3, 1, 1, 2),
]
SMOKE_TEMPLATE = "a {c}"


def smoke_data(seed: int, n: int = 64):
    """``n`` captioned large shapes of 8 combinations (every colour, shape and position)."""
    return captions.make_shapes(n, SMOKE_SEEN, seed, templates=(SMOKE_TEMPLATE,))


def smoke_train(module, seed: int, steps: int) -> dict:
    """Train a tiny CLIP built from the student's whole module; return weights and losses.

    Adam (lr 3e-3), 64 fixed captioned shapes, full batch. The grader loads the weights into
    the reference's architecture and measures the matching itself on fresh images.
    """
    vocab = captions.shapes_vocab()
    data = smoke_data(seed)
    tokens, _ = module.tokenize(data.captions, vocab, SMOKE["context_length"])
    torch.manual_seed(seed)
    image = module.ImageEncoder(SMOKE["embed_dim"], SMOKE_WIDTHS)
    text = module.TextEncoder(len(vocab), **SMOKE)
    model = module.CLIP(image, text, module.LogitScale()).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    images = as_float_images(data.images)  # [N, C, H, W]
    losses = []
    for _ in range(steps):
        loss = model(images, tokens)["loss"]
        if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
            raise TypeError("clip_loss must return a scalar tensor")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return {"state_dict": state, "losses": losses}
