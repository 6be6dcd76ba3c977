"""Hidden tests of Assignment 2, autoencoders (they stay in the grader)."""

import pytest
import torch

from autograder.api import expect_close, expect_tensor, expect_true, load_weights, reference
from autograder.probes import autoencoders as probes

REF = "autoencoders"
PROBES = "autograder.probes.autoencoders"


def _seeded_weights(spec, seed):
    torch.manual_seed(seed)
    return dict(_reference_model(spec).state_dict())


def _reference_model(spec):
    return reference(REF).ConvAutoencoder(
        spec["in_channels"],
        spec["image_size"],
        tuple(spec["widths"]),
        spec["code_dim"],
        spec.get("code_activation", "none"),
    )


@pytest.mark.weight(1)
@pytest.mark.visibility("hidden")
@pytest.mark.functions("reconstruction_loss")
def test_reconstruction_loss_any_shape(student):
    ref = reference(REF)
    for shape in ((7, 10), (3, 2, 4, 5), (1, 1, 2, 2)):
        x = torch.rand(shape, generator=student.rng)
        x_hat = torch.rand(shape, generator=student.rng)
        got = student.call("reconstruction_loss", x, x_hat)
        expect_close(
            got,
            float(ref.reconstruction_loss(x, x_hat)),
            rtol=1e-5,
            atol=1e-5,
            name=f"R(x, x_hat) for inputs of shape {shape}",
        )


@pytest.mark.weight(2)
@pytest.mark.visibility("hidden")
@pytest.mark.functions("ConvAutoencoder")
def test_conv_autoencoder_code_activations_on_mnist_sized_images(student):
    x = torch.rand(3, 1, 28, 28, generator=student.rng)  # [N, C, H, W]
    for activation in ("relu", "sigmoid"):
        spec = {
            "in_channels": 1,
            "image_size": 28,
            "widths": (4, 8),
            "code_dim": 5,
            "code_activation": activation,
        }
        state = _seeded_weights(spec, 7)
        got = student.probe(f"{PROBES}:autoencoder_forward", spec, state, x)
        expect_true(
            got["loaded"],
            f"28-px, 1-channel model with code_activation={activation!r}: "
            "layer names or shapes differ from the docstring's",
        )
        model = load_weights(_reference_model(spec), state).eval()
        with torch.no_grad():
            x_hat, h = model(x)
        expect_tensor(got["h"], h, rtol=1e-4, atol=1e-5, name=f"codes with {activation!r}")
        expect_tensor(got["x_hat"], x_hat, rtol=1e-4, atol=1e-5, name="28x28 reconstruction")


@pytest.mark.weight(2)
@pytest.mark.visibility("hidden")
@pytest.mark.functions("kl_sparsity_penalty", "l1_sparsity_penalty", "sparse_autoencoder_loss")
def test_penalties_against_reference_and_extremes(student):
    ref = reference(REF)
    h = torch.rand(9, 7, generator=student.rng)  # [N, D]
    for rho in (0.02, 0.3):
        got = student.call("kl_sparsity_penalty", h, rho)
        expect_close(
            got,
            float(ref.kl_sparsity_penalty(h, rho)),
            rtol=1e-4,
            atol=1e-5,
            name=f"KL penalty, rho={rho}",
        )
    dead = student.call("kl_sparsity_penalty", torch.zeros(4, 3), 0.05)
    expect_close(
        dead,
        float(ref.kl_sparsity_penalty(torch.zeros(4, 3), 0.05)),
        rtol=1e-3,
        atol=1e-3,
        name="KL penalty of units that never fire (rho_hat clamped to eps)",
    )
    x, x_hat = (
        torch.rand(2, 3, 4, 4, generator=student.rng),
        torch.rand(2, 3, 4, 4, generator=student.rng),
    )
    got = student.call("sparse_autoencoder_loss", x, x_hat, h[:2], 0.7, "kl", 0.1)
    expect_close(
        got,
        float(ref.sparse_autoencoder_loss(x, x_hat, h[:2], 0.7, "kl", 0.1)),
        rtol=1e-4,
        atol=1e-4,
        name="R + 0.7 * KL penalty",
    )
    got = student.call("sparse_autoencoder_loss", x, x_hat, h[:2], 0.4, "l1")
    expect_close(
        got,
        float(ref.sparse_autoencoder_loss(x, x_hat, h[:2], 0.4, "l1")),
        rtol=1e-4,
        atol=1e-4,
        name="R + 0.4 * L1 penalty",
    )
    signed = torch.randn(5, 8, generator=student.rng)
    got = student.call("l1_sparsity_penalty", signed)
    expect_close(
        got,
        float(ref.l1_sparsity_penalty(signed)),
        rtol=1e-5,
        atol=1e-6,
        name="L1 penalty of signed codes",
    )


