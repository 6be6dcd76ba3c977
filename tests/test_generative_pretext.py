"""Unit tests of the reference Assignment 3, part II module (solutions/generative_pretext.py)."""

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage.color import lab2rgb, rgb2lab
from sklearn.cluster import KMeans
from sklearn.metrics import normalized_mutual_info_score

from replearn import impl
from replearn.recipes import generative_pretext as recipe

gp = impl.load("generative_pretext", "solution")


def test_rgb_to_lab_matches_scikit_image_to_1e4():
    rgb = torch.rand(3, 3, 9, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    rgb[0, :, 0, :4] = torch.tensor([0.0, 1.0, 0.01, 0.04045])[
        None
    ]  # black, white, both gamma branches
    want = torch.from_numpy(rgb2lab(rgb.permute(0, 2, 3, 1).numpy())).permute(0, 3, 1, 2)
    assert (gp.rgb_to_lab(rgb) - want).abs().max() < 1e-4
    assert (gp.rgb_to_lab(rgb.float()).double() - want).abs().max() < 1e-3  # float32 input


def test_lab_to_rgb_matches_scikit_image_and_inverts():
    g = torch.Generator().manual_seed(1)
    lab = torch.stack(
        [
            torch.rand(2, 5, 5, generator=g) * 100,
            torch.rand(2, 5, 5, generator=g) * 200 - 100,
            torch.rand(2, 5, 5, generator=g) * 200 - 100,
        ],
        1,
    ).double()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = torch.from_numpy(lab2rgb(lab.permute(0, 2, 3, 1).numpy())).permute(0, 3, 1, 2)
    assert (gp.lab_to_rgb(lab) - want).abs().max() < 1e-4
    rgb = torch.rand(2, 3, 4, 4, dtype=torch.float64, generator=g)
    assert (gp.lab_to_rgb(gp.rgb_to_lab(rgb)) - rgb).abs().max() < 1e-8


def test_gamut_bins_are_on_the_grid_and_cover_primaries():
    centres = gp.ab_gamut_bins()  # [Q, 2]
    assert 200 < len(centres) < 400 and bool((centres % 10 == 0).all())
    primaries = torch.eye(3).view(3, 3, 1, 1)  # red, green, blue
    ab = gp.rgb_to_lab(primaries)[:, 1:, 0, 0]  # [3, 2]
    assert torch.cdist(ab, centres).min(dim=1).values.max() <= 5 * 2**0.5 + 1e-4


def test_soft_encoding_of_a_bin_centre_peaks_there_and_rebalancing_closed_forms():
    centres = gp.ab_gamut_bins()
    ab = centres[:4].T.reshape(1, 2, 2, 2)  # pixels exactly at 4 centres
    soft = gp.soft_encode_ab(ab, centres)  # [1, Q, 2, 2]
    assert torch.equal(soft.argmax(1).flatten(), torch.arange(4))
    assert torch.allclose(soft.sum(1), torch.ones(1, 2, 2))
    q = 7
    one_hot = torch.zeros(q)
    one_hot[2] = 1
    w = gp.rebalancing_weights(one_hot, 0.5)  # closed form: w_2 = 1, others (1/2 + 1/14)/(1/14) = 8
    assert torch.allclose(w, torch.tensor([8.0, 8, 1, 8, 8, 8, 8]))
    assert torch.allclose(gp.rebalancing_weights(torch.full((q,), 1 / q), 0.0), torch.ones(q))
    # lam = 0 with an empty bin: 1 / p~ would be 1 / 0 there (and 0 * inf = NaN in E_p[w])
    w = gp.rebalancing_weights(torch.tensor([0.5, 0.25, 0.25, 0.0]), 0.0)
    assert torch.isfinite(w).all() and w[3] == 0
    assert torch.allclose(w[:3], torch.tensor([2.0, 4.0, 4.0]) / 3)  # 1 / p~, E_p[w] = 1
    with pytest.raises(ValueError):
        gp.rebalancing_weights(torch.ones(q), 0.5)


def test_colorization_loss_of_a_perfect_hard_prediction_is_small():
    targets = torch.zeros(1, 5, 2, 2)
    targets[:, 3] = 1
    assert float(gp.colorization_loss(100 * targets, targets)) < 1e-6
    assert abs(float(gp.colorization_loss(torch.zeros(1, 5, 2, 2), targets)) - np.log(5)) < 1e-6


def test_colorization_regression_targets_are_standardised_and_decoded_back():
    """``color-reg`` regresses ab standardised by :func:`ab_statistics`: the mean colour costs 1,
    and ``predict_pixels`` maps the model's output back to ab (a constant model gives the mean)."""
    from replearn.presets import get_preset
    from replearn.train import step_budget

    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (32, 3, 16, 16), dtype=torch.uint8, generator=generator)
    mean, std = recipe.ab_statistics(gp, images)
    ab = F.avg_pool2d(gp.rgb_to_lab(images.float() / 255), 4)[:, 1:]  # [N, 2, 4, 4]
    z = (ab - mean.view(1, 2, 1, 1)) / std.view(1, 2, 1, 1)
    assert mean.shape == std.shape == (2,) and bool((std > 1).all())
    assert z.mean(dim=(0, 2, 3)).abs().max() < 1e-4
    assert torch.allclose(z.std(dim=(0, 2, 3)), torch.ones(2), atol=1e-4)
    assert float(z.pow(2).mean()) == pytest.approx(1.0, abs=0.01)  # the mean colour's loss

    cfg = recipe.GenerativeConfig.from_preset(get_preset("smoke"))
    with step_budget(1):
        run = recipe.pretrain(gp, "color-reg", images, cfg, budget_s=1000.0, seed=0)
    assert torch.equal(run.extra["ab_mean"].flatten(), mean)
    last = run.model.decoder[-1]
    with torch.no_grad():  # a model that always outputs 0 predicts the mean colour
        last.weight.zero_()
        last.bias.zero_()
    out = recipe.predict_pixels(gp, run, images[:4])["output"]  # [4, 3, 16, 16]
    lab = gp.rgb_to_lab(images[:4].float() / 255)
    lab[:, 1:] = mean.view(1, 2, 1, 1)
    assert torch.allclose(out, gp.lab_to_rgb(lab), atol=1e-5)


