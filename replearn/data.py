"""Named image datasets behind one loader API, with checksums and data that ships with the package.

>>> data = load_dataset("mnist-embedded", train_per_class=2, test_per_class=1)
>>> data.x_train.shape, data.x_train.dtype, data.y_train.dtype
(torch.Size([20, 1, 28, 28]), torch.uint8, torch.int64)
>>> to_float(data.x_train).max() <= 1.0
tensor(True)

Datasets (``load_dataset(name)``; ``DATASETS`` lists them):

* ``cifar10``         all 50,000 / 10,000 CIFAR-10 images. Tried in order: a local folder
  (``data_dir=`` or ``$REPLEARN_DATA_DIR``) holding ``cifar10_jpeg_full_bytes.npz`` or
  torchvision's ``cifar-10-batches-py/``; a copy torchvision downloaded earlier into the cache;
  a torchvision download of the official archive.
* ``cifar10-5k``      the course's working set: 5,000 / 1,000 CIFAR-10 images, 500 / 100 per
  class, the same images in the same order wherever it is loaded. It ships inside the package
  (``replearn/embedded/cifar10_5k_jpeg.npz``: the images' JPEG files, about 5.6 MB), so it needs
  no network and no folder; a local folder's ``cifar10_jpeg_subset5k1k_seed0_uint8.npz`` (the same
  pixels, already decoded) is read instead when present.
* ``mnist``           60,000 / 10,000 MNIST digits, ``[N, 1, 28, 28]``: ``mnist_full_uint8.npz``
  or torchvision's ``MNIST/raw/`` in the folder; else, for a seed-0 draw of at most 1,000 / 100
  digits per class (what every preset below ``colab`` asks for), the digits that ship inside
  the package; else a copy downloaded earlier, else a torchvision download.
* ``mnist-embedded``  those shipped digits on their own (10,000 / 1,000, official order): the
  MNIST working set. A per-class draw from it picks the digits the same draw from ``mnist`` picks.
* ``digits``          scikit-learn's 1,797 8x8 digits (``[N, 1, 8, 8]``, 0..16 rescaled to 0..255),
  split 1,497 / 300 (30 per class in the test set, fixed seed 0).

Every file is checked against ``replearn/data_manifest.json`` (size, then sha256, or the md5 torchvision
publishes) before it is read; a verified hash is remembered per (path, size, mtime) in the cache
directory, so that later loads skip the hashing. Anything wrong raises one ``DataError`` whose
message names the file and says how to get a good copy.

Image order. Every source of a dataset gives the same images in the same order, and no order is
sorted by class, so a slice such as ``x_train[:2000]`` holds every class. CIFAR-10 comes in the
course order: within each class a fixed random order, the classes interleaved so that every prefix
of ``10 k`` images holds ``k`` of each class (``course_order``); torchvision's copy and the JPEG
file give the same order. ``cifar10-5k`` keeps the shuffled order of its file. MNIST keeps the
official order (already mixed).

Environment: ``REPLEARN_DATA_DIR`` (a folder with local copies), ``REPLEARN_CACHE`` (where
downloads and decoded arrays go; default ``data/cache/`` in a checkout, else
``~/.cache/replearn``). Command line: ``python -m replearn.data {fetch,verify,info}``.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import io
import json
import os
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "DATASETS",
    "DataError",
    "EMBEDDED_DATASET",
    "ImageData",
    "MNIST_MEAN",
    "MNIST_STD",
    "as_float_images",
    "cache_dir",
    "course_order",
    "default_dataset",
    "few_label_indices",
    "load_dataset",
    "split_unlabelled",
    "to_float",
    "verify_file",
]

DATA_DIR_ENV = "REPLEARN_DATA_DIR"
CACHE_ENV = "REPLEARN_CACHE"
REPO_ROOT = Path(__file__).resolve().parents[1]
MANIFEST_PATH = Path(__file__).with_name("data_manifest.json")  # ships inside the package
EMBEDDED_DIR = Path(__file__).with_name("embedded")  # the working sets that ship with the package
EMBEDDED_DATASET = "cifar10-5k"  # needs no network and no folder: the fallback of default_dataset

# File names inside a data folder (their formats: data/README.md).
CIFAR10_JPEG_FILE = "cifar10_jpeg_full_bytes.npz"
CIFAR10_SUBSET_FILE = "cifar10_jpeg_subset5k1k_seed0_uint8.npz"
MNIST_NPZ_FILE = "mnist_full_uint8.npz"
CIFAR10_BATCH_FOLDER = "cifar-10-batches-py"  # torchvision's layout of the official archive
CIFAR10_BATCH_FILES = (
    "data_batch_1",
    "data_batch_2",
    "data_batch_3",
    "data_batch_4",
    "data_batch_5",
    "test_batch",
    "batches.meta",
)
MNIST_RAW_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)

CIFAR10_CLASSES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]
DIGIT_CLASSES = [str(digit) for digit in range(10)]

# Per-channel mean and std of the training images, in [0, 1] units.
# CIFAR-10: over every pixel of the 50,000 official (lossless) training images; the widely copied
# std (0.2023, 0.1994, 0.2010) is a different, smaller statistic (kuangliu/pytorch-cifar issue #19).
# The JPEG mirror's 5k working set is a little smoother (mean 0.4893, 0.4807, 0.4434; std 0.2434,
# 0.2411, 0.2593): the JPEG caveat of data/README.md.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
# MNIST: the usual constants; measured on mnist_full_uint8.npz's training images: 0.13066, 0.30811.
MNIST_MEAN = (0.1307,)
MNIST_STD = (0.3081,)
_MEAN_STD = {
    "cifar10": (CIFAR10_MEAN, CIFAR10_STD),
    "cifar10-5k": (CIFAR10_MEAN, CIFAR10_STD),
    "mnist": (MNIST_MEAN, MNIST_STD),
    "mnist-embedded": (MNIST_MEAN, MNIST_STD),
}


class DataError(RuntimeError):
    """Data that cannot be had: unknown name, missing, corrupt, wrong checksum, failed download.

    ``reason`` is one of ``"unknown"``, ``"missing"``, ``"corrupt"``, ``"checksum"``,
    ``"download"``; ``path`` is the file concerned (or None). ``default_dataset`` falls back to
    the embedded data only for ``"missing"`` and ``"download"``: a corrupt file is always reported.
    """

    def __init__(self, message: str, *, reason: str, path: str | Path | None = None):
        super().__init__(message)
        self.reason = reason
        self.path = None if path is None else str(path)


@dataclass(repr=False)
class ImageData:
    """A labelled image dataset with a fixed train/test split, stored compactly as uint8.

    Convert a batch with ``to_float`` (float32 in [0, 1]) when it is used.
    """

    x_train: torch.Tensor  # [N, C, H, W] uint8
    y_train: torch.Tensor  # [N] int64
    x_test: torch.Tensor  # [N, C, H, W] uint8
    y_test: torch.Tensor  # [N] int64
    class_names: list[str]
    name: str
    source: str  # one line: exactly which file, download or package the images came from
    # Where each image sits in the full dataset it was taken from ([N_train], [N_test] int64), when
    # it is a part of one (the shipped MNIST digits): per-class draws then use the full set's keys.
    positions: tuple[torch.Tensor, torch.Tensor] | None = None

    def __post_init__(self):
        for split in ("train", "test"):
            x = getattr(self, f"x_{split}")
            y = getattr(self, f"y_{split}")
            if x.dtype != torch.uint8 or x.dim() != 4:
                raise ValueError(
                    f"x_{split} must be uint8 [N, C, H, W], got {x.dtype} {tuple(x.shape)}"
                )
            if y.dtype != torch.int64 or y.dim() != 1 or len(y) != len(x):
                raise ValueError(
                    f"y_{split} must be int64 [N] with N = {len(x)}, got {y.dtype} {tuple(y.shape)}"
                )
            if len(y) and (int(y.min()) < 0 or int(y.max()) >= len(self.class_names)):
                raise ValueError(f"y_{split} holds labels outside 0..{len(self.class_names) - 1}")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)``."""
        return tuple(self.x_train.shape[1:])

    def mean_std(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and std in [0, 1] units: the published constants where the dataset
        has them (CIFAR-10, MNIST), else measured on this training set."""
        if self.name in _MEAN_STD:
            return _MEAN_STD[self.name]
        x = to_float(self.x_train)  # [N, C, H, W]
        return tuple(x.mean(dim=(0, 2, 3)).tolist()), tuple(x.std(dim=(0, 2, 3)).tolist())

    def summary(self) -> str:
        """One line: name, sizes, image shape, classes and source."""
        c, h, w = self.image_shape
        return (
            f"{self.name}: {len(self.y_train):,} train / {len(self.y_test):,} test images, "
            f"{c}x{h}x{w}, {self.num_classes} classes; source: {self.source}"
        )

    def __repr__(self) -> str:
        return f"ImageData({self.summary()})"


# ---- conversion and splits ------------------------------------------------------------------


def to_float(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    """uint8 images ``[N, C, H, W]`` (any device) to float32 in [0, 1], same shape and device."""
    x = torch.as_tensor(x)
    if x.dtype != torch.uint8:
        raise TypeError(
            f"to_float expects uint8 images (as stored by replearn.data), got {x.dtype}; "
            "images that are already float need no conversion"
        )
    return x.to(torch.float32).div_(255.0)  # [N, C, H, W] in [0, 1]


def as_float_images(images: torch.Tensor) -> torch.Tensor:
    """Images ``[N, C, H, W]`` as float32 in [0, 1]: uint8 goes through :func:`to_float`,
    floating images (already in [0, 1]) become float32, anything else is an error.

    >>> as_float_images(torch.full((1, 1, 2, 2), 255, dtype=torch.uint8)).flatten().tolist()
    [1.0, 1.0, 1.0, 1.0]
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"expected images [N, C, H, W], got {shape}")
    if images.dtype == torch.uint8:
        return to_float(images)  # [N, C, H, W]
    if images.is_floating_point():
        return images.float()  # [N, C, H, W]
    raise TypeError(
        f"images must be uint8 in [0, 255] or float in [0, 1], got dtype {images.dtype}"
    )