@pytest.mark.weight(1)
@pytest.mark.visibility("hidden")
@pytest.mark.functions("mask_pixels")
def test_mask_pixels_edge_fractions(student):
    x = torch.rand(3, 2, 7, 7, generator=student.rng) + 0.1  # [N, C, H, W]
    none = student.probe(f"{PROBES}:masks", x, 0.0, 3)
    expect_true(
        bool(torch.equal(none["noisy"], x)) and not bool(none["mask"].any()),
        "fraction 0 must leave every pixel alone",
    )
    full = student.probe(f"{PROBES}:masks", x, 1.0, 3)
    expect_true(bool((full["noisy"] == 0).all()), "fraction 1 must zero every pixel")
    part = student.probe(f"{PROBES}:masks", x, 0.3, 4)
    counts = part["mask"].flatten(1).sum(1).tolist()
    expect_true(counts == [15] * 3, "each image must lose exactly round(0.3 * 49) = 15 pixels")
    patterns = {tuple(m.flatten().tolist()) for m in part["mask"]}
    expect_true(len(patterns) == 3, "every image gets its own mask")
    expect_true(part["same_seed_same_result"], "masks drawn from the generator")


@pytest.mark.weight(1)
@pytest.mark.visibility("hidden")
@pytest.mark.functions("sparsity")
def test_sparsity_of_signed_codes(student):
    h = torch.randn(6, 9, generator=student.rng) * 0.05  # [N, D], signed, many near zero
    got = student.call("sparsity", h, 0.03)
    expect_close(got, reference(REF).sparsity(h, 0.03), rtol=0, atol=1e-6, name="sparsity")


@pytest.mark.weight(1)
@pytest.mark.visibility("hidden")
@pytest.mark.functions("free_energy")
def test_free_energy_fresh_inputs_and_large_ones(student):
    W = torch.randn(5, 4, generator=student.rng)  # [D_v, D_h]
    b, c = torch.randn(5, generator=student.rng), torch.randn(4, generator=student.rng)
    v = (torch.rand(7, 5, generator=student.rng) < 0.5).float()  # [N, D_v]
    for scale in (1.0, 300.0):
        got = student.call("free_energy", v, W * scale, b, c)
        want = reference(REF).free_energy(v, W * scale, b, c)
        expect_tensor(got, want, rtol=1e-5, atol=1e-3, name=f"F(v) with W scaled by {scale}")


@pytest.mark.weight(1)
@pytest.mark.visibility("hidden")
@pytest.mark.functions("denoising_loss")
def test_denoising_loss_with_a_fixed_mask(student):
    spec = dict(probes.TINY_AE)
    x = torch.rand(3, 3, 8, 8, generator=student.rng)  # [N, C, H, W]
    mask = torch.rand(3, 1, 8, 8, generator=student.rng) < 0.4  # [N, 1, H, W]
    torch.manual_seed(11)
    state = dict(_reference_model(spec).state_dict())
    for name, value in state.items():  # weights under which the output depends on the input
        if value.is_floating_point():
            noise = torch.randn(value.shape, generator=student.rng)
            state[name] = 0.5 + 0.5 * noise.abs() if name.endswith("running_var") else 0.4 * noise
    got = student.probe(f"{PROBES}:denoising_loss_fixed_mask", spec, state, x, mask, 0.4)
    model = load_weights(_reference_model(spec), state).eval()
    with torch.no_grad():
        x_hat, _ = model(x.masked_fill(mask, 0.0))
    want = float(reference(REF).reconstruction_loss(x, x_hat))
    expect_close(got["loss"], want, rtol=1e-4, atol=1e-4, name="denoising loss, fixed mask")


@pytest.mark.weight(3)
@pytest.mark.visibility("hidden")
@pytest.mark.timeout(60)
@pytest.mark.functions("denoising_loss", "mask_pixels", "reconstruction_loss", "ConvAutoencoder")
def test_denoising_autoencoder_smoke_train(student):
    spec = dict(probes.TINY_AE)
    # 16 smooth images (low-frequency patterns): learnable from a 6-d code
    coarse = torch.rand(16, 3, 2, 2, generator=student.rng)
    x = torch.nn.functional.interpolate(coarse, size=8, mode="bilinear", align_corners=False)
    # 150 steps: the reference's error ratio over 200 grader seeds was at most 0.30 (median
    # 0.15); at 60 steps it exceeded 0.5 for 21 of 200 seeds, failing correct submissions
    steps = 150
    got = student.probe(f"{PROBES}:dae_smoke_train", spec, 1, x, steps, 0.3, 1e-2, timeout=60)
    losses = got["losses"]
    expect_true(
        len(losses) == steps and all(v == v for v in losses), f"{steps} finite losses expected"
    )
    ref = reference(REF)
    masked, _ = ref.mask_pixels(x, 0.3, torch.Generator().manual_seed(99))

    def error(state):
        model = load_weights(_reference_model(spec), state, name="weights").train()
        with torch.no_grad():
            x_hat, _ = model(masked)  # batch statistics: the mode the weights were trained in
        return float(ref.reconstruction_loss(x, x_hat))

    before, after = error(got["initial"]), error(got["final"])
    expect_true(
        after < 0.5 * before,
        f"after {steps} steps the reconstruction error of the clean images from masked ones "
        f"must fall below half its initial value (the grader's evaluation of the "
        f"returned weights: {after:.3g} vs {before:.3g} at the start)",
    )


