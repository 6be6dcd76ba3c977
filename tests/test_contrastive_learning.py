"""Fast unit tests of the reference module solutions/contrastive_learning.py (Assignment 4).

Closed forms, the lecture's loop against the vectorised loss, and parity with lightly (pinned at
1.6.0), an independent implementation of NT-Xent, the MoCo memory bank loss, the momentum
update and the negative cosine similarity of BYOL and SimSiam.
"""

import copy
import dataclasses
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from lightly.loss import NegativeCosineSimilarity, NTXentLoss
from lightly.models.utils import update_momentum

from replearn import augment, impl
from replearn.backbones import SmallCNN
from replearn.presets import PRESETS, get_preset
from replearn.recipes import contrastive_learning as recipe

cl = impl.load("contrastive_learning", "solution")


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def identity_augment(x, generator=None):
    return x.clone()


def noisy_flip(x, generator=None):
    """A cheap, seeded two-view augmentation for tiny models: noise and a horizontal flip."""
    noisy = (x + 0.1 * torch.randn(x.shape, generator=generator)).clamp(0, 1)
    return augment.random_horizontal_flip(noisy, generator=generator)


# ---- Part 1: margin contrastive loss ---------------------------------------------------------


def test_margin_loss_closed_form_per_pair_and_mean():
    z1 = torch.zeros(4, 2)
    z2 = torch.tensor([[3.0, 4.0], [3.0, 4.0], [0.3, 0.4], [3.0, 4.0]])  # distances 5, 5, 0.5, 5
    similar = torch.tensor([True, False, False, False])
    # similar: d^2 = 25; dissimilar within margin 6: (6 - 5)^2 = 1, (6 - 0.5)^2 = 30.25
    loss = cl.margin_contrastive_loss(z1, z2, similar, margin=6.0)
    assert torch.isclose(loss, torch.tensor((25 + 1 + 30.25 + 1) / 4))
    # a margin below the distance: dissimilar pairs cost nothing
    # the default margin 1: only the pair at distance 0.5 is close enough to be pushed
    all_dissimilar = torch.zeros(4, dtype=torch.bool)
    loss = cl.margin_contrastive_loss(z1, z2, all_dissimilar)
    assert torch.isclose(loss, torch.tensor((1 - 0.5) ** 2 / 4))


def test_margin_loss_gradients_pull_similar_and_ignore_far_dissimilar():
    z1 = torch.tensor([[0.0, 0.0], [0.0, 0.0]], requires_grad=True)
    z2 = torch.tensor([[1.0, 0.0], [5.0, 0.0]])
    cl.margin_contrastive_loss(z1, z2, torch.tensor([True, False]), margin=2.0).backward()
    # d/dz1 of d^2/2 (mean over 2 pairs) = (z1 - z2) = [-1, 0]: a step of -grad moves z1 to z2
    assert torch.allclose(z1.grad[0], torch.tensor([-1.0, 0.0]))
    assert torch.equal(z1.grad[1], torch.zeros(2))  # beyond the margin: no push


def test_margin_loss_gradient_is_finite_for_identical_embeddings():
    # sqrt then square: d(sqrt)/dx is infinite at 0, and 0 * inf is NaN even for the pair
    # that torch.where does not select
    z1 = torch.randn(4, 3, requires_grad=True)
    z2 = z1.detach().clone()
    similar = torch.tensor([True, False, True, False])
    loss = cl.margin_contrastive_loss(z1, z2, similar, margin=1.0)
    loss.backward()
    assert torch.isfinite(z1.grad).all()
    assert float(loss) == pytest.approx(0.5, abs=1e-5)  # two dissimilar pairs cost m^2 = 1 each


def test_margin_loss_rejects_bad_input():
    z = torch.randn(3, 4)
    with pytest.raises(ValueError, match="bool"):
        cl.margin_contrastive_loss(z, z, torch.tensor([1, 0, 1]))
    with pytest.raises(ValueError, match="same shape"):
        cl.margin_contrastive_loss(z, torch.randn(3, 5), torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="margin"):
        cl.margin_contrastive_loss(z, z, torch.ones(3, dtype=torch.bool), margin=0.0)


