"""The course's checkpoints: encoders the reference trained for longer than a notebook can, verified.

On two CPU cores a notebook trains each method for a minute or two, too little for some lessons
to show (BYOL after ten seconds is noise). The course therefore ships the encoders of longer runs
of the reference implementation, trained at a stated budget in epochs, evaluated under the course
protocol, and verified like the datasets. A notebook trains the student's own version briefly (to
show that their code learns) and loads these for the comparison, labelled as the course's::

    encoder, info = load_course_encoder("simclr", device="cpu")
    info.label        # 'course checkpoint (reference, 200 epochs)': never the student's
    info.evaluation   # {'course': {'knn': ..., 'linear': ...}, 'notebook': {...}}

**The bundle** is a folder (or the same files in a ``.zip``) holding ``bundle.json`` and one
safetensors file of encoder weights per method. ``bundle.json`` says, for the whole bundle, the
format and bundle version, when and from which git commit of the reference it was made, on which
machine, the command, and the evaluation protocol; and per method: the weight file's name,
sha256, size, dtype and parameter count, the encoder's architecture (enough to build it here,
without the assignment module), the exact command that reproduces it, the config (the method's
dataclass as a dict), the budget in epochs and steps, the seed, the data (name and source), the
training time, and the evaluation: ``course`` (kNN and linear probe, :data:`COURSE_PROTOCOL`) and
``notebook`` (what the method's own notebook reports). Weights are stored in float16 where that
costs nothing (the bundle records the accuracy of the float16-rounded weights beside the
float32 ones; a method whose accuracy moved by more than :data:`FP16_TOLERANCE` keeps float32).
``python -m instructor.course_checkpoints`` (course maintainers) trains and writes bundles.

**Where a bundle is found**, offline first (:func:`find_bundle`):

1. the ``bundle=`` argument (a folder or a zip);
2. ``$REPLEARN_CHECKPOINTS``: a folder holding ``bundle.json`` (or the pinned zip), or a zip;
3. the copy the course package carries, ``replearn/embedded/course_checkpoints/`` (the wheel in
   the hand-out carries it, like the ``cifar10-5k`` working set: it serves the notebooks with no
   network and no folder);
4. a copy downloaded earlier into the cache (``replearn.data.cache_dir()``);
5. a download, only where ``checkpoint_manifest.json`` pins a bundle with a public address.

**Verification.** ``replearn/checkpoint_manifest.json`` ships with the package and pins bundles
by version: the sha256 and size of their ``bundle.json`` (and of their zip). A pinned bundle's
``bundle.json`` must match its pin; every weight file must match its ``bundle.json`` entry (size
first, so a truncated file fails at once, then sha256) and then the architecture it describes
(names, shapes, dtype). Anything wrong raises :class:`CheckpointBundleError`, naming the file,
the expected and actual values and how to get a good copy. A bundle that the package does not
pin (one an instructor just trained) loads only from an explicit location (argument or
``$REPLEARN_CHECKPOINTS``), with its files checked against its own ``bundle.json``, and
``info.pinned`` says so.

Command line: ``python -m replearn.checkpoints {info,verify} [--bundle PATH]``.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import io
import json
import os
import re
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from replearn.backbones import Block, PatchEmbed, SmallCNN, sincos_pos_embed_2d
from replearn.data import ImageData, to_float

__all__ = [
    "ARCHITECTURES",
    "BUNDLE_FILE",
    "CHECKPOINTS_ENV",
    "COURSE_PROTOCOL",
    "FORMAT",
    "FORMAT_VERSION",
    "FP16_TOLERANCE",
    "Architecture",
    "Bundle",
    "CaptionImageTower",
    "CheckpointBundleError",
    "CourseEncoderInfo",
    "MAEFeatureEncoder",
    "build_encoder",
    "course_label",
    "describe_encoder",
    "encoder_tensors",
    "evaluate_course_protocol",
    "find_bundle",
    "load_course_encoder",
    "open_bundle",
    "probe_view",
    "register_architecture",
    "weights_bytes",
    "write_bundle",
    "write_zip",
]

FORMAT = "replearn-course-checkpoints"
FORMAT_VERSION = 1
BUNDLE_FILE = "bundle.json"
CHECKPOINTS_ENV = "REPLEARN_CHECKPOINTS"
MANIFEST_PATH = Path(__file__).with_name("checkpoint_manifest.json")  # ships with the package
PACKAGED_DIR = Path(__file__).with_name("embedded") / "course_checkpoints"
CACHE_SUBDIR = "course_checkpoints"
# Largest change of kNN or linear-probe accuracy (a fraction: 0.001 is 0.1 point, one test image
# in 1,000) that float16 storage may cause; beyond it a method's weights are kept in float32.
FP16_TOLERANCE = 0.001
TRAIN_COMMAND = "python -m instructor.course_checkpoints"  # in the course repository

# The course protocol every checkpoint is evaluated under: the comparison's (replearn.compare:
# kNN with cosine similarity, k = 20, temperature 0.1; a linear probe by L-BFGS on standardised
# features with L2 2e-4), on the frozen encoder's pooled features, on cifar10-5k.
COURSE_PROTOCOL: dict[str, Any] = {
    "data": "cifar10-5k",
    "features": "the frozen encoder's pooled features (probe_view), eval mode",
    "knn": {"k": 20, "temperature": 0.1, "similarity": "cosine"},
    "linear_probe": {"weight_decay": 2e-4, "max_iter": 100, "solver": "L-BFGS, standardised"},
}

_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\.safetensors")
_REQUIRED_TOP = ("format", "format_version", "bundle_version", "created", "methods")
_REQUIRED_METHOD = (
    "file",
    "sha256",
    "bytes",
    "dtype",
    "parameters",
    "architecture",
    "budget",
    "seed",
    "evaluation",
)


class CheckpointBundleError(RuntimeError):
    """A course checkpoint that cannot be had: missing, corrupt, wrong checksum, unknown method.

    ``reason`` is one of ``"missing"``, ``"corrupt"``, ``"checksum"``, ``"unknown"`` (no such
    method in the bundle), ``"version"`` (a format this replearn cannot read), ``"download"``;
    ``path`` is the file concerned (or None).
    """

    def __init__(self, message: str, *, reason: str, path: str | Path | None = None):
        super().__init__(message)
        self.reason = reason
        self.path = None if path is None else str(path)


def _how_to_fix(version: str | None = None) -> str:
    pin = _manifest_entry(version) if version else None
    url = (pin or {}).get("url") or ""
    return (
        "Get a good copy: reinstall the course package from the hand-out (its wheel carries the "
        f"bundle){'; download ' + url if url else ''}; or set ${CHECKPOINTS_ENV} to a folder "
        f"holding a verified bundle (course maintainers make one with `{TRAIN_COMMAND}`)."
    )


# --------------------------------------------------------------------------------------------
# Architectures: how a bundle's encoders are built without the assignment modules
# --------------------------------------------------------------------------------------------


class MAEFeatureEncoder(nn.Module):
    """MAE's ViT encoder as it transfers: all patches, no masking, mean of the patch tokens.

    The same parameters (names and shapes) as ``masked_autoencoders.MAEEncoder`` and the same
    ``forward_features``: "we append an auxiliary dummy token to the encoder input" whose
    position is zero, then the Transformer blocks and the norm (He et al. 2022, App. A.1); the
    features average the patch tokens, as MAE's fine-tuning code does (``global_pool``). Built
    from the library's ``PatchEmbed`` and ``Block``, so a course checkpoint loads without the
    student's module. ``forward`` is ``forward_features``: ``[N, C, H, W] -> [N, D]``.
    """

    def __init__(
        self, image_size=32, patch_size=4, in_chans=3, dim=128, depth=4, heads=4, mlp_ratio=4.0
    ):
        super().__init__()
        self.image_size, self.patch_size, self.in_chans = image_size, patch_size, in_chans
        self.feature_dim = dim
        self.patch_embed = PatchEmbed(image_size, patch_size, in_chans, dim)
        self.num_patches = self.patch_embed.num_patches
        table = sincos_pos_embed_2d(dim, self.patch_embed.grid_size, cls_token=True)  # [1+L, D]
        # MAE's get_2d_sincos_pos_embed puts the column half first ("here w goes first"), the
        # library's table the row half: swap the halves to match the assignment's encoder
        table = torch.cat([table[:, dim // 2 :], table[:, : dim // 2]], dim=1)  # [1 + L, D]
        self.register_buffer("pos_embed", table[None], persistent=False)  # [1, 1 + L, D]
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))  # [1, 1, D]
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        x = images if images.is_floating_point() else to_float(images)  # [N, C, H, W]
        tokens = self.patch_embed(x) + self.pos_embed[:, 1:]  # [N, L, D]
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(len(x), -1, -1)  # [N, 1, D]
        tokens = torch.cat([cls, tokens], dim=1)  # [N, 1 + L, D]
        for block in self.blocks:
            tokens = block(tokens)  # [N, 1 + L, D]
        return self.norm(tokens)[:, 1:].mean(dim=1)  # [N, D]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_features(images)  # [N, D]


class CaptionImageTower(nn.Module):
    """The CLIP-style image tower of Assignment 6: ``SmallCNN`` then a linear projection.

    The same parameters and interface as ``clip_zero_shot.ImageEncoder``: ``features(images)``
    is the backbone's pooled ``[N, feature_dim]`` (what a linear probe reads), ``forward``
    projects it into the caption space, ``[N, D]`` ("only a linear projection to map from each
    encoder's representation to the multi-modal embedding space", Radford et al. 2021, Sec. 2.4).
    """

    def __init__(
        self, embed_dim: int = 384, widths: Sequence[int] = (32, 64, 128, 256), in_channels: int = 3
    ):
        super().__init__()
        self.backbone = SmallCNN(in_channels, widths)
        self.feature_dim, self.embed_dim = self.backbone.feature_dim, embed_dim
        self.projection = nn.Linear(self.backbone.feature_dim, embed_dim, bias=False)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        x = images if images.is_floating_point() else to_float(images)  # [N, C, H, W]
        return self.backbone(x)  # [N, feature_dim]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.projection(self.features(images))  # [N, D]


class _Features(nn.Module):
    """``tower.features`` as a module's ``forward``: what ``replearn.evaluate`` probes."""

    def __init__(self, tower: nn.Module):
        super().__init__()
        self.tower = tower

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.tower.features(images)  # [N, feature_dim]


@dataclass(frozen=True)
class Architecture:
    """One kind of encoder a bundle can hold.

    ``describe(encoder)`` returns the spec (``{"kind": ..., sizes}``) of an encoder of this kind,
    or None when the encoder is of another kind; ``build(spec)`` makes a fresh one from it;
    ``probe(encoder)`` is the module whose ``forward`` gives the features the course protocol
    probes (the encoder itself, unless its ``forward`` is something else).
    """

    kind: str
    describe: Callable[[nn.Module], dict | None]
    build: Callable[[Mapping[str, Any]], nn.Module]
    probe: Callable[[nn.Module], nn.Module] = lambda encoder: encoder


ARCHITECTURES: dict[str, Architecture] = {}


def register_architecture(architecture: Architecture, *, replace: bool = False) -> Architecture:
    """Add an encoder kind (a new method's encoder), checked first by :func:`describe_encoder`."""
    if architecture.kind in ARCHITECTURES and not replace:
        raise ValueError(
            f"architecture {architecture.kind!r} is already registered; pass replace=True"
        )
    ARCHITECTURES[architecture.kind] = architecture
    return architecture


def _describe_smallcnn(encoder: nn.Module) -> dict | None:
    if type(encoder) is not SmallCNN:
        return None
    return {
        "kind": "smallcnn",
        "in_channels": encoder.in_channels,
        "widths": list(encoder.block_dims),
    }


def _describe_mae(encoder: nn.Module) -> dict | None:
    """``masked_autoencoders.MAEEncoder`` (or :class:`MAEFeatureEncoder`), by its parts."""
    parts = ("patch_embed", "cls_token", "blocks", "norm", "forward_features")
    if not all(hasattr(encoder, name) for name in parts) or not len(encoder.blocks):
        return None
    block, embed = encoder.blocks[0], encoder.patch_embed
    if not isinstance(embed, PatchEmbed) or not isinstance(block, Block):
        return None
    dim = embed.proj.out_channels
    return {
        "kind": "mae-vit",
        "image_size": embed.image_size,
        "patch_size": embed.patch_size,
        "in_chans": embed.in_channels,
        "dim": dim,
        "depth": len(encoder.blocks),
        "heads": block.attn.heads,
        "mlp_ratio": block.mlp[0].out_features / dim,
    }


def _describe_tower(encoder: nn.Module) -> dict | None:
    """``clip_zero_shot.ImageEncoder`` (or :class:`CaptionImageTower`), by its parts."""
    backbone, projection = getattr(encoder, "backbone", None), getattr(encoder, "projection", None)
    if type(backbone) is not SmallCNN or not isinstance(projection, nn.Linear):
        return None
    if projection.bias is not None or not hasattr(encoder, "features"):
        return None
    return {
        "kind": "clip-image-tower",
        "in_channels": backbone.in_channels,
        "widths": list(backbone.block_dims),
        "embed_dim": projection.out_features,
    }


register_architecture(
    Architecture(
        "smallcnn",
        _describe_smallcnn,
        lambda spec: SmallCNN(int(spec["in_channels"]), [int(w) for w in spec["widths"]]),
    )
)
register_architecture(
    Architecture(
        "mae-vit",
        _describe_mae,
        lambda spec: MAEFeatureEncoder(
            int(spec["image_size"]),
            int(spec["patch_size"]),
            int(spec["in_chans"]),
            int(spec["dim"]),
            int(spec["depth"]),
            int(spec["heads"]),
            float(spec["mlp_ratio"]),
        ),
    )
)
register_architecture(
    Architecture(
        "clip-image-tower",
        _describe_tower,
        lambda spec: CaptionImageTower(
            int(spec["embed_dim"]), [int(w) for w in spec["widths"]], int(spec["in_channels"])
        ),
        probe=_Features,
    )
)


def describe_encoder(encoder: nn.Module) -> dict:
    """The architecture spec of ``encoder`` (what :func:`build_encoder` rebuilds it from)."""
    for architecture in ARCHITECTURES.values():
        spec = architecture.describe(encoder)
        if spec is not None:
            return spec
    raise ValueError(
        f"no course-checkpoint architecture describes a {type(encoder).__name__} (known: "
        f"{sorted(ARCHITECTURES)}); add one with register_architecture"
    )


def build_encoder(spec: Mapping[str, Any]) -> nn.Module:
    """A fresh encoder of the architecture ``spec`` describes (float32, CPU, eval mode)."""
    kind = spec.get("kind") if isinstance(spec, Mapping) else None
    if kind not in ARCHITECTURES:
        raise ValueError(f"unknown encoder architecture {kind!r}; known: {sorted(ARCHITECTURES)}")
    try:
        return ARCHITECTURES[kind].build(spec).eval()
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"cannot build a {kind} encoder from {dict(spec)}: {error}") from error


