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
4. :class:`MAEEncoder`: a ViT that sees only the visible patches;
5. :class:`MAEDecoder`: mask tokens, the order restored, a small transformer, one linear layer
   to pixels;
6. :func:`mae_loss` (mean squared error on the masked patches only) and
   :class:`MaskedAutoencoder`, the three put together.

The parts are numbered as in the notebook.

The experiments around the parts (settings per preset, pretraining, fine-tuning, the probes,
the three-row picture) are ``replearn.recipes.masked_autoencoders``.

Shapes use the package legend (``docs/internals.md``); local letter: ``L_keep`` the visible
patches. Images are float32 in [0, 1] (``as_float_images`` converts uint8 batches). Your parts:
replace every ``raise NotImplementedError``; everything else is given.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F  # noqa: F401  (yours to use in your parts, as in every module)

from replearn.backbones import Block, PatchEmbed
from replearn.data import as_float_images
from replearn.train import draw

# Library shortcuts that would do a part for you. The grader reads this literal: using one of
# these inside the function named on the left scores 0 for that function's tests.
# * patchify / unpatchify: the point is the reshape-permute-reshape that puts each patch's
#   pixels in MAE's (p, p, C) order. lightly ships MAE's own two functions, and torch's
#   unfold/fold cut patches too (in (C, p, p) order, so they would also give the wrong layout).
# * random_masking: the course library's pixel-space `mask_patches` draws the same per-sample
#   shuffle, and lightly's `random_token_mask` returns the kept indices directly.
# * sincos_pos_embed_2d: the course library's ViT and lightly both carry a version of MAE's
#   `get_2d_sincos_pos_embed`; write the formula yourself.
# * mae_loss: lightly's `normalize_mean_var` is the norm-pix target in one call. torch's MSE is
#   allowed: F.mse_loss(pred, target, reduction="none") is the squared error itself; with its
#   default reduction it would average over the visible patches too (the public check says so).
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
    "mae_loss": ["lightly.models.utils.normalize_mean_var"],
}

# MAE's code adds 1e-6 to the variance of each target patch before dividing ("norm_pix_loss").
NORM_PIX_EPS = 1e-6


def hello() -> str:
    """Import check: the notebook calls this first to show which file it loaded."""
    return "masked_autoencoders: ready"


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

    The row's half first (the course library's ``replearn.backbones.sincos_pos_embed_2d``) is
    just as good a position code, and the grader accepts either order of the two halves; within
    each half, the sines come first.

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
# Part 4. The encoder sees only the visible patches
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


# ==============================================================================================
# Part 5. The decoder and its mask tokens
# ==============================================================================================


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
# Part 6. The loss on the masked patches, and the masked autoencoder
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
