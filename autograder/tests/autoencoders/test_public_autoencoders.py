"""Public tests of Assignment 2, autoencoders (they ship to students).

Run them locally with the grader's one command (see the README). Each test names the functions it
grades; the models are tiny (8x8 images, a 6-d code; a 3-visible, 2-hidden RBM), so the file
takes seconds.
"""

import itertools

import pytest
import torch

from autograder.api import (
    expect_close,
    expect_tensor,
    expect_true,
    expected,
    load_weights,
    reference,
)
from autograder.probes import autoencoders as probes
from autograder.probes import common as probes_common

REF = "autoencoders"
PROBES = "autograder.probes.autoencoders"


# ---- Part 1: the autoencoder --------------------------------------------------------------------


@pytest.mark.weight(2)
@pytest.mark.functions("reconstruction_loss")
def test_reconstruction_loss_sums_pixels_and_averages_the_batch(student):
    x = torch.rand(4, 3, 5, 5, generator=student.rng)  # [N, C, H, W]
    x_hat = torch.rand(4, 3, 5, 5, generator=student.rng)
    got = student.probe(
        "autograder.probes.common:call_with_grad", "reconstruction_loss", [x, x_hat], [1]
    )
    want = expected(
        "reconstruction_loss",
        lambda: probes_common.call_with_grad(
            reference(REF), "reconstruction_loss", [x, x_hat], [1]
        ),
    )
    expect_close(
        got["output"],
        float(want["output"]),
        rtol=1e-5,
        atol=1e-5,
        name="R(x, x_hat) for x, x_hat [4, 3, 5, 5] (sum over pixels, mean over batch)",
    )
    expect_tensor(
        got["grads"][0], want["grads"][0], rtol=1e-5, atol=1e-6, name="dR/dx_hat [4, 3, 5, 5]"
    )
    ones = student.call("reconstruction_loss", torch.ones(2, 1, 3, 4), torch.zeros(2, 1, 3, 4))
    expect_close(
        ones,
        12.0,
        rtol=1e-6,
        atol=1e-6,
        name="R(ones, zeros) for [2, 1, 3, 4] (12 pixels per image, each off by 1)",
    )


@pytest.mark.weight(2)
@pytest.mark.functions("ConvAutoencoder")
def test_conv_autoencoder_layers_and_shapes(student):
    spec = dict(probes.TINY_AE)
    x = torch.rand(5, 3, 8, 8, generator=student.rng)  # [N, C, H, W]
    state = expected("ae-weights", lambda: _spread_weights(3))
    got = student.probe(f"{PROBES}:autoencoder_forward", spec, state, x)
    # the layers the docstring lists, by name and shape (the grader loads weights by name)
    want_shapes = {k: list(v.shape) for k, v in state.items()}
    missing = sorted(set(want_shapes) - set(got["shapes"]))
    extra = sorted(set(got["shapes"]) - set(want_shapes))
    expect_true(
        not missing and not extra,
        f"layer names differ from the docstring's: missing {missing[:4]}, unexpected "
        f"{extra[:4]} (self.encoder and self.decoder, nn.Sequential, in the listed order)",
        observed=[missing, extra],
    )
    wrong = sorted(k for k in want_shapes if got["shapes"][k] != want_shapes[k])
    expect_true(
        not wrong and got["loaded"],
        f"layers with the wrong shape: {wrong[:4]} (compare with the docstring)",
    )
    h, x_hat = got["h"], got["x_hat"]
    expect_true(
        isinstance(h, torch.Tensor) and tuple(h.shape) == (5, 6),
        f"encode(x [5, 3, 8, 8]) must give codes [5, 6] (code_dim=6), got "
        f"{tuple(h.shape) if isinstance(h, torch.Tensor) else type(h).__name__}",
    )
    expect_true(
        isinstance(x_hat, torch.Tensor) and tuple(x_hat.shape) == (5, 3, 8, 8),
        "decode(h) must give reconstructions with the input's shape [5, 3, 8, 8]",
    )
    expect_true(
        bool(((x_hat >= 0) & (x_hat <= 1)).all()),
        "reconstructions must lie in [0, 1] (a Sigmoid at the end of the decoder)",
    )
    want = expected("ae-forward", lambda: _reference_forward(state, x))
    expect_tensor(h, want["h"], rtol=1e-4, atol=1e-5, name="codes h [5, 6] (eval mode)")
    expect_tensor(x_hat, want["x_hat"], rtol=1e-4, atol=1e-5, name="decode(h) [5, 3, 8, 8]")
    expect_tensor(
        got["forward_x_hat"],
        want["x_hat"],
        rtol=1e-4,
        atol=1e-5,
        name="model(x)[0], the reconstruction",
    )
    for activation in ("sigmoid", "relu"):
        got = student.probe(
            f"{PROBES}:autoencoder_forward", {**spec, "code_activation": activation}, state, x
        )
        want = expected(
            f"ae-forward-{activation}", lambda a=activation: _reference_forward(state, x, a)
        )
        expect_tensor(
            got.get("h"),
            want["h"],
            rtol=1e-4,
            atol=1e-5,
            name=f"codes h [5, 6] with code_activation={activation!r} (applied in encode)",
        )


