"""Assignment 4: contrastive and Siamese representation learning.

"Assume we don't have labels for images, but we know whether some pairs of images are similar
or dissimilar" (lecture). This module builds, in the lecture's order, the losses and training
steps that turn that idea into representations, all on one shared encoder
(``replearn.backbones.SmallCNN``) so that the methods can be compared under one protocol:

1. **Margin contrastive loss** (Hadsell, Chopra & LeCun, CVPR 2006): pull similar pairs
   together, push dissimilar ones apart up to a margin (:func:`margin_contrastive_loss`).
2. **SimCLR** (Chen et al., ICML 2020, arXiv:2002.05709): two augmented views per image, each
   view must find its partner among the other ``2N - 1`` views of the batch (NT-Xent:
   :func:`cosine_similarity_matrix`, :func:`nt_xent_loss_loop`, :func:`nt_xent_loss`), behind a
   small projection head (:class:`ProjectionHead`, :class:`SimCLR`, :func:`simclr_step`).
3. **MoCo** (He et al., CVPR 2020, arXiv:1911.05722): the negatives come from a queue of keys
   encoded by a slowly moving copy of the encoder (:func:`momentum_update`, :class:`KeyQueue`,
   :func:`moco_loss`, :class:`MoCo`).
4. **BYOL** (Grill et al., NeurIPS 2020, arXiv:2006.07733): no negatives at all; an online
   network predicts a momentum target network's projection (:func:`byol_loss`, :class:`BYOL`).
5. **SimSiam** (Chen & He, CVPR 2021, arXiv:2011.10566): not even a momentum network; a
   stop-gradient is what keeps the outputs from collapsing to a constant
   (:func:`simsiam_loss`, :class:`SimSiam`, :func:`output_std`).

The experiments around the parts (settings per preset, the training driver, the evaluation
protocol, the multi-process entry point) are ``replearn.recipes.contrastive_learning``.

Shapes use the package legend (``docs/internals.md``; ``K`` is the MoCo queue's length).
Images are float32 in [0, 1] (``as_float_images`` converts uint8 batches). Your parts: replace
every ``raise NotImplementedError``; everything else is given.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from replearn.data import as_float_images

# Library shortcuts that would do a part for you. The grader reads this literal: using one of
# these inside the function named on the left scores 0 for that function's tests.
# `cosine_similarity_matrix` bans torch's own cosine similarity AND `F.normalize`: the point of
# that part is to write the normalisation z / ||z|| yourself once; every later part may use
# `F.normalize` freely. lightly (installed for the parity tests) implements several losses here.
BANNED_APIS = {
    "cosine_similarity_matrix": [
        "torch.nn.functional.cosine_similarity",
        "torch.cosine_similarity",
        "torch.nn.CosineSimilarity",
        "torch.nn.functional.normalize",
        "sklearn.metrics.pairwise.cosine_similarity",
    ],
    "nt_xent_loss_loop": [
        "torch.nn.functional.cross_entropy",
        "torch.nn.CrossEntropyLoss",
        "lightly.loss.NTXentLoss",
        "lightly.loss.ntx_ent_loss.NTXentLoss",
    ],
    "nt_xent_loss": [
        "lightly.loss.NTXentLoss",
        "lightly.loss.ntx_ent_loss.NTXentLoss",
    ],
    "moco_loss": ["lightly.loss.NTXentLoss", "lightly.loss.ntx_ent_loss.NTXentLoss"],
    "momentum_update": ["lightly.models.utils.update_momentum"],
    "KeyQueue.enqueue": ["lightly.models.modules.memory_bank.MemoryBankModule"],
    "byol_loss": [
        "lightly.loss.NegativeCosineSimilarity",
        "lightly.loss.negative_cosine_similarity.NegativeCosineSimilarity",
    ],
    "simsiam_loss": [
        "lightly.loss.NegativeCosineSimilarity",
        "lightly.loss.negative_cosine_similarity.NegativeCosineSimilarity",
    ],
}


def hello() -> str:
    """Import check: the notebook calls this first to show which file it loaded."""
    return "contrastive_learning: ready"


def _check_pairs(a: torch.Tensor, b: torch.Tensor, names: str = "z1, z2") -> None:
    """Two embedding batches must both be ``[N, D]`` with the same shape and ``N >= 1``."""
    if a.ndim != 2 or a.shape != b.shape or a.shape[0] < 1:
        raise ValueError(
            f"{names} must both be [N, D] with the same shape, got {tuple(a.shape)} and "
            f"{tuple(b.shape)}"
        )


def _check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ValueError(f"the temperature must be positive (e.g. 0.2), got {temperature!r}")


# ==============================================================================================
# Part 1. The margin contrastive loss (Hadsell, Chopra & LeCun, 2006)
# ==============================================================================================


def margin_contrastive_loss(
    z1: torch.Tensor, z2: torch.Tensor, similar: torch.Tensor, margin: float = 1.0
) -> torch.Tensor:
    """Pull similar pairs together, push dissimilar pairs at least ``margin`` apart.

    Hadsell, Chopra & LeCun (2006), "Dimensionality Reduction by Learning an Invariant
    Mapping", Eq. 4: with ``D_W`` the Euclidean distance between the two outputs,
    ``L = (1 - Y) 1/2 (D_W)^2 + Y 1/2 {max(0, m - D_W)}^2``, where ``Y = 0`` marks a similar and
    ``Y = 1`` a dissimilar pair. "The margin defines a radius around G_W(X). Dissimilar pairs
    contribute to the loss function only if their distance is within this radius." The lecture
    writes the same two terms without the factor 1/2, and so do we::

        d = ||z1_i - z2_i||_2
        L_S = d^2                      (similar pair)
        L_D = max(0, m - d)^2          (dissimilar pair)

    and the loss is the mean over the ``N`` pairs. Identical embeddings (``d = 0``) must give a
    finite gradient: the derivative of ``sqrt`` is infinite at 0, so use ``d^2`` itself for
    similar pairs, and clamp ``d^2`` below (by ``1e-12``) before the root of the hinge.

    Args:
        z1, z2: ``[N, D]`` the features of the two images of each pair.
        similar: bool ``[N]``, True where pair ``i`` is similar (a positive pair).
        margin: ``m > 0``.

    Returns:
        A scalar tensor (differentiable).

    Raises:
        ValueError: shapes that do not match, ``similar`` not bool ``[N]``, ``margin <= 0``.
    """
    _check_pairs(z1, z2)
    if similar.dtype != torch.bool or similar.shape != (z1.shape[0],):
        raise ValueError(
            f"similar must be a bool tensor [N] = [{z1.shape[0]}], got {similar.dtype} "
            f"{tuple(similar.shape)}; build it with e.g. labels1 == labels2"
        )
    if not margin > 0:
        raise ValueError(f"the margin must be positive, got {margin!r}")
    ### BEGIN SOLUTION
    squared = (z1 - z2).pow(2).sum(dim=1)  # [N] d^2
    distance = squared.clamp(min=1e-12).sqrt()  # [N] d; the clamp keeps d(sqrt) finite at 0
    push = (margin - distance).clamp(min=0).pow(2)  # [N] L_D = max(0, m - d)^2
    return torch.where(similar, squared, push).mean()  # L_S = d^2, never through sqrt
    ### END SOLUTION


# ==============================================================================================
# Part 2. SimCLR: the NT-Xent loss over 2N views
# ==============================================================================================


def cosine_similarity_matrix(z: torch.Tensor) -> torch.Tensor:
    """All pairwise cosine similarities of the rows of ``z``.

    The lecture's similarity: ``s_ij = phi(x_i)^T phi(x_j) / (||phi(x_i)|| ||phi(x_j)||)``;
    SimCLR calls it ``sim(u, v) = u^T v / ||u|| ||v||`` (Chen et al., 2020, Sec. 2.1).
    Normalise each row to unit length (divide by its L2 norm, clamped below by ``1e-8`` so
    that an all-zero row gives zeros rather than NaN), then one matrix product gives all
    ``M x M`` dot products. Write the normalisation yourself: ``F.normalize`` and torch's
    cosine-similarity functions are banned here (see ``BANNED_APIS``).

    Args:
        z: ``[M, D]``.

    Returns:
        ``[M, M]`` with ``s[i, j] = cos(z_i, z_j)``, ones on the diagonal (for non-zero rows).
    """
    if z.ndim != 2:
        raise ValueError(f"z must be [M, D], got shape {tuple(z.shape)}")
    ### BEGIN SOLUTION
    norms = z.pow(2).sum(dim=1, keepdim=True).sqrt().clamp(min=1e-8)  # [M, 1]
    unit = z / norms  # [M, D]
    return unit @ unit.T  # [M, M]
    ### END SOLUTION


def nt_xent_loss_loop(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent written with plain Python loops, exactly as the lecture writes it.

    Stack the views as ``z = [z1; z2]`` (``2N`` rows: view ``i`` of ``z1`` is row ``i``, its
    partner in ``z2`` is row ``i + N``). For every row ``i`` with positive partner ``j``::

        L_i = -log( exp(s_ij / tau) / sum_{k = 1..2N, k != i} exp(s_ik / tau) )

    and the loss is the mean of ``L_i`` over all ``2N`` rows. SimCLR, Algorithm 1:
    ``L = 1/(2N) sum_k [l(2k-1, 2k) + l(2k, 2k-1)]``. Use :func:`cosine_similarity_matrix` for
    ``s``, then loop over ``i`` (and over ``k`` for the denominator). Slow, but the reference
    against which :func:`nt_xent_loss` is checked. No library cross-entropy here. Subtracting
    the row's largest ``s_ik / tau`` from every exponent first (the max-shift of a stable
    softmax) is allowed: it cancels in the ratio. It is not needed either: cosines are at most
    1, so no exponent exceeds ``1 / tau``.

    Args:
        z1, z2: ``[N, D]`` the embeddings of the two views (``N >= 1``).
        temperature: ``tau > 0``.

    Returns:
        A scalar tensor (differentiable).
    """
    _check_pairs(z1, z2)
    _check_temperature(temperature)
    ### BEGIN SOLUTION
    n = z1.shape[0]
    s = cosine_similarity_matrix(torch.cat([z1, z2])) / temperature  # [2N, 2N]
    losses = []
    for i in range(2 * n):
        j = (i + n) % (2 * n)  # the positive partner of row i
        denominator = 0.0
        for k in range(2 * n):
            if k != i:
                denominator = denominator + torch.exp(s[i, k])
        losses.append(-torch.log(torch.exp(s[i, j]) / denominator))
    return torch.stack(losses).mean()
    ### END SOLUTION


