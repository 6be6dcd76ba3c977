# Generated from solutions/autoencoders.py by `python -m instructor.release starter`.
# Course authors: edit solutions/autoencoders.py, never this file. Students: keep the names
# and signatures as they are, and replace each `raise NotImplementedError(...)` with your code.
"""Assignment 2: representation learning from reconstruction (autoencoders and an RBM).

The lecture's 2000s, in its order ("Representation Learning in the 2000s": layer-wise RBM,
sparse coding, autoencoding):

1. Autoencoder: an encoder squeezes the image ``x`` (``D = C*H*W`` numbers) into a code ``h``
   with ``H < D`` numbers, a decoder rebuilds ``x_hat`` from it, and the loss is the lecture's
   ``L(x) = R(x, x_hat) = ||x - x_hat||_2^2``: :class:`ConvAutoencoder`,
   :func:`reconstruction_loss`.
2. Sparse autoencoder: ``L(x) = R(x, x_hat) + lambda ||h||_1`` ("reconstruct inputs with sparse
   activations (mostly 0)"), or the KL penalty of Ng's CS294A notes:
   :func:`l1_sparsity_penalty`, :func:`kl_sparsity_penalty`, :func:`sparsity`,
   :func:`sparse_autoencoder_loss`.
3. Denoising autoencoder: "reconstruct noisy inputs (pixels randomly set to zero)":
   :func:`mask_pixels`, :func:`denoising_loss`.
4. Greedy layer-wise pretraining of a stacked autoencoder, then fine-tuning (Bengio et al.
   2007; Hinton and Salakhutdinov 2006 stacked RBMs): :class:`StackedAutoencoder`,
   :func:`layer_input`, :func:`layer_reconstruction_loss`, :func:`pretrain_layer`,
   :func:`finetune_stack`.
5. A restricted Boltzmann machine trained with one step of contrastive divergence (Hinton
   2002): :func:`free_energy`, :func:`sample_hidden`, :func:`sample_visible`, :func:`cd1_update`.

Every model is then judged the same way (the lecture's stage 2): a linear probe and a kNN
classifier on its codes (``replearn.evaluate``), beside raw pixels and a randomly initialised
encoder of the same architecture.

Shapes use the package legend (``docs/internals.md``): ``D`` is the code width (the lecture's
hidden size H); local letters: ``D_v``, ``D_h`` the RBM's visible and hidden units. Your parts:
replace every ``raise NotImplementedError``; everything else is given. The experiments around
them (settings per preset, training loops, probes) are ``replearn.recipes.autoencoders``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from replearn.train import draw

# The losses are written by hand: the grader rejects these names inside the listed functions.
BANNED_APIS = {
    "reconstruction_loss": [
        "torch.nn.functional.mse_loss",
        "torch.nn.MSELoss",
        "torch.nn.functional.l1_loss",
        "torch.nn.functional.smooth_l1_loss",
        "torch.nn.functional.huber_loss",
        "torch.nn.functional.binary_cross_entropy",
    ],
    "l1_sparsity_penalty": [
        "torch.nn.functional.l1_loss",
        "torch.nn.L1Loss",
        "torch.norm",
        "torch.linalg.norm",
        "torch.linalg.vector_norm",
        "torch.Tensor.norm",
    ],
    "kl_sparsity_penalty": [
        "torch.nn.functional.kl_div",
        "torch.nn.KLDivLoss",
        "torch.distributions.kl.kl_divergence",
        "torch.distributions.kl_divergence",
        "torch.nn.functional.binary_cross_entropy",
    ],
    "mask_pixels": [
        "torch.nn.functional.dropout",
        "torch.nn.functional.dropout2d",
        "torch.nn.Dropout",
        "torch.nn.Dropout2d",
    ],
    "cd1_update": ["torch.autograd.grad", "torch.Tensor.backward"],
}


def hello() -> str:
    """Import check: the notebook calls this first to show which file it loaded."""
    return "autoencoders: ready"


# ==============================================================================================
# Part 1. The autoencoder: a bottleneck and the reconstruction loss
# ==============================================================================================


class ConvAutoencoder(nn.Module):
    """A convolutional encoder, a bottleneck code ``h`` of width ``code_dim``, and a decoder.

    "Autoencoder tries to reconstruct inputs. Hidden layer (hopefully) learns good
    representations. H < D to get non-trivial hidden representations." (lecture)

    Build exactly these layers (the grader loads your weights into its own copy by name):

    * ``self.encoder = nn.Sequential(...)``: for each width ``w`` in ``widths``:
      ``nn.Conv2d(prev, w, kernel_size=4, stride=2, padding=1)``, ``nn.BatchNorm2d(w)``,
      ``nn.ReLU()`` (``prev`` starts at ``in_channels``; each block halves the image side);
      then ``nn.Flatten()`` and ``nn.Linear(widths[-1] * s * s, code_dim)`` where
      ``s = image_size // 2 ** len(widths)`` is the side of the last map.
    * ``self.decoder = nn.Sequential(...)``, the mirror image:
      ``nn.Linear(code_dim, widths[-1] * s * s)``, ``nn.Unflatten(1, (widths[-1], s, s))``,
      ``nn.ReLU()``; then for each width from the last to the first, except the first:
      ``nn.ConvTranspose2d(w_k, w_{k-1}, kernel_size=4, stride=2, padding=1)``,
      ``nn.BatchNorm2d(w_{k-1})``, ``nn.ReLU()``; finally
      ``nn.ConvTranspose2d(widths[0], in_channels, kernel_size=4, stride=2, padding=1)`` and
      ``nn.Sigmoid()`` (pixels live in [0, 1]).

    ``code_activation`` is applied to the encoder's output in :meth:`encode`: ``"none"`` (a
    linear code), ``"relu"`` (codes that can be exactly 0: the L1 sparse autoencoder) or
    ``"sigmoid"`` (codes in (0, 1), the KL sparsity penalty's "firing rates").

    Shapes: ``x [N, C, H, W]`` -> ``h [N, D]`` -> ``x_hat [N, C, H, W]``.
    """

    CODE_ACTIVATIONS = ("none", "relu", "sigmoid")

    def __init__(
        self,
        in_channels: int = 3,
        image_size: int = 32,
        widths: Sequence[int] = (32, 64, 128),
        code_dim: int = 256,
        code_activation: str = "none",
    ):
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if not widths or min(widths) < 1:
            raise ValueError(f"widths must be a non-empty list of positive ints, got {widths}")
        if image_size % 2 ** len(widths):
            raise ValueError(
                f"image_size {image_size} must be divisible by 2**len(widths) = "
                f"{2 ** len(widths)} (each block halves the side); use fewer widths or pad "
                "the images (e.g. MNIST 28 px works with 2 widths: 28 -> 14 -> 7)"
            )
        if code_activation not in self.CODE_ACTIVATIONS:
            raise ValueError(
                f"code_activation must be one of {self.CODE_ACTIVATIONS}, got {code_activation!r}"
            )
        self.in_channels, self.image_size, self.widths = int(in_channels), int(image_size), widths
        self.code_dim, self.code_activation = int(code_dim), code_activation
        side = image_size // 2 ** len(widths)  # s, the side of the last feature map
        raise NotImplementedError("Implement ConvAutoencoder.__init__: see its docstring")

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``[N, C, H, W]`` in [0, 1] -> codes ``[N, D]`` (after ``code_activation``)."""
        raise NotImplementedError("Implement ConvAutoencoder.encode: see its docstring")

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        """Codes ``[N, D]`` -> reconstructions ``[N, C, H, W]`` in [0, 1]."""
        raise NotImplementedError("Implement ConvAutoencoder.decode: see its docstring")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x_hat [N, C, H, W], h [N, D])``."""
        h = self.encode(x)  # [N, D]
        return self.decode(h), h


def reconstruction_loss(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """The lecture's ``R(x, x_hat) = ||x - x_hat||_2^2``, averaged over the batch.

    The squared error is *summed* over every number of one sample (all channels and pixels,
    whatever the shape after the batch dimension) and then *averaged* over the ``N`` samples,
    so that it does not depend on the batch size but grows with the image size, as the norm
    in the lecture does.

    Args:
        x: ``[N, ...]`` the clean inputs. x_hat: ``[N, ...]`` the reconstructions (same shape).

    Returns:
        A scalar tensor (differentiable). Banned: see ``BANNED_APIS`` (no library MSE).
    """
    if x.shape != x_hat.shape:
        raise ValueError(
            f"x {tuple(x.shape)} and x_hat {tuple(x_hat.shape)} must have the same shape"
        )
    raise NotImplementedError("Implement reconstruction_loss: see its docstring")


# ==============================================================================================
# Part 2. The sparse autoencoder
# ==============================================================================================


def l1_sparsity_penalty(h: torch.Tensor) -> torch.Tensor:
    """``S(h) = ||h||_1``: the sum of ``|h_j|`` over the code, averaged over the batch.

    Args:
        h: ``[N, D]`` codes. Returns a scalar tensor (differentiable).
    """
    raise NotImplementedError("Implement l1_sparsity_penalty: see its docstring")


def kl_sparsity_penalty(h: torch.Tensor, rho: float = 0.05, eps: float = 1e-6) -> torch.Tensor:
    """The sparsity penalty of Ng's CS294A "Sparse autoencoder" notes, for codes in (0, 1).

    "Let ``rho_hat_j = (1/m) sum_i a_j(x_i)`` be the average activation of hidden unit j
    [over the m training examples] ... we would like to (approximately) enforce
    ``rho_hat_j = rho``, where rho is a sparsity parameter, typically a small value close to
    zero"; the penalty is ``sum_j KL(rho || rho_hat_j)`` with
    ``KL(rho || rho_hat) = rho log(rho / rho_hat) + (1 - rho) log((1 - rho) / (1 - rho_hat))``,
    the KL divergence between Bernoulli variables of means rho and rho_hat (Ng, CS294A
    lecture notes, section 2.3). Here the average runs over the batch.

    Args:
        h: ``[N, D]`` codes in [0, 1] (a sigmoid code). rho: the target average activation.
        eps: ``rho_hat`` is clamped to ``[eps, 1 - eps]`` so that the logs stay finite.

    Returns:
        A scalar tensor, 0 exactly when every unit's average activation equals ``rho``.
    """
    if not 0 < rho < 1:
        raise ValueError(f"rho must be in (0, 1), got {rho!r}")
    raise NotImplementedError("Implement kl_sparsity_penalty: see its docstring")


@torch.no_grad()
def sparsity(h: torch.Tensor, threshold: float = 1e-2) -> float:
    """The fraction of near-zero activations: ``|h| <= threshold``, over all N x D entries.

    Returns a Python float in [0, 1] (1.0: every activation is near zero).
    """
    raise NotImplementedError("Implement sparsity: see its docstring")


def sparse_autoencoder_loss(
    x: torch.Tensor,
    x_hat: torch.Tensor,
    h: torch.Tensor,
    lam: float,
    penalty: str = "l1",
    rho: float = 0.05,
) -> torch.Tensor:
    """``L(x) = R(x, x_hat) + lambda S(h)`` with ``S`` the L1 (``"l1"``) or KL (``"kl"``) penalty.

    Args:
        x, x_hat: ``[N, C, H, W]``. h: ``[N, D]``. lam: lambda >= 0. rho: the KL target.
    """
    if penalty not in ("l1", "kl"):
        raise ValueError(f"penalty must be 'l1' or 'kl', got {penalty!r}")
    raise NotImplementedError("Implement sparse_autoencoder_loss: see its docstring")


# ==============================================================================================
# Part 3. The denoising autoencoder
# ==============================================================================================


def mask_pixels(
    x: torch.Tensor, fraction: float, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Masking noise: set a fraction of each image's pixels to zero.

    Vincent et al. 2010 (JMLR, "Stacked Denoising Autoencoders", section 4.2): "Masking noise
    (MN): a fraction nu of the elements of x (chosen at random for each example) is forced to
    0". Here the elements are *pixels*: the same pixel positions are zeroed in every channel.

    For each image, exactly ``round(fraction * H * W)`` pixel positions, drawn at random and
    independently of the other images (e.g. the first ``k`` positions of a random permutation,
    or the ``k`` smallest of ``H * W`` uniform numbers), using ``generator`` for every random
    draw so that a seeded generator gives the same masks. ``x`` may be on a GPU while the
    generator is the course's CPU generator (a CUDA kernel refuses it): draw by the course's
    rule, ``replearn.train.draw`` (imported here), which draws where the generator lives and
    moves the numbers to ``x``'s device, e.g. ``draw(torch.rand, N, H * W, generator=generator,
    device=x.device)``.

    Args:
        x: ``[N, C, H, W]`` clean images. fraction: in [0, 1].
        generator: the source of randomness (None: torch's global one).

    Returns:
        ``(x_noisy [N, C, H, W], mask [N, 1, H, W] bool)``, ``mask`` True where a pixel was
        zeroed; ``x`` itself is not modified.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction!r}")
    if x.ndim != 4:
        raise ValueError(f"x must be [N, C, H, W], got shape {tuple(x.shape)}")
    raise NotImplementedError("Implement mask_pixels: see its docstring")


def denoising_loss(
    model: ConvAutoencoder,
    x: torch.Tensor,
    fraction: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The denoising autoencoder's loss: corrupt ``x`` with :func:`mask_pixels`, reconstruct
    from the corrupted copy, and compare with the *clean* ``x``: ``R(x, g(f(x_noisy)))``.

    "The key difference [from a basic autoencoder] is that z is now a deterministic function
    of x_tilde rather than x" (Vincent et al. 2010, section 3.3), while the loss still
    measures the distance to the uncorrupted x.

    Args:
        model: a :class:`ConvAutoencoder`. x: ``[N, C, H, W]`` clean images in [0, 1].
    """
    raise NotImplementedError("Implement denoising_loss: see its docstring")