def _spread_weights(seed):
    """Seeded weights under which the output depends on the input: with the default init and
    BatchNorm's initial statistics, the reconstruction of a tiny network barely does, and a
    test could not tell x from x_noisy."""
    torch.manual_seed(seed)
    state = dict(reference(REF).ConvAutoencoder(3, 8, (4, 8), 6).state_dict())
    generator = torch.Generator().manual_seed(seed)
    for name, value in state.items():
        if value.is_floating_point():
            noise = torch.randn(value.shape, generator=generator)
            if name.endswith("running_var"):
                state[name] = 0.5 + 0.5 * noise.abs()
            elif name.endswith("running_mean"):
                state[name] = 0.1 * noise
            else:
                state[name] = 0.5 * noise
    return state


def _reference_forward(state, x, activation="none"):
    ae = reference(REF).ConvAutoencoder(3, 8, (4, 8), 6, activation)
    model = load_weights(ae, state).eval()
    with torch.no_grad():
        x_hat, h = model(x)
    return {"h": h, "x_hat": x_hat}


# ---- Part 2: the sparse autoencoder -------------------------------------------------------------


@pytest.mark.weight(2)
@pytest.mark.functions("l1_sparsity_penalty", "kl_sparsity_penalty", "sparse_autoencoder_loss")
def test_sparsity_penalties(student):
    h = torch.randn(6, 4, generator=student.rng)  # [N, D]
    l1 = student.call("l1_sparsity_penalty", h)
    want = expected("l1_sparsity_penalty", lambda: float(reference(REF).l1_sparsity_penalty(h)))
    expect_close(
        l1,
        want,
        rtol=1e-5,
        atol=1e-6,
        name="||h||_1 of h [6, 4] (sum over units, mean over the batch)",
    )
    probs = torch.rand(6, 4, generator=student.rng) * 0.9 + 0.05  # [N, D] sigmoid codes
    kl = student.call("kl_sparsity_penalty", probs, 0.1)
    want = expected(
        "kl_sparsity_penalty", lambda: float(reference(REF).kl_sparsity_penalty(probs, 0.1))
    )
    expect_close(kl, want, rtol=1e-4, atol=1e-5, name="sum_j KL(0.1 || rho_hat_j), h [6, 4]")
    extreme = probs.clone()
    extreme[:, 0], extreme[:, 1] = 0.0, 1.0  # a dead unit and a saturated one: log(0) unguarded
    kl = student.call("kl_sparsity_penalty", extreme, 0.1)
    want = expected(
        "kl_sparsity_penalty_extreme",
        lambda: float(reference(REF).kl_sparsity_penalty(extreme, 0.1)),
    )
    expect_close(
        kl,
        want,
        rtol=1e-4,
        atol=1e-4,
        name="KL penalty with a unit always 0 and one always 1 (clamp rho_hat to [eps, 1 - eps])",
    )
    at_target = student.call("kl_sparsity_penalty", torch.full((5, 3), 0.2), 0.2)
    expect_close(
        at_target,
        0.0,
        rtol=0,
        atol=1e-5,
        name="KL penalty when every unit's average activation equals rho",
    )
    x = torch.rand(3, 1, 4, 4, generator=student.rng)
    x_hat = torch.rand(3, 1, 4, 4, generator=student.rng)
    total = student.call("sparse_autoencoder_loss", x, x_hat, probs[:3], 0.5, "l1")
    want = expected(
        "sparse-l1",
        lambda: float(reference(REF).sparse_autoencoder_loss(x, x_hat, probs[:3], 0.5, "l1")),
    )
    expect_close(total, want, rtol=1e-5, atol=1e-5, name="R + 0.5 * ||h||_1")


