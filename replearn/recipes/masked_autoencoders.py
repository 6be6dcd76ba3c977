"""Assignment 5's experiments: the settings per preset, MAE pretraining through
``replearn.train.train``, the downstream protocols (linear probe and kNN, fine-tuning, the same
ViT from scratch), the three-row picture, and the ``mae`` method of the pretraining entry point.

Functions that build or run the student's parts take the student's module ``mae`` first.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import torch
import torch.nn as nn
import torch.nn.functional as F

from replearn import augment
from replearn.data import ImageData, as_float_images
from replearn.evaluate import KNNMonitor, extract_features, knn_and_linear
from replearn.recipes.common import PretrainMethod, Run, StepContext, adamw, counted_in_steps
from replearn.train import BudgetCosine, Hook, TensorLoader, TrainConfig, pick_device, train

__all__ = [
    "PRETRAIN_METHODS",
    "MAEConfig",
    "build_encoder",
    "build_mae",
    "evaluate_encoder",
    "finetune",
    "finetune_augment",
    "from_scratch",
    "pretrain",
    "reconstruct",
]


@dataclass(frozen=True)
class MAEConfig:
    """The experiment settings of the notebook and the benchmark, per preset.

    The recipe is a small MAE for a CPU (ViT p4, D = 128, 4 blocks; decoder 1 block of width
    128; mask 0.75; norm-pix target; AdamW lr 1.5e-3, wd 0.05, warm-up + cosine; batch 256).
    ``cpu-quick`` trains for seconds, not minutes, so it takes batches of 64 and a decoder of
    width 64: many more steps in the same time (``benchmarks/README.md``). Budgets are
    seconds:
    ``pretrain_s`` for MAE pretraining, ``finetune_s`` for fine-tuning the pretrained ViT (and
    for the from-scratch run at the same labelled-training time), ``scratch_s`` for the same
    ViT from random init at the same TOTAL time (``pretrain_s + finetune_s``; the benchmark
    runs it), and ``ablation_s`` for each run of the mask-ratio ablation over
    ``ablation_ratios``. In ``smoke`` and ``cpu-quick`` each budget is counted in optimizer
    steps instead (``pretrain_steps``, ``finetune_steps``, ``scratch_steps``,
    ``ablation_steps``: what an idle 2-core machine does in those seconds), so that a rerun
    repeats its numbers whatever the machine's load (``replearn.recipes.common.counted_in_steps``);
    ``None`` keeps the wall clock (``colab``, ``full``).
    """

    pretrain_s: float
    finetune_s: float
    scratch_s: float
    ablation_s: float
    max_epochs: int
    pretrain_steps: int | None = None
    finetune_steps: int | None = None
    scratch_steps: int | None = None
    ablation_steps: int | None = None
    ablation_ratios: tuple[float, ...] = (0.25, 0.5, 0.75, 0.9)
    mask_ratio: float = 0.75  # He et al.: "masking ratio of 75% works well"
    norm_pix_loss: bool = True
    patch_size: int = 4
    dim: int = 128
    depth: int = 4
    heads: int = 4
    decoder_dim: int = 128
    decoder_depth: int = 1
    decoder_heads: int = 4
    batch_size: int = 256
    lr: float = 1.5e-3  # AdamW, betas (0.9, 0.95) as in MAE; warm-up + cosine over the budget
    weight_decay: float = 0.05
    warmup: float = 0.05  # fraction of the budget spent warming up
    finetune_lr: float = 1e-3
    finetune_weight_decay: float = 0.05
    finetune_batch_size: int = 128
    # MAE's fine-tuning recipe uses 0.65 for ViT-B and 0.75 for ViT-L/H (facebookresearch/mae,
    # FINETUNE.md); a head at 10x the rate learns fast enough in a short run
    layer_decay: float = 0.75
    head_lr_scale: float = 10.0
    knn_k: int = 20
    knn_every: int = 0  # epochs between kNN monitor evaluations (0: no monitor)
    probe_iters: int = 100  # L-BFGS iterations of the linear probe
    checkpoints: bool = False  # train-or-load the runs under checkpoints/

    @staticmethod
    def from_preset(preset) -> MAEConfig:
        if preset.name == "smoke":
            return MAEConfig(
                pretrain_s=2,
                finetune_s=1,
                scratch_s=3,
                ablation_s=1,
                max_epochs=1,
                pretrain_steps=4,
                finetune_steps=2,
                scratch_steps=6,
                ablation_steps=2,
                batch_size=32,
                ablation_ratios=(0.5, 0.75),
                dim=32,
                depth=1,
                heads=2,
                decoder_dim=32,
                finetune_batch_size=32,
                probe_iters=10,
            )
        if preset.name == "cpu-quick":
            # the steps an idle 2-core machine does in those seconds: MAE about 12 epochs of
            # 79 batches in 80 s, fine-tuning about 5 steps a second (benchmarks/README.md)
            return MAEConfig(
                pretrain_s=80,
                finetune_s=30,
                scratch_s=110,
                ablation_s=10,
                pretrain_steps=940,
                finetune_steps=150,
                scratch_steps=550,
                ablation_steps=60,
                ablation_ratios=(0.5, 0.75, 0.9),
                batch_size=64,
                decoder_dim=64,
                lr=1e-3,
                finetune_batch_size=64,
                max_epochs=preset.max_epochs,
            )
        # colab: sized to the notebook header's time on a T4 (benchmarks/README.md, "Colab budgets")
        # From scratch always gets the time of pretraining and fine-tuning together.
        scale = preset.time_scale
        pretrain, finetune, ablation = (130, 45, 15) if preset.name == "colab" else (300, 100, 60)
        return MAEConfig(
            pretrain_s=pretrain * scale,
            finetune_s=finetune * scale,
            scratch_s=(pretrain + finetune) * scale,
            ablation_s=ablation * scale,
            max_epochs=800,
            batch_size=512,
            checkpoints=True,
        )


def build_mae(
    mae: ModuleType, cfg: MAEConfig, image_size: int = 32, in_chans: int = 3
) -> nn.Module:
    """A fresh ``MaskedAutoencoder`` of the module with ``cfg``'s sizes (seed torch first)."""
    encoder = build_encoder(mae, cfg, image_size, in_chans)
    decoder = mae.MAEDecoder(
        encoder.num_patches,
        cfg.patch_size,
        in_chans,
        cfg.dim,
        cfg.decoder_dim,
        cfg.decoder_depth,
        cfg.decoder_heads,
    )
    return mae.MaskedAutoencoder(encoder, decoder, norm_pix_loss=cfg.norm_pix_loss)


