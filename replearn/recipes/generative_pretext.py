"""Assignment 3 II's experiments: the settings per preset, the training drivers (every method
trains the same ``SmallCNN`` under ``replearn.train.train``, DeepCluster its own rounds), the
pictures, and the probes of part I (kNN and a linear probe on pooled block outputs).

Functions that run one of the student's parts take the student's module ``gp`` first.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from replearn import augment
from replearn.backbones import PixelPredictor, SmallCNN
from replearn.data import to_float
from replearn.evaluate import extract_features, knn_and_linear
from replearn.recipes.common import Run, counted_in_steps
from replearn.train import BudgetClock, BudgetCosine, History, TensorLoader, TrainConfig, train

__all__ = [
    "METHOD_NAMES",
    "RANDOM_BASELINE",
    "ClusterRound",
    "Discriminator",
    "GenerativeConfig",
    "LabFeatures",
    "ab_prior",
    "ab_statistics",
    "deep_cluster",
    "evaluate_features",
    "flip",
    "pretrain",
    "predict_pixels",
    "random_baselines",
]


class Discriminator(nn.Module):
    """A small DCGAN-style discriminator: images ``[N, C, h, w]`` (8 px or more; the context
    encoder gives it the filled squares, ``hole_crops``) -> one logit each ``[N]``."""

    def __init__(self, in_channels: int = 3, width: int = 32):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, width, 4, 2, 1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(width, 2 * width, 4, 2, 1),
            nn.BatchNorm2d(2 * width),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(2 * width, 4 * width, 4, 2, 1),
            nn.BatchNorm2d(4 * width),
            nn.LeakyReLU(0.2, inplace=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(4 * width, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)  # [N]


class LabFeatures(nn.Module):
    """What a probe sees of a colour-space encoder: RGB in, pooled features of block ``upto`` out.

    ``parts`` lists ``(encoder, channels)`` with ``channels`` one of ``"rgb"``, ``"L"``, ``"ab"``,
    ``"sobel"``: the RGB image, its ``L / 100``, its ``ab / 110`` or ``gp.sobel`` of it (``gp``
    the student's module, whose ``rgb_to_lab`` converts). The
    pooled block outputs of all parts are concatenated (the split-brain representation; one part
    for every other encoder).
    """

    def __init__(
        self, gp: ModuleType, parts: Sequence[tuple[SmallCNN, str]], upto: int | None = None
    ):
        super().__init__()
        self.rgb_to_lab, self.sobel = gp.rgb_to_lab, gp.sobel  # the module's colour conversions
        self.encoders = nn.ModuleList([enc for enc, _ in parts])
        self.channels = [ch for _, ch in parts]
        self.upto = upto

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        lab = self.rgb_to_lab(rgb) if {"L", "ab"} & set(self.channels) else None
        feats = []
        for encoder, channels in zip(self.encoders, self.channels):
            if channels == "sobel":
                x = self.sobel(rgb)  # [N, 2, H, W]
            elif channels == "rgb":
                x = rgb  # [N, 3, H, W]
            elif channels == "L":
                x = lab[:, :1] / 100.0  # [N, 1, H, W]
            else:
                x = lab[:, 1:] / 110.0  # [N, 2, H, W]
            feats.append(encoder.forward_features(x, upto=self.upto, pool=True))  # [N, D_b]
        return torch.cat(feats, dim=1)  # [N, sum D_b]


@dataclass
class GenerativeConfig:
    """The experiment settings of the notebook and the benchmark, per preset.

    Budgets are wall-clock seconds. Where a run's ``*_steps`` is set (``cpu-quick``,
    ``smoke``), its seconds are spent in exactly that many optimizer steps
    (``replearn.recipes.common.counted_in_steps``: the schedule follows the steps; deep
    clustering's k-means costs nothing), so that a rerun repeats its numbers whatever the
    machine's load; the counts are what an idle 2-core machine does in the seconds. ``None``
    keeps the wall clock (``colab``, ``full``).
    """

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
    inpaint_steps: int | None = None  # optimizer steps standing in for inpaint_s; None: clock
    inpaint_adv_steps: int | None = None
    color_class_steps: int | None = None
    color_reg_steps: int | None = None
    split_brain_steps: int | None = None
    cluster_steps: int | None = None  # all rounds together

    @staticmethod
    def from_preset(preset) -> GenerativeConfig:
        if preset.name == "smoke":
            return GenerativeConfig(
                inpaint_s=1,
                inpaint_adv_s=1,
                color_class_s=1,
                color_reg_s=1,
                split_brain_s=1,
                cluster_s=2,
                inpaint_steps=2,
                inpaint_adv_steps=2,
                color_class_steps=2,
                color_reg_steps=2,
                split_brain_steps=2,
                cluster_steps=4,
                max_epochs=1,
                batch_size=32,
                num_clusters=10,
                cluster_rounds=2,
                kmeans_iters=5,
                probe_iters=10,
            )
        if preset.name == "cpu-quick":
            return GenerativeConfig(
                inpaint_s=35,
                inpaint_adv_s=20,
                color_class_s=35,
                color_reg_s=15,
                split_brain_s=35,
                cluster_s=50,
                inpaint_steps=INPAINT_STEPS,
                inpaint_adv_steps=INPAINT_ADV_STEPS,
                color_class_steps=COLOR_CLASS_STEPS,
                color_reg_steps=COLOR_REG_STEPS,
                split_brain_steps=SPLIT_BRAIN_STEPS,
                cluster_steps=CLUSTER_STEPS,
                max_epochs=preset.max_epochs,
                batch_size=64,
                cluster_rounds=3,
            )
        s = preset.time_scale
        return GenerativeConfig(
            inpaint_s=60 * s,
            inpaint_adv_s=60 * s,
            color_class_s=60 * s,
            color_reg_s=30 * s,
            split_brain_s=60 * s,
            cluster_s=90 * s,
            max_epochs=preset.max_epochs,
            batch_size=128,
            cluster_rounds=10,
        )


METHOD_NAMES = ("inpainting", "inpainting+adv", "color-class", "color-reg", "split-brain")

# cpu-quick's runs in optimizer steps: what an idle 2-core machine does in each run's seconds
# (benchmarks/README.md, "Budgets in steps")
INPAINT_STEPS, INPAINT_ADV_STEPS, COLOR_CLASS_STEPS, COLOR_REG_STEPS = 300, 128, 183, 114
SPLIT_BRAIN_STEPS, CLUSTER_STEPS = 147, 294  # deep clustering: the rounds' steps, k-means aside


def flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random horizontal flip per image: the only augmentation of the generative tasks."""
    return augment.random_horizontal_flip(x, generator=generator)  # [N, C, H, W]


def ab_prior(
    gp: ModuleType, images: torch.Tensor, centres: torch.Tensor, max_images: int = 2000
) -> torch.Tensor:
    """The empirical distribution ``[Q]`` of the nearest ab bin over training pixels at 1/4 size."""
    lab = gp.rgb_to_lab(F.avg_pool2d(to_float(images[:max_images]), 4))  # [M, 3, H/4, W/4]
    ab = lab[:, 1:].permute(0, 2, 3, 1).reshape(-1, 2)  # [P, 2]
    nearest = torch.cdist(ab, centres).argmin(dim=1)  # [P]
    counts = torch.bincount(nearest, minlength=len(centres)).double()  # [Q]
    return (counts / counts.sum()).float()


def ab_statistics(
    gp: ModuleType, images: torch.Tensor, max_images: int = 2000
) -> tuple[torch.Tensor, ...]:
    """Per-channel mean and standard deviation ``[2], [2]`` of ab over training pixels at 1/4 size.

    The regression target of colorization is ab standardised with these, so that predicting the
    mean colour everywhere costs exactly 1 and the loss reads as the fraction of the colour
    variance left unexplained. Dividing by the range (110) instead leaves targets so small that
    the shared SGD rate barely moves the encoder (``benchmarks/README.md``, Assignment 3 II).
    """
    small_ab = F.avg_pool2d(
        gp.rgb_to_lab(to_float(images[:max_images]))[:, 1:], 4
    )  # [M, 2, H/4, W/4]
    ab = small_ab.transpose(0, 1).reshape(2, -1)  # [2, P], as the regression step pools them
    return ab.mean(dim=1), ab.std(dim=1)


def pretrain(
    gp: ModuleType,
    method: str,
    images: torch.Tensor,
    cfg: GenerativeConfig,
    *,
    budget_s: float,
    steps: int | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> Run:
    """Train a fresh ``SmallCNN`` on one generative pretext for ``budget_s`` seconds, or, with
    ``steps``, for exactly ``steps`` optimizer steps (the schedule spread over them).

    ``method``: ``"inpainting"`` (L2 on the hole), ``"inpainting+adv"`` (L2 + ``lambda_adv``
    times the adversarial loss, the discriminator trained by its own Adam inside each step on
    the filled square alone, real or predicted: the module's ``hole_crops``),
    ``"color-class"`` (L -> ab bins, rebalanced), ``"color-reg"`` (L -> standardised ab, L2;
    :func:`ab_statistics`) or ``"split-brain"`` (two half-width encoders), with the parts of
    ``gp`` (the student's module). ``images``: uint8 ``[N, 3, H, W]``.

    Returns:
        A :class:`~replearn.recipes.Run` whose ``encoder`` is the probe-ready
        :class:`LabFeatures`; ``extra`` holds what :func:`predict_pixels` needs (the fill colour,
        the ab bins and statistics) and the discriminator.
    """
    if method not in METHOD_NAMES:
        raise ValueError(f"unknown method {method!r}; choose one of {METHOD_NAMES}")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    device = torch.device(device)
    extra: dict[str, Any] = {}
    floats = lambda b: flip(to_float(b), generator).to(device)  # [N, 3, H, W]

    if method.startswith("inpainting"):
        encoder = SmallCNN(in_channels=3, widths=cfg.widths)
        model: nn.Module = PixelPredictor(encoder, 3, upsamplings=3)
        fill = to_float(images[:2000]).mean(dim=(0, 2, 3)).to(device)  # [3] mean pixel
        extra["fill"] = fill.cpu()
        features = LabFeatures(gp, [(encoder, "rgb")])
        disc = Discriminator().to(device) if method == "inpainting+adv" else None
        d_opt = torch.optim.Adam(disc.parameters(), lr=2e-4, betas=(0.5, 0.999)) if disc else None
        extra["discriminator"] = disc

        def step(m: nn.Module, batch: torch.Tensor) -> dict:
            x = floats(batch)  # [N, 3, H, W]
            mask = gp.region_mask(len(x), x.shape[-1], cfg.hole, cfg.mask_mode, generator).to(
                device
            )
            pred = torch.sigmoid(m(gp.apply_mask(x, mask, fill)))  # [N, 3, H, W]
            rec = gp.masked_l2_loss(pred, x, mask)
            if disc is None:
                return {"loss": rec}
            real, fake = gp.hole_crops(x, mask), gp.hole_crops(pred, mask)  # [N, 3, h, h] each
            d_loss = gp.adversarial_losses(disc, real, fake)["d_loss"]  # update D first
            d_opt.zero_grad(set_to_none=True)
            d_loss.backward(inputs=list(disc.parameters()))
            d_opt.step()
            g_loss = gp.adversarial_losses(disc, real, fake)["g_loss"]  # then G against the new D
            loss = (1 - cfg.lambda_adv) * rec + cfg.lambda_adv * g_loss
            return {"loss": loss, "rec": rec.detach(), "d_loss": d_loss.detach()}

    elif method in ("color-class", "color-reg"):
        encoder = SmallCNN(in_channels=1, widths=cfg.widths)
        centres = gp.ab_gamut_bins().to(device)  # [Q, 2]
        weights = gp.rebalancing_weights(
            ab_prior(gp, images, centres.cpu()), cfg.rebalance_lambda
        ).to(device)
        ab_mean, ab_std = (t.view(1, 2, 1, 1).to(device) for t in ab_statistics(gp, images))
        extra.update(
            centres=centres.cpu(),
            class_weights=weights.cpu(),
            ab_mean=ab_mean.cpu(),
            ab_std=ab_std.cpu(),
        )
        classify = method == "color-class"
        model = PixelPredictor(encoder, len(centres) if classify else 2, upsamplings=1)
        features = LabFeatures(gp, [(encoder, "L")])

        def step(m: nn.Module, batch: torch.Tensor) -> dict:
            lab = gp.rgb_to_lab(floats(batch))  # [N, 3, H, W]
            out = m(lab[:, :1] / 100.0)  # [N, Q or 2, H/4, W/4]
            small_ab = F.avg_pool2d(lab[:, 1:], m.stride)  # [N, 2, H/4, W/4]
            if classify:
                return {
                    "loss": gp.colorization_loss(out, gp.soft_encode_ab(small_ab, centres), weights)
                }
            standardised = (small_ab - ab_mean) / ab_std  # [N, 2, H/4, W/4]; the mean colour: 0
            return {"loss": (out - standardised).pow(2).mean()}  # the mean colour costs 1

    else:  # split-brain
        half = tuple(w // 2 for w in cfg.widths)
        l_enc, ab_enc = SmallCNN(in_channels=1, widths=half), SmallCNN(in_channels=2, widths=half)
        centres = gp.ab_gamut_bins().to(device)
        weights = gp.rebalancing_weights(
            ab_prior(gp, images, centres.cpu()), cfg.rebalance_lambda
        ).to(device)
        extra.update(centres=centres.cpu(), class_weights=weights.cpu())
        model = gp.SplitBrainNet(l_enc, ab_enc, len(centres))
        features = LabFeatures(gp, [(l_enc, "L"), (ab_enc, "ab")])
        step = lambda m, batch: gp.split_brain_loss(
            m, gp.rgb_to_lab(floats(batch)), centres, weights
        )

    model.to(device)
    loader = TensorLoader(
        images, batch_size=min(cfg.batch_size, len(images)), seed=seed, device=device
    )
    optimizer = torch.optim.SGD(
        model.parameters(), lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay
    )
    config = TrainConfig(
        epochs=cfg.max_epochs, budget_s=budget_s, progress=progress, desc=method, grad_clip=5.0
    )
    with counted_in_steps(steps):
        history = train(
            step,
            model,
            optimizer,
            loader,
            config,
            scheduler=BudgetCosine(optimizer, budget_s, warmup=0.0),
        )
    model.eval()
    return Run(method, model, features, history, extra)


@torch.no_grad()
def predict_pixels(gp: ModuleType, result: Run, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """What a trained model makes of held-out images (for the pictures), all ``[N, 3, H, W]`` RGB.

    Inpainting: ``{"input": masked, "output": completed, "target": images}`` with a central hole;
    colorization: ``{"input": grey (L only), "output": predicted colours, "target": images}``
    (class model: annealed mean, T = 0.38, upsampled bilinearly to full size, with the true L).
    """
    model = result.model.eval()
    device = next(model.parameters()).device
    x = to_float(images).to(device)  # [N, 3, H, W]
    if result.method.startswith("inpainting"):
        mask = gp.region_mask(len(x), x.shape[-1], 16, "center").to(device)  # [N, 1, H, W]
        masked = gp.apply_mask(x, mask, result.extra["fill"].to(device))
        pred = torch.sigmoid(model(masked))  # [N, 3, H, W]
        return {
            "input": masked.cpu(),
            "output": torch.where(mask, pred, x).cpu(),
            "target": x.cpu(),
        }
    lab = gp.rgb_to_lab(x)  # [N, 3, H, W]
    out = model(lab[:, :1] / 100.0)  # [N, Q or 2, h, w]
    if result.method == "color-class":
        ab = gp.annealed_mean_ab(out, result.extra["centres"].to(device))  # [N, 2, h, w]
    else:
        mean, std = result.extra["ab_mean"].to(device), result.extra["ab_std"].to(device)
        ab = out * std + mean  # [N, 2, h, w]
    ab = F.interpolate(ab, size=x.shape[-2:], mode="bilinear", align_corners=False)  # [N, 2, H, W]
    grey = torch.cat([lab[:, :1], torch.zeros_like(ab)], dim=1)  # [N, 3, H, W]
    colour = torch.cat([lab[:, :1], ab], dim=1)  # [N, 3, H, W]
    return {
        "input": gp.lab_to_rgb(grey).cpu(),
        "output": gp.lab_to_rgb(colour).cpu(),
        "target": x.cpu(),
    }


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
    gp: ModuleType,
    images: torch.Tensor,
    labels: torch.Tensor,
    cfg: GenerativeConfig,
    *,
    budget_s: float,
    steps: int | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    uniform_sampling: bool = True,
) -> tuple[Run, list[ClusterRound]]:
    """DeepCluster (Caron et al., 2018, Fig. 1), ``cfg.cluster_rounds`` rounds in ``budget_s``
    (or in ``steps`` optimizer steps, the clustering free).

    The encoder sees ``gp.sobel`` of the images, as in the paper (2 input channels). Each round:
    features of all images (eval mode, pooled last block, centred and L2-normalised: the paper
    also PCA-whitens to 256 dimensions, our features have 256 already),
    ``gp.kmeans`` into ``cfg.num_clusters`` clusters, a **freshly initialised** linear
    classifier (the paper: the pseudo-labels of two rounds are unrelated, so the old top layer
    is meaningless), then SGD on the cluster assignments as labels, drawing images with
    ``gp.cluster_sample_weights`` (``uniform_sampling=False``: uniform over images, the
    ablation that invites the trivial solution of one huge cluster). ``labels`` are used only to
    report the NMI; training never sees them.
    """
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    device = torch.device(device)
    encoder = SmallCNN(in_channels=2, widths=cfg.widths).to(device)
    features = LabFeatures(gp, [(encoder, "sobel")])  # RGB in, pooled features of the Sobel input
    rounds: list[ClusterRound] = []
    previous: torch.Tensor | None = None
    history = History()
    round_s = budget_s / cfg.cluster_rounds
    with counted_in_steps(steps):  # the clock reads the step budget when it is made
        clock = BudgetClock(budget_s)  # seconds, or steps
    for r in range(cfg.cluster_rounds):
        started, round_start = time.perf_counter(), clock.elapsed()
        feats = extract_features(features, images, batch_size=500)  # [N, D]
        feats = F.normalize(feats - feats.mean(dim=0), dim=1)  # [N, D]
        _, assign, inertia = gp.kmeans(feats, cfg.num_clusters, cfg.kmeans_iters, generator)  # [N]
        sizes = torch.bincount(assign, minlength=cfg.num_clusters)  # [K]
        head = nn.Linear(encoder.feature_dim, cfg.num_clusters).to(device)  # re-initialised
        model = nn.Sequential(features, head)
        weights = (
            gp.cluster_sample_weights(assign, cfg.num_clusters)
            if uniform_sampling
            else torch.full((len(images),), 1.0 / len(images))
        )
        spent = clock.elapsed() - round_start  # the clustering's share of the round
        steps_budget = max(round_s - spent, min(0.5, round_s))
        optimizer = torch.optim.SGD(
            model.parameters(),
            lr=cfg.lr,
            momentum=0.9,
            nesterov=True,
            weight_decay=cfg.weight_decay,
        )
        losses: list[float] = []
        model.train()
        step_start = clock.elapsed()
        while not losses or clock.elapsed() - step_start < steps_budget:
            rows = torch.multinomial(
                weights, min(cfg.batch_size, len(images)), replacement=True, generator=generator
            )
            x = flip(to_float(images[rows]), generator).to(device)  # [N, 3, H, W]
            loss = F.cross_entropy(model(x), assign[rows].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
            history.steps.append({"step": history.steps_done, "round": r + 1, "loss": losses[-1]})
            history.steps_done += 1
            clock.tick()
        history.wall_time_s += time.perf_counter() - started
        rounds.append(
            ClusterRound(
                round=r + 1,
                nmi_labels=gp.normalized_mutual_info(assign, labels),
                nmi_previous=None
                if previous is None
                else gp.normalized_mutual_info(assign, previous),
                largest_cluster=float(sizes.max()) / len(images),
                empty_clusters=int((sizes == 0).sum()),
                inertia=inertia,
                loss=float(sum(losses[-20:]) / max(len(losses[-20:]), 1)),
            )
        )
        previous = assign
    encoder.eval()
    result = Run("deep-cluster", encoder, features, history)
    return result, rounds


# The random encoder each trained one is measured against: the same networks on the same input,
# untrained. Colorization sees only L, so its baseline is a random SmallCNN on L (Zhang et al.
# 2016 compare against random networks on their grayscale input too); split-brain's is the random
# pair of half-width networks on L and ab; deep clustering's a random SmallCNN on the Sobel
# gradients; the RGB encoders' is a random SmallCNN on RGB.
RANDOM_BASELINE = {
    "color-class": "random init (L)",
    "color-reg": "random init (L)",
    "split-brain": "random init (L + ab halves)",
    "deep clustering": "random init (Sobel)",
}


def random_baselines(gp: ModuleType, cfg: GenerativeConfig) -> dict[str, LabFeatures]:
    """The untrained encoders of :data:`RANDOM_BASELINE` (seed with ``torch.manual_seed`` first)."""
    half = tuple(w // 2 for w in cfg.widths)
    return {
        "random init": LabFeatures(gp, [(SmallCNN(3, cfg.widths), "rgb")]),
        "random init (L + ab halves)": LabFeatures(
            gp, [(SmallCNN(1, half), "L"), (SmallCNN(2, half), "ab")]
        ),
        "random init (L)": LabFeatures(gp, [(SmallCNN(1, cfg.widths), "L")]),
        "random init (Sobel)": LabFeatures(gp, [(SmallCNN(2, cfg.widths), "sobel")]),
    }


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
    regression on standardised features, L2 strength ``replearn.evaluate.PROBE_WEIGHT_DECAY``,
    ``cfg.probe_iters`` iterations. Whole 32 x 32 images, eval mode.
    """
    scores = {}
    for block in cfg.probe_blocks:
        features.upto = block
        f_train = extract_features(features, x_train, batch_size=500)  # [N, D_b]
        f_test = extract_features(features, x_test, batch_size=500)  # [M, D_b]
        scores[block] = knn_and_linear(
            f_train, y_train, f_test, y_test, k=cfg.knn_k, max_iter=cfg.probe_iters
        )
    features.upto = None
    return scores
