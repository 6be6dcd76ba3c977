"""Trusted probes for Assignment 6 (CLIP zero-shot).

Each probe runs as ``fn(student_module, *args)`` in a grading worker: it builds what cannot
cross the worker boundary itself (the vocabulary, tiny models, a text encoder given as a
lookup table, a generator), drives the student's code and returns plain data. The parent runs
the same probe on the reference module, or checks the returned values against the trusted
versions below, which need no solutions (they ship with the public tests).

A probe that grades one part swaps the other student parts it calls for the trusted versions
while it runs (``trusted_parts``), so that one mistake costs only the tests of that part.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from replearn import captions
from replearn.backbones import Block, SmallCNN
from replearn.captions import Vocab

TEXT = dict(embed_dim=8, context_length=12, width=16, depth=2, heads=2)  # the graded tiny tower
SMOKE = dict(embed_dim=16, context_length=12, width=16, depth=1, heads=2)
SMOKE_WIDTHS = (8, 16, 16, 16)  # the smoke-train image tower


# ---- trusted building blocks ----------------------------------------------------------------


def trusted_tokenize(texts, vocab: Vocab, context_length: int):
    tokens = torch.full((len(texts), context_length), vocab.pad_id, dtype=torch.int64)
    eot = torch.empty(len(texts), dtype=torch.int64)
    for i, text in enumerate(texts):
        ids = [vocab.sot_id] + [vocab.index.get(w, vocab.unk_id) for w in vocab.split(text)]
        ids = ids[: context_length - 1] + [vocab.eot_id]
        tokens[i, : len(ids)] = torch.tensor(ids)
        eot[i] = len(ids) - 1
    return tokens, eot


def trusted_causal_mask(length, device=None, dtype=torch.float32):
    return torch.full((length, length), float("-inf"), device=device, dtype=dtype).triu(1)


def trusted_clip_loss(image_features, text_features, logit_scale):
    """Radford et al. (2021), Fig. 3, one row and one column at a time (no shortcuts)."""
    images, texts = F.normalize(image_features, dim=1), F.normalize(text_features, dim=1)
    logits = logit_scale * images @ texts.T  # [N, N]
    n = len(images)
    rows = torch.stack([-torch.log_softmax(logits[i], 0)[i] for i in range(n)]).mean()
    cols = torch.stack([-torch.log_softmax(logits[:, j], 0)[j] for j in range(n)]).mean()
    return (rows + cols) / 2


def trusted_zero_shot_weights(embeddings: torch.Tensor) -> torch.Tensor:
    """``[K, templates, D]`` prompt embeddings -> ``[D, K]`` renormalised means of unit rows."""
    mean = F.normalize(embeddings.double(), dim=-1).mean(dim=1)  # [K, D]
    return F.normalize(mean, dim=-1).T.float()  # [D, K]


class TrustedLogitScale(nn.Module):
    def __init__(self, temperature=0.07, max_scale=100.0):
        super().__init__()
        self.max_scale = max_scale
        self.log_scale = nn.Parameter(torch.tensor(math.log(1 / temperature)))

    def forward(self):
        return self.log_scale.clamp(max=math.log(self.max_scale)).exp()


TRUSTED = {
    "tokenize": trusted_tokenize,
    "causal_mask": trusted_causal_mask,
    "clip_loss": trusted_clip_loss,
    "LogitScale": TrustedLogitScale,
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


class TrustedTextEncoder(nn.Module):
    """The assignment's text tower with its parameter names, written independently."""

    def __init__(self, vocab_size, embed_dim=8, context_length=12, width=16, depth=2, heads=2):
        super().__init__()
        self.eot_id, self.heads = Vocab.eot_id, heads
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.positional_embedding = nn.Parameter(torch.zeros(context_length, width))
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(depth))
        self.ln_final = nn.LayerNorm(width)
        self.text_projection = nn.Linear(width, embed_dim, bias=False)

    def forward(self, tokens):
        n, length = tokens.shape
        x = self.token_embedding(tokens) + self.positional_embedding[:length]
        allowed = torch.ones(length, length, dtype=torch.bool).tril()  # [T, T]
        for block in self.blocks:
            h = block.norm1(x)
            d = h.shape[-1] // self.heads
            q, k, v = block.attn.qkv(h).view(n, length, 3, self.heads, d).permute(2, 0, 3, 1, 4)
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(d)  # [N, h, T, T]
            scores = scores.masked_fill(~allowed, float("-inf"))
            mixed = (scores.softmax(-1) @ v).transpose(1, 2).reshape(n, length, -1)
            x = x + block.attn.proj(mixed)
            x = x + block.mlp(block.norm2(x))
        eot = (tokens == self.eot_id).int().argmax(dim=1)
        return self.text_projection(self.ln_final(x)[torch.arange(n), eot])