# ==============================================================================================
# Part 4. Greedy layer-wise pretraining of a stacked autoencoder
# ==============================================================================================


class StackedAutoencoder(nn.Module):
    """A deep fully connected autoencoder made of one small autoencoder per layer (given).

    ``dims = (D_0, D_1, ..., D_L)``: layer ``k`` has an encoder ``encoders[k]``
    (``Linear(D_k, D_{k+1})``) and a decoder ``decoders[k]`` (``Linear(D_{k+1}, D_k)``), each
    followed by a sigmoid, as in Hinton and Salakhutdinov's deep autoencoders (2006). The whole
    stack encodes ``x -> h_1 -> ... -> h_L`` and decodes back ``h_L -> ... -> x_hat``.

    Inputs are flattened images in [0, 1], ``[N, D_0]``.
    """

    def __init__(self, dims: Sequence[int] = (784, 512, 256, 64)):
        super().__init__()
        dims = tuple(int(d) for d in dims)
        if len(dims) < 2 or min(dims) < 1:
            raise ValueError(f"dims needs at least two positive widths, got {dims}")
        self.dims = dims
        self.encoders = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.decoders = nn.ModuleList(nn.Linear(b, a) for a, b in zip(dims[:-1], dims[1:]))

    @property
    def num_layers(self) -> int:
        return len(self.encoders)

    def encode(self, x: torch.Tensor, upto: int | None = None) -> torch.Tensor:
        """``[N, D_0]`` -> the activations of layer ``upto`` (default: the code), ``[N, D_upto]``."""
        upto = self.num_layers if upto is None else upto
        for k in range(upto):
            x = torch.sigmoid(self.encoders[k](x))  # [N, D_{k+1}]
        return x

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        """The code ``[N, D_L]`` -> the reconstruction ``[N, D_0]``, through every decoder."""
        for k in reversed(range(self.num_layers)):
            h = torch.sigmoid(self.decoders[k](h))  # [N, D_k]
        return h

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encode(x)  # [N, D_L]
        return self.decode(h), h