# ---- Part 2: SimCLR --------------------------------------------------------------------------


def test_cosine_similarity_matrix_matches_torch_and_handles_zero_rows():
    z = torch.randn(7, 5, generator=gen(1))
    want = F.cosine_similarity(z[:, None, :], z[None, :, :], dim=-1)  # [7, 7]
    got = cl.cosine_similarity_matrix(z)
    assert got.shape == (7, 7) and torch.allclose(got, want, atol=1e-6)
    assert torch.allclose(got.diagonal(), torch.ones(7))
    # scale invariance and no NaN for an all-zero row
    assert torch.allclose(cl.cosine_similarity_matrix(z * 3.7), got, atol=1e-6)
    z[2] = 0
    assert torch.isfinite(cl.cosine_similarity_matrix(z)).all()
    with pytest.raises(ValueError, match=r"\[M, D\]"):
        cl.cosine_similarity_matrix(torch.randn(2, 3, 4))


@pytest.mark.parametrize("n, d, tau", [(1, 3, 0.5), (4, 8, 0.2), (9, 16, 0.07), (16, 5, 1.0)])
def test_nt_xent_loop_vectorised_and_lightly_agree(n, d, tau):
    z1 = torch.randn(n, d, generator=gen(n), dtype=torch.float64)
    z2 = torch.randn(n, d, generator=gen(n + 100), dtype=torch.float64)
    loop = cl.nt_xent_loss_loop(z1, z2, tau)
    fast = cl.nt_xent_loss(z1, z2, tau)
    theirs = NTXentLoss(temperature=tau)(z1, z2)
    assert torch.allclose(loop, fast, rtol=1e-10) and torch.allclose(fast, theirs, rtol=1e-10)


def test_nt_xent_gradients_match_lightly():
    z1 = torch.randn(6, 10, generator=gen(2), requires_grad=True)
    z2 = torch.randn(6, 10, generator=gen(3), requires_grad=True)
    grads_ours = torch.autograd.grad(cl.nt_xent_loss(z1, z2, 0.2), (z1, z2))
    grads_theirs = torch.autograd.grad(NTXentLoss(temperature=0.2)(z1, z2), (z1, z2))
    for ours, theirs in zip(grads_ours, grads_theirs):
        assert torch.allclose(ours, theirs, atol=1e-6)


def test_nt_xent_closed_forms():
    n, tau = 5, 0.5
    # every embedding identical: all 2N - 1 candidates look alike, L = log(2N - 1) (lightly's test)
    same = torch.ones(n, 3)
    assert math.isclose(float(cl.nt_xent_loss(same, same, tau)), math.log(2 * n - 1), rel_tol=1e-6)
    # orthonormal images, views identical: s_pos = 1, the 2N - 2 negatives have s = 0
    eye = torch.eye(n, 8)  # [N, D] orthonormal rows
    want = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + 2 * n - 2))
    assert math.isclose(float(cl.nt_xent_loss(eye, eye, tau)), want, rel_tol=1e-6)
    assert math.isclose(float(cl.nt_xent_loss_loop(eye, eye, tau)), want, rel_tol=1e-6)


def test_nt_xent_rejects_bad_input():
    z = torch.randn(4, 3)
    with pytest.raises(ValueError, match="temperature"):
        cl.nt_xent_loss(z, z, 0.0)
    with pytest.raises(ValueError, match="same shape"):
        cl.nt_xent_loss(z, z[:3], 0.2)
    with pytest.raises(ValueError, match="temperature"):
        cl.nt_xent_loss_loop(z, z, -1.0)


def test_projection_head_layout_and_simclr_forward():
    head = cl.ProjectionHead(16, 32, 8)
    kinds = [type(m) for m in head.layers]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    assert head.layers[0].weight.shape == (32, 16) and head.layers[3].weight.shape == (8, 32)
    model = cl.SimCLR(SmallCNN(widths=(4, 16)), 16, projection_dim=8, hidden_dim=32)
    assert model(torch.rand(3, 3, 8, 8)).shape == (3, 8)
    with pytest.raises(ValueError, match="positive"):
        cl.ProjectionHead(16, 0, 8)


