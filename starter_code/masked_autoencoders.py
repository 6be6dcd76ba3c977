# Generated from solutions/masked_autoencoders.py by `python -m instructor.release starter`.
# Course authors: edit solutions/masked_autoencoders.py, never this file. Students: keep the names
# and signatures as they are, and replace each `raise NotImplementedError(...)` with your code.
"""Assignment 5: masked autoencoders (MAE).

"We mask random patches of the input image and reconstruct the missing pixels" (He et al.,
"Masked Autoencoders Are Scalable Vision Learners", CVPR 2022, arXiv:2111.06377, Abstract).
Two design choices make it work: "an asymmetric encoder-decoder architecture, with an encoder
that operates only on the visible subset of patches (without mask tokens), along with a
lightweight decoder that reconstructs the original image from the latent representation and
mask tokens", and "masking a high proportion of the input image, e.g., 75%, yields a
nontrivial and meaningful self-supervisory task".

This module follows the paper's reference code (facebookresearch/mae, ``models_mae.py``) in the
order it reads:

1. :func:`patchify` / :func:`unpatchify`: images <-> a sequence of flattened patches;
2. :func:`random_masking`: keep a random subset of the tokens of each image;
3. :func:`sincos_pos_embed_2d`: the fixed 2-D sine-cosine positions of the patches;
4. :class:`MAEEncoder` (a ViT that sees only the visible patches) and :class:`MAEDecoder`
   (mask tokens, the order restored, a small transformer, one linear layer to pixels);
5. :func:`mae_loss`: mean squared error on the masked patches only;
6. :class:`MaskedAutoencoder`: the three put together.

Below the student parts (marked "Given") are the experiment settings per preset
(:class:`MAEConfig`), pretraining (:func:`pretrain`), the downstream protocols
(:func:`finetune`, :func:`from_scratch`, :func:`evaluate_encoder`) and the three-row picture
(:func:`reconstruct`).

Shapes follow the package legend: ``N`` images, ``C, H, W`` channels and size, ``p`` the patch
side, ``L`` patches per image (``L_keep`` of them visible), ``D`` token width. Images are
float32 in [0, 1] (uint8 batches are converted). The parts you write sit between
``BEGIN SOLUTION`` and ``END SOLUTION``; everything else is given.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from replearn import augment
from replearn.backbones import Block, PatchEmbed
from replearn.data import to_float
from replearn.evaluate import KNNMonitor, extract_features, knn_accuracy, linear_probe
from replearn.train import (
    BudgetCosine,
    History,
    Hook,
    TensorLoader,
    TrainConfig,
    draw,
    pick_device,
    train,
)

# Library shortcuts that would do a part for you. The grader reads this literal: using one of
# these inside the function named on the left scores 0 for that function's tests.
# * patchify / unpatchify: the point is the reshape-permute-reshape that puts each patch's
#   pixels in MAE's (p, p, C) order. lightly ships MAE's own two functions, and torch's
#   unfold/fold cut patches too (in (C, p, p) order, so they would also give the wrong layout).
# * random_masking: the course library's pixel-space `mask_patches` draws the same per-sample
#   shuffle, and lightly's `random_token_mask` returns the kept indices directly.
# * sincos_pos_embed_2d: the course library's ViT and lightly both carry a version of MAE's
#   `get_2d_sincos_pos_embed`; write the formula yourself.
# * mae_loss: the per-patch mean, then the mean over the MASKED patches only, is the lesson;
#   a library MSE with its default reduction averages over every pixel of every patch (the
#   visible ones included), the mistake this part is about. lightly's `normalize_mean_var` is
#   the norm-pix target in one call.
BANNED_APIS = {
    "patchify": [
        "lightly.models.utils.patchify",
        "torch.nn.functional.unfold",
        "torch.nn.Unfold",
    ],
    "unpatchify": [
        "lightly.models.utils.unpatchify",
        "torch.nn.functional.fold",
        "torch.nn.Fold",
    ],
    "random_masking": [
        "replearn.augment.mask_patches",
        "lightly.models.utils.random_token_mask",
    ],
    "sincos_pos_embed_2d": [
        "replearn.backbones.sincos_pos_embed_2d",
        "lightly.models.utils.get_2d_sincos_pos_embed",
        "lightly.models.utils.get_2d_sine_cosine_positional_embedding",
        "lightly.models.utils.get_2d_sine_cosine_positional_embedding_from_grid",
        "lightly.models.utils.get_1d_sine_cosine_positional_embedding_from_positions",
    ],
    "mae_loss": [
        "torch.nn.functional.mse_loss",
        "torch.nn.MSELoss",
        "lightly.models.utils.normalize_mean_var",
    ],
}

# MAE's code adds 1e-6 to the variance of each target patch before dividing ("norm_pix_loss").
NORM_PIX_EPS = 1e-6


def hello() -> str:
    """Import check: the notebook calls this first to show which file it loaded."""
    return "masked_autoencoders: ready"


def as_float_images(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``[N, C, H, W]`` -> float32 in [0, 1]; floating batches pass through unchanged."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"expected images [N, C, H, W], got {shape}")
    if images.dtype == torch.uint8:
        return to_float(images)  # [N, C, H, W]
    return images if images.is_floating_point() else images.float()  # [N, C, H, W]


def _check_mask_ratio(mask_ratio: float) -> None:
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must lie in [0, 1) (MAE uses 0.75), got {mask_ratio!r}")


# ==============================================================================================
# Part 1. Images as sequences of patches
# ==============================================================================================


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Cut each image into non-overlapping ``p x p`` patches and flatten each patch.

    MAE's ``patchify``: "imgs: (N, 3, H, W) x: (N, L, patch_size**2 *3)". Patches are numbered
    row by row (patch ``i * (W/p) + j`` is the one in patch-row ``i``, patch-column ``j``), and
    each patch is flattened in ``(p, p, C)`` order: pixel row, pixel column, then channel, so
    ``patches[n, l, (r * p + c) * C + k]`` is channel ``k`` of pixel ``(r, c)`` of patch ``l``.
    One ``reshape`` to ``[N, C, H/p, p, W/p, p]``, one permutation to
    ``[N, H/p, W/p, p, p, C]`` and one ``reshape`` do it (no loops; torch's ``unfold`` is banned
    here: it orders each patch ``(C, p, p)``).

    Args:
        images: ``[N, C, H, W]`` with ``H`` and ``W`` multiples of ``patch_size``.
        patch_size: ``p >= 1``.

    Returns:
        ``[N, L, p*p*C]`` with ``L = (H/p) * (W/p)``.

    Raises:
        ValueError: images not 4-D, or ``H``, ``W`` not multiples of ``p``.
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise ValueError("patchify needs images [N, C, H, W]; add the batch axis with x[None]")
    if patch_size < 1 or images.shape[2] % patch_size or images.shape[3] % patch_size:
        raise ValueError(
            f"patch_size {patch_size} must divide the image height and width, got "
            f"{images.shape[2]}x{images.shape[3]}; crop or pad the images, or pick another p"
        )
    raise NotImplementedError("Implement patchify: see its docstring")


def unpatchify(patches: torch.Tensor, patch_size: int, channels: int = 3) -> torch.Tensor:
    """The exact inverse of :func:`patchify` for square images.

    MAE's ``unpatchify``: "x: (N, L, patch_size**2 *3) imgs: (N, 3, H, W)", with
    ``H = W = sqrt(L) * p``. Undo the three steps of :func:`patchify` in reverse order.

    Args:
        patches: ``[N, L, p*p*C]`` with ``L`` a perfect square.
        patch_size: ``p``.
        channels: ``C``.

    Returns:
        ``[N, C, H, W]`` with ``H = W = sqrt(L) * p``; ``unpatchify(patchify(x, p), p, C) == x``.

    Raises:
        ValueError: not 3-D, ``L`` not a square, or the last axis not ``p*p*C``.
    """
    if not isinstance(patches, torch.Tensor) or patches.ndim != 3:
        raise ValueError("unpatchify needs patches [N, L, p*p*C]")
    grid = math.isqrt(patches.shape[1])
    if grid * grid != patches.shape[1]:
        raise ValueError(
            f"unpatchify builds square images: the number of patches L must be a square, got "
            f"L = {patches.shape[1]}"
        )
    if patch_size < 1 or channels < 1 or patches.shape[2] != patch_size * patch_size * channels:
        raise ValueError(
            f"each patch must hold p*p*C = {patch_size}*{patch_size}*{channels} = "
            f"{patch_size * patch_size * channels} values, got {patches.shape[2]}; check "
            "patch_size and channels"
        )
    raise NotImplementedError("Implement unpatchify: see its docstring")


# ==============================================================================================
# Part 2. Random masking
# ==============================================================================================


def random_masking(
    tokens: torch.Tensor, mask_ratio: float, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keep a random subset of ``L_keep = int(L * (1 - mask_ratio))`` tokens of each sample.

    He et al. (2022), Sec. 3: "we sample random patches without replacement, following a
    uniform distribution"; App. "Implementation": "First we generate a token for every input
    patch [...]. Next we randomly shuffle the list of tokens and remove the last portion of the
    list, based on the masking ratio. [...] After encoding, we append a list of mask tokens to
    the list of encoded patches, and unshuffle this full list (inverting the random shuffle
    operation) to align all tokens with their targets." MAE's ``random_masking``, step by step:

    1. ``noise = draw(torch.rand, (N, L), generator=generator, device=tokens.device)`` (draw
       it exactly like this, so that a seeded generator gives the reference's mask).
       ``replearn.train.draw`` (imported here) is the course's rule for random draws: drawn
       where the generator lives (the course's generators are CPU ones; a CUDA kernel refuses
       them), then moved to the tokens' device, so a seed gives the same mask on any device;
    2. ``ids_shuffle`` = the indices that sort each row of ``noise`` ascending (small noise is
       kept); ``ids_restore`` = the indices that sort ``ids_shuffle`` (its inverse permutation);
    3. ``visible`` = the tokens at ``ids_shuffle[:, :L_keep]``, in that order (``torch.gather``);
    4. ``mask``: 0 for the kept tokens, 1 for the removed ones, in the ORIGINAL token order
       (build it in shuffled order, ``[0] * L_keep + [1] * (L - L_keep)``, then unshuffle it
       with ``ids_restore``).

    Args:
        tokens: ``[N, L, D]``.
        mask_ratio: the fraction removed, in [0, 1).
        generator: a ``torch.Generator`` for reproducible masks (None: torch's global one).

    Returns:
        ``(visible [N, L_keep, D], mask [N, L] float 1 = masked, ids_restore [N, L] int64)``.

    Raises:
        ValueError: ``tokens`` not ``[N, L, D]``, ``mask_ratio`` outside [0, 1) or so high that
        no token is kept.
    """
    if not isinstance(tokens, torch.Tensor) or tokens.ndim != 3:
        raise ValueError("random_masking needs tokens [N, L, D]")
    _check_mask_ratio(mask_ratio)
    if int(tokens.shape[1] * (1 - mask_ratio)) < 1:
        raise ValueError(
            f"mask_ratio {mask_ratio} keeps no token of L = {tokens.shape[1]}; lower it"
        )
    raise NotImplementedError("Implement random_masking: see its docstring")


