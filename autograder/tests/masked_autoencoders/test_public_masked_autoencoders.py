"""Public tests of Assignment 5, masked autoencoders (they ship to students).

Run them locally with the grader's one command (see the README). Each test names the functions it
grades; tiny ViTs (16x16 images, 4x4 patches, width 16) stand in for the real one, so the file
takes seconds. A test of the encoder, the decoder, the loss or the whole model replaces the other
parts it calls (sine-cosine table, masking, patchify, loss, encoder and decoder) by stand-ins
(``autograder.probes.masked_autoencoders``), so one mistake costs only the tests of that part.
Reference values come from ``expected_public.agv``.
"""

import pytest
import torch

from autograder.api import (
    expect_close,
    expect_tensor,
    expect_true,
    expected,
    load_weights,
    reference,
    with_reference,
)
from autograder.probes import masked_autoencoders as probes

REF = "masked_autoencoders"
PROBES = "autograder.probes.masked_autoencoders"


# ---- Part 1: patchify / unpatchify ----------------------------------------------------------


@pytest.mark.weight(2)
@pytest.mark.functions("patchify")
def test_patchify_row_major_patches_in_p_p_c_order(student):
    images = torch.rand(2, 3, 8, 8, generator=student.rng)  # [N, C, H, W]
    got = student.call("patchify", images, 4)
    want = expected("patchify_8", lambda: reference(REF).patchify(images, 4))
    expect_tensor(
        got,
        want,
        rtol=0,
        atol=0,
        name="patchify(images [2, 3, 8, 8], p=4) -> [2, 4, 48] (patches row by row, "
        "each flattened (p, p, C))",
    )
    wide = torch.rand(1, 2, 4, 6, generator=student.rng)  # a 2 x 3 grid of 2x2 patches
    got = student.call("patchify", wide, 2)
    want = expected("patchify_wide", lambda: reference(REF).patchify(wide, 2))
    expect_tensor(
        got,
        want,
        rtol=0,
        atol=0,
        name="patchify(images [1, 2, 4, 6], p=2) -> [1, 6, 8] (non-square image)",
    )


@pytest.mark.weight(1)
@pytest.mark.functions("unpatchify")
def test_unpatchify_inverts_patchify(student):
    patches = torch.rand(2, 9, 2 * 2 * 3, generator=student.rng)  # [N, L, p*p*C]
    got = student.call("unpatchify", patches, 2, 3)
    want = expected("unpatchify_rgb", lambda: reference(REF).unpatchify(patches, 2, 3))
    expect_tensor(
        got, want, rtol=0, atol=0, name="unpatchify(patches [2, 9, 12], p=2, C=3) -> [2, 3, 6, 6]"
    )
    grey = torch.rand(1, 4, 9, generator=student.rng)
    got = student.call("unpatchify", grey, 3, 1)
    want = expected("unpatchify_grey", lambda: reference(REF).unpatchify(grey, 3, 1))
    expect_tensor(
        got, want, rtol=0, atol=0, name="unpatchify(patches [1, 4, 9], p=3, C=1) -> [1, 1, 6, 6]"
    )


# ---- Part 2: random masking -----------------------------------------------------------------


@pytest.mark.weight(2)
@pytest.mark.functions("random_masking")
def test_random_masking_keeps_l_keep_tokens_and_restores_order(student):
    tokens = torch.randn(3, 16, 4, generator=student.rng)  # [N, L, D]
    got = student.probe(f"{PROBES}:masking", 7, tokens, 0.75)
    visible, mask, ids_restore = got["visible"], got["mask"], got["ids_restore"]
    expect_true(
        tuple(visible.shape) == (3, 4, 4),
        f"visible must be [N, L_keep, D] = [3, 4, 4] for L = 16 and ratio 0.75, got "
        f"{tuple(visible.shape)}",
    )
    expect_true(
        mask.dtype == torch.float32 and ids_restore.dtype == torch.int64,
        f"mask must be float32 and ids_restore int64, got {mask.dtype} and {ids_restore.dtype}",
    )
    expect_true(
        bool((mask.sum(dim=1) == 12).all()),
        f"every sample must have exactly L - L_keep = 12 masked tokens, got "
        f"{mask.sum(dim=1).tolist()}",
    )
    # appending the removed tokens and unshuffling with ids_restore gives the input back
    order = ids_restore.argsort(dim=1)  # [N, L] ids_shuffle
    removed = tokens.gather(1, order[:, 4:, None].expand(-1, -1, 4))  # [N, L - L_keep, D]
    restored = torch.cat([visible, removed], dim=1).gather(
        1, ids_restore[..., None].expand(-1, -1, 4)
    )
    expect_tensor(
        restored,
        tokens,
        rtol=0,
        atol=0,
        name="cat([visible, removed tokens]) unshuffled with ids_restore",
    )
    expect_tensor(
        mask,
        (ids_restore >= 4).float(),
        rtol=0,
        atol=0,
        name="mask (1 where the token's place in the shuffle is beyond L_keep)",
    )
    want = expected("masking", lambda: probes.masking(reference(REF), 7, tokens, 0.75))
    expect_tensor(
        ids_restore,
        want["ids_restore"],
        rtol=0,
        atol=0,
        name="ids_restore for a seeded generator (noise = torch.rand((N, L), "
        "generator=generator), small noise kept)",
    )


