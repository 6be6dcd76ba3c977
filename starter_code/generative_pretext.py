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

The networks are given: ``replearn.backbones.PixelPredictor`` (an encoder-decoder),
:class:`SplitBrainNet`, :func:`sobel`. The experiments around the parts (settings per preset,
the training drivers, the probes) are ``replearn.recipes.generative_pretext``.

Shapes use the package legend (``docs/internals.md``; ``K`` is clusters); local letters: ``Q``
ab colour bins, ``P`` pixels. Your parts: replace every ``raise NotImplementedError``;
everything else is given.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from replearn.backbones import PixelPredictor, SmallCNN

BANNED_APIS = {
    # The grader rejects these names inside the function on the left (that function's tests
    # score 0). The masked L2 is squared by hand, as in Assignment 2; NMI, k-means++ and k-means
    # are written in torch, and the Lab conversions from the formulas: the libraries named here
    # are what the tests check them against.
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


def hole_crops(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The missing square of each image, cut out: what the context encoder's discriminator sees.

    Pathak et al. (2016), Sec. 3.2: shown the whole completed image, the discriminator could
    "exploit the perceptual discontinuity in generated regions and the original context", so
    they condition "only the generator (not the discriminator) on context". ``images`` is
    ``[N, C, H, W]``; ``mask`` is :func:`region_mask`'s, one ``hole x hole`` square per image.
    Returns ``[N, C, hole, hole]``.
    """
    n, c = images.shape[:2]
    hole = int(mask[0, 0].any(dim=1).sum())  # rows of the first image's square
    picked = images[mask.to(images.device).expand_as(images)]  # [N * C * hole * hole]
    if picked.numel() != n * c * hole * hole:
        raise ValueError("hole_crops needs one square of the same size per image (region_mask)")
    return picked.view(n, c, hole, hole)  # [N, C, hole, hole]


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
        A scalar tensor; 0 when nothing is masked. Banned: see ``BANNED_APIS`` (no library MSE:
        square the differences yourself, as in Assignment 2).
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
    ``lam = 1`` (a uniform mixture) too. With ``lam = 0`` a bin that no training pixel falls in
    (``p~_q = 0``) would get ``1 / 0``: it gets weight 0 instead (no training pixel is ever
    weighted by it), so that the weights stay finite.

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


class SplitBrainNet(nn.Module):
    """Two half-width encoders, L -> ab (``Q`` bins) and ab -> L (``n_L`` bins), at 1/4 resolution
    (given).

    ``l_net`` sees the lightness ``L / 100`` (1 channel) and ``ab_net`` the colour ``ab / 110``
    (2 channels). ``forward(lab)`` returns ``(ab_logits [N, Q, H/4, W/4], l_logits [N, n_L, H/4,
    W/4])``. The representation is both encoders' features, concatenated.
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


SOBEL_X = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])  # d/dx kernel
LUMA = torch.tensor([0.299, 0.587, 0.114])  # ITU-R BT.601 grey from RGB


def sobel(rgb: torch.Tensor) -> torch.Tensor:
    """DeepCluster's fixed input filter (given): ``[N, 3, H, W]`` RGB -> ``[N, 2, H, W]`` grey gradients.

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
