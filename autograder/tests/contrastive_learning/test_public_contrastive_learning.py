"""Public tests of Assignment 4, contrastive and Siamese learning (they ship to students).

Run them locally with the grader's one command (see the README). Each test names the functions it
grades; tiny encoders (two-block SmallCNNs on 8x8 images) stand in for the real one, so the file
takes seconds. A test of a training step replaces the other parts it calls (head, losses, queue,
momentum update) by stand-ins (``autograder.probes.contrastive_learning``), so one mistake costs
only the tests of that part. Reference values come from ``expected_public.agv``.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from autograder.api import (
    expect_close,
    expect_tensor,
    expect_true,
    expected,
    load_weights,
    reference,
    with_reference,
)
from autograder.probes import contrastive_learning as probes
from replearn.backbones import SmallCNN

REF = "contrastive_learning"
PROBES = "autograder.probes.contrastive_learning"
GRAD = "autograder.probes.common:call_with_grad"


# ---- Part 1: margin contrastive loss ---------------------------------------------------------


@pytest.mark.weight(2)
@pytest.mark.functions("margin_contrastive_loss")
def test_margin_contrastive_loss_value_and_gradient(student):
    z1 = torch.randn(6, 4, generator=student.rng)  # [N, D]
    z2 = z1 + 0.4 * torch.randn(6, 4, generator=student.rng)  # some pairs inside the margin
    similar = torch.tensor([True, False, True, False, False, True])
    got = student.probe(GRAD, "margin_contrastive_loss", [z1, z2, similar, 1.5], [0])
    want = expected("margin_loss", lambda: _margin_with_grad(z1, z2, similar, 1.5))
    expect_close(
        got["output"],
        float(want["output"]),
        rtol=1e-5,
        atol=1e-6,
        name="margin loss of 6 pairs [6, 4], margin 1.5 (mean of d^2 / max(0, m - d)^2)",
    )
    expect_tensor(got["grads"][0], want["grads"][0], rtol=1e-4, atol=1e-6, name="d loss / d z1")
    # identical embeddings: d = 0, where the derivative of a square root is infinite
    same = student.probe(GRAD, "margin_contrastive_loss", [z1, z1.clone(), similar, 1.5], [0])
    want = expected(
        "margin_loss_identical", lambda: _margin_with_grad(z1, z1.clone(), similar, 1.5)
    )
    expect_tensor(
        same["grads"][0],
        want["grads"][0],
        rtol=1e-4,
        atol=1e-6,
        name="d loss / d z1 when z2 == z1 (d = 0: the gradient must be finite)",
    )
    far = torch.tensor([[0.0, 0.0], [0.0, 0.0]]), torch.tensor([[3.0, 4.0], [0.6, 0.8]])
    value = student.call("margin_contrastive_loss", *far, torch.tensor([False, False]), 2.0)
    expect_close(
        value,
        (2.0 - 1.0) ** 2 / 2,
        rtol=1e-5,
        atol=1e-6,
        name="dissimilar pairs at distances 5 and 1, margin 2: (0 + (2 - 1)^2) / 2",
    )


def _margin_with_grad(z1, z2, similar, margin):
    z1 = z1.clone().requires_grad_(True)
    loss = reference(REF).margin_contrastive_loss(z1, z2, similar, margin)
    loss.backward()
    return {"output": loss.detach(), "grads": [z1.grad]}


# ---- Part 2: SimCLR -------------------------------------------------------------------------


@pytest.mark.weight(1)
@pytest.mark.functions("cosine_similarity_matrix")
def test_cosine_similarity_matrix(student):
    z = 2.5 * torch.randn(5, 3, generator=student.rng)  # [M, D]
    got = student.call("cosine_similarity_matrix", z)
    want = expected("cosine_similarity_matrix", lambda: reference(REF).cosine_similarity_matrix(z))
    expect_tensor(got, want, rtol=1e-5, atol=1e-6, name="cosine similarity matrix of z [5, 3]")
    zero_row = torch.cat([z[:2], torch.zeros(1, 3)])  # [3, 3] with an all-zero row
    got = student.call("cosine_similarity_matrix", zero_row)
    expect_true(
        isinstance(got, torch.Tensor) and bool(torch.isfinite(got).all()),
        "an all-zero row must give finite similarities (clamp the norm below by 1e-8)",
        observed=got,
    )


@pytest.mark.weight(2)
@pytest.mark.functions("nt_xent_loss_loop", "cosine_similarity_matrix")
def test_nt_xent_loss_loop_matches_the_lecture_formula(student):
    z1 = torch.randn(4, 5, generator=student.rng, dtype=torch.float64)  # [N, D]
    z2 = torch.randn(4, 5, generator=student.rng, dtype=torch.float64)
    got = student.probe(GRAD, "nt_xent_loss_loop", [z1, z2, 0.5], [0, 1])
    want = expected("nt_xent_loop", lambda: _nt_xent_with_grads(z1, z2, 0.5))
    expect_close(
        got["output"],
        float(want["output"]),
        rtol=1e-9,
        atol=1e-12,
        name="NT-Xent of z1, z2 [4, 5] float64 at tau 0.5 (loop version)",
    )
    for i, name in enumerate(("z1", "z2")):
        expect_tensor(
            got["grads"][i], want["grads"][i], rtol=1e-7, atol=1e-10, name=f"d loss / d {name}"
        )
    # the closed form of identical embeddings: every candidate alike, L = log(2N - 1)
    same = student.call("nt_xent_loss_loop", torch.ones(3, 2), torch.ones(3, 2), 0.2)
    expect_close(
        same,
        math.log(5),
        rtol=1e-5,
        atol=1e-6,
        name="NT-Xent when all 6 views are identical: log(2N - 1) = log 5",
    )


def _nt_xent_with_grads(z1, z2, tau):
    z1, z2 = z1.clone().requires_grad_(True), z2.clone().requires_grad_(True)
    loss = reference(REF).nt_xent_loss(z1, z2, tau)
    loss.backward()
    return {"output": loss.detach(), "grads": [z1.grad, z2.grad]}


@pytest.mark.weight(2)
@pytest.mark.functions("nt_xent_loss", "cosine_similarity_matrix")
def test_nt_xent_loss_vectorised(student):
    z1 = torch.randn(8, 6, generator=student.rng)  # [N, D]
    z2 = z1 + 0.5 * torch.randn(8, 6, generator=student.rng)  # positives close to their partner
    got = student.probe(GRAD, "nt_xent_loss", [z1, z2, 0.2], [0, 1])
    want = expected("nt_xent", lambda: _nt_xent_with_grads(z1, z2, 0.2))
    expect_close(
        got["output"],
        float(want["output"]),
        rtol=1e-5,
        atol=1e-6,
        name="NT-Xent of z1, z2 [8, 6] at tau 0.2 (mean over all 2N = 16 views)",
    )
    for i, name in enumerate(("z1", "z2")):
        expect_tensor(
            got["grads"][i], want["grads"][i], rtol=1e-4, atol=1e-6, name=f"d loss / d {name}"
        )
    single = student.call("nt_xent_loss", z1[:1], z2[:1], 0.2)
    expect_close(
        single,
        0.0,
        rtol=0,
        atol=1e-5,
        name="NT-Xent with N = 1 (the partner is the only candidate: loss 0)",
    )


@pytest.mark.weight(1)
@pytest.mark.functions("ProjectionHead.__init__")
def test_projection_head_layers(student):
    h = torch.randn(5, 8, generator=student.rng)  # [N, D]
    got = student.probe(f"{PROBES}:projection_head", 8, 12, 6, 3, h)
    expect_true(
        got["kinds"] == ["Linear", "BatchNorm1d", "ReLU", "Linear"],
        "ProjectionHead.layers must be nn.Sequential(Linear, BatchNorm1d, ReLU, Linear), "
        f"got {got['kinds']}",
        observed=got["kinds"],
    )
    want = expected(
        "projection_head", lambda: probes.projection_head(reference(REF), 8, 12, 6, 3, h)
    )
    expect_true(
        got["shapes"] == want["shapes"],
        f"layer shapes {got['shapes']} differ from {want['shapes']} "
        "(Linear(in_dim, hidden_dim), BatchNorm1d(hidden_dim), Linear(hidden_dim, out_dim))",
        observed=got["shapes"],
    )
    expect_tensor(got["z"], want["z"], rtol=1e-4, atol=1e-5, name="g(h) [5, 6] in train mode")


@pytest.mark.weight(2)
@pytest.mark.functions("simclr_step")
def test_simclr_step_one_forward_over_both_views(student):
    images = probes.probe_images(6, student.rng, uint8=True)  # [N, C, H, W] uint8
    got = student.probe(f"{PROBES}:simclr_step_value", 5, images, 0.3)
    want = expected("simclr_step", lambda: probes.simclr_step_value(reference(REF), 5, images, 0.3))
    expect_close(
        got["loss"],
        want["loss"],
        rtol=1e-4,
        atol=1e-5,
        name="simclr_step loss on uint8 images [6, 3, 8, 8] (view1 then view2 from the "
        "generator, ONE forward pass on the 2N views, nt_xent_loss)",
    )
    expect_true(got["grad"] is not None, "the loss must backpropagate into the encoder")
    expect_tensor(
        got["grad"],
        want["grad"],
        rtol=1e-3,
        atol=1e-5,
        name="gradient of the loss w.r.t. the first conv",
    )


@pytest.mark.weight(3)
@pytest.mark.functions(
    "simclr_step", "nt_xent_loss", "cosine_similarity_matrix", "ProjectionHead.__init__"
)
def test_simclr_smoke_train_reduces_the_contrastive_loss(student):
    got = student.probe(f"{PROBES}:simclr_smoke_train", 0, 25, timeout=90)
    losses = got["losses"]
    expect_true(len(losses) == 25, f"expected 25 recorded losses, got {len(losses)}")
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    expect_true(
        last < 0.85 * first,
        f"the NT-Xent your steps reported fell from {first:.3f} (mean of the first 5 steps) "
        f"only to {last:.3f} (the last 5); expected below {0.85 * first:.3f}",
        observed=losses,
    )
    # the grader also scores fresh views of the trained weights with the reference's NT-Xent
    scores = with_reference(lambda: _heldout_nt_xent(got["state_dict"]))
    if scores is not None:
        before, after = scores
        expect_true(
            after < 0.85 * before,
            f"after 25 SimCLR steps the NT-Xent of fresh views fell from {before:.3f} only "
            f"to {after:.3f}; expected below {0.85 * before:.3f}",
        )


def _heldout_nt_xent(state: dict, repeats: int = 4) -> tuple[float, float]:
    """The reference's NT-Xent on fresh views of the smoke images: untrained, then ``state``."""
    ref = reference(REF)
    scores = []
    for weights in (None, state):
        torch.manual_seed(0)  # the smoke-train probe's initialisation
        model = ref.SimCLR(SmallCNN(widths=(8, 16)), 16, 16, 32)
        if weights is not None:
            load_weights(model, weights, name="trained SimCLR")
        model.train()  # train-mode BatchNorm, as in training
        images, generator = probes.smoke_images(0), torch.Generator().manual_seed(99)
        with torch.no_grad():
            total = 0.0
            for _ in range(repeats):
                views = torch.cat(
                    [
                        probes.probe_augment(images, generator),
                        probes.probe_augment(images, generator),
                    ]
                )
                total += float(ref.nt_xent_loss(*model(views).chunk(2), 0.2))
        scores.append(total / repeats)
    return scores[0], scores[1]


