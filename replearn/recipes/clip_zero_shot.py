"""Assignment 6's experiments: the settings per preset, CLIP on captioned shapes (both towers
learn), a CIFAR image tower aligned to a frozen sentence encoder, their zero-shot and
linear-probe protocols, the student's zero-shot code on a real CLIP from open_clip, and the
``clip`` method of the pretraining entry point (``python -m replearn.pretrain --method clip``).

Functions that build or run the student's parts take the student's module ``clip`` first.
Module letters beyond the package legend: ``M`` prompt templates (or texts to encode).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import torch
import torch.nn as nn
import torch.nn.functional as F

from replearn import augment, captions, distributed
from replearn.captions import Vocab
from replearn.data import ImageData, as_float_images
from replearn.evaluate import PROBE_WEIGHT_DECAY, extract_features, linear_probe
from replearn.recipes.common import PretrainMethod, Run, StepContext, adamw, counted_in_steps
from replearn.train import (
    BudgetCosine,
    History,
    TensorLoader,
    TrainConfig,
    draw,
    pick_device,
    train,
)

__all__ = [
    "OPENAI_MEAN",
    "OPENAI_STD",
    "PRETRAIN_METHODS",
    "CLIPConfig",
    "CaptionAlignedTower",
    "build_shapes_clip",
    "caption_table",
    "cifar_augment",
    "clip_adamw",
    "cifar_zero_shot",
    "heldout_class_ids",
    "linear_probe_accuracy",
    "load_open_clip",
    "open_clip_preprocess",
    "open_clip_text_fn",
    "open_clip_zero_shot",
    "sentence_encoder_fn",
    "shapes_zero_shot",
    "text_encoder_fn",
    "train_cifar_aligned",
    "train_shapes",
]


@dataclass(frozen=True)
class CLIPConfig:
    """The experiment settings of the notebook and the benchmark, per preset.

    Budgets are seconds: ``shapes_s`` to train both towers on captioned shapes,
    ``cifar_s`` to align a CIFAR-10 image tower to the frozen sentence encoder. The CIFAR
    experiment trains on every class but ``cifar_heldout`` and is evaluated zero-shot on those;
    the default holds out one class of each pair that a sentence encoder knows to be close
    (dog-cat, deer-horse, automobile-truck), so language has something to transfer. In
    ``smoke`` and ``cpu-quick`` each budget is spent in a count of optimizer steps instead
    (``shapes_steps``, ``cifar_steps``: what an idle 2-core machine does in those seconds), so
    that a rerun repeats its numbers whatever the load; None keeps the wall clock.
    """

    shapes_s: float
    cifar_s: float
    max_epochs: int
    shapes_steps: int | None = None
    cifar_steps: int | None = None
    n_train_shapes: int = 5000
    n_test_shapes: int = 500
    holdout_fraction: float = 0.25  # of the 96 attribute combinations
    embed_dim: int = 64
    context_length: int = 16  # the longest shapes caption or CIFAR prompt has 12 tokens
    text_width: int = 64
    text_depth: int = 2
    text_heads: int = 4
    image_widths: tuple[int, ...] = (32, 64, 128, 128)
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup: float = 0.05  # fraction of the budget spent warming up
    cifar_heldout: tuple[str, ...] = ("cat", "horse", "truck")
    cifar_widths: tuple[int, ...] = (32, 64, 128, 256)
    cifar_batch_size: int = 128
    cifar_lr: float = 2e-3
    probe_iters: int = 100  # L-BFGS iterations of the linear probe
    checkpoints: bool = False  # train-or-load the runs under checkpoints/

    @staticmethod
    def from_preset(preset) -> CLIPConfig:
        if preset.name == "smoke":
            return CLIPConfig(
                shapes_s=3,
                cifar_s=3,
                max_epochs=1,
                shapes_steps=4,
                cifar_steps=2,
                n_train_shapes=512,
                n_test_shapes=96,
                embed_dim=32,
                text_width=32,
                text_depth=1,
                image_widths=(16, 32, 32, 32),
                cifar_widths=(16, 32, 32, 32),
                batch_size=64,
                cifar_batch_size=64,
                probe_iters=10,
            )
        if preset.name == "cpu-quick":
            # an idle 2-core machine's steps in 60 s each (benchmarks/README.md, notebook 06)
            return CLIPConfig(
                shapes_s=60,
                cifar_s=60,
                shapes_steps=506,
                cifar_steps=541,
                max_epochs=preset.max_epochs,
            )
        # colab: sized to the notebook header's time on a T4 (benchmarks/README.md, "Colab budgets")
        scale = preset.time_scale
        cifar = 100 if preset.name == "colab" else 300
        return CLIPConfig(
            shapes_s=120 * scale,
            cifar_s=cifar * scale,
            max_epochs=1000,
            n_train_shapes=20000,
            batch_size=256,
            cifar_batch_size=256,
            checkpoints=True,
        )


def clip_adamw(parameters: list[nn.Parameter], lr: float, weight_decay: float) -> torch.optim.AdamW:
    """CLIP's AdamW: betas (0.9, 0.98) and eps 1e-6 (Radford et al. 2021, Table 19), no weight
    decay on biases, norms and the temperature (tensors < 2-D)."""
    return adamw(parameters, lr, weight_decay, betas=(0.9, 0.98), eps=1e-6)


def _train(
    step: Callable,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: TensorLoader,
    cfg: CLIPConfig,
    budget_s: float,
    desc: str,
    *,
    steps: int | None,
    progress: bool,
    checkpoint_path: str | Path | None,
) -> History:
    """Both drivers' loop: ``replearn.train.train`` for ``budget_s`` seconds, spent in
    ``steps`` optimizer steps unless None (or ``cfg.max_epochs``), warm-up + cosine over the
    budget, gradient clipping at 5; the model is left in eval mode."""
    config = TrainConfig(
        epochs=cfg.max_epochs,
        budget_s=budget_s,
        progress=progress,
        desc=desc,
        grad_clip=5.0,
        checkpoint_path=str(checkpoint_path) if checkpoint_path else None,
    )
    with counted_in_steps(steps):
        scheduler = BudgetCosine(optimizer, budget_s, warmup=cfg.warmup)
        history = train(step, model, optimizer, loader, config, scheduler=scheduler)
    model.eval()
    return history


# ---- captioned shapes: both towers learn ------------------------------------------------------


def build_shapes_clip(clip: ModuleType, cfg: CLIPConfig, vocab_size: int) -> nn.Module:
    """A fresh ``clip.CLIP`` with ``cfg``'s sizes (seed torch first)."""
    image = clip.ImageEncoder(cfg.embed_dim, cfg.image_widths)
    text = clip.TextEncoder(
        vocab_size,
        cfg.embed_dim,
        cfg.context_length,
        cfg.text_width,
        cfg.text_depth,
        cfg.text_heads,
    )
    return clip.CLIP(image, text)


