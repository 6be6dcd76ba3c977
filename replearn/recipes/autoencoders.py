"""Assignment 2's experiments: the settings per preset, the training loops (the autoencoders
through ``replearn.train.train``, the RBM by hand), the codes and the probes.

Functions that run one of the student's parts take the student's module ``aec`` first.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType

import torch
import torch.nn as nn

from replearn.data import as_float_images, to_float
from replearn.evaluate import extract_features, knn_accuracy, linear_probe
from replearn.recipes.common import counted_in_steps
from replearn.train import History, TensorLoader, TrainConfig, draw, train

__all__ = [
    "AutoencoderConfig",
    "CodeEncoder",
    "binarize",
    "encode_images",
    "evaluate_codes",
    "flat_images",
    "gibbs_samples",
    "mean_sparsity",
    "reconstruction_error",
    "train_autoencoder",
    "train_rbm",
]


@dataclass(frozen=True)
class AutoencoderConfig:
    """The experiment settings of the notebook and the benchmark, per preset.

    In ``smoke`` and ``cpu-quick`` each autoencoder's budget of seconds is spent in a count of
    optimizer steps (``mnist_steps``, ``cifar_steps``, ``cifar_ae_steps``: what an idle 2-core
    machine does in those seconds) and the RBM trains for ``rbm_epochs`` with no clock
    (``rbm_budget_s`` None), so that a rerun repeats its numbers whatever the machine's load;
    the GPU presets keep the wall clock.
    """

    cifar_widths: tuple[int, ...]  # ConvAutoencoder widths on CIFAR-10 (32 px)
    cifar_code: int  # D of the CIFAR-10 code (D < 3 * 32 * 32 = 3072)
    cifar_budget_s: float  # wall-clock seconds of the CIFAR-10 denoising autoencoder
    cifar_ae_budget_s: float  # the plain CIFAR-10 autoencoder (0: skipped)
    mask_fraction: float  # masking noise of the denoising autoencoder
    mnist_train_per_class: int | None
    mnist_test_per_class: int | None
    mnist_widths: tuple[int, ...]  # ConvAutoencoder widths on MNIST (28 px: two blocks)
    mnist_code: int  # the default MNIST code width
    mnist_budget_s: float  # seconds per MNIST autoencoder
    bottlenecks: tuple[int, ...]  # code widths of the bottleneck sweep (MNIST)
    lambdas: tuple[float, ...]  # L1 strengths of the sparse sweep (MNIST); 0 = no penalty
    kl_lambda: float  # strength of the KL penalty (one run)
    kl_rho: float  # its target average activation
    stack_dims: tuple[int, ...]  # the stacked autoencoder (MNIST)
    stack_epochs: int  # epochs per greedy layer and of fine-tuning
    rbm_hidden: int
    rbm_epochs: int
    rbm_budget_s: float | None  # seconds; None: all rbm_epochs
    batch_size: int = 128
    lr: float = 2e-3
    mnist_steps: int | None = None  # optimizer steps per MNIST autoencoder; None: seconds
    cifar_steps: int | None = None  # of the CIFAR-10 denoising autoencoder
    cifar_ae_steps: int | None = None  # of the plain CIFAR-10 autoencoder

    @staticmethod
    def from_preset(preset) -> AutoencoderConfig:
        if preset.name == "smoke":
            return AutoencoderConfig(
                cifar_widths=(8, 16, 32),
                cifar_code=32,
                cifar_budget_s=2.0,
                cifar_ae_budget_s=0.0,
                mask_fraction=0.5,
                mnist_train_per_class=20,
                mnist_test_per_class=10,
                mnist_widths=(8, 16),
                mnist_code=16,
                mnist_budget_s=1.0,
                bottlenecks=(4, 16),
                lambdas=(0.0, 0.3),
                kl_lambda=1.0,
                kl_rho=0.05,
                stack_dims=(784, 64, 16),
                stack_epochs=1,
                rbm_hidden=16,
                rbm_epochs=1,
                rbm_budget_s=None,
                batch_size=32,
                mnist_steps=4,
                cifar_steps=4,
            )
        if preset.name == "cpu-quick":
            return AutoencoderConfig(
                cifar_widths=(32, 64, 128),
                cifar_code=256,
                cifar_budget_s=preset.scaled(100),
                cifar_ae_budget_s=0.0,
                mask_fraction=0.5,
                mnist_train_per_class=1000,
                mnist_test_per_class=100,
                mnist_widths=(32, 64),
                mnist_code=64,
                mnist_budget_s=preset.scaled(8),
                bottlenecks=(4, 16, 64),
                lambdas=(0.0, 0.1, 0.5),
                kl_lambda=3.0,
                kl_rho=0.05,
                stack_dims=(784, 256, 128, 32),
                stack_epochs=2,
                rbm_hidden=1024,
                rbm_epochs=20,  # about what an idle 2-core machine does in 25 s
                rbm_budget_s=None,
                # an idle 2-core machine's steps in the 8 s and 100 s above (benchmarks/README.md)
                mnist_steps=200,
                cifar_steps=1100,
            )
        # colab: sized to the notebook header's time on a T4 (benchmarks/README.md, "Colab budgets")
        colab = preset.name == "colab"
        cifar_s, cifar_ae_s, mnist_s, rbm_s = (80, 40, 5, 20) if colab else (180, 60, 10, 30)
        return AutoencoderConfig(
            cifar_widths=(64, 128, 256),
            cifar_code=512,
            cifar_budget_s=preset.scaled(cifar_s),
            cifar_ae_budget_s=preset.scaled(cifar_ae_s),
            mask_fraction=0.5,
            mnist_train_per_class=None,
            mnist_test_per_class=None,
            mnist_widths=(32, 64),
            mnist_code=64,
            mnist_budget_s=preset.scaled(mnist_s),
            bottlenecks=(4, 16, 64, 256),
            lambdas=(0.0, 0.03, 0.1, 0.3, 1.0),
            kl_lambda=3.0,
            kl_rho=0.05,
            stack_dims=(784, 512, 256, 64),
            stack_epochs=5,
            rbm_hidden=1024,
            rbm_epochs=50,
            rbm_budget_s=preset.scaled(rbm_s),
        )


# ---- data ------------------------------------------------------------------------------------


def binarize(images: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """uint8 or float images -> flattened binary vectors ``[N, C*H*W]`` (pixel > threshold)."""
    return (as_float_images(images).flatten(1) > threshold).float()  # [N, C*H*W]


def flat_images(images: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float ``[N, C*H*W]`` in [0, 1] (the stacked autoencoder's input)."""
    return to_float(images).flatten(1)


