"""Fast unit tests of the reference module solutions/autoencoders.py (Assignment 2)."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from replearn import impl
from replearn.recipes import autoencoders as recipe

ae = impl.load("autoencoders", "solution")


def test_reconstruction_loss_is_summed_squared_error_averaged_over_the_batch():
    gen = torch.Generator().manual_seed(0)
    x, x_hat = torch.rand(5, 3, 4, 4, generator=gen), torch.rand(5, 3, 4, 4, generator=gen)
    torch.testing.assert_close(
        ae.reconstruction_loss(x, x_hat), F.mse_loss(x_hat, x, reduction="sum") / 5
    )
    # doubling the batch with copies leaves it unchanged; doubling the pixels doubles it
    torch.testing.assert_close(
        ae.reconstruction_loss(torch.cat([x, x]), torch.cat([x_hat, x_hat])),
        ae.reconstruction_loss(x, x_hat),
    )
    torch.testing.assert_close(
        ae.reconstruction_loss(torch.cat([x, x], 1), torch.cat([x_hat, x_hat], 1)),
        2 * ae.reconstruction_loss(x, x_hat),
    )
    with pytest.raises(ValueError, match="same shape"):
        ae.reconstruction_loss(x, x_hat[:, :1])


def test_conv_autoencoder_shapes_for_cifar_and_mnist():
    for channels, size, widths in ((3, 32, (8, 16, 32)), (1, 28, (8, 16))):
        model = ae.ConvAutoencoder(channels, size, widths, code_dim=10)
        x = torch.rand(2, channels, size, size)
        x_hat, h = model(x)
        assert h.shape == (2, 10) and x_hat.shape == x.shape
        assert 0 <= float(x_hat.detach().min()) and float(x_hat.detach().max()) <= 1
    relu = ae.ConvAutoencoder(1, 28, (4, 8), 6, code_activation="relu")
    assert float(relu.encode(torch.rand(3, 1, 28, 28)).detach().min()) >= 0
    with pytest.raises(ValueError, match="divisible"):
        ae.ConvAutoencoder(1, 28, (4, 8, 16))
    with pytest.raises(ValueError, match="code_activation"):
        ae.ConvAutoencoder(code_activation="tanh")


def test_kl_penalty_matches_torch_distributions_bernoulli_kl():
    gen = torch.Generator().manual_seed(1)
    h = torch.rand(12, 5, generator=gen)  # [N, D] sigmoid-like codes
    rho = 0.1
    want = torch.distributions.kl_divergence(
        torch.distributions.Bernoulli(probs=torch.full((5,), rho)),
        torch.distributions.Bernoulli(probs=h.mean(0)),
    ).sum()
    torch.testing.assert_close(ae.kl_sparsity_penalty(h, rho), want, rtol=1e-5, atol=1e-6)
    assert float(ae.kl_sparsity_penalty(torch.full((4, 3), rho), rho)) == pytest.approx(0, abs=1e-6)
    assert torch.isfinite(ae.kl_sparsity_penalty(torch.zeros(4, 3), rho))


def test_l1_penalty_sparsity_and_sparse_loss():
    h = torch.tensor([[1.0, -2.0, 0.0], [0.0, 0.005, 3.0]])
    assert float(ae.l1_sparsity_penalty(h)) == pytest.approx((3 + 3.005) / 2)
    assert ae.sparsity(h, 0.01) == pytest.approx(3 / 6)
    x, x_hat = torch.ones(2, 1, 2, 2), torch.zeros(2, 1, 2, 2)
    assert float(ae.sparse_autoencoder_loss(x, x_hat, h, 0.5, "l1")) == pytest.approx(
        4 + 0.5 * 3.0025
    )


def test_mask_pixels_properties():
    gen = torch.Generator().manual_seed(2)
    x = torch.rand(8, 3, 6, 6, generator=gen) + 0.1
    noisy, mask = ae.mask_pixels(x, 0.4, gen)
    assert mask.shape == (8, 1, 6, 6) and mask.dtype == torch.bool
    assert mask.flatten(1).sum(1).tolist() == [round(0.4 * 36)] * 8
    assert torch.equal((noisy == 0).all(1, keepdim=True), mask)  # same mask in every channel
    assert len({tuple(m.flatten().tolist()) for m in mask}) == 8  # one mask per image
    again, _ = ae.mask_pixels(x, 0.4, torch.Generator().manual_seed(5))
    same, _ = ae.mask_pixels(x, 0.4, torch.Generator().manual_seed(5))
    assert torch.equal(again, same)


def test_denoising_loss_compares_with_the_clean_input():
    torch.manual_seed(0)
    model = ae.ConvAutoencoder(1, 8, (4, 8), 5).eval()
    x = torch.rand(3, 1, 8, 8)
    loss = ae.denoising_loss(model, x, 0.5, torch.Generator().manual_seed(3))
    noisy, _ = ae.mask_pixels(x, 0.5, torch.Generator().manual_seed(3))
    torch.testing.assert_close(loss, ae.reconstruction_loss(x, model(noisy)[0]))


def test_pretrain_layer_changes_only_that_layer_and_lowers_its_loss():
    torch.manual_seed(0)
    stack = ae.StackedAutoencoder((16, 8, 4))
    x = torch.rand(64, 16)
    before = {k: v.clone() for k, v in stack.state_dict().items()}
    losses = ae.pretrain_layer(
        stack, 1, x, epochs=20, batch_size=16, lr=1e-2, generator=torch.Generator().manual_seed(0)
    )
    changed = {k for k, v in stack.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {
        "encoders.1.weight",
        "encoders.1.bias",
        "decoders.1.weight",
        "decoders.1.bias",
    }
    assert sum(losses[-4:]) < sum(losses[:4])
    losses = ae.finetune_stack(stack, x, epochs=2, batch_size=32, generator=torch.Generator())
    assert len(losses) == 4
    assert all(not torch.equal(v, before[k]) for k, v in stack.state_dict().items())


# ---- the RBM against closed forms on a 3-visible, 2-hidden machine --------------------------------

STATES_V = torch.tensor(list(itertools.product([0.0, 1.0], repeat=3)))  # [8, 3]
STATES_H = torch.tensor(list(itertools.product([0.0, 1.0], repeat=2)))  # [4, 2]


def _tiny_rbm(seed=0):
    gen = torch.Generator().manual_seed(seed)
    W = torch.randn(3, 2, generator=gen, dtype=torch.float64)
    return (
        W,
        torch.randn(3, generator=gen, dtype=torch.float64),
        torch.randn(2, generator=gen, dtype=torch.float64),
    )


def _log_joint(W, b, c):
    """-E(v, h) for every (v, h): [8, 4]."""
    v, h = STATES_V.double(), STATES_H.double()
    return (v @ b)[:, None] + (h @ c)[None, :] + v @ W @ h.T


def test_free_energy_equals_minus_log_sum_over_hidden_states():
    W, b, c = _tiny_rbm()
    want = -torch.logsumexp(_log_joint(W, b, c), dim=1)  # [8]
    torch.testing.assert_close(ae.free_energy(STATES_V.double(), W, b, c), want)
    assert torch.isfinite(
        ae.free_energy(torch.ones(1, 3), 500 * W.float(), b.float(), c.float())
    ).all()


def test_expected_cd1_update_points_along_the_exact_likelihood_gradient():
    """Averaged over many draws, CD-1's dW has a positive inner product with the exact gradient
    of the mean log-likelihood (computed by enumerating all 8 x 4 states), and on a data set
    drawn from the model itself the exact gradient vanishes."""
    W, b, c = _tiny_rbm(3)
    data = STATES_V[[0, 3, 3, 5, 6, 7, 7, 7]].double()  # [N, 3] a small data set
    # exact gradient: <v p(h|v)^T>_data - <v h^T>_model
    log_p = _log_joint(W, b, c)
    p_model = torch.softmax(log_p.flatten(), 0).view(8, 4)  # [8, 4] p(v, h)
    model_vh = STATES_V.double().T @ p_model @ STATES_H.double()  # [3, 2]
    data_vh = data.T @ torch.sigmoid(data @ W + c) / len(data)
    exact = data_vh - model_vh
    gen = torch.Generator().manual_seed(0)
    reps = 4000
    v0 = data.repeat(reps, 1)  # [reps * N, 3]
    dW, _, _ = ae.cd1_update(
        v0,
        W,
        b,
        c,
        torch.rand(len(v0), 2, generator=gen, dtype=torch.float64),
        torch.rand(len(v0), 3, generator=gen, dtype=torch.float64),
    )
    cosine = F.cosine_similarity(dW.flatten(), exact.flatten(), dim=0)
    assert cosine > 0.5, f"CD-1 and the exact gradient disagree (cosine {float(cosine):.2f})"


def test_cd1_matches_a_loop_over_samples():
    gen = torch.Generator().manual_seed(4)
    W, b, c = (
        torch.randn(5, 3, generator=gen),
        torch.randn(5, generator=gen),
        torch.randn(3, generator=gen),
    )
    v0 = (torch.rand(4, 5, generator=gen) < 0.5).float()
    nh, nv = torch.rand(4, 3, generator=gen), torch.rand(4, 5, generator=gen)
    dW, db, dc = ae.cd1_update(v0, W, b, c, nh, nv)
    want_W, want_b, want_c = torch.zeros(5, 3), torch.zeros(5), torch.zeros(3)
    for i in range(4):  # one sample at a time, as the paper's pseudocode
        ph0 = torch.sigmoid(c + v0[i] @ W)
        h0 = (nh[i] < ph0).float()
        v1 = (nv[i] < torch.sigmoid(b + W @ h0)).float()
        ph1 = torch.sigmoid(c + v1 @ W)
        want_W += (torch.outer(v0[i], ph0) - torch.outer(v1, ph1)) / 4
        want_b += (v0[i] - v1) / 4
        want_c += (ph0 - ph1) / 4
    torch.testing.assert_close(dW, want_W)
    torch.testing.assert_close(db, want_b)
    torch.testing.assert_close(dc, want_c)


def test_rbm_training_lowers_reconstruction_error_on_bars():
    gen = torch.Generator().manual_seed(0)
    bars = torch.zeros(4, 4, 4)  # four horizontal bars on a 4x4 grid
    for i in range(4):
        bars[i, i] = 1
    data = bars.flatten(1)[torch.randint(0, 4, (400,), generator=gen)]  # [400, 16]
    rbm = ae.RBM(16, 8, generator=gen)
    errors = recipe.train_rbm(ae, rbm, data, epochs=15, batch_size=20, lr=0.1, generator=gen)
    assert errors[-1] < 0.5 * errors[0]
    assert recipe.gibbs_samples(ae, rbm, data[:5], 3, gen).shape == (5, 16)


def test_config_for_every_preset():
    from replearn.presets import PRESETS

    for preset in PRESETS.values():
        cfg = recipe.AutoencoderConfig.from_preset(preset)
        assert cfg.cifar_code < 3 * 32 * 32 and max(cfg.bottlenecks) < 28 * 28


def test_quick_presets_count_every_run_in_optimizer_steps():
    """``smoke`` and ``cpu-quick`` count the autoencoders in steps and the RBM in epochs (a
    rerun repeats its numbers); the GPU presets keep their seconds."""
    from replearn.presets import PRESETS

    for name, preset in PRESETS.items():
        cfg = recipe.AutoencoderConfig.from_preset(preset)
        if name in ("smoke", "cpu-quick"):
            assert cfg.mnist_steps > 0 and cfg.cifar_steps > 0, name
            assert cfg.cifar_ae_budget_s == 0 or cfg.cifar_ae_steps > 0, name
            assert cfg.rbm_budget_s is None and cfg.rbm_epochs > 0, name
        else:
            steps = (cfg.mnist_steps, cfg.cifar_steps, cfg.cifar_ae_steps)
            assert steps == (None, None, None) and cfg.rbm_budget_s > 0, name


def test_runs_counted_in_steps_repeat_their_weights(one_thread):
    # an hour of budget, 3 steps: the count ends the run, and twice gives the same weights
    images = torch.randint(0, 256, (64, 3, 16, 16), generator=torch.Generator().manual_seed(0))
    images = images.to(torch.uint8)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = ae.ConvAutoencoder(3, 16, (4, 8), 8)
        history = recipe.train_autoencoder(
            ae, model, images, kind="dae", budget_s=3600, steps=3, batch_size=16, seed=1
        )
        runs.append((history.steps_done, model.state_dict()))
    assert runs[0][0] == runs[1][0] == 3
    for (name, a), b in zip(runs[0][1].items(), runs[1][1].values()):
        assert torch.equal(a, b), f"{name} differs between two runs of 3 counted steps"