@pytest.mark.weight(1)
@pytest.mark.functions("sparsity")
def test_sparsity_measure(student):
    h = torch.tensor([[0.0, 0.005, -0.2, 1.0], [0.0, -0.009, 0.3, 0.02]])  # [N, D]
    got = student.call("sparsity", h, 0.01)
    expect_close(
        got,
        4 / 8,
        rtol=0,
        atol=1e-6,
        name="fraction of |h| <= 0.01 in a [2, 4] code with 4 near-zero entries",
    )


# ---- Part 3: the denoising autoencoder ----------------------------------------------------------


@pytest.mark.weight(2)
@pytest.mark.functions("mask_pixels")
def test_mask_pixels_masking_noise(student):
    x = torch.rand(6, 3, 5, 4, generator=student.rng) + 0.1  # [N, C, H, W], no zero pixel
    got = student.probe(f"{PROBES}:masks", x, 0.25, 11)
    noisy, mask = got["noisy"], got["mask"]
    expect_true(tuple(noisy.shape) == (6, 3, 5, 4), "x_noisy must have the shape of x")
    expect_true(
        tuple(mask.shape) == (6, 1, 5, 4) and mask.dtype == torch.bool,
        f"mask must be bool [N, 1, H, W] = [6, 1, 5, 4], got {tuple(mask.shape)} {mask.dtype}",
    )
    counts = mask.flatten(1).sum(1).tolist()
    expect_true(
        counts == [5] * 6,
        f"each image must lose exactly round(0.25 * 20) = 5 pixels; masked per image: {counts}",
    )
    zeroed = (noisy == 0).all(dim=1, keepdim=True)  # [N, 1, H, W] zero in every channel
    expect_true(
        bool(torch.equal(zeroed, mask)),
        "masked pixels must be 0 in every channel, and only those (the same mask across channels)",
    )
    expect_true(
        bool(torch.equal(noisy[~mask.expand_as(noisy)], x[~mask.expand_as(x)])),
        "pixels outside the mask must be unchanged",
    )
    patterns = {tuple(m.flatten().tolist()) for m in mask}
    expect_true(len(patterns) > 1, "every image must get its own random mask (per sample)")
    expect_true(
        got["same_seed_same_result"] and got["other_seed_differs"],
        "the masks must be drawn from `generator`: the same seed gives the same masks, "
        "another seed other masks",
    )
    expect_true(got["input_unchanged"], "mask_pixels must not modify x in place")


@pytest.mark.weight(2)
@pytest.mark.functions("denoising_loss", "reconstruction_loss", "ConvAutoencoder")
def test_denoising_loss_reconstructs_the_clean_input(student):
    spec = dict(probes.TINY_AE)
    x = torch.rand(4, 3, 8, 8, generator=student.rng)  # [N, C, H, W]
    mask = torch.rand(4, 1, 8, 8, generator=student.rng) < 0.5  # [N, 1, H, W]
    state = expected("dae-weights", lambda: _spread_weights(5))
    got = student.probe(f"{PROBES}:denoising_loss_fixed_mask", spec, state, x, mask, 0.5)
    expect_true(
        got["mask_calls"] == [0.5],
        f"denoising_loss must corrupt x once with mask_pixels(x, 0.5, generator); "
        f"calls seen: {got['mask_calls']}",
    )
    want = expected("dae-loss", lambda: _reference_dae_loss(state, x, mask))
    expect_close(
        got["loss"],
        want,
        rtol=1e-4,
        atol=1e-4,
        name="R(x, model(x_noisy)[0]): the CLEAN x against the reconstruction of the noisy one",
    )
    expect_true(got["differentiable"], "the loss must be differentiable (no .item(), no detach)")


