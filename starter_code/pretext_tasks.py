# Generated from solutions/pretext_tasks.py by `python -m instructor.release starter`.
# Course authors: edit solutions/pretext_tasks.py, never this file. Students: keep the names
# and signatures as they are, and replace each `raise NotImplementedError(...)` with your code.
"""Assignment 3, part I: discriminative pretext tasks.

"Self-Supervised Learning: Model is trained to predict some naturally-occurring signal in the
raw data rather than human annotations" (lecture). A *discriminative* pretext task turns that
signal into a classification problem that the data labels for free. This module builds four of
them, in the lecture's order of ideas, on one shared encoder (``replearn.backbones.SmallCNN``) so
that their features can be compared under one protocol:

1. **Rotation prediction** (Gidaris, Singh, Komodakis, ICLR 2018): every image is shown at 0, 90,
   180 and 270 degrees and a 4-way classifier says which (:func:`rotation_batch`,
   :func:`rotation_loss`).
2. **Context prediction** (Doersch, Gupta, Efros, ICCV 2015): a centre patch and one of its eight
   neighbours, cut with a gap and jitter, go through a Siamese network that predicts where the
   neighbour was (:func:`sample_context_pairs`, :class:`SiameseContextNet`).
3. **Jigsaw puzzles** (Noroozi & Favaro, ECCV 2016): nine tiles shuffled by one of a fixed set of
   permutations that are far apart in Hamming distance; the network names the permutation
   (:func:`hamming_permutation_set`, :func:`jigsaw_tiles`, :func:`shuffle_tiles`,
   :class:`JigsawNet`).
4. **Exemplar CNN** (Dosovitskiy et al., NeurIPS 2014): every seed image is its own class, and the
   network must recognise it under heavy augmentation (:func:`exemplar_dataset`,
   :func:`exemplar_classifier`); the final layer grows with the number of seeds.

Below the student parts (marked "Given") are the experiment settings per preset, the training
driver that runs every task through ``replearn.train.train``, and the evaluation helpers (block-
wise kNN and linear probes on whole images, patch-grid features, the pretext confusion matrix, a
non-linear probe for the GPU presets).

Shapes follow the package legend: ``N`` images, ``C, H, W`` channels and size, ``D`` feature
width, ``K`` number of classes (rotations, positions, permutations or seeds: said where),
``T`` tiles per puzzle, ``p`` patch side. The parts you write sit between ``BEGIN SOLUTION`` and
``END SOLUTION``; everything else is given.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from replearn import augment
from replearn.backbones import ConvBackbone, SmallCNN
from replearn.data import to_float
from replearn.evaluate import knn_accuracy, linear_probe
from replearn.train import BudgetCosine, History, TensorLoader, TrainConfig, draw, train


def hello() -> str:
    """Import check: the notebook calls this first to show which file it loaded."""
    return "pretext_tasks: ready"


class PretextClassifier(nn.Module):
    """An encoder followed by one linear layer: the shape of every single-input pretext model.

    ``encoder`` maps images ``[N, C, H, W]`` to features ``[N, D]`` (``SmallCNN`` pools over
    space); ``head`` maps them to ``num_classes`` logits (4 rotations, N exemplar seeds, or 10
    CIFAR classes for the supervised baseline). After pretraining the head is thrown away and
    ``encoder`` is what transfers.
    """

    def __init__(self, encoder: ConvBackbone, num_classes: int):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got {num_classes}")
        self.encoder = encoder
        self.head = nn.Linear(encoder.feature_dim, int(num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))  # [N, D] -> [N, K]


# ==============================================================================================
# Part 1. Rotation prediction (RotNet)
# ==============================================================================================


def rotation_batch(
    images: torch.Tensor, rotations: Sequence[int] = (0, 1, 2, 3)
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image at every rotation: a batch of ``R * N`` images and their rotation labels.

    Gidaris et al. (2018): "we propose to learn image features by training ConvNets to recognize
    the 2d rotation that is applied to the image that it gets as input". Their CIFAR recipe feeds
    all four rotated copies of each image in the same batch, which the paper found better than
    sampling one rotation per image.

    Args:
        images: ``[N, C, H, W]`` float, square (``H == W``, so that every rotation has one shape).
        rotations: the quarter turns to use, counter-clockwise as ``torch.rot90`` turns
            ``dims=(2, 3)`` (``(0, 1, 2, 3)`` = 0, 90, 180, 270 degrees; ``(0, 2)`` is the paper's
            two-rotation ablation). Distinct values in ``0..3``.

    Returns:
        ``(rotated, labels)``: ``[R * N, C, H, W]`` and int64 ``[R * N]``, **rotation-major**:
        rows ``r * N .. r * N + N - 1`` are all images turned by ``rotations[r]``, in their
        input order, with label ``r`` (the index into ``rotations``, so labels are ``0..R-1``).

    Raises:
        ValueError: non-square images, or rotations that are not distinct values in 0..3.
    """
    raise NotImplementedError("Implement rotation_batch: see its docstring")


