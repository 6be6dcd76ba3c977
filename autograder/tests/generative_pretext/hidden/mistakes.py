"""Known mistakes of Assignment 3, part II, generative pretexts and deep clustering (hidden).

Each entry makes one mistake in the reference (``autograder.mistakes.Mistake``) and says what
is wrong, how to fix it and where the lecture or the paper says so. ``python -m autograder
record generative_pretext`` records what each gives on the public tests.
"""

from autograder.mistakes import Mistake

MISTAKES = [
    # ---- Part 1: inpainting --------------------------------------------------------------------
    Mistake(
        "region_mask",
        "hole-one-too-wide",
        "the hole covers rows top .. top + hole - 1 and the same columns: hole x hole pixels, "
        "not (hole + 1) x (hole + 1).",
        (
            ("(steps[None, :] < tops[:, None] + hole)", "(steps[None, :] <= tops[:, None] + hole)"),
            (
                "(steps[None, :] < lefts[:, None] + hole)",
                "(steps[None, :] <= lefts[:, None] + hole)",
            ),
        ),
    ),
    Mistake(
        "region_mask",
        "one-hole-for-the-batch",
        "draw a hole position for every image (tops [N], then lefts [N]), not one for the whole "
        "batch (docstring).",
        (
            (
                "tops = torch.randint(size - hole + 1, (n,), generator=generator)",
                "tops = torch.randint(size - hole + 1, (1,), generator=generator).expand(n)",
            ),
            (
                "lefts = torch.randint(size - hole + 1, (n,), generator=generator)",
                "lefts = torch.randint(size - hole + 1, (1,), generator=generator).expand(n)",
            ),
        ),
    ),
    Mistake(
        "region_mask",
        "draws-out-of-order",
        "draw the tops first, then the lefts, so that a seeded generator gives the reference's "
        "masks (docstring).",
        (
            (
                "        tops = torch.randint(size - hole + 1, (n,), generator=generator)  # [N]\n"
                "        lefts = torch.randint(size - hole + 1, (n,), generator=generator)  # [N]\n",
                "        lefts = torch.randint(size - hole + 1, (n,), generator=generator)  # [N]\n"
                "        tops = torch.randint(size - hole + 1, (n,), generator=generator)  # [N]\n",
            ),
        ),
    ),
    Mistake(
        "region_mask",
        "global-generator",
        "draw the positions from the generator you are given, so that one seed gives the same "
        "masks (docstring).",
        (
            (
                "tops = torch.randint(size - hole + 1, (n,), generator=generator)",
                "tops = torch.randint(size - hole + 1, (n,))",
            ),
            (
                "lefts = torch.randint(size - hole + 1, (n,), generator=generator)",
                "lefts = torch.randint(size - hole + 1, (n,))",
            ),
        ),
    ),
    Mistake(
        "masked_l2_loss",
        "mean-over-the-image",
        "average the squared error over the masked values only, not over the whole image: the "
        "loss is about the missing region (Pathak et al. 2016, Eq. 1).",
        (("return squared.sum() / weights.sum().clamp_min(1.0)", "return squared.mean()"),),
    ),
    Mistake(
        "masked_l2_loss",
        "pixels-not-values",
        "divide by the number of masked VALUES (masked pixels x channels), not by the number of "
        "masked pixels (docstring).",
        (
            (
                "squared.sum() / weights.sum().clamp_min(1.0)",
                "squared.sum() / mask.sum().clamp_min(1)",
            ),
        ),
    ),
    Mistake(
        "masked_l2_loss",
        "mask-inverted",
        "the loss covers the hole (mask True), where the network must invent the content; the "
        "context outside it is given (Pathak et al. 2016, Eq. 1).",
        (
            (
                "weights = mask.to(prediction.dtype).expand_as(prediction)",
                "weights = (~mask).to(prediction.dtype).expand_as(prediction)",
            ),
        ),
    ),
    Mistake(
        "masked_l2_loss",
        "context-not-zeroed",
        "multiply the squared error by the mask before summing, so that pixels outside the hole "
        "add nothing and get no gradient (Pathak et al. 2016, Eq. 1).",
        (
            (
                "squared = (prediction - target).pow(2) * weights",
                "squared = (prediction - target).pow(2)",
            ),
        ),
    ),
    Mistake(
        "adversarial_losses",
        "fakes-not-detached",
        "detach the fakes in the discriminator's loss: d_loss must not send gradients into the "
        "generator (docstring).",
        (("discriminator(fake.detach())", "discriminator(fake)"),),
    ),
    Mistake(
        "adversarial_losses",
        "d-loss-not-halved",
        "the discriminator's loss is the MEAN of its two binary cross-entropies, real and fake "
        "(docstring).",
        (("    d_loss = 0.5 * (\n", "    d_loss = (\n"),),
    ),
    Mistake(
        "adversarial_losses",
        "saturating-generator-loss",
        "the generator maximises log D(fake): label the fakes 1 in its BCE (the non-saturating "
        "loss of Goodfellow et al. 2014, which Pathak et al. use), not minus their BCE against 0.",
        (
            (
                "g_loss = F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))",
                "g_loss = -F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))",
            ),
        ),
    ),
    Mistake(
        "adversarial_losses",
        "labels-swapped",
        "the discriminator labels real images 1 and fakes 0 (docstring; Pathak et al. 2016, Eq. 2).",
        (
            (
                "F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))",
                "F.binary_cross_entropy_with_logits(real_logits, torch.zeros_like(real_logits))",
            ),
            (
                "F.binary_cross_entropy_with_logits(fake_logits_for_d, torch.zeros_like(fake_logits_for_d))",
                "F.binary_cross_entropy_with_logits(fake_logits_for_d, torch.ones_like(fake_logits_for_d))",
            ),
        ),
    ),
    # ---- Part 2: colorization ------------------------------------------------------------------
    Mistake(
        "rgb_to_lab",
        "no-gamma",
        "undo the sRGB gamma before the matrix: c / 12.92 up to 0.04045, ((c + 0.055) / 1.055)^2.4 "
        "above (the sRGB standard; the XYZ matrix is for linear light).",
        (
            (
                "linear = torch.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055).pow(2.4))",
                "linear = c",
            ),
        ),
    ),
    Mistake(
        "rgb_to_lab",
        "no-white-point",
        "divide X, Y, Z by the D65 white point before f: Lab is relative to the reference white.",
        (("t = xyz / D65_WHITE.to(c.device).view(1, 3, 1, 1)", "t = xyz"),),
    ),
    Mistake(
        "rgb_to_lab",
        "no-linear-segment",
        "below t = 0.008856 use the linear segment f(t) = 7.787 t + 16 / 116, not the cube root "
        "(CIE Lab: dark colours).",
        (
            (
                "t.clamp_min(0).pow(1.0 / 3.0), 7.787 * t + 16.0 / 116.0",
                "t.clamp_min(0).pow(1.0 / 3.0), t.clamp_min(0).pow(1.0 / 3.0)",
            ),
        ),
    ),
    Mistake(
        "rgb_to_lab",
        "a-b-swapped",
        "a = 500 (f(X) - f(Y)) and b = 200 (f(Y) - f(Z)), in this order after L.",
        (
            (
                "[116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)]",
                "[116.0 * fy - 16.0, 200.0 * (fy - fz), 500.0 * (fx - fy)]",
            ),
        ),
    ),
    Mistake(
        "lab_to_rgb",
        "no-gamma",
        "apply the sRGB gamma after the matrix: 12.92 v up to 0.0031308, 1.055 v^(1/2.4) - 0.055 "
        "above (the sRGB standard).",
        (
            (
                "srgb = torch.where(linear <= 0.0031308, 12.92 * linear,",
                "srgb = torch.where(linear <= 0.0031308, linear,",
            ),
            ("1.055 * linear.clamp_min(0.0031308).pow(1.0 / 2.4) - 0.055)", "linear)"),
        ),
    ),
    Mistake(
        "lab_to_rgb",
        "not-clipped",
        "clip the result to [0, 1]: many Lab colours lie outside the sRGB gamut (scikit-image "
        "clips them too).",
        (("return srgb.clamp(0.0, 1.0).to(lab.dtype)", "return srgb.to(lab.dtype)"),),
    ),
    Mistake(
        "lab_to_rgb",
        "no-linear-segment",
        "invert f with its linear segment below f = 0.2068966: t = (f - 16/116) / 7.787, not f^3 "
        "(CIE Lab: dark colours).",
        (("torch.where(f > 0.2068966, f.pow(3), (f - 16.0 / 116.0) / 7.787)", "f.pow(3)"),),
    ),
    Mistake(
        "soft_encode_ab",
        "hard-encoding",
        "spread each pixel over its 5 nearest bins with Gaussian weights (sigma 5), not all on "
        "the nearest one (Zhang et al. 2016, Sec. 2.1: soft-encoding).",
        (
            (
                "weights = torch.exp(-near_dist.pow(2) / (2 * sigma**2))",
                "weights = (near_dist == near_dist[:, :1]).float()",
            ),
        ),
    ),
    Mistake(
        "soft_encode_ab",
        "not-normalised",
        "normalise each pixel's weights to sum to 1: the soft target is a distribution over the "
        "bins (Zhang et al. 2016, Sec. 2.1).",
        (("    weights = weights / weights.sum(dim=1, keepdim=True)  # [P, k]\n", ""),),
    ),
    Mistake(
        "soft_encode_ab",
        "sigma-not-doubled",
        "the Gaussian kernel is exp(-d^2 / (2 sigma^2)), with the 2 (Zhang et al. 2016: a "
        "Gaussian kernel with sigma = 5).",
        (
            (
                "torch.exp(-near_dist.pow(2) / (2 * sigma**2))",
                "torch.exp(-near_dist.pow(2) / sigma**2)",
            ),
        ),
    ),
    Mistake(
        "soft_encode_ab",
        "distance-not-squared",
        "the Gaussian kernel uses the SQUARED distance, exp(-d^2 / (2 sigma^2)).",
        (
            (
                "torch.exp(-near_dist.pow(2) / (2 * sigma**2))",
                "torch.exp(-near_dist / (2 * sigma**2))",
            ),
        ),
    ),
    Mistake(
        "rebalancing_weights",
        "not-normalised",
        "normalise the weights so that E_p[w] = sum_q p_q w_q = 1 (Zhang et al. 2016, Eq. 4).",
        (("return weights / (prior * weights).sum()", "return weights"),),
    ),
    Mistake(
        "rebalancing_weights",
        "not-inverted",
        "the weights are the INVERSE of the smoothed prior, so that rare colours weigh more "
        "(Zhang et al. 2016, Eq. 4: w proportional to ((1 - lambda) p~ + lambda / Q)^-1).",
        (("weights[seen] = 1.0 / mixed[seen]", "weights[seen] = mixed[seen]"),),
    ),
    Mistake(
        "rebalancing_weights",
        "lambda-swapped",
        "lambda weighs the uniform part: (1 - lambda) p~ + lambda / Q, so that lambda = 0 keeps "
        "the prior alone (Zhang et al. 2016, Eq. 4).",
        (
            (
                "mixed = (1.0 - lam) * prior + lam / prior.numel()",
                "mixed = lam * prior + (1.0 - lam) / prior.numel()",
            ),
        ),
    ),
    Mistake(
        "rebalancing_weights",
        "empty-bin-divides-by-zero",
        "with lam = 0 a bin no training pixel falls in has p~ = 0: 1 / 0 makes every weight NaN "
        "through E_p[w]; give such a bin weight 0 (docstring).",
        (
            (
                "    weights = torch.zeros_like(mixed)  # [Q]; an empty bin at lam = 0 keeps weight 0\n"
                "    seen = mixed > 0  # [Q]\n"
                "    weights[seen] = 1.0 / mixed[seen]\n",
                "    weights = 1.0 / mixed  # [Q]\n",
            ),
        ),
    ),
    Mistake(
        "colorization_loss",
        "logits-not-log-probabilities",
        "take log_softmax of the logits over the bins (dim=1): the cross-entropy is "
        "-sum_q Z_q log Z^_q with Z^ = softmax(logits) (Zhang et al. 2016, Eq. 2).",
        (
            (
                "-(targets * F.log_softmax(logits, dim=1)).sum(dim=1)",
                "-(targets * logits).sum(dim=1)",
            ),
        ),
    ),
    Mistake(
        "colorization_loss",
        "weight-of-predicted-bin",
        "weight each pixel by its most likely TRUE bin, the argmax of the targets, not of the "
        "prediction (Zhang et al. 2016, Eq. 2: v(Z_h,w)).",
        (("[targets.argmax(dim=1)]", "[logits.argmax(dim=1)]"),),
    ),
    Mistake(
        "colorization_loss",
        "summed",
        "average over all pixels (divide by N * H * W), not sum (docstring).",
        (("    return per_pixel.mean()\n", "    return per_pixel.sum()\n"),),
    ),
    Mistake(
        "colorization_loss",
        "softmax-over-pixels",
        "the softmax runs over the Q colour bins (dim=1), one distribution per pixel.",
        (("F.log_softmax(logits, dim=1)", "F.log_softmax(logits, dim=0)"),),
    ),
    Mistake(
        "annealed_mean_ab",
        "temperature-multiplied",
        "divide the log-probabilities by the temperature T (< 1 sharpens): softmax(log p / T) "
        "(Zhang et al. 2016, Eq. 5).",
        (
            (
                "F.log_softmax(logits, dim=1) / temperature",
                "F.log_softmax(logits, dim=1) * temperature",
            ),
        ),
    ),
    Mistake(
        "annealed_mean_ab",
        "mode-not-mean",
        "take the MEAN of the bin centres under the sharpened distribution, not the most likely "
        "centre: the annealed mean interpolates between mean and mode (Zhang et al. 2016, Eq. 5).",
        (
            (
                'return torch.einsum("nqhw,qc->nchw", sharpened, centres.to(logits))',
                'return torch.einsum("nqhw,qc->nchw", F.one_hot(sharpened.argmax(dim=1), sharpened.shape[1]).permute(0, 3, 1, 2).to(logits), centres.to(logits))',
            ),
        ),
    ),
    Mistake(
        "annealed_mean_ab",
        "not-renormalised",
        "renormalise after sharpening (a softmax of log p / T): exp(log p / T) alone does not sum "
        "to 1 (Zhang et al. 2016, Eq. 5).",
        (
            (
                "F.softmax(F.log_softmax(logits, dim=1) / temperature, dim=1)",
                "torch.exp(F.log_softmax(logits, dim=1) / temperature)",
            ),
        ),
    ),
    # ---- Part 3: split-brain -------------------------------------------------------------------
    Mistake(
        "split_brain_loss",
        "one-half",
        "the loss adds both halves: L -> ab AND ab -> L, each predicting the channels it does "
        "not see (Zhang et al. 2017).",
        (('return {"loss": ab_loss + l_loss,', 'return {"loss": ab_loss,'),),
    ),
    Mistake(
        "split_brain_loss",
        "class-weights-dropped",
        "pass class_weights to the ab half's colorization_loss, as Part 2's rebalancing does.",
        (
            (
                "colorization_loss(ab_logits, ab_targets, class_weights)",
                "colorization_loss(ab_logits, ab_targets)",
            ),
        ),
    ),
    Mistake(
        "split_brain_loss",
        "lightness-rounded",
        "bin the lightness with floor(L / bin size), as the docstring says, not by rounding.",
        (
            (
                'torch.div(small[:, 0], L_BIN_SIZE, rounding_mode="floor").long()',
                "torch.round(small[:, 0] / L_BIN_SIZE).long()",
            ),
        ),
    ),
    # ---- Part 4: deep clustering ---------------------------------------------------------------
    Mistake(
        "kmeans_plusplus_init",
        "uniform-picks",
        "draw each next centre with probability proportional to D(x)^2, the squared distance to "
        "the nearest centre chosen so far (Arthur & Vassilvitskii 2007), not uniformly.",
        (("            probs = nearest\n", "            probs = torch.ones_like(nearest)\n"),),
    ),
    Mistake(
        "kmeans_plusplus_init",
        "distance-not-squared",
        "the probabilities are proportional to the SQUARED distance D(x)^2 (Arthur & "
        "Vassilvitskii 2007).",
        (("            probs = nearest\n", "            probs = nearest.sqrt()\n"),),
    ),
    Mistake(
        "kmeans_plusplus_init",
        "farthest-point",
        "SAMPLE the next centre in proportion to D(x)^2 (torch.multinomial with the generator); "
        "always taking the farthest point chases outliers (Arthur & Vassilvitskii 2007).",
        (
            (
                "index = int(torch.multinomial(probs.cpu(), 1, generator=generator))",
                "index = int(probs.argmax())",
            ),
        ),
    ),
    Mistake(
        "kmeans_plusplus_init",
        "distance-to-last-only",
        "D(x) is the distance to the NEAREST centre chosen so far: keep the minimum over all of "
        "them, not the distance to the last one.",
        (
            (
                "nearest = torch.minimum(nearest, (x - x[index]).pow(2).sum(dim=1))",
                "nearest = (x - x[index]).pow(2).sum(dim=1)",
            ),
        ),
    ),
    Mistake(
        "kmeans_step",
        "empty-cluster-kept",
        "re-seed an empty cluster by splitting a non-empty one (DeepCluster, Caron et al. 2018, "
        "Sec. 3.3, 'Empty clusters'): an empty cluster stays empty for ever otherwise.",
        (("        if sizes[j] > 0:\n            continue\n", "        continue\n"),),
    ),
    Mistake(
        "kmeans_step",
        "largest-cluster-split",
        "choose the cluster to split at random, in proportion to its size (torch.multinomial, "
        "docstring step 3), not always the largest.",
        (
            (
                "i = int(torch.multinomial(splittable.cpu(), 1, generator=generator))",
                "i = int(splittable.argmax())",
            ),
        ),
    ),
    Mistake(
        "kmeans_step",
        "centroids-not-moved",
        "move every non-empty centroid to the mean of its points (docstring step 2, Lloyd's "
        "update).",
        (
            (
                "new = torch.where(sizes[:, None] > 0, sums / sizes.clamp_min(1)[:, None], centroids)",
                "new = centroids.clone()",
            ),
        ),
    ),
    Mistake(
        "kmeans",
        "one-iteration",
        "repeat the step up to iters times, until the assignments stop changing; one Lloyd step "
        "from the seeding is not converged.",
        (("    for _ in range(iters):\n", "    for _ in range(1):\n"),),
    ),
    Mistake(
        "kmeans",
        "random-seeding",
        "seed the centroids with kmeans_plusplus_init: k random data points can put two centres "
        "in one blob and none in another (Arthur & Vassilvitskii 2007).",
        (
            (
                "centroids = kmeans_plusplus_init(x, k, generator)",
                "centroids = x[torch.randperm(x.shape[0], generator=generator)[:k]].clone()",
            ),
            ("    for _ in range(iters):\n", "    for _ in range(2):\n"),
        ),
    ),
    Mistake(
        "normalized_mutual_info",
        "not-normalised",
        "divide the mutual information by (H(A) + H(B)) / 2 (docstring; scikit-learn's "
        "default), so that NMI lies in [0, 1].",
        (("return mi / (0.5 * (ha + hb))", "return mi"),),
    ),
    Mistake(
        "normalized_mutual_info",
        "geometric-mean",
        "the course uses the arithmetic mean (H(A) + H(B)) / 2, scikit-learn's default, not the "
        "paper's sqrt(H(A) H(B)) (docstring).",
        (("return mi / (0.5 * (ha + hb))", "return mi / (ha * hb) ** 0.5"),),
    ),
    Mistake(
        "normalized_mutual_info",
        "log-base-2",
        "use natural logarithms throughout (docstring); NMI does not change, but a log2 in only "
        "one of the terms does.",
        (
            (
                "mi = float((joint[nz] * (joint[nz] / (pa[:, None] * pb[None, :])[nz]).log()).sum())",
                "mi = float((joint[nz] * (joint[nz] / (pa[:, None] * pb[None, :])[nz]).log2()).sum())",
            ),
        ),
    ),
    Mistake(
        "cluster_sample_weights",
        "not-scaled",
        "scale the weights so that every non-empty cluster totals 1 / (number of non-empty "
        "clusters): 1 / (K' * |cluster|) (docstring).",
        (
            (
                "(1.0 / (non_empty * sizes[assignments])).float()",
                "(1.0 / sizes[assignments]).float()",
            ),
        ),
    ),
    Mistake(
        "cluster_sample_weights",
        "uniform",
        "weight each sample by the inverse of its cluster's size, so that every cluster counts "
        "alike (DeepCluster, Caron et al. 2018, Sec. 3.3: 'sample images based on a uniform "
        "distribution over the classes').",
        (
            (
                "(1.0 / (non_empty * sizes[assignments])).float()",
                "torch.full_like(sizes[assignments], 1.0 / len(assignments)).float()",
            ),
        ),
    ),
    Mistake(
        "cluster_sample_weights",
        "all-clusters-counted",
        "divide by the number of NON-EMPTY clusters: an empty cluster draws no samples.",
        (
            (
                "(1.0 / (non_empty * sizes[assignments])).float()",
                "(1.0 / (k * sizes[assignments])).float()",
            ),
        ),
    ),
]