def _reference_dae_loss(state, x, mask):
    ref = reference(REF)
    model = load_weights(ref.ConvAutoencoder(3, 8, (4, 8), 6), state).eval()
    with torch.no_grad():
        x_hat, _ = model(x.masked_fill(mask, 0.0))
    return float(ref.reconstruction_loss(x, x_hat))


# ---- Part 4: greedy layer-wise pretraining -------------------------------------------------------


@pytest.mark.weight(2)
@pytest.mark.functions("pretrain_layer", "layer_reconstruction_loss", "layer_input")
def test_pretrain_layer_trains_only_the_current_layer(student):
    x = torch.rand(20, 12, generator=student.rng)  # [N, D_0]
    got = student.probe(f"{PROBES}:layerwise", [12, 8, 5, 3], 1, x, 2, 8, 4)
    changed = got["changed"]
    moved = sorted(name for name, c in changed.items() if c)
    expect_true(
        moved == ["decoders.1.bias", "decoders.1.weight", "encoders.1.bias", "encoders.1.weight"],
        f"pretrain_layer(stack, k=1) must change encoders.1 and decoders.1 only; changed: {moved}",
    )
    expect_true(
        len(got["losses"]) == 6,
        f"{len(got['losses'])} losses returned, expected one per step (2 epochs x 3 batches)",
    )
    want = expected(
        "layerwise-k1", lambda: probes.layerwise(reference(REF), [12, 8, 5, 3], 1, x, 2, 8, 4)
    )
    expect_tensor(
        torch.tensor(got["losses"]),
        torch.tensor(want["losses"]),
        rtol=1e-4,
        atol=1e-5,
        name="the losses of the 6 steps",
    )
    for key in ("encoders.1.weight", "decoders.1.bias"):
        expect_tensor(
            got["state"][key],
            want["state"][key],
            rtol=1e-4,
            atol=1e-5,
            name=f"{key} after 2 epochs",
        )


@pytest.mark.weight(1)
@pytest.mark.functions("layer_input", "layer_reconstruction_loss")
def test_layer_input_is_frozen_and_the_loss_reaches_layer_k_only(student):
    x = torch.rand(6, 10, generator=student.rng)  # [N, D_0]
    got = student.probe(f"{PROBES}:layer_input_probe", [10, 6, 4], 1, x, 2)
    want = expected(
        "layer_input", lambda: probes.layer_input_probe(reference(REF), [10, 6, 4], 1, x, 2)
    )
    expect_tensor(
        got["input"], want["input"], rtol=1e-5, atol=1e-6, name="layer_input(stack, x, k=1) [6, 6]"
    )
    expect_true(
        not got["input_requires_grad"],
        "layer_input must be computed without gradients (torch.no_grad): the layers below k "
        "are already trained",
    )
    expect_close(
        got["loss"], want["loss"], rtol=1e-5, atol=1e-5, name="layer_reconstruction_loss(k=1)"
    )
    expect_true(
        got["has_grad"] == want["has_grad"],
        "gradients of layer_reconstruction_loss(stack, x, 1) must reach encoders.1 and "
        f"decoders.1 only; they reach {sorted(k for k, v in got['has_grad'].items() if v)}",
        observed=got["has_grad"],
    )