@pytest.mark.weight(2)
@pytest.mark.visibility("hidden")
@pytest.mark.functions("cd1_update", "sample_hidden", "sample_visible")
def test_rbm_sampling_and_cd1_fresh_inputs(student):
    ref = reference(REF)
    W = torch.randn(10, 7, generator=student.rng)  # [D_v, D_h]
    b, c = torch.randn(10, generator=student.rng), torch.randn(7, generator=student.rng)
    v0 = (torch.rand(9, 10, generator=student.rng) < 0.3).float()  # [N, D_v]
    noise_h, noise_v = (
        torch.rand(9, 7, generator=student.rng),
        torch.rand(9, 10, generator=student.rng),
    )
    got = student.call("cd1_update", v0, W, b, c, noise_h, noise_v)
    want = ref.cd1_update(v0, W, b, c, noise_h, noise_v)
    for name, g, w in zip(("dW", "db", "dc"), got, want):
        expect_tensor(g, w, rtol=1e-5, atol=1e-6, name=name)
    h = (torch.rand(9, 7, generator=student.rng) < 0.5).float()
    got = student.call("sample_visible", h, W, b, noise_v)
    want = ref.sample_visible(h, W, b, noise_v)
    expect_tensor(got[0], want[0], rtol=1e-5, atol=1e-6, name="p(v = 1 | h)")
    expect_tensor(got[1], want[1], rtol=0, atol=0, name="v sampled as (noise < p)")


@pytest.mark.weight(2)
@pytest.mark.visibility("hidden")
@pytest.mark.functions("layer_input", "layer_reconstruction_loss")
def test_layer_input_is_frozen_and_the_loss_reaches_layer_k_only(student):
    x = torch.rand(6, 10, generator=student.rng)  # [N, D_0]
    got = student.probe(f"{PROBES}:layer_input_probe", [10, 6, 4], 1, x, 2)
    want = probes.layer_input_probe(reference(REF), [10, 6, 4], 1, x, 2)
    expect_tensor(
        got["input"], want["input"], rtol=1e-5, atol=1e-6, name="layer_input(stack, x, 1)"
    )
    expect_true(not got["input_requires_grad"], "layer_input must be computed without gradients")
    expect_close(got["loss"], want["loss"], rtol=1e-5, atol=1e-5, name="layer 1's loss")
    expect_true(
        got["has_grad"] == want["has_grad"],
        "gradients of layer_reconstruction_loss(stack, x, 1) must reach encoders.1 and "
        "decoders.1 only",
    )


@pytest.mark.weight(2)
@pytest.mark.visibility("hidden")
@pytest.mark.functions("pretrain_layer", "finetune_stack", "layer_reconstruction_loss")
def test_pretrain_first_layer_and_finetune_match_reference(student):
    x = torch.rand(14, 9, generator=student.rng)  # [N, D_0]
    got = student.probe(f"{PROBES}:layerwise", [9, 5, 3], 0, x, 3, 5, 6)
    want = probes.layerwise(reference(REF), [9, 5, 3], 0, x, 3, 5, 6)
    expect_true(got["changed"] == want["changed"], "pretrain_layer(k=0) changed other layers")
    expect_tensor(
        got["state"]["encoders.0.weight"],
        want["state"]["encoders.0.weight"],
        rtol=1e-4,
        atol=1e-5,
        name="encoders.0.weight after layer-0 pretraining",
    )
    got = student.probe(f"{PROBES}:finetune", [9, 5, 3], x, 2, 7, 8)
    want = probes.finetune(reference(REF), [9, 5, 3], x, 2, 7, 8)
    expect_tensor(
        torch.tensor(got["losses"]),
        torch.tensor(want["losses"]),
        rtol=1e-4,
        atol=1e-5,
        name="finetune_stack losses (4 steps)",
    )
    for key in ("encoders.0.weight", "encoders.1.bias", "decoders.0.weight"):
        expect_tensor(
            got["state"][key],
            want["state"][key],
            rtol=1e-4,
            atol=1e-5,
            name=f"{key} after end-to-end training",
        )