class TrustedImageEncoder(nn.Module):
    def __init__(self, embed_dim, widths):
        super().__init__()
        self.backbone = SmallCNN(3, widths)
        self.projection = nn.Linear(self.backbone.feature_dim, embed_dim, bias=False)

    def forward(self, images):
        x = images.float() / 255 if images.dtype == torch.uint8 else images.float()
        return self.projection(self.backbone(x))


class TrustedCLIP(nn.Module):
    """The parent's copy of the smoke-train architecture (names as the assignment's ``CLIP``)."""

    def __init__(self, vocab_size: int):
        super().__init__()
        self.image_encoder = TrustedImageEncoder(SMOKE["embed_dim"], SMOKE_WIDTHS)
        self.text_encoder = TrustedTextEncoder(vocab_size, **SMOKE)
        self.logit_scale = TrustedLogitScale()


@torch.no_grad()
def reseed(model: nn.Module, seed: int, scale: float = 0.3) -> nn.Module:
    """Overwrite every parameter, in name order, with seeded Gaussian noise (norm weights
    around 1), independent of the order in which the student's code built its layers."""
    generator = torch.Generator().manual_seed(seed)
    for name, param in sorted(model.named_parameters()):
        noise = torch.randn(param.shape, generator=generator) * scale
        param.copy_(noise + 1.0 if ("norm" in name or "ln_" in name) and name.endswith("weight") else noise)  # fmt: skip
    return model