# ==============================================================================================
# Part 3. Fixed 2-D sine-cosine positional embeddings
# ==============================================================================================


def sincos_pos_embed_2d(dim: int, grid_size: int, cls_token: bool = False) -> torch.Tensor:
    """The fixed 2-D sine-cosine embedding of a ``grid_size x grid_size`` grid of patches.

    He et al. (2022), App. A.1: "We use the fixed 2D sine-cosine positional embeddings" (a
    2-D version of Vaswani et al. 2017's ``PE(pos, 2i) = sin(pos / 10000^(2i/d))``,
    ``PE(pos, 2i+1) = cos(...)``). MAE's ``get_2d_sincos_pos_embed`` (``util/pos_embed.py``):

    * a 1-D embedding of width ``d`` of positions ``pos``: frequencies
      ``omega_k = 1 / 10000^(k / (d/2))`` for ``k = 0 .. d/2 - 1``; the embedding is
      ``[sin(pos * omega), cos(pos * omega)]`` (all the sines first, then all the cosines);
    * the 2-D embedding of the patch in row ``i``, column ``j`` (patch number
      ``i * grid_size + j``, row by row as :func:`patchify` numbers them) is the 1-D
      embedding of width ``dim/2`` of the COLUMN ``j``, followed by that of the ROW ``i``
      (MAE's ``np.meshgrid(grid_w, grid_h)`` puts ``w`` first: "here w goes first");
    * with ``cls_token``, a row of zeros comes first (the class token has no position).

    Args:
        dim: ``D``, a multiple of 4.
        grid_size: patches per side.
        cls_token: prepend a zero row.

    Returns:
        float32 ``[grid_size**2, D]``, or ``[1 + grid_size**2, D]`` with ``cls_token``.
    """
    if dim < 4 or dim % 4 != 0:
        raise ValueError(f"the 2-D sine-cosine embedding needs dim divisible by 4, got {dim}")
    if grid_size < 1:
        raise ValueError(f"grid_size must be at least 1, got {grid_size}")
    raise NotImplementedError("Implement sincos_pos_embed_2d: see its docstring")


