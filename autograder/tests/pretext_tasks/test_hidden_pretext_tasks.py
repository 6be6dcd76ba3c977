"""Hidden tests of Assignment 3, part I, discriminative pretext tasks (they stay in the grader)."""

import pytest
import torch

from autograder.api import expect_close, expect_tensor, expect_true, reference
from autograder.probes import pretext_tasks as probes

REF = "pretext_tasks"
PROBES = "autograder.probes.pretext_tasks"


@pytest.mark.weight(1)
@pytest.mark.visibility("hidden")
@pytest.mark.functions("rotation_batch")
def test_rotation_batch_grey_odd_size_and_order_of_rotations(student):
    x = torch.rand(4, 1, 7, 7, generator=student.rng)  # [N, C, H, W]
    rotated, labels = student.call("rotation_batch", x, (3, 0, 2))
    want = torch.cat([torch.rot90(x, k, dims=(2, 3)) for k in (3, 0, 2)])  # [12, 1, 7, 7]
    expect_tensor(rotated, want, rtol=0, atol=0, name="rotation_batch(x, (3, 0, 2))")
    expect_tensor(labels, torch.arange(3).repeat_interleave(4), rtol=0, atol=0, name="labels")


@pytest.mark.weight(1)
@pytest.mark.visibility("hidden")
@pytest.mark.functions("rotation_loss", "rotation_batch")
def test_rotation_loss_matches_reference(student):
    x = torch.rand(5, 3, 16, 16, generator=student.rng)  # [N, C, H, W]
    seed = int(torch.randint(0, 1000, (1,), generator=student.rng))
    got = student.probe(f"{PROBES}:rotation_loss_value", seed, x, [0, 1, 2, 3])
    want = probes.rotation_loss_value(reference(REF), seed, x, [0, 1, 2, 3])
    expect_close(got["loss"], want["loss"], rtol=1e-5, atol=1e-6, name="rotation loss")
    expect_close(got["acc"], want["acc"], rtol=0, atol=1e-6, name="rotation accuracy")
    expect_true(got["head_grad"] is not None, "the loss must backpropagate into the classifier")
    expect_tensor(
        got["head_grad"],
        want["head_grad"],
        rtol=1e-4,
        atol=1e-6,
        name="gradient of the loss w.r.t. the head (mean over all R*N images)",
    )


@pytest.mark.weight(1)
@pytest.mark.visibility("hidden")
@pytest.mark.functions("sample_context_pairs")
def test_context_pairs_match_reference_on_other_sizes(student):
    x = torch.rand(9, 3, 31, 27, generator=student.rng)  # [N, C, H, W], not square
    seed = int(torch.randint(0, 10_000, (1,), generator=student.rng))
    got = student.probe(f"{PROBES}:context_pairs", x, seed, 6, 2, 2)["first"]
    want = probes.context_pairs(reference(REF), x, seed, 6, 2, 2)["first"]
    for name, g, w in zip(("centre", "neighbour", "labels", "corners"), got, want):
        expect_tensor(g, w, rtol=0, atol=0, name=name)


@pytest.mark.weight(1)
@pytest.mark.visibility("hidden")
@pytest.mark.functions("jigsaw_tiles", "shuffle_tiles", "invert_permutations")
def test_jigsaw_two_by_two_matches_reference(student):
    x = torch.rand(5, 3, 14, 13, generator=student.rng)  # [N, C, H, W]
    perms = torch.stack([torch.randperm(4, generator=student.rng) for _ in range(5)])  # [N, 4]
    seed = int(torch.randint(0, 10_000, (1,), generator=student.rng))
    got = student.probe(f"{PROBES}:jigsaw", x, seed, 2, 6, 4, perms)
    want = probes.jigsaw(reference(REF), x, seed, 2, 6, 4, perms)
    for name in ("tiles", "centred", "shuffled", "inverse", "restored"):
        expect_tensor(got[name], want[name], rtol=0, atol=0, name=name)


@pytest.mark.weight(1)
@pytest.mark.visibility("hidden")
@pytest.mark.functions("hamming_permutation_set")
def test_hamming_set_small_puzzles(student):
    seed = int(torch.randint(0, 10_000, (1,), generator=student.rng))
    four = student.probe(f"{PROBES}:hamming_set", 4, 4, seed)
    # four permutations of 4 tiles can differ in every position (the rows of a Latin square)
    expect_true(isinstance(four, torch.Tensor) and tuple(four.shape) == (4, 4), "shape [4, 4]")
    expect_close(
        reference(REF).min_hamming_distance(four),
        4.0,
        rtol=0,
        atol=0,
        name="minimum Hamming distance of 4 permutations of 4 tiles",
    )
    pooled = student.probe(f"{PROBES}:hamming_set", 12, 9, seed, 300)
    want = probes.hamming_set(reference(REF), 12, 9, seed, 300)
    expect_tensor(
        pooled, want, rtol=0, atol=0, name="12 permutations chosen from a random pool of 300"
    )


@pytest.mark.weight(1)
@pytest.mark.visibility("hidden")
@pytest.mark.functions("exemplar_dataset", "exemplar_classifier")
def test_exemplar_dataset_other_sizes(student):
    x = torch.rand(7, 3, 6, 6, generator=student.rng)  # [M, C, H, W]
    seed = int(torch.randint(0, 10_000, (1,), generator=student.rng))
    got = student.probe(f"{PROBES}:exemplar", x, seed, 7, 2)
    want = probes.exemplar(reference(REF), x, seed, 7, 2)
    for name in ("views", "labels", "seed_index"):
        expect_tensor(got[name], want[name], rtol=1e-6, atol=1e-6, name=name)
    expect_true(got["last_linear_out"] == 7, "the head must have one output per seed")


@pytest.mark.weight(1)
@pytest.mark.visibility("hidden")
@pytest.mark.functions("SiameseContextNet.forward", "JigsawNet.forward")
def test_siamese_and_jigsaw_nets_on_fresh_inputs(student):
    seed = int(torch.randint(0, 10_000, (1,), generator=student.rng))
    centre, neighbour = (torch.rand(4, 3, 8, 8, generator=student.rng) for _ in range(2))
    got = student.probe(f"{PROBES}:siamese_forward", seed, centre, neighbour)
    want = probes.siamese_forward(reference(REF), seed, centre, neighbour)
    expect_tensor(got["logits"], want["logits"], rtol=1e-4, atol=1e-5, name="Siamese logits")
    tiles = torch.rand(3, 4, 3, 8, 8, generator=student.rng)  # [N, T, C, p, p]
    got = student.probe(f"{PROBES}:jigsaw_forward", seed, tiles, 5)
    want = probes.jigsaw_forward(reference(REF), seed, tiles, 5)
    expect_tensor(got["logits"], want["logits"], rtol=1e-4, atol=1e-5, name="JigsawNet logits")