# ---- Part 3: MoCo ---------------------------------------------------------------------------


@pytest.mark.weight(2)
@pytest.mark.functions("momentum_update")
def test_momentum_update_moves_parameters_and_copies_buffers(student):
    got = student.probe(f"{PROBES}:momentum_update_result", 4, 0.75)
    want = expected(
        "momentum_update", lambda: probes.momentum_update_result(reference(REF), 4, 0.75)
    )
    expect_true(got["returned"] is None, "momentum_update works in place and returns None")
    for name, target in want["target"].items():
        if name.endswith(("running_mean", "running_var", "num_batches_tracked")):
            what = "copied from online (buffers are not averaged)"
        else:
            what = "m * target + (1 - m) * online, m = 0.75"
        expect_tensor(
            got["target"][name], target, rtol=1e-5, atol=1e-6, name=f"target {name}: {what}"
        )
        expect_tensor(
            got["online"][name],
            want["online"][name],
            rtol=1e-5,
            atol=1e-6,
            name=f"online {name} (unchanged)",
        )


@pytest.mark.weight(2)
@pytest.mark.functions("KeyQueue.enqueue")
def test_key_queue_enqueue_wraps_around(student):
    batches = [torch.randn(n, 3, generator=student.rng) for n in (2, 3, 2)]  # [N, D] each
    got = student.probe(f"{PROBES}:queue_trace", 3, 5, batches)
    want = expected("queue_trace", lambda: probes.queue_trace(reference(REF), 3, 5, batches))
    for step, (keys, state, ref) in enumerate(zip(batches, got["trace"], want["trace"])):
        expect_tensor(
            state["keys"],
            ref["keys"],
            rtol=0,
            atol=0,
            name=f"queue keys [5, 3] after enqueue #{step + 1} of {len(keys)} keys "
            "(row (ptr + i) mod K gets keys[i])",
        )
        expect_true(
            state["ptr"] == ref["ptr"],
            f"ptr after enqueue #{step + 1}: got {state['ptr']}, expected {ref['ptr']}",
            observed=state["ptr"],
        )
        expect_true(state["requires_grad"] is False, "the queue must store detached keys")
    error = student.probe(f"{PROBES}:queue_too_large", 3, 5)
    expect_true(
        error.startswith("ValueError"),
        f"enqueuing 6 keys into a queue of 5 must raise ValueError, got: {error[:200]}",
    )