def test_simclr_step_is_nt_xent_of_one_forward_over_both_views():
    torch.manual_seed(0)
    model = cl.SimCLR(SmallCNN(widths=(4, 8)), 8, projection_dim=6, hidden_dim=12)
    images = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8)
    out = cl.simclr_step(model, images, noisy_flip, 0.3, gen(4))
    assert set(out) == {"loss"} and out["loss"].requires_grad
    # the same views by hand: view1 then view2 from one generator, one forward on 2N images
    g = gen(4)
    x = images.float() / 255
    views = torch.cat([noisy_flip(x, g), noisy_flip(x, g)])  # [2N, C, H, W]
    z1, z2 = model(views).chunk(2)
    assert torch.allclose(out["loss"], cl.nt_xent_loss(z1, z2, 0.3), atol=1e-6)
    out["loss"].backward()
    assert model.encoder.blocks[0][0].weight.grad is not None


def test_simclr_steps_reduce_the_loss_on_a_tiny_cnn(one_thread):
    torch.manual_seed(0)
    model = cl.SimCLR(SmallCNN(widths=(8, 16)), 16, projection_dim=16, hidden_dim=32)
    images = torch.rand(32, 3, 16, 16, generator=gen(5))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = gen(6)
    losses = []
    for _ in range(25):
        loss = cl.simclr_step(model, images, noisy_flip, 0.2, g)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5, losses


# ---- Part 3: MoCo ----------------------------------------------------------------------------


def test_momentum_update_formula_buffers_and_lightly_parity():
    torch.manual_seed(0)
    online = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    online(torch.randn(8, 4))  # give the BatchNorm non-trivial running statistics
    target = copy.deepcopy(online)
    with torch.no_grad():
        for p in target.parameters():
            p.normal_()
    expected = [0.9 * t + 0.1 * o for o, t in zip(online.parameters(), target.parameters())]
    theirs = copy.deepcopy(target)
    update_momentum(online, theirs, 0.9)
    cl.momentum_update(online, target, 0.9)
    for got, want, lightly_value in zip(target.parameters(), expected, theirs.parameters()):
        assert torch.allclose(got, want) and torch.allclose(got, lightly_value)
    for b_online, b_target in zip(online.buffers(), target.buffers()):
        assert torch.equal(b_online, b_target)  # buffers copied, not averaged
    # m = 0 copies the online weights; m = 1 leaves the target as it is
    frozen = [p.clone() for p in target.parameters()]
    cl.momentum_update(online, target, 1.0)
    assert all(torch.equal(p, f) for p, f in zip(target.parameters(), frozen))
    cl.momentum_update(online, target, 0.0)
    assert all(torch.equal(p, q) for p, q in zip(target.parameters(), online.parameters()))


def test_momentum_update_rejects_bad_input():
    a, b = nn.Linear(3, 2), nn.Linear(3, 4)
    with pytest.raises(ValueError, match="momentum"):
        cl.momentum_update(a, copy.deepcopy(a), 1.5)
    with pytest.raises(ValueError, match="same parameters"):
        cl.momentum_update(a, b, 0.9)


def test_key_queue_starts_with_unit_vectors_and_wraps_around():
    queue = cl.KeyQueue(dim=3, size=5, generator=gen(0))
    assert queue.keys.shape == (5, 3) and torch.allclose(queue.keys.norm(dim=1), torch.ones(5))
    assert int(queue.ptr) == 0 and {"keys", "ptr"} <= set(queue.state_dict())
    first = torch.arange(9.0).view(3, 3)
    queue.enqueue(first)
    assert torch.equal(queue.keys[:3], first) and int(queue.ptr) == 3
    old = queue.keys[3:].clone()
    second = -torch.arange(1.0, 10.0).view(3, 3)
    queue.enqueue(second)  # rows 3, 4, then wraps to row 0
    assert torch.equal(queue.keys[3:], second[:2]) and torch.equal(queue.keys[0], second[2])
    assert torch.equal(queue.keys[1:3], first[1:]) and int(queue.ptr) == 1
    assert not torch.equal(queue.keys[3:], old)
    queue.enqueue(torch.ones(5, 3, requires_grad=True))  # a full lap: every row, ptr unchanged
    assert torch.equal(queue.keys, torch.ones(5, 3)) and int(queue.ptr) == 1
    assert not queue.keys.requires_grad
    with pytest.raises(ValueError, match="queue of 5"):
        queue.enqueue(torch.zeros(6, 3))
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        queue.enqueue(torch.zeros(2, 4))


