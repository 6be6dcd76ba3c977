"""Fast unit tests of the reference module solutions/masked_autoencoders.py (Assignment 5).

Closed forms, properties MAE relies on (masking keeps exactly L_keep tokens and the order comes
back; the encoder sees only visible patches; the loss sees only masked ones), and parity with
independent implementations: torch's ``unfold``, the MAE code that lightly (pinned at 1.6.0)
ships (``patchify``, ``unpatchify``, ``get_2d_sincos_pos_embed``, ``normalize_mean_var``), the
course library's pixel-space ``mask_patches``, and the sine-cosine formula re-derived here.
"""

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from lightly.models import utils as lightly_utils

from replearn import augment, impl
from replearn.backbones import sincos_pos_embed_2d as library_sincos
from replearn.presets import PRESETS, get_preset
from replearn.recipes import masked_autoencoders as recipe

mae = impl.load("masked_autoencoders", "solution")


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def tiny_config(**changes) -> "recipe.MAEConfig":
    cfg = recipe.MAEConfig.from_preset(get_preset("smoke"))
    sizes = dict(
        patch_size=4,
        dim=16,
        depth=1,
        heads=2,
        decoder_dim=16,
        decoder_depth=1,
        decoder_heads=2,
        batch_size=16,
        finetune_batch_size=16,
    )
    return dataclasses.replace(cfg, **{**sizes, **changes})


def smooth_images(n: int, size: int = 16, seed: int = 0) -> torch.Tensor:
    """uint8 ``[n, 3, size, size]``: random colour gradients, which a tiny MAE learns quickly."""
    g = gen(seed)
    ramp = torch.linspace(0, 1, size)
    start, slope_y, slope_x = (torch.rand(n, 3, 1, 1, generator=g) for _ in range(3))
    x = (
        start * 0.5
        + 0.25 * slope_y * ramp.view(1, 1, -1, 1)
        + 0.25 * slope_x * ramp.view(1, 1, 1, -1)
    )
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)  # [n, 3, size, size]


# ---- Part 1: patchify / unpatchify ----------------------------------------------------------


def test_patchify_layout_is_row_major_patches_of_p_p_c():
    x = torch.randn(2, 3, 8, 12)  # non-square: a 2 x 3 grid of 4x4 patches
    patches = mae.patchify(x, 4)
    assert patches.shape == (2, 6, 4 * 4 * 3)
    p, c = 4, 3
    for i in range(2):
        for j in range(3):
            for r in range(p):
                for col in range(p):
                    for k in range(c):
                        want = x[:, k, i * p + r, j * p + col]
                        assert torch.equal(patches[:, i * 3 + j, (r * p + col) * c + k], want)


def test_patchify_matches_unfold_and_lightly():
    x = torch.randn(3, 3, 16, 16, generator=gen(1))
    p = 4
    columns = F.unfold(x, kernel_size=p, stride=p)  # [N, C*p*p, L] in (C, p, p) order
    via_unfold = columns.view(3, 3, p, p, -1).permute(0, 4, 2, 3, 1).reshape(3, -1, p * p * 3)
    assert torch.equal(mae.patchify(x, p), via_unfold)
    assert torch.equal(mae.patchify(x, p), lightly_utils.patchify(x, p))
    grey = torch.randn(2, 1, 8, 8, generator=gen(2))
    assert torch.equal(mae.patchify(grey, 2), lightly_utils.patchify(grey, 2))


def test_unpatchify_is_the_exact_inverse_and_matches_lightly():
    x = torch.randn(2, 3, 12, 12, generator=gen(3))
    assert torch.equal(mae.unpatchify(mae.patchify(x, 3), 3, 3), x)
    patches = torch.randn(2, 16, 2 * 2 * 3, generator=gen(4))
    assert torch.equal(mae.patchify(mae.unpatchify(patches, 2, 3), 2), patches)
    assert torch.equal(mae.unpatchify(patches, 2, 3), lightly_utils.unpatchify(patches, 2, 3))
    grey = torch.randn(1, 4, 9, generator=gen(5))
    assert mae.unpatchify(grey, 3, channels=1).shape == (1, 1, 6, 6)