def test_sobel_sees_edges_not_colour():
    """DeepCluster's input: a vertical edge answers in the x channel only, a flat colour not at all."""
    edge = torch.zeros(1, 3, 6, 6)
    edge[..., 3:] = 1.0  # left half black, right half white
    g = gp.sobel(edge)  # [1, 2, 6, 6]
    assert g.shape == (1, 2, 6, 6)
    assert g[0, 0, 1:-1, 2:4].abs().min() > 1.0 and g[0, 1, 1:-1, :].abs().max() < 1e-6
    flat = torch.tensor([0.9, 0.2, 0.1]).view(1, 3, 1, 1).expand(1, 3, 6, 6)  # red, no edges
    assert gp.sobel(flat)[..., 1:-1, 1:-1].abs().max() < 1e-6
    grey = (edge * gp.LUMA.view(1, 3, 1, 1)).sum(1, keepdim=True)
    assert torch.allclose(gp.sobel(grey), g)
    with pytest.raises(ValueError, match="sobel"):
        gp.sobel(torch.zeros(1, 2, 6, 6))


def test_masked_l2_ignores_the_context_and_region_mask_geometry():
    mask = gp.region_mask(2, 8, 4, "center")
    assert mask[:, :, 2:6, 2:6].all() and int(mask.sum()) == 32
    pred, target = torch.zeros(2, 3, 8, 8), torch.ones(2, 3, 8, 8)
    pred[~mask.expand_as(pred)] = 5.0  # errors outside the hole do not count
    assert float(gp.masked_l2_loss(pred, target, mask)) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        gp.region_mask(2, 8, 9)


def test_nmi_matches_scikit_learn_including_edge_cases():
    g = torch.Generator().manual_seed(2)
    for _ in range(5):
        a, b = torch.randint(0, 6, (300,), generator=g), torch.randint(0, 9, (300,), generator=g)
        assert gp.normalized_mutual_info(a, b) == pytest.approx(
            normalized_mutual_info_score(a, b), abs=1e-12
        )
    same = torch.zeros(10, dtype=torch.long)
    assert gp.normalized_mutual_info(same, same) == normalized_mutual_info_score(same, same) == 1.0
    assert gp.normalized_mutual_info(torch.arange(10) % 2, same) == 0.0


def test_kmeans_plusplus_is_deterministic_under_a_generator():
    x = torch.randn(100, 5, generator=torch.Generator().manual_seed(3))
    first = gp.kmeans_plusplus_init(x, 8, torch.Generator().manual_seed(4))
    again = gp.kmeans_plusplus_init(x, 8, torch.Generator().manual_seed(4))
    other = gp.kmeans_plusplus_init(x, 8, torch.Generator().manual_seed(5))
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert len({tuple(c.tolist()) for c in first}) == 8  # D^2 sampling never repeats a point


def test_kmeans_step_reseeds_every_empty_cluster():
    x = torch.randn(50, 3, generator=torch.Generator().manual_seed(6))
    centroids = torch.cat([x[:2], torch.full((3, 3), 1e3)])  # three empty clusters
    new, assign = gp.kmeans_step(x, centroids, torch.Generator().manual_seed(0))
    assert (torch.bincount(assign, minlength=5) > 0).all() and new.abs().max() < 10