def test_moco_loss_matches_hand_computation_and_lightly_memory_bank():
    q = torch.randn(4, 6, generator=gen(7), dtype=torch.float64)
    k = torch.randn(4, 6, generator=gen(8), dtype=torch.float64)
    queue = F.normalize(torch.randn(10, 6, generator=gen(9), dtype=torch.float64), dim=1)
    tau = 0.2
    got = cl.moco_loss(q, k, queue, tau)
    qn, kn = F.normalize(q, dim=1), F.normalize(k, dim=1)
    hand = []
    for i in range(4):  # the lecture's L_i with the positive first and K queue negatives
        positive = math.exp(float(qn[i] @ kn[i]) / tau)
        negatives = sum(math.exp(float(qn[i] @ key) / tau) for key in queue)
        hand.append(-math.log(positive / (positive + negatives)))
    assert math.isclose(float(got), sum(hand) / 4, rel_tol=1e-10)
    # lightly's NTXentLoss with a memory bank is MoCo's loss with the bank as the queue
    theirs = NTXentLoss(temperature=tau, memory_bank_size=(10, 6)).double()
    theirs.memory_bank.bank = queue.clone()
    assert torch.allclose(got, theirs(q, k), rtol=1e-10)


def test_moco_loss_sends_no_gradient_to_keys_or_queue():
    q = torch.randn(3, 4, requires_grad=True)
    k = torch.randn(3, 4, requires_grad=True)
    queue = torch.randn(8, 4, requires_grad=True)
    cl.moco_loss(q, k, queue, 0.2).backward()
    assert q.grad is not None and k.grad is None and queue.grad is None
    with pytest.raises(ValueError, match=r"queue must be \[K, D\]"):
        cl.moco_loss(q, k, torch.randn(8, 5), 0.2)


def test_moco_step_updates_key_encoder_and_queue():
    torch.manual_seed(0)
    model = cl.MoCo(
        SmallCNN(widths=(4, 8)),
        8,
        projection_dim=6,
        queue_size=16,
        momentum=0.5,
        temperature=0.2,
        hidden_dim=12,
    )
    assert not any(p.requires_grad for p in model.key_encoder.parameters())
    trained = [p for p in model.parameters() if p.requires_grad]
    assert len(trained) == len(list(model.encoder.parameters())) + len(
        list(model.projector.parameters())
    )
    optimizer = torch.optim.SGD(trained, lr=0.5)
    images = torch.rand(4, 3, 8, 8, generator=gen(10))
    out = cl.moco_step(model, images, noisy_flip, gen(11))
    optimizer.zero_grad()
    out["loss"].backward()  # works although the queue changed in place after the loss
    optimizer.step()
    assert int(model.queue.ptr) == 4
    assert torch.allclose(model.queue.keys[:4].norm(dim=1), torch.ones(4))
    key_before = model.key_encoder.blocks[0][0].weight.clone()
    query = model.encoder.blocks[0][0].weight.detach()
    assert not torch.equal(key_before, query)  # the optimiser moved the query encoder
    model.step(images, noisy_flip, gen(12))  # the next step first moves the key encoder
    assert torch.allclose(model.key_encoder.blocks[0][0].weight, 0.5 * key_before + 0.5 * query)
    assert int(model.queue.ptr) == 8


# ---- Part 4: BYOL ----------------------------------------------------------------------------