def rotation_loss(
    model: nn.Module, images: torch.Tensor, rotations: Sequence[int] = (0, 1, 2, 3)
) -> dict[str, torch.Tensor]:
    """The RotNet objective on one batch: cross-entropy of predicting the rotation.

    Build the rotated batch with :func:`rotation_batch`, classify it with ``model`` (images
    ``[R*N, C, H, W]`` -> logits ``[R*N, R]``) and average the cross-entropy over all ``R * N``
    rotated images (Gidaris et al., 2018, Sec. 2: the model is trained with the cross-entropy
    over the rotation classes).

    Returns:
        ``{"loss": scalar tensor with gradients, "acc": scalar tensor without}``: the loss to
        backpropagate and the fraction of rotations predicted correctly.
    """
    raise NotImplementedError("Implement rotation_loss: see its docstring")


# ==============================================================================================
# Part 2. Context prediction: the relative position of two patches
# ==============================================================================================

# The eight neighbours of the centre cell of a 3x3 grid, as (row, column) offsets, in reading
# order. Label i means "the second patch sits at NEIGHBOUR_OFFSETS[i] from the centre patch":
#   0 1 2
#   3 . 4
#   5 6 7
NEIGHBOUR_OFFSETS = torch.tensor(
    [[-1, -1], [-1, 0], [-1, 1], [0, -1], [0, 1], [1, -1], [1, 0], [1, 1]]
)  # [8, 2]


def crop_patches(
    images: torch.Tensor, top: torch.Tensor, left: torch.Tensor, size: int
) -> torch.Tensor:
    """Cut one ``size x size`` patch per image, at its own corner: a batched, exact crop.

    Args:
        images: ``[N, C, H, W]``. top, left: int64 ``[N]``, the patch's upper-left pixel.

    Returns:
        ``[N, C, size, size]`` with ``out[n] = images[n, :, top[n]:top[n]+size,
        left[n]:left[n]+size]`` (a copy; pixels are not interpolated).
    """
    n, _, height, width = images.shape
    top, left = top.to(images.device).long(), left.to(images.device).long()
    if top.shape != (n,) or left.shape != (n,):
        raise ValueError(f"top and left must be [N] = [{n}], got {tuple(top.shape)}")
    if bool((top < 0).any() or (left < 0).any() or (top + size > height).any()) or bool(
        (left + size > width).any()
    ):
        raise ValueError(f"a {size}x{size} patch would leave the {height}x{width} image")
    steps = torch.arange(size, device=images.device)  # [p]
    rows = (top[:, None] + steps)[:, :, None]  # [N, p, 1]
    cols = (left[:, None] + steps)[:, None, :]  # [N, 1, p]
    batch = torch.arange(n, device=images.device)[:, None, None]  # [N, 1, 1]
    patches = images.permute(0, 2, 3, 1)[batch, rows, cols]  # [N, p, p, C]
    return patches.permute(0, 3, 1, 2).contiguous()  # [N, C, p, p]


