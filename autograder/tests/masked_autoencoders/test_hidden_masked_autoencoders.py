"""Hidden tests of Assignment 5, masked autoencoders (they stay in the grader)."""

import pytest
import torch

from autograder.api import expect_close, expect_tensor, expect_true, reference
from autograder.probes import masked_autoencoders as probes

REF = "masked_autoencoders"
PROBES = "autograder.probes.masked_autoencoders"


def _seed(student) -> int:
    return int(torch.randint(0, 10_000, (1,), generator=student.rng))


def _int(student, low: int, high: int) -> int:
    return int(torch.randint(low, high, (1,), generator=student.rng))


@pytest.mark.weight(1)
@pytest.mark.visibility("hidden")
@pytest.mark.functions("patchify", "unpatchify")
def test_patchify_and_unpatchify_on_fresh_sizes(student):
    p, c, grid = _int(student, 1, 5), _int(student, 1, 4), _int(student, 1, 5)
    images = torch.randn(2, c, grid * p, grid * p, generator=student.rng, dtype=torch.float64)
    patches = student.call("patchify", images, p)
    expect_tensor(patches, reference(REF).patchify(images, p), rtol=0, atol=0, name="patchify")
    back = student.call("unpatchify", reference(REF).patchify(images, p), p, c)
    expect_tensor(back, images, rtol=0, atol=0, name="unpatchify(patchify(x)) == x")


@pytest.mark.weight(2)
@pytest.mark.visibility("hidden")
@pytest.mark.functions("random_masking")
def test_random_masking_matches_reference_and_is_uniform(student):
    seed, length = _seed(student), _int(student, 4, 40)
    # at most 0.85, and at least one and a half tokens' worth kept: L * (1 - ratio) >= 1.5
    ratio = float(torch.rand(1, generator=student.rng)) * min(0.85, (length - 1.5) / length)
    tokens = torch.randn(5, length, 3, generator=student.rng)
    got = student.probe(f"{PROBES}:masking", seed, tokens, ratio)
    want = probes.masking(reference(REF), seed, tokens, ratio)
    for key in ("visible", "mask", "ids_restore"):
        expect_tensor(got[key], want[key], rtol=0, atol=0, name=f"random_masking {key}")
    rates = student.probe(f"{PROBES}:mask_rates", seed, 3000, 16, 0.75)
    keep = int(16 * 0.25)
    expect_true(
        bool((rates["masked_per_sample"] == 16 - keep).all()),
        "every sample must have exactly L - L_keep masked tokens",
    )
    # binomial standard error sqrt(0.75 * 0.25 / 3000) = 0.0079: allow about 5 of them
    expect_true(
        float((rates["rate"] - 0.75).abs().max()) < 0.04,
        "every position must be masked with probability ~ mask_ratio (uniform masking)",
    )


@pytest.mark.weight(1)
@pytest.mark.visibility("hidden")
@pytest.mark.functions("sincos_pos_embed_2d")
def test_sincos_on_fresh_sizes(student):
    dim, grid = 4 * _int(student, 1, 12), _int(student, 1, 9)
    for cls_token in (False, True):
        got = student.call("sincos_pos_embed_2d", dim, grid, cls_token)
        want = reference(REF).sincos_pos_embed_2d(dim, grid, cls_token)
        expect_tensor(
            got,
            probes.either_half_first(got, want, rtol=1e-5, atol=1e-6),
            rtol=1e-5,
            atol=1e-6,
            name=f"sincos_pos_embed_2d(cls_token={cls_token})",
        )


@pytest.mark.weight(2)
@pytest.mark.visibility("hidden")
@pytest.mark.functions("MAEEncoder.forward", "MAEDecoder.forward")
def test_encoder_and_decoder_on_fresh_inputs(student):
    seed = _seed(student)
    ratio = (0.5, 0.75, 0.9)[_int(student, 0, 3)]
    images = torch.rand(3, 3, 16, 16, generator=student.rng)
    got = student.probe(f"{PROBES}:encoder_forward", seed, images, ratio)
    want = probes.encoder_forward(reference(REF), seed, images, ratio)
    expect_tensor(got["latent"], want["latent"], rtol=1e-4, atol=1e-5, name="encoder latent")
    expect_tensor(
        got["scrambled_latent"],
        want["latent"],
        rtol=1e-4,
        atol=1e-5,
        name="encoder latent with the masked pixels replaced by noise",
    )
    keep = int(16 * (1 - ratio))
    latent = torch.randn(3, 1 + keep, 16, generator=student.rng)
    ids_restore = torch.stack([torch.randperm(16, generator=student.rng) for _ in range(3)])
    got = student.probe(f"{PROBES}:decoder_forward", seed, latent, ids_restore)
    want = probes.decoder_forward(reference(REF), seed, latent, ids_restore)
    expect_tensor(got["pred"], want["pred"], rtol=1e-4, atol=1e-5, name="decoder prediction")


@pytest.mark.weight(1)
@pytest.mark.visibility("hidden")
@pytest.mark.functions("mae_loss")
def test_mae_loss_on_fresh_inputs(student):
    n, p = _int(student, 1, 4), (2, 4)[_int(student, 0, 2)]
    images = torch.rand(n, 3, 8, 8, generator=student.rng, dtype=torch.float64)
    length = (8 // p) ** 2
    pred = torch.randn(n, length, p * p * 3, generator=student.rng, dtype=torch.float64)
    mask = (torch.rand(n, length, generator=student.rng) < 0.6).double()
    mask[0, 0] = 1.0  # at least one masked patch
    for norm_pix in (False, True):
        got = student.probe(f"{PROBES}:loss_with_grad", images, pred, mask, p, norm_pix)
        want = probes.loss_with_grad(reference(REF), images, pred, mask, p, norm_pix)
        expect_close(
            got["output"],
            float(want["output"]),
            rtol=1e-9,
            atol=1e-12,
            name=f"mae_loss (float64, norm_pix_loss={norm_pix})",
        )
        expect_tensor(
            got["grads"][0],
            want["grads"][0],
            rtol=1e-7,
            atol=1e-10,
            name=f"d mae_loss / d pred (norm_pix_loss={norm_pix})",
        )


@pytest.mark.weight(1)
@pytest.mark.visibility("hidden")
@pytest.mark.functions("MaskedAutoencoder.forward")
def test_masked_autoencoder_forward_on_fresh_images(student):
    images = torch.rand(3, 3, 16, 16, generator=student.rng)  # [N, C, H, W]
    seed = int(torch.randint(0, 1000, (1,), generator=student.rng))
    for norm_pix in (True, False):
        got = student.probe(f"{PROBES}:mae_forward", seed, images, 0.5, norm_pix)
        want = probes.mae_forward(reference(REF), seed, images, 0.5, norm_pix)
        expect_close(got["loss"], want["loss"], rtol=1e-4, atol=1e-6, name="the model's loss")
        expect_tensor(got["mask"], want["mask"], rtol=0, atol=0, name="the model's mask")