@pytest.mark.weight(1)
@pytest.mark.functions("finetune_stack")
def test_finetune_stack_trains_every_layer_end_to_end(student):
    x = torch.rand(14, 9, generator=student.rng)  # [N, D_0]
    got = student.probe(f"{PROBES}:finetune", [9, 5, 3], x, 2, 7, 8)
    want = expected("finetune", lambda: probes.finetune(reference(REF), [9, 5, 3], x, 2, 7, 8))
    expect_true(
        len(got["losses"]) == 4,
        f"{len(got['losses'])} losses returned, expected one per step (2 epochs x 2 batches)",
    )
    expect_tensor(
        torch.tensor(got["losses"]),
        torch.tensor(want["losses"]),
        rtol=1e-4,
        atol=1e-5,
        name="finetune_stack losses of the 4 steps (Adam over every parameter)",
    )
    for key in ("encoders.0.weight", "decoders.1.bias"):
        expect_tensor(
            got["state"][key], want["state"][key], rtol=1e-4, atol=1e-5, name=f"{key} after"
        )


# ---- Part 5: the RBM ----------------------------------------------------------------------------


@pytest.mark.weight(2)
@pytest.mark.functions("free_energy")
def test_free_energy_matches_enumeration(student):
    W = torch.randn(3, 2, generator=student.rng)  # [D_v, D_h]
    b, c = torch.randn(3, generator=student.rng), torch.randn(2, generator=student.rng)
    v = torch.tensor(list(itertools.product([0.0, 1.0], repeat=3)))  # [8, 3] every visible state
    got = student.call("free_energy", v, W, b, c)
    want = expected("free_energy", lambda: reference(REF).free_energy(v, W, b, c))
    expect_tensor(
        got,
        want,
        rtol=1e-5,
        atol=1e-5,
        name="F(v) of the 8 states of a 3-visible, 2-hidden RBM, [8]",
    )
    big = student.call("free_energy", torch.ones(1, 3), W * 400, b, c)
    expect_true(
        isinstance(big, torch.Tensor) and bool(torch.isfinite(big).all()),
        "F(v) must stay finite for large inputs to log(1 + exp(.)) (use softplus)",
    )


@pytest.mark.weight(2)
@pytest.mark.functions("cd1_update", "sample_hidden", "sample_visible")
def test_cd1_update_given_the_same_random_draws(student):
    W = 0.5 * torch.randn(6, 4, generator=student.rng)  # [D_v, D_h]
    b, c = 0.1 * torch.randn(6, generator=student.rng), 0.1 * torch.randn(4, generator=student.rng)
    v0 = (torch.rand(5, 6, generator=student.rng) < 0.5).float()  # [N, D_v]
    noise_h, noise_v = (
        torch.rand(5, 4, generator=student.rng),
        torch.rand(5, 6, generator=student.rng),
    )
    p_h, h = student.call("sample_hidden", v0, W, c, noise_h)
    want = expected("sample_hidden", lambda: reference(REF).sample_hidden(v0, W, c, noise_h))
    expect_tensor(p_h, want[0], rtol=1e-5, atol=1e-6, name="p(h = 1 | v) [5, 4]")
    expect_tensor(h, want[1], rtol=0, atol=0, name="h sampled as (noise < p) [5, 4]")
    h0 = want[1]  # [N, D_h] the reference's binary hidden states
    p_v, v = student.call("sample_visible", h0, W, b, noise_v)
    want = expected("sample_visible", lambda: reference(REF).sample_visible(h0, W, b, noise_v))
    expect_tensor(p_v, want[0], rtol=1e-5, atol=1e-6, name="p(v = 1 | h) [5, 6]")
    expect_tensor(v, want[1], rtol=0, atol=0, name="v sampled as (noise < p) [5, 6]")
    got = student.call("cd1_update", v0, W, b, c, noise_h, noise_v)
    want = expected("cd1", lambda: reference(REF).cd1_update(v0, W, b, c, noise_h, noise_v))
    expect_true(
        isinstance(got, (tuple, list)) and len(got) == 3, "cd1_update must return (dW, db, dc)"
    )
    for name, g, w in zip(("dW [6, 4]", "db [6]", "dc [4]"), got, want):
        expect_tensor(g, w, rtol=1e-5, atol=1e-6, name=name)