def _splitmix64(seed: int, n: int) -> np.ndarray:
    """The first ``n`` outputs of SplitMix64 seeded with ``seed``, as uint64 ``[n]``.

    SplitMix64 (Steele, Lea & Flood, "Fast splittable pseudorandom number generators", 2014;
    constants of Vigna's reference ``splitmix64.c``): plain integer arithmetic, so the stream is
    the same on every machine and every numpy/torch version. Seed 0 starts 0xe220a8397b1dcdaf.
    """
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps modulo 2**64, as intended
        z = np.uint64(seed % 2**64) + np.arange(1, n + 1, dtype=np.uint64) * np.uint64(
            0x9E3779B97F4A7C15
        )
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def few_label_indices(
    labels: torch.Tensor | np.ndarray | Sequence[int],
    per_class: int,
    seed: int = 0,
    *,
    positions: torch.Tensor | np.ndarray | Sequence[int] | None = None,
) -> torch.Tensor:
    """Indices of ``per_class`` examples of every class present in ``labels``, drawn with ``seed``.

    Returned **sorted ascending** (the dataset's own order), as an int64 tensor on the CPU.
    Example ``i`` gets the random key ``SplitMix64(seed)[i]``; each class keeps its
    ``per_class`` examples with the smallest keys. So the draw is the same on every machine and
    library version, and **nested**: the 10-per-class set is inside the 20-per-class set of the
    same seed (what a few-label curve wants).

    ``positions``: where each example sits in a larger dataset it was taken from; the keys are
    then that dataset's, so a draw from a subset that holds the larger draw picks the same
    examples as the draw from the whole (how the shipped MNIST digits stand in for MNIST).

    >>> few_label_indices(torch.tensor([0, 1, 0, 1, 0, 1, 1]), per_class=2, seed=0).tolist()
    [2, 4, 5, 6]
    """
    labels_np = torch.as_tensor(labels).detach().cpu().long().flatten().numpy()  # [N]
    if isinstance(per_class, bool) or int(per_class) != per_class or per_class < 1:
        raise ValueError(f"per_class must be a positive integer, got {per_class!r}")
    if positions is None:
        keys = _splitmix64(int(seed), len(labels_np))  # [N] uint64
    else:
        where = torch.as_tensor(positions).detach().cpu().long().flatten().numpy()  # [N]
        if len(where) != len(labels_np) or (len(where) and where.min() < 0):
            raise ValueError("positions must hold one non-negative index per label")
        keys = _splitmix64(int(seed), int(where.max()) + 1 if len(where) else 0)[where]  # [N]
    chosen = []
    for cls in np.unique(labels_np):
        members = np.flatnonzero(labels_np == cls)  # [N_c]
        if len(members) < per_class:
            raise ValueError(
                f"asked for {per_class} examples of class {cls}, but only {len(members)} exist; "
                f"choose per_class <= {len(members)}"
            )
        chosen.append(members[np.argsort(keys[members], kind="stable")[:per_class]])
    return torch.from_numpy(np.sort(np.concatenate(chosen)).astype(np.int64))  # [K * per_class]


