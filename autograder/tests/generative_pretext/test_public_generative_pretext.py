"""Public tests of Assignment 3, part II, generative pretexts and deep clustering (they ship).

Run them locally with the grader's one command (see the README). Each test names the functions it
grades. Colour conversions are checked against scikit-image, NMI and k-means against
scikit-learn, in the grader's own process.
"""

import warnings

import numpy as np
import pytest
import torch

from autograder.api import expect_close, expect_tensor, expect_true, expected, reference
from autograder.probes import generative_pretext as probes

REF = "generative_pretext"
PROBES = "autograder.probes.generative_pretext"


def skimage_lab(rgb: torch.Tensor) -> torch.Tensor:
    from skimage.color import rgb2lab

    return torch.from_numpy(rgb2lab(rgb.double().permute(0, 2, 3, 1).numpy())).permute(0, 3, 1, 2)


def skimage_rgb(lab: torch.Tensor) -> torch.Tensor:
    from skimage.color import lab2rgb

    with warnings.catch_warnings():  # out-of-gamut colours: scikit-image clips and warns
        warnings.simplefilter("ignore")
        return torch.from_numpy(lab2rgb(lab.double().permute(0, 2, 3, 1).numpy())).permute(
            0, 3, 1, 2
        )


# ---- Part 1: inpainting ---------------------------------------------------------------------------


@pytest.mark.weight(2)
@pytest.mark.functions("region_mask")
def test_region_mask_center_and_random_squares(student):
    got = student.probe(f"{PROBES}:region_masks", 4, 10, 4, 3)
    want_center = torch.zeros(4, 1, 10, 10, dtype=torch.bool)
    want_center[:, :, 3:7, 3:7] = True  # corner (10 - 4) // 2 = 3
    expect_tensor(
        got["center"],
        want_center,
        rtol=0,
        atol=0,
        name="region_mask(4, 10, 4, 'center') [4, 1, 10, 10]: the square at (3, 3)",
    )
    masks = got["random"]
    for n in range(4):
        rows, cols = masks[n, 0].any(1).nonzero().flatten(), masks[n, 0].any(0).nonzero().flatten()
        expect_true(
            int(masks[n].sum()) == 16 and len(rows) == 4 and len(cols) == 4,
            f"random mask {n} must be one 4x4 square of True",
        )
    expect_tensor(
        got["random_again"], masks, rtol=0, atol=0, name="two calls with generators seeded alike"
    )
    want = expected(
        "region_mask_random_seed3",
        lambda: probes.region_masks(reference(REF), 4, 10, 4, 3)["random"],
    )
    expect_tensor(
        masks, want, rtol=0, atol=0, name="random masks with the documented order of draws"
    )


@pytest.mark.weight(2)
@pytest.mark.functions("masked_l2_loss")
def test_masked_l2_loss_counts_only_the_hole(student):
    pred = torch.rand(3, 3, 6, 6, generator=student.rng)  # [N, C, H, W]
    target = torch.rand(3, 3, 6, 6, generator=student.rng)
    mask = torch.zeros(3, 1, 6, 6, dtype=torch.bool)
    mask[:, :, 1:4, 2:5] = True
    got = student.probe(f"{PROBES}:masked_l2", pred, target, mask)
    want = expected("masked_l2", lambda: probes.masked_l2(reference(REF), pred, target, mask))
    expect_close(
        got["loss"],
        want["loss"],
        rtol=1e-5,
        atol=1e-7,
        name="mean squared error over the 27 masked pixels x 3 channels",
    )
    expect_true(got["grad"] is not None, "the loss must backpropagate into the prediction")
    expect_true(
        bool((got["grad"] * ~mask == 0).all()), "pixels outside the hole must get zero gradient"
    )


@pytest.mark.weight(2)
@pytest.mark.functions("adversarial_losses")
def test_adversarial_losses_values_and_detached_fakes(student):
    real = torch.rand(4, 3, 4, 4, generator=student.rng)  # [N, C, H, W]
    fake = torch.rand(4, 3, 4, 4, generator=student.rng)
    got = student.probe(f"{PROBES}:adversarial", 5, real, fake)
    want = expected("adversarial_seed5", lambda: probes.adversarial(reference(REF), 5, real, fake))
    expect_close(
        got["d_loss"],
        want["d_loss"],
        rtol=1e-5,
        atol=1e-6,
        name="d_loss: mean of BCE(D(real), 1) and BCE(D(fake), 0)",
    )
    expect_close(
        got["g_loss"], want["g_loss"], rtol=1e-5, atol=1e-6, name="g_loss: BCE(D(fake), 1)"
    )
    expect_true(
        not got["d_reaches_fake"],
        "the discriminator's loss must not reach the generator: detach the fakes",
    )
    expect_true(
        got["g_grad_fake"] is not None and float(got["g_grad_fake"].abs().sum()) > 0,
        "the generator's loss must reach the fakes",
    )
    expect_tensor(
        got["d_grad_disc"],
        want["d_grad_disc"],
        rtol=1e-4,
        atol=1e-6,
        name="gradient of d_loss w.r.t. the discriminator's weights",
    )