def probe_view(encoder: nn.Module) -> nn.Module:
    """The module whose ``forward`` gives the features the course protocol probes: the encoder
    itself, or for the CLIP-style image tower its pooled backbone features (not the projection
    into the caption space)."""
    for architecture in ARCHITECTURES.values():
        if architecture.describe(encoder) is not None:
            return architecture.probe(encoder)
    return encoder


def encoder_tensors(
    encoder: nn.Module, dtype: torch.dtype = torch.float32
) -> dict[str, torch.Tensor]:
    """The encoder's state (parameters and persistent buffers) on the CPU, floating tensors in
    ``dtype`` (integer buffers such as BatchNorm's step counters as they are), contiguous."""
    out = {}
    for name, tensor in encoder.state_dict().items():
        tensor = tensor.detach().to("cpu")
        out[name] = (tensor.to(dtype) if tensor.is_floating_point() else tensor).contiguous()
    return out


def weights_bytes(
    tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None
) -> bytes:
    """The safetensors file of ``tensors``: the same tensors give the same bytes.

    safetensors keeps the metadata in a hash map whose order changes from call to call, so the
    metadata goes in as ONE entry, ``{"replearn": <its JSON, keys sorted>}``."""
    from safetensors.torch import save

    packed = {"replearn": json.dumps(dict(metadata), sort_keys=True)} if metadata else None
    return save(dict(tensors), metadata=packed)