# ==============================================================================================
# Part 4. The asymmetric encoder and decoder
# ==============================================================================================


def _init_mae_weights(module: nn.Module) -> None:
    """MAE's initialisation: xavier-uniform linears (and patch projection), LayerNorm 1 / 0."""
    for child in module.modules():
        if isinstance(child, nn.Linear):
            nn.init.xavier_uniform_(child.weight)
            if child.bias is not None:
                nn.init.zeros_(child.bias)
        elif isinstance(child, nn.LayerNorm):
            nn.init.ones_(child.weight)
            nn.init.zeros_(child.bias)
        elif isinstance(child, PatchEmbed):
            weight = child.proj.weight  # [D, C, p, p]: initialised like a linear layer
            nn.init.xavier_uniform_(weight.view(weight.shape[0], -1))
            nn.init.zeros_(child.proj.bias)


class MAEEncoder(nn.Module):
    """The MAE encoder: a ViT that runs on the visible patches only.

    He et al. (2022), Sec. 3: "Our encoder is a ViT but applied only on visible, unmasked
    patches. Just as in a standard ViT, our encoder embeds patches by a linear projection with
    added positional embeddings, and then processes the resulting set via a series of
    Transformer blocks. However, our encoder only operates on a small subset (e.g., 25%) of the
    full set." App. A.1: "we append an auxiliary dummy token to the encoder input [...] treated
    as the class token".

    Given: the layers, named as the grader expects. ``patch_embed`` (a stride-``p`` convolution,
    ``[N, C, H, W] -> [N, L, D]``), ``pos_embed`` (a fixed buffer ``[1, 1 + L, D]`` from
    :func:`sincos_pos_embed_2d` with the class-token row first), ``cls_token``
    (``[1, 1, D]``, learned), ``blocks`` (``replearn.backbones.Block``) and ``norm``. You write
    :meth:`forward`.
    """

    def __init__(
        self,
        image_size: int = 32,
        patch_size: int = 4,
        in_chans: int = 3,
        dim: int = 128,
        depth: int = 4,
        heads: int = 4,
        mlp_ratio: float = 4.0,
    ):
        super().__init__()
        self.image_size, self.patch_size, self.in_chans = image_size, patch_size, in_chans
        self.feature_dim = dim
        self.patch_embed = PatchEmbed(image_size, patch_size, in_chans, dim)
        self.num_patches = self.patch_embed.num_patches
        table = sincos_pos_embed_2d(dim, self.patch_embed.grid_size, cls_token=True)  # [1+L, D]
        self.register_buffer("pos_embed", table[None], persistent=False)  # [1, 1 + L, D]
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))  # [1, 1, D]
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        _init_mae_weights(self)
        nn.init.normal_(self.cls_token, std=0.02)

    def forward(
        self,
        images: torch.Tensor,
        mask_ratio: float,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """MAE's ``forward_encoder``: embed, mask, prepend the class token, transform.

        1. ``tokens = self.patch_embed(images)`` and add the patch rows of the position table,
           ``self.pos_embed[:, 1:]``: positions go in BEFORE masking, so each kept token
           still knows where it came from;
        2. ``visible, mask, ids_restore = random_masking(tokens, mask_ratio, generator)``;
        3. the class token plus its own position row (``self.cls_token + self.pos_embed[:, :1]``),
           expanded to the batch, is put in front of the visible tokens;
        4. every block of ``self.blocks`` in turn, then ``self.norm``.

        Args:
            images: float ``[N, C, H, W]`` (uint8 is converted).
            mask_ratio: fraction of patches removed, in [0, 1).

        Returns:
            ``(latent [N, 1 + L_keep, D], mask [N, L], ids_restore [N, L])``.
        """
        x = as_float_images(images)  # [N, C, H, W]
        raise NotImplementedError("Implement MAEEncoder.forward: see its docstring")

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """All patches, no masking: the mean of the patch tokens after the norm, ``[N, D]``.

        The representation that probes and fine-tuning use (MAE's fine-tuning code pools the
        patch tokens the same way, ``global_pool``).
        """
        x = as_float_images(images)  # [N, C, H, W]
        tokens = self.patch_embed(x) + self.pos_embed[:, 1:]  # [N, L, D]
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(len(x), -1, -1)  # [N, 1, D]
        tokens = torch.cat([cls, tokens], dim=1)  # [N, 1 + L, D]
        for block in self.blocks:
            tokens = block(tokens)  # [N, 1 + L, D]
        return self.norm(tokens)[:, 1:].mean(dim=1)  # [N, D]


class PooledFeatures(nn.Module):
    """``encoder.forward_features`` as a module's ``forward`` (``[N, C, H, W] -> [N, D]``).

    ``replearn.evaluate`` calls ``encoder(images)``; the MAE encoder's own ``forward`` masks.
    """

    def __init__(self, encoder: MAEEncoder):
        super().__init__()
        self.encoder = encoder
        self.feature_dim = encoder.feature_dim

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder.forward_features(images)  # [N, D]


class MAEDecoder(nn.Module):
    """The lightweight MAE decoder: from the encoded visible tokens to pixels of every patch.

    He et al. (2022), Sec. 3: "The input to the MAE decoder is the full set of tokens
    consisting of (i) encoded visible patches, and (ii) mask tokens. [...] Each mask token is a
    shared, learned vector that indicates the presence of a missing patch to be predicted. We
    add positional embeddings to all tokens in this full set [...]. The decoder has another
    series of Transformer blocks." "The last layer of the decoder is a linear projection whose
    number of output channels equals the number of pixel values in a patch."

    Given: ``embed`` (``encoder_dim -> dim``), ``mask_token`` (``[1, 1, dim]``), ``pos_embed``
    (a fixed buffer ``[1, 1 + L, dim]``), ``blocks``, ``norm``, ``pred`` (``dim -> p*p*C``).
    You write :meth:`forward`.
    """

    def __init__(
        self,
        num_patches: int,
        patch_size: int = 4,
        in_chans: int = 3,
        encoder_dim: int = 128,
        dim: int = 128,
        depth: int = 1,
        heads: int = 4,
        mlp_ratio: float = 4.0,
    ):
        super().__init__()
        grid = math.isqrt(num_patches)
        if grid * grid != num_patches:
            raise ValueError(f"num_patches must be a square (a square grid), got {num_patches}")
        self.num_patches, self.patch_size, self.in_chans = num_patches, patch_size, in_chans
        self.embed = nn.Linear(encoder_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))  # [1, 1, dim]
        table = sincos_pos_embed_2d(dim, grid, cls_token=True)  # [1 + L, dim]
        self.register_buffer("pos_embed", table[None], persistent=False)  # [1, 1 + L, dim]
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pred = nn.Linear(dim, patch_size * patch_size * in_chans)
        _init_mae_weights(self)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """MAE's ``forward_decoder``.

        1. ``x = self.embed(latent)``: ``[N, 1 + L_keep, dim]``;
        2. append ``L - L_keep`` copies of ``self.mask_token`` after the visible tokens (class
           token left out), then put every token back in its original place:
           ``full[:, l] = shuffled[:, ids_restore[:, l]]`` (``torch.gather`` along the tokens);
        3. put the class token back in front, add ``self.pos_embed``;
        4. ``self.blocks``, ``self.norm``, ``self.pred``; drop the class token.

        Args:
            latent: ``[N, 1 + L_keep, encoder_dim]`` from :class:`MAEEncoder`.
            ids_restore: int64 ``[N, L]`` from :func:`random_masking`.

        Returns:
            ``[N, L, p*p*C]``: the predicted pixels of every patch, in :func:`patchify`'s layout.
        """
        if latent.ndim != 3 or ids_restore.ndim != 2 or ids_restore.shape[1] != self.num_patches:
            raise ValueError(
                f"expected latent [N, 1 + L_keep, D] and ids_restore [N, {self.num_patches}], "
                f"got {tuple(latent.shape)} and {tuple(ids_restore.shape)}"
            )
        raise NotImplementedError("Implement MAEDecoder.forward: see its docstring")