def test_byol_loss_is_two_minus_two_cosine_and_normalised_mse():
    p = torch.randn(6, 5, generator=gen(13), requires_grad=True)
    z = torch.randn(6, 5, generator=gen(14), requires_grad=True)
    loss = cl.byol_loss(p, z)
    cosine = F.cosine_similarity(p, z, dim=1)
    assert torch.allclose(loss, (2 - 2 * cosine).mean())
    mse = (F.normalize(p, dim=1) - F.normalize(z, dim=1)).pow(2).sum(dim=1).mean()
    assert torch.allclose(loss, mse, atol=1e-6)
    assert torch.allclose(loss, 2 + 2 * NegativeCosineSimilarity()(p, z), atol=1e-6)
    loss.backward()
    assert p.grad is not None and z.grad is None  # the target gets no gradient
    assert math.isclose(float(cl.byol_loss(p, p).detach()), 0.0, abs_tol=1e-6)
    assert math.isclose(float(cl.byol_loss(p, -p).detach()), 4.0, rel_tol=1e-6)


def test_byol_step_trains_online_only_and_moves_the_target():
    torch.manual_seed(0)
    model = cl.BYOL(SmallCNN(widths=(4, 8)), 8, projection_dim=6, hidden_dim=12, momentum=0.9)
    trained = [p for p in model.parameters() if p.requires_grad]
    online = [
        *model.encoder.parameters(),
        *model.projector.parameters(),
        *model.predictor.parameters(),
    ]
    assert {id(p) for p in trained} == {id(p) for p in online}
    optimizer = torch.optim.SGD(trained, lr=0.5)
    images = torch.rand(6, 3, 8, 8, generator=gen(15))
    out = cl.byol_step(model, images, noisy_flip, gen(16))
    assert 0 <= out["loss"].item() <= 4
    optimizer.zero_grad()
    out["loss"].backward()
    assert model.predictor.layers[0].weight.grad is not None
    optimizer.step()
    before = model.target_projector.layers[0].weight.clone()
    online_now = model.projector.layers[0].weight.detach()
    model.step(images, noisy_flip, gen(17))
    assert torch.allclose(model.target_projector.layers[0].weight, 0.9 * before + 0.1 * online_now)


# ---- Part 5: SimSiam -------------------------------------------------------------------------


def test_simsiam_loss_value_and_lightly_parity():
    p1, p2, z1, z2 = (torch.randn(5, 7, generator=gen(20 + i)) for i in range(4))
    got = cl.simsiam_loss(p1, p2, z1, z2)
    criterion = NegativeCosineSimilarity()
    assert torch.allclose(got, 0.5 * criterion(p1, z2) + 0.5 * criterion(p2, z1), atol=1e-6)
    assert torch.allclose(cl.simsiam_loss(p1, p2, z1, z2, stop_gradient=False), got)
    assert math.isclose(float(cl.simsiam_loss(z2, z1, z1, z2)), -1.0, rel_tol=1e-6)


@pytest.mark.parametrize("stop_gradient", [True, False])
def test_simsiam_stop_gradient_really_stops_gradients(stop_gradient):
    p1, p2, z1, z2 = (
        torch.randn(4, 3, generator=gen(30 + i), requires_grad=True) for i in range(4)
    )
    cl.simsiam_loss(p1, p2, z1, z2, stop_gradient=stop_gradient).backward()
    assert p1.grad is not None and p2.grad is not None
    if stop_gradient:
        assert z1.grad is None and z2.grad is None
    else:
        assert z1.grad.abs().sum() > 0 and z2.grad.abs().sum() > 0


def test_output_std_is_one_over_sqrt_d_for_gaussians_and_zero_for_a_constant():
    for d in (16, 64):
        z = torch.randn(4096, d, generator=gen(d))
        assert math.isclose(cl.output_std(z), 1 / math.sqrt(d), rel_tol=0.03)
    assert cl.output_std(torch.ones(10, 8) * 3.0) == pytest.approx(0.0, abs=1e-7)
    assert isinstance(cl.output_std(torch.randn(3, 2, requires_grad=True)), float)
    with pytest.raises(ValueError, match="N >= 2"):
        cl.output_std(torch.randn(1, 4))