@pytest.mark.weight(2)
@pytest.mark.functions("moco_loss")
def test_moco_loss_positive_first_then_queue(student):
    q = torch.randn(4, 5, generator=student.rng)  # [N, D]
    k = q + 0.3 * torch.randn(4, 5, generator=student.rng)  # [N, D]
    queue = F.normalize(torch.randn(7, 5, generator=student.rng), dim=1)  # [K, D]
    got = student.probe(GRAD, "moco_loss", [q, k, queue, 0.2], [0, 1, 2])
    want = expected(
        "moco_loss", lambda: _with_grads(reference(REF).moco_loss, [q, k, queue, 0.2], [0])
    )
    expect_close(
        got["output"],
        float(want["output"]),
        rtol=1e-5,
        atol=1e-6,
        name="MoCo loss for q, k [4, 5], queue [7, 5], tau 0.2 (the positive logit first)",
    )
    expect_tensor(got["grads"][0], want["grads"][0], rtol=1e-4, atol=1e-6, name="d loss / d q")
    expect_true(
        got["grads"][1] is None and got["grads"][2] is None,
        "no gradient may flow into the keys or the queue (detach them)",
        observed=[got["grads"][1] is None, got["grads"][2] is None],
    )


def _with_grads(fn, inputs, grad_of):
    inputs = [
        x.clone().requires_grad_(i in grad_of) if isinstance(x, torch.Tensor) else x
        for i, x in enumerate(inputs)
    ]
    out = fn(*inputs)
    out.backward()
    return {"output": out.detach(), "grads": [inputs[i].grad for i in grad_of]}