def test_patchify_and_unpatchify_reject_bad_input():
    with pytest.raises(ValueError, match="must divide"):
        mae.patchify(torch.zeros(1, 3, 10, 8), 4)
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        mae.patchify(torch.zeros(3, 8, 8), 4)
    with pytest.raises(ValueError, match="square"):
        mae.unpatchify(torch.zeros(1, 6, 48), 4, 3)
    with pytest.raises(ValueError, match="p\\*p\\*C"):
        mae.unpatchify(torch.zeros(1, 4, 47), 4, 3)


# ---- Part 2: random masking -----------------------------------------------------------------


@pytest.mark.parametrize("ratio", [0.0, 0.25, 0.5, 0.75, 0.9])
def test_random_masking_keeps_exactly_l_keep_and_restores_order(ratio):
    n, length, dim = 5, 16, 3
    tokens = torch.randn(n, length, dim, generator=gen(6))
    visible, mask, ids_restore = mae.random_masking(tokens, ratio, gen(7))
    keep = int(length * (1 - ratio))
    assert visible.shape == (n, keep, dim) and mask.shape == (n, length)
    assert mask.dtype == torch.float32 and ids_restore.dtype == torch.int64
    assert torch.equal(mask.sum(dim=1), torch.full((n,), float(length - keep)))
    assert torch.equal(ids_restore.sort(dim=1).values, torch.arange(length).expand(n, -1))
    for i in range(n):  # the visible tokens are exactly the unmasked ones
        kept = tokens[i][mask[i] == 0]  # [L_keep, D] in the original order
        assert torch.equal(visible[i].sort(dim=0).values, kept.sort(dim=0).values)
    # appending stand-ins for the removed tokens and unshuffling gives every visible token back
    # at its place (MAE's decoder does exactly this with the mask tokens)
    filler = torch.full((n, length - keep, dim), float("nan"))
    full = torch.cat([visible, filler], dim=1)  # [N, L, D] shuffled
    restored = torch.gather(full, 1, ids_restore[..., None].expand(-1, -1, dim))  # [N, L, D]
    assert torch.equal(restored[mask == 0], tokens[mask == 0])
    assert torch.isnan(restored[mask == 1]).all()


def test_random_masking_is_seeded_and_agrees_with_the_library_pixel_mask():
    tokens = torch.randn(4, 64, 2)
    first = mae.random_masking(tokens, 0.75, gen(8))
    second = mae.random_masking(tokens, 0.75, gen(8))
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    # replearn.augment.mask_patches draws the same noise and keeps the lowest-noise patches
    _, pixel_mask = augment.mask_patches(torch.rand(4, 3, 32, 32), 4, 0.75, generator=gen(8))
    assert torch.equal(first[1].bool(), pixel_mask)


def test_random_masking_is_uniform_over_positions():
    n, length = 4000, 16
    _, mask, _ = mae.random_masking(torch.zeros(n, length, 1), 0.75, gen(9))
    rate = mask.mean(dim=0)  # [L] how often each position is masked
    # binomial standard error sqrt(0.75 * 0.25 / 4000) = 0.0068: allow 4.5 of them
    assert (rate - 0.75).abs().max() < 0.03
    # different samples get different masks
    assert len({tuple(row.tolist()) for row in mask[:50]}) == 50


def test_random_masking_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\[N, L, D\]"):
        mae.random_masking(torch.zeros(2, 16), 0.5)
    for ratio in (1.0, -0.1):
        with pytest.raises(ValueError, match="mask_ratio"):
            mae.random_masking(torch.zeros(2, 16, 4), ratio)
    with pytest.raises(ValueError, match="keeps no token"):
        mae.random_masking(torch.zeros(2, 4, 4), 0.8)