def course_order(labels: np.ndarray | torch.Tensor, seed: int = 0) -> np.ndarray:
    """A fixed, class-balanced shuffle of a dataset held in a canonical order: an index ``[N]``.

    Within each class the examples are ranked by their SplitMix64 key; the order then takes the
    first of every class (in key order), then the second of every class, and so on. So every
    prefix of ``K * k`` examples holds ``k`` of each of the ``K`` classes, and the same canonical
    order gives the same shuffle on every machine (the CIFAR-10 loaders apply it to images sorted
    by class and official position, whichever file or download they came from).

    >>> course_order(np.array([0, 0, 0, 1, 1, 1])).tolist()
    [2, 4, 5, 1, 0, 3]
    """
    labels_np = np.asarray(torch.as_tensor(labels).cpu().long().flatten())  # [N]
    keys = _splitmix64(int(seed), len(labels_np))  # [N] uint64
    rank = np.empty(len(labels_np), dtype=np.int64)  # [N]: position within its class, by key
    for cls in np.unique(labels_np):
        members = np.flatnonzero(labels_np == cls)  # [N_c]
        rank[members[np.argsort(keys[members], kind="stable")]] = np.arange(len(members))
    return np.lexsort((keys, rank))  # [N]: by rank, then by key within a round


def split_unlabelled(
    labels: torch.Tensor | np.ndarray | Sequence[int], labelled_per_class: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a training set into a few-label set and the unlabelled pool (everything else).

    Returns ``(labelled, unlabelled)``, both sorted int64 index tensors, disjoint and together
    covering every index once. ``labelled`` is ``few_label_indices(labels, labelled_per_class,
    seed)``; pretrain on ``unlabelled`` (or on all images, ignoring labels) and fit the few-label
    classifier on ``labelled``.
    """
    labels = torch.as_tensor(labels).detach().cpu().long().flatten()  # [N]
    labelled = few_label_indices(labels, labelled_per_class, seed)  # [K * per_class]
    is_labelled = torch.zeros(len(labels), dtype=torch.bool)  # [N]
    is_labelled[labelled] = True
    unlabelled = torch.nonzero(~is_labelled).flatten()  # [N - K * per_class], ascending
    return labelled, unlabelled


# ---- where files live -----------------------------------------------------------------------


def _in_checkout() -> bool:
    """True when running from a source tree (repository or hand-out), not an installed wheel."""
    return (REPO_ROOT / "pyproject.toml").is_file() and (REPO_ROOT / "data").is_dir()


def cache_dir() -> Path:
    """Where downloads, decoded arrays and verified hashes go (created if needed).

    ``$REPLEARN_CACHE``, else ``data/cache/`` of the checkout, else ``~/.cache/replearn``.
    """
    chosen = os.environ.get(CACHE_ENV)
    if chosen:
        path = Path(chosen).expanduser()
    elif _in_checkout():
        path = REPO_ROOT / "data" / "cache"
    else:
        path = Path.home() / ".cache" / "replearn"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _local_dirs(data_dir: str | Path | None) -> list[Path]:
    """The local data folder to search: ``data_dir``, else ``$REPLEARN_DATA_DIR``, else none."""
    origin = "data_dir argument"
    if data_dir is None:
        data_dir, origin = os.environ.get(DATA_DIR_ENV) or None, f"${DATA_DIR_ENV}"
    if data_dir is None:
        return []
    path = Path(data_dir).expanduser()
    if not path.is_dir():
        raise DataError(
            f"data folder {path} (from the {origin}) does not exist; point it at a folder "
            f"holding the dataset files (see data/README.md), or unset {DATA_DIR_ENV} to download",
            reason="missing",
            path=path,
        )
    return [path]


def _notice(message: str) -> None:
    print(f"[replearn.data] {message}", flush=True)


# ---- the manifest and checksums -------------------------------------------------------------

_manifest_cache: dict | None = None
_manifest_warned = False
_verified_memo: dict[tuple[str, int, int, str], str] = {}


def _manifest() -> dict | None:
    """``replearn/data_manifest.json`` as a dict, or None (with one notice) where it is absent."""
    global _manifest_cache, _manifest_warned
    if _manifest_cache is None and MANIFEST_PATH.is_file():
        _manifest_cache = json.loads(MANIFEST_PATH.read_text())
    if _manifest_cache is None and not _manifest_warned:
        _manifest_warned = True
        _notice(f"{MANIFEST_PATH} not found (a damaged installation?): files not verified")
    return _manifest_cache


def _how_to_fix(entry: dict) -> str:
    hint = entry.get("how_to_get", "")
    return (
        f"Get a good copy: {hint + '; or ' if hint else ''}set {DATA_DIR_ENV} to a folder holding "
        f"a verified copy (see data/README.md)."
    )


def _digest(path: Path, algorithm: str) -> str:
    hasher = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(block)
    return hasher.hexdigest()


def _verified_store() -> Path:
    return cache_dir() / "verified_files.json"


def _read_verified_store() -> dict:
    try:
        return json.loads(_verified_store().read_text())
    except (OSError, ValueError):
        return {}


def _remember_verified(key: tuple[str, int, int, str], digest: str) -> None:
    _verified_memo[key] = digest
    store = _read_verified_store()
    store[key[0]] = {"size": key[1], "mtime_ns": key[2], "algorithm": key[3], "digest": digest}
    _atomic_write_bytes(_verified_store(), json.dumps(store, indent=1, sort_keys=True).encode())


def verify_file(path: str | Path, key: str | None = None) -> Path:
    """Check ``path`` against its ``replearn/data_manifest.json`` entry (``key``, default its file name).

    Size first (a truncated download fails at once), then sha256 (or md5 where only torchvision's
    md5 is published). A verified result is remembered per (path, size, mtime), in this process
    and in ``verified_files.json`` of the cache directory, so a large file is hashed once.
    """
    path = Path(path)
    key = key or path.name
    manifest = _manifest()
    if manifest is None:
        return path
    entry = manifest["files"].get(key)
    if entry is None:
        raise DataError(f"{path}: no entry {key!r} in {MANIFEST_PATH}", reason="corrupt", path=path)
    if not path.is_file():
        raise DataError(f"missing file {path}. {_how_to_fix(entry)}", reason="missing", path=path)
    algorithm = "sha256" if "sha256" in entry else "md5"
    expected = entry[algorithm]
    stat = path.stat()
    if "bytes" in entry and stat.st_size != entry["bytes"]:
        raise DataError(
            f"corrupt file {path}: {stat.st_size:,} bytes, expected {entry['bytes']:,} "
            f"({algorithm} {expected}); truncated or a different file. {_how_to_fix(entry)}",
            reason="corrupt",
            path=path,
        )
    memo_key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, algorithm)
    known = _verified_memo.get(memo_key)
    if known is None:
        stored = _read_verified_store().get(memo_key[0], {})
        if (stored.get("size"), stored.get("mtime_ns"), stored.get("algorithm")) == memo_key[1:]:
            known = stored.get("digest")
    if known == expected:
        _verified_memo[memo_key] = known
        return path
    got = _digest(path, algorithm)
    if got != expected:
        raise DataError(
            f"checksum mismatch for {path}:\n  expected {algorithm} {expected}\n  got      "
            f"{algorithm} {got}\n{_how_to_fix(entry)}",
            reason="checksum",
            path=path,
        )
    try:
        _remember_verified(memo_key, got)
    except OSError:  # a read-only cache only costs a re-hash next time
        _verified_memo[memo_key] = got
    return path


# ---- small file helpers ---------------------------------------------------------------------


def _atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write via a temporary file and a rename, so that a reader never sees half a file."""
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=path.name, delete=False) as handle:
        handle.write(payload)
    os.chmod(handle.name, 0o644)
    os.replace(handle.name, path)