def sample_context_pairs(
    images: torch.Tensor,
    patch: int = 8,
    gap: int = 3,
    jitter: int = 1,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One (centre patch, neighbour patch, relative position) example per image.

    Doersch et al. (2015): "Given only a large, unlabeled image collection, we extract random
    pairs of patches from each image and train a convolutional neural net to predict the
    position of the second patch relative to the first." Two precautions against shortcuts
    that solve the task without recognising anything: a gap between the patches (so that lines and textures cannot simply be
    continued across the boundary) and a random jitter of every patch (so that the exact
    alignment of the grid gives nothing away). Their patches were 96 px with a 48 px gap and
    up to 7 px of jitter; on 32 px CIFAR images we use 8 px patches, a 3 px gap and 1 px.

    The geometry: a 3x3 grid of ``patch``-sized cells whose upper-left corners are
    ``stride = patch + gap`` apart, spanning ``extent = 3 * patch + 2 * gap`` pixels, is placed
    at a random position such that even a jittered patch stays inside the image. The centre
    patch is grid cell (1, 1), the neighbour the cell at ``NEIGHBOUR_OFFSETS[label]`` from it,
    and each of the two patches is then shifted by its own jitter ``(dy, dx)``, each in
    ``-jitter..jitter``.

    Random draws, from ``generator`` and in this order (so that a seeded generator gives the
    same pairs as the reference), where the generator lives (the course's rule,
    ``replearn.train.draw``, imported here: the images may be on a GPU while the generator is
    the course's CPU generator; the drawn positions can stay on the CPU):

    1. grid top ``[N]``: ``jitter + torch.randint(H - extent - 2 * jitter + 1, (N,))``;
    2. grid left ``[N]``: the same with ``W``;
    3. labels ``[N]``: ``torch.randint(8, (N,))``;
    4. jitters ``[N, 2, 2]``: ``torch.randint(2 * jitter + 1, (N, 2, 2)) - jitter``, indexed
       ``[n, patch (0 centre, 1 neighbour), axis (0 rows, 1 columns)]``.

    Args:
        images: ``[N, C, H, W]``.
        patch, gap, jitter: sizes in pixels (``jitter < gap / 2`` keeps the patches apart).
        generator: the source of randomness (``None``: torch's global generator).

    Returns:
        ``(centre, neighbour, labels, corners)``: ``[N, C, p, p]``, ``[N, C, p, p]``, int64
        ``[N]`` in ``0..7``, and int64 ``[N, 2, 2]``, the (top, left) pixel of the centre
        (``corners[:, 0]``) and of the neighbour (``corners[:, 1]``) patch.

    Raises:
        ValueError: the jittered grid does not fit in the image, or bad sizes.
    """
    raise NotImplementedError("Implement sample_context_pairs: see its docstring")


class SiameseContextNet(nn.Module):
    """Two patches through ONE shared trunk, features concatenated, an 8-way classifier on top.

    Doersch et al. (2015) process each patch with its own copy of an AlexNet-style network,
    the copies tied (the same weights) up to ``fc6``, and fuse the two ``fc6`` outputs. Here the
    trunk is the shared encoder (``SmallCNN``, ``[N, C, p, p] -> [N, D]``) and ``pair_head`` the
    fusion layers (``[N, 2D] -> [N, 8]``). Weight *sharing* means the same module (the same
    parameters) encodes both patches: one ``self.trunk``, never a copy of it.
    """

    def __init__(self, trunk: ConvBackbone, hidden: int = 256, num_positions: int = 8):
        super().__init__()
        self.trunk = trunk
        self.pair_head = nn.Sequential(
            nn.Linear(2 * trunk.feature_dim, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, num_positions),
        )

    def forward(self, centre: torch.Tensor, neighbour: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, 8]`` of the neighbour's position, from ``[N, C, p, p]`` patch pairs.

        Encode both patches with ``self.trunk`` (one call on the two batches stacked, or two
        calls: either way the same parameters), concatenate the centre's features and then the
        neighbour's (``[N, 2D]``, in that order), and apply ``self.pair_head``.
        """
        raise NotImplementedError("Implement SiameseContextNet.forward: see its docstring")


# ==============================================================================================
# Part 3. Jigsaw puzzles
# ==============================================================================================


def hamming_permutation_set(
    num_permutations: int,
    num_tiles: int = 9,
    generator: torch.Generator | None = None,
    pool_size: int | None = None,
) -> torch.Tensor:
    """A set of permutations of ``0..T-1`` chosen greedily to be far apart in Hamming distance.

    Noroozi & Favaro (2016) predict *which* permutation shuffled the tiles, out of a fixed set,
    and found that the set matters: sets whose permutations are farther apart in Hamming
    distance transferred better (their ablation of the permutation set), because two nearly
    identical permutations make an ambiguous, uninformative task. Their Algorithm 1 starts from
    a random permutation and repeatedly adds the candidate with the largest *summed* distance to
    the permutations chosen so far. We use the max-min (farthest-point) rule, which guarantees
    the minimum distance directly: repeatedly add the candidate whose distance to its *nearest*
    chosen permutation is largest.

    The greedy loop, exactly (so that a seeded generator gives the reference's set):

    1. candidates: all ``T!`` permutations in lexicographic order (``itertools.permutations``),
       or, when ``pool_size`` is given, ``pool_size`` random permutations drawn as
       ``torch.stack([torch.randperm(T, generator=generator) for _ in range(pool_size)])``;
    2. first pick: candidate ``torch.randint(len(candidates), (1,), generator=generator)``;
    3. keep ``nearest[c]``, the Hamming distance (number of positions that differ) from
       candidate ``c`` to its closest chosen permutation, and ``total[c]``, the summed distance
       to all chosen ones; after each pick update both with the distances to the new pick;
    4. next pick: the candidate with the largest ``nearest``; ties go to the largest ``total``
       (the paper's criterion), then to the lowest index. Chosen candidates have ``nearest`` 0
       and are never picked again while an unchosen candidate is left.

    All ``9! = 362,880`` candidates take 3 MB as int8 and each pick costs one pass over them,
    so 100 permutations take well under a second; ``pool_size`` is for larger puzzles
    (``4 x 4`` has ``16!`` permutations).

    Returns:
        int64 ``[P, T]``, row ``i`` the ``i``-th chosen permutation (every row is a
        permutation of ``0..T-1``; no two rows are equal).

    Raises:
        ValueError: more permutations asked for than there are candidates, or bad sizes.
    """
    raise NotImplementedError("Implement hamming_permutation_set: see its docstring")


def min_hamming_distance(permutations: torch.Tensor) -> int:
    """The smallest Hamming distance between two different rows of ``[P, T]`` (P >= 2)."""
    if permutations.ndim != 2 or len(permutations) < 2:
        raise ValueError(f"need a [P, T] set with P >= 2, got {tuple(permutations.shape)}")
    distance = (permutations[:, None, :] != permutations[None, :, :]).sum(dim=2)  # [P, P]
    distance.fill_diagonal_(permutations.shape[1] + 1)
    return int(distance.min())


def jigsaw_tiles(
    images: torch.Tensor,
    grid: int = 3,
    cell: int = 10,
    tile: int = 8,
    generator: torch.Generator | None = None,
    random: bool = True,
) -> torch.Tensor:
    """Cut a ``grid x grid`` puzzle out of every image: tiles ``[N, T, C, p, p]``, reading order.

    Noroozi & Favaro (2016) crop a 225 px window, split it into a 3x3 grid of 75 px cells and
    take a random 64 px tile inside each cell, so that neighbouring tiles are separated by a
    random gap (no shortcut through matching edges). Here: a ``grid * cell`` px window (30 px
    of a 32 px CIFAR image) split into ``cell`` px cells, a ``tile`` px tile inside each.

    Tile ``k = r * grid + c`` (row ``r``, column ``c``) is cut at
    ``(win_top + r * cell + dy[k], win_left + c * cell + dx[k])``.

    Random draws (``random=True``), from ``generator`` and in this order, where the generator
    lives (``draw(torch.randint, ..., generator=generator)``, as in :func:`sample_context_pairs`):

    1. window top ``[N]``: ``torch.randint(H - grid * cell + 1, (N,))``;
    2. window left ``[N]``: the same with ``W``;
    3. tile offsets ``[N, T, 2]``: ``torch.randint(cell - tile + 1, (N, T, 2))``, the last axis
       (dy, dx).

    ``random=False`` (evaluation) draws nothing: the window is centred (``(H - grid * cell) // 2``)
    and every tile centred in its cell (``(cell - tile) // 2``).

    Returns:
        ``[N, grid * grid, C, tile, tile]``.

    Raises:
        ValueError: the window does not fit, or ``tile > cell``.
    """
    raise NotImplementedError("Implement jigsaw_tiles: see its docstring")


def shuffle_tiles(tiles: torch.Tensor, permutations: torch.Tensor) -> torch.Tensor:
    """Shuffle each puzzle by its own permutation: position ``i`` shows tile ``perm[i]``.

    Args:
        tiles: ``[N, T, C, p, p]`` in reading order.
        permutations: int64 ``[N, T]``, row ``n`` a permutation of ``0..T-1``.

    Returns:
        ``[N, T, C, p, p]`` with ``out[n, i] = tiles[n, permutations[n, i]]``.
    """
    raise NotImplementedError("Implement shuffle_tiles: see its docstring")


def invert_permutations(permutations: torch.Tensor) -> torch.Tensor:
    """The inverse of each row: ``shuffle_tiles(shuffle_tiles(t, P), invert_permutations(P)) == t``.

    Args:
        permutations: int64 ``[..., T]``, each row a permutation of ``0..T-1``.

    Returns:
        int64 ``[..., T]`` with ``inverse[..., permutations[..., i]] = i``.
    """
    raise NotImplementedError("Implement invert_permutations: see its docstring")


class JigsawNet(nn.Module):
    """The context-free network: one shared trunk per tile, features concatenated, P-way output.

    Noroozi & Favaro (2016) feed each tile through its own column of the network, the columns
    sharing their weights up to ``fc6``, so that no column sees more than its own tile; the nine ``fc6`` outputs are
    concatenated and ``fc7``/``fc8`` predict the permutation index. Here the trunk is the shared
    encoder (``[N*T, C, p, p] -> [N*T, D]``), ``tile_fc`` the per-tile ``fc6`` (``D -> h``,
    shared too), and ``puzzle_head`` the layers on the concatenation (``[N, T*h] -> [N, P]``).
    """

    def __init__(
        self,
        trunk: ConvBackbone,
        num_permutations: int,
        num_tiles: int = 9,
        tile_hidden: int = 64,
        hidden: int = 256,
    ):
        super().__init__()
        self.trunk = trunk
        self.num_tiles = int(num_tiles)
        self.tile_fc = nn.Sequential(nn.Linear(trunk.feature_dim, tile_hidden), nn.ReLU(inplace=True))  # fmt: skip
        self.puzzle_head = nn.Sequential(
            nn.Linear(num_tiles * tile_hidden, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, num_permutations),
        )

    def forward(self, tiles: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, P]`` of the permutation index, from shuffled tiles ``[N, T, C, p, p]``.

        Encode all ``N * T`` tiles with ``self.trunk`` then ``self.tile_fc`` (the same modules
        for every position), put each puzzle's ``T`` tile vectors side by side in position
        order (``[N, T * h]``) and apply ``self.puzzle_head``.
        """
        raise NotImplementedError("Implement JigsawNet.forward: see its docstring")


# ==============================================================================================
# Part 4. Exemplar CNN: every seed image is a class
# ==============================================================================================


def exemplar_dataset(
    images: torch.Tensor,
    num_seeds: int,
    copies: int,
    transform: Callable[[torch.Tensor, torch.Generator | None], torch.Tensor],
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The surrogate classes of Exemplar CNN: ``copies`` augmentations of ``num_seeds`` seeds.

    Dosovitskiy et al. (2014): "We train the network to discriminate between a set of surrogate
    classes. Each surrogate class is formed by applying a variety of transformations to a
    randomly sampled 'seed' image patch." Their seeds were 32x32 patches of STL-10 images; a
    CIFAR image is already that size, so each seed is a whole image. With ``N`` seeds and ``K``
    copies the dataset has ``K * N`` images and ``N`` classes.

    Steps, exactly:

    1. seeds: ``seed_index = torch.randperm(len(images), generator=generator)[:num_seeds]``;
    2. views: ``transform(seeds.repeat(copies, 1, 1, 1), generator)``, one call for all
       ``K * N`` copies (the transform draws its own random parameters per image);
    3. labels: the surrogate class of view ``j * N + i`` (copy ``j`` of seed ``i``) is ``i``.

    Args:
        images: ``[M, C, H, W]`` float in [0, 1], the unlabelled pool.
        transform: batched augmentation ``(x [B, C, H, W], generator) -> [B, C, H, W]``, e.g.
            :func:`exemplar_augment`.

    Returns:
        ``(views, labels, seed_index)``: ``[K * N, C, H, W]``, int64 ``[K * N]`` in ``0..N-1``
        (copy-major: ``labels = [0, 1, ..., N-1, 0, 1, ...]``), int64 ``[N]``.
    """
    raise NotImplementedError("Implement exemplar_dataset: see its docstring")


def exemplar_classifier(encoder: ConvBackbone, num_seeds: int) -> PretextClassifier:
    """The Exemplar-CNN model: ``encoder`` and an ``N``-way linear head, one output per seed.

    The lecture's caveat: "number of parameters in the final layer depends on N; hard to scale"
    (the head alone has ``(D + 1) * N`` parameters; Dosovitskiy et al. used up to 32,000 seeds).
    Contrastive learning (Assignment 4) removes that layer.
    """
    raise NotImplementedError("Implement exemplar_classifier: see its docstring")


# ==============================================================================================
# Given: augmentations, the pretext losses of Parts 2-4, experiment settings, the training driver
# ==============================================================================================


def light_augment(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random crop (70-100% of the area) resized back, and a horizontal flip: ``[N, C, H, W]``.

    The mild augmentation of the rotation, context, jigsaw and supervised runs (RotNet's CIFAR
    code uses crops and flips too); it must not rotate, or it would blur the rotation labels.
    """
    size = (x.shape[2], x.shape[3])
    x = augment.random_resized_crop(x, size, scale=(0.7, 1.0), generator=generator)
    return augment.random_horizontal_flip(x, generator=generator)  # [N, C, H, W]


def exemplar_augment(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Exemplar-CNN's transformations, batched: scale and translation, flip, colour.

    Dosovitskiy et al. (2014) composed translation, scaling, rotation and contrast and colour
    changes; here a random resized crop (25-100% of the area), a flip, colour jitter (p = 0.8)
    and grayscale (p = 0.2) on RGB images. ``[N, C, H, W] -> [N, C, H, W]``.
    """
    size = (x.shape[2], x.shape[3])
    x = augment.random_resized_crop(x, size, scale=(0.25, 1.0), generator=generator)
    x = augment.random_horizontal_flip(x, generator=generator)
    if x.shape[1] == 3:
        x = augment.color_jitter(x, 0.4, 0.4, 0.4, 0.1, p=0.8, generator=generator)
        x = augment.random_grayscale(x, p=0.2, generator=generator)
    return x  # [N, C, H, W]


def context_loss(
    model: SiameseContextNet,
    images: torch.Tensor,
    cfg: PretextConfig,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """Context prediction on one batch: sample pairs, classify the position (8-way)."""
    centre, neighbour, labels, _ = sample_context_pairs(
        images, cfg.context_patch, cfg.context_gap, cfg.context_jitter, generator
    )  # [N, C, p, p] x2, [N]
    logits = model(centre, neighbour)  # [N, 8]
    acc = (logits.detach().argmax(dim=1) == labels).float().mean()
    return {"loss": F.cross_entropy(logits, labels), "acc": acc}


def jigsaw_loss(
    model: JigsawNet,
    images: torch.Tensor,
    permutations: torch.Tensor,
    cfg: PretextConfig,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """Jigsaw on one batch: cut tiles, shuffle by a random permutation of the set, name it."""
    tiles = jigsaw_tiles(images, 3, cfg.jigsaw_cell, cfg.jigsaw_tile, generator)  # [N, 9, C, p, p]
    index = draw(torch.randint, len(permutations), (len(images),), generator=generator)  # [N]
    shuffled = shuffle_tiles(tiles, permutations[index])  # [N, 9, C, p, p]
    index = index.to(images.device)
    logits = model(shuffled)  # [N, P]
    acc = (logits.detach().argmax(dim=1) == index).float().mean()
    return {"loss": F.cross_entropy(logits, index), "acc": acc}


@dataclass(frozen=True)
class PretextConfig:
    """The experiment settings of the notebook and the benchmark, per preset.

    Training budgets are wall-clock seconds (a run also stops at ``max_epochs``); on a busy
    machine a run does fewer steps in the same time, so its numbers drop but the notebook still
    ends on time.
    """

    rotation_s: float  # the main RotNet run
    ablation_s: float  # each run of the number-of-rotations ablation (2 runs)
    context_s: float
    jigsaw_s: float
    exemplar_s: float
    supervised_s: float  # the supervised baseline: the same SmallCNN trained with labels
    max_epochs: int
    batch_size: int  # source images per step (RotNet sees 4x as many rotated copies)
    lr: float = 0.1  # SGD, momentum 0.9, Nesterov, cosine decay over the budget
    weight_decay: float = 5e-4
    widths: tuple[int, ...] = (32, 64, 128, 256)  # SmallCNN block widths
    context_patch: int = 8
    context_gap: int = 3
    context_jitter: int = 1
    jigsaw_cell: int = 10
    jigsaw_tile: int = 8
    num_permutations: int = 100
    exemplar_seeds: int = 1000
    exemplar_copies: int = 8
    probe_blocks: tuple[int, ...] = (2, 3, 4)  # SmallCNN blocks probed (1-based)
    knn_k: int = 20
    probe_iters: int = 100  # L-BFGS iterations of each linear probe
    nonlinear_probe: bool = False  # the MLP probe on block maps (GPU presets)
    checkpoints: bool = False  # train-or-load the runs under checkpoints/
    amp: bool | str = "auto"  # replearn.train.TrainConfig.amp: True also autocasts a bf16 CPU
    channels_last: bool = False  # NHWC training (TrainConfig.channels_last): faster on CPU

    @staticmethod
    def from_preset(preset) -> PretextConfig:
        if preset.name == "smoke":
            return PretextConfig(rotation_s=2, ablation_s=1, context_s=1, jigsaw_s=1, exemplar_s=1,
                                 supervised_s=1, max_epochs=1, batch_size=32, num_permutations=10,
                                 exemplar_seeds=50, exemplar_copies=2, probe_iters=10)  # fmt: skip
        if preset.name == "cpu-quick":
            return PretextConfig(rotation_s=100, ablation_s=10, context_s=15, jigsaw_s=15,
                                 exemplar_s=15, supervised_s=15, max_epochs=preset.max_epochs,
                                 batch_size=64)  # fmt: skip
        # colab: sized to the notebook header's time on a T4 (benchmarks/README.md, "Colab budgets")
        scale = preset.time_scale
        rotation, ablation, short = (150, 20, 40) if preset.name == "colab" else (300, 60, 60)
        return PretextConfig(rotation_s=rotation * scale, ablation_s=ablation * scale,
                             context_s=short * scale, jigsaw_s=short * scale,
                             exemplar_s=short * scale, supervised_s=short * scale,
                             max_epochs=preset.max_epochs, batch_size=128,
                             exemplar_seeds=4000, exemplar_copies=16, nonlinear_probe=True,
                             checkpoints=True)  # fmt: skip


def fit_geometry(cfg: PretextConfig, image_size: int) -> PretextConfig:
    """``cfg`` with the context and jigsaw geometry shrunk, if needed, to fit ``image_size``.

    The defaults need 32 px (CIFAR-10); the offline fallback dataset (MNIST) has 28 px. Patches
    stay at least 8 px, the smallest input the SmallCNN's three poolings accept.
    """
    context, jigsaw = cfg, cfg
    if 3 * cfg.context_patch + 2 * cfg.context_gap + 2 * cfg.context_jitter > image_size:
        gap = max(1, (image_size - 3 * cfg.context_patch - 2 * cfg.context_jitter) // 2)
        context = replace(cfg, context_gap=gap)
    if 3 * cfg.jigsaw_cell > image_size:
        jigsaw = replace(cfg, jigsaw_cell=image_size // 3)
    fitted = replace(cfg, context_gap=context.context_gap, jigsaw_cell=jigsaw.jigsaw_cell)
    fitted_jigsaw_tile = min(fitted.jigsaw_tile, fitted.jigsaw_cell)
    return replace(fitted, jigsaw_tile=fitted_jigsaw_tile)


@dataclass
class PretrainResult:
    """A finished pretraining run: the encoder to transfer, the whole model, what happened."""

    task: str
    encoder: ConvBackbone
    model: nn.Module
    history: History
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. the permutation set, the seeds

    @property
    def pretext_accuracy(self) -> float:
        """Mean training accuracy of the pretext task over the last 20 steps."""
        return self.history.recent_mean("acc")


TASKS = ("rotation", "context", "jigsaw", "exemplar", "supervised")


def pretrain(
    task: str,
    images: torch.Tensor,
    cfg: PretextConfig,
    *,
    budget_s: float,
    labels: torch.Tensor | None = None,
    rotations: Sequence[int] = (0, 1, 2, 3),
    seed: int = 0,
    device: str | torch.device = "cpu",
    checkpoint_path: str | Path | None = None,
    progress: bool = False,
) -> PretrainResult:
    """Train a fresh ``SmallCNN`` on one pretext task (or with labels) for ``budget_s`` seconds.

    Every task uses the same encoder, optimiser (SGD, momentum 0.9, Nesterov, ``cfg.lr``,
    ``cfg.weight_decay``), batch size, cosine schedule over the budget and ``replearn.train``
    loop, so that the encoders differ only in what they were asked to predict.

    Args:
        task: ``"rotation"``, ``"context"``, ``"jigsaw"``, ``"exemplar"`` or ``"supervised"``.
        images: uint8 ``[N, C, H, W]`` (the unlabelled training images).
        labels: int64 ``[N]``, only for ``"supervised"``.
        rotations: the rotation set of ``"rotation"`` (the ablation passes ``(0, 2)``).
        checkpoint_path: train-or-load file (``None``: no checkpoint).
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {TASKS}")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    device = torch.device(device)
    encoder = SmallCNN(in_channels=images.shape[1], widths=cfg.widths)
    extra: dict[str, Any] = {}
    tensors: tuple[torch.Tensor, ...] = (images,)

    def floats(batch: torch.Tensor) -> torch.Tensor:
        return to_float(batch) if batch.dtype == torch.uint8 else batch  # [B, C, H, W]

    if task == "rotation":
        model: nn.Module = PretextClassifier(encoder, len(rotations))
        step = lambda m, x: rotation_loss(m, light_augment(floats(x), generator), rotations)
    elif task == "context":
        model = SiameseContextNet(encoder)
        step = lambda m, x: context_loss(m, light_augment(floats(x), generator), cfg, generator)
    elif task == "jigsaw":
        perms = hamming_permutation_set(cfg.num_permutations, 9, generator).to(device)  # [P, 9]
        extra["permutations"] = perms.cpu()
        model = JigsawNet(encoder, len(perms))
        step = lambda m, x: jigsaw_loss(m, light_augment(floats(x), generator), perms, cfg, generator)  # fmt: skip
    elif task == "exemplar":
        num_seeds = min(cfg.exemplar_seeds, len(images))
        views, view_labels, seed_index = exemplar_dataset(
            to_float(images), num_seeds, cfg.exemplar_copies, exemplar_augment, generator
        )  # [K*N, C, H, W], [K*N], [N]
        extra.update(seed_index=seed_index, num_seeds=num_seeds)
        tensors = ((views * 255).round().to(torch.uint8), view_labels)  # stored as uint8
        model = exemplar_classifier(encoder, num_seeds)
        step = lambda m, batch: _classification_step(m, floats(batch[0]), batch[1])
    else:
        if labels is None:
            raise ValueError("the supervised baseline needs labels")
        tensors = (images, labels)
        model = PretextClassifier(encoder, int(labels.max()) + 1)
        step = lambda m, batch: _classification_step(m, light_augment(floats(batch[0]), generator), batch[1])  # fmt: skip

    model.to(device)
    loader = TensorLoader(*tensors, batch_size=min(cfg.batch_size, len(tensors[0])), seed=seed, device=device)  # fmt: skip
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, nesterov=True,
                                weight_decay=cfg.weight_decay)  # fmt: skip
    config = TrainConfig(epochs=cfg.max_epochs, budget_s=budget_s, progress=progress, desc=task,
                         checkpoint_path=str(checkpoint_path) if checkpoint_path else None,
                         grad_clip=5.0, amp=cfg.amp, channels_last=cfg.channels_last)  # fmt: skip
    history = train(step, model, optimizer, loader, config, scheduler=BudgetCosine(optimizer, budget_s))  # fmt: skip
    model.eval()
    return PretrainResult(task, encoder, model, history, extra)


def _classification_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict:
    logits = model(x)  # [B, K]
    acc = (logits.detach().argmax(dim=1) == y).float().mean()
    return {"loss": F.cross_entropy(logits, y), "acc": acc}


# ---- evaluation: the same protocol for every encoder ----------------------------------------


@torch.no_grad()
def block_features(
    encoder: ConvBackbone,
    images: torch.Tensor,
    blocks: Sequence[int] = (2, 3, 4),
    *,
    batch_size: int = 500,
    pool: bool = True,
    grid: int | None = None,
) -> dict[int, torch.Tensor]:
    """The outputs of several blocks of ``encoder`` for whole images, in one pass.

    ``pool=True`` averages each map over space (``[N, D_b]``, what kNN and the linear probe
    use); ``pool=False`` keeps ``grid x grid`` average-pooled maps, flattened
    (``[N, D_b * grid * grid]``, what the non-linear probe uses, as RotNet's classifiers read
    the spatial conv maps). Eval mode (BatchNorm running statistics), float32 on the CPU.
    """
    device = next(encoder.parameters()).device
    was_training = encoder.training
    encoder.eval()
    out: dict[int, list[torch.Tensor]] = {b: [] for b in blocks}
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].to(device)
        x = to_float(x) if x.dtype == torch.uint8 else x.float()  # [B, C, H, W]
        for index, block in enumerate(encoder.blocks, start=1):
            x = block(x)  # [B, D_b, H_b, W_b]
            if index in out:
                if pool:
                    out[index].append(x.mean(dim=(2, 3)).float().cpu())  # [B, D_b]
                else:
                    kept = F.adaptive_avg_pool2d(x, grid or x.shape[2])  # [B, D_b, g, g]
                    out[index].append(kept.flatten(1).half().cpu())  # [B, D_b*g*g]
            if index >= max(blocks):
                break
    encoder.train(was_training)
    return {b: torch.cat(parts) for b, parts in out.items()}


@torch.no_grad()
def patch_grid_features(
    encoder: ConvBackbone, images: torch.Tensor, patch: int, stride: int, *, batch_size: int = 200
) -> torch.Tensor:
    """Mean of the encoder's (pooled, last-block) features over a centred 3x3 grid of patches.

    The inputs a patch-trained encoder saw during pretraining: ``patch`` px patches whose
    corners are ``stride`` px apart. Comparing probes on these features with probes on
    whole-image features measures how much of what a context or jigsaw network learnt
    survives the change from patches to whole images. Returns ``[N, D]``.
    """
    device = next(encoder.parameters()).device
    was_training = encoder.training
    encoder.eval()
    n, _, height, width = images.shape
    extent = 2 * stride + patch
    grid_top, grid_left = (height - extent) // 2, (width - extent) // 2
    corners = [(grid_top + r * stride, grid_left + c * stride) for r in range(3) for c in range(3)]
    chunks = []
    for start in range(0, n, batch_size):
        x = images[start : start + batch_size].to(device)
        x = to_float(x) if x.dtype == torch.uint8 else x.float()  # [B, C, H, W]
        patches = torch.stack([x[:, :, top : top + patch, left : left + patch] for top, left in corners], 1)  # [B, 9, C, p, p]  # fmt: skip
        feats = encoder(patches.flatten(0, 1)).view(len(x), 9, -1)  # [B, 9, D]
        chunks.append(feats.mean(dim=1).cpu())  # [B, D]
    encoder.train(was_training)
    return torch.cat(chunks)  # [N, D]


# The linear probe's L2 strength, fixed rather than searched so that probing eight encoders fits
# the cpu-quick budget (a search over 3 values took 4x as long). 2e-4 is scikit-learn's C = 1 on
# 4,500 samples, the probe of the course's CPU feasibility study whose RotNet numbers the
# notebook header quotes.
PROBE_WEIGHT_DECAY = 2e-4


def probe_features(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    test_feats: torch.Tensor,
    test_labels: torch.Tensor,
    cfg: PretextConfig | None = None,
) -> dict[str, float]:
    """kNN (cosine, ``cfg.knn_k`` neighbours, temperature 0.1) and linear-probe test accuracy."""
    k, iters = (cfg.knn_k, cfg.probe_iters) if cfg is not None else (20, 100)
    knn = knn_accuracy(train_feats, train_labels, test_feats, test_labels, k=k)
    linear = linear_probe(train_feats, train_labels, test_feats, test_labels,
                          weight_decay=PROBE_WEIGHT_DECAY, max_iter=iters).test_accuracy  # fmt: skip
    return {"knn": knn, "linear": linear}


def evaluate_encoder(
    encoder: ConvBackbone,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    blocks: Sequence[int] = (2, 3, 4),
    cfg: PretextConfig | None = None,
) -> dict[int, dict[str, float]]:
    """``{block: {"knn": acc, "linear": acc}}`` on whole images, pooled block outputs."""
    train = block_features(encoder, x_train, blocks)
    test = block_features(encoder, x_test, blocks)
    return {b: probe_features(train[b], y_train, test[b], y_test, cfg) for b in blocks}


def best_block(scores: dict[int, dict[str, float]], metric: str = "linear") -> int:
    """The block with the highest ``metric`` (ties: the earlier block)."""
    return max(sorted(scores), key=lambda b: (scores[b][metric], -b))


@torch.no_grad()
def rotation_confusion(
    model: nn.Module,
    images: torch.Tensor,
    rotations: Sequence[int] = (0, 1, 2, 3),
    batch_size: int = 256,
) -> tuple[torch.Tensor, torch.Tensor]:
    """How the rotation classifier errs: confusion matrix and per-image correctness.

    Returns ``(confusion, correct)``: int64 ``[R, R]`` (row: true rotation, column: predicted)
    and bool ``[R, N]`` (whether rotation ``r`` of image ``n`` was recognised), on held-out
    images, in eval mode.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    num = len(rotations)
    confusion = torch.zeros(num, num, dtype=torch.long)
    correct = []
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].to(device)
        x = to_float(x) if x.dtype == torch.uint8 else x.float()  # [B, C, H, W]
        rotated, labels = rotation_batch(x, rotations)  # [R*B, C, H, W], [R*B]
        preds = model(rotated).argmax(dim=1).cpu()  # [R*B]
        labels = labels.cpu()
        confusion += torch.bincount(labels * num + preds, minlength=num * num).view(num, num)
        correct.append((preds == labels).view(num, len(x)))  # [R, B]
    model.train(was_training)
    return confusion, torch.cat(correct, dim=1)  # [R, R], [R, N]


def nonlinear_probe(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    test_feats: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    hidden: int = 512,
    epochs: int = 30,
    lr: float = 1e-3,
    batch_size: int = 256,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> float:
    """Test accuracy of an MLP trained on frozen (cached) features: RotNet's non-linear probe.

    Gidaris et al. (2018) evaluate CIFAR-10 features with non-linear classifiers on the
    frozen conv maps: fully connected layers with BatchNorm and ReLU. Here: BatchNorm ->
    Linear(in, hidden) -> BN -> ReLU -> Dropout(0.3) -> Linear(hidden, hidden) -> BN -> ReLU ->
    Linear(hidden, K), Adam with cosine decay for ``epochs`` passes. The features are usually
    ``block_features(..., pool=False, grid=g)`` (flattened spatial maps).
    """
    torch.manual_seed(seed)
    device = torch.device(device)
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    mlp = nn.Sequential(
        nn.BatchNorm1d(train_feats.shape[1]),
        nn.Linear(train_feats.shape[1], hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Dropout(0.3),
        nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
        nn.Linear(hidden, num_classes),
    ).to(device)  # fmt: skip
    x_train, y_train = train_feats.to(device), train_labels.to(device)
    optimizer = torch.optim.AdamW(mlp.parameters(), lr=lr, weight_decay=5e-4)
    steps = epochs * math.ceil(len(x_train) / batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        mlp.train()
        order = torch.randperm(len(x_train), generator=generator).to(device)
        for start in range(0, len(order) - 1, batch_size):
            rows = order[start : start + batch_size]
            if len(rows) < 2:
                continue
            loss = F.cross_entropy(mlp(x_train[rows].float()), y_train[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    mlp.eval()
    with torch.no_grad():
        preds = torch.cat([mlp(test_feats[i : i + 1024].to(device).float()).argmax(1).cpu()
                           for i in range(0, len(test_feats), 1024)])  # fmt: skip
    return float((preds == test_labels.cpu()).float().mean())