# ---- Part 3: sine-cosine positions ----------------------------------------------------------


def mae_formula_sincos(embed_dim: int, grid_size: int, cls_token: bool) -> np.ndarray:
    """MAE's ``get_2d_sincos_pos_embed`` (facebookresearch/mae, util/pos_embed.py), re-derived.

    1-D: omega_k = 1 / 10000^(k / (d/2)), k < d/2; emb(pos) = [sin(pos omega), cos(pos omega)].
    2-D: ``grid = np.meshgrid(grid_w, grid_h)`` ("here w goes first"), and the first half of
    the channels encodes ``grid[0]``, the second half ``grid[1]``; patches flattened row by row.
    """

    def one_d(dim: int, positions: np.ndarray) -> np.ndarray:
        omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
        out = np.outer(positions.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    coords = np.arange(grid_size, dtype=np.float64)
    grid = np.stack(np.meshgrid(coords, coords), axis=0)  # [2, g, g]: grid[0][i, j] = j
    table = np.concatenate([one_d(embed_dim // 2, grid[0]), one_d(embed_dim // 2, grid[1])], 1)
    if cls_token:
        table = np.concatenate([np.zeros((1, embed_dim)), table], axis=0)
    return table


@pytest.mark.parametrize("dim,grid", [(4, 1), (8, 2), (16, 4), (128, 8), (64, 7)])
def test_sincos_matches_mae_formula_and_lightly(dim, grid):
    for cls_token in (False, True):
        got = mae.sincos_pos_embed_2d(dim, grid, cls_token=cls_token)
        assert got.dtype == torch.float32 and got.shape == (grid * grid + cls_token, dim)
        want = torch.from_numpy(mae_formula_sincos(dim, grid, cls_token)).float()
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
        lightly_table = lightly_utils.get_2d_sincos_pos_embed(dim, grid, cls_token=cls_token)
        torch.testing.assert_close(got, torch.from_numpy(lightly_table).float(), rtol=0, atol=1e-6)


def test_sincos_closed_forms_and_the_library_table():
    table = mae.sincos_pos_embed_2d(8, 3, cls_token=True)  # [1 + 9, 8]
    assert torch.equal(table[0], torch.zeros(8))
    # patch (row 1, column 2) = number 5: column half [sin 2, sin 0.02, cos 2, cos 0.02], then row
    want = torch.tensor(
        [
            math.sin(2),
            math.sin(0.02),
            math.cos(2),
            math.cos(0.02),
            math.sin(1),
            math.sin(0.01),
            math.cos(1),
            math.cos(0.01),
        ]
    )
    torch.testing.assert_close(table[1 + 5], want)
    # replearn.backbones' ViT table puts the row half first: the same numbers, halves swapped
    library = library_sincos(16, 4)
    ours = mae.sincos_pos_embed_2d(16, 4)
    assert torch.allclose(torch.cat([ours[:, 8:], ours[:, :8]], dim=1), library, atol=1e-6)


def test_sincos_rejects_bad_input():
    with pytest.raises(ValueError, match="divisible by 4"):
        mae.sincos_pos_embed_2d(6, 2)
    with pytest.raises(ValueError, match="grid_size"):
        mae.sincos_pos_embed_2d(8, 0)


# ---- Part 4: encoder and decoder ------------------------------------------------------------


def tiny_encoder(seed: int = 0, **sizes) -> "mae.MAEEncoder":
    torch.manual_seed(seed)
    return mae.MAEEncoder(
        **{**dict(image_size=16, patch_size=4, dim=16, depth=2, heads=2), **sizes}
    )


def test_encoder_shapes_buffers_and_the_same_mask_as_random_masking():
    encoder = tiny_encoder().eval()
    assert encoder.pos_embed.shape == (1, 17, 16) and not encoder.pos_embed.requires_grad
    assert "pos_embed" not in encoder.state_dict()  # a fixed table, rebuilt, never trained
    torch.testing.assert_close(encoder.pos_embed[0], mae.sincos_pos_embed_2d(16, 4, True))
    x = torch.rand(3, 3, 16, 16, generator=gen(10))
    latent, mask, ids_restore = encoder(x, 0.75, gen(11))
    assert latent.shape == (3, 1 + 4, 16) and mask.shape == (3, 16)
    tokens = encoder.patch_embed(x) + encoder.pos_embed[:, 1:]  # [N, L, D]
    _, want_mask, want_ids = mae.random_masking(tokens, 0.75, gen(11))
    assert torch.equal(mask, want_mask) and torch.equal(ids_restore, want_ids)


def test_encoder_sees_only_the_visible_patches():
    encoder = tiny_encoder().eval()
    x = torch.rand(2, 3, 16, 16, generator=gen(12))
    latent, mask, _ = encoder(x, 0.75, gen(13))
    hidden = mae.unpatchify(mask[..., None].expand(-1, -1, 48), 4, 3)  # [N, C, H, W] 1 = masked
    scrambled = torch.where(hidden.bool(), torch.rand(x.shape, generator=gen(14)), x)
    latent2, mask2, _ = encoder(scrambled, 0.75, gen(13))
    assert torch.equal(mask, mask2)
    torch.testing.assert_close(latent, latent2)  # the masked pixels never reach the encoder


def test_encoder_without_masking_pools_to_forward_features():
    encoder = tiny_encoder().eval()
    x = torch.rand(4, 3, 16, 16, generator=gen(15))
    latent, mask, ids_restore = encoder(x, 0.0, gen(16))
    assert mask.sum() == 0 and latent.shape == (4, 17, 16)
    # unshuffling the patch tokens and averaging gives the unmasked path's features
    patch_tokens = torch.gather(latent[:, 1:], 1, ids_restore[..., None].expand(-1, -1, 16))
    torch.testing.assert_close(patch_tokens.mean(dim=1), encoder.forward_features(x))
    assert mae.PooledFeatures(encoder)(x).shape == (4, 16)


def test_decoder_restores_the_order_of_tokens():
    torch.manual_seed(0)
    # no blocks: each output token depends only on its own input token and position
    decoder = mae.MAEDecoder(16, patch_size=4, in_chans=3, encoder_dim=8, dim=16, depth=0)
    n, keep = 3, 4
    latent = torch.randn(n, 1 + keep, 8, generator=gen(17))
    _, mask, ids_restore = mae.random_masking(torch.zeros(n, 16, 1), 0.75, gen(18))
    pred = decoder(latent, ids_restore)
    assert pred.shape == (n, 16, 48)

    def head(token: torch.Tensor, position: int) -> torch.Tensor:
        return decoder.pred(decoder.norm(token + decoder.pos_embed[0, 1 + position]))

    ids_keep = ids_restore.argsort(dim=1)[:, :keep]  # [N, L_keep] where each kept token sits
    with torch.no_grad():
        for i in range(n):
            for j in range(keep):
                position = int(ids_keep[i, j])
                want = head(decoder.embed(latent[i, 1 + j]), position)
                torch.testing.assert_close(pred[i, position], want)
            for position in torch.nonzero(mask[i]).flatten().tolist():
                torch.testing.assert_close(
                    pred[i, position], head(decoder.mask_token[0, 0], position)
                )


def test_decoder_drops_the_class_token_and_rejects_bad_input():
    torch.manual_seed(0)
    decoder = mae.MAEDecoder(16, patch_size=4, encoder_dim=8, dim=16, depth=1, heads=2)
    latent = torch.randn(2, 1 + 4, 8)
    _, _, ids_restore = mae.random_masking(torch.zeros(2, 16, 1), 0.75, gen(19))
    assert decoder(latent, ids_restore).shape == (2, 16, 48)
    with pytest.raises(ValueError, match="ids_restore"):
        decoder(latent, ids_restore[:, :9])
    with pytest.raises(ValueError, match="square"):
        mae.MAEDecoder(12)


# ---- Part 5: the loss -----------------------------------------------------------------------


def test_loss_is_mean_of_per_patch_mse_over_masked_patches():
    x = torch.rand(2, 3, 8, 8, generator=gen(20))
    target = mae.patchify(x, 4)  # [2, 4, 48]
    mask = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    errors = torch.tensor([[1.0, 5.0, 2.0, 7.0], [9.0, 9.0, 9.0, 3.0]])  # per patch, constant
    pred = target + errors[..., None]
    loss = mae.mae_loss(x, pred, mask, 4)
    assert torch.isclose(loss, torch.tensor((1.0 + 4.0 + 9.0) / 3))


def test_loss_ignores_the_visible_patches():
    x = torch.rand(2, 3, 8, 8, generator=gen(21))
    pred = torch.randn(2, 4, 48, generator=gen(22), requires_grad=True)
    mask = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 1.0, 1.0]])
    loss = mae.mae_loss(x, pred, mask, 4, norm_pix_loss=True)
    changed = pred.detach().clone()
    changed[mask == 0] += 100.0  # wildly wrong predictions of the visible patches
    assert torch.equal(loss.detach(), mae.mae_loss(x, changed, mask, 4, norm_pix_loss=True))
    loss.backward()
    assert torch.equal(pred.grad[mask == 0], torch.zeros(3, 48))
    assert (pred.grad[mask == 1].abs().sum(dim=1) > 0).all()


def test_norm_pix_target_matches_lightly_normalize_mean_var():
    x = torch.rand(3, 3, 8, 8, generator=gen(23))
    mask = torch.ones(3, 4)
    target = lightly_utils.normalize_mean_var(mae.patchify(x, 4), dim=-1, eps=1e-6)
    assert mae.mae_loss(x, target, mask, 4, norm_pix_loss=True) < 1e-10
    # a prediction of zeros scores the mean squared normalised value: with the unbiased variance
    # that is (n - 1) / n per patch of n = 48 values (the eps of 1e-6 is negligible next to the
    # variance of uniform pixels, 1/12)
    zeros = torch.zeros(3, 4, 48)
    loss = mae.mae_loss(x, zeros, mask, 4, norm_pix_loss=True)
    torch.testing.assert_close(loss, torch.tensor(47 / 48), rtol=1e-4, atol=0)
    # uint8 images are converted to [0, 1] first
    as_uint8 = (x * 255).round().to(torch.uint8)
    torch.testing.assert_close(
        mae.mae_loss(as_uint8, zeros, mask, 4),
        mae.patchify(as_uint8.float() / 255, 4).pow(2).mean(),
    )


def test_loss_rejects_bad_input():
    x = torch.rand(2, 3, 8, 8)
    with pytest.raises(ValueError, match="expected pred"):
        mae.mae_loss(x, torch.zeros(2, 4, 47), torch.ones(2, 4), 4)
    with pytest.raises(ValueError, match="expected pred"):
        mae.mae_loss(x, torch.zeros(2, 4, 48), torch.ones(2, 5), 4)
    with pytest.raises(ValueError, match="no patch"):
        mae.mae_loss(x, torch.zeros(2, 4, 48), torch.zeros(2, 4), 4)


# ---- Part 6: the masked autoencoder ---------------------------------------------------------


def test_masked_autoencoder_forward_is_encoder_decoder_loss():
    model = recipe.build_mae(mae, tiny_config(), image_size=16).eval()
    x = torch.rand(3, 3, 16, 16, generator=gen(24))
    out = model(x, 0.75, gen(25))
    assert set(out) == {"loss", "pred", "mask"} and out["pred"].shape == (3, 16, 48)
    latent, mask, ids_restore = model.encoder(x, 0.75, gen(25))
    pred = model.decoder(latent, ids_restore)
    torch.testing.assert_close(out["pred"], pred)
    assert torch.equal(out["mask"], mask)
    torch.testing.assert_close(out["loss"], mae.mae_loss(x, pred, mask, 4, norm_pix_loss=True))
    with pytest.raises(ValueError, match="must agree"):
        mae.MaskedAutoencoder(model.encoder, mae.MAEDecoder(4, patch_size=8, encoder_dim=16))


def test_pretrain_reduces_the_loss_on_smooth_images(one_thread):
    # no warm-up: BudgetCosine reads the clock, and a 60 s budget that the 80 steps end after a
    # second would otherwise keep the whole run in the warm-up's timing-dependent small rates
    cfg = tiny_config(norm_pix_loss=False, max_epochs=40, lr=3e-3, warmup=0.0)
    images = smooth_images(32)
    result = recipe.pretrain(mae, images, cfg, budget_s=60, seed=0)
    losses = result.history.metric("loss")
    assert len(losses) == 80  # 40 epochs of 2 batches: the epochs end the run, not the budget
    assert sum(losses[-5:]) / 5 < 0.3 * sum(losses[:5]) / 5
    assert not result.model.training and result.extra["mask_ratio"] == cfg.mask_ratio


def test_reconstruct_pastes_visible_patches_and_undoes_norm_pix():
    class Oracle(nn.Module):
        """Predicts every patch perfectly, in normalised units (what a norm-pix MAE learns)."""

        patch_size, norm_pix_loss = 4, True

        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.zeros(1))

        def forward(self, x, mask_ratio, generator=None):
            target = lightly_utils.normalize_mean_var(mae.patchify(x, 4), dim=-1, eps=1e-6)
            _, mask, _ = mae.random_masking(target, mask_ratio, generator)
            return {"pred": target, "mask": mask, "loss": torch.zeros(())}

    x = torch.rand(2, 3, 8, 8, generator=gen(26))
    masked, pasted, original = recipe.reconstruct(mae, Oracle(), x, 0.5, gen(27), fill=0.5)
    assert masked.shape == pasted.shape == original.shape == x.shape
    torch.testing.assert_close(pasted, x, rtol=0, atol=1e-5)
    assert torch.equal(original, x)
    _, mask, _ = mae.random_masking(torch.zeros(2, 4, 1), 0.5, gen(27))
    hidden = mae.unpatchify(mask[..., None].expand(-1, -1, 48), 4, 3).bool()
    assert torch.equal(masked[hidden], torch.full_like(masked[hidden], 0.5))
    assert torch.equal(masked[~hidden], x[~hidden])