@pytest.mark.weight(2)
@pytest.mark.functions("MoCo.step")
def test_moco_step_matches_reference(student):
    images = probes.probe_images(4, student.rng)  # [N, C, H, W]
    got = student.probe(f"{PROBES}:moco_steps", 7, images, 2)
    want = expected("moco_steps", lambda: probes.moco_steps(reference(REF), 7, images, 2))
    expect_true(
        got["num_trained"] == want["num_trained"],
        "the optimiser sees the query encoder and projector only",
    )
    for i in range(2):
        expect_close(
            got["losses"][i],
            want["losses"][i],
            rtol=1e-4,
            atol=1e-5,
            name=f"MoCo loss at step {i + 1} (momentum update, q from view 1, k from view 2)",
        )
    expect_true(
        got["ptr"] == want["ptr"],
        f"after 2 steps of 4 keys the queue received {want['ptr']} keys, got {got['ptr']}",
    )
    expect_tensor(
        got["queue"],
        want["queue"],
        rtol=1e-4,
        atol=1e-5,
        name="queue [10, 6] after 2 steps (enqueue k, after the loss)",
    )
    expect_tensor(
        got["key_weight"],
        want["key_weight"],
        rtol=1e-3,
        atol=1e-5,
        name="key encoder's first conv after 2 steps",
    )


# ---- Part 4: BYOL ---------------------------------------------------------------------------


@pytest.mark.weight(1)
@pytest.mark.functions("byol_loss")
def test_byol_loss_is_two_minus_two_cosine(student):
    p = torch.randn(5, 4, generator=student.rng)  # [N, D]
    z = torch.randn(5, 4, generator=student.rng)
    got = student.probe(GRAD, "byol_loss", [p, z], [0, 1])
    want = expected("byol_loss", lambda: _with_grads(reference(REF).byol_loss, [p, z], [0]))
    expect_close(
        got["output"],
        float(want["output"]),
        rtol=1e-5,
        atol=1e-6,
        name="BYOL loss of p, z [5, 4]: mean of 2 - 2 cos(p, z)",
    )
    expect_tensor(got["grads"][0], want["grads"][0], rtol=1e-4, atol=1e-6, name="d loss / d p")
    expect_true(got["grads"][1] is None, "no gradient may flow into the target z (detach it)")