def _simsiam_run(stop_gradient: bool, steps: int = 60) -> tuple[float, float]:
    """Mean loss and output std over the last 10 of ``steps`` SimSiam steps on a tiny CNN."""
    torch.manual_seed(0)
    g = gen(0)
    images = torch.rand(64, 3, 16, 16, generator=g)
    model = cl.SimSiam(SmallCNN(widths=(8, 16)), 16, projection_dim=32, hidden_dim=8)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-2)
    view = augment.SimCLRAugment(size=16)
    losses, stds = [], []
    for _ in range(steps):
        out = cl.simsiam_step(model, images, view, g, stop_gradient=stop_gradient)
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        losses.append(out["loss"].item())
        stds.append(out["std"])
    return sum(losses[-10:]) / 10, sum(stds[-10:]) / 10


def test_simsiam_without_stop_gradient_collapses_and_with_it_does_not(one_thread):
    # Chen & He (2021), Fig. 2: without stop-gradient the loss heads to -1 and the std of the
    # normalised output falls towards 0; with it the std stays near 1/sqrt(d) = 0.177 (d = 32).
    # Measured (this test's seed, 2-core CPU): loss -0.26 / std 0.17 with stop-gradient,
    # loss -0.86 / std 0.10 without.
    loss_stop, std_stop = _simsiam_run(True)
    loss_free, std_free = _simsiam_run(False)
    assert std_stop > 0.15 and std_free < 0.75 * std_stop, (std_stop, std_free)
    assert loss_free < -0.7 and loss_stop > loss_free + 0.3, (loss_stop, loss_free)


# ---- Given: configuration, driver, evaluation ------------------------------------------------


def test_config_presets_and_budgets():
    for name in PRESETS:
        cfg = recipe.ContrastiveConfig.from_preset(get_preset(name))
        for method in recipe.METHOD_NAMES:
            assert cfg.budget(method) > 0
        assert cfg.budget("simsiam-no-stopgrad") == cfg.simsiam_s
        assert cfg.augmentation in augment.PIPELINES
    with pytest.raises(ValueError, match="unknown method"):
        cfg.budget("swav")


@pytest.mark.parametrize("method", recipe.METHOD_NAMES)
def test_pretrain_runs_every_method_briefly(method):
    cfg = dataclasses.replace(
        recipe.ContrastiveConfig.from_preset(get_preset("smoke")),
        batch_size=8,
        widths=(4, 8),
        projection_dim=8,
        hidden_dim=16,
        queue_size=32,
    )
    images = torch.randint(0, 256, (16, 3, 16, 16), dtype=torch.uint8, generator=gen(40))
    labels = torch.arange(16) % 4
    monitor = (images, labels, images[:8], labels[:8])
    # one epoch of two batches (max_epochs=1 ends the run long before the budget)
    result = recipe.pretrain(cl, method, images, labels, cfg, budget_s=60, monitor=monitor)
    assert result.method == method and result.history.steps_done == 2
    assert math.isfinite(result.final_loss) and not result.encoder.training
    assert "knn" in result.history.epochs[0]
    scores = recipe.evaluate_encoder(result.encoder, images, labels, images[:8], labels[:8], cfg)
    assert set(scores) == {"knn", "linear"} and all(0 <= v <= 1 for v in scores.values())


def test_pretrain_rejects_bad_input():
    cfg = recipe.ContrastiveConfig.from_preset(get_preset("smoke"))
    images = torch.randint(0, 256, (16, 3, 16, 16), dtype=torch.uint8)
    with pytest.raises(ValueError, match="unknown method"):
        recipe.pretrain(cl, "swav", images, None, cfg, budget_s=1)
    with pytest.raises(ValueError, match="uint8"):
        recipe.pretrain(cl, "simclr", images.float(), None, cfg, budget_s=1)
    with pytest.raises(ValueError, match="needs labels"):
        recipe.pretrain(cl, "supervised", images, None, cfg, budget_s=1)


def test_positive_pairs_are_more_similar_than_negatives_for_identity_views():
    torch.manual_seed(0)
    model = cl.SimCLR(SmallCNN(widths=(4, 8)), 8)
    sims = recipe.positive_negative_similarity(model, torch.rand(6, 3, 8, 8), identity_augment)
    assert math.isclose(sims["positive"], 1.0, rel_tol=1e-5) and sims["negative"] < 1.0
