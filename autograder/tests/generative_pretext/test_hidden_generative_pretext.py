"""Hidden tests of Assignment 3, part II, generative pretexts and deep clustering (grader only)."""

import pytest
import torch

from autograder.api import expect_close, expect_tensor, expect_true, reference
from autograder.probes import generative_pretext as probes

REF = "generative_pretext"
PROBES = "autograder.probes.generative_pretext"


@pytest.mark.weight(1)
@pytest.mark.visibility("hidden")
@pytest.mark.functions("rgb_to_lab", "lab_to_rgb")
def test_lab_parity_with_scikit_image_on_fresh_colours(student):
    from skimage.color import rgb2lab

    rgb = torch.rand(3, 3, 6, 5, generator=student.rng, dtype=torch.float64)  # [N, 3, H, W]
    lab = student.call("rgb_to_lab", rgb)
    want = torch.from_numpy(rgb2lab(rgb.permute(0, 2, 3, 1).numpy())).permute(0, 3, 1, 2)
    expect_tensor(lab, want, rtol=0, atol=1e-4, name="rgb_to_lab vs skimage.color.rgb2lab")
    expect_tensor(
        student.call("lab_to_rgb", want), rgb, rtol=0, atol=1e-4, name="lab_to_rgb(skimage Lab)"
    )


@pytest.mark.weight(1)
@pytest.mark.visibility("hidden")
@pytest.mark.functions("normalized_mutual_info")
def test_nmi_on_fresh_labellings(student):
    from sklearn.metrics import normalized_mutual_info_score as sk_nmi

    k = int(torch.randint(2, 12, (1,), generator=student.rng))
    a = torch.randint(0, 10, (200,), generator=student.rng)
    b = (a + torch.randint(0, k, (200,), generator=student.rng)) % 13
    expect_close(
        student.call("normalized_mutual_info", a, b),
        sk_nmi(a.numpy(), b.numpy()),
        rtol=1e-6,
        atol=1e-9,
        name="NMI vs scikit-learn",
    )


@pytest.mark.weight(1)
@pytest.mark.visibility("hidden")
@pytest.mark.functions("masked_l2_loss", "region_mask")
def test_masked_l2_and_random_masks_match_reference(student):
    seed = int(torch.randint(0, 10_000, (1,), generator=student.rng))
    got = student.probe(f"{PROBES}:region_masks", 5, 12, 5, seed)
    want = probes.region_masks(reference(REF), 5, 12, 5, seed)
    expect_tensor(got["random"], want["random"], rtol=0, atol=0, name="random masks")
    pred, target = (
        torch.rand(5, 3, 12, 12, generator=student.rng),
        torch.rand(5, 3, 12, 12, generator=student.rng),
    )
    got_loss = student.probe(f"{PROBES}:masked_l2", pred, target, want["random"])
    want_loss = probes.masked_l2(reference(REF), pred, target, want["random"])
    expect_close(got_loss["loss"], want_loss["loss"], rtol=1e-5, atol=1e-7, name="masked L2")
    expect_tensor(got_loss["grad"], want_loss["grad"], rtol=1e-4, atol=1e-7, name="gradient")


@pytest.mark.weight(1)
@pytest.mark.visibility("hidden")
@pytest.mark.functions("soft_encode_ab", "colorization_loss")
def test_soft_encoding_and_loss_on_the_gamut_bins(student):
    ref = reference(REF)
    centres = ref.ab_gamut_bins()  # [Q, 2]
    rgb = torch.rand(2, 3, 4, 4, generator=student.rng)
    ab = ref.rgb_to_lab(rgb)[:, 1:]  # [N, 2, H, W]
    soft = student.call("soft_encode_ab", ab, centres)
    expect_tensor(
        soft,
        ref.soft_encode_ab(ab, centres),
        rtol=1e-4,
        atol=1e-6,
        name="soft targets over the gamut bins",
    )
    logits = torch.randn(2, len(centres), 4, 4, generator=student.rng)
    weights = torch.rand(len(centres), generator=student.rng) + 0.5
    expect_close(
        float(student.call("colorization_loss", logits, soft, weights)),
        float(ref.colorization_loss(logits, soft, weights)),
        rtol=1e-5,
        atol=1e-6,
        name="rebalanced colorization loss",
    )


@pytest.mark.weight(1)
@pytest.mark.visibility("hidden")
@pytest.mark.functions("kmeans_step")
def test_kmeans_step_with_two_empty_clusters(student):
    x = torch.randn(30, 4, generator=student.rng) * 3  # [N, D]
    centroids = torch.cat([x[:3], torch.full((2, 4), 500.0)])  # clusters 3 and 4 empty
    seed = int(torch.randint(0, 10_000, (1,), generator=student.rng))
    got = student.probe(f"{PROBES}:kmeans_step_result", x, centroids, seed)
    want = probes.kmeans_step_result(reference(REF), x, centroids, seed)
    expect_true(
        bool((torch.bincount(got["assignments"], minlength=5) > 0).all()),
        "no cluster may stay empty",
    )
    expect_tensor(got["centroids"], want["centroids"], rtol=1e-5, atol=1e-5, name="centroids")
    expect_tensor(got["assignments"], want["assignments"], rtol=0, atol=0, name="assignments")