# ---- Part 2: colorization ---------------------------------------------------------------------------


@pytest.mark.weight(3)
@pytest.mark.functions("rgb_to_lab", "lab_to_rgb")
def test_lab_conversions_match_scikit_image(student):
    rgb = torch.rand(2, 3, 5, 7, generator=student.rng)  # [N, 3, H, W]
    rgb[0, :, 0, :3] = torch.tensor(
        [[0.0, 1.0, 0.02], [0.0, 1.0, 0.03], [0.0, 1.0, 0.01]]
    )  # black, white, dark
    lab = student.call("rgb_to_lab", rgb)
    expect_tensor(
        lab.double(),
        skimage_lab(rgb),
        rtol=0,
        atol=1e-3,
        name="rgb_to_lab vs skimage.color.rgb2lab (D65), float32 input",
    )
    lab64 = student.call("rgb_to_lab", rgb.double())
    expect_tensor(
        lab64,
        skimage_lab(rgb),
        rtol=0,
        atol=1e-4,
        name="rgb_to_lab on float64 input vs scikit-image",
    )
    some_lab = torch.stack(
        [
            torch.rand(2, 4, 4, generator=student.rng) * 100,
            torch.rand(2, 4, 4, generator=student.rng) * 160 - 80,
            torch.rand(2, 4, 4, generator=student.rng) * 160 - 80,
        ],
        dim=1,
    ).double()
    back = student.call("lab_to_rgb", some_lab)
    expect_tensor(
        back,
        skimage_rgb(some_lab),
        rtol=0,
        atol=1e-4,
        name="lab_to_rgb vs skimage.color.lab2rgb (clipped to [0, 1])",
    )
    expect_tensor(
        student.call("lab_to_rgb", lab64),
        rgb.double(),
        rtol=0,
        atol=1e-4,
        name="lab_to_rgb(rgb_to_lab(x)) == x",
    )


@pytest.mark.weight(2)
@pytest.mark.functions("soft_encode_ab", "rebalancing_weights")
def test_soft_encoding_and_rebalancing(student):
    centres = torch.stack(
        torch.meshgrid(torch.arange(-30.0, 31, 10), torch.arange(-30.0, 31, 10), indexing="ij"), -1
    ).reshape(-1, 2)  # [49, 2]
    ab = torch.rand(2, 2, 3, 3, generator=student.rng) * 50 - 25  # [N, 2, H, W]
    soft = student.call("soft_encode_ab", ab, centres)
    expect_true(
        tuple(soft.shape) == (2, 49, 3, 3),
        f"soft targets must be [N, Q, H, W] = [2, 49, 3, 3], got {tuple(soft.shape)}",
    )
    expect_tensor(
        soft.sum(1), torch.ones(2, 3, 3), rtol=0, atol=1e-5, name="soft targets sum to 1 per pixel"
    )
    expect_true(
        bool(((soft > 0).sum(1) == 5).all()), "each pixel puts weight on its 5 nearest bins only"
    )
    want = expected("soft_encode_ab_grid", lambda: reference(REF).soft_encode_ab(ab, centres))
    expect_tensor(
        soft, want, rtol=1e-4, atol=1e-6, name="Gaussian (sigma 5) weights of the 5 nearest bins"
    )
    prior = torch.rand(49, generator=student.rng) ** 3
    prior = prior / prior.sum()
    w = student.call("rebalancing_weights", prior, 0.5)
    want = expected("rebalancing_weights", lambda: reference(REF).rebalancing_weights(prior, 0.5))
    expect_tensor(
        w, want, rtol=1e-4, atol=1e-6, name="w ~ ((1 - lambda) p + lambda / Q)^-1 with E_p[w] = 1"
    )
    expect_tensor(
        student.call("rebalancing_weights", torch.full((49,), 1 / 49), 0.5),
        torch.ones(49),
        rtol=0,
        atol=1e-5,
        name="a uniform prior gives weights 1",
    )
    empty = prior.clone()
    empty[:5] = 0.0  # five colour bins that no training pixel falls in
    empty = empty / empty.sum()
    w = student.call("rebalancing_weights", empty, 0.0)
    want = expected(
        "rebalancing_weights_lam0", lambda: reference(REF).rebalancing_weights(empty, 0.0)
    )
    expect_tensor(
        w,
        want,
        rtol=1e-4,
        atol=1e-6,
        name="lam = 0 with 5 empty bins: finite weights, 0 for a bin no pixel falls in",
    )