# ---- Part 3: sine-cosine positions ----------------------------------------------------------


@pytest.mark.weight(2)
@pytest.mark.functions("sincos_pos_embed_2d")
def test_sincos_pos_embed_matches_mae(student):
    for dim, grid, cls_token in ((16, 4, True), (8, 3, False)):
        got = student.call("sincos_pos_embed_2d", dim, grid, cls_token)
        rows = grid * grid + int(cls_token)
        want = expected(
            f"sincos_{dim}_{grid}_{cls_token}",
            lambda dim=dim, grid=grid, cls_token=cls_token: reference(REF).sincos_pos_embed_2d(
                dim, grid, cls_token
            ),
        )
        expect_tensor(
            got,
            probes.either_half_first(got, want, rtol=1e-5, atol=1e-6),
            rtol=1e-5,
            atol=1e-6,
            name=f"sincos_pos_embed_2d({dim}, {grid}, cls_token={cls_token}) [{rows}, {dim}] "
            "(one half the column's embedding, the other the row's, either first; sines then "
            "cosines in each)",
        )


# ---- Part 4: the encoder --------------------------------------------------------------------


@pytest.mark.weight(2)
@pytest.mark.functions("MAEEncoder.forward")
def test_encoder_forward_sees_only_visible_patches(student):
    images = torch.rand(2, 3, 16, 16, generator=student.rng)  # [N, C, H, W]
    got = student.probe(f"{PROBES}:encoder_forward", 3, images, 0.75)
    want = expected("encoder", lambda: probes.encoder_forward(reference(REF), 3, images, 0.75))
    expect_tensor(
        got["mask"],
        want["mask"],
        rtol=0,
        atol=0,
        name="mask [2, 16] (random_masking of the patch tokens with the generator)",
    )
    expect_tensor(
        got["latent"],
        want["latent"],
        rtol=1e-4,
        atol=1e-5,
        name="latent [2, 1 + 4, 16] (positions added before masking, cls token + its "
        "position row first, blocks, norm)",
    )
    expect_tensor(
        got["scrambled_latent"],
        got["latent"],
        rtol=1e-5,
        atol=1e-6,
        name="latent when the masked patches' pixels are replaced by noise (the encoder "
        "must not see masked patches)",
    )


# ---- Part 5: the decoder --------------------------------------------------------------------


@pytest.mark.weight(2)
@pytest.mark.functions("MAEDecoder.forward")
def test_decoder_forward_restores_order_with_mask_tokens(student):
    latent = torch.randn(2, 1 + 4, 16, generator=student.rng)  # [N, 1 + L_keep, D]
    ids_restore = torch.stack(
        [torch.randperm(16, generator=student.rng) for _ in range(2)]
    )  # [N, L]
    got = student.probe(f"{PROBES}:decoder_forward", 4, latent, ids_restore)
    want = expected(
        "decoder", lambda: probes.decoder_forward(reference(REF), 4, latent, ids_restore)
    )
    expect_tensor(
        got["pred"],
        want["pred"],
        rtol=1e-4,
        atol=1e-5,
        name="decoder prediction [2, 16, 48] (embed, mask tokens appended, unshuffled "
        "with ids_restore, cls back in front, + pos_embed, blocks, norm, pred, cls "
        "dropped)",
    )
    expect_true(got["mask_token_grad"] is not None, "the prediction must depend on the mask token")
    expect_tensor(
        got["latent_grad"],
        want["latent_grad"],
        rtol=1e-3,
        atol=1e-5,
        name="gradient of sum(pred^2) w.r.t. the latent",
    )


# ---- Part 6: the loss and the masked autoencoder --------------------------------------------