@pytest.mark.weight(1)
@pytest.mark.visibility("hidden")
@pytest.mark.functions("adversarial_losses")
def test_adversarial_losses_on_fresh_images(student):
    real, fake = (torch.rand(5, 3, 4, 4, generator=student.rng) for _ in range(2))
    seed = int(torch.randint(0, 1000, (1,), generator=student.rng))
    got = student.probe(f"{PROBES}:adversarial", seed, real, fake)
    want = probes.adversarial(reference(REF), seed, real, fake)
    expect_close(got["d_loss"], want["d_loss"], rtol=1e-5, atol=1e-6, name="d_loss")
    expect_close(got["g_loss"], want["g_loss"], rtol=1e-5, atol=1e-6, name="g_loss")
    expect_true(not got["d_reaches_fake"], "d_loss must not reach the generator")


@pytest.mark.weight(1)
@pytest.mark.visibility("hidden")
@pytest.mark.functions("rebalancing_weights", "annealed_mean_ab", "lab_to_rgb")
def test_rebalancing_annealing_and_gamut_clipping(student):
    ref = reference(REF)
    prior = torch.rand(30, generator=student.rng) ** 2
    prior[:3] = 0.0  # bins no pixel falls in
    prior = prior / prior.sum()
    for lam in (0.0, 0.3):
        got = student.call("rebalancing_weights", prior, lam)
        want = ref.rebalancing_weights(prior, lam)
        expect_tensor(got, want, rtol=1e-4, atol=1e-6, name=f"rebalancing weights, lam={lam}")
    logits = torch.randn(2, 5, 2, 2, generator=student.rng) * 2  # [N, Q, H, W]
    centres = torch.randn(5, 2, generator=student.rng) * 20  # [Q, 2]
    got = student.call("annealed_mean_ab", logits, centres, 0.25)
    expect_tensor(
        got,
        ref.annealed_mean_ab(logits, centres, 0.25),
        rtol=1e-4,
        atol=1e-4,
        name="annealed mean at T = 0.25",
    )
    vivid = torch.tensor([[50.0, 90.0, -90.0], [90.0, -80.0, 80.0]]).T.reshape(1, 3, 1, 2)
    got = student.call("lab_to_rgb", vivid.double())
    expect_tensor(
        got,
        ref.lab_to_rgb(vivid.double()),
        rtol=0,
        atol=1e-6,
        name="out-of-gamut Lab colours, clipped to [0, 1]",
    )


@pytest.mark.weight(1)
@pytest.mark.visibility("hidden")
@pytest.mark.functions("split_brain_loss")
def test_split_brain_loss_on_fresh_images(student):
    lab = torch.stack(
        [
            torch.rand(2, 16, 16, generator=student.rng) * 100,
            torch.rand(2, 16, 16, generator=student.rng) * 100 - 50,
            torch.rand(2, 16, 16, generator=student.rng) * 100 - 50,
        ],
        dim=1,
    )
    centres = torch.randn(40, 2, generator=student.rng) * 30
    weights = torch.rand(40, generator=student.rng) + 0.5
    seed = int(torch.randint(0, 1000, (1,), generator=student.rng))
    got = student.probe(f"{PROBES}:split_brain", seed, lab, centres, weights)
    want = probes.split_brain(reference(REF), seed, lab, centres, weights)
    for key in ("ab_loss", "l_loss", "loss"):
        expect_close(got[key], want[key], rtol=1e-4, atol=1e-5, name=f"split-brain {key}")


@pytest.mark.weight(1)
@pytest.mark.visibility("hidden")
@pytest.mark.functions("kmeans", "kmeans_plusplus_init", "cluster_sample_weights")
def test_kmeans_seeding_fit_and_sample_weights_on_fresh_points(student):
    x = torch.rand(50, 3, generator=student.rng)  # [N, D]
    seed = int(torch.randint(0, 1000, (1,), generator=student.rng))
    got = student.probe(f"{PROBES}:kmeans_pp", x, 10, seed)
    want = probes.kmeans_pp(reference(REF), x, 10, seed)
    expect_tensor(got["first"], want["first"], rtol=0, atol=1e-6, name="k-means++ centres")
    got = student.probe(f"{PROBES}:kmeans_fit", x, 4, 25, seed)
    want = probes.kmeans_fit(reference(REF), x, 4, 25, seed)
    expect_close(got["inertia"], want["inertia"], rtol=1e-5, atol=1e-6, name="k-means inertia")
    assign = torch.randint(0, 7, (40,), generator=student.rng)
    assign[assign == 3] = 2  # one cluster left empty
    got = student.call("cluster_sample_weights", assign, 7)
    want = reference(REF).cluster_sample_weights(assign, 7)
    expect_tensor(got, want, rtol=1e-5, atol=1e-7, name="per-sample weights")
