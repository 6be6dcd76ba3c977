"""Fast unit tests of the reference module solutions/pretext_tasks.py (Assignment 3, part I)."""

import itertools

import pytest
import torch

from replearn import augment, impl
from replearn.backbones import SmallCNN
from replearn.presets import get_preset
from replearn.recipes import pretext_tasks as recipe

pt = impl.load("pretext_tasks", "solution")


def test_rotation_batch_is_rot90_rotation_major_and_matches_augment():
    x = torch.rand(3, 2, 5, 5, generator=torch.Generator().manual_seed(0))
    rotated, labels = pt.rotation_batch(x)
    assert (
        rotated.shape == (12, 2, 5, 5) and labels.tolist() == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3
    )
    for r in range(4):
        assert torch.equal(rotated[3 * r : 3 * r + 3], torch.rot90(x, r, dims=(2, 3)))
        # one rotation per sample through replearn's batched op gives the same pixels
        assert torch.equal(rotated[3 * r : 3 * r + 3], augment.rotate90(x, torch.full((3,), r)))
    # 90 degrees counter-clockwise: the top row becomes the left column, read bottom-up
    assert torch.equal(rotated[3, :, :, 0].flip(-1), x[0, :, 0, :])
    with pytest.raises(ValueError, match="square"):
        pt.rotation_batch(torch.rand(2, 3, 4, 5))
    with pytest.raises(ValueError, match="distinct"):
        pt.rotation_batch(x, (0, 0))


def test_rotation_loss_is_log_r_for_uniform_logits_and_backpropagates():
    model = pt.PretextClassifier(SmallCNN(widths=(4, 8)), 2)
    torch.nn.init.zeros_(model.head.weight)
    torch.nn.init.zeros_(model.head.bias)
    out = pt.rotation_loss(model, torch.rand(4, 3, 8, 8), (0, 2))
    assert torch.isclose(out["loss"], torch.log(torch.tensor(2.0)))
    out["loss"].backward()
    assert model.head.weight.grad is not None and not out["acc"].requires_grad


def test_crop_patches_equals_slicing():
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(6, 3, 12, 10, generator=gen)
    top, left = torch.randint(0, 8, (6,), generator=gen), torch.randint(0, 6, (6,), generator=gen)
    want = torch.stack([x[n, :, top[n] : top[n] + 4, left[n] : left[n] + 4] for n in range(6)])
    assert torch.equal(pt.crop_patches(x, top, left, 4), want)
    with pytest.raises(ValueError, match="leave"):
        pt.crop_patches(x, torch.full((6,), 9), left, 4)