def layer_input(stack: StackedAutoencoder, x: torch.Tensor, k: int) -> torch.Tensor:
    """What layer ``k`` sees: ``x`` encoded by the (frozen) layers ``0 .. k-1``, ``[N, D_k]``.

    Computed without gradients: in greedy training the lower layers are already trained and
    are not changed by the training of layer ``k`` ("each layer is trained as an autoencoder
    on the output of the layer below", Bengio et al. 2007). ``k = 0`` gives ``x`` itself.
    """
    if not 0 <= k < stack.num_layers:
        raise ValueError(f"layer k must be in 0..{stack.num_layers - 1}, got {k}")
    raise NotImplementedError("Implement layer_input: see its docstring")


def layer_reconstruction_loss(stack: StackedAutoencoder, x: torch.Tensor, k: int) -> torch.Tensor:
    """Layer ``k`` as a one-layer autoencoder of its input ``a = layer_input(stack, x, k)``:
    ``a_hat = sigmoid(decoders[k](sigmoid(encoders[k](a))))``, loss
    ``reconstruction_loss(a, a_hat)``. Gradients reach only layer ``k``'s parameters.
    """
    raise NotImplementedError("Implement layer_reconstruction_loss: see its docstring")


def pretrain_layer(
    stack: StackedAutoencoder,
    k: int,
    x: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float = 1e-3,
    generator: torch.Generator | None = None,
) -> list[float]:
    """Train layer ``k`` alone, the layers below frozen; return the loss of every step.

    Follow these steps exactly (the grader compares your weights with the reference):
    ``torch.optim.Adam`` over the parameters of ``encoders[k]`` and ``decoders[k]`` only, at
    ``lr``; for each of ``epochs`` epochs, a random order ``torch.randperm(N, generator=generator)``
    and batches of ``batch_size`` consecutive indices of it (the last one may be smaller); per
    batch, :func:`layer_reconstruction_loss`, ``zero_grad``, ``backward``, ``step``.

    Args:
        x: ``[N, D_0]`` flattened images in [0, 1].
    """
    raise NotImplementedError("Implement pretrain_layer: see its docstring")