def _read_npz(path: Path, keys: Sequence[str], fix: str) -> dict[str, np.ndarray]:
    """The arrays ``keys`` of an .npz (no pickle), or a DataError naming the file."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in keys if key not in archive.files]
            if missing:
                raise DataError(
                    f"corrupt file {path}: it lacks the arrays {missing} (it holds "
                    f"{sorted(archive.files)}). {fix}",
                    reason="corrupt",
                    path=path,
                )
            return {key: archive[key] for key in keys}
    except DataError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
        raise DataError(
            f"corrupt file {path}: cannot read it as .npz ({type(err).__name__}: {err}). {fix}",
            reason="corrupt",
            path=path,
        ) from err


def _labels(y: np.ndarray | torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(np.asarray(y)).long()  # [N] int64


def _check_shape(path: Path | str, name: str, array: np.ndarray, shape: tuple) -> None:
    """``shape`` may hold None for 'any size'."""
    ok = array.ndim == len(shape) and all(s is None or s == a for s, a in zip(shape, array.shape))
    if not ok or (name.startswith("x") and array.dtype != np.uint8):
        raise DataError(
            f"corrupt file {path}: {name} has shape {array.shape} and dtype {array.dtype}, "
            f"expected {tuple('N' if s is None else s for s in shape)}",
            reason="corrupt",
            path=path,
        )


def _hwc_to_chw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))  # [N, C, H, W]


# ---- CIFAR-10 -------------------------------------------------------------------------------


def _decode_jpegs(blob: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """JPEG files stored back to back -> uint8 ``[N, 3, 32, 32]``, decoded with Pillow."""
    from PIL import Image

    raw = blob.tobytes()
    images = np.empty((len(offsets) - 1, 32, 32, 3), dtype=np.uint8)  # [N, H, W, C]
    for i in range(len(offsets) - 1):
        with Image.open(io.BytesIO(raw[offsets[i] : offsets[i + 1]])) as image:
            images[i] = np.asarray(image.convert("RGB"))  # [H, W, C]
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2))  # [N, C, H, W]


def _cifar10_from_jpeg_npz(path: Path) -> ImageData:
    """Decode ``cifar10_jpeg_full_bytes.npz`` once; later loads read the cached uint8 arrays."""
    verify_file(path)
    entry = _manifest_entry(path.name)
    fix = _how_to_fix(entry)
    tag = entry.get("sha256", "unverified")[:12]
    cached = cache_dir() / f"cifar10_jpeg_full_decoded_{tag}.npz"
    keys = ("x_train", "y_train", "x_test", "y_test", "class_names")
    arrays = None
    if cached.is_file():
        try:
            arrays = _read_npz(cached, keys, "")
            _check_shape(cached, "x_train", arrays["x_train"], (50000, 3, 32, 32))
            _check_shape(cached, "x_test", arrays["x_test"], (10000, 3, 32, 32))
        except DataError as err:
            _notice(f"decoded cache {cached} is unreadable ({err}); decoding again")
            arrays = None
    how = f"cached decode {cached}"
    if arrays is None:
        names = ("jpeg_train", "offsets_train", "y_train", "jpeg_test", "offsets_test", "y_test")
        packed = _read_npz(path, (*names, "class_names"), fix)
        _notice(f"decoding 60,000 CIFAR-10 JPEGs of {path} once (~10-30 s); caching in {cached}")
        started = time.perf_counter()
        arrays = {
            "x_train": _decode_jpegs(packed["jpeg_train"], packed["offsets_train"]),
            "y_train": packed["y_train"],
            "x_test": _decode_jpegs(packed["jpeg_test"], packed["offsets_test"]),
            "y_test": packed["y_test"],
            "class_names": packed["class_names"],
        }
        how = f"decoded with Pillow in {time.perf_counter() - started:.0f} s, cached in {cached}"
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        try:
            _atomic_write_bytes(cached, buffer.getvalue())
        except OSError as err:
            _notice(f"could not write the decoded cache {cached} ({err}); next load decodes again")
    return _in_course_order(
        torch.from_numpy(arrays["x_train"]),  # [50000, 3, 32, 32], by class and official position
        arrays["y_train"],
        torch.from_numpy(arrays["x_test"]),  # [10000, 3, 32, 32]
        arrays["y_test"],
        [str(name) for name in arrays["class_names"]],
        f"CIFAR-10 JPEG mirror {path} (sha256 {tag}... verified; {how})",
    )


def _in_course_order(x_train, y_train, x_test, y_test, class_names, source) -> ImageData:
    """Full CIFAR-10, given sorted by class and official position, in the course order."""
    splits = []
    for x, y in ((x_train, y_train), (x_test, y_test)):
        order = torch.from_numpy(course_order(y))  # [N]
        splits += [x[order], _labels(y)[order]]  # [N, 3, 32, 32], [N]
    return ImageData(*splits, class_names=class_names, name="cifar10", source=source)


def _torchvision_error(dataset: str, root: Path, err: Exception) -> DataError:
    url = {
        "cifar10": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/ (torchvision's first mirror)",
    }[dataset]
    layout = {"cifar10": "<dir>/cifar-10-batches-py/", "mnist": "<dir>/MNIST/raw/*-ubyte.gz"}[
        dataset
    ]
    local = {"cifar10": CIFAR10_JPEG_FILE, "mnist": MNIST_NPZ_FILE}[dataset]
    said = " ".join(str(err).split()) or "no message"
    said = said if len(said) <= 200 else said[:197] + "..."
    return DataError(
        f"could not download {dataset} from {url} into {root} ({type(err).__name__}: "
        f"{said}). If this machine is offline: run "
        f"`python -m replearn.data fetch {dataset}` on a machine with network and copy "
        f"{root} here (or set {CACHE_ENV}); or put a copy in a folder as {layout} or {local} "
        f"and set {DATA_DIR_ENV}=<dir>; or use the offline default dataset {EMBEDDED_DATASET!r}.",
        reason="download",
        path=root,
    )


def _torchvision_read_error(dataset: str, folder: Path, err: Exception) -> DataError:
    said = " ".join(str(err).split()) or type(err).__name__
    return DataError(
        f"torchvision could not read {dataset} from {folder} ({type(err).__name__}: {said}). "
        f"Replace the folder with a complete copy (`python -m replearn.data fetch {dataset}` "
        f"on a machine with network) or point {DATA_DIR_ENV} elsewhere.",
        reason="corrupt",
        path=folder,
    )


def _cifar10_torchvision(root: Path, download: bool, origin: str) -> ImageData:
    """torchvision's CIFAR10 reader on ``root/cifar-10-batches-py`` (downloading if allowed)."""
    import torchvision
    from torchvision.datasets import CIFAR10

    folder = root / CIFAR10_BATCH_FOLDER
    if folder.is_dir():  # check here too, so that a bad file is named (torchvision's error is not)
        for name in CIFAR10_BATCH_FILES:
            verify_file(folder / name, f"{CIFAR10_BATCH_FOLDER}/{name}")
    try:
        train = CIFAR10(str(root), train=True, download=download)
        test = CIFAR10(str(root), train=False, download=False)
    except Exception as err:  # URLError, RuntimeError("Dataset not found or corrupted"), ...
        if download:
            raise _torchvision_error("cifar10", root, err) from err
        raise _torchvision_read_error("cifar10", folder, err) from err
    sorted_sets = []
    for split in (train, test):
        labels = np.asarray(split.targets, dtype=np.int64)  # [N]
        order = np.argsort(labels, kind="stable")  # by class, official order within a class
        sorted_sets += [_hwc_to_chw(split.data[order]), labels[order]]
    return _in_course_order(
        *sorted_sets,
        list(train.classes),
        f"CIFAR-10 official python archive via torchvision {torchvision.__version__} "
        f"({origin}) in {folder} (md5 verified)",
    )


