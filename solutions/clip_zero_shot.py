"""Assignment 6: learning from images and text together (CLIP), zero-shot classification, retrieval.

"Contrastive loss: each image predicts which caption matches" (lecture). CLIP (Radford et al.,
"Learning Transferable Visual Models From Natural Language Supervision", ICML 2021,
arXiv:2103.00020) trains an image encoder and a text encoder together: "Given a batch of N
(image, text) pairs, CLIP is trained to predict which of the N x N possible (image, text)
pairings across a batch actually occurred" (Sec. 2.3). Language then names classes the model
was never trained on: "we use the names of all the classes in the dataset as the set of
potential text pairings and predict the most probable (image, text) pair according to CLIP"
(Sec. 3.1.2). This module builds it in the order the method works:

1. :func:`tokenize`: captions -> token ids with start- and end-of-text tokens, padded;
2. :func:`causal_mask` and :class:`TextEncoder`: token and position embeddings, transformer
   blocks that only look back, the feature at the end-of-text token, a linear projection;
   :class:`ImageEncoder` (given): ``replearn.backbones.SmallCNN`` and a linear projection;
3. :class:`LogitScale` (the learnable temperature) and :func:`clip_loss` (the symmetric
   cross-entropy over the N x N similarity matrix);
4. :func:`zero_shot_classifier` (the lecture's "create dataset classifier from label text":
   encode every prompt template per class, average, renormalise) and :func:`zero_shot_predict`;
5. :func:`retrieve`: text -> image and image -> text search, top-k by cosine similarity.

Two given models wrap the towers (:class:`CLIP`, :class:`FrozenTextCLIP`). The experiments
around the parts (settings per preset, training on captioned shapes and on CIFAR-10 aligned to a
frozen sentence encoder, the zero-shot and probe protocols, a real CLIP from open_clip, the
multi-process entry point) are ``replearn.recipes.clip_zero_shot``.

Shapes use the package legend (``docs/internals.md``; ``L`` is tokens per caption, ``W`` the
text tower's width, ``h`` its heads, ``K`` the candidate captions of a zero-shot classifier).
Images are float32 in [0, 1] (``as_float_images`` converts uint8 batches). Your parts: replace
every ``raise NotImplementedError``; everything else is given.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from replearn.backbones import Block, SmallCNN
from replearn.captions import Vocab
from replearn.data import as_float_images
from replearn.train import clamp_after_each_step

# Library shortcuts that would do a part for you. The grader reads this literal: using one of
# these inside the function named on the left scores 0 for that function's tests.
# * causal_mask: torch builds the same mask in one call.
# * TextEncoder.forward: open_clip's text tower is the whole part.
# * clip_loss: open_clip ships it; write the normalisation, the N x N logits and the two
#   cross-entropies yourself (F.cross_entropy itself is allowed).
# * zero_shot_classifier: open_clip's builder is exactly this part (the notebook compares yours
#   with it).
BANNED_APIS = {
    "causal_mask": [
        "torch.nn.Transformer.generate_square_subsequent_mask",
        "torch.nn.modules.transformer._generate_square_subsequent_mask",
    ],
    "TextEncoder.forward": [
        "open_clip.transformer.TextTransformer",
        "open_clip.model.CLIP.encode_text",
    ],
    "clip_loss": [
        "open_clip.loss.ClipLoss",
        "open_clip.ClipLoss",
    ],
    "zero_shot_classifier": [
        "open_clip.build_zero_shot_classifier",
        "open_clip.zero_shot_classifier.build_zero_shot_classifier",
        "open_clip.zero_shot_classifier.build_zero_shot_classifier_legacy",
    ],
}

# CLIP's temperature: "initialized to the equivalent of 0.07 from (Wu et al., 2018) and clipped
# to prevent scaling the logits by more than 100" (Radford et al., Sec. 2.5).
INIT_TEMPERATURE = 0.07
MAX_LOGIT_SCALE = 100.0


def hello() -> str:
    """Import check: the notebook calls this first to show which file it loaded."""
    return "clip_zero_shot: ready"


def _check_pair(a: torch.Tensor, b: torch.Tensor, names: str) -> None:
    if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
        raise TypeError(f"{names} must be tensors")
    if a.ndim != 2 or a.shape != b.shape or a.shape[0] < 1:
        raise ValueError(
            f"{names} must both be [N, D] with the same N >= 1 and D (row i of each a matching "
            f"pair), got {tuple(a.shape)} and {tuple(b.shape)}"
        )


# ==============================================================================================
# Part 1. Tokenisation
# ==============================================================================================


def tokenize(
    texts: Sequence[str], vocab: Vocab, context_length: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Captions -> word ids ``[SOT, w_1, ..., w_k, EOT, PAD, ...]``, one row per caption.

    Radford et al. (2021), Sec. 2.4: "The text sequence is bracketed with [SOS] and [EOS]
    tokens". Here words are whole words (``vocab.split(text)``: lower case, punctuation marks
    are words of their own), looked up in ``vocab.index``; a word the vocabulary lacks becomes
    ``vocab.unk_id``. Each row is ``vocab.sot_id``, the word ids, ``vocab.eot_id``, then
    ``vocab.pad_id`` up to ``context_length``.

    Too long: a caption of more than ``context_length - 2`` words is TRUNCATED, and its last
    position still holds ``vocab.eot_id`` (what open_clip's tokenizer does), so that every row
    has exactly one end-of-text token for the encoder to pool at.

    Args:
        texts: ``N`` captions.
        vocab: a ``replearn.captions.Vocab``.
        context_length: ``L``, at least 2.

    Returns:
        ``(tokens int64 [N, L], eot_positions int64 [N])``: ``tokens[i, eot_positions[i]]`` is
        ``vocab.eot_id``.
    """
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise TypeError("tokenize takes a list of strings (wrap a single caption in a list)")
    if context_length < 2:
        raise ValueError(
            f"context_length must be >= 2 (room for SOT and EOT), got {context_length}"
        )
    ### BEGIN SOLUTION
    tokens = torch.full((len(texts), context_length), vocab.pad_id, dtype=torch.int64)  # [N, L]
    eot_positions = torch.empty(len(texts), dtype=torch.int64)  # [N]
    for i, text in enumerate(texts):
        words = [vocab.index.get(word, vocab.unk_id) for word in vocab.split(text)]
        ids = [vocab.sot_id, *words][: context_length - 1] + [vocab.eot_id]  # EOT always kept
        tokens[i, : len(ids)] = torch.tensor(ids, dtype=torch.int64)
        eot_positions[i] = len(ids) - 1
    return tokens, eot_positions
    ### END SOLUTION