def finetune_stack(
    stack: StackedAutoencoder,
    x: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float = 1e-3,
    generator: torch.Generator | None = None,
) -> list[float]:
    """Train the whole stack end to end on ``reconstruction_loss(x, stack(x)[0])``.

    After greedy pretraining this is the fine-tuning stage of Hinton and Salakhutdinov
    ("the [pretrained] autoencoder is then fine-tuned ... for optimal reconstruction"); from a
    random initialisation it is the end-to-end baseline. The same loop as
    :func:`pretrain_layer`, with ``torch.optim.Adam`` over *every* parameter of the stack.
    Returns the loss of every step.
    """
    raise NotImplementedError("Implement finetune_stack: see its docstring")


def greedy_pretrain(
    stack: StackedAutoencoder,
    x: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float = 1e-3,
    generator: torch.Generator | None = None,
) -> dict[int, list[float]]:
    """Greedy layer-wise pretraining (given): :func:`pretrain_layer` for ``k = 0, 1, ...``."""
    return {
        k: pretrain_layer(
            stack, k, x, epochs=epochs, batch_size=batch_size, lr=lr, generator=generator
        )
        for k in range(stack.num_layers)
    }


# ==============================================================================================
# Part 5. A restricted Boltzmann machine and contrastive divergence (CD-1)
# ==============================================================================================