def train_shapes(
    clip: ModuleType,
    data: captions.ShapesSplit,
    cfg: CLIPConfig,
    *,
    budget_s: float | None = None,
    steps: int | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = False,
    checkpoint_path: str | Path | None = None,
) -> Run:
    """Train both towers with ``clip.clip_loss`` on the captioned shapes of the SEEN combinations.

    AdamW (``cfg.lr``, ``cfg.weight_decay``), warm-up + cosine over the budget, gradient
    clipping at 5. No image augmentation: a flip would swap "left" and "right" and a crop
    would move the shape out of its quadrant, changing what the caption says. The budget:
    ``budget_s`` seconds (default ``cfg.shapes_s``), spent in exactly ``steps`` optimizer
    steps (default ``cfg.shapes_steps`` when ``budget_s`` is the config's; None: wall clock).

    Returns:
        A :class:`~replearn.recipes.Run` (``encoder``: the image tower; ``extra["vocab"]``).
    """
    if budget_s is None:
        budget_s, steps = cfg.shapes_s, cfg.shapes_steps if steps is None else steps
    budget_s = float(budget_s)
    device = pick_device(device)
    vocab = captions.shapes_vocab()
    tokens, _ = clip.tokenize(data.train.captions, vocab, cfg.context_length)  # [N, L]
    torch.manual_seed(seed)
    model = build_shapes_clip(clip, cfg, len(vocab)).to(device)
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = clip_adamw(trained, cfg.lr, cfg.weight_decay)
    batch = min(cfg.batch_size, len(tokens))
    loader = TensorLoader(data.train.images, tokens, batch_size=batch, seed=seed, device=device)

    def step(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        images, batch_tokens = batch  # [N, C, H, W] uint8, [N, L]
        return model(as_float_images(images), batch_tokens)

    history = _train(
        step,
        model,
        optimizer,
        loader,
        cfg,
        budget_s,
        "CLIP shapes",
        steps=steps,
        progress=progress,
        checkpoint_path=checkpoint_path,
    )
    return Run("clip-shapes", model, model.image_encoder, history, {"vocab": vocab})


def text_encoder_fn(
    clip: ModuleType, model: nn.Module, vocab: Vocab
) -> Callable[[list[str]], torch.Tensor]:
    """``texts -> [M, D]`` with the module's ``tokenize`` and the model's text tower (what
    ``clip.zero_shot_classifier`` takes)."""

    def encode(texts: list[str]) -> torch.Tensor:
        device = next(model.parameters()).device
        tokens, _ = clip.tokenize(texts, vocab, model.text_encoder.context_length)  # [M, L]
        was_training = model.training
        model.eval()
        with torch.no_grad():
            out = model.encode_text(tokens.to(device)).float().cpu()  # [M, D]
        model.train(was_training)
        return out

    return encode


def shapes_zero_shot(
    clip: ModuleType,
    model: nn.Module,
    vocab: Vocab,
    data: captions.ShapesSplit,
    templates: Sequence[str] = captions.SHAPES_TEMPLATES,
) -> dict[str, float]:
    """Zero-shot accuracy on the test images, candidates = the captions of ALL 96 combinations.

    An image counts as right when its predicted combination is its own (all four attributes).
    ``unseen``: images of held-out combinations, which no training caption ever described;
    ``seen``: fresh images of training combinations; ``unseen_among_unseen``: held-out images
    with only the 24 held-out captions as candidates; ``attr_<name>``: how often the predicted
    combination of a held-out image has the right value of that attribute. ``chance*`` are the
    accuracies of a uniform guess.
    """
    combos = captions.all_combinations()
    names = [captions.describe(c) for c in combos]
    encode = text_encoder_fn(clip, model, vocab)
    weights = clip.zero_shot_classifier(encode, names, templates)  # [D, 96]
    table = torch.tensor(combos)  # [96, 4]
    out: dict[str, float] = {}
    for split, part in (("seen", data.test_seen), ("unseen", data.test_unseen)):
        features = extract_features(model.image_encoder, part.images)  # [N, D]
        predicted = table[clip.zero_shot_predict(features, weights)]  # [N, 4]
        out[split] = float((predicted == part.attributes).all(dim=1).float().mean())
        if split == "unseen":
            for a, attribute in enumerate(captions.ATTRIBUTES):
                right = predicted[:, a] == part.attributes[:, a]  # [N]
                out[f"attr_{attribute}"] = float(right.float().mean())
            unseen_ids = [combos.index(c) for c in data.unseen]
            local = clip.zero_shot_predict(features, weights[:, unseen_ids])  # [N]
            right = table[unseen_ids][local] == part.attributes  # [N, 4]
            out["unseen_among_unseen"] = float(right.all(dim=1).float().mean())
    out["chance"] = 1.0 / len(combos)
    out["chance_unseen_among_unseen"] = 1.0 / len(data.unseen)
    return out


# ---- CIFAR-10: an image tower aligned to a frozen sentence encoder ---------------------------


def sentence_encoder_fn(texts: list[str]) -> torch.Tensor:
    """The frozen text side of :func:`train_cifar_aligned`: ``texts -> [M, 384]``
    (all-MiniLM-L6-v2, ``replearn.captions.sentence_embeddings``)."""
    return captions.sentence_embeddings(texts)


def caption_table(
    classnames: Sequence[str], templates: Sequence[str] | None = None
) -> torch.Tensor:
    """Frozen sentence embeddings of every template x class name: ``[K, M, 384]``.

    Under torchrun, rank 0 embeds and broadcasts, so that every rank trains against the same
    numbers even where thread counts make float sums differ.
    """
    templates = list(captions.CIFAR_TEMPLATES if templates is None else templates)
    table = None
    if distributed.get_rank() == 0:
        texts = captions.prompts(classnames, templates)  # [K * M] class by class
        table = sentence_encoder_fn(texts).view(len(classnames), len(templates), -1)
    return distributed.broadcast_object(table)  # [K, M, 384]


def cifar_augment(generator: torch.Generator | None = None):
    """Light augmentation for the CIFAR image tower: random resized crop (60-100%) + flip."""

    def view(x: torch.Tensor) -> torch.Tensor:
        size = (x.shape[2], x.shape[3])
        x = augment.random_resized_crop(x, size, scale=(0.6, 1.0), generator=generator)
        return augment.random_horizontal_flip(x, generator=generator)  # [N, C, H, W]

    return view


def heldout_class_ids(classnames: Sequence[str], heldout: Sequence[str]) -> list[int]:
    """Label ids of the ``heldout`` class names, the classes CLIP never sees a caption of."""
    names = list(classnames)
    unknown = [name for name in heldout if name not in names]
    if unknown:
        raise ValueError(
            f"held-out classes {unknown} are not classes of this dataset ({names}); choose "
            "among them (on the command line: --set cifar_heldout=NAME,NAME, or none with "
            "--set cifar_heldout=)"
        )
    return [names.index(name) for name in heldout]


def train_cifar_aligned(
    clip: ModuleType,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    cfg: CLIPConfig,
    *,
    classnames: Sequence[str] = captions.CIFAR10_CLASSES,
    templates: Sequence[str] = captions.CIFAR_TEMPLATES,
    budget_s: float | None = None,
    steps: int | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = False,
    checkpoint_path: str | Path | None = None,
) -> Run:
    """Train an image tower to match frozen sentence embeddings of captions of its class.

    Only images of the classes NOT in ``cfg.cifar_heldout`` are used. Each image gets, at each
    step, the caption "<template> filled with its class name" for a template drawn at random,
    embedded by the frozen sentence encoder (:func:`sentence_encoder_fn`, 384-d);
    ``clip.clip_loss`` pulls the image embedding (``clip.ImageEncoder`` projected to 384)
    towards it. The text side never learns, so the names of the held-out classes keep the place
    the sentence encoder gave them. The budget: ``budget_s`` seconds (default ``cfg.cifar_s``),
    spent in exactly ``steps`` optimizer steps (default ``cfg.cifar_steps`` when ``budget_s``
    is the config's; None: wall clock).

    Returns:
        A :class:`~replearn.recipes.Run` (``model``: ``clip.FrozenTextCLIP``; ``encoder``: its
        image tower; ``extra["heldout"]``).
    """
    if budget_s is None:
        budget_s, steps = cfg.cifar_s, cfg.cifar_steps if steps is None else steps
    budget_s = float(budget_s)
    device = pick_device(device)
    heldout = heldout_class_ids(classnames, cfg.cifar_heldout)
    keep = ~torch.isin(train_y, torch.tensor(heldout, dtype=torch.int64))  # [N] seen classes
    images, labels = train_x[keep], train_y[keep]  # [N', C, H, W], [N']
    table = caption_table(classnames, templates).to(device)  # [K, M, 384]
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)  # CPU: the same draws on any device
    model = clip.FrozenTextCLIP(clip.ImageEncoder(table.shape[-1], cfg.cifar_widths)).to(device)
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = clip_adamw(trained, cfg.cifar_lr, cfg.weight_decay)
    batch = min(cfg.cifar_batch_size, len(images))
    loader = TensorLoader(images, labels, batch_size=batch, seed=seed, device=device)
    view = cifar_augment(generator)

    def step(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> dict:
        x, y = batch  # [N, C, H, W] uint8, [N]
        which = draw(torch.randint, table.shape[1], (len(y),), generator=generator, device=device)
        return model(view(as_float_images(x)), table[y, which])  # texts [N, 384]

    desc = "CLIP CIFAR (frozen text)"
    history = _train(
        step,
        model,
        optimizer,
        loader,
        cfg,
        budget_s,
        desc,
        steps=steps,
        progress=progress,
        checkpoint_path=checkpoint_path,
    )
    extra = {"heldout": list(cfg.cifar_heldout)}
    return Run("clip", model, model.image_encoder, history, extra)


def cifar_zero_shot(
    clip: ModuleType,
    image_encoder: nn.Module,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    heldout: Sequence[str],
    *,
    classnames: Sequence[str] = captions.CIFAR10_CLASSES,
    templates: Sequence[str] = captions.CIFAR_TEMPLATES,
) -> dict[str, float]:
    """Zero-shot accuracies of a tower aligned to the sentence encoder, on the test images.

    ``heldout``: images of the held-out classes, the held-out names as candidates (chance
    ``1/len(heldout)``); ``heldout_among_all``: the same images, all ``K`` names as candidates;
    ``seen``: images of the training classes among the training names; ``all``: every test
    image among all ``K`` names (chance ``1/K``). An empty ``heldout`` gives ``all`` only.
    """
    weights = clip.zero_shot_classifier(
        sentence_encoder_fn, list(classnames), templates
    )  # [384, K]
    features = extract_features(image_encoder, test_x)  # [N, 384]
    held = heldout_class_ids(classnames, heldout)
    seen = [k for k in range(len(classnames)) if k not in held]
    y = test_y.cpu()
    predicted = clip.zero_shot_predict(features, weights)  # [N]
    out: dict[str, float] = {}
    if held:
        for name, candidates in (("heldout", held), ("seen", seen)):
            rows = torch.isin(y, torch.tensor(candidates))  # [N]
            local = clip.zero_shot_predict(features[rows], weights[:, candidates])  # [N']
            out[name] = float((torch.tensor(candidates)[local] == y[rows]).float().mean())
            out[f"chance_{name}"] = 1.0 / len(candidates)
        rows = torch.isin(y, torch.tensor(held))
        out["heldout_among_all"] = float((predicted[rows] == y[rows]).float().mean())
    out["all"] = float((predicted == y).float().mean())
    out["chance_all"] = 1.0 / len(classnames)
    return out


class _BackboneFeatures(nn.Module):
    """The image tower's pooled backbone features (before the projection), for a probe."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder.features(images)  # [N, feature_dim]


def linear_probe_accuracy(
    image_encoder: nn.Module,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    cfg: CLIPConfig | None = None,
) -> float:
    """Test accuracy of a linear probe (``replearn.evaluate.linear_probe``) on the frozen
    backbone's pooled features, every class labelled: the supervised ceiling that zero-shot
    is compared with (Radford et al., Sec. 3.1.5 compare zero-shot CLIP with linear probes)."""
    features = _BackboneFeatures(image_encoder)
    train_feats = extract_features(features, train_x)  # [N, feature_dim]
    test_feats = extract_features(features, test_x)  # [M, feature_dim]
    iters = cfg.probe_iters if cfg is not None else 100
    probe = linear_probe(
        train_feats, train_y, test_feats, test_y, weight_decay=PROBE_WEIGHT_DECAY, max_iter=iters
    )
    return probe.test_accuracy


# ---- a real CLIP through open_clip -----------------------------------------------------------

# The normalisation OpenAI's CLIP was trained with (open_clip.constants.OPENAI_DATASET_MEAN/STD)
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def load_open_clip(
    name: str = "ViT-B-32", pretrained: str | None = "openai", device: str | torch.device = "cpu"
):
    """``(model, tokenizer)`` of open_clip's ``name``, in eval mode.

    ``pretrained="openai"`` downloads OpenAI's weights (about 350 MB for ViT-B/32; needs the
    network, e.g. on Colab); ``pretrained=None`` builds the same architecture with random
    weights (offline; what the tests use).
    """
    try:
        import open_clip
    except ImportError as err:
        raise ImportError("open_clip is missing: pip install open_clip_torch") from err
    try:
        model, _, _ = open_clip.create_model_and_transforms(
            name, pretrained=pretrained, device=device
        )
    except Exception as err:  # a download failure surfaces as many exception types
        raise RuntimeError(
            f"could not build open_clip {name!r} with pretrained={pretrained!r}: {err}. Loading "
            "pretrained weights needs the network (run the colab preset), or pass "
            "pretrained=None for random weights"
        ) from err
    return model.eval(), open_clip.get_tokenizer(name)


def open_clip_preprocess(images: torch.Tensor, image_size: int = 224) -> torch.Tensor:
    """uint8 or [0, 1] images ``[N, 3, H, W]`` -> ``[N, 3, S, S]`` normalised for OpenAI's CLIP.

    A bicubic resize of the whole (square) image to ``image_size`` and OpenAI's mean and std:
    open_clip's validation transform (resize the short side, centre-crop, normalise) on square
    images, done on tensors (its PIL resize may differ by a few grey levels).
    """
    x = as_float_images(images)  # [N, C, H, W]
    x = F.interpolate(x, size=(image_size, image_size), mode="bicubic", align_corners=False)
    mean = torch.tensor(OPENAI_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_STD, device=x.device).view(1, 3, 1, 1)
    return (x.clamp(0, 1) - mean) / std  # [N, 3, S, S]


def open_clip_text_fn(
    model: nn.Module, tokenizer: Callable[[list[str]], torch.Tensor]
) -> Callable[[list[str]], torch.Tensor]:
    """``texts -> [M, D]``: an open_clip model's normalised text embeddings (what
    ``zero_shot_classifier`` takes), computed as open_clip's ``build_zero_shot_classifier``
    computes them."""

    def encode(texts: list[str]) -> torch.Tensor:
        device = next(model.parameters()).device
        with torch.no_grad():
            return F.normalize(model.encode_text(tokenizer(texts).to(device)), dim=-1)  # [M, D]

    return encode


@torch.no_grad()
def open_clip_zero_shot(
    clip: ModuleType,
    model: nn.Module,
    tokenizer: Callable[[list[str]], torch.Tensor],
    images: torch.Tensor,
    classnames: Sequence[str],
    templates: Sequence[str | Callable[[str], str]],
    batch_size: int = 256,
    image_size: int = 224,
) -> dict[str, torch.Tensor]:
    """The student's ``zero_shot_classifier`` and ``zero_shot_predict`` on an open_clip model.

    The text side is ``model.encode_text(tokenizer(texts))`` normalised, as open_clip's own
    ``build_zero_shot_classifier`` computes it, so ``weights`` must equal that builder's result
    on the same model, class names and templates (the tests check it).

    Args:
        clip: the student's module.
        images: preprocessed ``[N, 3, S, S]`` (:func:`open_clip_preprocess`), or uint8
            ``[N, 3, H, W]``, preprocessed here one batch at a time (all 10,000 CIFAR test
            images at 224 x 224 in float32 would take 6 GB).
        image_size: ``S`` for uint8 images (ViT-B/32: 224).

    Returns:
        ``{"weights": [D, K], "predictions": int64 [N], "image_features": [N, D]}``.
    """
    device = next(model.parameters()).device
    encode = open_clip_text_fn(model, tokenizer)
    weights = clip.zero_shot_classifier(encode, list(classnames), templates)  # [D, K]
    raw = images.dtype == torch.uint8
    chunks = []
    for i in range(0, len(images), batch_size):
        batch = images[i : i + batch_size].to(device)  # [n, 3, H, W]
        batch = open_clip_preprocess(batch, image_size) if raw else batch  # [n, 3, S, S]
        chunks.append(F.normalize(model.encode_image(batch), dim=-1))  # [n, D]
    features = torch.cat(chunks).float()  # [N, D]
    predictions = clip.zero_shot_predict(features, weights).cpu()  # [N]
    return {"weights": weights, "predictions": predictions, "image_features": features.cpu()}


# ---- the pretraining entry point's method (python -m replearn.pretrain --method clip) --------


class CaptionAlignedTower(nn.Module):
    """:func:`train_cifar_aligned`'s model, shaped for DDP and a global-batch loss.

    ``clip`` is the module's ``FrozenTextCLIP`` (its ``ImageEncoder`` and learnable
    ``LogitScale``), the part that learns; ``caption_table`` holds the frozen sentence embeddings
    of every prompt template filled with every class name, ``[K, M, D]``, computed once.
    ``FrozenTextCLIP.forward`` computes the one-process loss itself; here ``forward`` stops
    before the loss and returns what the module's ``clip_loss`` needs, so that the negatives can
    come from every rank while DDP still sees the forward pass.
    """

    def __init__(self, clip: nn.Module, caption_table: torch.Tensor):
        super().__init__()
        if caption_table.ndim != 3:
            raise ValueError(f"caption_table must be [K, M, D], got {tuple(caption_table.shape)}")
        self.clip = clip
        # recomputed from the frozen sentence encoder, so not saved in checkpoints
        self.register_buffer("caption_table", caption_table, persistent=False)  # [K, M, D]

    @property
    def encoder(self) -> nn.Module:
        """The image tower: what transfers (its ``features`` are what a linear probe reads)."""
        return self.clip.image_encoder

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images ``[n, C, H, W]`` in [0, 1] -> (image embeddings ``[n, D]``, logit scale ``[]``)."""
        return self.clip.image_encoder(images), self.clip.logit_scale()  # [n, D], []


