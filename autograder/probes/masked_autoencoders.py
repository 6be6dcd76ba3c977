"""Probes for Assignment 5 (masked autoencoders).

Each probe runs as ``fn(student_module, *args)`` in a grading worker: it builds the tiny ViTs
and the generator itself (neither can cross the worker boundary), drives the student's code and
returns plain data. The parent runs the same probe on the reference module (public tests: the
value recorded in ``expected_public.agv``), or checks the returned values against properties it
computes itself.

A probe that grades one part replaces the other parts it calls (the position table, the
masking, ``patchify``, the loss, the encoder and decoder of the whole model) by the stand-ins
below while it runs, and puts them back afterwards. A stand-in has the interface of the part it
replaces and computes something simpler on purpose (a ramp for the position table, a fixed
reversal for the masking): one mistake costs the tests of that part only, the encoder and
decoder constructors (given code, which call ``sincos_pos_embed_2d``) work whatever the table
function does, and nothing here solves a part of the assignment.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn as nn

from replearn.backbones import PatchEmbed

IMAGE_SIZE, PATCH, CHANNELS = 16, 4, 3  # a 4 x 4 grid of 4x4 patches: L = 16, p*p*C = 48
NUM_PATCHES = (IMAGE_SIZE // PATCH) ** 2
ENCODER = dict(image_size=IMAGE_SIZE, patch_size=PATCH, in_chans=CHANNELS, dim=16, depth=2, heads=2)
DECODER = dict(
    num_patches=NUM_PATCHES,
    patch_size=PATCH,
    in_chans=CHANNELS,
    encoder_dim=16,
    dim=16,
    depth=1,
    heads=2,
)
SMOKE_WIDTH = 32  # the smoke-train MAE: encoder 32 x 1 block, decoder 32 x 1 block
SMOKE_ENCODER = {**ENCODER, "dim": SMOKE_WIDTH, "depth": 1}
SMOKE_DECODER = {**DECODER, "encoder_dim": SMOKE_WIDTH, "dim": SMOKE_WIDTH}


# ---- comparisons made in the parent ----------------------------------------------------------


def either_half_first(got, want: torch.Tensor, *, rtol: float, atol: float) -> torch.Tensor:
    """The expected position table in the half order ``got`` uses (parent side).

    ``want`` puts the column's embedding in the first half of the channels, as MAE's code does;
    the row's first (the course library's order) encodes the positions just as well, and the
    notebook says either order is right: when ``got`` matches ``want`` with its halves swapped,
    that is what it is compared with.
    """
    swapped = torch.cat([want[..., want.shape[-1] // 2 :], want[..., : want.shape[-1] // 2]], -1)
    if (
        isinstance(got, torch.Tensor)
        and got.shape == want.shape
        and got.dtype == want.dtype
        and torch.allclose(got, swapped, rtol=rtol, atol=atol)
    ):
        return swapped
    return want


# ---- stand-ins for the parts a probe does not grade ---------------------------------------------


def stand_in_positions(dim: int, grid_size: int, cls_token: bool = False) -> torch.Tensor:
    """Stands in for ``sincos_pos_embed_2d``: a table of the right shape whose rows differ in
    their pattern, not only by a constant (which the LayerNorms would remove), and are not sines
    and cosines: the values ``-3 .. 3`` (over 6) repeating with period 7 along the flattened
    table."""
    rows = grid_size * grid_size + int(cls_token)
    return ((torch.arange(rows * dim) % 7 - 3).float() / 6).view(rows, dim)  # [(1 +) L, D]


def stand_in_masking(tokens: torch.Tensor, mask_ratio: float, generator=None):
    """Stands in for ``random_masking``, with no randomness: every sample keeps its LAST
    ``L_keep`` tokens, last first (the generator is not used)."""
    n, length, _ = tokens.shape
    keep = int(length * (1 - mask_ratio))
    reverse = torch.arange(length - 1, -1, -1, device=tokens.device)  # [L], its own inverse
    visible = tokens[:, reverse[:keep]]  # [N, L_keep, D]
    mask = torch.ones(n, length, device=tokens.device)  # [N, L]
    mask[:, length - keep :] = 0.0
    return visible, mask, reverse.expand(n, -1).clone()


def stand_in_patch_rows(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Stands in for ``patchify``: the pixels reshaped to ``[N, L, p*p*C]`` as they lie in
    memory (rows of the image, not patches)."""
    n, c, h, w = images.shape
    return images.reshape(n, (h // patch_size) * (w // patch_size), patch_size * patch_size * c)


def stand_in_reconstruction_loss(images, pred, mask, patch_size: int, norm_pix_loss: bool = False):
    """Stands in for ``mae_loss``: smooth in ``pred``, and depends on every argument."""
    brightness = images.float().mean(dim=(1, 2, 3))  # [N]
    weighted = (pred.mean(dim=-1) - brightness[:, None]) ** 2 * (1.0 + mask)  # [N, L]
    return weighted.mean() * (2.0 if norm_pix_loss else 1.0) + 0.01 * patch_size


class StandInEncoder(nn.Module):
    """Stands in for ``MAEEncoder`` in the test of the whole model: a patch embedding, pooled
    and spread over ``1 + L_keep`` learned slots, and a fixed mask (no transformer)."""

    def __init__(self, image_size=IMAGE_SIZE, patch_size=PATCH, in_chans=CHANNELS, dim=16):
        super().__init__()
        self.patch_size, self.num_patches = patch_size, (image_size // patch_size) ** 2
        self.patch_embed = PatchEmbed(image_size, patch_size, in_chans, dim)
        self.slots = nn.Parameter(torch.zeros(1 + self.num_patches, dim))

    def forward(self, images, mask_ratio, generator=None):
        n, keep = len(images), int(self.num_patches * (1 - mask_ratio))
        pooled = torch.tanh(self.patch_embed(images.float()).mean(dim=1))  # [N, D]
        latent = pooled[:, None, :] + self.slots[: 1 + keep]  # [N, 1 + L_keep, D]
        mask = torch.zeros(n, self.num_patches)  # [N, L]
        mask[:, keep:] = 1.0
        return latent, mask, torch.arange(self.num_patches).expand(n, -1).clone()


class StandInDecoder(nn.Module):
    """Stands in for ``MAEDecoder`` in the test of the whole model: one linear layer on the
    mean latent, plus a term in ``ids_restore`` (no mask tokens, no transformer)."""

    def __init__(
        self, num_patches=NUM_PATCHES, patch_size=PATCH, in_chans=CHANNELS, encoder_dim=16
    ):
        super().__init__()
        self.num_patches, self.patch_size = num_patches, patch_size
        self.pred = nn.Linear(encoder_dim, patch_size * patch_size * in_chans)

    def forward(self, latent, ids_restore):
        pooled = self.pred(latent.mean(dim=1))  # [N, p*p*C]
        return pooled[:, None, :] + 0.01 * ids_restore[..., None].float()  # [N, L, p*p*C]


STAND_INS = {
    "sincos_pos_embed_2d": stand_in_positions,
    "random_masking": stand_in_masking,
    "patchify": stand_in_patch_rows,
    "mae_loss": stand_in_reconstruction_loss,
}


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
    visible, mask, ids_restore = _triple(
        module.random_masking(tokens, mask_ratio, generator), "random_masking"
    )
    return {"visible": visible, "mask": mask, "ids_restore": ids_restore}


def mask_rates(module, seed: int, n: int, length: int, mask_ratio: float) -> dict:
    """How often each of ``L`` positions is masked over ``n`` samples, and the kept counts."""
    generator = torch.Generator().manual_seed(seed)
    _, mask, _ = _triple(
        module.random_masking(torch.zeros(n, length, 2), mask_ratio, generator), "random_masking"
    )
    return {"rate": mask.float().mean(dim=0), "masked_per_sample": mask.float().sum(dim=1)}


# ---- Part 4: encoder and decoder ------------------------------------------------------------


def encoder_forward(module, seed: int, images: torch.Tensor, mask_ratio: float) -> dict:
    """The student's ``MAEEncoder.forward`` on a seeded tiny encoder (stand-in table, masking)."""
    with stand_ins(module, "sincos_pos_embed_2d", "random_masking"):
        torch.manual_seed(seed)
        encoder = reseed(module.MAEEncoder(**ENCODER), seed).eval()
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            latent, mask, ids_restore = _triple(
                encoder(images, mask_ratio, generator), "MAEEncoder.forward"
            )
            # the same images with every masked patch replaced by noise: the latent must not move
            grid = IMAGE_SIZE // PATCH
            hidden = (
                mask.view(-1, 1, grid, grid).repeat_interleave(PATCH, 2).repeat_interleave(PATCH, 3)
            )
            noise = torch.rand(images.shape, generator=torch.Generator().manual_seed(seed + 1))
            scrambled = torch.where(hidden.bool(), noise, images.float())  # [N, C, H, W]
            generator = torch.Generator().manual_seed(seed)
            again = _triple(encoder(scrambled, mask_ratio, generator), "MAEEncoder.forward")[0]
    return {"latent": latent, "mask": mask, "ids_restore": ids_restore, "scrambled_latent": again}


def decoder_forward(module, seed: int, latent: torch.Tensor, ids_restore: torch.Tensor) -> dict:
    """The student's ``MAEDecoder.forward`` on a seeded tiny decoder (stand-in table)."""
    with stand_ins(module, "sincos_pos_embed_2d"):
        torch.manual_seed(seed)
        decoder = reseed(module.MAEDecoder(**DECODER), seed).eval()
        leaf = latent.clone().requires_grad_(True)
        pred = decoder(leaf, ids_restore)
        if not isinstance(pred, torch.Tensor):
            raise TypeError(f"MAEDecoder.forward must return a tensor, got {type(pred).__name__}")
        pred.pow(2).sum().backward()
    return {
        "pred": pred.detach().clone(),
        "latent_grad": None if leaf.grad is None else leaf.grad.clone(),
        "mask_token_grad": None
        if decoder.mask_token.grad is None
        else decoder.mask_token.grad.clone(),
    }


# ---- Part 5: the loss -----------------------------------------------------------------------


def loss_with_grad(module, images, pred, mask, patch_size: int, norm_pix: bool) -> dict:
    """The student's ``mae_loss`` (over the stand-in ``patchify``) and its gradient w.r.t. pred."""
    with stand_ins(module, "patchify"):
        leaf = pred.clone().requires_grad_(True)
        loss = module.mae_loss(images, leaf, mask, patch_size, norm_pix)
        if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
            raise TypeError("mae_loss must return a scalar tensor")
        if loss.requires_grad:
            loss.backward()
    return {
        "output": loss.detach().clone(),
        "grads": [None if leaf.grad is None else leaf.grad.clone()],
    }


# ---- Part 6: the masked autoencoder ---------------------------------------------------------


def mae_forward(module, seed: int, images: torch.Tensor, mask_ratio: float, norm_pix: bool) -> dict:
    """The student's ``MaskedAutoencoder.forward`` over stand-in encoder, decoder and loss."""
    with stand_ins(module, "mae_loss"):
        model = module.MaskedAutoencoder(StandInEncoder(), StandInDecoder(), norm_pix_loss=norm_pix)
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
    return {
        "loss": float(loss.detach()),
        "pred": _tensors(out["pred"])[0],
        "mask": _tensors(out["mask"])[0],
        "grad": None if grad is None else grad.clone(),
    }


def smoke_images(seed: int, n: int = 32) -> torch.Tensor:
    """``[n, 3, 16, 16]`` float: random colour gradients, which a tiny MAE learns in seconds."""
    g = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(0, 1, IMAGE_SIZE)
    start, slope_y, slope_x = (torch.rand(n, 3, 1, 1, generator=g) for _ in range(3))
    x = (
        0.5 * start
        + 0.25 * slope_y * ramp.view(1, 1, -1, 1)
        + 0.25 * slope_x * ramp.view(1, 1, 1, -1)
    )
    return x.clamp(0, 1)


def smoke_train(module, seed: int, steps: int) -> dict:
    """Train a tiny MAE built from the student's whole module; return weights and losses.

    Adam (lr 3e-3), 32 fixed smooth 16x16 images, mask ratio 0.75, pixel target. The grader
    loads the weights into the reference's architecture and measures the masked loss itself.
    """
    torch.manual_seed(seed)
    encoder = module.MAEEncoder(**SMOKE_ENCODER)
    decoder = module.MAEDecoder(**SMOKE_DECODER)
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