# --------------------------------------------------------------------------------------------
# The course protocol
# --------------------------------------------------------------------------------------------


def evaluate_course_protocol(
    encoder: nn.Module, data: ImageData, *, device: str | torch.device | None = None
) -> dict[str, float]:
    """``{"knn": acc, "linear": acc}`` in [0, 1] of the frozen encoder on ``data``'s test split,
    the training split as the labelled bank: :data:`COURSE_PROTOCOL` (that of
    ``replearn.compare``, the comparison of notebook 07), on :func:`probe_view`'s features."""
    from replearn.evaluate import extract_features, knn_accuracy, linear_probe

    view = probe_view(encoder)
    train_feats = extract_features(view, data.x_train, device=device)  # [N, D]
    test_feats = extract_features(view, data.x_test, device=device)  # [M, D]
    knn, probe = COURSE_PROTOCOL["knn"], COURSE_PROTOCOL["linear_probe"]
    return {
        "knn": knn_accuracy(
            train_feats,
            data.y_train,
            test_feats,
            data.y_test,
            k=knn["k"],
            temperature=knn["temperature"],
        ),
        "linear": linear_probe(
            train_feats,
            data.y_train,
            test_feats,
            data.y_test,
            weight_decay=probe["weight_decay"],
            max_iter=probe["max_iter"],
        ).test_accuracy,
    }


