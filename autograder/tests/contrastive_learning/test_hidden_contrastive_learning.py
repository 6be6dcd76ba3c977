"""Hidden tests of Assignment 4, contrastive and Siamese learning (they stay in the grader)."""

import pytest
import torch
import torch.nn.functional as F

from autograder.api import expect_close, expect_tensor, expect_true, reference
from autograder.probes import contrastive_learning as probes

REF = "contrastive_learning"
PROBES = "autograder.probes.contrastive_learning"
GRAD = "autograder.probes.common:call_with_grad"


def _reference_grads(fn, inputs, grad_of):
    inputs = [
        x.clone().requires_grad_(i in grad_of) if isinstance(x, torch.Tensor) else x
        for i, x in enumerate(inputs)
    ]
    out = fn(*inputs)
    out.backward()
    return out.detach(), [inputs[i].grad for i in grad_of]


def _seed(student) -> int:
    return int(torch.randint(0, 10_000, (1,), generator=student.rng))


@pytest.mark.weight(1)
@pytest.mark.visibility("hidden")
@pytest.mark.functions("margin_contrastive_loss")
def test_margin_loss_matches_reference_on_fresh_pairs(student):
    n, d = 9, int(torch.randint(2, 7, (1,), generator=student.rng))
    z1 = torch.randn(n, d, generator=student.rng, dtype=torch.float64)
    z2 = z1 + torch.randn(n, d, generator=student.rng, dtype=torch.float64)
    z2[:3] = z1[:3]  # identical embeddings (d = 0) must keep a finite gradient
    similar = torch.rand(n, generator=student.rng) < 0.5
    similar[:2] = torch.tensor([True, False])
    margin = float(torch.rand(1, generator=student.rng)) * 2 + 0.5
    got = student.probe(GRAD, "margin_contrastive_loss", [z1, z2, similar, margin], [0, 1])
    value, grads = _reference_grads(
        reference(REF).margin_contrastive_loss, [z1, z2, similar, margin], [0, 1]
    )
    expect_close(got["output"], float(value), rtol=1e-9, atol=1e-12, name="margin loss (float64)")
    for i, name in enumerate(("z1", "z2")):
        expect_tensor(got["grads"][i], grads[i], rtol=1e-7, atol=1e-10, name=f"d loss / d {name}")


@pytest.mark.weight(2)
@pytest.mark.visibility("hidden")
@pytest.mark.functions("nt_xent_loss", "nt_xent_loss_loop", "cosine_similarity_matrix")
def test_nt_xent_both_versions_match_reference_on_fresh_sizes(student):
    n = int(torch.randint(2, 12, (1,), generator=student.rng))
    d = int(torch.randint(2, 20, (1,), generator=student.rng))
    tau = float(torch.rand(1, generator=student.rng)) * 0.9 + 0.1
    z1 = torch.randn(n, d, generator=student.rng, dtype=torch.float64)
    z2 = torch.randn(n, d, generator=student.rng, dtype=torch.float64)
    value, grads = _reference_grads(reference(REF).nt_xent_loss, [z1, z2, tau], [0, 1])
    for fn in ("nt_xent_loss", "nt_xent_loss_loop"):
        got = student.probe(GRAD, fn, [z1, z2, tau], [0, 1])
        expect_close(got["output"], float(value), rtol=1e-9, atol=1e-12, name=f"{fn} (float64)")
        for i, name in enumerate(("z1", "z2")):
            expect_tensor(
                got["grads"][i], grads[i], rtol=1e-7, atol=1e-10, name=f"{fn}: d / d {name}"
            )
    z1[0] = 0.0  # an all-zero row: zero similarities, not NaN
    sims = student.call("cosine_similarity_matrix", z1)
    expect_tensor(
        sims,
        reference(REF).cosine_similarity_matrix(z1),
        rtol=1e-9,
        atol=1e-12,
        name="cosine similarity matrix (float64)",
    )