def _load_cifar10(local: list[Path], download: bool) -> ImageData:
    looked = []
    for folder in local:
        if (folder / CIFAR10_JPEG_FILE).is_file():
            return _cifar10_from_jpeg_npz(folder / CIFAR10_JPEG_FILE)
        if (folder / CIFAR10_BATCH_FOLDER).is_dir():
            return _cifar10_torchvision(folder, download=False, origin="local folder")
        looked += [str(folder / CIFAR10_JPEG_FILE), str(folder / CIFAR10_BATCH_FOLDER)]
    root = cache_dir() / "torchvision"
    if (root / CIFAR10_BATCH_FOLDER).is_dir():
        return _cifar10_torchvision(root, download=False, origin="downloaded earlier")
    looked.append(str(root / CIFAR10_BATCH_FOLDER))
    if not download:
        raise DataError(
            f"CIFAR-10 not found (looked for {', '.join(looked)}) and download=False. Set "
            f"{DATA_DIR_ENV} to a folder holding {CIFAR10_JPEG_FILE} or {CIFAR10_BATCH_FOLDER}/, "
            "or allow the torchvision download.",
            reason="missing",
            path=looked[0],
        )
    if local:
        _notice(f"no CIFAR-10 in {local[0]}; trying the torchvision download into {root}")
    return _cifar10_torchvision(root, download=True, origin="downloaded")


def _load_cifar10_5k(local: list[Path], download: bool) -> ImageData:
    """The course's CIFAR-10 working set: a local folder's decoded copy, else the shipped one.

    Never a download: the working set is a fixed set of JPEG-coded images (data/README.md), and
    rebuilding it from the lossless official archive would change every number it gives.
    """
    for folder in local:
        path = folder / CIFAR10_SUBSET_FILE
        if path.is_file():
            verify_file(path)
            fix = _how_to_fix(_manifest_entry(path.name))
            keys = ("x_train", "y_train", "x_test", "y_test", "class_names")
            arrays = _read_npz(path, keys, fix)
            _check_shape(path, "x_train", arrays["x_train"], (5000, 32, 32, 3))
            _check_shape(path, "x_test", arrays["x_test"], (1000, 32, 32, 3))
            sha = _manifest_entry(path.name).get("sha256", "unverified")[:12]
            return ImageData(
                x_train=_hwc_to_chw(arrays["x_train"]),  # [5000, 3, 32, 32]
                y_train=_labels(arrays["y_train"]),
                x_test=_hwc_to_chw(arrays["x_test"]),  # [1000, 3, 32, 32]
                y_test=_labels(arrays["y_test"]),
                class_names=[str(name) for name in arrays["class_names"]],
                name="cifar10-5k",
                source=f"CIFAR-10 working set, decoded copy {path} (sha256 {sha}... verified)",
            )
    return _cifar10_5k_embedded()