# --------------------------------------------------------------------------------------------
# The pin manifest that ships with the package
# --------------------------------------------------------------------------------------------


def _manifest(path: Path | None = None) -> dict:
    """``checkpoint_manifest.json``: ``{"current": version or None, "bundles": {version: pin}}``."""
    path = path or MANIFEST_PATH
    if not path.is_file():
        return {"current": None, "bundles": {}}
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise CheckpointBundleError(
            f"corrupt file {path}: {error}; reinstall the course package",
            reason="corrupt",
            path=path,
        ) from error
    manifest.setdefault("bundles", {})
    manifest.setdefault("current", None)
    return manifest


def _manifest_entry(version: str | None) -> dict | None:
    if version is None:
        return None
    try:
        return _manifest()["bundles"].get(str(version))
    except CheckpointBundleError:
        return None


# --------------------------------------------------------------------------------------------
# Reading a bundle: a folder or a zip
# --------------------------------------------------------------------------------------------


class _Folder:
    def __init__(self, path: Path):
        self.path = path

    def read(self, name: str) -> bytes:
        target = self.path / name
        if not target.is_file():
            raise CheckpointBundleError(
                f"missing file {target} (the bundle {self.path} lists it). {_how_to_fix()}",
                reason="missing",
                path=target,
            )
        return target.read_bytes()

    def size(self, name: str) -> int | None:
        target = self.path / name
        return target.stat().st_size if target.is_file() else None

    def where(self, name: str) -> str:
        return str(self.path / name)


class _Zip:
    def __init__(self, path: Path):
        self.path = path
        try:
            with zipfile.ZipFile(path) as archive:
                self.members = {
                    info.filename.rsplit("/", 1)[-1]: info
                    for info in archive.infolist()
                    if not info.is_dir()
                }
        except (OSError, zipfile.BadZipFile) as error:
            raise CheckpointBundleError(
                f"corrupt file {path}: not a readable zip ({error}). {_how_to_fix()}",
                reason="corrupt",
                path=path,
            ) from error

    def read(self, name: str) -> bytes:
        if name not in self.members:
            raise CheckpointBundleError(
                f"missing file {name} in {self.path} (its bundle.json lists it). {_how_to_fix()}",
                reason="missing",
                path=self.path,
            )
        try:
            with zipfile.ZipFile(self.path) as archive:
                return archive.read(self.members[name])
        except (OSError, zipfile.BadZipFile) as error:  # a CRC error: a damaged member
            raise CheckpointBundleError(
                f"corrupt file {self.path}: {name} cannot be read ({error}). {_how_to_fix()}",
                reason="corrupt",
                path=self.path,
            ) from error

    def size(self, name: str) -> int | None:
        member = self.members.get(name)
        return None if member is None else member.file_size

    def where(self, name: str) -> str:
        return f"{self.path}:{name}"