@pytest.mark.weight(1)
@pytest.mark.visibility("hidden")
@pytest.mark.functions("simclr_step", "ProjectionHead.__init__")
def test_simclr_step_and_head_match_reference_with_another_seed(student):
    seed = _seed(student)
    images = probes.probe_images(5, student.rng)  # float images pass through
    got = student.probe(f"{PROBES}:simclr_step_value", seed, images, 0.5)
    want = probes.simclr_step_value(reference(REF), seed, images, 0.5)
    expect_close(got["loss"], want["loss"], rtol=1e-4, atol=1e-5, name="simclr_step loss")
    expect_tensor(got["grad"], want["grad"], rtol=1e-3, atol=1e-5, name="encoder gradient")
    as_bytes = (images * 255).round().to(torch.uint8)  # uint8 batches are converted first
    got = student.probe(f"{PROBES}:simclr_step_value", seed, as_bytes, 0.5)
    want = probes.simclr_step_value(reference(REF), seed, as_bytes, 0.5)
    expect_close(got["loss"], want["loss"], rtol=1e-4, atol=1e-5, name="simclr_step loss, uint8")
    h = torch.randn(7, 5, generator=student.rng)
    head = student.probe(f"{PROBES}:projection_head", 5, 9, 3, seed, h)
    ref_head = probes.projection_head(reference(REF), 5, 9, 3, seed, h)
    expect_tensor(head["z"], ref_head["z"], rtol=1e-4, atol=1e-5, name="ProjectionHead output")


@pytest.mark.weight(2)
@pytest.mark.visibility("hidden")
@pytest.mark.functions("KeyQueue.enqueue", "moco_loss", "momentum_update")
def test_moco_parts_on_fresh_sizes(student):
    k_size = int(torch.randint(5, 12, (1,), generator=student.rng))
    sizes = [int(torch.randint(1, k_size + 1, (1,), generator=student.rng)) for _ in range(4)]
    batches = [torch.randn(n, 4, generator=student.rng) for n in sizes]
    got = student.probe(f"{PROBES}:queue_trace", 4, k_size, batches)
    keys, ptr = got["initial"].clone(), 0
    for step, (batch, state) in enumerate(zip(batches, got["trace"])):
        keys[(ptr + torch.arange(len(batch))) % k_size] = batch
        ptr = (ptr + len(batch)) % k_size
        expect_tensor(
            state["keys"], keys, rtol=0, atol=0, name=f"queue keys after enqueue #{step + 1}"
        )
        expect_true(state["ptr"] == ptr, f"queue pointer after enqueue #{step + 1}")
    q = torch.randn(6, 4, generator=student.rng)
    k = torch.randn(6, 4, generator=student.rng)
    queue = F.normalize(torch.randn(k_size, 4, generator=student.rng), dim=1)
    tau = float(torch.rand(1, generator=student.rng)) * 0.4 + 0.05
    got = student.probe(GRAD, "moco_loss", [q, k, queue, tau], [0, 1, 2])
    value, grads = _reference_grads(reference(REF).moco_loss, [q, k, queue, tau], [0])
    expect_close(got["output"], float(value), rtol=1e-5, atol=1e-6, name="moco_loss")
    expect_tensor(got["grads"][0], grads[0], rtol=1e-4, atol=1e-6, name="d moco_loss / d q")
    expect_true(got["grads"][1] is None and got["grads"][2] is None, "moco_loss: keys detached")
    momentum = float(torch.rand(1, generator=student.rng))
    seed = _seed(student)
    got = student.probe(f"{PROBES}:momentum_update_result", seed, momentum)
    want = probes.momentum_update_result(reference(REF), seed, momentum)
    for name, value in want["target"].items():
        expect_tensor(got["target"][name], value, rtol=1e-5, atol=1e-6, name=f"target {name}")