# ==============================================================================================
# Part 5. The loss: reconstruct the masked patches
# ==============================================================================================


def mae_loss(
    images: torch.Tensor,
    pred: torch.Tensor,
    mask: torch.Tensor,
    patch_size: int,
    norm_pix_loss: bool = False,
) -> torch.Tensor:
    """Mean squared error between predicted and true pixels, on the masked patches only.

    He et al. (2022), Sec. 3: "Our loss function computes the mean squared error (MSE) between
    the reconstructed and original images in the pixel space. We compute the loss only on
    masked patches, similar to BERT." And: "We also study a variant whose reconstruction target
    is the normalized pixel values of each masked patch. Specifically, we compute the mean and
    standard deviation of all pixels in a patch and use them to normalize this patch." MAE's
    ``forward_loss``:

    1. ``target = patchify(images, patch_size)``;
    2. with ``norm_pix_loss``: ``target = (target - mean) / sqrt(var + 1e-6)``, the mean and
       variance over each patch's ``p*p*C`` values (``Tensor.var``'s default, unbiased, as in
       MAE's code);
    3. the per-patch loss is the mean over the ``p*p*C`` values of ``(pred - target)^2``;
    4. the loss is the mean of the per-patch losses of the masked patches:
       ``sum(loss * mask) / sum(mask)``.

    Args:
        images: ``[N, C, H, W]`` float in [0, 1] (uint8 is converted).
        pred: ``[N, L, p*p*C]`` from :class:`MAEDecoder`.
        mask: ``[N, L]``, 1 for a masked patch, 0 for a visible one.
        patch_size: ``p``.
        norm_pix_loss: use per-patch normalised pixels as the target.

    Returns:
        A scalar tensor (differentiable with respect to ``pred``).
    """
    x = as_float_images(images)  # [N, C, H, W]
    n, c, height, width = x.shape
    if patch_size < 1 or height % patch_size or width % patch_size:
        raise ValueError(f"patch_size {patch_size} must divide the image size {height}x{width}")
    length = (height // patch_size) * (width // patch_size)
    if pred.shape != (n, length, patch_size * patch_size * c) or mask.shape != (n, length):
        raise ValueError(
            f"for images {tuple(x.shape)} and p = {patch_size} expected pred "
            f"[{n}, {length}, {patch_size * patch_size * c}] and mask [{n}, {length}], got "
            f"{tuple(pred.shape)} and {tuple(mask.shape)}"
        )
    if not bool((mask > 0).any()):
        raise ValueError("the mask marks no patch as masked: the MAE loss would divide by 0")
    raise NotImplementedError("Implement mae_loss: see its docstring")


# ==============================================================================================
# Part 6. The masked autoencoder
# ==============================================================================================


class MaskedAutoencoder(nn.Module):
    """Encoder + decoder + loss: MAE's ``forward(imgs, mask_ratio)``.

    ``norm_pix_loss=True`` is the paper's default target ("using normalized pixels as the
    reconstruction target improves representation quality", Table 1d).
    """

    def __init__(self, encoder: MAEEncoder, decoder: MAEDecoder, norm_pix_loss: bool = True):
        super().__init__()
        if encoder.num_patches != decoder.num_patches or encoder.patch_size != decoder.patch_size:
            raise ValueError(
                f"encoder ({encoder.num_patches} patches of {encoder.patch_size} px) and decoder "
                f"({decoder.num_patches} of {decoder.patch_size} px) must agree"
            )
        self.encoder, self.decoder, self.norm_pix_loss = encoder, decoder, norm_pix_loss
        self.patch_size = encoder.patch_size

    def forward(
        self,
        images: torch.Tensor,
        mask_ratio: float = 0.75,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """Encode the visible patches, decode every patch, score the masked ones.

        ``latent, mask, ids_restore = self.encoder(images, mask_ratio, generator)``, then
        ``pred = self.decoder(latent, ids_restore)``, then :func:`mae_loss` with
        ``self.patch_size`` and ``self.norm_pix_loss``.

        Returns:
            ``{"loss": scalar, "pred": [N, L, p*p*C], "mask": [N, L]}``.
        """
        x = as_float_images(images)  # [N, C, H, W]
        raise NotImplementedError("Implement MaskedAutoencoder.forward: see its docstring")


# ==============================================================================================
# Given: the three-row picture, experiment settings, pretraining, downstream protocols
# ==============================================================================================


@torch.no_grad()
def reconstruct(
    model: MaskedAutoencoder,
    images: torch.Tensor,
    mask_ratio: float = 0.75,
    generator: torch.Generator | None = None,
    fill: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The lecture's picture: masked input, prediction (visible patches pasted), original.

    Like MAE's demo notebook: ``im_masked = x * (1 - mask)`` (here the hidden patches are
    grey, ``fill``) and ``im_paste = x * (1 - mask) + y * mask``. With a norm-pix model the
    prediction is in per-patch normalised units; each predicted patch is mapped back with the
    TRUE patch's mean and variance (the visualisation MAE's authors use; the model never
    sees them).

    Returns:
        ``(masked_input, prediction, original)``, each float ``[N, C, H, W]`` in [0, 1], for
        ``replearn.viz.reconstructions(original, prediction, masked=masked_input)``.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    x = as_float_images(images.to(device))  # [N, C, H, W]
    out = model(x, mask_ratio, generator)
    pred, p, c = out["pred"], model.patch_size, x.shape[1]  # [N, L, p*p*C]
    if model.norm_pix_loss:
        target = patchify(x, p)  # [N, L, p*p*C]
        mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
        pred = pred * (var + NORM_PIX_EPS).sqrt() + mean  # [N, L, p*p*C]
    predicted = unpatchify(pred, p, c)  # [N, C, H, W]
    hidden = unpatchify(out["mask"][..., None].expand(-1, -1, p * p * c), p, c)  # [N, C, H, W]
    model.train(was_training)
    masked_input = x * (1 - hidden) + fill * hidden  # [N, C, H, W]
    pasted = (x * (1 - hidden) + predicted * hidden).clamp(0, 1)  # [N, C, H, W]
    return masked_input.cpu(), pasted.cpu(), x.cpu()


@dataclass(frozen=True)
class MAEConfig:
    """The experiment settings of the notebook and the benchmark, per preset.

    The starting recipe is the course's CPU feasibility study (ViT p4, D = 128, 4 blocks;
    decoder 1 block of width 128; mask 0.75; norm-pix target; AdamW lr 1.5e-3, wd 0.05,
    warm-up + cosine; batch 256: 600 s gave linear 56.5% against 39.2% for a random ViT on
    CIFAR-10 5k/1k). ``cpu-quick`` has 80 s, not 600: there, batches of 64 and a decoder of
    width 64 (five to six times as many steps in the same time) lifted the linear probe from
    38.0% to 49.0% (2 idle cores; measured with ``benchmarks/mae_quality.py``). Budgets are wall-clock seconds:
    ``pretrain_s`` for MAE pretraining, ``finetune_s`` for fine-tuning the pretrained ViT (and
    for the from-scratch run at the same labelled-training time), ``scratch_s`` for the same
    ViT from random init at the same TOTAL time (``pretrain_s + finetune_s``; the benchmark
    runs it), and ``ablation_s`` for each run of the mask-ratio ablation over
    ``ablation_ratios``.
    """

    pretrain_s: float
    finetune_s: float
    scratch_s: float
    ablation_s: float
    max_epochs: int
    ablation_ratios: tuple[float, ...] = (0.25, 0.5, 0.75, 0.9)
    mask_ratio: float = 0.75  # He et al.: "masking ratio of 75% works well"
    norm_pix_loss: bool = True
    patch_size: int = 4
    dim: int = 128
    depth: int = 4
    heads: int = 4
    decoder_dim: int = 128
    decoder_depth: int = 1
    decoder_heads: int = 4
    batch_size: int = 256
    lr: float = 1.5e-3  # AdamW, betas (0.9, 0.95) as in MAE; warm-up + cosine over the budget
    weight_decay: float = 0.05
    warmup: float = 0.05  # fraction of the budget spent warming up
    finetune_lr: float = 1e-3
    finetune_weight_decay: float = 0.05
    finetune_batch_size: int = 128
    # MAE's fine-tuning recipe uses 0.65 for ViT-B and 0.75 for ViT-L/H (facebookresearch/mae,
    # FINETUNE.md); 0.75 gave 45.1% and 0.65 44.0% after 30 s here, a 10x head 45.1% against
    # 37.6% for a head at the base rate (one 80 s MAE encoder, 2 idle cores)
    layer_decay: float = 0.75
    head_lr_scale: float = 10.0
    knn_k: int = 20
    knn_every: int = 0  # epochs between kNN monitor evaluations (0: no monitor)
    probe_iters: int = 100  # L-BFGS iterations of the linear probe
    checkpoints: bool = False  # train-or-load the runs under checkpoints/

    @staticmethod
    def from_preset(preset) -> MAEConfig:
        if preset.name == "smoke":
            return MAEConfig(pretrain_s=2, finetune_s=1, scratch_s=3, ablation_s=1, max_epochs=1,
                             batch_size=32, ablation_ratios=(0.5, 0.75), dim=32, depth=1,
                             heads=2, decoder_dim=32, finetune_batch_size=32,
                             probe_iters=10)  # fmt: skip
        if preset.name == "cpu-quick":
            return MAEConfig(pretrain_s=80, finetune_s=30, scratch_s=110, ablation_s=10,
                             ablation_ratios=(0.5, 0.75, 0.9), batch_size=64, decoder_dim=64,
                             lr=1e-3, finetune_batch_size=64,
                             max_epochs=preset.max_epochs)  # fmt: skip
        # colab: sized to the notebook header's time on a T4 (benchmarks/README.md, "Colab budgets")
        # From scratch always gets the time of pretraining and fine-tuning together.
        scale = preset.time_scale
        pretrain, finetune, ablation = (130, 45, 15) if preset.name == "colab" else (300, 100, 60)
        return MAEConfig(pretrain_s=pretrain * scale, finetune_s=finetune * scale,
                         scratch_s=(pretrain + finetune) * scale, ablation_s=ablation * scale,
                         max_epochs=800, batch_size=512, checkpoints=True)  # fmt: skip


def build_mae(cfg: MAEConfig, image_size: int = 32, in_chans: int = 3) -> MaskedAutoencoder:
    """A fresh :class:`MaskedAutoencoder` with ``cfg``'s sizes (seed torch first)."""
    encoder = build_encoder(cfg, image_size, in_chans)
    decoder = MAEDecoder(encoder.num_patches, cfg.patch_size, in_chans, cfg.dim, cfg.decoder_dim,
                         cfg.decoder_depth, cfg.decoder_heads)  # fmt: skip
    return MaskedAutoencoder(encoder, decoder, norm_pix_loss=cfg.norm_pix_loss)


def build_encoder(cfg: MAEConfig, image_size: int = 32, in_chans: int = 3) -> MAEEncoder:
    """A fresh :class:`MAEEncoder` with ``cfg``'s sizes (seed torch first)."""
    return MAEEncoder(image_size, cfg.patch_size, in_chans, cfg.dim, cfg.depth, cfg.heads)


@dataclass
class PretrainResult:
    """A finished MAE pretraining run: the encoder to transfer, the whole model, what happened."""

    encoder: MAEEncoder
    model: MaskedAutoencoder
    history: History
    mask_ratio: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def final_loss(self) -> float:
        """Mean training loss over the last 20 steps."""
        return self.history.recent_mean("loss")


def _check_uint8_images(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.dtype != torch.uint8:
        what = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor) else type(images).__name__  # fmt: skip
        raise ValueError(f"images must be uint8 [N, C, H, W] as stored by replearn.data, got {what}")  # fmt: skip


def _adamw(
    model: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float] = (0.9, 0.95)
) -> torch.optim.AdamW:
    """AdamW (MAE pretrains with betas (0.9, 0.95)); no decay on biases and norms (1-D)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim > 1], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=betas)


def _finetune_groups(
    model: nn.Sequential, lr: float, weight_decay: float, layer_decay: float, head_scale: float
) -> list[dict]:
    """AdamW groups for ``Sequential(PooledFeatures(encoder), head)``, deeper layers faster.

    MAE's layer-wise learning-rate decay (He et al., App. A.2, after BEiT; ``lr_decay.py`` in
    MAE's code): the final norm keeps ``lr``, the top block gets ``layer_decay * lr``, each
    block below ``layer_decay`` times the one above, and the patch embedding and class token
    ``layer_decay ** (depth + 1)``; the new head gets ``head_scale * lr``. No weight decay on
    biases and norms (1-D tensors).
    """
    encoder, head = model[0].encoder, model[1]
    depth = len(encoder.blocks)
    scale_of: dict[int, float] = {id(p): layer_decay ** (depth + 1) for p in encoder.parameters()}
    for i, block in enumerate(encoder.blocks):
        scale_of.update({id(p): layer_decay ** (depth - i) for p in block.parameters()})
    scale_of.update({id(p): 1.0 for p in encoder.norm.parameters()})
    scale_of.update({id(p): head_scale for p in head.parameters()})
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for p in model.parameters():
        if p.requires_grad:
            key = (scale_of[id(p)], weight_decay if p.ndim > 1 else 0.0)
            groups.setdefault(key, []).append(p)
    return [{"params": ps, "lr": lr * scale, "weight_decay": wd}
            for (scale, wd), ps in groups.items()]  # fmt: skip


def pretrain(
    images: torch.Tensor,
    cfg: MAEConfig,
    *,
    budget_s: float | None = None,
    mask_ratio: float | None = None,
    seed: int = 0,
    monitor: Hook | tuple[torch.Tensor, ...] | None = None,
    progress: bool = False,
    device: str | torch.device = "cpu",
    checkpoint_path: str | Path | None = None,
) -> PretrainResult:
    """Pretrain a fresh MAE for ``budget_s`` seconds of wall clock with ``replearn.train.train``.

    AdamW (``cfg.lr``, ``cfg.weight_decay``, betas (0.9, 0.95)), linear warm-up + cosine decay
    over the budget (``replearn.train.BudgetCosine``), gradient clipping at 5. No augmentation:
    "MAE works well using cropping-only augmentation" (He et al., Sec. 4.1, Table 1f); on
    32x32 images we use none, as the course's feasibility study did.

    Args:
        images: uint8 ``[N, C, H, W]`` (square; the side must be a multiple of ``cfg.patch_size``).
        budget_s: seconds (default ``cfg.pretrain_s``).
        mask_ratio: fraction of patches removed (default ``cfg.mask_ratio``).
        monitor: a ``replearn.train.Hook``, or ``(train_x, train_y, test_x, test_y)`` for a
            kNN monitor on the encoder's pooled features every ``cfg.knn_every`` epochs.
        checkpoint_path: train-or-load file (``None``: no checkpoint).

    Returns:
        A ``PretrainResult``; its model and encoder are in eval mode.
    """
    _check_uint8_images(images)
    mask_ratio = cfg.mask_ratio if mask_ratio is None else float(mask_ratio)
    _check_mask_ratio(mask_ratio)
    budget_s = float(cfg.pretrain_s if budget_s is None else budget_s)
    device = pick_device(device)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)  # CPU: the same masks on any device
    model = build_mae(cfg, images.shape[-1], images.shape[1]).to(device)
    optimizer = _adamw(model, cfg.lr, cfg.weight_decay)
    loader = TensorLoader(images, batch_size=min(cfg.batch_size, len(images)), seed=seed, device=device)  # fmt: skip
    hooks: list[Hook] = []
    if isinstance(monitor, Hook):
        hooks.append(monitor)
    elif monitor is not None and cfg.knn_every > 0:
        train_x, train_y, test_x, test_y = monitor
        hooks.append(KNNMonitor(train_x, train_y, test_x, test_y, every=cfg.knn_every, k=cfg.knn_k,
                                encoder_of=lambda m: PooledFeatures(m.encoder)))  # fmt: skip

    def step(model: MaskedAutoencoder, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss": model(as_float_images(batch), mask_ratio, generator)["loss"]}

    config = TrainConfig(epochs=cfg.max_epochs, budget_s=budget_s, progress=progress,
                         desc=f"MAE {mask_ratio:.0%}", grad_clip=5.0,
                         checkpoint_path=str(checkpoint_path) if checkpoint_path else None)  # fmt: skip
    history = train(step, model, optimizer, loader, config,
                    scheduler=BudgetCosine(optimizer, budget_s, warmup=cfg.warmup), hooks=hooks)  # fmt: skip
    model.eval()
    return PretrainResult(model.encoder, model, history, mask_ratio)


def finetune_augment(generator: torch.Generator | None = None):
    """Light augmentation for fine-tuning: random resized crop (70-100% of the area) + flip."""

    def view(x: torch.Tensor) -> torch.Tensor:
        size = (x.shape[2], x.shape[3])
        x = augment.random_resized_crop(x, size, scale=(0.7, 1.0), generator=generator)
        return augment.random_horizontal_flip(x, generator=generator)  # [N, C, H, W]

    return view


def finetune(
    encoder: MAEEncoder,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    cfg: MAEConfig,
    *,
    budget_s: float | None = None,
    seed: int = 0,
    device: str | torch.device | None = "cpu",
    progress: bool = False,
    layer_decay: float | None = None,
) -> float:
    """Fine-tune a copy of ``encoder`` with a linear head on labelled images: test accuracy.

    He et al. (2022), Sec. 4: "end-to-end fine-tuning", every layer trained. The recipe here:
    the pooled patch tokens (:meth:`MAEEncoder.forward_features`) into a linear head
    (initialised with std 2e-5 as in MAE's fine-tuning code), AdamW (``cfg.finetune_lr``,
    betas (0.9, 0.999), weight decay ``cfg.finetune_weight_decay``, none on biases and norms),
    linear warm-up + cosine decay over the budget (``replearn.train.BudgetCosine``, as
    pretraining), MAE's layer-wise learning-rate decay (``cfg.layer_decay``; ``layer_decay=1``
    trains every layer at the same rate, as :func:`from_scratch` does), a head that learns
    ``cfg.head_lr_scale`` times faster, cross-entropy, light augmentation
    (:func:`finetune_augment`). MAE adds mixup, cutmix and drop-path, which a few CPU minutes
    do not need. The caller's encoder is left unchanged.

    Args:
        layer_decay: override ``cfg.layer_decay``.

    Returns:
        The test accuracy in [0, 1].
    """
    budget_s = float(cfg.finetune_s if budget_s is None else budget_s)
    if len(train_x) != len(train_y) or len(test_x) != len(test_y):
        raise ValueError("finetune needs as many labels as images, for training and for testing")
    device = pick_device(device)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)  # CPU: the same views on any device
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    head = nn.Linear(encoder.feature_dim, num_classes)
    nn.init.trunc_normal_(head.weight, std=2e-5)  # MAE's fine-tuning head initialisation
    nn.init.zeros_(head.bias)
    model = nn.Sequential(PooledFeatures(copy.deepcopy(encoder)), head).to(device)
    layer_decay = cfg.layer_decay if layer_decay is None else float(layer_decay)
    if not 0 < layer_decay <= 1:
        raise ValueError(f"layer_decay must be in (0, 1], got {layer_decay}")
    groups = _finetune_groups(model, cfg.finetune_lr, cfg.finetune_weight_decay, layer_decay,
                              cfg.head_lr_scale)  # fmt: skip
    optimizer = torch.optim.AdamW(groups, lr=cfg.finetune_lr, betas=(0.9, 0.999))
    loader = TensorLoader(train_x, train_y, batch_size=min(cfg.finetune_batch_size, len(train_x)),
                          seed=seed, device=device)  # fmt: skip
    view = finetune_augment(generator)

    def step(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> dict:
        images, labels = batch  # [B, C, H, W], [B]
        logits = model(view(as_float_images(images)))  # [B, K classes]
        accuracy = (logits.detach().argmax(dim=1) == labels).float().mean()
        return {"loss": F.cross_entropy(logits, labels), "acc": accuracy}

    config = TrainConfig(epochs=cfg.max_epochs, budget_s=budget_s, progress=progress,
                         desc="fine-tune", grad_clip=5.0)  # fmt: skip
    train(step, model, optimizer, loader, config,
          scheduler=BudgetCosine(optimizer, budget_s, warmup=cfg.warmup))  # fmt: skip
    logits = extract_features(model, test_x)  # [M, K classes]
    return float((logits.argmax(dim=1) == test_y.cpu()).float().mean())


def from_scratch(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    cfg: MAEConfig,
    *,
    budget_s: float | None = None,
    seed: int = 0,
    device: str | torch.device | None = "cpu",
    progress: bool = False,
) -> float:
    """The same ViT from random initialisation, trained with :func:`finetune`'s recipe.

    Every layer at the same learning rate (layer decay 1: there is nothing pretrained to
    protect). The baseline MAE must beat: by default for ``cfg.scratch_s`` seconds, the TOTAL
    time of pretraining plus fine-tuning; ``budget_s=cfg.finetune_s`` gives the same
    labelled-training time. Returns the test accuracy in [0, 1].
    """
    budget_s = float(cfg.scratch_s if budget_s is None else budget_s)
    torch.manual_seed(seed)
    encoder = build_encoder(cfg, train_x.shape[-1], train_x.shape[1])
    return finetune(encoder, train_x, train_y, test_x, test_y, cfg, budget_s=budget_s,
                    seed=seed, device=device, progress=progress, layer_decay=1.0)  # fmt: skip


# The linear probe's L2 strength, fixed rather than searched (as in Assignments 3 and 4):
# 2e-4 is scikit-learn's C = 1 on 4,500 samples, the probe of the course's feasibility study.
PROBE_WEIGHT_DECAY = 2e-4


def evaluate_encoder(
    encoder: MAEEncoder,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    cfg: MAEConfig | None = None,
) -> dict[str, float]:
    """``{"knn": acc, "linear": acc}`` of the frozen encoder's pooled features, in [0, 1].

    kNN: cosine, ``cfg.knn_k`` neighbours, temperature-weighted votes (t = 0.1); linear:
    ``replearn.evaluate.linear_probe`` on standardised features. MAE's features are known to be
    weaker under a linear probe than under fine-tuning ("linear probing and fine-tuning
    results are largely uncorrelated", He et al., Sec. 4.3).
    """
    k, iters = (cfg.knn_k, cfg.probe_iters) if cfg is not None else (20, 100)
    features = PooledFeatures(encoder)
    train_feats = extract_features(features, train_x)  # [N, D]
    test_feats = extract_features(features, test_x)  # [M, D]
    knn = knn_accuracy(train_feats, train_y, test_feats, test_y, k=k)
    linear = linear_probe(train_feats, train_y, test_feats, test_y,
                          weight_decay=PROBE_WEIGHT_DECAY, max_iter=iters).test_accuracy  # fmt: skip
    return {"knn": knn, "linear": linear}