# ---- Given: configuration, downstream protocols ---------------------------------------------


def test_config_presets_are_consistent():
    for name in PRESETS:
        cfg = recipe.MAEConfig.from_preset(get_preset(name))
        assert min(cfg.pretrain_s, cfg.finetune_s, cfg.scratch_s, cfg.ablation_s) > 0
        assert math.isclose(cfg.scratch_s, cfg.pretrain_s + cfg.finetune_s), (
            f"{name}: scratch_s must equal pretrain_s + finetune_s (the same total time)"
        )
        assert cfg.dim % 4 == 0 and cfg.dim % cfg.heads == 0
        assert cfg.decoder_dim % 4 == 0 and cfg.decoder_dim % cfg.decoder_heads == 0
        assert all(0 <= r < 1 for r in (*cfg.ablation_ratios, cfg.mask_ratio))


def test_pretrain_rejects_bad_input():
    cfg = tiny_config()
    images = smooth_images(8)
    with pytest.raises(ValueError, match="uint8"):
        recipe.pretrain(mae, images.float(), cfg, budget_s=1)
    with pytest.raises(ValueError, match="mask_ratio"):
        recipe.pretrain(mae, images, cfg, budget_s=1, mask_ratio=1.0)


def test_finetune_from_scratch_and_probes_run_briefly(one_thread):
    cfg = tiny_config(max_epochs=1, probe_iters=5, knn_k=3)
    images, labels = smooth_images(32, seed=1), torch.arange(32) % 4
    torch.manual_seed(0)
    encoder = recipe.build_encoder(mae, cfg, image_size=16)
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    accuracy = recipe.finetune(
        mae, encoder, images, labels, images[:8], labels[:8], cfg, budget_s=30
    )
    assert 0 <= accuracy <= 1
    assert all(torch.equal(before[k], v) for k, v in encoder.state_dict().items())  # a copy
    assert (
        0 <= recipe.from_scratch(mae, images, labels, images[:8], labels[:8], cfg, budget_s=30) <= 1
    )
    scores = recipe.evaluate_encoder(mae, encoder, images, labels, images[:8], labels[:8], cfg)
    assert set(scores) == {"knn", "linear"} and all(0 <= v <= 1 for v in scores.values())