# ==============================================================================================
# Part 2. The text encoder: a transformer that only looks back
# ==============================================================================================


def causal_mask(
    length: int, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """The additive attention mask of a causal transformer: ``[L, L]``.

    Radford et al. (2021), Sec. 2.4: "Masked self-attention was used in the text encoder".
    Entry ``(i, j)`` is added to the attention score of query ``i`` on key ``j``: ``0`` where
    ``j <= i`` (token ``i`` may read itself and the tokens before it) and ``-inf`` where
    ``j > i`` (the softmax then gives the future tokens weight exactly 0).

    Returns:
        ``[L, L]`` of ``dtype`` on ``device``: 0 on and below the diagonal, ``-inf`` above.
    """
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    ### BEGIN SOLUTION
    mask = torch.full((length, length), float("-inf"), device=device, dtype=dtype)  # [L, L]
    return mask.triu(diagonal=1)  # [L, L] -inf strictly above the diagonal, 0 elsewhere
    ### END SOLUTION


class CausalBlock(Block):
    """``replearn.backbones.Block`` (pre-norm attention + MLP) that takes an attention mask.

    Given. The course library's ``Block`` attends everywhere; this subclass reuses its layers
    (``norm1``, ``attn.qkv``, ``attn.proj``, ``norm2``, ``mlp``) and adds ``attn_mask``
    (``[L, L]``, added to the scores: :func:`causal_mask`) to the attention.
    """

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        n, length, dim = x.shape  # [N, L, D]
        attn = self.attn
        qkv = attn.qkv(self.norm1(x)).reshape(n, length, 3, attn.heads, attn.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x [N, h, L, D/h]
        mixed = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # [N, h, L, D/h]
        x = x + attn.proj(mixed.transpose(1, 2).reshape(n, length, dim))  # [N, L, D]
        return x + self.mlp(self.norm2(x))  # [N, L, D]


class TextEncoder(nn.Module):
    """CLIP's text tower, small: a causal transformer pooled at the end-of-text token.

    Radford et al. (2021), Sec. 2.4: "The text encoder is a Transformer [...] The text sequence
    is bracketed with [SOS] and [EOS] tokens and the activations of the highest layer of the
    transformer at the [EOS] token are treated as the feature representation of the text which
    is layer normalized and then linearly projected into the multi-modal embedding space."

    Given: the layers, named as in CLIP's code. ``token_embedding`` (``nn.Embedding``),
    ``positional_embedding`` (learned, ``[L_max, W]``), ``blocks`` (:class:`CausalBlock`),
    ``ln_final`` and ``text_projection`` (``W -> D``, no bias). You write :meth:`forward`.
    """

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int = 64,
        context_length: int = 16,
        width: int = 64,
        depth: int = 2,
        heads: int = 4,
        eot_id: int = Vocab.eot_id,
    ):
        super().__init__()
        self.context_length, self.eot_id, self.width = context_length, eot_id, width
        self.embed_dim = embed_dim
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.positional_embedding = nn.Parameter(torch.empty(context_length, width))  # [L_max, W]
        self.blocks = nn.ModuleList(CausalBlock(width, heads) for _ in range(depth))
        self.ln_final = nn.LayerNorm(width)
        self.text_projection = nn.Linear(width, embed_dim, bias=False)
        # CLIP's initialisation (openai/CLIP, model.py, initialize_parameters)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        nn.init.normal_(self.text_projection.weight, std=width**-0.5)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token ids ``[N, L]`` (from :func:`tokenize`, ``L <= context_length``) -> ``[N, D]``.

        1. ``x = self.token_embedding(tokens)`` plus the first ``L`` rows of
           ``self.positional_embedding``;
        2. every block of ``self.blocks`` with the mask ``causal_mask(L)`` (on ``x``'s device,
           in ``x``'s dtype): ``x = block(x, mask)``;
        3. ``self.ln_final``;
        4. the feature of each caption at ITS end-of-text token: the first position where
           ``tokens == self.eot_id`` (padding comes after it; thanks to the causal mask the
           padding cannot change that feature);
        5. ``self.text_projection``.

        Returns:
            ``[N, D]`` text embeddings (not normalised: the loss and the classifier do that).
        """
        if not isinstance(tokens, torch.Tensor) or tokens.ndim != 2 or tokens.dtype != torch.int64:
            raise ValueError("tokens must be int64 [N, L] from tokenize()")
        if tokens.shape[1] > self.context_length:
            raise ValueError(
                f"captions of {tokens.shape[1]} tokens exceed the encoder's context_length "
                f"{self.context_length}; tokenize with context_length={self.context_length}"
            )
        if not bool((tokens == self.eot_id).any(dim=1).all()):
            raise ValueError(f"every row of tokens needs an end-of-text token (id {self.eot_id})")
        ### BEGIN SOLUTION
        n, length = tokens.shape
        x = self.token_embedding(tokens) + self.positional_embedding[:length]  # [N, L, W]
        mask = causal_mask(length, device=x.device, dtype=x.dtype)  # [L, L]
        for block in self.blocks:
            x = block(x, mask)  # [N, L, W]
        x = self.ln_final(x)  # [N, L, W]
        eot = (tokens == self.eot_id).int().argmax(dim=1)  # [N] the first EOT of each row
        pooled = x[torch.arange(n, device=x.device), eot]  # [N, W]
        return self.text_projection(pooled)  # [N, D]
        ### END SOLUTION


class ImageEncoder(nn.Module):
    """CLIP's image tower, small: ``replearn.backbones.SmallCNN`` then a linear projection.

    Given. Radford et al. (2021), Sec. 2.4: "We use only a linear projection to map from each
    encoder's representation to the multi-modal embedding space." ``features(images)`` is the
    backbone's pooled ``[N, feature_dim]`` (what a linear probe uses); ``forward`` projects it
    to ``[N, D]``.
    """

    def __init__(
        self, embed_dim: int = 64, widths: Sequence[int] = (32, 64, 128, 256), in_channels: int = 3
    ):
        super().__init__()
        self.backbone = SmallCNN(in_channels, widths)
        self.feature_dim, self.embed_dim = self.backbone.feature_dim, embed_dim
        self.projection = nn.Linear(self.backbone.feature_dim, embed_dim, bias=False)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(as_float_images(images))  # [N, feature_dim]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.projection(self.features(images))  # [N, D]


# ==============================================================================================
# Part 3. The contrastive objective
# ==============================================================================================


class LogitScale(nn.Module):
    """CLIP's learnable inverse temperature, stored as a log and clipped at 100.

    Radford et al. (2021), Sec. 2.5: "The learnable temperature parameter tau was initialized
    to the equivalent of 0.07 from (Wu et al., 2018) and clipped to prevent scaling the logits
    by more than 100 which we found necessary to prevent training instability."

    * ``__init__``: one parameter, ``self.log_scale``, a 0-d ``nn.Parameter`` holding
      ``log(1 / temperature)`` (learning the log keeps the scale positive);
    * ``forward()``: ``exp(log_scale)``, 0-d and differentiable in ``log_scale``;
    * ``clamp_()``: clip the STORED value in place to ``[0, log(max_scale)]`` (open_clip's
      range: the scale stays between 1 and ``max_scale``). The course calls it after every
      optimiser step that trains the scale (given: ``clamp_after_each_step``), as open_clip's
      training loop does. Clipping inside ``forward`` instead would make the gradient 0 above
      the cap: a scale that passed it could never come back.
    """

    def __init__(self, temperature: float = INIT_TEMPERATURE, max_scale: float = MAX_LOGIT_SCALE):
        super().__init__()
        if not temperature > 0 or not max_scale > 0:
            raise ValueError(
                f"temperature and max_scale must be positive, got {temperature} and {max_scale}"
            )
        self.max_scale = float(max_scale)
        ### BEGIN SOLUTION
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)))  # [] scalar
        ### END SOLUTION
        clamp_after_each_step(self)  # clamp_() after every optimiser step (given)

    def forward(self) -> torch.Tensor:
        ### BEGIN SOLUTION
        return self.log_scale.exp()  # [] scalar
        ### END SOLUTION

    @torch.no_grad()
    def clamp_(self) -> None:
        ### BEGIN SOLUTION
        self.log_scale.clamp_(0.0, math.log(self.max_scale))
        ### END SOLUTION


def clip_loss(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    logit_scale: torch.Tensor | float,
) -> torch.Tensor:
    """The symmetric cross-entropy over the ``N x N`` image-text similarity matrix.

    Radford et al. (2021), Fig. 3 (numpy-like pseudocode)::

        I_e = l2_normalize(np.dot(I_f, W_i), axis=1)
        T_e = l2_normalize(np.dot(T_f, W_t), axis=1)
        logits = np.dot(I_e, T_e.T) * np.exp(t)
        labels = np.arange(n)
        loss_i = cross_entropy_loss(logits, labels, axis=0)
        loss_t = cross_entropy_loss(logits, labels, axis=1)
        loss = (loss_i + loss_t)/2

    Row ``i`` of ``image_features`` and row ``i`` of ``text_features`` are a matching pair;
    every other row of the batch is a negative. Normalise both to unit length, multiply the
    ``[N, N]`` cosine matrix by ``logit_scale`` (already exponentiated: ``LogitScale()()``),
    then average two cross-entropies: each image must pick its text among the ``N`` texts
    (over the rows), and each text its image among the ``N`` images (over the columns).

    Args:
        image_features, text_features: ``[N, D]`` (not necessarily normalised).
        logit_scale: a 0-d tensor or a float, ``exp(t)``.

    Returns:
        A scalar tensor, differentiable in both feature sets and in ``logit_scale``.
    """
    _check_pair(image_features, text_features, "image_features, text_features")
    ### BEGIN SOLUTION
    images = F.normalize(image_features, dim=1)  # [N, D]
    texts = F.normalize(text_features, dim=1)  # [N, D]
    logits_per_image = logit_scale * images @ texts.T  # [N, N] row i: image i vs every text
    targets = torch.arange(len(images), device=images.device)  # [N] the diagonal
    loss_images = F.cross_entropy(logits_per_image, targets)
    loss_texts = F.cross_entropy(logits_per_image.T, targets)  # row j: text j vs every image
    return (loss_images + loss_texts) / 2
    ### END SOLUTION


# ==============================================================================================
# Part 4. Zero-shot classification from label text
# ==============================================================================================


def fill_template(template: str | Callable[[str], str], classname: str) -> str:
    """``"a photo of a {c}."`` and ``"cat"`` -> ``"a photo of a cat."``; a callable is called.

    Given. Underscores in class names (CIFAR-100's ``aquarium_fish``) become spaces.
    """
    name = classname.replace("_", " ")
    return template(name) if callable(template) else template.format(c=name)


@torch.no_grad()
def zero_shot_classifier(
    encode_text: Callable[[list[str]], torch.Tensor],
    classnames: Sequence[str],
    templates: Sequence[str | Callable[[str], str]],
) -> torch.Tensor:
    """The lecture's "create dataset classifier from label text": one unit vector per class.

    Radford et al. (2021), Sec. 3.1.4: "we ensembled over 80 different context prompts [...]
    We construct the ensemble over the embedding space instead of probability space. This
    allows us to cache a single set of averaged text embeddings". For each class, in the order
    of ``classnames``:

    1. fill every template with the class name (:func:`fill_template`);
    2. ``encode_text(texts)`` -> ``[len(templates), D]``, and normalise each row to unit length;
    3. average the rows, and normalise the average to unit length again.

    The unit vectors are the COLUMNS of the result (open_clip's layout, so that
    ``image_features @ weights`` gives the ``[N, K]`` cosine logits). One template is the
    single-prompt classifier.

    Args:
        encode_text: maps a list of strings to ``[M, D]`` (e.g. a tokenizer + text encoder).
        classnames: ``K`` class names.
        templates: strings with a ``{c}`` placeholder, or callables ``name -> text``.

    Returns:
        ``[D, K]``, every column of unit norm (no autograd history).
    """
    if isinstance(classnames, str) or not len(classnames) or not len(templates):
        raise ValueError(
            "zero_shot_classifier needs a list of class names and at least one template"
        )
    ### BEGIN SOLUTION
    columns = []
    for name in classnames:
        texts = [fill_template(template, name) for template in templates]
        embeddings = F.normalize(encode_text(texts).float(), dim=-1)  # [len(templates), D]
        mean = embeddings.mean(dim=0)  # [D]
        columns.append(mean / mean.norm())  # [D] unit length again
    return torch.stack(columns, dim=1)  # [D, K]
    ### END SOLUTION


def zero_shot_predict(image_features: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Each image's class: the column of ``weights`` with the largest cosine similarity.

    Normalise the image features to unit length, score them against the class vectors
    (``[N, D] @ [D, K]``) and take the best class.

    Args:
        image_features: ``[N, D]``.
        weights: ``[D, K]`` from :func:`zero_shot_classifier`.

    Returns:
        int64 ``[N]`` class indices in ``0 .. K-1``.
    """
    if image_features.ndim != 2 or weights.ndim != 2 or image_features.shape[1] != weights.shape[0]:
        raise ValueError(
            "expected image_features [N, D] and weights [D, K] with the same D, got "
            f"{tuple(image_features.shape)} and {tuple(weights.shape)}"
        )
    ### BEGIN SOLUTION
    images = F.normalize(image_features.to(weights.dtype), dim=1)  # [N, D]
    return (images @ weights).argmax(dim=1)  # [N]
    ### END SOLUTION


# ==============================================================================================
# Part 5. Retrieval
# ==============================================================================================


def retrieve(
    query_features: torch.Tensor, gallery_features: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` gallery items most similar to each query, by cosine similarity.

    Text -> image search is ``retrieve(text_embeddings, image_embeddings, k)``; image -> text
    is the same call with the roles swapped (CLIP's retrieval evaluations rank by the same
    cosine similarity, Radford et al. 2021, Sec. 3.2 and App. E).

    Returns:
        ``(scores [Q, k], indices int64 [Q, k])``: for each query the cosine similarities in
        decreasing order and the gallery rows they belong to (no autograd history).
    """
    if (
        query_features.ndim != 2
        or gallery_features.ndim != 2
        or query_features.shape[1] != gallery_features.shape[1]
    ):
        raise ValueError(
            "expected queries [Q, D] and gallery [M, D] with the same D, got "
            f"{tuple(query_features.shape)} and {tuple(gallery_features.shape)}"
        )
    if not 1 <= k <= gallery_features.shape[0]:
        raise ValueError(f"k must be in 1..{gallery_features.shape[0]} (the gallery size), got {k}")
    ### BEGIN SOLUTION
    queries = F.normalize(query_features.detach(), dim=1)  # [Q, D]
    gallery = F.normalize(gallery_features.detach().to(queries.dtype), dim=1)  # [M, D]
    scores, indices = (queries @ gallery.T).topk(k, dim=1)  # [Q, k] each, best first
    return scores, indices
    ### END SOLUTION


# ==============================================================================================
# Given: the two models the recipe trains
# ==============================================================================================


class CLIP(nn.Module):
    """Image tower + text tower + learnable temperature, trained with :func:`clip_loss`."""

    def __init__(
        self,
        image_encoder: ImageEncoder,
        text_encoder: TextEncoder,
        logit_scale: LogitScale | None = None,
    ):
        super().__init__()
        if image_encoder.embed_dim != text_encoder.embed_dim:
            raise ValueError(
                "the towers must share the embedding width: image "
                f"{image_encoder.embed_dim}, text {text_encoder.embed_dim}"
            )
        self.image_encoder, self.text_encoder = image_encoder, text_encoder
        self.logit_scale = logit_scale if logit_scale is not None else LogitScale()

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return self.image_encoder(images)  # [N, D]

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.text_encoder(tokens)  # [N, D]

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        scale = self.logit_scale()
        loss = clip_loss(self.encode_image(images), self.encode_text(tokens), scale)
        return {"loss": loss, "logit_scale": scale.detach()}


class FrozenTextCLIP(nn.Module):
    """An image tower (+ temperature) trained to match FIXED text embeddings.

    The texts are embedded once by a frozen pretrained sentence encoder
    (``replearn.captions.sentence_embeddings``); only the image side learns: LiT's setting
    turned around (Zhai et al., "LiT: Zero-Shot Transfer with Locked-image text Tuning",
    CVPR 2022, lock the image tower; here the text tower is locked).
    """

    def __init__(self, image_encoder: ImageEncoder, logit_scale: LogitScale | None = None):
        super().__init__()
        self.image_encoder = image_encoder
        self.logit_scale = logit_scale if logit_scale is not None else LogitScale()

    def forward(self, images: torch.Tensor, text_features: torch.Tensor) -> dict[str, torch.Tensor]:
        scale = self.logit_scale()
        loss = clip_loss(self.image_encoder(images), text_features, scale)
        return {"loss": loss, "logit_scale": scale.detach()}