def _tensors(data: ImageData, cfg: CLIPConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The training images and labels of every class but the held-out ones."""
    held = heldout_class_ids(data.class_names, cfg.cifar_heldout)
    keep = ~torch.isin(data.y_train, torch.tensor(held, dtype=torch.int64))  # [N]
    return data.x_train[keep], data.y_train[keep]  # [N', C, H, W], [N']


def _build(clip: ModuleType, cfg: CLIPConfig, encoder: None, data: ImageData) -> nn.Module:
    heldout_class_ids(data.class_names, cfg.cifar_heldout)  # fails before the encoder loads
    with torch.random.fork_rng(devices=[]):  # the initial weights depend on the seed alone,
        table = caption_table(data.class_names)  # [K, M, D] not on what loading the encoder draws
    image_encoder = clip.ImageEncoder(table.shape[-1], cfg.cifar_widths, data.image_shape[0])
    return CaptionAlignedTower(clip.FrozenTextCLIP(image_encoder), table)


def _step(ctx: StepContext, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
    """:func:`train_cifar_aligned`'s step with the global batch's negatives.

    Each image's positive is the frozen embedding of a random template filled with its class
    name; the other captions of the GLOBAL batch are the negatives: ``on_global_batch`` gathers
    both sides from every rank, with gradients, and calls the module's ``clip_loss``. The
    template is drawn before the augmentation, from this step's generator, as in
    :func:`train_cifar_aligned`.
    """
    images, labels = batch  # [n, C, H, W] uint8, [n]
    table = ctx.model.caption_table  # [K, M, D]
    which = draw(
        torch.randint, table.shape[1], (len(labels),), generator=ctx.generator, device=labels.device
    )  # [n]
    texts = table[labels, which]  # [n, D] one caption per image
    views = ctx.augment(as_float_images(images), ctx.generator)  # [n, C, H, W]
    image_features, logit_scale = ctx.trained(views)  # [n, D], [] through DDP
    loss = distributed.on_global_batch(ctx.module.clip_loss, (image_features, texts), logit_scale)
    return {"loss": loss, "logit_scale": logit_scale.detach()}


def _evaluate(clip: ModuleType, encoder: nn.Module, data: ImageData, cfg: CLIPConfig) -> dict:
    """The notebook's protocol: a linear probe on the pooled features (every class labelled),
    and zero-shot accuracies with the prompt ensemble (chance is 1 / candidates)."""
    linear = linear_probe_accuracy(
        encoder, data.x_train, data.y_train, data.x_test, data.y_test, cfg
    )
    scores = cifar_zero_shot(
        clip, encoder, data.x_test, data.y_test, cfg.cifar_heldout, classnames=data.class_names
    )
    zero_shot = {f"zero_shot_{k}": v for k, v in scores.items() if not k.startswith("chance")}
    return {"linear": linear, **zero_shot}


PRETRAIN_METHODS = (
    PretrainMethod(
        name="clip",
        module="clip_zero_shot",
        config=lambda clip, preset: CLIPConfig.from_preset(preset),
        budget=lambda cfg: cfg.cifar_s,
        build=_build,
        step=_step,
        optimizer=lambda cfg, parameters: clip_adamw(parameters, cfg.cifar_lr, cfg.weight_decay),
        tensors=_tensors,
        evaluate=_evaluate,
        augment=lambda clip, cfg, images: lambda x, generator=None: cifar_augment(generator)(x),
        backbone=False,
        batch_size=lambda cfg: cfg.cifar_batch_size,
        description="CLIP-style: image tower vs frozen sentence embeddings of captions made "
        "from the labels, CLIP loss over the global batch (--backbone does not apply)",
    ),
)