def _embedded_file(name: str) -> tuple[Path, dict, str]:
    """A working set shipped in ``replearn/embedded/``, verified: (path, manifest entry, fix)."""
    key = f"replearn:embedded/{name}"
    path = verify_file(EMBEDDED_DIR / name, key)
    entry = _manifest_entry(key)
    return path, entry, _how_to_fix(entry)


_decoded_memo: dict[tuple[str, str], tuple[np.ndarray, ...]] = {}


def _cifar10_5k_embedded() -> ImageData:
    """Decode the 6,000 JPEG files shipped with the package (about a second on one core, once per
    process: later loads copy the decoded arrays)."""
    path, entry, fix = _embedded_file("cifar10_5k_jpeg.npz")
    memo_key = (str(path), entry.get("sha256", ""))
    if memo_key not in _decoded_memo:
        names = ("jpeg_train", "offsets_train", "y_train", "jpeg_test", "offsets_test", "y_test")
        arrays = _read_npz(path, (*names, "class_names"), fix)
        decoded = []
        for split, size in (("train", 5000), ("test", 1000)):
            offsets = arrays[f"offsets_{split}"]
            if len(offsets) != size + 1 or len(arrays[f"y_{split}"]) != size:
                raise DataError(
                    f"corrupt file {path}: {split} split is not {size} images. {fix}",
                    reason="corrupt",
                    path=path,
                )
            decoded += [_decode_jpegs(arrays[f"jpeg_{split}"], offsets), arrays[f"y_{split}"]]
        _decoded_memo[memo_key] = (*decoded, arrays["class_names"])  # [N, 3, 32, 32], [N], ...
    *decoded, class_names = _decoded_memo[memo_key]
    splits = [
        torch.from_numpy(decoded[0].copy()),
        _labels(decoded[1]),
        torch.from_numpy(decoded[2].copy()),
        _labels(decoded[3]),
    ]
    arrays = {"class_names": class_names}
    return ImageData(
        *splits,
        class_names=[str(name) for name in arrays["class_names"]],
        name="cifar10-5k",
        source=(
            f"CIFAR-10 working set shipped with replearn ({path.name}: 6,000 JPEG images of the "
            f"CIFAR-10 JPEG mirror, sha256 {entry.get('sha256', 'unverified')[:12]}... verified)"
        ),
    )


# ---- MNIST ----------------------------------------------------------------------------------


def _mnist_from_npz(path: Path) -> ImageData:
    verify_file(path)
    entry = _manifest_entry(path.name)
    arrays = _read_npz(path, ("x_train", "y_train", "x_test", "y_test"), _how_to_fix(entry))
    _check_shape(path, "x_train", arrays["x_train"], (60000, 28, 28))
    _check_shape(path, "x_test", arrays["x_test"], (10000, 28, 28))
    return ImageData(
        x_train=torch.from_numpy(arrays["x_train"]).unsqueeze(1),  # [60000, 1, 28, 28]
        y_train=_labels(arrays["y_train"]),
        x_test=torch.from_numpy(arrays["x_test"]).unsqueeze(1),  # [10000, 1, 28, 28]
        y_test=_labels(arrays["y_test"]),
        class_names=list(DIGIT_CLASSES),
        name="mnist",
        source=f"MNIST {path} (sha256 {entry.get('sha256', 'unverified')[:12]}... verified)",
    )


def _mnist_torchvision(root: Path, download: bool, origin: str) -> ImageData:
    import torchvision
    from torchvision.datasets import MNIST

    raw = root / "MNIST" / "raw"
    for name in MNIST_RAW_FILES:  # the archives, when kept, against torchvision's md5
        if (raw / name).is_file():
            verify_file(raw / name, f"MNIST/raw/{name}")
    try:
        train = MNIST(str(root), train=True, download=download)
        test = MNIST(str(root), train=False, download=False)
    except Exception as err:  # RuntimeError listing the mirrors tried, ...
        if download:
            raise _torchvision_error("mnist", root, err) from err
        raise _torchvision_read_error("mnist", raw, err) from err
    return ImageData(
        x_train=train.data.unsqueeze(1).contiguous(),  # [60000, 1, 28, 28]
        y_train=train.targets.long(),
        x_test=test.data.unsqueeze(1).contiguous(),  # [10000, 1, 28, 28]
        y_test=test.targets.long(),
        class_names=list(DIGIT_CLASSES),
        name="mnist",
        source=f"MNIST official files via torchvision {torchvision.__version__} ({origin}) in {raw}",
    )


def _load_mnist(local: list[Path], download: bool) -> ImageData:
    looked = []
    for folder in local:
        if (folder / MNIST_NPZ_FILE).is_file():
            return _mnist_from_npz(folder / MNIST_NPZ_FILE)
        if (folder / "MNIST" / "raw").is_dir():
            return _mnist_torchvision(folder, download=False, origin="local folder")
        looked += [str(folder / MNIST_NPZ_FILE), str(folder / "MNIST" / "raw")]
    root = cache_dir() / "torchvision"
    if (root / "MNIST" / "processed").is_dir() or all(
        (root / "MNIST" / "raw" / name.removesuffix(".gz")).is_file() for name in MNIST_RAW_FILES
    ):
        return _mnist_torchvision(root, download=False, origin="downloaded earlier")
    looked.append(str(root / "MNIST" / "raw"))
    if not download:
        raise DataError(
            f"MNIST not found (looked for {', '.join(looked)}) and download=False. Set "
            f"{DATA_DIR_ENV} to a folder holding {MNIST_NPZ_FILE} or MNIST/raw/, or allow the "
            "torchvision download.",
            reason="missing",
            path=looked[0],
        )
    if local:
        _notice(f"no MNIST in {local[0]}; trying the torchvision download into {root}")
    return _mnist_torchvision(root, download=True, origin="downloaded")