@pytest.mark.parametrize("patch,gap,jitter", [(8, 3, 1), (5, 4, 2), (4, 0, 0)])
def test_context_pairs_geometry(patch, gap, jitter):
    x = torch.rand(200, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    gen = torch.Generator().manual_seed(3)
    centre, neighbour, labels, corners = pt.sample_context_pairs(x, patch, gap, jitter, gen)
    assert centre.shape == neighbour.shape == (200, 3, patch, patch)
    assert set(labels.tolist()) == set(range(8)), "all eight positions occur in 200 draws"
    stride = patch + gap
    grid_corner = corners[:, 0] - stride  # cell (0, 0), up to the centre's jitter
    assert (grid_corner >= -jitter).all() and (corners >= 0).all() and (corners <= 32 - patch).all()
    move = corners[:, 1] - corners[:, 0] - stride * pt.NEIGHBOUR_OFFSETS[labels]
    assert move.abs().max() <= 2 * jitter
    if jitter:
        assert move.abs().max() > 0, "jitter is drawn"
    # patches never overlap and keep at least gap - 2 * jitter pixels between them
    apart = (corners[:, 1] - corners[:, 0]).abs().max(dim=1).values  # [N] Chebyshev distance
    assert (apart >= patch + gap - 2 * jitter).all()
    torch.testing.assert_close(
        pt.crop_patches(x, corners[:, 1, 0], corners[:, 1, 1], patch), neighbour
    )
    again = pt.sample_context_pairs(x, patch, gap, jitter, torch.Generator().manual_seed(3))
    assert all(torch.equal(a, b) for a, b in zip((centre, neighbour, labels, corners), again))


def test_context_pairs_reject_a_grid_that_does_not_fit():
    with pytest.raises(ValueError, match="needs 32 px"):
        pt.sample_context_pairs(torch.rand(2, 3, 28, 28), 8, 3, 1)


def _naive_maxmin(candidates, num, first):
    """A loop translation of the greedy max-min rule with the documented tie-breaks."""
    chosen = [first]
    dist = lambda a, b: sum(x != y for x, y in zip(a, b))
    while len(chosen) < num:
        best = None
        for c, perm in enumerate(candidates):
            if c in chosen:
                continue
            key = (
                min(dist(perm, candidates[j]) for j in chosen),
                sum(dist(perm, candidates[j]) for j in chosen),
            )
            if best is None or key > best[0]:
                best = (key, c)
        chosen.append(best[1])
    return [list(candidates[c]) for c in chosen]


def test_hamming_set_equals_a_naive_greedy_loop():
    for tiles, num, seed in ((4, 7, 0), (5, 12, 1)):
        candidates = list(itertools.permutations(range(tiles)))
        first = int(
            torch.randint(len(candidates), (1,), generator=torch.Generator().manual_seed(seed))
        )
        got = pt.hamming_permutation_set(num, tiles, torch.Generator().manual_seed(seed))
        assert got.tolist() == _naive_maxmin(candidates, num, first)


def test_hamming_set_of_nine_tiles_is_far_apart():
    perms = pt.hamming_permutation_set(100, 9, torch.Generator().manual_seed(0))
    assert perms.shape == (100, 9) and perms.dtype == torch.int64
    assert (perms.sort(dim=1).values == torch.arange(9)).all()
    assert len({tuple(p) for p in perms.tolist()}) == 100
    assert pt.min_hamming_distance(perms) == 6  # measured; a random set of 100 has 2 or less
    random_set = torch.stack(
        [torch.randperm(9, generator=torch.Generator().manual_seed(i)) for i in range(100)]
    )
    assert pt.min_hamming_distance(random_set) <= 2
    pooled = pt.hamming_permutation_set(10, 9, torch.Generator().manual_seed(0), pool_size=200)
    assert pooled.shape == (10, 9) and pt.min_hamming_distance(pooled) >= 7
    with pytest.raises(ValueError, match="only 24"):
        pt.hamming_permutation_set(25, 4)


def test_jigsaw_tiles_shuffle_and_inverse():
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    tiles = pt.jigsaw_tiles(x, 3, 10, 8, torch.Generator().manual_seed(5))
    assert tiles.shape == (4, 9, 3, 8, 8)
    centred = pt.jigsaw_tiles(x, 3, 10, 8, random=False)
    # window at (1, 1), tile offset 1 inside each cell
    assert torch.equal(
        centred[2, 5], x[2, :, 1 + 10 + 1 : 1 + 10 + 1 + 8, 1 + 20 + 1 : 1 + 20 + 1 + 8]
    )
    perms = pt.hamming_permutation_set(4, 9, torch.Generator().manual_seed(0))
    shuffled = pt.shuffle_tiles(tiles, perms)
    assert torch.equal(shuffled[1, 3], tiles[1, perms[1, 3]])
    assert torch.equal(pt.shuffle_tiles(shuffled, pt.invert_permutations(perms)), tiles)
    assert torch.equal(pt.invert_permutations(pt.invert_permutations(perms)), perms)


def test_networks_share_one_trunk():
    trunk = SmallCNN(widths=(4, 8))
    siamese = pt.SiameseContextNet(trunk, hidden=16)
    assert siamese(torch.rand(3, 3, 8, 8), torch.rand(3, 3, 8, 8)).shape == (3, 8)
    assert sum(p.numel() for p in siamese.parameters()) == sum(
        p.numel() for m in (trunk, siamese.pair_head) for p in m.parameters()
    )
    jigsaw = pt.JigsawNet(SmallCNN(widths=(4, 8)), 10, tile_hidden=4, hidden=16)
    assert jigsaw(torch.rand(2, 9, 3, 8, 8)).shape == (2, 10)
    # swapping two tiles changes the logits: the head sees the positions
    tiles = torch.rand(2, 9, 3, 8, 8)
    jigsaw.eval()
    assert not torch.allclose(jigsaw(tiles), jigsaw(tiles[:, [1, 0, *range(2, 9)]]))


def test_exemplar_dataset_and_head_growth():
    x = torch.rand(20, 3, 8, 8)
    views, labels, seed_index = pt.exemplar_dataset(
        x, 5, 3, pt.exemplar_augment, torch.Generator().manual_seed(0)
    )
    assert views.shape == (15, 3, 8, 8) and labels.tolist() == [0, 1, 2, 3, 4] * 3
    assert len(set(seed_index.tolist())) == 5
    identity = lambda batch, generator: batch
    views, labels, seed_index = pt.exemplar_dataset(
        x, 4, 2, identity, torch.Generator().manual_seed(0)
    )
    assert torch.equal(views, x[seed_index].repeat(2, 1, 1, 1))
    sizes = [
        pt.exemplar_classifier(SmallCNN(widths=(4, 8)), n).head.weight.numel() for n in (10, 100)
    ]
    assert sizes == [8 * 10, 8 * 100]


def test_evaluation_helpers():
    enc = SmallCNN(widths=(4, 8, 8, 16))
    x = torch.randint(0, 256, (12, 3, 32, 32), dtype=torch.uint8)
    feats = recipe.block_features(enc, x, (2, 4))
    enc.eval()
    torch.testing.assert_close(feats[2], enc.forward_features(x.float() / 255, upto=2, pool=True))
    maps = recipe.block_features(enc, x, (3,), pool=False, grid=2)[3]
    assert maps.shape == (12, 8 * 2 * 2)
    assert recipe.patch_grid_features(enc, x, 8, 10).shape == (12, 16)
    model = pt.PretextClassifier(enc, 4)
    confusion, correct = recipe.rotation_confusion(pt, model, x)
    assert confusion.shape == (4, 4) and int(confusion.sum()) == 48 and correct.shape == (4, 12)
    assert int(confusion.diagonal().sum()) == int(correct.sum())
    assert recipe.best_block({2: {"linear": 0.5}, 3: {"linear": 0.6}, 4: {"linear": 0.6}}) == 3


def test_fit_geometry_makes_the_tasks_fit_28_pixel_images():
    cfg = recipe.fit_geometry(recipe.PretextConfig.from_preset(get_preset("smoke")), 28)
    assert 2 * cfg.context_jitter < cfg.context_gap  # the sampler's rule: patches stay apart
    assert 3 * cfg.context_patch + 2 * (cfg.context_gap + cfg.context_jitter) <= 28
    x = torch.rand(3, 1, 28, 28)
    pt.sample_context_pairs(x, cfg.context_patch, cfg.context_gap, cfg.context_jitter)
    assert pt.jigsaw_tiles(x, 3, cfg.jigsaw_cell, cfg.jigsaw_tile).shape == (3, 9, 1, 8, 8)
    assert recipe.fit_geometry(
        recipe.PretextConfig.from_preset(get_preset("smoke")), 32
    ) == recipe.PretextConfig.from_preset(get_preset("smoke"))


@pytest.mark.parametrize("task", recipe.METHOD_NAMES)
def test_pretrain_runs_every_task(task):
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=gen)
    y = torch.arange(16) % 4
    cfg = recipe.PretextConfig(
        rotation_s=5,
        ablation_s=1,
        context_s=1,
        jigsaw_s=1,
        exemplar_s=1,
        supervised_s=1,
        max_epochs=1,
        batch_size=8,
        widths=(4, 8, 8, 8),
        num_permutations=5,
        exemplar_seeds=4,
        exemplar_copies=2,
    )
    result = recipe.pretrain(pt, task, x, cfg, budget_s=30, labels=y)
    assert result.history.steps_done >= 1 and result.encoder.feature_dim == 8
    assert 0.0 <= result.pretext_accuracy <= 1.0


def test_pretrain_passes_the_cpu_fast_path_to_train():
    """``PretextConfig.amp`` / ``.channels_last`` reach ``TrainConfig``: the benchmark's
    ``--amp --channels-last``. The encoder comes back in the default layout."""
    import warnings

    from replearn.train import cpu_supports_bf16, step_budget

    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=gen)
    cfg = recipe.PretextConfig(
        rotation_s=5,
        ablation_s=1,
        context_s=1,
        jigsaw_s=1,
        exemplar_s=1,
        supervised_s=1,
        max_epochs=1,
        batch_size=8,
        widths=(4, 8, 8, 8),
        amp=True,
        channels_last=True,
    )
    with warnings.catch_warnings(), step_budget(2):
        warnings.simplefilter("ignore")  # "amp has no effect" on a CPU without bf16
        result = recipe.pretrain(pt, "rotation", x, cfg, budget_s=30)
    assert result.history.steps_done == 2
    assert (result.history.amp is not None) == cpu_supports_bf16()
    for module in result.encoder.modules():
        if isinstance(module, torch.nn.Conv2d):
            assert module.weight.is_contiguous()  # NCHW again