@pytest.mark.weight(2)
@pytest.mark.functions("colorization_loss", "annealed_mean_ab")
def test_colorization_loss_and_annealed_mean(student):
    logits = torch.randn(2, 6, 3, 3, generator=student.rng)  # [N, Q, H, W]
    targets = torch.softmax(3 * torch.randn(2, 6, 3, 3, generator=student.rng), dim=1)
    weights = torch.rand(6, generator=student.rng) + 0.5
    got = student.call("colorization_loss", logits, targets, weights)
    want = expected(
        "colorization_loss",
        lambda: float(reference(REF).colorization_loss(logits, targets, weights)),
    )
    expect_close(
        got,
        want,
        rtol=1e-5,
        atol=1e-6,
        name="rebalanced cross-entropy, weight of each pixel's most likely true bin",
    )
    got_plain = student.call("colorization_loss", logits, targets, None)
    want = expected(
        "colorization_loss_plain",
        lambda: float(reference(REF).colorization_loss(logits, targets, None)),
    )
    expect_close(got_plain, want, rtol=1e-5, atol=1e-6, name="without class weights")
    centres = torch.randn(6, 2, generator=student.rng) * 30  # [Q, 2]
    mean = student.call("annealed_mean_ab", logits, centres, 0.38)
    want = expected(
        "annealed_mean_038", lambda: reference(REF).annealed_mean_ab(logits, centres, 0.38)
    )
    expect_tensor(mean, want, rtol=1e-4, atol=1e-4, name="annealed mean [2, 2, 3, 3] at T = 0.38")
    plain = expected(
        "annealed_mean_1", lambda: reference(REF).annealed_mean_ab(logits, centres, 1.0)
    )
    expect_tensor(
        student.call("annealed_mean_ab", logits, centres, 1.0),
        plain,
        rtol=1e-4,
        atol=1e-4,
        name="T = 1 is the plain mean of the bin centres",
    )


# ---- Part 3: split-brain ---------------------------------------------------------------------------


@pytest.mark.weight(2)
@pytest.mark.functions("split_brain_loss", "soft_encode_ab", "colorization_loss")
def test_split_brain_loss_matches_reference(student):
    lab = torch.stack(
        [
            torch.rand(3, 16, 16, generator=student.rng) * 100,
            torch.rand(3, 16, 16, generator=student.rng) * 100 - 50,
            torch.rand(3, 16, 16, generator=student.rng) * 100 - 50,
        ],
        dim=1,
    )  # [N, 3, H, W]
    centres = torch.stack(
        torch.meshgrid(torch.arange(-50.0, 51, 10), torch.arange(-50.0, 51, 10), indexing="ij"), -1
    ).reshape(-1, 2)
    weights = torch.rand(len(centres), generator=student.rng) + 0.5
    got = student.probe(f"{PROBES}:split_brain", 2, lab, centres, weights)
    want = expected(
        "split_brain_seed2", lambda: probes.split_brain(reference(REF), 2, lab, centres, weights)
    )
    expect_true(got["both_halves_learn"], "the loss must train both halves (L -> ab and ab -> L)")
    for key in ("ab_loss", "l_loss", "loss"):
        expect_close(got[key], want[key], rtol=1e-4, atol=1e-5, name=f"split-brain {key}")


# ---- Part 4: deep clustering ---------------------------------------------------------------------------


@pytest.mark.weight(2)
@pytest.mark.functions("kmeans_plusplus_init")
def test_kmeans_plusplus_is_deterministic_and_picks_data_points(student):
    x = torch.randn(40, 3, generator=student.rng)  # [N, D]
    got = student.probe(f"{PROBES}:kmeans_pp", x, 5, 11)
    expect_tensor(
        got["second"],
        got["first"],
        rtol=0,
        atol=0,
        name="two seedings with generators seeded alike",
    )
    on_data = (
        torch.cdist(got["first"], x, compute_mode="donot_use_mm_for_euclid_dist").min(dim=1).values
        < 1e-6
    ).all()  # exact distances
    expect_true(bool(on_data), "every k-means++ centre must be one of the data points")
    want = expected("kmeanspp_seed11", lambda: probes.kmeans_pp(reference(REF), x, 5, 11)["first"])
    expect_tensor(
        got["first"], want, rtol=0, atol=1e-6, name="centres with the documented order of draws"
    )
    got = student.probe(f"{PROBES}:kmeans_pp", x, 12, 5)
    want = expected("kmeanspp_k12", lambda: probes.kmeans_pp(reference(REF), x, 12, 5)["first"])
    expect_tensor(
        got["first"],
        want,
        rtol=0,
        atol=1e-6,
        name="12 centres, each drawn with probability proportional to D(x)^2",
    )