# ---- data shipped with the package, or inside other PyPI packages ----------------------------

DIGITS_TEST_PER_CLASS = 30  # digits: about 150 / 30 per class
_FIXED_SPLIT_SEED = 0  # the train/test split of packaged data never moves with `seed`
# The shipped MNIST digits: the seed-0 draw of this many per class (data/make_embedded.py).
MNIST_EMBEDDED_PER_CLASS = {"train": 1000, "test": 100}


def _package_file(package: str, relative: str) -> Path:
    """A data file inside an installed package, or a DataError saying what to install."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pip_name = {"sklearn": "scikit-learn"}.get(package, package)
        raise DataError(
            f"the package {package!r} that ships this dataset is not installed: "
            f"pip install {pip_name}",
            reason="missing",
            path=relative,
        )
    return Path(next(iter(spec.submodule_search_locations))) / relative


def _packaged_split(
    images: np.ndarray, labels: np.ndarray, test_per_class: int, name: str, source: str
) -> ImageData:
    """A fixed class-balanced test split of a packaged dataset; the rest is the training set."""
    test, train = split_unlabelled(labels, test_per_class, seed=_FIXED_SPLIT_SEED)
    x = torch.from_numpy(images)  # [N, 1, H, W] uint8
    y = torch.from_numpy(labels).long()  # [N]
    return ImageData(
        x_train=x[train],
        y_train=y[train],
        x_test=x[test],
        y_test=y[test],
        class_names=list(DIGIT_CLASSES),
        name=name,
        source=source,
    )


def _load_mnist_embedded(local: list[Path], download: bool) -> ImageData:
    """The 11,000 MNIST digits shipped with the package, in the official order, with positions."""
    path, entry, fix = _embedded_file("mnist_working_set.npz")
    keys = [f"{kind}_{split}" for split in ("train", "test") for kind in ("x", "y", "index")]
    arrays = _read_npz(path, keys, fix)
    splits, positions = [], []
    for split, full_size in (("train", 60000), ("test", 10000)):
        size = 10 * MNIST_EMBEDDED_PER_CLASS[split]
        _check_shape(path, f"x_{split}", arrays[f"x_{split}"], (size, 28, 28))
        index = arrays[f"index_{split}"].astype(np.int64)  # [size] positions in the official file
        if len(index) != size or index.min() < 0 or index.max() >= full_size:
            raise DataError(
                f"corrupt file {path}: index_{split}. {fix}", reason="corrupt", path=path
            )
        splits += [
            torch.from_numpy(arrays[f"x_{split}"]).unsqueeze(1),
            _labels(arrays[f"y_{split}"]),
        ]
        positions.append(torch.from_numpy(index))
    return ImageData(
        *splits,  # [10000, 1, 28, 28], [10000], [1000, 1, 28, 28], [1000]
        class_names=list(DIGIT_CLASSES),
        name="mnist-embedded",
        source=(
            f"MNIST working set shipped with replearn ({path.name}: the seed-0 draw of 1,000 / 100 "
            f"digits per class, sha256 {entry.get('sha256', 'unverified')[:12]}... verified)"
        ),
        positions=(positions[0], positions[1]),
    )


def _embedded_mnist_covers(train_per_class, test_per_class, seed) -> bool:
    """Whether a draw from ``mnist`` picks only digits that ship with the package."""
    wanted = {"train": train_per_class, "test": test_per_class}
    return seed == 0 and all(
        n is not None and n <= MNIST_EMBEDDED_PER_CLASS[split] for split, n in wanted.items()
    )


def _local_mnist(local: list[Path]) -> bool:
    return any((f / MNIST_NPZ_FILE).is_file() or (f / "MNIST" / "raw").is_dir() for f in local)


def _load_digits(local: list[Path], download: bool) -> ImageData:
    """scikit-learn's 8x8 digits (values 0..16), rescaled to 0..255 and kept at 8x8."""
    key = "sklearn:datasets/data/digits.csv.gz"
    path = verify_file(_package_file("sklearn", key.split(":", 1)[1]), key)
    import sklearn
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]  # [1797, 1, 8, 8]
    return _packaged_split(
        images,
        bunch.target.astype(np.int64),
        DIGITS_TEST_PER_CLASS,
        "digits",
        f"scikit-learn {sklearn.__version__} load_digits ({path.name}, sha256 verified; UCI "
        "optdigits, 8x8, 0..16 scaled to 0..255), fixed 30-per-class test split",
    )


# ---- the public loaders ---------------------------------------------------------------------

DATASETS: dict[str, Callable[[list[Path], bool], ImageData]] = {
    "cifar10": _load_cifar10,
    "cifar10-5k": _load_cifar10_5k,
    "mnist": _load_mnist,
    "mnist-embedded": _load_mnist_embedded,
    "digits": _load_digits,
}


def _manifest_entry(key: str) -> dict:
    manifest = _manifest()
    return {} if manifest is None else manifest["files"].get(key, {})