@pytest.mark.weight(2)
@pytest.mark.functions("mae_loss")
def test_mae_loss_on_masked_patches_only(student):
    images = torch.rand(2, 3, 8, 8, generator=student.rng)  # [N, C, H, W]
    pred = torch.randn(2, 4, 48, generator=student.rng)  # [N, L, p*p*C]
    mask = torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 1.0, 0.0, 0.0]])  # [N, L]
    for norm_pix in (False, True):
        got = student.probe(f"{PROBES}:loss_with_grad", images, pred, mask, 4, norm_pix)
        want = expected(
            f"mae_loss_{norm_pix}",
            lambda norm_pix=norm_pix: _loss_with_grad(images, pred, mask, norm_pix),
        )
        expect_close(
            got["output"],
            float(want["output"]),
            rtol=1e-5,
            atol=1e-6,
            name=f"mae_loss (norm_pix_loss={norm_pix}): mean over the 4 masked patches "
            "of each patch's mean squared error",
        )
        grad = got["grads"][0]
        expect_true(grad is not None, "the loss must be differentiable with respect to pred")
        expect_tensor(
            grad[mask == 0],
            torch.zeros(4, 48),
            rtol=0,
            atol=0,
            name="d loss / d pred on the VISIBLE patches (must be 0)",
        )
        expect_tensor(
            grad,
            want["grads"][0],
            rtol=1e-4,
            atol=1e-6,
            name=f"d loss / d pred (norm_pix_loss={norm_pix})",
        )

    flat = images.clone()
    flat[0] = 0.5  # an image of one colour: the variance of each of its patches is 0
    got = student.probe(f"{PROBES}:loss_with_grad", flat, pred, mask, 4, True)
    want = expected("mae_loss_flat_patch", lambda: _loss_with_grad(flat, pred, mask, True))
    expect_close(
        got["output"],
        float(want["output"]),
        rtol=1e-5,
        atol=1e-6,
        name="mae_loss (norm_pix_loss=True) on an image of one colour: every patch has "
        "variance 0 (add 1e-6 before the square root)",
    )


def _loss_with_grad(images, pred, mask, norm_pix):
    return probes.loss_with_grad(reference(REF), images, pred, mask, 4, norm_pix)


@pytest.mark.weight(1)
@pytest.mark.functions("MaskedAutoencoder.forward")
def test_masked_autoencoder_forward(student):
    images = torch.rand(2, 3, 16, 16, generator=student.rng)  # [N, C, H, W]
    got = student.probe(f"{PROBES}:mae_forward", 5, images, 0.75, True)
    want = expected(
        "mae_forward", lambda: probes.mae_forward(reference(REF), 5, images, 0.75, True)
    )
    expect_tensor(got["mask"], want["mask"], rtol=0, atol=0, name="'mask' [2, 16] from the encoder")
    expect_tensor(
        got["pred"], want["pred"], rtol=1e-4, atol=1e-5, name="'pred' [2, 16, 48] from the decoder"
    )
    expect_close(
        got["loss"],
        want["loss"],
        rtol=1e-4,
        atol=1e-6,
        name="'loss': mae_loss(images, pred, mask, patch_size, norm_pix_loss=True)",
    )
    expect_true(got["grad"] is not None, "the loss must backpropagate into the encoder")
    expect_tensor(
        got["grad"],
        want["grad"],
        rtol=1e-3,
        atol=1e-6,
        name="gradient of the loss w.r.t. the encoder's patch embedding",
    )


@pytest.mark.weight(3)
@pytest.mark.functions(
    "MaskedAutoencoder.forward",
    "MAEEncoder.forward",
    "MAEDecoder.forward",
    "mae_loss",
    "random_masking",
    "patchify",
    "sincos_pos_embed_2d",
)
def test_mae_smoke_train_reduces_the_masked_loss(student):
    got = student.probe(f"{PROBES}:smoke_train", 0, 30, timeout=90)
    losses = got["losses"]
    expect_true(len(losses) == 30, f"expected 30 recorded losses, got {len(losses)}")
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    expect_true(
        last < 0.25 * first,
        f"the masked-patch loss your model reported fell from {first:.3f} (mean of the "
        f"first 5 steps) only to {last:.3f} (the last 5); expected below {0.25 * first:.3f}",
    )
    # the grader also scores fresh masks of the trained weights with the reference's model
    scores = with_reference(lambda: _heldout_masked_loss(got["state_dict"]))
    if scores is not None:
        before, after = scores
        expect_true(
            after < 0.2 * before,
            f"after 30 MAE steps the masked-patch loss under fresh masks fell from "
            f"{before:.3f} only to {after:.3f}; expected below {0.2 * before:.3f}",
        )


def _heldout_masked_loss(state: dict, repeats: int = 4) -> tuple[float, float]:
    """The reference MAE's masked-patch loss under fresh masks: untrained, then ``state``."""
    ref = reference(REF)
    scores = []
    for weights in (None, state):
        torch.manual_seed(0)  # the smoke-train probe's initialisation
        encoder = ref.MAEEncoder(**probes.SMOKE_ENCODER)
        decoder = ref.MAEDecoder(**probes.SMOKE_DECODER)
        model = ref.MaskedAutoencoder(encoder, decoder, norm_pix_loss=False)
        if weights is not None:
            load_weights(model, weights, name="trained MAE")
        model.eval()
        images, generator = probes.smoke_images(0), torch.Generator().manual_seed(99)
        with torch.no_grad():
            total = sum(float(model(images, 0.75, generator)["loss"]) for _ in range(repeats))
        scores.append(total / repeats)
    return scores[0], scores[1]