def _sha256(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


@dataclass(frozen=True)
class CourseEncoderInfo:
    """What a course checkpoint is: who trained it, how long, and how it scores.

    ``label`` names it as the course's ("course checkpoint (reference, 200 epochs)"), never as
    the student's; ``evaluation["course"]`` holds kNN and linear-probe accuracy in [0, 1] under
    :data:`COURSE_PROTOCOL`, ``evaluation["notebook"]`` what the method's own notebook reports.
    """

    method: str
    label: str
    epochs: int | None
    steps: int | None
    seed: int | None
    dtype: str
    parameters: int
    sha256: str
    evaluation: dict
    architecture: dict
    config: dict
    command: str
    data: dict
    training: dict
    bundle_version: str
    created: str
    git_commit: str
    pinned: bool
    source: str  # where the bundle was found

    def describe(self) -> str:
        """One line for a notebook: what was loaded, from where, and its course-protocol scores."""
        course = self.evaluation.get("course", {})
        scores = ", ".join(
            f"{k} {100 * v:.1f}" for k, v in course.items() if isinstance(v, (int, float))
        )
        data = self.data.get("name", "?")
        return (
            f"{self.method}: {self.label}, trained on {data}, seed {self.seed}; bundle "
            f"{self.bundle_version}{'' if self.pinned else ' (not pinned by this package)'} from "
            f"{self.source}, sha256 {self.sha256[:12]}... verified"
            + (f"; course protocol on {COURSE_PROTOCOL['data']}: {scores}" if scores else "")
        )


def course_label(epochs: int | None) -> str:
    """The label every course checkpoint carries: ``course checkpoint (reference, E epochs)``."""
    budget = (
        f"{epochs} epoch{'s' if epochs != 1 else ''}" if epochs is not None else "budget unknown"
    )
    return f"course checkpoint (reference, {budget})"


class Bundle:
    """A course-checkpoint bundle opened for reading: ``bundle.json`` parsed and checked.

    ``record`` is ``bundle.json``; ``methods`` its method names; ``pinned`` whether this
    package's ``checkpoint_manifest.json`` pins it (its ``bundle.json`` then matched the pin);
    ``origin`` says where it was found.
    """

    def __init__(self, location: Path, origin: str = "argument", *, require_pin: bool = False):
        location = Path(location)
        if location.is_dir():
            self._files: _Folder | _Zip = _Folder(location)
        elif location.is_file() and zipfile.is_zipfile(location):
            self._files = _Zip(location)
        elif location.exists():
            raise CheckpointBundleError(
                f"{location} is neither a bundle folder (holding {BUNDLE_FILE}) nor a zip of one",
                reason="corrupt",
                path=location,
            )
        else:
            raise CheckpointBundleError(
                f"no course-checkpoint bundle at {location}", reason="missing", path=location
            )
        self.location, self.origin = location, origin
        if self._files.size(BUNDLE_FILE) is None:
            raise CheckpointBundleError(
                f"{location} holds no {BUNDLE_FILE}: not a course-checkpoint bundle. {_how_to_fix()}",
                reason="missing",
                path=location,
            )
        raw = self._files.read(BUNDLE_FILE)
        where = self._files.where(BUNDLE_FILE)
        try:
            record = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as error:
            raise CheckpointBundleError(
                f"corrupt file {where}: {error}. {_how_to_fix()}", reason="corrupt", path=where
            ) from error
        self._check_record(record, where)
        self.record: dict = record
        self.version = str(record["bundle_version"])
        pin = _manifest_entry(self.version)
        self.pinned = pin is not None
        if pin is not None:
            expected = pin.get("bundle_json", {})
            if len(raw) != expected.get("bytes") or _sha256(raw) != expected.get("sha256"):
                raise CheckpointBundleError(
                    f"{where} does not match bundle {self.version} as this package pins it "
                    f"({MANIFEST_PATH.name}):\n  expected sha256 {expected.get('sha256')} "
                    f"({expected.get('bytes')} bytes)\n  got      sha256 {_sha256(raw)} "
                    f"({len(raw)} bytes)\nAn edited or damaged copy. {_how_to_fix(self.version)}",
                    reason="checksum",
                    path=where,
                )
        elif require_pin:
            raise CheckpointBundleError(
                f"{where}: bundle {self.version} is not one this package pins ({MANIFEST_PATH.name} "
                f"pins {sorted(_manifest()['bundles']) or 'none'}); pass it explicitly "
                f"(bundle= or ${CHECKPOINTS_ENV}) to use it anyway",
                reason="checksum",
                path=where,
            )

    @staticmethod
    def _check_record(record: Any, where: str) -> None:
        def bad(problem: str) -> CheckpointBundleError:
            return CheckpointBundleError(
                f"corrupt file {where}: {problem}. {_how_to_fix()}", reason="corrupt", path=where
            )

        if not isinstance(record, dict) or record.get("format") != FORMAT:
            raise bad(f"not a {FORMAT} bundle.json")
        missing = [key for key in _REQUIRED_TOP if key not in record]
        if missing:
            raise bad(f"it lacks {missing}")
        if (
            not isinstance(record["format_version"], int)
            or record["format_version"] > FORMAT_VERSION
        ):
            raise CheckpointBundleError(
                f"{where}: format version {record['format_version']!r}, newer than this replearn "
                f"reads ({FORMAT_VERSION}); upgrade the course package",
                reason="version",
                path=where,
            )
        if not isinstance(record["methods"], dict) or not record["methods"]:
            raise bad("it lists no methods")
        for name, entry in record["methods"].items():
            if not isinstance(entry, dict):
                raise bad(f"method {name!r} is not a table")
            lacking = [key for key in _REQUIRED_METHOD if key not in entry]
            if lacking:
                raise bad(f"method {name!r} lacks {lacking}")
            if not isinstance(entry["file"], str) or not _FILE_NAME.fullmatch(entry["file"]):
                raise bad(
                    f"method {name!r} names the file {entry['file']!r}, not a plain .safetensors name"
                )
            if entry["dtype"] not in ("float16", "float32", "bfloat16"):
                raise bad(f"method {name!r} has dtype {entry['dtype']!r}")

    @property
    def methods(self) -> list[str]:
        return sorted(self.record["methods"])

    def entry(self, method: str) -> dict:
        """``bundle.json``'s table of ``method``; an unknown one says which the bundle has."""
        try:
            return self.record["methods"][method]
        except KeyError:
            raise CheckpointBundleError(
                f"the course-checkpoint bundle {self.version} ({self.location}) has no {method!r}; "
                f"it has {', '.join(self.methods)}",
                reason="unknown",
                path=self.location,
            ) from None

    def weights(self, method: str) -> dict[str, torch.Tensor]:
        """The verified tensors of ``method``: size, then sha256 against ``bundle.json``."""
        entry = self.entry(method)
        name, where = entry["file"], self._files.where(entry["file"])
        size = self._files.size(name)
        if size is None:
            raise CheckpointBundleError(
                f"missing file {where}: bundle {self.version} lists it for {method!r}. "
                f"{_how_to_fix(self.version)}",
                reason="missing",
                path=where,
            )
        if size != entry["bytes"]:
            raise CheckpointBundleError(
                f"corrupt file {where}: {size:,} bytes, expected {entry['bytes']:,} (sha256 "
                f"{entry['sha256']}); truncated or a different file. {_how_to_fix(self.version)}",
                reason="corrupt",
                path=where,
            )
        payload = self._files.read(name)
        got = _sha256(payload)
        if got != entry["sha256"]:
            raise CheckpointBundleError(
                f"checksum mismatch for {where} ({method!r} of bundle {self.version}):\n  "
                f"expected sha256 {entry['sha256']}\n  got      sha256 {got}\n"
                f"{_how_to_fix(self.version)}",
                reason="checksum",
                path=where,
            )
        from safetensors import SafetensorError
        from safetensors.torch import load

        try:
            tensors = load(payload)
        except SafetensorError as error:  # right hash, wrong content: the bundle.json is wrong
            raise CheckpointBundleError(
                f"corrupt file {where}: not safetensors ({error})", reason="corrupt", path=where
            ) from error
        wrong = sorted(
            n
            for n, t in tensors.items()
            if t.is_floating_point() and str(t.dtype).removeprefix("torch.") != entry["dtype"]
        )
        if wrong:
            raise CheckpointBundleError(
                f"corrupt file {where}: tensors {wrong[:4]} are not {entry['dtype']} as "
                f"bundle.json says",
                reason="corrupt",
                path=where,
            )
        return tensors

    def encoder(self, method: str, device: str | torch.device = "cpu") -> nn.Module:
        """The encoder of ``method``: built from its architecture, its verified weights loaded
        (float32, eval mode, on ``device``)."""
        entry = self.entry(method)
        where = self._files.where(entry["file"])
        tensors = self.weights(method)
        try:
            encoder = build_encoder(entry["architecture"])
        except ValueError as error:
            raise CheckpointBundleError(
                f"{where}: {error}", reason="corrupt", path=where
            ) from error
        expected = encoder.state_dict()
        missing = sorted(set(expected) - set(tensors))
        unexpected = sorted(set(tensors) - set(expected))
        shapes = sorted(
            n for n in set(expected) & set(tensors) if expected[n].shape != tensors[n].shape
        )
        if missing or unexpected or shapes:
            raise CheckpointBundleError(
                f"corrupt file {where}: its tensors do not fit the {entry['architecture'].get('kind')} "
                f"encoder bundle.json describes (missing {missing[:4]}, unexpected "
                f"{unexpected[:4]}, other shapes {shapes[:4]})",
                reason="corrupt",
                path=where,
            )
        encoder.load_state_dict(tensors)  # copies into float32
        count = sum(p.numel() for p in encoder.parameters())
        if count != entry["parameters"]:
            raise CheckpointBundleError(
                f"corrupt file {where}: {count:,} parameters, bundle.json says {entry['parameters']:,}",
                reason="corrupt",
                path=where,
            )
        return encoder.to(device).eval()

    def info(self, method: str) -> CourseEncoderInfo:
        entry, record = self.entry(method), self.record
        budget = entry.get("budget", {})
        return CourseEncoderInfo(
            method=method,
            label=course_label(budget.get("epochs")),
            epochs=budget.get("epochs"),
            steps=budget.get("steps"),
            seed=entry.get("seed"),
            dtype=entry["dtype"],
            parameters=int(entry["parameters"]),
            sha256=entry["sha256"],
            evaluation=dict(entry.get("evaluation", {})),
            architecture=dict(entry["architecture"]),
            config=dict(entry.get("config", {})),
            command=str(entry.get("command", "")),
            data=dict(entry.get("data", {})),
            training=dict(entry.get("training", {})),
            bundle_version=self.version,
            created=str(record.get("created", "")),
            git_commit=str(record.get("reference", {}).get("git_commit", "")),
            pinned=self.pinned,
            source=f"{self.location} ({self.origin})",
        )

    def verify(self, methods: Iterable[str] | None = None) -> dict[str, str]:
        """Check the weights of every method (or of ``methods``): their size and sha256, and that
        they build the architecture ``bundle.json`` describes. Returns ``{method: sha256}``."""
        digests = {}
        for method in methods or self.methods:
            self.encoder(method)
            digests[method] = self.entry(method)["sha256"]
        return digests


def open_bundle(path: str | os.PathLike, *, origin: str = "argument") -> Bundle:
    """Open the bundle at ``path`` (a folder holding ``bundle.json``, or a zip of one)."""
    return Bundle(Path(path).expanduser(), origin)


# --------------------------------------------------------------------------------------------
# Finding a bundle, offline first
# --------------------------------------------------------------------------------------------


def _current_zip_name() -> str | None:
    manifest = _manifest()
    pin = manifest["bundles"].get(str(manifest["current"])) if manifest["current"] else None
    return (pin or {}).get("zip", {}).get("name")


def _from_env() -> Bundle | None:
    chosen = os.environ.get(CHECKPOINTS_ENV)
    if not chosen:
        return None
    path = Path(chosen).expanduser()
    if not path.exists():
        raise CheckpointBundleError(
            f"${CHECKPOINTS_ENV} = {chosen} does not exist; point it at a folder holding a course "
            f"checkpoint bundle ({BUNDLE_FILE} and the weight files) or at its zip, or unset it",
            reason="missing",
            path=path,
        )
    if path.is_dir() and not (path / BUNDLE_FILE).is_file():
        pinned_zip = _current_zip_name()
        if pinned_zip and (path / pinned_zip).is_file():
            path = path / pinned_zip
    return Bundle(path, f"${CHECKPOINTS_ENV}")


def _download(version: str, pin: dict) -> Path:
    """The pinned zip of ``version`` in the cache, downloaded once from its public address."""
    import urllib.request

    from replearn.data import cache_dir

    zip_pin = pin.get("zip") or {}
    name, url = zip_pin.get("name"), pin.get("url")
    target = cache_dir() / CACHE_SUBDIR / str(name)
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    print(
        f"[replearn.checkpoints] downloading the course checkpoints {version} from {url}",
        flush=True,
    )
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            payload = response.read()
    except OSError as error:
        raise CheckpointBundleError(
            f"could not download the course checkpoints from {url} ({error}). Offline, set "
            f"${CHECKPOINTS_ENV} to a folder holding the bundle (the hand-out's copy).",
            reason="download",
            path=url,
        ) from error
    if len(payload) != zip_pin.get("bytes") or _sha256(payload) != zip_pin.get("sha256"):
        raise CheckpointBundleError(
            f"the download from {url} does not match the pinned bundle {version}:\n  expected "
            f"sha256 {zip_pin.get('sha256')} ({zip_pin.get('bytes')} bytes)\n  got      sha256 "
            f"{_sha256(payload)} ({len(payload)} bytes)",
            reason="checksum",
            path=url,
        )
    _atomic_write(target, payload)
    return target


def find_bundle(
    bundle: str | os.PathLike | Bundle | None = None, *, download: bool = True
) -> Bundle:
    """The course-checkpoint bundle to use, offline first (see the module's docstring).

    Raises:
        CheckpointBundleError: none found (the message lists where it looked and how to get
            one), or the one found fails its checks.
    """
    if isinstance(bundle, Bundle):
        return bundle
    if bundle is not None:
        return open_bundle(bundle)
    found = _from_env()
    if found is not None:
        return found
    if (PACKAGED_DIR / BUNDLE_FILE).is_file():
        return Bundle(PACKAGED_DIR, "the course package's copy", require_pin=True)
    manifest = _manifest()
    version = manifest["current"]
    pin = manifest["bundles"].get(str(version)) if version else None
    if pin is not None and (pin.get("zip") or {}).get("name"):
        from replearn.data import cache_dir

        cached = cache_dir() / CACHE_SUBDIR / pin["zip"]["name"]
        if cached.is_file():
            return Bundle(cached, "downloaded earlier", require_pin=True)
        if download and pin.get("url"):
            return Bundle(_download(str(version), pin), "downloaded", require_pin=True)
    raise CheckpointBundleError(
        "no course-checkpoint bundle found. Looked in: "
        f"${CHECKPOINTS_ENV} (unset); the course package ({PACKAGED_DIR}: none); "
        + (
            "the download cache and the pinned address (none pinned). "
            if pin is None
            else f"the download cache (none){'' if pin.get('url') else '; no public address is configured'}. "
        )
        + f"Set ${CHECKPOINTS_ENV} to a folder holding one (course maintainers make it with "
        f"`{TRAIN_COMMAND} --out DIR` in the course repository).",
        reason="missing",
    )


def load_course_encoder(
    method: str,
    device: str | torch.device = "cpu",
    *,
    bundle: str | os.PathLike | Bundle | None = None,
    download: bool = True,
) -> tuple[nn.Module, CourseEncoderInfo]:
    """The course's checkpoint of ``method``: ``(encoder, info)``.

    The encoder is built from the architecture the bundle describes (``SmallCNN`` of the right
    widths for the SmallCNN methods, :class:`MAEFeatureEncoder` for ``mae``,
    :class:`CaptionImageTower` for ``clip``), its verified weights loaded in float32, in eval
    mode, on ``device``; ``info`` (:class:`CourseEncoderInfo`) labels it as the course's and
    holds its budget, config, command and evaluation. Probe it with :func:`probe_view`.

    Raises:
        CheckpointBundleError: no bundle, a method the bundle lacks (the message lists those it
            has), or a file that fails its checks.
    """
    found = find_bundle(bundle, download=download)
    encoder = found.encoder(method, device)
    return encoder, found.info(method)


# --------------------------------------------------------------------------------------------
# Writing a bundle (the course maintainers' command, and tests)
# --------------------------------------------------------------------------------------------


def _atomic_write(path: Path, payload: bytes) -> None:
    """Write via a temporary file and a rename, so that a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        dir=path.parent, prefix=f".{path.name}.", delete=False
    ) as handle:
        handle.write(payload)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(handle.name, 0o644)
    os.replace(handle.name, path)


def _utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


def write_bundle(
    folder: str | os.PathLike,
    methods: Mapping[str, tuple[Mapping[str, torch.Tensor], Mapping[str, Any]]],
    *,
    bundle_version: str,
    about: Mapping[str, Any] | None = None,
) -> Path:
    """Write a bundle to ``folder``, atomically: a reader sees the old bundle or the new one.

    ``methods`` maps a method name to ``(tensors, entry)``: the weights (:func:`encoder_tensors`,
    in the dtype to store) and its ``bundle.json`` table (``architecture``, ``budget``, ``seed``,
    ``evaluation`` ... ; the file name, sha256, size, dtype and parameter count are filled in
    here). ``about`` adds bundle-wide fields (``reference``, ``machine``, ``command``, ...).
    The files are written into a sibling folder that then replaces ``folder``.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.partial-"))
    try:
        record: dict[str, Any] = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "bundle_version": str(bundle_version),
            "created": _utc_now(),
            **dict(about or {}),
            "methods": {},
        }
        for name, (tensors, entry) in sorted(methods.items()):
            floating = {
                str(t.dtype).removeprefix("torch.")
                for t in tensors.values()
                if t.is_floating_point()
            }
            if len(floating) != 1:
                raise ValueError(
                    f"{name}: the floating tensors must share one dtype, got {sorted(floating)}"
                )
            file_name = f"{re.sub(r'[^A-Za-z0-9_.-]', '-', name)}.safetensors"
            payload = weights_bytes(tensors, {"format": FORMAT, "method": name})
            (staging / file_name).write_bytes(payload)
            entry = dict(entry)
            architecture = entry.get("architecture") or {}
            built = build_encoder(architecture)  # the spec must rebuild these very tensors
            built.load_state_dict(dict(tensors))
            entry.update(
                file=file_name,
                sha256=_sha256(payload),
                bytes=len(payload),
                dtype=floating.pop(),
                parameters=sum(p.numel() for p in built.parameters()),
            )
            record["methods"][name] = entry
        Bundle._check_record(record, str(staging / BUNDLE_FILE))
        (staging / BUNDLE_FILE).write_text(json.dumps(record, indent=1, sort_keys=False) + "\n")
        for path in staging.iterdir():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
        os.chmod(staging, 0o755)
        old = None
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
            os.replace(folder, old)
        os.replace(staging, folder)
        if old is not None:
            _remove_tree(old)
    except BaseException:
        _remove_tree(staging)
        raise
    return folder


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def write_zip(folder: str | os.PathLike, path: str | os.PathLike) -> Path:
    """The bundle ``folder`` as a zip at ``path`` (files at its top level, fixed dates and order,
    so the same bundle gives the same bytes), written atomically."""
    folder, path = Path(folder), Path(path)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for member in sorted(p for p in folder.iterdir() if p.is_file()):
            info = zipfile.ZipInfo(member.name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, member.read_bytes())
    _atomic_write(path, buffer.getvalue())
    return path


