# Generated from solutions/generative_pretext.py by `python -m instructor.release starter`.
# Course authors: edit solutions/generative_pretext.py, never this file. Students: keep the names
# and signatures as they are, and replace each `raise NotImplementedError(...)` with your code.
"""Assignment 3, part II: generative pretext tasks and deep clustering.

Part I asked the network to *classify* something about an image. The lecture's other family of
pretext tasks asks it to *generate* a missing part of the image, and a last idea lets the
network make up its own labels:

1. **Inpainting** (Pathak et al., "Context Encoders: Feature Learning by Inpainting", CVPR 2016):
   cut out a region (:func:`region_mask`), let an encoder-decoder fill it in
   (:class:`PixelPredictor`), score it with the L2 loss on the missing pixels only
   (:func:`masked_l2_loss`), then add a discriminator's adversarial loss
   (:func:`adversarial_losses`). The lecture's contrast: L2 is best for features, L2 +
   adversarial for pictures.
2. **Colorization** (Zhang, Isola, Efros, "Colorful Image Colorization", ECCV 2016): convert
   sRGB to CIE Lab exactly (:func:`rgb_to_lab`, :func:`lab_to_rgb`), predict the ab colour
   channels from the lightness L, as regression or as classification over quantised ab bins
   (:func:`soft_encode_ab`) with class rebalancing (:func:`rebalancing_weights`,
   :func:`colorization_loss`), and decode the predicted distribution into a colour
   (:func:`annealed_mean_ab`).
3. **Split-brain autoencoder** (Zhang, Isola, Efros, CVPR 2017): two half-width networks, one
   predicting ab from L and one L from ab; their features are concatenated
   (:func:`split_brain_loss`).
4. **Deep clustering** (Caron, Bojanowski, Joulin, Douze, "Deep Clustering for Unsupervised
   Learning of Visual Features", ECCV 2018): k-means on the network's own features
   (:func:`kmeans_plusplus_init`, :func:`kmeans_step`, :func:`kmeans`), the clusters as
   pseudo-labels, sampled uniformly over clusters (:func:`cluster_sample_weights`), and the
   normalised mutual information (:func:`normalized_mutual_info`) to watch it work.

Below the student parts (marked "Given") are the networks, the experiment settings per preset,
the training drivers (every method trains the same ``SmallCNN`` under ``replearn.train.train``)
and the evaluation of Part I (kNN and a linear probe on pooled block outputs of whole images).

Shapes follow the package legend: ``N`` images, ``C, H, W`` channels and size, ``D`` feature
width, ``Q`` number of ab colour bins, ``K`` number of clusters, ``P`` number of pixels.
The parts you write sit between ``BEGIN SOLUTION`` and ``END SOLUTION``; everything else is
given.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from replearn import augment
from replearn.backbones import SmallCNN
from replearn.data import to_float
from replearn.evaluate import extract_features, knn_accuracy, linear_probe
from replearn.train import BudgetClock, BudgetCosine, History, TensorLoader, TrainConfig, train

BANNED_APIS = {
    "masked_l2_loss": ["torch.nn.functional.mse_loss", "torch.nn.MSELoss"],
    "normalized_mutual_info": ["sklearn.metrics.normalized_mutual_info_score"],
    "kmeans_plusplus_init": ["sklearn.cluster.kmeans_plusplus", "sklearn.cluster.KMeans"],
    "kmeans_step": ["sklearn.cluster.KMeans"],
    "kmeans": ["sklearn.cluster.KMeans"],
    "rgb_to_lab": ["skimage.color.rgb2lab", "kornia.color.rgb_to_lab"],
    "lab_to_rgb": ["skimage.color.lab2rgb", "kornia.color.lab_to_rgb"],
}


def hello() -> str:
    """Import check: the notebook calls this first to show which file it loaded."""
    return "generative_pretext: ready"


# ==============================================================================================
# Part 1. Inpainting: context encoders
# ==============================================================================================


def region_mask(
    n: int,
    size: int,
    hole: int,
    mode: str = "center",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Which pixels are cut out: a ``hole x hole`` square per image, True where missing.

    Pathak et al. (2016), Sec. 3.3: "The simplest such shape is the central square patch in the
    image"; they also drop "a number of smaller possibly overlapping square patches" at random
    positions, because with a fixed central hole "the learned low level image features latch
    onto the boundary of the central mask". Here ``"center"`` is the central square and
    ``"random"`` one square of the same size at a random position per image.

    Random draws for ``"random"``, from ``generator`` and in this order: the tops
    ``torch.randint(size - hole + 1, (n,))``, then the lefts the same way.
    ``"center"`` puts the square's upper-left corner at ``(size - hole) // 2``.

    Returns:
        bool ``[N, 1, H, W]`` with ``H = W = size``: True on the missing region.

    Raises:
        ValueError: unknown mode, or a hole that does not fit (``1 <= hole <= size``).
    """
    raise NotImplementedError("Implement region_mask: see its docstring")