def free_energy(v: torch.Tensor, W: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """The free energy of a binary RBM, ``F(v) = -b.v - sum_j log(1 + exp(c_j + (W^T v)_j))``.

    The RBM's energy is ``E(v, h) = -b.v - c.h - v^T W h`` and ``p(v) = exp(-F(v)) / Z`` with
    ``F(v) = -log sum_h exp(-E(v, h))``: summing the binary hidden units out gives the formula
    above (each ``h_j`` contributes ``log(1 + exp(c_j + v.W[:, j]))``).

    Args:
        v: ``[N, D_v]`` visible vectors (binary, or probabilities). W: ``[D_v, D_h]``.
        b: ``[D_v]`` visible biases. c: ``[D_h]`` hidden biases.

    Returns:
        ``[N]`` free energies. Compute ``log(1 + exp(t))`` stably (``F.softplus``, or
        ``max(t, 0) + log(1 + exp(-|t|))``): ``exp`` of a large ``t`` overflows.
    """
    raise NotImplementedError("Implement free_energy: see its docstring")


def sample_hidden(
    v: torch.Tensor, W: torch.Tensor, c: torch.Tensor, noise: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``p(h_j = 1 | v) = sigmoid(c_j + (v W)_j)`` and a binary sample of it.

    The hidden units are independent given ``v`` (no hidden-hidden connections: the
    "restricted" in RBM). The sample is ``h = 1`` where ``noise < p`` and 0 elsewhere, so
    that a given ``noise`` (uniform in [0, 1), ``[N, D_h]``) fixes the result.

    Returns:
        ``(p_h [N, D_h], h [N, D_h])``, both float, ``h`` in {0, 1}.
    """
    raise NotImplementedError("Implement sample_hidden: see its docstring")


def sample_visible(
    h: torch.Tensor, W: torch.Tensor, b: torch.Tensor, noise: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``p(v_i = 1 | h) = sigmoid(b_i + (W h)_i)`` and a binary sample (``noise < p``).

    Args:
        h: ``[N, D_h]``. noise: uniform ``[N, D_v]``. Returns ``(p_v [N, D_v], v [N, D_v])``.
    """
    raise NotImplementedError("Implement sample_visible: see its docstring")


@torch.no_grad()
def cd1_update(
    v0: torch.Tensor,
    W: torch.Tensor,
    b: torch.Tensor,
    c: torch.Tensor,
    noise_h: torch.Tensor,
    noise_v: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One step of contrastive divergence (CD-1): an estimate of the log-likelihood gradient.

    The gradient of ``log p(v)`` is ``<v h^T>_data - <v h^T>_model``; the model expectation is
    intractable, and CD-1 replaces it by one step of Gibbs sampling started at the data
    (Hinton 2002, "Training Products of Experts by Minimizing Contrastive Divergence";
    Hinton 2010, "A Practical Guide to Training RBMs", sections 3 and 3.3):

    1. positive phase: ``p_h0, h0 = sample_hidden(v0, W, c, noise_h)``;
    2. reconstruction: ``_, v1 = sample_visible(h0, W, b, noise_v)`` (driven by the *binary*
       ``h0``, "to avoid overfitting the hidden units must ... communicate only binary
       values");
    3. negative phase: ``p_h1 = p(h = 1 | v1)`` (probabilities, no sampling: less noise);
    4. ``dW = (v0^T p_h0 - v1^T p_h1) / N``, ``db = mean(v0 - v1)``, ``dc = mean(p_h0 - p_h1)``
       (means over the batch).

    The caller ascends: ``W += lr * dW`` (and likewise ``b``, ``c``).

    Args:
        v0: ``[N, D_v]`` a batch of binary data. W ``[D_v, D_h]``, b ``[D_v]``, c ``[D_h]``.
        noise_h: uniform ``[N, D_h]``. noise_v: uniform ``[N, D_v]``.

    Returns:
        ``(dW [D_v, D_h], db [D_v], dc [D_h])``. No autograd here (see ``BANNED_APIS``).
    """
    raise NotImplementedError("Implement cd1_update: see its docstring")


class RBM(nn.Module):
    """A binary restricted Boltzmann machine's parameters, trained with :func:`cd1_update` (given).

    ``W [D_v, D_h]`` starts at ``N(0, 0.01^2)`` and the hidden biases at 0 ("A Practical Guide
    to Training RBMs", section 8); the recipe's ``train_rbm`` sets the visible biases from the
    data. The parameters are buffers: they are updated by hand, never by autograd.
    """

    def __init__(self, num_visible: int, num_hidden: int, generator: torch.Generator | None = None):
        super().__init__()
        self.register_buffer("W", 0.01 * torch.randn(num_visible, num_hidden, generator=generator))
        self.register_buffer("b", torch.zeros(num_visible))  # [D_v]
        self.register_buffer("c", torch.zeros(num_hidden))  # [D_h]

    def hidden_probs(self, v: torch.Tensor) -> torch.Tensor:
        """``p(h = 1 | v)`` ``[N, D_h]``: the RBM's code of a (flattened) image."""
        return torch.sigmoid(v.flatten(1) @ self.W + self.c)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return self.hidden_probs(v)