def load_dataset(
    name: str,
    *,
    train_per_class: int | None = None,
    test_per_class: int | None = None,
    seed: int = 0,
    data_dir: str | Path | None = None,
    download: bool = True,
) -> ImageData:
    """Load the dataset ``name`` (see ``DATASETS``) as uint8 ``[N, C, H, W]`` with int64 labels.

    Args:
        name: ``"cifar10"``, ``"cifar10-5k"``, ``"mnist"``, ``"mnist-embedded"`` or ``"digits"``.
        train_per_class, test_per_class: keep this many images of every class (class-balanced,
            drawn with ``few_label_indices(labels, n, seed)``, dataset order kept); None keeps all.
        seed: seeds those draws (the fixed splits of packaged data do not move with it).
        data_dir: a folder with local copies; default ``$REPLEARN_DATA_DIR``.
        download: allow torchvision to download what is not found locally.

    Raises:
        DataError: unknown name, or a file that is missing, corrupt or fails its checksum.
        ValueError: more images per class than the dataset has.
    """
    if name not in DATASETS:
        close = difflib.get_close_matches(str(name), DATASETS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise DataError(
            f"unknown dataset {name!r}; known: {', '.join(DATASETS)}.{hint}", reason="unknown"
        )
    packaged = name in ("mnist-embedded", "digits")  # shipped in a package: no folder to read
    try:
        local = [] if packaged else _local_dirs(data_dir)
    except DataError as err:
        if name != "cifar10-5k":
            raise
        _notice(f"{str(err).split(';')[0]}; reading the shipped working set instead")
        local = []
    if name == "mnist" and not _local_mnist(local):
        if _embedded_mnist_covers(train_per_class, test_per_class, seed):
            data = _load_mnist_embedded([], download)  # the same digits, without a download
            data = ImageData(
                data.x_train,
                data.y_train,
                data.x_test,
                data.y_test,
                data.class_names,
                "mnist",
                data.source,
                data.positions,
            )
            return _draw(data, train_per_class, test_per_class, seed)
    return _draw(DATASETS[name](local, download), train_per_class, test_per_class, seed)


def _draw(data: ImageData, train_per_class, test_per_class, seed) -> ImageData:
    """``per_class`` images of every class of each split (None: all), in the dataset's order."""
    picks = []
    for i, (split, per_class) in enumerate((("train", train_per_class), ("test", test_per_class))):
        labels = getattr(data, f"y_{split}")
        where = None if data.positions is None else data.positions[i]
        if per_class is None:
            picks.append(None)
        else:
            picks.append(few_label_indices(labels, per_class, seed, positions=where))
    if picks == [None, None]:
        return data
    train, test = (slice(None) if pick is None else pick for pick in picks)
    drawn = ", ".join(
        f"{n} {split}/class"
        for split, n in (("train", train_per_class), ("test", test_per_class))
        if n
    )
    return ImageData(
        x_train=data.x_train[train],  # [N, C, H, W]
        y_train=data.y_train[train],
        x_test=data.x_test[test],  # [N, C, H, W]
        y_test=data.y_test[test],
        class_names=data.class_names,
        name=data.name,
        source=f"{data.source}; {drawn} drawn with seed {seed}",
        positions=None
        if data.positions is None
        else (data.positions[0][train], data.positions[1][test]),
    )


def default_dataset(preset=None, **overrides) -> ImageData:
    """The preset's dataset when it can be had, else the course's CIFAR-10 working set.

    ``preset`` is a ``Preset``, a preset name, or None for ``$REPLEARN_PRESET`` / ``cpu-quick``;
    ``overrides`` go to ``load_dataset`` (``data_dir``, ``download``, ``seed``, per-class counts).
    ``smoke`` and ``cpu-quick`` ask for ``cifar10-5k``, which ships with the package. ``colab`` and
    ``full`` ask for all of CIFAR-10; without network or a data folder that prints one line and
    returns ``cifar10-5k`` with the per-class counts capped at what it has (500 / 100).
    A file that exists but is corrupt still raises: that needs fixing, not hiding.
    """
    from replearn.presets import get_preset

    preset = get_preset(preset)
    options = {
        "train_per_class": preset.train_per_class,
        "test_per_class": preset.test_per_class,
        **overrides,
    }
    try:
        return load_dataset(preset.dataset, **options)
    except DataError as err:
        if err.reason not in ("missing", "download") or preset.dataset == EMBEDDED_DATASET:
            raise
        first_line = str(err).splitlines()[0]
        reason = first_line if len(first_line) <= 160 else first_line[:157] + "..."
    limits = {"train_per_class": 500, "test_per_class": 100}
    for key, most in limits.items():
        options[key] = most if options.get(key) is None else min(options[key], most)
    _notice(
        f"{preset.dataset} unavailable ({reason}); using the shipped {EMBEDDED_DATASET} "
        f"({options['train_per_class']}/{options['test_per_class']} per class) instead"
    )
    options.pop("data_dir", None)
    return load_dataset(EMBEDDED_DATASET, **options)


# ---- command line ---------------------------------------------------------------------------


def _verify_folder(folder: Path) -> int:
    """Verify every manifest file present in ``folder`` and the packaged files; count failures."""
    manifest = _manifest()
    if manifest is None:
        return 1
    failures = 0
    for key in manifest["files"]:
        if ":" in key:
            package, relative = key.split(":", 1)
            try:
                path = _package_file(package, relative)
            except DataError as err:
                print(f"  skipped  {key}: {err}")
                continue
        else:
            path = folder / key
            if not path.is_file():
                continue
        try:
            verify_file(path, key)
            print(f"  ok       {path}")
        except DataError as err:
            failures += 1
            print(f"  FAILED   {err}")
    return failures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m replearn.data", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    fetch = commands.add_parser("fetch", help="load (downloading if needed) and verify datasets")
    fetch.add_argument("names", nargs="+", choices=sorted(DATASETS))
    fetch.add_argument("--data-dir", default=None, help=f"local folder (default ${DATA_DIR_ENV})")
    verify = commands.add_parser("verify", help="check every manifest file found in a folder")
    verify.add_argument("--data-dir", default=None, help=f"folder (default ${DATA_DIR_ENV})")
    commands.add_parser("info", help="print the folders and datasets replearn uses")
    args = parser.parse_args(argv)

    if args.command == "info":
        print(f"datasets:   {', '.join(DATASETS)}")
        print(
            f"data dir:   {os.environ.get(DATA_DIR_ENV) or '(unset: shipped data, else downloads)'}"
        )
        print(f"cache dir:  {cache_dir()}")
        print(f"manifest:   {MANIFEST_PATH}{'' if MANIFEST_PATH.is_file() else ' (missing)'}")
        return 0
    try:
        if args.command == "verify":
            folders = _local_dirs(args.data_dir) or [cache_dir() / "torchvision"]
            print(f"verifying against {MANIFEST_PATH}:")
            failures = sum(_verify_folder(folder) for folder in folders)
            return 1 if failures else 0
        for name in args.names:
            started = time.perf_counter()
            data = load_dataset(name, data_dir=args.data_dir)
            print(f"{data.summary()} [{time.perf_counter() - started:.1f} s]")
        return 0
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