def nt_xent_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent, "the normalized temperature-scaled cross entropy loss", vectorised.

    Chen et al. (2020), Eq. 1: ``l(i, j) = -log exp(sim(z_i, z_j)/tau) / sum_{k != i}
    exp(sim(z_i, z_k)/tau)``, "the final loss is computed across all positive pairs, both
    (i, j) and (j, i), in a mini-batch". Equivalently, for each of the ``2N`` rows of the
    ``[2N, 2N]`` similarity matrix divided by ``tau``: a cross-entropy over the other
    ``2N - 1`` entries whose target is the partner view (row ``i`` -> column ``(i + N) mod 2N``).
    Exclude ``k = i`` by setting the diagonal to ``-inf`` before the cross-entropy.

    Must equal :func:`nt_xent_loss_loop` and lightly's ``NTXentLoss(temperature)`` on the same
    inputs (up to float rounding); you may use ``F.cross_entropy`` but not lightly.

    Args:
        z1, z2: ``[N, D]`` the embeddings of the two views.
        temperature: ``tau > 0`` (the authors' CIFAR-10 command uses 0.5; the course's short
            CPU runs use 0.2).

    Returns:
        A scalar tensor (differentiable).
    """
    _check_pairs(z1, z2)
    _check_temperature(temperature)
    ### BEGIN SOLUTION
    n = z1.shape[0]
    logits = cosine_similarity_matrix(torch.cat([z1, z2])) / temperature  # [2N, 2N]
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=logits.device)  # [2N, 2N]
    logits = logits.masked_fill(self_mask, float("-inf"))  # [2N, 2N] k != i
    targets = (torch.arange(2 * n, device=logits.device) + n) % (2 * n)  # [2N]
    return F.cross_entropy(logits, targets)
    ### END SOLUTION


class ProjectionHead(nn.Module):
    """SimCLR's projection head ``g(.)``: Linear -> BatchNorm -> ReLU -> Linear.

    Chen et al. (2020), Sec. 2.1: "a small neural network projection head g(.) that maps
    representations to the space where contrastive loss is applied", an MLP with one hidden
    layer, ``z_i = g(h_i) = W(2) sigma(W(1) h_i)`` with sigma a ReLU; their code (and lightly's
    ``SimCLRProjectionHead``) puts a BatchNorm after the first layer. Sec. 4.2: the
    representation *before* the head (``h``) is what transfers: the head is thrown away.

    Build ``self.layers = nn.Sequential(...)`` with exactly four modules, in this order:
    ``nn.Linear(in_dim, hidden_dim)``, ``nn.BatchNorm1d(hidden_dim)``, ``nn.ReLU()``,
    ``nn.Linear(hidden_dim, out_dim)`` (the grader loads weights by these names).

    Args:
        in_dim: ``D`` of the encoder's features. hidden_dim: the hidden width.
        out_dim: the projection width (128 in SimCLR).
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int):
        super().__init__()
        if min(in_dim, hidden_dim, out_dim) < 1:
            raise ValueError(f"widths must be positive, got {in_dim}, {hidden_dim}, {out_dim}")
        ### BEGIN SOLUTION
        self.layers = nn.Sequential(
            nn.Linear(in_dim, hidden_dim),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, out_dim),
        )
        ### END SOLUTION

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.layers(h)  # [N, D_in] -> [N, D_out]


