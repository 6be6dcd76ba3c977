"""Trusted probes for Assignment 5 (masked autoencoders).

Each probe runs as ``fn(student_module, *args)`` in a grading worker: it builds the tiny ViTs
and the generator itself (neither can cross the worker boundary), drives the student's code and
returns plain data. The parent runs the same probe on the reference module, or checks the
returned values against properties it computes itself.

A probe that grades one part swaps the other student parts it calls (the patch functions, the
masking, the sine-cosine table, the loss) for the trusted versions below while it runs, and puts
them back afterwards, so that one mistake costs the tests of that part only. The encoder and
decoder constructors are given code, but they call the student's ``sincos_pos_embed_2d``; the
swap keeps a missing or wrong table from failing every later part.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch
import torch.nn as nn

from replearn.backbones import Block, PatchEmbed

IMAGE_SIZE, PATCH, CHANNELS = 16, 4, 3  # a 4 x 4 grid of 4x4 patches: L = 16, p*p*C = 48
NUM_PATCHES = (IMAGE_SIZE // PATCH) ** 2
ENCODER = dict(image_size=IMAGE_SIZE, patch_size=PATCH, in_chans=CHANNELS, dim=16, depth=2, heads=2)  # fmt: skip
DECODER = dict(num_patches=NUM_PATCHES, patch_size=PATCH, in_chans=CHANNELS, encoder_dim=16, dim=16, depth=1, heads=2)  # fmt: skip
SMOKE_WIDTH = 32  # the smoke-train MAE: encoder 32 x 1 block, decoder 32 x 1 block


# ---- trusted building blocks ----------------------------------------------------------------


def trusted_patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    n, c, h, w = images.shape
    p = patch_size
    x = images.reshape(n, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(n, (h // p) * (w // p), p * p * c)  # [N, L, p*p*C]


def trusted_unpatchify(patches: torch.Tensor, patch_size: int, channels: int = 3) -> torch.Tensor:
    n, length, _ = patches.shape
    g, p = math.isqrt(length), patch_size
    x = patches.reshape(n, g, g, p, p, channels).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(n, channels, g * p, g * p)  # [N, C, H, W]


def trusted_random_masking(tokens, mask_ratio, generator=None):
    n, length, dim = tokens.shape
    keep = int(length * (1 - mask_ratio))
    noise = torch.rand((n, length), generator=generator, device=tokens.device)  # [N, L]
    ids_shuffle = noise.argsort(dim=1)
    ids_restore = ids_shuffle.argsort(dim=1)
    visible = tokens.gather(1, ids_shuffle[:, :keep, None].expand(-1, -1, dim))
    mask = torch.ones(n, length, device=tokens.device)
    mask[:, :keep] = 0
    return visible, mask.gather(1, ids_restore), ids_restore


def trusted_sincos(dim: int, grid_size: int, cls_token: bool = False) -> torch.Tensor:
    """MAE's ``get_2d_sincos_pos_embed`` (util/pos_embed.py), in numpy as the authors wrote it."""

    def one_d(d: int, positions: np.ndarray) -> np.ndarray:
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.outer(positions.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    coords = np.arange(grid_size, dtype=np.float64)
    grid = np.stack(np.meshgrid(coords, coords), axis=0)  # "here w goes first"
    table = np.concatenate([one_d(dim // 2, grid[0]), one_d(dim // 2, grid[1])], axis=1)
    if cls_token:
        table = np.concatenate([np.zeros((1, dim)), table], axis=0)
    return torch.from_numpy(table).float()


def trusted_mae_loss(images, pred, mask, patch_size, norm_pix_loss=False):
    x = images.float() / 255 if images.dtype == torch.uint8 else images.float()
    target = trusted_patchify(x, patch_size)
    if norm_pix_loss:
        mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
        target = (target - mean) / (var + 1e-6).sqrt()
    per_patch = ((pred - target) ** 2).mean(dim=-1)  # [N, L]
    return (per_patch * mask).sum() / mask.sum()


TRUSTED = {
    "patchify": trusted_patchify,
    "unpatchify": trusted_unpatchify,
    "random_masking": trusted_random_masking,
    "sincos_pos_embed_2d": trusted_sincos,
    "mae_loss": trusted_mae_loss,
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


class TrustedEncoder(nn.Module):
    """MAE's encoder with the assignment's parameter names (``patch_embed``, ``cls_token``, ...)."""

    def __init__(self, image_size=16, patch_size=4, in_chans=3, dim=16, depth=2, heads=2):
        super().__init__()
        self.patch_size, self.feature_dim = patch_size, dim
        self.patch_embed = PatchEmbed(image_size, patch_size, in_chans, dim)
        self.num_patches = self.patch_embed.num_patches
        table = trusted_sincos(dim, self.patch_embed.grid_size, cls_token=True)[None]
        self.register_buffer("pos_embed", table, persistent=False)  # [1, 1 + L, D]
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, images, mask_ratio, generator=None):
        x = images.float() / 255 if images.dtype == torch.uint8 else images.float()
        tokens = self.patch_embed(x) + self.pos_embed[:, 1:]  # [N, L, D]
        visible, mask, ids_restore = trusted_random_masking(tokens, mask_ratio, generator)
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(len(x), -1, -1)
        latent = torch.cat([cls, visible], dim=1)  # [N, 1 + L_keep, D]
        for block in self.blocks:
            latent = block(latent)
        return self.norm(latent), mask, ids_restore


class TrustedDecoder(nn.Module):
    """MAE's decoder with the assignment's parameter names (``embed``, ``mask_token``, ...)."""

    def __init__(self, num_patches=16, patch_size=4, in_chans=3, encoder_dim=16, dim=16,
                 depth=1, heads=2):  # fmt: skip
        super().__init__()
        self.num_patches, self.patch_size = num_patches, patch_size
        self.embed = nn.Linear(encoder_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        table = trusted_sincos(dim, math.isqrt(num_patches), cls_token=True)[None]
        self.register_buffer("pos_embed", table, persistent=False)  # [1, 1 + L, dim]
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pred = nn.Linear(dim, patch_size * patch_size * in_chans)

    def forward(self, latent, ids_restore):
        x = self.embed(latent)  # [N, 1 + L_keep, dim]
        n, length, dim = x.shape[0], ids_restore.shape[1], x.shape[2]
        masks = self.mask_token.expand(n, length + 1 - x.shape[1], -1)
        full = torch.cat([x[:, 1:], masks], dim=1).gather(1, ids_restore[..., None].expand(-1, -1, dim))  # fmt: skip
        tokens = torch.cat([x[:, :1], full], dim=1) + self.pos_embed
        for block in self.blocks:
            tokens = block(tokens)
        return self.pred(self.norm(tokens))[:, 1:]  # [N, L, p*p*C]


class TrustedMAE(nn.Module):
    """The parent's copy of the smoke-train architecture (names as ``MaskedAutoencoder``)."""

    def __init__(self, seed: int):
        super().__init__()
        torch.manual_seed(seed)
        self.encoder = TrustedEncoder(dim=SMOKE_WIDTH, depth=1)
        self.decoder = TrustedDecoder(encoder_dim=SMOKE_WIDTH, dim=SMOKE_WIDTH, depth=1)
        with torch.no_grad():  # MAE's initialisation, as the assignment's given constructors do
            for module in self.modules():
                if isinstance(module, nn.Linear):
                    nn.init.xavier_uniform_(module.weight)
                    nn.init.zeros_(module.bias)
            weight = self.encoder.patch_embed.proj.weight
            nn.init.xavier_uniform_(weight.view(weight.shape[0], -1))
            nn.init.zeros_(self.encoder.patch_embed.proj.bias)
            nn.init.normal_(self.encoder.cls_token, std=0.02)
            nn.init.normal_(self.decoder.mask_token, std=0.02)

    def forward(self, images, mask_ratio, generator=None):
        latent, mask, ids_restore = self.encoder(images, mask_ratio, generator)
        pred = self.decoder(latent, ids_restore)
        return {"loss": trusted_mae_loss(images, pred, mask, PATCH), "pred": pred, "mask": mask}


@torch.no_grad()
def reseed(model: nn.Module, seed: int, scale: float = 0.3) -> nn.Module:
    """Overwrite every trained parameter, in name order, with seeded Gaussian noise.

    Makes the weights independent of the order in which the student's code built its layers.
    """
    generator = torch.Generator().manual_seed(seed)
    for _, param in sorted(model.named_parameters()):
        param.copy_(torch.randn(param.shape, generator=generator) * scale)
    return model


def _tensors(*values) -> tuple:
    for value in values:
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"expected tensors, got {type(value).__name__}")
    return tuple(v.detach().clone() for v in values)


def _triple(out, who: str) -> tuple:
    if not isinstance(out, tuple) or len(out) != 3:
        raise TypeError(f"{who} must return a tuple of three tensors, got {type(out).__name__}")
    return _tensors(*out)


# ---- Part 2: masking ------------------------------------------------------------------------


def masking(module, seed: int, tokens: torch.Tensor, mask_ratio: float) -> dict:
    """``random_masking(tokens, mask_ratio, generator)`` with a generator seeded ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    visible, mask, ids_restore = _triple(module.random_masking(tokens, mask_ratio, generator), "random_masking")  # fmt: skip
    return {"visible": visible, "mask": mask, "ids_restore": ids_restore}


def mask_rates(module, seed: int, n: int, length: int, mask_ratio: float) -> dict:
    """How often each of ``L`` positions is masked over ``n`` samples, and the kept counts."""
    generator = torch.Generator().manual_seed(seed)
    _, mask, _ = _triple(module.random_masking(torch.zeros(n, length, 2), mask_ratio, generator), "random_masking")  # fmt: skip
    return {"rate": mask.float().mean(dim=0), "masked_per_sample": mask.float().sum(dim=1)}


# ---- Part 4: encoder and decoder ------------------------------------------------------------


def encoder_forward(module, seed: int, images: torch.Tensor, mask_ratio: float) -> dict:
    """The student's ``MAEEncoder.forward`` on a seeded tiny encoder (trusted table, masking)."""
    with trusted_parts(module, "sincos_pos_embed_2d", "random_masking"):
        torch.manual_seed(seed)
        encoder = reseed(module.MAEEncoder(**ENCODER), seed).eval()
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            latent, mask, ids_restore = _triple(encoder(images, mask_ratio, generator), "MAEEncoder.forward")  # fmt: skip
            # the same images with every masked patch replaced by noise: the latent must not move
            hidden = trusted_unpatchify(mask[..., None].expand(-1, -1, PATCH * PATCH * CHANNELS), PATCH, CHANNELS)  # fmt: skip
            noise = torch.rand(images.shape, generator=torch.Generator().manual_seed(seed + 1))
            scrambled = torch.where(hidden.bool(), noise, images.float())
            generator = torch.Generator().manual_seed(seed)
            again = _triple(encoder(scrambled, mask_ratio, generator), "MAEEncoder.forward")[0]
    return {"latent": latent, "mask": mask, "ids_restore": ids_restore, "scrambled_latent": again}


def decoder_forward(module, seed: int, latent: torch.Tensor, ids_restore: torch.Tensor) -> dict:
    """The student's ``MAEDecoder.forward`` on a seeded tiny decoder (trusted table)."""
    with trusted_parts(module, "sincos_pos_embed_2d"):
        torch.manual_seed(seed)
        decoder = reseed(module.MAEDecoder(**DECODER), seed).eval()
        leaf = latent.clone().requires_grad_(True)
        pred = decoder(leaf, ids_restore)
        if not isinstance(pred, torch.Tensor):
            raise TypeError(f"MAEDecoder.forward must return a tensor, got {type(pred).__name__}")
        pred.pow(2).sum().backward()
    return {"pred": pred.detach().clone(), "latent_grad": None if leaf.grad is None else leaf.grad.clone(),
            "mask_token_grad": None if decoder.mask_token.grad is None else decoder.mask_token.grad.clone()}  # fmt: skip


# ---- Part 5: the loss -----------------------------------------------------------------------


def loss_with_grad(module, images, pred, mask, patch_size: int, norm_pix: bool) -> dict:
    """The student's ``mae_loss`` (over the trusted ``patchify``) and its gradient w.r.t. pred."""
    with trusted_parts(module, "patchify"):
        leaf = pred.clone().requires_grad_(True)
        loss = module.mae_loss(images, leaf, mask, patch_size, norm_pix)
        if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
            raise TypeError("mae_loss must return a scalar tensor")
        if loss.requires_grad:
            loss.backward()
    return {"output": loss.detach().clone(), "grads": [None if leaf.grad is None else leaf.grad.clone()]}  # fmt: skip


# ---- Part 6: the masked autoencoder ---------------------------------------------------------


def mae_forward(module, seed: int, images: torch.Tensor, mask_ratio: float, norm_pix: bool) -> dict:
    """The student's ``MaskedAutoencoder.forward`` over trusted encoder, decoder and loss."""
    with trusted_parts(module, "mae_loss", "patchify"):
        torch.manual_seed(seed)
        model = module.MaskedAutoencoder(TrustedEncoder(), TrustedDecoder(), norm_pix_loss=norm_pix)
        reseed(model, seed).train()
        generator = torch.Generator().manual_seed(seed)
        out = model(images, mask_ratio, generator)
        if not isinstance(out, dict) or not {"loss", "pred", "mask"} <= set(out):
            raise TypeError("MaskedAutoencoder.forward must return {'loss', 'pred', 'mask'}")
        loss = out["loss"]
        if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
            raise TypeError("MaskedAutoencoder.forward's 'loss' must be a scalar tensor")
        loss.backward()
        grad = model.encoder.patch_embed.proj.weight.grad
    return {"loss": float(loss.detach()), "pred": _tensors(out["pred"])[0],
            "mask": _tensors(out["mask"])[0], "grad": None if grad is None else grad.clone()}  # fmt: skip


def smoke_images(seed: int, n: int = 32) -> torch.Tensor:
    """``[n, 3, 16, 16]`` float: random colour gradients, which a tiny MAE learns in seconds."""
    g = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(0, 1, IMAGE_SIZE)
    start, slope_y, slope_x = (torch.rand(n, 3, 1, 1, generator=g) for _ in range(3))
    x = 0.5 * start + 0.25 * slope_y * ramp.view(1, 1, -1, 1) + 0.25 * slope_x * ramp.view(1, 1, 1, -1)  # fmt: skip
    return x.clamp(0, 1)


def smoke_train(module, seed: int, steps: int) -> dict:
    """Train a tiny MAE built from the student's whole module; return weights and losses.

    Adam (lr 3e-3), 32 fixed smooth 16x16 images, mask ratio 0.75, pixel target. The parent
    loads the weights into its own architecture and measures the masked loss itself.
    """
    torch.manual_seed(seed)
    encoder = module.MAEEncoder(**{**ENCODER, "dim": SMOKE_WIDTH, "depth": 1})
    decoder = module.MAEDecoder(**{**DECODER, "encoder_dim": SMOKE_WIDTH, "dim": SMOKE_WIDTH})
    model = module.MaskedAutoencoder(encoder, decoder, norm_pix_loss=False).train()
    generator = torch.Generator().manual_seed(seed)
    images = smoke_images(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(steps):
        out = model(images, 0.75, generator)
        loss = out["loss"] if isinstance(out, dict) else None
        if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
            raise TypeError("MaskedAutoencoder.forward must return {'loss': scalar tensor, ...}")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return {"state_dict": state, "losses": losses}


@torch.no_grad()
def heldout_masked_loss(model: nn.Module, seed: int, masks_seed: int, repeats: int = 4) -> float:
    """The trusted masked-patch loss of ``model`` on the smoke images under fresh masks."""
    images = smoke_images(seed)
    generator = torch.Generator().manual_seed(masks_seed)
    model.eval()
    return sum(float(model(images, 0.75, generator)["loss"]) for _ in range(repeats)) / repeats