# ---- training --------------------------------------------------------------------------------


def train_autoencoder(
    aec: ModuleType,
    model: nn.Module,
    images: torch.Tensor,
    *,
    kind: str = "ae",
    budget_s: float | None = None,
    epochs: int | None = None,
    steps: int | None = None,
    batch_size: int = 128,
    lr: float = 2e-3,
    lam: float = 0.0,
    penalty: str = "l1",
    rho: float = 0.05,
    mask_fraction: float = 0.5,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> History:
    """Train the module's ``ConvAutoencoder`` with ``replearn.train.train``; return its history.

    ``kind``: ``"ae"`` (``aec.reconstruction_loss``), ``"sparse"`` (its two penalties with
    ``lam``, ``penalty``, ``rho``) or ``"dae"`` (``aec.denoising_loss`` with ``mask_fraction``).
    AdamW at ``lr``, a random horizontal flip for RGB images, until ``epochs`` or ``budget_s``
    seconds run out (whichever first); with ``steps``, the seconds are spent in exactly that
    many optimizer steps (``counted_in_steps``). The history records the loss, and for the
    sparse autoencoder its two terms.
    """
    if kind not in ("ae", "sparse", "dae"):
        raise ValueError(f"kind must be 'ae', 'sparse' or 'dae', got {kind!r}")
    device = torch.device(device)
    model.to(device)
    generator = torch.Generator().manual_seed(seed)  # masks and flips, on the CPU

    def step_fn(model, batch):
        x = to_float(batch)  # [N, C, H, W] in [0, 1]
        if x.shape[1] == 3:  # flip half of the RGB images left-right
            flip = torch.rand(len(x), generator=generator).to(x.device) < 0.5  # [N]
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        if kind == "dae":
            return aec.denoising_loss(model, x, mask_fraction, generator)
        x_hat, h = model(x)  # [N, C, H, W], [N, D]
        if kind == "ae":
            return aec.reconstruction_loss(x, x_hat)
        recon = aec.reconstruction_loss(x, x_hat)
        if penalty == "l1":
            s = aec.l1_sparsity_penalty(h)
        else:
            s = aec.kl_sparsity_penalty(h, rho)
        return {"loss": recon + lam * s, "recon": recon.detach(), "penalty": s.detach()}

    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    loader = TensorLoader(images, batch_size=batch_size, seed=seed, device=device)
    config = TrainConfig(epochs=epochs, budget_s=budget_s, progress=progress, desc=kind)
    with counted_in_steps(steps):
        return train(step_fn, model, optimizer, loader, config)


@torch.no_grad()
def train_rbm(
    aec: ModuleType,
    rbm: nn.Module,
    v_data: torch.Tensor,
    *,
    epochs: int = 10,
    budget_s: float | None = None,
    batch_size: int = 100,
    lr: float = 0.05,
    momentum: float = 0.5,
    weight_cost: float = 2e-4,
    generator: torch.Generator | None = None,
) -> list[float]:
    """Train ``rbm`` on binary ``v_data [N, D_v]`` with ``aec.cd1_update``; return the mean
    reconstruction error ``||v0 - p(v | h0)||^2`` of every epoch.

    The recipe of "A Practical Guide to Training RBMs" (Hinton 2010): visible biases start at
    ``log(p_i / (1 - p_i))`` of the data's pixel means (section 8), mini-batches of 100
    (section 4), momentum 0.5 (section 9) and a small L2 "weight-cost" 2e-4 on ``W``
    (section 10). The reconstruction error is only a rough guide to progress (section 5).
    """
    device = rbm.W.device  # trained where it lives: ``RBM(...).to(device)`` first
    v_data = v_data.to(device)  # [N, D_v]
    p = v_data.mean(dim=0).clamp(1e-3, 1 - 1e-3)  # [D_v]
    rbm.b.copy_(torch.log(p / (1 - p)))
    velocity = [torch.zeros_like(t) for t in (rbm.W, rbm.b, rbm.c)]
    num_hidden, num_visible = rbm.W.shape[1], rbm.W.shape[0]
    errors, start = [], time.perf_counter()
    for _ in range(epochs):
        order = draw(torch.randperm, len(v_data), generator=generator, device=device)  # [N]
        total = 0.0
        for i in range(0, len(v_data) - batch_size + 1, batch_size):
            v0 = v_data[order[i : i + batch_size]]  # [N_b, D_v]
            noise_h = draw(torch.rand, batch_size, num_hidden, generator=generator, device=device)
            noise_v = draw(torch.rand, batch_size, num_visible, generator=generator, device=device)
            dW, db, dc = aec.cd1_update(v0, rbm.W, rbm.b, rbm.c, noise_h, noise_v)
            dW = dW - weight_cost * rbm.W
            for vel, grad, param in zip(velocity, (dW, db, dc), (rbm.W, rbm.b, rbm.c)):
                vel.mul_(momentum).add_(lr * grad)
                param.add_(vel)
            _, h0 = aec.sample_hidden(v0, rbm.W, rbm.c, noise_h)
            p_v1 = torch.sigmoid(h0 @ rbm.W.T + rbm.b)  # [N_b, D_v]
            total += float(((v0 - p_v1) ** 2).sum(dim=1).mean()) * batch_size
        errors.append(total / (len(v_data) // batch_size * batch_size))
        if budget_s is not None and time.perf_counter() - start > budget_s:
            break
    return errors


@torch.no_grad()
def gibbs_samples(
    aec: ModuleType,
    rbm: nn.Module,
    v: torch.Tensor,
    steps: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Run ``steps`` rounds of block Gibbs sampling ``v -> h -> v`` from ``v [N, D_v]``;
    return the visible probabilities ``p(v | h)`` of the last round, ``[N, D_v]`` (nicer to
    look at than binary samples)."""
    v = v.to(rbm.W.device)  # [N, D_v]
    p_v = v
    for _ in range(steps):
        noise_h = draw(torch.rand, len(v), rbm.W.shape[1], generator=generator, device=v.device)
        _, h = aec.sample_hidden(v, rbm.W, rbm.c, noise_h)  # [N, D_h]
        noise_v = draw(torch.rand, v.shape, generator=generator, device=v.device)  # [N, D_v]
        p_v, v = aec.sample_visible(h, rbm.W, rbm.b, noise_v)  # [N, D_v] each
    return p_v


# ---- codes and probes ------------------------------------------------------------------------


class CodeEncoder(nn.Module):
    """``aec``'s autoencoder (its ``encode``) or RBM (its ``hidden_probs``) as an
    ``images -> codes [N, D]`` module for ``replearn.evaluate.extract_features``."""

    def __init__(
        self, aec: ModuleType, model: nn.Module, flatten: bool = False, binary: bool = False
    ):
        super().__init__()
        self.model, self.flatten, self.binary = model, flatten, binary
        self.rbm = isinstance(model, aec.RBM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.binary:
            x = (x > 0.5).float()
        if self.flatten:
            x = x.flatten(1)  # [N, C*H*W]
        if self.rbm:
            return self.model.hidden_probs(x)  # [N, D_h]
        return self.model.encode(x)  # [N, D]


def encode_images(
    aec: ModuleType, model: nn.Module, images: torch.Tensor, **kwargs
) -> torch.Tensor:
    """The codes ``[N, D]`` of uint8 / float images under ``aec``'s ``model`` (eval mode, no
    gradients, CPU result); ``kwargs`` go to :class:`CodeEncoder`."""
    return extract_features(CodeEncoder(aec, model, **kwargs), images)


def evaluate_codes(
    train_codes: torch.Tensor,
    train_labels: torch.Tensor,
    test_codes: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    weight_decay: float | Sequence[float] | None = None,
) -> dict[str, float]:
    """``{"knn": ..., "linear": ...}``: the course's kNN (k=20, cosine, tau=0.1) and linear
    probe (standardised features, L-BFGS logistic regression, L2 chosen on a validation split
    unless ``weight_decay`` is given)."""
    knn = knn_accuracy(train_codes, train_labels, test_codes, test_labels)
    probe = linear_probe(
        train_codes, train_labels, test_codes, test_labels, weight_decay=weight_decay
    )
    return {"knn": knn, "linear": probe.test_accuracy}


@torch.no_grad()
def reconstruction_error(
    aec: ModuleType, model: nn.Module, images: torch.Tensor, batch_size: int = 500
) -> float:
    """Mean ``aec.reconstruction_loss`` of ``model`` (eval mode) over uint8 / float images; a
    ``StackedAutoencoder`` gets them flattened."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total = 0.0
    for start in range(0, len(images), batch_size):
        x = as_float_images(images[start : start + batch_size].to(device))  # [n, C, H, W]
        if isinstance(model, aec.StackedAutoencoder):
            x = x.flatten(1)  # [n, C*H*W]
        x_hat, _ = model(x)
        total += float(aec.reconstruction_loss(x, x_hat)) * len(x)
    model.train(was_training)
    return total / len(images)


@torch.no_grad()
def mean_sparsity(
    aec: ModuleType, model: nn.Module, images: torch.Tensor, threshold: float = 1e-2
) -> float:
    """``aec.sparsity`` of the codes of ``images`` (eval mode)."""
    return aec.sparsity(encode_images(aec, model, images), threshold)