class SimCLR(nn.Module):
    """Encoder ``f`` and projection head ``g``: ``z = g(f(x))`` (Given).

    ``self.encoder`` is what a downstream task uses (``h = f(x)``, ``[N, feature_dim]``);
    ``self.projector`` maps ``h`` to ``z`` (``[N, projection_dim]``) where NT-Xent is applied.
    """

    def __init__(
        self,
        encoder: nn.Module,
        feature_dim: int,
        projection_dim: int = 128,
        hidden_dim: int = 512,
    ):
        super().__init__()
        self.encoder = encoder
        self.projector = ProjectionHead(feature_dim, hidden_dim, projection_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projector(self.encoder(x))  # [N, C, H, W] -> [N, D] -> [N, projection_dim]


Augment = Callable[[torch.Tensor, "torch.Generator | None"], torch.Tensor]


def simclr_step(
    model: nn.Module,
    images: torch.Tensor,
    augment: Augment,
    temperature: float,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """One SimCLR training step's loss: two views, one forward pass, NT-Xent.

    Chen et al. (2020), Algorithm 1: for each image draw two augmentations ``t, t'``, compute
    ``z = g(f(t(x)))`` for both views, and the loss over all positive pairs. Steps:

    1. ``x = as_float_images(images)`` (uint8 batches become floats in [0, 1]);
    2. ``view1 = augment(x, generator)``, then ``view2 = augment(x, generator)`` (in this order,
       so that a seeded generator gives the reference's views);
    3. run ``model`` ONCE on the two views concatenated (``[2N, C, H, W]``: BatchNorm then
       normalises over all ``2N`` views, as SimCLR's global BN does), split the result into
       ``z1`` and ``z2``;
    4. ``loss = nt_xent_loss(z1, z2, temperature)``.

    Returns:
        ``{"loss": loss}``, the step-function convention of ``replearn.train.train``.
    """
    ### BEGIN SOLUTION
    x = as_float_images(images)  # [N, C, H, W]
    view1 = augment(x, generator)  # [N, C, H, W]
    view2 = augment(x, generator)  # [N, C, H, W]
    z = model(torch.cat([view1, view2]))  # [2N, D]
    z1, z2 = z.chunk(2)  # [N, D] each
    return {"loss": nt_xent_loss(z1, z2, temperature)}
    ### END SOLUTION


# ==============================================================================================
# Part 3. MoCo: a momentum encoder and a queue of negatives
# ==============================================================================================


@torch.no_grad()
def momentum_update(online: nn.Module, target: nn.Module, momentum: float) -> None:
    """Move ``target``'s weights a small step towards ``online``'s, in place.

    He et al. (2020), Eq. 2: "theta_k <- m theta_k + (1 - m) theta_q. Here m in [0, 1) is a
    momentum coefficient. Only the parameters theta_q are updated by back-propagation. [...]
    a relatively large momentum (e.g., m = 0.999, our default) works much better than a
    smaller value (e.g., m = 0.9)". BYOL updates its target network the same way
    (Grill et al., 2020, Eq. 1: ``xi <- tau xi + (1 - tau) theta``).

    Every parameter of ``target`` becomes ``m * target + (1 - m) * online``; buffers (BatchNorm
    running statistics, counters) are copied from ``online`` as they are. The two modules must
    have the same structure (``target`` is usually a ``copy.deepcopy`` of ``online``).

    Args:
        online: the network trained by back-propagation (theta_q).
        target: the momentum network (theta_k), changed in place.
        momentum: ``m`` in [0, 1]; ``m = 0`` copies ``online``, ``m = 1`` leaves ``target``.

    Raises:
        ValueError: ``momentum`` outside [0, 1], or modules whose parameters do not match.
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be in [0, 1] (e.g. 0.99), got {momentum!r}")
    online_params, target_params = list(online.parameters()), list(target.parameters())
    if len(online_params) != len(target_params) or any(
        p.shape != q.shape for p, q in zip(online_params, target_params)
    ):
        raise ValueError(
            "online and target must have the same parameters (build target with "
            "copy.deepcopy(online))"
        )
    ### BEGIN SOLUTION
    for theta_q, theta_k in zip(online_params, target_params):
        # theta_k <- m theta_k + (1 - m) theta_q
        theta_k.mul_(momentum).add_(theta_q.detach(), alpha=1.0 - momentum)
    for buffer_q, buffer_k in zip(online.buffers(), target.buffers()):
        buffer_k.copy_(buffer_q)  # running statistics are not averaged
    ### END SOLUTION


class KeyQueue(nn.Module):
    """MoCo's dictionary: a fixed-size first-in-first-out queue of encoded keys.

    He et al. (2020), Sec. 3.2: "we maintain the dictionary as a queue of data samples. This
    allows us to reuse the encoded keys from the immediate preceding mini-batches. [...] The
    current mini-batch is enqueued to the dictionary, and the oldest mini-batch in the queue is
    removed." Their code starts the queue with random unit vectors and keeps a pointer ``ptr``
    to the oldest entry; a batch of keys overwrites the rows from ``ptr`` on.

    The keys and the pointer are buffers, so they move with ``.to(device)`` and are saved in
    checkpoints. ``keys`` is ``[K, D]`` (K = ``size`` entries), ``ptr`` an int64 scalar.
    """

    def __init__(self, dim: int, size: int, generator: torch.Generator | None = None):
        super().__init__()
        if dim < 1 or size < 1:
            raise ValueError(f"the queue needs dim >= 1 and size >= 1, got {dim} and {size}")
        keys = torch.randn(size, dim, generator=generator)  # [K, D]
        keys = keys / keys.norm(dim=1, keepdim=True)  # [K, D] random unit vectors
        self.register_buffer("keys", keys)
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    @property
    def size(self) -> int:
        return self.keys.shape[0]

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Write ``keys`` ``[N, D]`` over the ``N`` oldest entries and advance the pointer.

        Row ``(ptr + i) mod K`` gets ``keys[i]`` (so a batch that runs past the end wraps around
        to the start), then ``ptr <- (ptr + N) mod K``. The keys arrive L2-normalised (the MoCo
        step enqueues :meth:`MoCo.keys`, unit vectors like the queue's first entries): store
        them as they are. They are stored detached (no gradient flows into the queue; only the
        query encoder is trained by back-propagation).
        MoCo's code asks for ``K`` to be a multiple of ``N``; wrapping around makes any
        ``N <= K`` work.

        Raises:
            ValueError: ``keys`` not ``[N, D]`` with the queue's ``D``, or ``N > K`` (a batch
                larger than the queue would overwrite its own keys).
        """
        if keys.ndim != 2 or keys.shape[1] != self.keys.shape[1]:
            raise ValueError(
                f"keys must be [N, D] = [N, {self.keys.shape[1]}], got {tuple(keys.shape)}"
            )
        if keys.shape[0] > self.size:
            raise ValueError(
                f"cannot enqueue {keys.shape[0]} keys into a queue of {self.size}; use a queue "
                "at least as long as the batch (MoCo uses 65,536 keys for batches of 256)"
            )
        ### BEGIN SOLUTION
        n = keys.shape[0]
        rows = (self.ptr + torch.arange(n, device=self.keys.device)) % self.size  # [N]
        self.keys[rows] = keys.detach().to(self.keys.dtype)  # [K, D] oldest rows overwritten
        self.ptr.copy_((self.ptr + n) % self.size)
        ### END SOLUTION


def moco_loss(
    q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float
) -> torch.Tensor:
    """InfoNCE with one positive key and ``K`` negatives from the queue.

    He et al. (2020), Eq. 1: ``L_q = -log exp(q.k+ / tau) / sum_{i=0..K} exp(q.k_i / tau)``,
    "a (K+1)-way softmax-based classifier that tries to classify q as k+". The lecture:
    ``L_i = -log exp(s_ij/tau) / (exp(s_ij/tau) + sum_{k=1..K} exp(s_ik/tau))``. Algorithm 1
    builds the logits ``[N, 1 + K]`` with the positive in column 0 and takes the
    cross-entropy with target 0 for every row.

    ``q``, ``k`` and the queue are compared by cosine similarity: normalise the rows of all
    three (``F.normalize`` is fine here; MoCo's encoders already output unit vectors, and
    normalising twice changes nothing). No gradient flows into ``k`` or ``queue`` (detach them:
    keys come from the momentum encoder).

    Args:
        q: ``[N, D]`` queries (online encoder, with gradients).
        k: ``[N, D]`` positive keys (momentum encoder), row ``i`` matching ``q[i]``.
        queue: ``[K, D]`` negative keys.
        temperature: ``tau > 0`` (0.07 in MoCo v1, 0.2 in MoCo v2).

    Returns:
        A scalar tensor: the mean over the ``N`` queries.
    """
    _check_pairs(q, k, "q, k")
    _check_temperature(temperature)
    if queue.ndim != 2 or queue.shape[1] != q.shape[1]:
        raise ValueError(f"queue must be [K, D] = [K, {q.shape[1]}], got {tuple(queue.shape)}")
    ### BEGIN SOLUTION
    q = F.normalize(q, dim=1)  # [N, D]
    k = F.normalize(k.detach(), dim=1)  # [N, D]
    negatives = F.normalize(queue.detach(), dim=1)  # [K, D]
    positive = (q * k).sum(dim=1, keepdim=True)  # [N, 1]
    negative = q @ negatives.T  # [N, K]
    logits = torch.cat([positive, negative], dim=1) / temperature  # [N, 1 + K]
    targets = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)  # [N] positive at 0
    return F.cross_entropy(logits, targets)
    ### END SOLUTION


class MoCo(nn.Module):
    """MoCo v2: a query encoder, a momentum key encoder and a queue of keys.

    He et al. (2020), Fig. 1 and Algorithm 1; MoCo v2 (Chen, Fan, Girshick & He, 2020,
    arXiv:2003.04297) adds SimCLR's MLP projection head and stronger augmentation and uses
    ``tau = 0.2``. The query encoder ``f_q`` is ``self.encoder`` followed by ``self.projector``;
    the key encoder ``f_k`` is a copy of both (``self.key_encoder``, ``self.key_projector``) that
    is never back-propagated, only moved by :func:`momentum_update`.

    One process, one device: MoCo's "shuffling BN" (BatchNorm per GPU, keys computed on a
    shuffled batch, so that batch statistics cannot tell the current keys from the queue's) is
    left out, as in lightly's examples. The MoCo authors' CIFAR-10 demo emulates it on one GPU
    and reports that leaving it out "loses 4% at 800 epochs"; at this course's budgets it makes
    no measurable difference (``benchmarks/README.md``).

    Args:
        encoder: ``[N, C, H, W] -> [N, feature_dim]``.
        feature_dim: ``D`` of the encoder. projection_dim: width of keys and queries.
        queue_size: ``K`` negatives (65,536 in the paper; 4,096 for the 5k-image subset).
        momentum: ``m`` of the key encoder (0.999 in the paper; 0.99 for short runs).
        temperature: ``tau``. hidden_dim: the projection head's hidden width.
    """

    def __init__(
        self,
        encoder: nn.Module,
        feature_dim: int,
        projection_dim: int = 128,
        queue_size: int = 4096,
        momentum: float = 0.99,
        temperature: float = 0.2,
        hidden_dim: int = 512,
    ):
        super().__init__()
        self.encoder = encoder
        self.projector = ProjectionHead(feature_dim, hidden_dim, projection_dim)
        self.key_encoder = copy.deepcopy(encoder)
        self.key_projector = copy.deepcopy(self.projector)
        for p in [*self.key_encoder.parameters(), *self.key_projector.parameters()]:
            p.requires_grad_(False)  # "only the parameters theta_q are updated by back-prop"
        self.queue = KeyQueue(projection_dim, queue_size)
        self.momentum, self.temperature = float(momentum), float(temperature)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Queries ``q = f_q(x)``: ``[N, C, H, W] -> [N, projection_dim]`` (not normalised)."""
        return self.projector(self.encoder(x))

    @torch.no_grad()
    def keys(self, x: torch.Tensor) -> torch.Tensor:
        """Keys ``k = f_k(x)``, unit length, no gradient: ``[N, C, H, W] -> [N, D]``."""
        return F.normalize(self.key_projector(self.key_encoder(x)), dim=1)

    def step(
        self,
        images: torch.Tensor,
        augment: Augment,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """One MoCo training step's loss (the caller back-propagates and steps the optimiser).

        In the order of MoCo's code (``moco/builder.py``):

        1. ``momentum_update`` the key encoder and the key projector from the query ones,
           with ``self.momentum`` (the update after the previous optimiser step);
        2. ``x = as_float_images(images)``; ``view_q = augment(x, generator)``, then
           ``view_k = augment(x, generator)``;
        3. queries ``q = self(view_q)``; keys ``k = self.keys(view_k)`` (no gradient);
        4. ``loss = moco_loss(q, k, <a copy of the queue's keys>, self.temperature)``: the
           copy matters, because step 5 changes the queue in place before ``backward``;
        5. enqueue ``k``.

        Returns:
            ``{"loss": loss}``.
        """
        ### BEGIN SOLUTION
        momentum_update(self.encoder, self.key_encoder, self.momentum)
        momentum_update(self.projector, self.key_projector, self.momentum)
        x = as_float_images(images)  # [N, C, H, W]
        view_q = augment(x, generator)  # [N, C, H, W]
        view_k = augment(x, generator)  # [N, C, H, W]
        q = self(view_q)  # [N, D]
        k = self.keys(view_k)  # [N, D] unit length, no grad
        loss = moco_loss(q, k, self.queue.keys.clone(), self.temperature)
        self.queue.enqueue(k)
        return {"loss": loss}
        ### END SOLUTION


def moco_step(
    model: MoCo,
    images: torch.Tensor,
    augment: Augment,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """``model.step(images, augment, generator)``: MoCo in the step-function convention."""
    return model.step(images, augment, generator)


# ==============================================================================================
# Part 4. BYOL: predict a momentum target, no negatives
# ==============================================================================================


def byol_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """BYOL's normalised mean squared error, ``2 - 2 cos(p, z)``, averaged over the batch.

    Grill et al. (2020), Eq. 2: "we define the following mean squared error between the
    normalized predictions and target projections, L = ||q_bar - z_bar'||^2 = 2 - 2
    <q, z'> / (||q|| ||z'||)". The lecture writes the same thing as the negative cosine
    ``-psi(phi(x_i))^T phi'(x_j) / (||.|| ||.||)`` (up to the constant 2 and the factor 2).
    The target ``z`` comes from the momentum network: no gradient flows into it (detach it).

    Args:
        p: ``[N, D]`` the online network's predictions.
        z: ``[N, D]`` the target network's projections of the other view.

    Returns:
        A scalar tensor in [0, 4].
    """
    _check_pairs(p, z, "p, z")
    ### BEGIN SOLUTION
    cosine = (F.normalize(p, dim=1) * F.normalize(z.detach(), dim=1)).sum(dim=1)  # [N]
    return (2 - 2 * cosine).mean()
    ### END SOLUTION


def mlp(in_dim: int, hidden_dim: int, out_dim: int) -> ProjectionHead:
    """BYOL's projector and predictor: the same Linear-BN-ReLU-Linear MLP as SimCLR's head."""
    return ProjectionHead(in_dim, hidden_dim, out_dim)


class BYOL(nn.Module):
    """BYOL: an online network (encoder, projector, predictor) and a momentum target network.

    Grill et al. (2020), Sec. 3.1: "The online network is defined by a set of weights theta and
    is comprised of three stages: an encoder f_theta, a projector g_theta and a predictor
    q_theta. [...] The target network has the same architecture as the online network, but
    uses a different set of weights xi [...] an exponential moving average of the online
    parameters". The predictor exists only online: the asymmetry is what prevents collapse
    without negatives. The paper raises ``tau`` from 0.996 to 1 over training with a cosine
    schedule; short CPU runs here keep one constant ``momentum``.

    ``self.encoder``, ``self.projector``, ``self.predictor`` are trained; ``self.target_encoder``
    and ``self.target_projector`` are copies moved only by :func:`momentum_update`.
    """

    def __init__(
        self,
        encoder: nn.Module,
        feature_dim: int,
        projection_dim: int = 128,
        hidden_dim: int = 512,
        momentum: float = 0.99,
    ):
        super().__init__()
        self.encoder = encoder
        self.projector = mlp(feature_dim, hidden_dim, projection_dim)
        self.predictor = mlp(projection_dim, hidden_dim, projection_dim)
        self.target_encoder = copy.deepcopy(encoder)
        self.target_projector = copy.deepcopy(self.projector)
        for p in [*self.target_encoder.parameters(), *self.target_projector.parameters()]:
            p.requires_grad_(False)
        self.momentum = float(momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Online predictions ``q(g(f(x)))``: ``[N, C, H, W] -> [N, projection_dim]``."""
        return self.predictor(self.projector(self.encoder(x)))

    @torch.no_grad()
    def targets(self, x: torch.Tensor) -> torch.Tensor:
        """Target projections ``g_xi(f_xi(x))``, no gradient: ``[N, C, H, W] -> [N, D]``."""
        return self.target_projector(self.target_encoder(x))

    def step(
        self,
        images: torch.Tensor,
        augment: Augment,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """One BYOL training step's symmetrised loss.

        1. ``momentum_update`` the target encoder and the target projector from the online
           ones with ``self.momentum``;
        2. ``x = as_float_images(images)``; ``view1 = augment(x, generator)``, then ``view2``;
        3. online predictions ``p = self(both views concatenated)`` (``[2N, D]``, split into
           ``p1, p2``); target projections ``z = self.targets(both views concatenated)``
           (split into ``z1, z2``);
        4. "we symmetrize the loss by separately feeding v' to the online network and v to
           the target network" (Sec. 3.1): ``loss = (byol_loss(p1, z2) + byol_loss(p2, z1)) / 2``
           (the paper sums the two terms; the mean keeps the loss in [0, 4]).

        Returns:
            ``{"loss": loss}``.
        """
        ### BEGIN SOLUTION
        momentum_update(self.encoder, self.target_encoder, self.momentum)
        momentum_update(self.projector, self.target_projector, self.momentum)
        x = as_float_images(images)  # [N, C, H, W]
        view1 = augment(x, generator)  # [N, C, H, W]
        view2 = augment(x, generator)  # [N, C, H, W]
        views = torch.cat([view1, view2])  # [2N, C, H, W]
        p1, p2 = self(views).chunk(2)  # [N, D] each, online predictions
        z1, z2 = self.targets(views).chunk(2)  # [N, D] each, no grad
        loss = (byol_loss(p1, z2) + byol_loss(p2, z1)) / 2
        return {"loss": loss}
        ### END SOLUTION


def byol_step(
    model: BYOL,
    images: torch.Tensor,
    augment: Augment,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """``model.step(images, augment, generator)``: BYOL in the step-function convention."""
    return model.step(images, augment, generator)


# ==============================================================================================
# Part 5. SimSiam: the stop-gradient is what prevents collapse
# ==============================================================================================


def simsiam_loss(
    p1: torch.Tensor,
    p2: torch.Tensor,
    z1: torch.Tensor,
    z2: torch.Tensor,
    stop_gradient: bool = True,
) -> torch.Tensor:
    """SimSiam's symmetrised negative cosine with a stop-gradient on the projections.

    Chen & He (2021), Eq. 1 and 4: ``D(p, z) = -p/||p|| . z/||z||`` and
    ``L = D(p1, stopgrad(z2))/2 + D(p2, stopgrad(z1))/2``: "the encoder on x2 receives no
    gradient from z2 in the first term, but it receives gradients from p2 in the second term
    (and vice versa for x1)". Sec. 4.1: without the stop-gradient "the optimizer quickly
    finds a degenerated solution and reaches the minimum possible loss of -1".

    With ``stop_gradient=False`` no ``.detach()`` is applied (the ablation that collapses).

    Args:
        p1, p2: ``[N, D]`` predictions ``h(f(x1))``, ``h(f(x2))``.
        z1, z2: ``[N, D]`` projections ``f(x1)``, ``f(x2)``.

    Returns:
        A scalar tensor in [-1, 1].
    """
    _check_pairs(p1, p2, "p1, p2")
    _check_pairs(z1, z2, "z1, z2")
    _check_pairs(p1, z1, "p1, z1")
    ### BEGIN SOLUTION
    if stop_gradient:
        z1, z2 = z1.detach(), z2.detach()  # the stop-gradient
    first = -(F.normalize(p1, dim=1) * F.normalize(z2, dim=1)).sum(dim=1).mean()  # D(p1, z2)
    second = -(F.normalize(p2, dim=1) * F.normalize(z1, dim=1)).sum(dim=1).mean()  # D(p2, z1)
    return first / 2 + second / 2
    ### END SOLUTION


@torch.no_grad()
def output_std(z: torch.Tensor) -> float:
    """How spread out the outputs are: the collapse monitor of SimSiam's Fig. 2.

    Chen & He (2021), Sec. 4.1 and Fig. 2, track the standard deviation of the l2-normalised
    output ``z / ||z||_2``, per channel and averaged over the channels: if the outputs
    collapse to a constant vector, their std over the samples is zero in every channel; if
    ``z`` is a zero-mean isotropic Gaussian, the std of ``z / ||z||_2`` is about ``1/sqrt(d)``.

    Normalise each row, take the standard deviation of each of the ``D`` columns over the
    ``N`` rows (``torch.std``'s default, Bessel-corrected), and average the ``D`` values.

    Args:
        z: ``[N, D]`` with ``N >= 2``.

    Returns:
        A Python float: about ``1/sqrt(D)`` for healthy outputs, 0 for collapsed ones.
    """
    if z.ndim != 2 or z.shape[0] < 2:
        raise ValueError(f"output_std needs z [N, D] with N >= 2, got shape {tuple(z.shape)}")
    ### BEGIN SOLUTION
    unit = F.normalize(z.float(), dim=1)  # [N, D]
    return float(unit.std(dim=0).mean())
    ### END SOLUTION


class SimSiam(nn.Module):
    """SimSiam: one encoder + projector ``f``, a predictor ``h``, no momentum network.

    Chen & He (2021), Sec. 3 and 4: the projection MLP has BN "applied to each fully-connected
    (fc) layer, including its output fc. Its output fc has no ReLU"; the prediction MLP is a
    bottleneck "Its output fc does not have BN or ReLU". Their projector has 3 layers of
    width 2048 and the predictor a 512-wide hidden layer; for the CPU presets the projector
    here has 2 layers (Linear-BN-ReLU-Linear-BN) of width ``projection_dim`` and the predictor
    Linear-BN-ReLU-Linear with ``hidden_dim``.
    """

    def __init__(
        self,
        encoder: nn.Module,
        feature_dim: int,
        projection_dim: int = 128,
        hidden_dim: int = 128,
    ):
        super().__init__()
        self.encoder = encoder
        self.projector = nn.Sequential(
            nn.Linear(feature_dim, projection_dim, bias=False),
            nn.BatchNorm1d(projection_dim),
            nn.ReLU(),
            nn.Linear(projection_dim, projection_dim, bias=False),
            nn.BatchNorm1d(projection_dim, affine=False),  # BN on the output fc, no ReLU
        )
        self.predictor = mlp(projection_dim, hidden_dim, projection_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(p, z)``: predictions and projections, both ``[N, projection_dim]``."""
        z = self.projector(self.encoder(x))  # [N, D]
        return self.predictor(z), z  # [N, D], [N, D]


def simsiam_step(
    model: SimSiam,
    images: torch.Tensor,
    augment: Augment,
    generator: torch.Generator | None = None,
    stop_gradient: bool = True,
) -> dict[str, torch.Tensor | float]:
    """One SimSiam training step's loss, and the collapse monitor.

    1. ``x = as_float_images(images)``; ``view1 = augment(x, generator)``, then ``view2``;
    2. ``p, z = model(both views concatenated)`` (``[2N, D]`` each), split into ``p1, p2`` and
       ``z1, z2``;
    3. ``loss = simsiam_loss(p1, p2, z1, z2, stop_gradient)``.

    Returns:
        ``{"loss": loss, "std": output_std(z1)}`` (the history records the std per step).
    """
    ### BEGIN SOLUTION
    x = as_float_images(images)  # [N, C, H, W]
    view1 = augment(x, generator)  # [N, C, H, W]
    view2 = augment(x, generator)  # [N, C, H, W]
    p, z = model(torch.cat([view1, view2]))  # [2N, D] each
    p1, p2 = p.chunk(2)  # [N, D] each
    z1, z2 = z.chunk(2)  # [N, D] each
    loss = simsiam_loss(p1, p2, z1, z2, stop_gradient)
    return {"loss": loss, "std": output_std(z1)}
    ### END SOLUTION