def pin_entry(
    folder: str | os.PathLike, zip_path: str | os.PathLike | None = None, url: str = ""
) -> dict:
    """The ``checkpoint_manifest.json`` pin of the bundle in ``folder`` (and of its zip)."""
    raw = (Path(folder) / BUNDLE_FILE).read_bytes()
    pin: dict[str, Any] = {"bundle_json": {"sha256": _sha256(raw), "bytes": len(raw)}, "url": url}
    if zip_path is not None:
        payload = Path(zip_path).read_bytes()
        pin["zip"] = {
            "name": Path(zip_path).name,
            "sha256": _sha256(payload),
            "bytes": len(payload),
        }
    return pin


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _table(bundle: Bundle) -> str:
    rows = [
        f"bundle {bundle.version} ({'pinned' if bundle.pinned else 'not pinned'}) at "
        f"{bundle.location} ({bundle.origin}); created {bundle.record.get('created')}, "
        f"reference commit {bundle.record.get('reference', {}).get('git_commit', '?')[:12]}",
        f"{'method':<22} {'epochs':>6} {'steps':>6} {'dtype':>8} {'params':>9} {'KiB':>7} "
        f"{'kNN':>6} {'linear':>6}",
    ]
    for name in bundle.methods:
        entry = bundle.entry(name)
        course = entry["evaluation"].get("course", {})
        rows.append(
            f"{name:<22} {entry['budget'].get('epochs', '?'):>6} {entry['budget'].get('steps', '?'):>6} "
            f"{entry['dtype']:>8} {entry['parameters']:>9,} {entry['bytes'] / 1024:>7.0f} "
            f"{100 * course.get('knn', float('nan')):>6.1f} {100 * course.get('linear', float('nan')):>6.1f}"
        )
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m replearn.checkpoints {info,verify} [--bundle PATH] [--methods ...]``."""
    parser = argparse.ArgumentParser(
        prog="python -m replearn.checkpoints", description=__doc__.split("\n")[0]
    )
    parser.add_argument("command", choices=("info", "verify"))
    parser.add_argument(
        "--bundle",
        help=f"a bundle folder or zip; default: ${CHECKPOINTS_ENV}, then the package's copy",
    )
    parser.add_argument("--methods", nargs="*", help="verify only these")
    parser.add_argument("--no-download", action="store_true")
    args = parser.parse_args(argv)
    try:
        bundle = find_bundle(args.bundle, download=not args.no_download)
        print(_table(bundle))
        if args.command == "verify":
            digests = bundle.verify(args.methods)
            print(
                f"verified {len(digests)} method(s): sha256, sizes, architectures and parameter counts"
            )
    except CheckpointBundleError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