@pytest.mark.weight(2)
@pytest.mark.visibility("hidden")
@pytest.mark.functions("MoCo.step", "BYOL.step")
def test_moco_and_byol_steps_match_reference_with_another_seed(student):
    seed = _seed(student)
    images = probes.probe_images(6, student.rng, uint8=True)  # [N, C, H, W] uint8
    got = student.probe(f"{PROBES}:moco_steps", seed, images, 3)
    want = probes.moco_steps(reference(REF), seed, images, 3)
    for i in range(3):
        expect_close(
            got["losses"][i],
            want["losses"][i],
            rtol=1e-4,
            atol=1e-5,
            name=f"MoCo loss, step {i + 1}",
        )
    expect_tensor(
        got["queue"], want["queue"], rtol=1e-4, atol=1e-5, name="queue after 3 steps (wrapped)"
    )
    got = student.probe(f"{PROBES}:byol_steps", seed, images, 3)
    want = probes.byol_steps(reference(REF), seed, images, 3)
    for i in range(3):
        expect_close(
            got["losses"][i],
            want["losses"][i],
            rtol=1e-4,
            atol=1e-5,
            name=f"BYOL loss, step {i + 1}",
        )
    expect_tensor(
        got["target_weight"],
        want["target_weight"],
        rtol=1e-3,
        atol=1e-5,
        name="target projector after 3 steps",
    )


@pytest.mark.weight(2)
@pytest.mark.visibility("hidden")
@pytest.mark.functions("byol_loss", "simsiam_loss", "output_std", "simsiam_step")
def test_siamese_losses_and_simsiam_step_on_fresh_inputs(student):
    n, d = int(torch.randint(2, 9, (1,), generator=student.rng)), 7
    tensors = [torch.randn(n, d, generator=student.rng, dtype=torch.float64) for _ in range(4)]
    got = student.probe(GRAD, "byol_loss", tensors[:2], [0, 1])
    value, grads = _reference_grads(reference(REF).byol_loss, tensors[:2], [0])
    expect_close(got["output"], float(value), rtol=1e-9, atol=1e-12, name="byol_loss (float64)")
    expect_tensor(got["grads"][0], grads[0], rtol=1e-7, atol=1e-10, name="d byol_loss / d p")
    expect_true(got["grads"][1] is None, "byol_loss: the target is detached")
    for stop in (True, False):
        got = student.probe(f"{PROBES}:simsiam_loss_grads", tensors, stop)
        want = probes.simsiam_loss_grads(reference(REF), tensors, stop)
        expect_tensor(
            got["loss"],
            want["loss"],
            rtol=1e-9,
            atol=1e-12,
            name=f"simsiam_loss, stop_gradient={stop}",
        )
        for i in range(4):
            expect_true(
                (got["grads"][i] is None) == (want["grads"][i] is None),
                f"which inputs receive gradients, stop_gradient={stop}",
            )
    z = torch.randn(50, 9, generator=student.rng) + 0.5 * torch.randn(1, 9, generator=student.rng)
    expect_close(
        student.call("output_std", z),
        reference(REF).output_std(z),
        rtol=1e-4,
        atol=1e-6,
        name="output_std of shifted Gaussian outputs [50, 9]",
    )
    seed = _seed(student)
    images = probes.probe_images(5, student.rng)
    for stop in (True, False):
        got = student.probe(f"{PROBES}:simsiam_step_value", seed, images, stop)
        want = probes.simsiam_step_value(reference(REF), seed, images, stop)
        expect_close(got["loss"], want["loss"], rtol=1e-4, atol=1e-5, name="simsiam_step loss")
        expect_true(got["std"] is not None, "simsiam_step returns the std")
        expect_close(got["std"], want["std"], rtol=1e-4, atol=1e-6, name="simsiam_step std")
        expect_tensor(
            got["grad"], want["grad"], rtol=1e-3, atol=1e-5, name="simsiam_step encoder gradient"
        )