def apply_mask(images: torch.Tensor, mask: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """The context the encoder sees: ``images`` with the masked pixels replaced by ``fill``.

    Pathak et al. fill the hole with the mean pixel value of the data. ``fill`` is ``[C]`` (one
    value per channel); ``mask`` is bool ``[N, 1, H, W]``. Returns ``[N, C, H, W]``.
    """
    fill = fill.to(images).view(1, -1, 1, 1)  # [1, C, 1, 1]
    return torch.where(mask.to(images.device), fill, images)  # [N, C, H, W]


def masked_l2_loss(
    prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """The reconstruction loss of a context encoder: squared error on the missing pixels only.

    Pathak et al. (2016), Eq. 1: ``L_rec(x) = || M * (x - F((1 - M) * x)) ||_2^2`` with ``M`` the
    binary mask of the dropped region. We average it: the sum of squared errors over every
    masked pixel and channel, divided by (number of masked pixels x ``C``), so the value does
    not depend on the hole's size. Pixels outside the hole contribute nothing (not even their
    gradient).

    Args:
        prediction, target: ``[N, C, H, W]``. mask: bool ``[N, 1, H, W]`` (True = missing).

    Returns:
        A scalar tensor; 0 when nothing is masked.
    """
    raise NotImplementedError("Implement masked_l2_loss: see its docstring")


def adversarial_losses(
    discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor
) -> dict[str, torch.Tensor]:
    """The GAN losses of a context encoder: the discriminator's and the generator's.

    Pathak et al. (2016), Eq. 2: ``L_adv = max_D E[log D(x) + log(1 - D(F((1 - M) * x)))]``;
    like them (and Goodfellow et al.) the generator maximises ``log D(fake)`` instead of
    minimising ``log(1 - D(fake))``. ``discriminator`` maps images ``[N, C, H, W]`` to one
    logit per image ``[N]``. Use the binary cross-entropy on logits:

    * ``"d_loss"``: real images labelled 1, fakes labelled 0, the mean of the two BCEs, with the
      fakes **detached** (this loss must not reach the generator);
    * ``"g_loss"``: the fakes labelled 1 (gradients flow into the generator through ``fake``).

    Returns:
        ``{"d_loss": scalar, "g_loss": scalar}``.
    """
    raise NotImplementedError("Implement adversarial_losses: see its docstring")


# ==============================================================================================
# Part 2. Colorization: CIE Lab, ab bins, class rebalancing
# ==============================================================================================

# sRGB (IEC 61966-2-1) linear RGB -> CIE XYZ, and the D65 white point (2 degree observer): the
# constants of scikit-image's rgb2lab, our parity reference.
XYZ_FROM_RGB = torch.tensor(
    [
        [0.412453, 0.357580, 0.180423],
        [0.212671, 0.715160, 0.072169],
        [0.019334, 0.119193, 0.950227],
    ],
    dtype=torch.float64,
)  # [3, 3]
D65_WHITE = torch.tensor([0.95047, 1.0, 1.08883], dtype=torch.float64)  # [3]


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB in [0, 1] -> CIE L*a*b* (D65): ``[N, 3, H, W]`` -> ``[N, 3, H, W]``.

    The exact chain (computed in float64, returned in the input's dtype):

    1. undo the sRGB gamma: ``c / 12.92`` where ``c <= 0.04045``, else
       ``((c + 0.055) / 1.055) ** 2.4``;
    2. linear RGB -> XYZ with :data:`XYZ_FROM_RGB`, then divide by the white :data:`D65_WHITE`;
    3. ``f(t) = t ** (1/3)`` where ``t > 0.008856``, else ``7.787 t + 16 / 116``;
    4. ``L = 116 f(Y) - 16``, ``a = 500 (f(X) - f(Y))``, ``b = 200 (f(Y) - f(Z))``.

    L lies in [0, 100]; a and b roughly in [-86, 98] and [-108, 95] for sRGB colours.
    """
    raise NotImplementedError("Implement rgb_to_lab: see its docstring")


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """CIE L*a*b* (D65) -> sRGB in [0, 1], the inverse of :func:`rgb_to_lab`.

    1. ``f(Y) = (L + 16) / 116``, ``f(X) = a / 500 + f(Y)``, ``f(Z) = f(Y) - b / 200``, with
       ``f(Z)`` clipped at 0 from below (as scikit-image does);
    2. ``t = f ** 3`` where ``f > 0.2068966``, else ``(f - 16 / 116) / 7.787``; times the white;
    3. XYZ -> linear RGB with the inverse of :data:`XYZ_FROM_RGB`;
    4. the sRGB gamma: ``12.92 c`` where ``c <= 0.0031308``, else ``1.055 c ** (1 / 2.4) -
       0.055``; finally clip to [0, 1] (Lab colours outside the sRGB gamut land on its edge).
    """
    raise NotImplementedError("Implement lab_to_rgb: see its docstring")


AB_BIN_SIZE = 10.0  # Zhang et al. (2016), Sec. 2.1: "we quantize the ab output space into bins
# with grid size 10 and keep the Q = 313 values which are in-gamut".


def ab_gamut_bins(bin_size: float = AB_BIN_SIZE, steps: int = 64) -> torch.Tensor:
    """Centres of the ab grid cells that some sRGB colour falls into: ``[Q, 2]`` (Given).

    Computed from the sRGB gamut itself, not from training data: every colour of a
    ``steps^3`` grid of the RGB cube is converted to Lab and its (a, b) rounded to the nearest
    multiple of ``bin_size``; the distinct results are the bin centres. Zhang et al. keep 313
    in-gamut bins for ImageNet's colours; this sRGB-gamut grid gives ``len(ab_gamut_bins())``
    bins: 261 with the defaults (a different count from 313: their bins come from the colours
    of ImageNet photographs, ours from every sRGB colour, rounded to the nearest centre).
    """
    levels = torch.linspace(0, 1, steps, dtype=torch.float64)  # [S]
    cube = torch.stack(torch.meshgrid(levels, levels, levels, indexing="ij")).reshape(1, 3, -1, 1)
    ab = rgb_to_lab(cube)[0, 1:, :, 0].T  # [S^3, 2]
    centres = torch.unique(torch.round(ab / bin_size), dim=0) * bin_size  # [Q, 2]
    return centres.float()


def soft_encode_ab(
    ab: torch.Tensor, centres: torch.Tensor, neighbours: int = 5, sigma: float = 5.0
) -> torch.Tensor:
    """Soft targets over the ab bins for every pixel: ``[N, 2, H, W]`` -> ``[N, Q, H, W]``.

    Zhang et al. (2016), Sec. 2.1: "we find the 5-nearest neighbors to Y_{h,w} in the output
    space and weight them proportionally to their distance from the ground truth using a
    Gaussian kernel with sigma = 5". For each pixel: the Euclidean distances ``d`` from its
    (a, b) to every centre; the ``neighbours`` nearest get weights ``exp(-d^2 / (2 sigma^2))``,
    normalised to sum to 1; all other bins get 0.

    Args:
        ab: ``[N, 2, H, W]`` (a, b) values. centres: ``[Q, 2]`` bin centres.

    Returns:
        ``[N, Q, H, W]``, non-negative, summing to 1 over ``Q`` at every pixel.
    """
    raise NotImplementedError("Implement soft_encode_ab: see its docstring")


def rebalancing_weights(prior: torch.Tensor, lam: float = 0.5) -> torch.Tensor:
    """Per-bin loss weights that boost rare colours: ``[Q]`` -> ``[Q]``.

    Zhang et al. (2016), Eq. 4: ``w proportional to ((1 - lambda) p~ + lambda / Q)^-1`` and
    ``E[w] = sum_q p~_q w_q = 1``, "we find that values of lambda = 1/2 work well". ``prior``
    is the empirical distribution of the colour bins over the training pixels (the paper also
    smooths it with a Gaussian; we do not). A uniform prior gives weights 1 everywhere;
    ``lam = 1`` (a uniform mixture) too.

    Raises:
        ValueError: a prior with negative entries or that does not sum to 1, or lam outside [0, 1].
    """
    raise NotImplementedError("Implement rebalancing_weights: see its docstring")


def colorization_loss(
    logits: torch.Tensor, targets: torch.Tensor, class_weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Class-rebalanced multinomial cross-entropy of the predicted colour distributions.

    Zhang et al. (2016), Eq. 2: ``L_cl(Z^, Z) = - sum_{h,w} v(Z_{h,w}) sum_q Z_{h,w,q} log
    Z^_{h,w,q}`` with ``Z^ = softmax(logits)`` over the bins and ``v(Z_{h,w}) =
    w_{q*}``, ``q* = argmax_q Z_{h,w,q}`` (the weight of the pixel's most likely true bin). We
    average over all pixels (divide by ``N * H * W``). ``class_weights=None`` means all 1.

    Args:
        logits: ``[N, Q, H, W]``. targets: ``[N, Q, H, W]`` soft targets. class_weights: ``[Q]``.

    Returns:
        A scalar tensor.
    """
    raise NotImplementedError("Implement colorization_loss: see its docstring")


def annealed_mean_ab(
    logits: torch.Tensor, centres: torch.Tensor, temperature: float = 0.38
) -> torch.Tensor:
    """One colour per pixel from a predicted distribution: ``[N, Q, H, W]`` -> ``[N, 2, H, W]``.

    Zhang et al. (2016), Eq. 5: the "annealed mean" ``H(Z) = E[f_T(Z)]``,
    ``f_T(z) = exp(log z / T) / sum_q exp(log z_q / T)``: sharpen the distribution with
    temperature ``T`` (they use 0.38) and take the mean of the bin centres under it. ``T = 1`` is
    the plain mean (desaturated), ``T -> 0`` the mode (vivid but patchy).
    """
    raise NotImplementedError("Implement annealed_mean_ab: see its docstring")


# ==============================================================================================
# Part 3. Split-brain autoencoder
# ==============================================================================================

L_BIN_SIZE = 5.0  # the split-brain's ab -> L half classifies L into 20 bins of width 5 (our choice)


def split_brain_loss(
    model: SplitBrainNet,
    lab: torch.Tensor,
    centres: torch.Tensor,
    class_weights: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """The split-brain objective: each half predicts the other half's channels.

    Zhang et al. (2017): "we split the network in half: one sub-network F1 predicts ab from L
    and F2 predicts L from ab ... cross-channel prediction"; classification losses worked best
    for both. On a batch of Lab images ``[N, 3, H, W]``:

    1. ``ab_logits, l_logits = model(lab)`` (``[N, Q, h, w]`` and ``[N, n_L, h, w]``, both at
       the model's output resolution ``h = H / model.stride``);
    2. targets at that resolution: average-pool ``lab`` with kernel ``model.stride``;
       ab -> :func:`soft_encode_ab` over ``centres``; L -> the bin index
       ``floor(L / L_BIN_SIZE)`` clamped to ``0 .. n_L - 1``;
    3. ``"ab_loss"`` = :func:`colorization_loss` (with ``class_weights``), ``"l_loss"`` = the
       plain cross-entropy of ``l_logits``, ``"loss"`` = their sum.

    Returns:
        ``{"loss", "ab_loss", "l_loss"}``: scalar tensors.
    """
    raise NotImplementedError("Implement split_brain_loss: see its docstring")


# ==============================================================================================
# Part 4. Deep clustering
# ==============================================================================================


@torch.no_grad()
def kmeans_plusplus_init(
    x: torch.Tensor, k: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii, 2007): ``[N, D]`` -> ``k`` centroids ``[K, D]``.

    "Choose an initial center c_1 uniformly at random from X. Choose the next center c_i,
    selecting c_i = x' with probability D(x')^2 / sum_x D(x)^2", where ``D(x)`` is the distance
    from ``x`` to the nearest centre already chosen. Random draws, from ``generator`` and in this
    order: the first index ``torch.randint(N, (1,))``, then for each further centre one
    ``torch.multinomial(D^2, 1)`` (squared Euclidean distances, float64 weights not required).

    Raises:
        ValueError: ``k`` outside ``1 .. N``.
    """
    raise NotImplementedError("Implement kmeans_plusplus_init: see its docstring")


def assign_clusters(x: torch.Tensor, centroids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centroid of every point (Given): ``(assignments [N] int64, squared distance [N])``."""
    d2 = torch.cdist(x, centroids).pow(2)  # [N, K]
    best, index = d2.min(dim=1)  # [N], [N]
    return index, best


@torch.no_grad()
def kmeans_step(
    x: torch.Tensor,
    centroids: torch.Tensor,
    generator: torch.Generator | None = None,
    eps: float = 1.0 / 1024,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One Lloyd iteration with DeepCluster's re-seeding of empty clusters.

    1. assign every point to its nearest centroid (:func:`assign_clusters`);
    2. move every non-empty centroid to the mean of its points;
    3. Caron et al. (2018), Sec. 3.3, *Empty clusters*: "when a cluster becomes empty, we
       randomly select a non-empty cluster and use its centroid with a small random
       perturbation as the new centroid for the empty cluster. We then reassign the points
       belonging to the non-empty cluster to the two resulting clusters." For each empty
       cluster ``j`` in increasing order: draw a cluster ``i`` with probability proportional to
       its current size among the clusters with at least 2 points (``torch.multinomial(sizes,
       1)`` with the other sizes set to 0: the size-proportional rule of their faiss-based
       code), draw a direction ``u = torch.randn(D)``, and with ``m`` the mean of ``i``'s
       points set ``c_j = m + eps u`` and ``c_i = m - eps u``; the points of ``i`` strictly
       nearer to ``c_j`` than to ``c_i`` move to ``j`` (the sizes change accordingly before
       the next empty cluster is handled). Both halves are non-empty unless all of ``i``'s
       points project alike onto ``u``: the mean lies between them.

    Returns:
        ``(centroids [K, D], assignments [N])`` after the step.

    Raises:
        ValueError: more clusters than distinct points to split.
    """
    raise NotImplementedError("Implement kmeans_step: see its docstring")


@torch.no_grad()
def kmeans(
    x: torch.Tensor, k: int, iters: int = 20, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """k-means: k-means++ seeding, then ``iters`` calls of :func:`kmeans_step`.

    Stop early when the assignments of two consecutive steps are equal. Returns
    ``(centroids [K, D], assignments [N] int64, inertia)`` where ``assignments`` and the
    inertia (the sum of squared distances of the points to their assigned centroid) are
    computed for the final centroids with :func:`assign_clusters`.
    """
    raise NotImplementedError("Implement kmeans: see its docstring")


def normalized_mutual_info(labels_a: torch.Tensor, labels_b: torch.Tensor) -> float:
    """NMI of two labellings of the same ``N`` items, with the arithmetic-mean normaliser.

    Caron et al. (2018), Sec. 4.1: ``NMI(A; B) = I(A; B) / sqrt(H(A) H(B))``; we use the
    arithmetic mean ``(H(A) + H(B)) / 2`` instead, scikit-learn's default, so that the two
    agree. ``I(A; B) = sum_{a,b} p(a,b) log(p(a,b) / (p(a) p(b)))`` from the contingency table,
    ``H`` the entropies (natural log). Edge cases as in scikit-learn: both labellings constant
    -> 1.0; otherwise ``I = 0`` -> 0.0. The values of the labels do not matter, only the
    partition.
    """
    raise NotImplementedError("Implement normalized_mutual_info: see its docstring")


def cluster_sample_weights(assignments: torch.Tensor, k: int) -> torch.Tensor:
    """Per-image sampling weights that make every non-empty cluster equally likely: ``[N]``.

    Caron et al. (2018), Sec. 3.3, *Trivial parametrization*: "sample images based on a uniform
    distribution over the classes, or pseudo-labels. This is equivalent to weighting the
    contribution of an input to the loss function by the inverse of the size of its assigned
    cluster." Image ``n`` in a cluster of size ``s`` gets ``1 / (K' s)``, where ``K'`` is the
    number of non-empty clusters, so the weights sum to 1 and each cluster's total is ``1/K'``.
    """
    raise NotImplementedError("Implement cluster_sample_weights: see its docstring")


# ==============================================================================================
# Given: networks
# ==============================================================================================


class PixelPredictor(nn.Module):
    """An encoder (``SmallCNN``) and a decoder that maps its last feature map back to pixels.

    The encoder's last block gives ``[N, D, H/8, W/8]``; ``upsamplings`` transposed convolutions
    (kernel 4, stride 2, each halving the width, with BatchNorm and ReLU between) bring it to
    ``[N, out_channels, H/8 * 2^u, ...]``. ``u = 3`` predicts full-resolution pixels
    (inpainting); ``u = 1`` predicts at 1/4 of the resolution, as Zhang et al.'s colorization
    network does (their 224 px input gives a 56 x 56 output). ``stride`` is the ratio of input to
    output size. The output is raw (no sigmoid / softmax): the loss decides.
    """

    def __init__(self, encoder: SmallCNN, out_channels: int, upsamplings: int = 3):
        super().__init__()
        self.encoder = encoder
        layers: list[nn.Module] = []
        width = encoder.feature_dim
        for index in range(upsamplings):
            last = index == upsamplings - 1
            out = out_channels if last else max(width // 2, 16)
            layers.append(nn.ConvTranspose2d(width, out, kernel_size=4, stride=2, padding=1))
            if not last:
                layers += [nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            width = out
        if upsamplings == 0:
            layers.append(nn.Conv2d(width, out_channels, kernel_size=1))
        self.decoder = nn.Sequential(*layers)
        self.stride = 2 ** (len(encoder.blocks) - 1 - upsamplings)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = self.encoder.forward_features(x, pool=False)  # [N, D, H/8, W/8]
        return self.decoder(maps)  # [N, out, H/stride, W/stride]


class Discriminator(nn.Module):
    """A small DCGAN-style discriminator: images ``[N, C, 32, 32]`` -> one logit each ``[N]``."""

    def __init__(self, in_channels: int = 3, width: int = 32):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, width, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.BatchNorm2d(2 * width), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(2 * width, 4 * width, 4, 2, 1), nn.BatchNorm2d(4 * width), nn.LeakyReLU(0.2, inplace=True),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * width, 1),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)  # [N]


class SplitBrainNet(nn.Module):
    """Two half-width encoders, L -> ab (``Q`` bins) and ab -> L (``n_L`` bins), at 1/4 resolution.

    ``l_net`` sees the lightness ``L / 100`` (1 channel) and ``ab_net`` the colour ``ab / 110``
    (2 channels). ``forward(lab)`` returns ``(ab_logits [N, Q, H/4, W/4], l_logits [N, n_L, H/4,
    W/4])``. The representation is both encoders' features, concatenated (:class:`LabFeatures`).
    """

    def __init__(
        self, l_encoder: SmallCNN, ab_encoder: SmallCNN, num_ab_bins: int, num_l_bins: int = 20
    ):
        super().__init__()
        self.l_net = PixelPredictor(l_encoder, num_ab_bins, upsamplings=1)
        self.ab_net = PixelPredictor(ab_encoder, num_l_bins, upsamplings=1)
        self.stride = self.l_net.stride

    def forward(self, lab: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        l_input, ab_input = lab[:, :1] / 100.0, lab[:, 1:] / 110.0  # [N, 1, H, W], [N, 2, H, W]
        return self.l_net(l_input), self.ab_net(ab_input)  # [N, Q, h, w], [N, n_L, h, w]


SOBEL_X = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])  # d/dx kernel
LUMA = torch.tensor([0.299, 0.587, 0.114])  # ITU-R BT.601 grey from RGB


def sobel(rgb: torch.Tensor) -> torch.Tensor:
    """DeepCluster's fixed input filter: ``[N, 3, H, W]`` RGB -> ``[N, 2, H, W]`` grey gradients.

    Caron et al. (2018) feed their network Sobel-filtered grey images: a fixed linear map that
    removes colour and raises local contrast, because k-means on the features of a random
    network would otherwise group images by colour. The grey image (BT.601 luma), then its
    horizontal and vertical Sobel responses (zero padding, same size).
    """
    if rgb.ndim != 4 or rgb.shape[1] not in (1, 3):
        raise ValueError(
            f"sobel needs RGB or grey [N, 3 or 1, H, W] images, got {tuple(rgb.shape)}"
        )
    grey = rgb if rgb.shape[1] == 1 else (rgb * LUMA.to(rgb).view(1, 3, 1, 1)).sum(1, keepdim=True)
    kernels = torch.stack([SOBEL_X, SOBEL_X.T]).unsqueeze(1).to(rgb)  # [2, 1, 3, 3]
    return F.conv2d(grey, kernels, padding=1)  # [N, 2, H, W]


class LabFeatures(nn.Module):
    """What a probe sees of a colour-space encoder: RGB in, pooled features of block ``upto`` out.

    ``parts`` lists ``(encoder, channels)`` with ``channels`` one of ``"rgb"``, ``"L"``, ``"ab"``,
    ``"sobel"``: the RGB image, its ``L / 100``, its ``ab / 110`` or :func:`sobel` of it. The
    pooled block outputs of all parts are concatenated (the split-brain representation; one part
    for every other encoder).
    """

    def __init__(self, parts: Sequence[tuple[SmallCNN, str]], upto: int | None = None):
        super().__init__()
        self.encoders = nn.ModuleList([enc for enc, _ in parts])
        self.channels = [ch for _, ch in parts]
        self.upto = upto

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        lab = rgb_to_lab(rgb) if {"L", "ab"} & set(self.channels) else None
        feats = []
        for encoder, channels in zip(self.encoders, self.channels):
            if channels == "sobel":
                x = sobel(rgb)  # [N, 2, H, W]
            else:
                x = {"rgb": rgb, "L": lab[:, :1] / 100.0 if lab is not None else None,
                     "ab": lab[:, 1:] / 110.0 if lab is not None else None}[channels]  # fmt: skip
            feats.append(encoder.forward_features(x, upto=self.upto, pool=True))  # [N, D_b]
        return torch.cat(feats, dim=1)  # [N, sum D_b]


# ==============================================================================================
# Given: settings, training drivers, evaluation
# ==============================================================================================


@dataclass
class GenerativeConfig:
    """The experiment settings of the notebook and the benchmark, per preset (budgets in s)."""

    inpaint_s: float  # context encoder, L2 only
    inpaint_adv_s: float  # context encoder, L2 + adversarial
    color_class_s: float  # colorization as classification over ab bins, rebalanced
    color_reg_s: float  # colorization as L2 regression of ab
    split_brain_s: float
    cluster_s: float  # deep clustering: all rounds together
    max_epochs: int
    batch_size: int
    lr: float = 0.05  # SGD, momentum 0.9, Nesterov, cosine over the budget (Part I's optimiser)
    weight_decay: float = 5e-4
    widths: tuple[int, ...] = (32, 64, 128, 256)  # SmallCNN block widths (split-brain: halves)
    hole: int = 16  # inpainting: the missing square, half the image side as in Pathak et al.
    mask_mode: str = "random"
    lambda_adv: float = (
        0.001  # Pathak et al. (2016), Sec. 3.2: lambda_rec = 0.999, lambda_adv = 0.001
    )
    rebalance_lambda: float = 0.5  # Zhang et al. (2016), Eq. 4
    num_clusters: int = 100  # k-means clusters (10x the classes, as DeepCluster's 10k for IN-1k)
    cluster_rounds: int = 5
    kmeans_iters: int = 20
    probe_blocks: tuple[int, ...] = (3, 4)
    knn_k: int = 20
    probe_iters: int = 100

    @staticmethod
    def from_preset(preset) -> GenerativeConfig:
        if preset.name == "smoke":
            return GenerativeConfig(inpaint_s=1, inpaint_adv_s=1, color_class_s=1, color_reg_s=1,
                                    split_brain_s=1, cluster_s=2, max_epochs=1, batch_size=32,
                                    num_clusters=10, cluster_rounds=2, kmeans_iters=5,
                                    probe_iters=10)  # fmt: skip
        if preset.name == "cpu-quick":
            return GenerativeConfig(inpaint_s=35, inpaint_adv_s=20, color_class_s=35, color_reg_s=15,
                                    split_brain_s=35, cluster_s=50, max_epochs=preset.max_epochs,
                                    batch_size=64, cluster_rounds=3)  # fmt: skip
        s = preset.time_scale
        return GenerativeConfig(inpaint_s=60 * s, inpaint_adv_s=60 * s, color_class_s=60 * s,
                                color_reg_s=30 * s, split_brain_s=60 * s, cluster_s=90 * s,
                                max_epochs=preset.max_epochs, batch_size=128,
                                cluster_rounds=10)  # fmt: skip


@dataclass
class PretrainResult:
    """A finished run: the probe-ready features module, the whole model and what happened."""

    method: str
    features: LabFeatures
    model: nn.Module
    history: History
    extra: dict[str, Any] = field(default_factory=dict)


METHODS = ("inpainting", "inpainting+adv", "color-class", "color-reg", "split-brain")


def flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random horizontal flip per image: the only augmentation of the generative tasks."""
    return augment.random_horizontal_flip(x, generator=generator)  # [N, C, H, W]


def ab_prior(images: torch.Tensor, centres: torch.Tensor, max_images: int = 2000) -> torch.Tensor:
    """The empirical distribution ``[Q]`` of the nearest ab bin over training pixels at 1/4 size."""
    lab = rgb_to_lab(F.avg_pool2d(to_float(images[:max_images]), 4))  # [M, 3, H/4, W/4]
    ab = lab[:, 1:].permute(0, 2, 3, 1).reshape(-1, 2)  # [P, 2]
    nearest = torch.cdist(ab, centres).argmin(dim=1)  # [P]
    counts = torch.bincount(nearest, minlength=len(centres)).double()  # [Q]
    return (counts / counts.sum()).float()


def ab_statistics(images: torch.Tensor, max_images: int = 2000) -> tuple[torch.Tensor, ...]:
    """Per-channel mean and standard deviation ``[2], [2]`` of ab over training pixels at 1/4 size.

    The regression target of colorization is ab standardised with these, so that predicting the
    mean colour everywhere costs exactly 1 and the loss reads as the fraction of the colour
    variance left unexplained. On ``cifar10-5k`` the stds are about 9 (a) and 15 (b). Dividing
    by the range (110) instead left targets of std 0.1 and an L2 loss of 0.01 under the shared
    SGD rate: in ``cpu-quick`` that encoder ended 1.3 +- 2.8 points below the untrained one on
    the linear probe (seeds 0-2), the standardised one 3.4 to 3.7 points above it (two runs).
    """
    small_ab = F.avg_pool2d(rgb_to_lab(to_float(images[:max_images]))[:, 1:], 4)  # [M, 2, H/4, W/4]
    ab = small_ab.transpose(0, 1).reshape(2, -1)  # [2, P], as the regression step pools them
    return ab.mean(dim=1), ab.std(dim=1)


def pretrain(
    method: str,
    images: torch.Tensor,
    cfg: GenerativeConfig,
    *,
    budget_s: float,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> PretrainResult:
    """Train a fresh ``SmallCNN`` on one generative pretext for ``budget_s`` seconds.

    ``method``: ``"inpainting"`` (L2 on the hole), ``"inpainting+adv"`` (L2 + ``lambda_adv``
    times the adversarial loss, the discriminator trained by its own Adam inside each step),
    ``"color-class"`` (L -> ab bins, rebalanced), ``"color-reg"`` (L -> standardised ab, L2;
    :func:`ab_statistics`) or
    ``"split-brain"`` (two half-width encoders). ``images``: uint8 ``[N, 3, H, W]``.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    device = torch.device(device)
    extra: dict[str, Any] = {}
    floats = lambda b: flip(to_float(b), generator).to(device)  # [B, 3, H, W]

    if method.startswith("inpainting"):
        encoder = SmallCNN(in_channels=3, widths=cfg.widths)
        model: nn.Module = PixelPredictor(encoder, 3, upsamplings=3)
        fill = to_float(images[:2000]).mean(dim=(0, 2, 3)).to(device)  # [3] mean pixel
        extra["fill"] = fill.cpu()
        features = LabFeatures([(encoder, "rgb")])
        disc = Discriminator().to(device) if method == "inpainting+adv" else None
        d_opt = torch.optim.Adam(disc.parameters(), lr=2e-4, betas=(0.5, 0.999)) if disc else None
        extra["discriminator"] = disc

        def step(m: nn.Module, batch: torch.Tensor) -> dict:
            x = floats(batch)  # [B, 3, H, W]
            mask = region_mask(len(x), x.shape[-1], cfg.hole, cfg.mask_mode, generator).to(device)
            pred = torch.sigmoid(m(apply_mask(x, mask, fill)))  # [B, 3, H, W]
            rec = masked_l2_loss(pred, x, mask)
            if disc is None:
                return {"loss": rec}
            completed = torch.where(mask, pred, x)  # [B, 3, H, W] context + prediction
            d_loss = adversarial_losses(disc, x, completed)["d_loss"]  # update D first
            d_opt.zero_grad(set_to_none=True)
            d_loss.backward(inputs=list(disc.parameters()))
            d_opt.step()
            g_loss = adversarial_losses(disc, x, completed)["g_loss"]  # then G against the new D
            loss = (1 - cfg.lambda_adv) * rec + cfg.lambda_adv * g_loss
            return {"loss": loss, "rec": rec.detach(), "d_loss": d_loss.detach()}

    elif method in ("color-class", "color-reg"):
        encoder = SmallCNN(in_channels=1, widths=cfg.widths)
        centres = ab_gamut_bins().to(device)  # [Q, 2]
        weights = rebalancing_weights(ab_prior(images, centres.cpu()), cfg.rebalance_lambda).to(
            device
        )
        ab_mean, ab_std = (t.view(1, 2, 1, 1).to(device) for t in ab_statistics(images))
        extra.update(centres=centres.cpu(), class_weights=weights.cpu(), ab_mean=ab_mean.cpu(),
                     ab_std=ab_std.cpu())  # fmt: skip
        classify = method == "color-class"
        model = PixelPredictor(encoder, len(centres) if classify else 2, upsamplings=1)
        features = LabFeatures([(encoder, "L")])

        def step(m: nn.Module, batch: torch.Tensor) -> dict:
            lab = rgb_to_lab(floats(batch))  # [B, 3, H, W]
            out = m(lab[:, :1] / 100.0)  # [B, Q or 2, H/4, W/4]
            small_ab = F.avg_pool2d(lab[:, 1:], m.stride)  # [B, 2, H/4, W/4]
            if classify:
                return {"loss": colorization_loss(out, soft_encode_ab(small_ab, centres), weights)}
            standardised = (small_ab - ab_mean) / ab_std  # [B, 2, H/4, W/4]; the mean colour: 0
            return {"loss": (out - standardised).pow(2).mean()}  # the mean colour costs 1

    else:  # split-brain
        half = tuple(w // 2 for w in cfg.widths)
        l_enc, ab_enc = SmallCNN(in_channels=1, widths=half), SmallCNN(in_channels=2, widths=half)
        centres = ab_gamut_bins().to(device)
        weights = rebalancing_weights(ab_prior(images, centres.cpu()), cfg.rebalance_lambda).to(
            device
        )
        extra.update(centres=centres.cpu(), class_weights=weights.cpu())
        model = SplitBrainNet(l_enc, ab_enc, len(centres))
        features = LabFeatures([(l_enc, "L"), (ab_enc, "ab")])
        step = lambda m, batch: split_brain_loss(m, rgb_to_lab(floats(batch)), centres, weights)

    model.to(device)
    loader = TensorLoader(
        images, batch_size=min(cfg.batch_size, len(images)), seed=seed, device=device
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, nesterov=True,
                                weight_decay=cfg.weight_decay)  # fmt: skip
    config = TrainConfig(epochs=cfg.max_epochs, budget_s=budget_s, progress=progress, desc=method,
                         grad_clip=5.0)  # fmt: skip
    history = train(
        step,
        model,
        optimizer,
        loader,
        config,
        scheduler=BudgetCosine(optimizer, budget_s, warmup=0.0),
    )
    model.eval()
    return PretrainResult(method, features, model, history, extra)


@torch.no_grad()
def predict_pixels(
    result: PretrainResult, images: torch.Tensor, seed: int = 0
) -> dict[str, torch.Tensor]:
    """What a trained model makes of held-out images (for the pictures), all ``[N, 3, H, W]`` RGB.

    Inpainting: ``{"input": masked, "output": completed, "target": images}`` with a central hole;
    colorization: ``{"input": grey (L only), "output": predicted colours, "target": images}``
    (class model: annealed mean, T = 0.38, upsampled bilinearly to full size, with the true L).
    """
    model = result.model.eval()
    device = next(model.parameters()).device
    x = to_float(images).to(device)  # [N, 3, H, W]
    if result.method.startswith("inpainting"):
        mask = region_mask(len(x), x.shape[-1], 16, "center").to(device)  # [N, 1, H, W]
        masked = apply_mask(x, mask, result.extra["fill"].to(device))
        pred = torch.sigmoid(model(masked))  # [N, 3, H, W]
        return {
            "input": masked.cpu(),
            "output": torch.where(mask, pred, x).cpu(),
            "target": x.cpu(),
        }
    lab = rgb_to_lab(x)  # [N, 3, H, W]
    out = model(lab[:, :1] / 100.0)  # [N, Q or 2, h, w]
    if result.method == "color-class":
        ab = annealed_mean_ab(out, result.extra["centres"].to(device))  # [N, 2, h, w]
    else:
        mean, std = result.extra["ab_mean"].to(device), result.extra["ab_std"].to(device)
        ab = out * std + mean  # [N, 2, h, w]
    ab = F.interpolate(ab, size=x.shape[-2:], mode="bilinear", align_corners=False)  # [N, 2, H, W]
    grey = torch.cat([lab[:, :1], torch.zeros_like(ab)], dim=1)  # [N, 3, H, W]
    return {"input": lab_to_rgb(grey).cpu(), "output": lab_to_rgb(torch.cat([lab[:, :1], ab], 1)).cpu(),
            "target": x.cpu()}  # fmt: skip


@dataclass
class ClusterRound:
    """What one DeepCluster round found: NMI with the labels and with the previous round."""

    round: int
    nmi_labels: float
    nmi_previous: float | None
    largest_cluster: float  # fraction of the images in the biggest cluster
    empty_clusters: int  # after k-means (re-seeding keeps this at 0)
    inertia: float
    loss: float  # mean training loss of the round's last 20 steps


def deep_cluster(
    images: torch.Tensor,
    labels: torch.Tensor,
    cfg: GenerativeConfig,
    *,
    budget_s: float,
    seed: int = 0,
    device: str | torch.device = "cpu",
    uniform_sampling: bool = True,
) -> tuple[PretrainResult, list[ClusterRound]]:
    """DeepCluster (Caron et al., 2018, Fig. 1), ``cfg.cluster_rounds`` rounds in ``budget_s``.

    The encoder sees :func:`sobel` of the images, as in the paper (2 input channels). Each round:
    features of all images (eval mode, pooled last block, centred and L2-normalised: the paper
    also PCA-whitens to 256 dimensions, our features have 256 already),
    :func:`kmeans` into ``cfg.num_clusters`` clusters, a **freshly initialised** linear
    classifier (the paper: the pseudo-labels of two rounds are unrelated, so the old top layer
    is meaningless), then SGD on the cluster assignments as labels, drawing images with
    :func:`cluster_sample_weights` (``uniform_sampling=False``: uniform over images, the
    ablation that invites the trivial solution of one huge cluster). ``labels`` are used only to
    report the NMI; training never sees them.
    """
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    device = torch.device(device)
    encoder = SmallCNN(in_channels=2, widths=cfg.widths).to(device)
    features = LabFeatures([(encoder, "sobel")])  # RGB in, pooled features of the Sobel input
    rounds: list[ClusterRound] = []
    previous: torch.Tensor | None = None
    history = History()
    round_s = budget_s / cfg.cluster_rounds
    clock = BudgetClock(budget_s)  # seconds, or steps under replearn.train.step_budget
    for r in range(cfg.cluster_rounds):
        started, round_start = time.perf_counter(), clock.elapsed()
        feats = extract_features(features, images, batch_size=500)  # [N, D]
        feats = F.normalize(feats - feats.mean(dim=0), dim=1)  # [N, D]
        _, assign, inertia = kmeans(feats, cfg.num_clusters, cfg.kmeans_iters, generator)  # [N]
        sizes = torch.bincount(assign, minlength=cfg.num_clusters)  # [K]
        head = nn.Linear(encoder.feature_dim, cfg.num_clusters).to(device)  # re-initialised
        model = nn.Sequential(features, head)
        weights = cluster_sample_weights(assign, cfg.num_clusters) if uniform_sampling \
            else torch.full((len(images),), 1.0 / len(images))  # fmt: skip
        spent = clock.elapsed() - round_start  # the clustering's share of the round
        steps_budget = max(round_s - spent, min(0.5, round_s))
        optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, nesterov=True,
                                    weight_decay=cfg.weight_decay)  # fmt: skip
        losses: list[float] = []
        model.train()
        step_start = clock.elapsed()
        while not losses or clock.elapsed() - step_start < steps_budget:
            rows = torch.multinomial(
                weights, min(cfg.batch_size, len(images)), replacement=True, generator=generator
            )
            x = flip(to_float(images[rows]), generator).to(device)  # [B, 3, H, W]
            loss = F.cross_entropy(model(x), assign[rows].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
            history.steps.append({"step": history.steps_done, "round": r + 1, "loss": losses[-1]})
            history.steps_done += 1
            clock.tick()
        history.wall_time_s += time.perf_counter() - started
        rounds.append(ClusterRound(
            round=r + 1,
            nmi_labels=normalized_mutual_info(assign, labels),
            nmi_previous=None if previous is None else normalized_mutual_info(assign, previous),
            largest_cluster=float(sizes.max()) / len(images),
            empty_clusters=int((sizes == 0).sum()),
            inertia=inertia,
            loss=float(sum(losses[-20:]) / max(len(losses[-20:]), 1)),
        ))  # fmt: skip
        previous = assign
    encoder.eval()
    result = PretrainResult("deep-cluster", features, encoder, history)
    return result, rounds


PROBE_WEIGHT_DECAY = (
    2e-4  # Part I's linear-probe L2 strength (scikit-learn's C = 1 on 4,500 images)
)


# The random encoder each trained one is measured against: the same networks on the same input,
# untrained. Colorization sees only L, so its baseline is a random SmallCNN on L (Zhang et al.
# 2016 compare against random networks on their grayscale input too); split-brain's is the random
# pair of half-width networks on L and ab; deep clustering's a random SmallCNN on the Sobel
# gradients; the RGB encoders' is a random SmallCNN on RGB.
RANDOM_BASELINE = {"color-class": "random init (L)", "color-reg": "random init (L)",
                   "split-brain": "random init (L + ab halves)",
                   "deep clustering": "random init (Sobel)"}  # fmt: skip


def random_baselines(cfg: GenerativeConfig) -> dict[str, LabFeatures]:
    """The untrained encoders of :data:`RANDOM_BASELINE` (seed with ``torch.manual_seed`` first)."""
    half = tuple(w // 2 for w in cfg.widths)
    return {
        "random init": LabFeatures([(SmallCNN(3, cfg.widths), "rgb")]),
        "random init (L + ab halves)": LabFeatures([(SmallCNN(1, half), "L"), (SmallCNN(2, half), "ab")]),
        "random init (L)": LabFeatures([(SmallCNN(1, cfg.widths), "L")]),
        "random init (Sobel)": LabFeatures([(SmallCNN(2, cfg.widths), "sobel")]),
    }  # fmt: skip


def evaluate_features(
    features: LabFeatures,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    cfg: GenerativeConfig,
) -> dict[int, dict[str, float]]:
    """Part I's protocol: ``{block: {"knn": acc, "linear": acc}}`` on pooled block outputs.

    kNN: cosine, ``cfg.knn_k`` neighbours, temperature 0.1; linear probe: L-BFGS logistic
    regression on standardised features, L2 strength :data:`PROBE_WEIGHT_DECAY`,
    ``cfg.probe_iters`` iterations. Whole 32 x 32 images, eval mode.
    """
    scores = {}
    for block in cfg.probe_blocks:
        features.upto = block
        f_train = extract_features(features, x_train, batch_size=500)  # [N, D_b]
        f_test = extract_features(features, x_test, batch_size=500)  # [M, D_b]
        knn = knn_accuracy(f_train, y_train, f_test, y_test, k=cfg.knn_k)
        lin = linear_probe(f_train, y_train, f_test, y_test, weight_decay=PROBE_WEIGHT_DECAY,
                           max_iter=cfg.probe_iters).test_accuracy  # fmt: skip
        scores[block] = {"knn": float(knn), "linear": float(lin)}
    features.upto = None
    return scores
