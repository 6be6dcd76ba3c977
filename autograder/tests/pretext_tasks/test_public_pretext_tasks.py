"""Public tests of Assignment 3, part I, discriminative pretext tasks (they ship to students).

Run them locally with the grader's one command (see the README). Each test names the functions it
grades; tiny trunks (two-block SmallCNNs) stand in for the real encoder, so the file takes seconds.
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
)
from autograder.probes import pretext_tasks as probes

REF = "pretext_tasks"
PROBES = "autograder.probes.pretext_tasks"


# ---- Part 1: rotation ---------------------------------------------------------------------------


@pytest.mark.weight(2)
@pytest.mark.functions("rotation_batch")
def test_rotation_batch_is_rotation_major_and_exact(student):
    x = torch.rand(3, 2, 6, 6, generator=student.rng)  # [N, C, H, W]
    rotated, labels = student.call("rotation_batch", x)
    want, _ = expected(
        "rotation_batch_4", lambda: reference(REF).rotation_batch(x)
    )  # [4N, C, H, W]
    expect_tensor(
        rotated,
        want,
        rtol=0,
        atol=0,
        name="rotated batch [12, 2, 6, 6]: rows r*N..r*N+N-1 = torch.rot90(x, r, (2, 3))",
    )
    expect_tensor(
        labels,
        torch.arange(4).repeat_interleave(3),
        rtol=0,
        atol=0,
        name="labels [12] = [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]",
    )


@pytest.mark.weight(1)
@pytest.mark.functions("rotation_batch")
def test_rotation_batch_with_two_rotations(student):
    x = torch.rand(2, 3, 5, 5, generator=student.rng)  # [N, C, H, W]
    rotated, labels = student.call("rotation_batch", x, (1, 3))
    want, _ = expected("rotation_batch_13", lambda: reference(REF).rotation_batch(x, (1, 3)))
    expect_tensor(
        rotated, want, rtol=0, atol=0, name="rotation_batch(x, (1, 3)) images [4, 3, 5, 5]"
    )
    expect_tensor(
        labels,
        torch.tensor([0, 0, 1, 1]),
        rtol=0,
        atol=0,
        name="labels with rotations=(1, 3): indices into the rotation set",
    )


@pytest.mark.weight(1)
@pytest.mark.functions("rotation_loss", "rotation_batch")
def test_rotation_loss_of_a_fixed_classifier(student):
    x = torch.rand(3, 3, 16, 16, generator=student.rng)  # [N, C, H, W]
    for rotations in ([0, 1, 2, 3], [1, 3]):
        got = student.probe(f"{PROBES}:rotation_loss_value", 4, x, rotations)
        want = expected(
            f"rotation_loss_{len(rotations)}",
            lambda r=rotations: probes.rotation_loss_value(reference(REF), 4, x, r),
        )
        expect_close(
            got["loss"],
            want["loss"],
            rtol=1e-5,
            atol=1e-6,
            name=f"rotation_loss with rotations={rotations}: the mean cross-entropy over the "
            "R*N rotated images",
        )
        expect_close(got["acc"], want["acc"], rtol=0, atol=1e-6, name="rotation accuracy")
        expect_true(got["head_grad"] is not None, "the loss must backpropagate into the model")
        expect_tensor(
            got["head_grad"], want["head_grad"], rtol=1e-4, atol=1e-6, name="the head's gradient"
        )


@pytest.mark.weight(3)
@pytest.mark.functions("rotation_loss", "rotation_batch")
def test_rotation_smoke_train_learns_the_rotation(student):
    got = student.probe(f"{PROBES}:rotation_smoke_train", 0, 40, timeout=60)
    model = load_weights(probes.TinyRotNet(0), got["state_dict"], name="trained TinyRotNet")
    model.eval()
    # the parent scores the returned weights on fresh held-out images in the 4 rotations
    held_out = probes.oriented_images(
        32, 16, torch.Generator().manual_seed(1234)
    )  # [32, 3, 16, 16]
    rotated, labels = expected(
        "heldout_rotations", lambda: reference(REF).rotation_batch(held_out)
    )  # [128, ...]
    with torch.no_grad():
        acc = float((model(rotated).argmax(1) == labels).float().mean())
    losses = got["losses"]
    expect_true(
        len(losses) == 40 and losses[-1] < losses[0],
        f"the rotation loss should fall over 40 steps; first {losses[0]:.3f}, last "
        f"{losses[-1]:.3f}",
        observed=losses,
    )
    expect_true(
        acc >= 0.5,
        f"after 40 steps on rotation_loss the classifier recognises {acc:.0%} "
        "of held-out rotations; expected at least 50% (chance is 25%)",
    )


# ---- Part 2: context prediction -------------------------------------------------------------------


@pytest.mark.weight(2)
@pytest.mark.functions("sample_context_pairs")
def test_context_pairs_geometry_and_determinism(student):
    patch, gap, jitter = 4, 2, 1
    x = torch.rand(12, 3, 20, 20, generator=student.rng)  # [N, C, H, W]
    got = student.probe(f"{PROBES}:context_pairs", x, 7, patch, gap, jitter)
    centre, neighbour, labels, corners = got["first"]
    expect_true(
        all(torch.equal(a, b) for a, b in zip(got["first"], got["second"])),
        "two calls with generators seeded alike must return the same pairs",
    )
    expect_true(
        tuple(centre.shape) == (12, 3, 4, 4) and tuple(neighbour.shape) == (12, 3, 4, 4),
        f"patches must be [N, C, p, p] = [12, 3, 4, 4]; got {tuple(centre.shape)}",
    )
    expect_true(
        labels.dtype == torch.int64 and bool(((labels >= 0) & (labels < 8)).all()),
        "labels must be int64 in 0..7",
    )
    expect_true(tuple(corners.shape) == (12, 2, 2), "corners must be [N, 2, 2]")
    stride = patch + gap
    offsets = torch.tensor([[-1, -1], [-1, 0], [-1, 1], [0, -1], [0, 1], [1, -1], [1, 0], [1, 1]])
    for n in range(12):
        for which, p in ((0, centre), (1, neighbour)):
            top, left = corners[n, which].tolist()
            expect_true(
                0 <= top <= 20 - patch and 0 <= left <= 20 - patch,
                f"pair {n}: patch {which} at ({top}, {left}) leaves the 20x20 image",
            )
            expect_tensor(
                p[n],
                x[n, :, top : top + patch, left : left + patch],
                rtol=0,
                atol=0,
                name=f"pair {n}, patch {which}: the pixels at its corner",
            )
        move = corners[n, 1] - corners[n, 0] - stride * offsets[labels[n]]  # jitter difference
        expect_true(
            bool(move.abs().max() <= 2 * jitter),
            observed=move,
            message=f"pair {n}: the neighbour is not at stride * NEIGHBOUR_OFFSETS[label] (+- "
            f"jitter) from the centre: corners {corners[n].tolist()}, label {int(labels[n])}",
        )
    want = expected(
        "context_pairs_seed7",
        lambda: probes.context_pairs(reference(REF), x, 7, patch, gap, jitter)["first"],
    )
    expect_tensor(
        corners, want[3], rtol=0, atol=0, name="corners with the documented order of draws"
    )
    expect_tensor(labels, want[2], rtol=0, atol=0, name="labels with the documented order of draws")


@pytest.mark.weight(2)
@pytest.mark.functions("SiameseContextNet.forward")
def test_siamese_context_net_shares_one_trunk(student):
    centre = torch.rand(5, 3, 8, 8, generator=student.rng)  # [N, C, p, p]
    neighbour = torch.rand(5, 3, 8, 8, generator=student.rng)
    got = student.probe(f"{PROBES}:siamese_forward", 3, centre, neighbour)
    want = expected(
        "siamese_forward_3",
        lambda: probes.siamese_forward(reference(REF), 3, centre, neighbour)["logits"],
    )
    expect_true(
        got["trunk_is_given"] and got["params_are_trunk_and_heads"],
        "the Siamese network must use the trunk it was given (self.trunk), for both "
        "patches, with no copy of its parameters",
    )
    expect_true(
        got["samples_seen"] == 10,
        f"the shared trunk encoded {got['samples_seen']} patches for 5 pairs; expected 10 "
        "(both patches of every pair)",
    )
    expect_true(
        got["grad_centre"] and got["grad_neighbour"] and got["trunk_trained"],
        "gradients must reach both patches and the trunk",
    )
    expect_tensor(
        got["logits"],
        want,
        rtol=1e-4,
        atol=1e-5,
        name="logits [5, 8] (features concatenated as [centre, neighbour])",
    )


# ---- Part 3: jigsaw -----------------------------------------------------------------------------


@pytest.mark.weight(2)
@pytest.mark.functions("hamming_permutation_set")
def test_hamming_permutation_set_is_far_apart(student):
    perms = student.probe(f"{PROBES}:hamming_set", 30, 9, 5, timeout=60)
    expect_true(
        isinstance(perms, torch.Tensor)
        and tuple(perms.shape) == (30, 9)
        and perms.dtype == torch.int64,
        "the set must be an int64 tensor [30, 9]",
    )
    expect_true(
        bool((perms.sort(dim=1).values == torch.arange(9)).all()),
        "every row must be a permutation of 0..8",
    )
    expect_true(len({tuple(row) for row in perms.tolist()}) == 30, "the rows must all differ")
    got_min = probes.min_hamming_distance(perms)
    want_min = expected(
        "hamming_min_30_9",
        lambda: probes.min_hamming_distance(probes.hamming_set(reference(REF), 30, 9, 5)),
    )
    expect_true(
        got_min >= want_min,
        f"the minimum Hamming distance of your set is {got_min}; the greedy max-min "
        f"selection reaches {want_min}",
        observed=perms,
    )


@pytest.mark.weight(2)
@pytest.mark.functions("jigsaw_tiles", "shuffle_tiles", "invert_permutations")
def test_jigsaw_tiles_shuffle_and_inverse(student):
    x = torch.rand(3, 3, 16, 16, generator=student.rng)  # [N, C, H, W]
    perms = torch.stack([torch.randperm(9, generator=student.rng) for _ in range(3)])  # [N, 9]
    got = student.probe(f"{PROBES}:jigsaw", x, 11, 3, 5, 4, perms)
    # centred tiles, computed here: window (16 - 15) // 2 = 0, offset (5 - 4) // 2 = 0
    centred = torch.stack(
        [
            torch.stack(
                [
                    x[n, :, 5 * (k // 3) : 5 * (k // 3) + 4, 5 * (k % 3) : 5 * (k % 3) + 4]
                    for k in range(9)
                ]
            )
            for n in range(3)
        ]
    )
    expect_tensor(
        got["centred"],
        centred,
        rtol=0,
        atol=0,
        name="jigsaw_tiles(random=False) [3, 9, 3, 4, 4], reading order",
    )
    expect_tensor(
        got["shuffled"],
        torch.stack([got["tiles"][n, perms[n]] for n in range(3)]),
        rtol=0,
        atol=0,
        name="shuffle_tiles: position i shows tile perm[i]",
    )
    expect_tensor(
        got["restored"],
        got["tiles"],
        rtol=0,
        atol=0,
        name="shuffling by the inverse permutation restores the grid",
    )
    want = expected(
        "jigsaw_tiles_seed11", lambda: probes.jigsaw(reference(REF), x, 11, 3, 5, 4, perms)["tiles"]
    )
    expect_tensor(
        got["tiles"],
        want,
        rtol=0,
        atol=0,
        name="random tiles [3, 9, 3, 4, 4] with the documented order of draws",
    )


@pytest.mark.weight(1)
@pytest.mark.functions("JigsawNet.forward")
def test_jigsaw_net_runs_one_shared_trunk_over_all_tiles(student):
    tiles = torch.rand(4, 9, 3, 8, 8, generator=student.rng)  # [N, T, C, p, p]
    got = student.probe(f"{PROBES}:jigsaw_forward", 2, tiles, 12)
    want = expected(
        "jigsaw_forward_2", lambda: probes.jigsaw_forward(reference(REF), 2, tiles, 12)["logits"]
    )
    expect_true(
        got["trunk_is_given"] and got["params_are_trunk_and_heads"],
        "JigsawNet must run the trunk it was given for every tile, with no copies",
    )
    expect_true(
        got["samples_seen"] == 36,
        f"the trunk encoded {got['samples_seen']} tiles; expected 4 x 9 = 36",
    )
    expect_tensor(got["logits"], want, rtol=1e-4, atol=1e-5, name="logits [4, 12]")


# ---- Part 4: exemplar CNN -------------------------------------------------------------------------


@pytest.mark.weight(2)
@pytest.mark.functions("exemplar_dataset", "exemplar_classifier")
def test_exemplar_dataset_labels_and_head_size(student):
    x = torch.rand(10, 3, 8, 8, generator=student.rng)  # [M, C, H, W]
    got = student.probe(f"{PROBES}:exemplar", x, 4, 6, 3)
    want = expected("exemplar", lambda: probes.exemplar(reference(REF), x, 4, 6, 3))
    expect_tensor(
        got["labels"],
        want["labels"],
        rtol=0,
        atol=0,
        name="labels [18]: surrogate class = seed index, copy-major [0..5, 0..5, 0..5]",
    )
    expect_tensor(got["seed_index"], want["seed_index"], rtol=0, atol=0, name="seed_index [6]")
    expect_tensor(
        got["views"],
        want["views"],
        rtol=1e-6,
        atol=1e-6,
        name="views [18, 3, 8, 8]: transform(seeds.repeat(copies, 1, 1, 1), generator)",
    )
    expect_true(
        got["logits_shape"] == [2, 6] and got["last_linear_out"] == 6,
        observed=got["logits_shape"],
        message=f"exemplar_classifier with 6 seeds must end in a 6-way linear layer; logits "
        f"{got['logits_shape']}",
    )
    expect_close(
        float(got["labels"].max()) + 1, 6.0, rtol=0, atol=0, name="number of surrogate classes"
    )