@pytest.mark.weight(2)
@pytest.mark.functions("kmeans_step")
def test_kmeans_step_reseeds_an_empty_cluster(student):
    x = torch.cat(
        [
            torch.randn(20, 2, generator=student.rng) + 5,
            torch.randn(20, 2, generator=student.rng) - 5,
        ]
    )
    centroids = torch.tensor([[5.0, 5.0], [-5.0, -5.0], [100.0, 100.0]])  # the third gets no point
    got = student.probe(f"{PROBES}:kmeans_step_result", x, centroids, 4)
    sizes = torch.bincount(got["assignments"], minlength=3)
    expect_true(
        bool((sizes > 0).all()), f"after the step no cluster may be empty; sizes {sizes.tolist()}"
    )
    expect_true(
        float(got["centroids"][2].abs().max()) < 50,
        "the empty cluster's centroid must be re-seeded near a non-empty one",
    )
    want = expected(
        "kmeans_step_seed4", lambda: probes.kmeans_step_result(reference(REF), x, centroids, 4)
    )
    expect_tensor(
        got["centroids"], want["centroids"], rtol=1e-5, atol=1e-5, name="centroids after the step"
    )
    expect_tensor(
        got["assignments"], want["assignments"], rtol=0, atol=0, name="assignments after the split"
    )


@pytest.mark.weight(2)
@pytest.mark.functions("kmeans", "kmeans_plusplus_init", "kmeans_step")
def test_kmeans_inertia_matches_scikit_learn_on_blobs(student):
    from sklearn.cluster import KMeans

    centres = torch.randn(6, 5, generator=student.rng) * 10  # well separated
    x = (centres[:, None] + torch.randn(6, 30, 5, generator=student.rng)).reshape(-1, 5)  # [180, 5]
    got = student.probe(f"{PROBES}:kmeans_fit", x, 6, 30, 0)
    sk = KMeans(6, n_init=10, random_state=0).fit(x.double().numpy())
    expect_close(
        got["inertia"], float(sk.inertia_), rtol=0.02, atol=1e-3, name="inertia vs sklearn KMeans"
    )
    counts = np.bincount(got["assignments"].numpy(), minlength=6)
    expect_true(
        sorted(counts.tolist()) == [30] * 6,
        f"each blob must be one cluster; sizes {counts.tolist()}",
    )
    cloud = torch.rand(60, 2, generator=student.rng)  # [N, D] no clusters: many Lloyd steps
    got = student.probe(f"{PROBES}:kmeans_fit", cloud, 5, 30, 1)
    want = expected("kmeans_cloud", lambda: probes.kmeans_fit(reference(REF), cloud, 5, 30, 1))
    expect_close(
        got["inertia"],
        want["inertia"],
        rtol=1e-5,
        atol=1e-6,
        name="inertia of k = 5 on 60 uniform points (k-means++, then Lloyd steps until the "
        "assignments stop changing, at most 30)",
    )


@pytest.mark.weight(2)
@pytest.mark.functions("normalized_mutual_info", "cluster_sample_weights")
def test_nmi_matches_scikit_learn_and_uniform_cluster_weights(student):
    from sklearn.metrics import normalized_mutual_info_score as sk_nmi

    a = torch.randint(0, 4, (60,), generator=student.rng)
    b = torch.randint(0, 6, (60,), generator=student.rng)
    expect_close(
        student.call("normalized_mutual_info", a, b),
        sk_nmi(a.numpy(), b.numpy()),
        rtol=1e-6,
        atol=1e-9,
        name="NMI of two random labellings",
    )
    expect_close(
        student.call("normalized_mutual_info", a, 7 - 2 * a),
        1.0,
        rtol=0,
        atol=1e-9,
        name="NMI of a relabelled copy",
    )
    expect_close(
        student.call("normalized_mutual_info", a, torch.zeros(60, dtype=torch.long)),
        0.0,
        rtol=0,
        atol=1e-9,
        name="NMI against one cluster",
    )
    assign = torch.tensor([0, 0, 0, 2, 2, 4, 4, 4, 4, 4])
    w = student.call("cluster_sample_weights", assign, 6)
    totals = torch.zeros(6).index_add_(0, assign, w.float())
    expect_tensor(
        totals,
        torch.tensor([1 / 3, 0, 1 / 3, 0, 1 / 3, 0]),
        rtol=0,
        atol=1e-6,
        name="each non-empty cluster's total weight is 1 / (number of non-empty clusters)",
    )