def build_encoder(
    mae: ModuleType, cfg: MAEConfig, image_size: int = 32, in_chans: int = 3
) -> nn.Module:
    """A fresh ``MAEEncoder`` of the module with ``cfg``'s sizes (seed torch first)."""
    return mae.MAEEncoder(image_size, cfg.patch_size, in_chans, cfg.dim, cfg.depth, cfg.heads)


def _mae_optimizer(cfg: MAEConfig, parameters: list[nn.Parameter]) -> torch.optim.Optimizer:
    """MAE's AdamW: betas (0.9, 0.95), no weight decay on biases and norms (1-D tensors)."""
    return adamw(parameters, cfg.lr, cfg.weight_decay, betas=(0.9, 0.95))


def _finetune_groups(
    model: nn.Sequential, lr: float, weight_decay: float, layer_decay: float, head_scale: float
) -> list[dict]:
    """AdamW groups for ``Sequential(PooledFeatures(encoder), head)``, deeper layers faster.

    MAE's layer-wise learning-rate decay (He et al., App. A.2, after BEiT; ``lr_decay.py`` in
    MAE's code): the final norm keeps ``lr``, the top block gets ``layer_decay * lr``, each
    block below ``layer_decay`` times the one above, and the patch embedding and class token
    ``layer_decay ** (depth + 1)``; the new head gets ``head_scale * lr``. No weight decay on
    biases and norms (1-D tensors).
    """
    encoder, head = model[0].encoder, model[1]
    depth = len(encoder.blocks)
    scale_of: dict[int, float] = {id(p): layer_decay ** (depth + 1) for p in encoder.parameters()}
    for i, block in enumerate(encoder.blocks):
        scale_of.update({id(p): layer_decay ** (depth - i) for p in block.parameters()})
    scale_of.update({id(p): 1.0 for p in encoder.norm.parameters()})
    scale_of.update({id(p): head_scale for p in head.parameters()})
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for p in model.parameters():
        if p.requires_grad:
            key = (scale_of[id(p)], weight_decay if p.ndim > 1 else 0.0)
            groups.setdefault(key, []).append(p)
    return [
        {"params": ps, "lr": lr * scale, "weight_decay": wd} for (scale, wd), ps in groups.items()
    ]