def test_kmeans_inertia_agrees_with_scikit_learn_on_blobs():
    g = torch.Generator().manual_seed(7)
    x = (
        (torch.randn(8, 6, generator=g) * 12)[:, None] + torch.randn(8, 40, 6, generator=g)
    ).reshape(-1, 6)
    _, assign, inertia = gp.kmeans(x, 8, 50, torch.Generator().manual_seed(0))
    sk = KMeans(8, n_init=10, random_state=0).fit(x.double().numpy())
    assert inertia == pytest.approx(sk.inertia_, rel=0.01)
    assert gp.normalized_mutual_info(
        assign, torch.arange(8).repeat_interleave(40)
    ) == pytest.approx(1.0)


def test_cluster_sample_weights_are_uniform_over_clusters():
    assign = torch.tensor([1, 1, 1, 1, 3, 5, 5])
    w = gp.cluster_sample_weights(assign, 6)
    totals = torch.zeros(6).index_add_(0, assign, w)
    assert torch.allclose(totals[[1, 3, 5]], torch.full((3,), 1 / 3)) and float(
        w.sum()
    ) == pytest.approx(1.0)


def test_adversarial_losses_closed_form_for_a_constant_discriminator():
    disc = lambda x: torch.zeros(len(x))  # noqa: E731  D = 1/2 everywhere
    out = gp.adversarial_losses(disc, torch.rand(3, 3, 4, 4), torch.rand(3, 3, 4, 4))
    assert float(out["d_loss"]) == pytest.approx(np.log(2)) and float(
        out["g_loss"]
    ) == pytest.approx(np.log(2))


def test_hole_crops_cut_each_images_square_out():
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(5, 3, 12, 12, generator=generator)
    mask = gp.region_mask(5, 12, 4, "random", generator)
    crops = gp.hole_crops(images, mask)  # [5, 3, 4, 4]
    for i in range(5):
        top, left = (int(v) for v in mask[i, 0].nonzero()[0])
        assert torch.equal(crops[i], images[i, :, top : top + 4, left : left + 4])


def test_the_context_encoders_discriminator_sees_only_the_filled_square(monkeypatch):
    """Pathak et al. (2016), Sec. 3.2: the discriminator is not conditioned on the context; shown
    the whole completed image it learns to spot the seam."""
    from replearn.presets import get_preset
    from replearn.train import step_budget

    cfg = recipe.GenerativeConfig.from_preset(get_preset("smoke"))
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8, generator=generator)
    seen = []
    original = recipe.Discriminator.forward

    def spy(self, x):
        seen.append(tuple(x.shape))
        return original(self, x)

    monkeypatch.setattr(recipe.Discriminator, "forward", spy)
    with step_budget(2):
        recipe.pretrain(gp, "inpainting+adv", images, cfg, budget_s=1000.0, seed=0)
    assert seen and all(shape[1:] == (3, cfg.hole, cfg.hole) for shape in seen), seen


def test_split_brain_net_shapes_and_loss_runs():
    torch.manual_seed(0)
    centres = gp.ab_gamut_bins()
    model = gp.SplitBrainNet(gp.SmallCNN(1, (4, 8, 8)), gp.SmallCNN(2, (4, 8, 8)), len(centres))
    lab = gp.rgb_to_lab(torch.rand(2, 3, 16, 16))
    ab_logits, l_logits = model(lab)
    assert ab_logits.shape == (2, len(centres), 8, 8) and l_logits.shape == (2, 20, 8, 8)
    out = gp.split_brain_loss(model, lab, centres)
    assert torch.isfinite(out["loss"]) and float(out["loss"]) == pytest.approx(
        float(out["ab_loss"] + out["l_loss"])
    )


def test_deep_cluster_under_a_step_budget_splits_the_steps_over_its_rounds():
    """Under ``replearn.train.step_budget`` the k-means time costs nothing and each round gets
    its share of the steps, so the run repeats exactly."""
    from replearn.presets import get_preset
    from replearn.train import step_budget

    cfg = recipe.GenerativeConfig.from_preset(get_preset("smoke"))  # 2 rounds
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (64, 3, 16, 16), dtype=torch.uint8, generator=generator)
    labels = torch.arange(64) % 10
    runs = []
    for _ in range(2):
        with step_budget(8):
            result, rounds = recipe.deep_cluster(gp, images, labels, cfg, budget_s=1000.0, seed=0)
        runs.append(result)
        assert [r.round for r in rounds] == [1, 2]
        per_round = [sum(1 for s in result.history.steps if s["round"] == r) for r in (1, 2)]
        assert per_round == [4, 4]
    for a, b in zip(runs[0].model.state_dict().values(), runs[1].model.state_dict().values()):
        assert torch.equal(a, b)