@pytest.mark.weight(2)
@pytest.mark.functions("BYOL.step")
def test_byol_step_matches_reference(student):
    images = probes.probe_images(4, student.rng)  # [N, C, H, W]
    got = student.probe(f"{PROBES}:byol_steps", 8, images, 2)
    want = expected("byol_steps", lambda: probes.byol_steps(reference(REF), 8, images, 2))
    expect_true(
        got["num_trained"] == want["num_trained"],
        "the optimiser sees the online encoder, projector and predictor only",
    )
    for i in range(2):
        expect_close(
            got["losses"][i],
            want["losses"][i],
            rtol=1e-4,
            atol=1e-5,
            name=f"symmetrised BYOL loss at step {i + 1}, (L(p1, z2) + L(p2, z1)) / 2",
        )
        expect_true(got["predictor_grads"][i] is not None, "the loss must reach the predictor")
        expect_tensor(
            got["predictor_grads"][i],
            want["predictor_grads"][i],
            rtol=1e-3,
            atol=1e-5,
            name=f"predictor gradient at step {i + 1}",
        )
    expect_tensor(
        got["target_weight"],
        want["target_weight"],
        rtol=1e-3,
        atol=1e-5,
        name="target projector's first layer after 2 steps (momentum 0.5)",
    )


# ---- Part 5: SimSiam ------------------------------------------------------------------------


@pytest.mark.weight(2)
@pytest.mark.functions("simsiam_loss")
def test_simsiam_loss_and_its_stop_gradient(student):
    tensors = [torch.randn(5, 4, generator=student.rng) for _ in range(4)]  # p1, p2, z1, z2
    for stop in (True, False):
        got = student.probe(f"{PROBES}:simsiam_loss_grads", tensors, stop)
        want = expected(
            f"simsiam_loss_{stop}",
            lambda stop=stop: probes.simsiam_loss_grads(reference(REF), tensors, stop),
        )
        expect_close(
            got["loss"],
            float(want["loss"]),
            rtol=1e-5,
            atol=1e-6,
            name=f"D(p1, z2)/2 + D(p2, z1)/2 with stop_gradient={stop}",
        )
        for i, name in enumerate(("p1", "p2", "z1", "z2")):
            if stop and name.startswith("z"):
                expect_true(
                    got["grads"][i] is None,
                    f"with stop_gradient=True no gradient may reach {name} (detach it)",
                )
            else:
                expect_true(
                    got["grads"][i] is not None,
                    f"with stop_gradient={stop} the loss must reach {name}",
                )
                expect_tensor(
                    got["grads"][i],
                    want["grads"][i],
                    rtol=1e-4,
                    atol=1e-6,
                    name=f"d loss / d {name}, stop_gradient={stop}",
                )


@pytest.mark.weight(1)
@pytest.mark.functions("output_std")
def test_output_std(student):
    z = 3.0 * torch.randn(2000, 16, generator=student.rng)  # [N, D] isotropic Gaussian
    got = student.call("output_std", z)
    want = expected("output_std", lambda: reference(REF).output_std(z))
    expect_close(got, want, rtol=1e-4, atol=1e-6, name="output_std of Gaussian z [2000, 16]")
    expect_close(
        got, 0.25, rtol=0.05, atol=0, name="output_std of Gaussian z [2000, 16] ~ 1/sqrt(16)"
    )
    constant = student.call("output_std", torch.ones(6, 5) * 2.0)
    expect_close(
        constant, 0.0, rtol=0, atol=1e-6, name="output_std of a collapsed (constant) output"
    )


@pytest.mark.weight(2)
@pytest.mark.functions("simsiam_step")
def test_simsiam_step_matches_reference(student):
    images = probes.probe_images(4, student.rng)  # [N, C, H, W]
    for stop in (True, False):
        got = student.probe(f"{PROBES}:simsiam_step_value", 9, images, stop)
        want = expected(
            f"simsiam_step_{stop}",
            lambda stop=stop: probes.simsiam_step_value(reference(REF), 9, images, stop),
        )
        expect_close(
            got["loss"],
            want["loss"],
            rtol=1e-4,
            atol=1e-5,
            name=f"simsiam_step loss, stop_gradient={stop}",
        )
        expect_true(got["std"] is not None, "simsiam_step must return {'loss': ..., 'std': float}")
        expect_close(
            got["std"], want["std"], rtol=1e-4, atol=1e-6, name="output_std(z1) of the step"
        )
        expect_true(got["grad"] is not None, "the loss must backpropagate into the encoder")
        expect_tensor(
            got["grad"],
            want["grad"],
            rtol=1e-3,
            atol=1e-5,
            name=f"encoder gradient, stop_gradient={stop}",
        )