def test_finetune_groups_follow_mae_layer_wise_decay():
    cfg = tiny_config()
    encoder = recipe.build_encoder(mae, cfg, image_size=16)
    model = torch.nn.Sequential(mae.PooledFeatures(encoder), torch.nn.Linear(cfg.dim, 4))
    groups = recipe._finetune_groups(
        model, lr=1.0, weight_decay=0.05, layer_decay=0.5, head_scale=10.0
    )
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    decay_of = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    assert len(lr_of) == sum(1 for _ in model.parameters()), "every parameter in one group"
    depth = len(encoder.blocks)
    assert (
        lr_of[id(encoder.cls_token)]
        == lr_of[id(encoder.patch_embed.proj.weight)]
        == 0.5 ** (depth + 1)
    )
    for i, block in enumerate(encoder.blocks):
        assert all(lr_of[id(p)] == 0.5 ** (depth - i) for p in block.parameters())
    assert all(lr_of[id(p)] == 1.0 for p in encoder.norm.parameters())
    assert all(lr_of[id(p)] == 10.0 for p in model[1].parameters())
    assert decay_of[id(model[1].weight)] == 0.05 and decay_of[id(model[1].bias)] == 0.0


def test_quick_presets_count_every_run_in_optimizer_steps():
    """``smoke`` and ``cpu-quick`` count each run in steps (a rerun repeats its numbers);
    the GPU presets keep their seconds."""
    runs = ("pretrain_steps", "finetune_steps", "scratch_steps", "ablation_steps")
    for name in PRESETS:
        cfg = recipe.MAEConfig.from_preset(get_preset(name))
        steps = [getattr(cfg, run) for run in runs]
        if name in ("smoke", "cpu-quick"):
            assert all(isinstance(n, int) and n > 0 for n in steps), (name, steps)
        else:
            assert steps == [None] * len(runs), (name, steps)


def test_runs_counted_in_steps_repeat_their_weights_and_ignore_the_clock(one_thread):
    # an hour of budget, 3 steps: the count ends the run, and twice gives the same weights
    cfg = tiny_config(pretrain_s=3600, pretrain_steps=3, finetune_s=3600, finetune_steps=2)
    images = smooth_images(64)
    first, second = (recipe.pretrain(mae, images, cfg, seed=1) for _ in range(2))
    assert first.history.steps_done == second.history.steps_done == 3
    for (name, a), b in zip(first.model.state_dict().items(), second.model.state_dict().values()):
        assert torch.equal(a, b), f"{name} differs between two runs of 3 counted steps"
    labels = torch.arange(64) % 4
    accuracies = [
        recipe.finetune(mae, first.encoder, images, labels, images[:16], labels[:16], cfg)
        for _ in range(2)
    ]
    assert accuracies[0] == accuracies[1]