def _tensor(value, who: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{who} must return a tensor, got {type(value).__name__}")
    return value


# ---- Part 1: tokenisation ---------------------------------------------------------------------


def tokenize(module, words: list[str], texts: list[str], context_length: int) -> dict:
    """The student's ``tokenize`` with ``Vocab(words)``."""
    out = module.tokenize(texts, Vocab(words), context_length)
    if not isinstance(out, tuple) or len(out) != 2:
        raise TypeError("tokenize must return (tokens, eot_positions)")
    return {"tokens": _tensor(out[0], "tokenize").clone(), "eot": _tensor(out[1], "tokenize").clone()}  # fmt: skip


# ---- Part 2: the text encoder -----------------------------------------------------------------


def text_encoder_forward(module, seed: int, vocab_size: int, tokens: torch.Tensor, noisy: torch.Tensor) -> dict:  # fmt: skip
    """The student's ``TextEncoder.forward`` on a seeded tiny tower (trusted causal mask), on
    ``tokens`` and on ``noisy`` (the same tokens, other ids after each end-of-text token)."""
    with trusted_parts(module, "causal_mask"):
        torch.manual_seed(seed)
        encoder = reseed(module.TextEncoder(vocab_size, **TEXT), seed).eval()
        out = _tensor(encoder(tokens), "TextEncoder.forward")
        out.pow(2).sum().backward()
        grad = encoder.token_embedding.weight.grad
        with torch.no_grad():
            again = _tensor(encoder(noisy), "TextEncoder.forward")
    return {"out": out.detach().clone(), "noisy_out": again.clone(),
            "embedding_grad": None if grad is None else grad.clone()}  # fmt: skip


# ---- Part 3: the objective --------------------------------------------------------------------


def logit_scale(module, temperature: float, max_scale: float, log_value: float) -> dict:
    """``LogitScale(temperature, max_scale)``: its parameters, its value and gradient at init
    and after setting ``log_scale`` to ``log_value``."""
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
            raise TypeError(f"LogitScale.forward must return a 0-d tensor, got shape {tuple(result.shape)}")  # fmt: skip
        if result.requires_grad:
            result.backward()
        grad = scale.log_scale.grad
        out.append((result.detach().clone(), None if grad is None else grad.clone()))
    return {"initial_log_scale": initial, "scale": out[0][0], "grad": out[0][1],
            "set_scale": out[1][0], "set_grad": out[1][1]}  # fmt: skip


def clip_loss_with_grad(module, images: torch.Tensor, texts: torch.Tensor, scale: torch.Tensor) -> dict:  # fmt: skip
    """The student's ``clip_loss`` and its gradients w.r.t. both feature sets and the scale."""
    leaves = [t.clone().requires_grad_(True) for t in (images, texts, scale)]
    loss = _tensor(module.clip_loss(*leaves), "clip_loss")
    if loss.ndim != 0:
        raise TypeError(f"clip_loss must return a scalar, got shape {tuple(loss.shape)}")
    if loss.requires_grad:
        loss.backward()
    return {"output": loss.detach().clone(),
            "grads": [None if t.grad is None else t.grad.clone() for t in leaves]}  # fmt: skip


# ---- Part 4: zero-shot classification ---------------------------------------------------------


def zero_shot_weights(module, texts: list[str], embeddings: torch.Tensor, classnames: list[str], templates: list[str]) -> dict:  # fmt: skip
    """The student's ``zero_shot_classifier`` with a text encoder that is a lookup table
    ``texts[i] -> embeddings[i]`` (an unknown text raises, naming it)."""
    table = {t: row for t, row in zip(texts, embeddings)}
    calls = []

    def encode(batch: list[str]) -> torch.Tensor:
        missing = [t for t in batch if t not in table]
        if missing:
            raise KeyError(f"zero_shot_classifier asked to encode {missing[0]!r}, which is no template filled with a class name")  # fmt: skip
        calls.append(len(batch))
        return torch.stack([table[t] for t in batch]).clone().requires_grad_(True)  # [M, D]

    weights = _tensor(module.zero_shot_classifier(encode, classnames, templates), "zero_shot_classifier")  # fmt: skip
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


def open_clip_weights(module, seed: int, images: torch.Tensor, classnames: list[str], templates: list[str]) -> dict:  # fmt: skip
    """The given ``open_clip_zero_shot`` (the student's classifier and prediction inside) on a
    seeded tiny open_clip model; ``images`` are already normalised ``[N, 3, 32, 32]``."""
    model, tokenizer = tiny_open_clip(seed)
    out = module.open_clip_zero_shot(model, tokenizer, images, classnames, templates)
    return {"weights": _tensor(out["weights"], "zero_shot_classifier").detach().clone(),
            "predictions": _tensor(out["predictions"], "zero_shot_predict").clone()}  # fmt: skip


# ---- smoke train ------------------------------------------------------------------------------

SMOKE_SEEN = [(0, 0, 1, 0), (1, 1, 1, 1), (2, 2, 1, 2), (3, 0, 1, 3), (0, 1, 1, 3), (1, 2, 1, 0),
              (2, 0, 1, 1), (3, 1, 1, 2)]  # fmt: skip
SMOKE_TEMPLATE = "a {c}"


def smoke_data(seed: int, n: int = 64):
    """``n`` captioned large shapes of 8 combinations (every colour, shape and position)."""
    return captions.make_shapes(n, SMOKE_SEEN, seed, templates=(SMOKE_TEMPLATE,))


def smoke_train(module, seed: int, steps: int) -> dict:
    """Train a tiny CLIP built from the student's whole module; return weights and losses.

    Adam (lr 3e-3), 64 fixed captioned shapes, full batch. The parent loads the weights into
    its own architecture and measures the matching itself on fresh images.
    """
    vocab = captions.shapes_vocab()
    data = smoke_data(seed)
    tokens, _ = module.tokenize(data.captions, vocab, SMOKE["context_length"])
    torch.manual_seed(seed)
    image = module.ImageEncoder(SMOKE["embed_dim"], SMOKE_WIDTHS)
    text = module.TextEncoder(len(vocab), **SMOKE)
    model = module.CLIP(image, text, module.LogitScale()).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    images = data.images.float() / 255
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


@torch.no_grad()
def heldout_matching(model: TrustedCLIP, seed: int) -> dict:
    """Trusted scores of ``model`` on FRESH images of the smoke combinations: the CLIP loss on
    a batch of 32 image-caption pairs and the zero-shot accuracy among the 8 captions."""
    model.eval()
    vocab = captions.shapes_vocab()
    data = smoke_data(seed + 1000, 32)
    tokens, _ = trusted_tokenize(data.captions, vocab, SMOKE["context_length"])
    images = model.image_encoder(data.images)  # [32, D]
    loss = float(trusted_clip_loss(images, model.text_encoder(tokens), model.logit_scale()))
    names = [captions.caption(c, SMOKE_TEMPLATE) for c in SMOKE_SEEN]
    class_tokens, _ = trusted_tokenize(names, vocab, SMOKE["context_length"])
    weights = F.normalize(model.text_encoder(class_tokens), dim=-1).T  # [D, 8]
    predicted = (F.normalize(images, dim=-1) @ weights).argmax(dim=1)  # [32]
    accuracy = float((predicted == data.combination_ids).float().mean())
    return {"loss": loss, "accuracy": accuracy}