def pretrain(
    mae: ModuleType,
    images: torch.Tensor,
    cfg: MAEConfig,
    *,
    budget_s: float | None = None,
    steps: int | None = None,
    mask_ratio: float | None = None,
    seed: int = 0,
    monitor: Hook | tuple[torch.Tensor, ...] | None = None,
    progress: bool = False,
    device: str | torch.device = "cpu",
    checkpoint_path: str | Path | None = None,
) -> Run:
    """Pretrain a fresh MAE for ``budget_s`` seconds (or ``steps``) with ``replearn.train.train``.

    AdamW (``cfg.lr``, ``cfg.weight_decay``, betas (0.9, 0.95)), linear warm-up + cosine decay
    over the budget (``replearn.train.BudgetCosine``), gradient clipping at 5. No augmentation:
    "MAE works well using cropping-only augmentation" (He et al., Sec. 4.1, Table 1e); on
    32x32 images we use none.

    Args:
        images: uint8 ``[N, C, H, W]`` (square; the side must be a multiple of ``cfg.patch_size``).
        budget_s: seconds (default ``cfg.pretrain_s``).
        steps: spend the budget in exactly this many optimizer steps (``counted_in_steps``);
            default ``cfg.pretrain_steps`` when ``budget_s`` is the config's, else the wall
            clock.
        mask_ratio: fraction of patches removed (default ``cfg.mask_ratio``).
        monitor: a ``replearn.train.Hook``, or ``(train_x, train_y, test_x, test_y)`` for a
            kNN monitor on the encoder's pooled features every ``cfg.knn_every`` epochs.
        checkpoint_path: train-or-load file (``None``: no checkpoint).

    Returns:
        A :class:`~replearn.recipes.Run` (``extra["mask_ratio"]``); its model and encoder are in
        eval mode.
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.dtype != torch.uint8:
        what = (
            f"{images.dtype} {tuple(images.shape)}"
            if isinstance(images, torch.Tensor)
            else type(images).__name__
        )
        raise ValueError(
            f"images must be uint8 [N, C, H, W] as stored by replearn.data, got {what}"
        )
    mask_ratio = cfg.mask_ratio if mask_ratio is None else float(mask_ratio)
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must lie in [0, 1) (MAE uses 0.75), got {mask_ratio!r}")
    if budget_s is None:
        budget_s, steps = cfg.pretrain_s, cfg.pretrain_steps if steps is None else steps
    budget_s = float(budget_s)
    device = pick_device(device)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)  # CPU: the same masks on any device
    model = build_mae(mae, cfg, images.shape[-1], images.shape[1]).to(device)
    optimizer = _mae_optimizer(cfg, [p for p in model.parameters() if p.requires_grad])
    loader = TensorLoader(
        images, batch_size=min(cfg.batch_size, len(images)), seed=seed, device=device
    )
    hooks: list[Hook] = []
    if isinstance(monitor, Hook):
        hooks.append(monitor)
    elif monitor is not None and cfg.knn_every > 0:
        train_x, train_y, test_x, test_y = monitor
        hooks.append(
            KNNMonitor(
                train_x,
                train_y,
                test_x,
                test_y,
                every=cfg.knn_every,
                k=cfg.knn_k,
                encoder_of=lambda m: mae.PooledFeatures(m.encoder),
            )
        )

    def step(model: nn.Module, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss": model(as_float_images(batch), mask_ratio, generator)["loss"]}

    config = TrainConfig(
        epochs=cfg.max_epochs,
        budget_s=budget_s,
        progress=progress,
        desc=f"MAE {mask_ratio:.0%}",
        grad_clip=5.0,
        checkpoint_path=str(checkpoint_path) if checkpoint_path else None,
    )
    with counted_in_steps(steps):
        history = train(
            step,
            model,
            optimizer,
            loader,
            config,
            scheduler=BudgetCosine(optimizer, budget_s, warmup=cfg.warmup),
            hooks=hooks,
        )
    model.eval()
    return Run("mae", model, model.encoder, history, {"mask_ratio": mask_ratio})


def finetune_augment(generator: torch.Generator | None = None):
    """Light augmentation for fine-tuning: random resized crop (70-100% of the area) + flip."""

    def view(x: torch.Tensor) -> torch.Tensor:
        size = (x.shape[2], x.shape[3])
        x = augment.random_resized_crop(x, size, scale=(0.7, 1.0), generator=generator)
        return augment.random_horizontal_flip(x, generator=generator)  # [N, C, H, W]

    return view


def finetune(
    mae: ModuleType,
    encoder: nn.Module,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    cfg: MAEConfig,
    *,
    budget_s: float | None = None,
    steps: int | None = None,
    seed: int = 0,
    device: str | torch.device | None = "cpu",
    progress: bool = False,
    layer_decay: float | None = None,
) -> float:
    """Fine-tune a copy of ``encoder`` with a linear head on labelled images: test accuracy.

    He et al. (2022), Sec. 4: "end-to-end fine-tuning", every layer trained. The recipe here:
    the pooled patch tokens (the module's ``PooledFeatures``) into a linear head
    (initialised with std 2e-5 as in MAE's fine-tuning code), AdamW (``cfg.finetune_lr``,
    betas (0.9, 0.999), weight decay ``cfg.finetune_weight_decay``, none on biases and norms),
    linear warm-up + cosine decay over the budget (``replearn.train.BudgetCosine``, as
    pretraining), MAE's layer-wise learning-rate decay (``cfg.layer_decay``; ``layer_decay=1``
    trains every layer at the same rate, as :func:`from_scratch` does), a head that learns
    ``cfg.head_lr_scale`` times faster, cross-entropy, light augmentation
    (:func:`finetune_augment`). MAE adds mixup, cutmix and drop-path, which a few CPU minutes
    do not need. The caller's encoder is left unchanged.

    Args:
        budget_s: seconds (default ``cfg.finetune_s``).
        steps: spend the budget in exactly this many optimizer steps; default
            ``cfg.finetune_steps`` when ``budget_s`` is the config's, else the wall clock.
        layer_decay: override ``cfg.layer_decay``.

    Returns:
        The test accuracy in [0, 1].
    """
    if budget_s is None:
        budget_s, steps = cfg.finetune_s, cfg.finetune_steps if steps is None else steps
    budget_s = float(budget_s)
    if len(train_x) != len(train_y) or len(test_x) != len(test_y):
        raise ValueError("finetune needs as many labels as images, for training and for testing")
    device = pick_device(device)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)  # CPU: the same views on any device
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    head = nn.Linear(encoder.feature_dim, num_classes)
    nn.init.trunc_normal_(head.weight, std=2e-5)  # MAE's fine-tuning head initialisation
    nn.init.zeros_(head.bias)
    model = nn.Sequential(mae.PooledFeatures(copy.deepcopy(encoder)), head).to(device)
    layer_decay = cfg.layer_decay if layer_decay is None else float(layer_decay)
    if not 0 < layer_decay <= 1:
        raise ValueError(f"layer_decay must be in (0, 1], got {layer_decay}")
    groups = _finetune_groups(
        model, cfg.finetune_lr, cfg.finetune_weight_decay, layer_decay, cfg.head_lr_scale
    )
    optimizer = torch.optim.AdamW(groups, lr=cfg.finetune_lr, betas=(0.9, 0.999))
    loader = TensorLoader(
        train_x,
        train_y,
        batch_size=min(cfg.finetune_batch_size, len(train_x)),
        seed=seed,
        device=device,
    )
    view = finetune_augment(generator)

    def step(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> dict:
        images, labels = batch  # [B, C, H, W], [B]
        logits = model(view(as_float_images(images)))  # [B, K classes]
        accuracy = (logits.detach().argmax(dim=1) == labels).float().mean()
        return {"loss": F.cross_entropy(logits, labels), "acc": accuracy}

    config = TrainConfig(
        epochs=cfg.max_epochs, budget_s=budget_s, progress=progress, desc="fine-tune", grad_clip=5.0
    )
    with counted_in_steps(steps):
        train(
            step,
            model,
            optimizer,
            loader,
            config,
            scheduler=BudgetCosine(optimizer, budget_s, warmup=cfg.warmup),
        )
    logits = extract_features(model, test_x)  # [M, K classes]
    return float((logits.argmax(dim=1) == test_y.cpu()).float().mean())


def from_scratch(
    mae: ModuleType,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    cfg: MAEConfig,
    *,
    budget_s: float | None = None,
    steps: int | None = None,
    seed: int = 0,
    device: str | torch.device | None = "cpu",
    progress: bool = False,
) -> float:
    """The same ViT from random initialisation, trained with :func:`finetune`'s recipe.

    Every layer at the same learning rate (layer decay 1: there is nothing pretrained to
    protect). The baseline MAE must beat: by default for ``cfg.scratch_s`` seconds, the TOTAL
    time of pretraining plus fine-tuning; ``budget_s=cfg.finetune_s`` gives the same
    labelled-training time. ``steps``: as in :func:`finetune` (default ``cfg.scratch_steps``
    when ``budget_s`` is the config's). Returns the test accuracy in [0, 1].
    """
    if budget_s is None:
        budget_s, steps = cfg.scratch_s, cfg.scratch_steps if steps is None else steps
    torch.manual_seed(seed)
    encoder = build_encoder(mae, cfg, train_x.shape[-1], train_x.shape[1])
    return finetune(
        mae,
        encoder,
        train_x,
        train_y,
        test_x,
        test_y,
        cfg,
        budget_s=float(budget_s),
        steps=steps,
        seed=seed,
        device=device,
        progress=progress,
        layer_decay=1.0,
    )


def evaluate_encoder(
    mae: ModuleType,
    encoder: nn.Module,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    cfg: MAEConfig | None = None,
) -> dict[str, float]:
    """``{"knn": acc, "linear": acc}`` of the frozen encoder's pooled features, in [0, 1].

    ``replearn.evaluate.knn_and_linear`` on the pooled tokens (the module's ``PooledFeatures``):
    kNN with ``cfg.knn_k`` neighbours, a linear probe of ``cfg.probe_iters`` iterations. MAE's features are known to be
    weaker under a linear probe than under fine-tuning ("linear probing and fine-tuning
    results are largely uncorrelated", He et al., Sec. 4.3).
    """
    k, iters = (cfg.knn_k, cfg.probe_iters) if cfg is not None else (20, 100)
    features = mae.PooledFeatures(encoder)
    train_feats = extract_features(features, train_x)  # [N, D]
    test_feats = extract_features(features, test_x)  # [M, D]
    return knn_and_linear(train_feats, train_y, test_feats, test_y, k=k, max_iter=iters)


@torch.no_grad()
def reconstruct(
    mae: ModuleType,
    model: nn.Module,
    images: torch.Tensor,
    mask_ratio: float = 0.75,
    generator: torch.Generator | None = None,
    fill: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The lecture's picture: masked input, prediction (visible patches pasted), original.

    ``model`` is the module's ``MaskedAutoencoder``; the module's ``patchify`` and ``unpatchify``
    cut and paste the patches. Like MAE's demo notebook: ``im_masked = x * (1 - mask)`` (here the hidden patches are
    grey, ``fill``) and ``im_paste = x * (1 - mask) + y * mask``. With a norm-pix model the
    prediction is in per-patch normalised units; each predicted patch is mapped back with the
    TRUE patch's mean and variance (the visualisation MAE's authors use; the model never
    sees them).

    Returns:
        ``(masked_input, prediction, original)``, each float ``[N, C, H, W]`` in [0, 1], for
        ``replearn.viz.reconstructions(original, prediction, masked=masked_input)``.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    x = as_float_images(images.to(device))  # [N, C, H, W]
    out = model(x, mask_ratio, generator)
    pred, p, c = out["pred"], model.patch_size, x.shape[1]  # [N, L, p*p*C]
    if model.norm_pix_loss:
        target = mae.patchify(x, p)  # [N, L, p*p*C]
        mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
        pred = pred * (var + mae.NORM_PIX_EPS).sqrt() + mean  # [N, L, p*p*C]
    predicted = mae.unpatchify(pred, p, c)  # [N, C, H, W]
    hidden = mae.unpatchify(out["mask"][..., None].expand(-1, -1, p * p * c), p, c)  # [N, C, H, W]
    model.train(was_training)
    masked_input = x * (1 - hidden) + fill * hidden  # [N, C, H, W]
    pasted = (x * (1 - hidden) + predicted * hidden).clamp(0, 1)  # [N, C, H, W]
    return masked_input.cpu(), pasted.cpu(), x.cpu()


# ---- the pretraining entry point's method (python -m replearn.pretrain --method mae) ---------


def _mae_step(ctx: StepContext, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """:func:`pretrain`'s step: each rank masks its share with its generator."""
    x = as_float_images(images)  # [n, C, H, W]
    return {"loss": ctx.trained(x, ctx.cfg.mask_ratio, ctx.generator)["loss"]}


def _evaluate(mae: ModuleType, encoder: nn.Module, data: ImageData, cfg: MAEConfig) -> dict:
    return evaluate_encoder(mae, encoder, data.x_train, data.y_train, data.x_test, data.y_test, cfg)


PRETRAIN_METHODS = (
    PretrainMethod(
        name="mae",
        module="masked_autoencoders",
        config=lambda mae, preset: MAEConfig.from_preset(preset),
        budget=lambda cfg: cfg.pretrain_s,
        build=lambda mae, cfg, encoder, data: build_mae(
            mae, cfg, data.image_shape[-1], data.image_shape[0]
        ),
        step=_mae_step,
        optimizer=_mae_optimizer,
        evaluate=_evaluate,
        backbone=False,
        description="masked autoencoder, a ViT on the visible patches (--backbone does not apply)",
    ),
)
