"""Tests of replearn.data: the shipped working sets, error paths, splits, and real data folders.

Tests that take the ``shared_dir`` fixture read a real folder of CIFAR-10/MNIST files
(``$REPLEARN_DATA_DIR``, which CI sets) and are skipped, with the reason shown, where there is
none. Every other test runs offline on the data shipped inside replearn and scikit-learn or on
small files written to a temporary folder, with a temporary cache directory.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import struct
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from replearn import data as D

REPO_ROOT = Path(__file__).resolve().parents[1]
_ENV_DATA_DIR = os.environ.get(D.DATA_DIR_ENV)


def _shared_folder() -> Path | None:
    if _ENV_DATA_DIR:
        return Path(_ENV_DATA_DIR) if Path(_ENV_DATA_DIR).is_dir() else None
    return None


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path, request):
    """No ambient data folder; a fresh cache, except for tests of the real shared files (which
    share the normal cache so that CIFAR-10 is decoded once across runs); empty hash memo."""
    monkeypatch.delenv(D.DATA_DIR_ENV, raising=False)
    if "shared_dir" not in request.fixturenames:
        monkeypatch.setenv(D.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(D, "_verified_memo", {})


@pytest.fixture
def shared_dir() -> Path:
    folder = _shared_folder()
    if folder is None and _ENV_DATA_DIR:
        pytest.skip(f"{D.DATA_DIR_ENV}={_ENV_DATA_DIR} is not a folder")
    if folder is None:
        pytest.skip(f"no real data folder: set {D.DATA_DIR_ENV} to one (data/README.md)")
    return folder


def _need(folder: Path, name: str) -> Path:
    if not (folder / name).is_file():
        pytest.skip(f"{folder / name} not present")
    return folder / name


def _fake_manifest(monkeypatch, **entries) -> None:
    """Replace the manifest's file table with ``entries`` (name -> entry dict)."""
    manifest = {"format": 1, "datasets": {}, "files": dict(entries)}
    monkeypatch.setattr(D, "_manifest_cache", manifest)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---- the working sets shipped with the package ----------------------------------------------


def test_cifar10_5k_ships_with_the_package_and_needs_nothing_else():
    data = D.load_dataset("cifar10-5k", download=False)  # no folder (fixture), no network
    assert data.name == "cifar10-5k" and "shipped with replearn" in data.source
    assert data.x_train.shape == (5000, 3, 32, 32) and data.x_test.shape == (1000, 3, 32, 32)
    assert data.x_train.dtype == torch.uint8 and data.y_train.dtype == torch.int64
    assert torch.bincount(data.y_train).tolist() == [500] * 10
    assert torch.bincount(data.y_test).tolist() == [100] * 10
    assert data.class_names == D.CIFAR10_CLASSES
    mean = D.to_float(data.x_train).mean(dim=(0, 2, 3))  # [3]: real photographs, not noise
    assert torch.allclose(mean, torch.tensor(D.CIFAR10_MEAN), atol=0.005)
    small = D.load_dataset("cifar10-5k", train_per_class=20, test_per_class=10)
    assert len(small.y_train) == 200 and len(small.y_test) == 100


def test_mnist_working_set_is_real_mnist_with_its_positions():
    data = D.load_dataset("mnist-embedded")
    assert data.x_train.shape == (10000, 1, 28, 28) and data.x_test.shape == (1000, 1, 28, 28)
    assert torch.bincount(data.y_train).tolist() == [1000] * 10
    assert torch.bincount(data.y_test).tolist() == [100] * 10
    assert data.class_names == [str(d) for d in range(10)] and "\n" not in data.source
    train_at, test_at = data.positions
    assert torch.all(train_at[1:] > train_at[:-1]) and int(train_at.max()) < 60000  # official order
    assert torch.all(test_at[1:] > test_at[:-1]) and int(test_at.max()) < 10000
    # real digits: about 19% of MNIST pixels are ink (mean 0.1307); noise or blanks would not be
    assert abs(D.to_float(data.x_train).mean().item() - 0.13) < 0.02


def test_mnist_draws_come_from_the_shipped_digits_without_a_download(monkeypatch):
    import torchvision.datasets

    def no_network(*args, **kwargs):
        raise AssertionError("a draw the package covers must not reach torchvision")

    monkeypatch.setattr(torchvision.datasets, "MNIST", no_network)
    drawn = D.load_dataset("mnist", train_per_class=100, test_per_class=50)
    assert drawn.name == "mnist" and "shipped with replearn" in drawn.source
    assert torch.bincount(drawn.y_train).tolist() == [100] * 10
    # the same digits as the same draw from the working set: keys of the official positions
    again = D.load_dataset("mnist-embedded", train_per_class=100, test_per_class=50)
    assert torch.equal(drawn.x_train, again.x_train) and torch.equal(drawn.y_test, again.y_test)
    bigger = D.load_dataset("mnist", train_per_class=1000, test_per_class=100)
    assert set(drawn.positions[0].tolist()) <= set(bigger.positions[0].tolist())  # nested
    with pytest.raises(D.DataError):  # beyond the shipped digits: the full files are needed
        D.load_dataset("mnist", train_per_class=1001, test_per_class=100, download=False)
    with pytest.raises(D.DataError):  # another seed draws other digits
        D.load_dataset("mnist", train_per_class=10, test_per_class=10, seed=1, download=False)


def test_embedded_split_is_fixed_and_seed_only_moves_subsets():
    first, again = D.load_dataset("mnist-embedded"), D.load_dataset("mnist-embedded", seed=7)
    assert torch.equal(first.x_test, again.x_test) and torch.equal(first.y_train, again.y_train)
    a = D.load_dataset("mnist-embedded", train_per_class=5, test_per_class=3, seed=1)
    b = D.load_dataset("mnist-embedded", train_per_class=5, test_per_class=3, seed=1)
    c = D.load_dataset("mnist-embedded", train_per_class=5, test_per_class=3, seed=2)
    assert a.x_train.shape == (50, 1, 28, 28) and a.x_test.shape == (30, 1, 28, 28)
    assert torch.bincount(a.y_train).tolist() == [5] * 10
    assert torch.bincount(a.y_test).tolist() == [3] * 10
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.x_test, b.x_test)
    assert not torch.equal(a.x_train, c.x_train)
    assert "drawn with seed 1" in a.source
    with pytest.raises(ValueError, match="only 1000 exist"):
        D.load_dataset("mnist-embedded", train_per_class=1001)


def test_a_tampered_shipped_file_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(D, "_decoded_memo", {})
    for name in ("cifar10_5k_jpeg.npz", "mnist_working_set.npz"):
        payload = bytearray((D.EMBEDDED_DIR / name).read_bytes())
        payload[len(payload) // 2] ^= 0xFF  # one flipped byte, same size
        (tmp_path / name).write_bytes(bytes(payload))
    monkeypatch.setattr(D, "EMBEDDED_DIR", tmp_path)
    for dataset in ("cifar10-5k", "mnist-embedded"):
        with pytest.raises(D.DataError, match="checksum mismatch") as caught:
            D.load_dataset(dataset)
        assert caught.value.reason == "checksum" and str(tmp_path) in str(caught.value)
        assert "reinstall replearn" in str(caught.value)


def test_every_source_gives_a_shuffled_class_balanced_order():
    """No loader returns images sorted by class: a slice of the first images holds every class."""
    for name in ("cifar10-5k", "mnist-embedded", "digits"):
        data = D.load_dataset(name)
        for labels in (data.y_train, data.y_test):
            assert len(labels[:100].unique()) == 10, name
            assert (labels[1:] != labels[:-1]).float().mean() > 0.8, name  # no runs of a class
    sorted_labels = np.repeat(np.arange(10), 50)  # [500], as CIFAR-10's files are by class
    order = D.course_order(sorted_labels)
    assert sorted(order.tolist()) == list(range(500))
    for k in (1, 7, 50):  # every prefix of 10 k images holds k of each class
        assert np.bincount(sorted_labels[order[: 10 * k]], minlength=10).tolist() == [k] * 10
    assert np.array_equal(order, D.course_order(sorted_labels))  # fixed
    assert not np.array_equal(order, D.course_order(sorted_labels, seed=1))


def test_digits_dataset():
    data = D.load_dataset("digits")
    assert data.x_train.shape == (1497, 1, 8, 8) and data.x_test.shape == (300, 1, 8, 8)
    assert torch.bincount(data.y_test).tolist() == [30] * 10
    assert int(data.x_train.max()) == 255  # 16 -> 255
    mean, std = data.mean_std()  # measured, since digits has no published constants
    assert len(mean) == 1 and 0.2 < mean[0] < 0.4 and std[0] > 0


def test_default_dataset_is_the_working_set_below_colab(capsys):
    data = D.default_dataset("smoke", download=False)  # cifar10-5k: shipped, no notice
    assert data.name == D.EMBEDDED_DATASET == "cifar10-5k"
    assert torch.bincount(data.y_train).tolist() == [20] * 10  # smoke: 20 / 10 per class
    assert torch.bincount(data.y_test).tolist() == [10] * 10
    assert capsys.readouterr().out == ""
    full = D.default_dataset("cpu-quick", download=False)
    assert len(full.y_train) == 5000 and len(full.y_test) == 1000


def test_default_dataset_falls_back_to_the_working_set_offline(capsys):
    data = D.default_dataset("colab", download=False)  # all of CIFAR-10: no folder, no download
    assert data.name == D.EMBEDDED_DATASET
    assert len(data.y_train) == 5000 and len(data.y_test) == 1000  # capped at 500 / 100
    notice = capsys.readouterr().out
    assert "cifar10 unavailable" in notice and len(notice.strip().splitlines()) == 1


def test_default_dataset_falls_back_when_the_download_fails(monkeypatch, capsys):
    import torchvision.datasets

    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(D.DataError) as caught:
        D.load_dataset("cifar10")
    err = caught.value
    assert err.reason == "download"
    for needed in ("cifar-10-python.tar.gz", D.DATA_DIR_ENV, "fetch cifar10", "offline"):
        assert needed in str(err)
    data = D.default_dataset("full")
    assert data.name == D.EMBEDDED_DATASET
    assert "could not download cifar10" in capsys.readouterr().out


def test_default_dataset_reports_a_corrupt_file_instead_of_hiding_it(tmp_path):
    (tmp_path / D.CIFAR10_SUBSET_FILE).write_bytes(b"PK\x03\x04 not a whole npz")
    with pytest.raises(D.DataError) as caught:
        D.default_dataset("smoke", data_dir=tmp_path)
    assert caught.value.reason == "corrupt"
    assert str(tmp_path / D.CIFAR10_SUBSET_FILE) in str(caught.value)


# ---- error paths ----------------------------------------------------------------------------


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(D.DataError) as caught:
        D.load_dataset("cifar-10")
    message = str(caught.value)
    assert caught.value.reason == "unknown" and isinstance(caught.value, RuntimeError)
    for name in D.DATASETS:
        assert name in message
    assert "Did you mean 'cifar10'" in message


def test_missing_folder_and_missing_files(tmp_path):
    with pytest.raises(D.DataError, match="does not exist") as caught:
        D.load_dataset("mnist", data_dir=tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(caught.value) and caught.value.reason == "missing"
    with pytest.raises(D.DataError) as caught:
        D.load_dataset("mnist", data_dir=tmp_path, download=False)
    assert caught.value.reason == "missing"
    assert str(tmp_path / D.MNIST_NPZ_FILE) in str(caught.value)


def test_missing_data_dir_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(D.DATA_DIR_ENV, str(tmp_path / "gone"))
    with pytest.raises(D.DataError, match=r"\$REPLEARN_DATA_DIR"):
        D.load_dataset("cifar10")
    fallback = D.default_dataset("smoke")  # a wrong folder is no reason to stop a notebook
    assert fallback.name == D.EMBEDDED_DATASET and "shipped with replearn" in fallback.source


def test_truncated_file_is_reported_with_size_and_checksum(tmp_path):
    path = tmp_path / D.MNIST_NPZ_FILE
    path.write_bytes(b"\0" * 1000)  # the first bytes of an interrupted copy
    with pytest.raises(D.DataError) as caught:
        D.load_dataset("mnist", data_dir=tmp_path)
    message = str(caught.value)
    assert caught.value.reason == "corrupt" and caught.value.path == str(path)
    assert str(path) in message and "1,000 bytes, expected 11,490,519" in message
    assert "06af5dfe73b70e3bc1c36439982b18a8d76803db9b544f6fdf838a37fbb01b64" in message


def test_checksum_mismatch_names_file_expected_got_and_fix(tmp_path):
    path = tmp_path / D.MNIST_NPZ_FILE
    path.write_bytes(b"\0" * 11_490_519)  # right size, wrong content
    with pytest.raises(D.DataError) as caught:
        D.load_dataset("mnist", data_dir=tmp_path)
    message = str(caught.value)
    assert caught.value.reason == "checksum"
    assert str(path) in message
    assert (
        "expected sha256 06af5dfe73b70e3bc1c36439982b18a8d76803db9b544f6fdf838a37fbb01b64"
        in message
    )
    assert f"got      sha256 {_sha256(path)}" in message
    assert "fetch mnist" in message and D.DATA_DIR_ENV in message


def test_truncated_npz_that_passes_its_checksum_is_reported_as_corrupt(tmp_path, monkeypatch):
    buffer = io.BytesIO()
    np.savez(buffer, x_train=np.zeros((60000, 28, 28), np.uint8))
    path = tmp_path / D.MNIST_NPZ_FILE
    path.write_bytes(buffer.getvalue()[:5000])  # a truncated zip
    _fake_manifest(monkeypatch, **{D.MNIST_NPZ_FILE: {"sha256": _sha256(path)}})
    with pytest.raises(D.DataError, match="cannot read it as .npz") as caught:
        D.load_dataset("mnist", data_dir=tmp_path)
    assert caught.value.reason == "corrupt" and str(path) in str(caught.value)

    path.write_bytes(buffer.getvalue())  # a whole npz, but without y_train, x_test, y_test
    _fake_manifest(monkeypatch, **{D.MNIST_NPZ_FILE: {"sha256": _sha256(path)}})
    with pytest.raises(D.DataError, match=r"lacks the arrays \['y_train', 'x_test', 'y_test'\]"):
        D.load_dataset("mnist", data_dir=tmp_path)


def test_corrupt_cifar_batch_folder_names_the_bad_file(tmp_path):
    folder = tmp_path / D.CIFAR10_BATCH_FOLDER
    folder.mkdir()
    for name in D.CIFAR10_BATCH_FILES:
        (folder / name).write_bytes(b"not the official batch")
    with pytest.raises(D.DataError) as caught:
        D.load_dataset("cifar10", data_dir=tmp_path, download=False)
    assert caught.value.reason == "checksum"
    assert str(folder / "data_batch_1") in str(caught.value)
    assert "c99cafc152244af753f735de768cd75f" in str(caught.value)  # torchvision's md5


def test_verified_hash_is_remembered_per_path_size_and_mtime(tmp_path, monkeypatch):
    path = tmp_path / "blob.bin"
    path.write_bytes(b"abc" * 1000)
    _fake_manifest(monkeypatch, **{"blob.bin": {"bytes": 3000, "sha256": _sha256(path)}})
    hashed = []
    real_digest = D._digest
    monkeypatch.setattr(D, "_digest", lambda p, a: hashed.append(p) or real_digest(p, a))
    D.verify_file(path)
    D.verify_file(path)  # in-process memo
    monkeypatch.setattr(D, "_verified_memo", {})
    D.verify_file(path)  # verified_files.json in the cache
    assert len(hashed) == 1
    assert (D.cache_dir() / "verified_files.json").is_file()
    os.utime(path, ns=(0, path.stat().st_mtime_ns + 10**9))  # touched: hash again
    D.verify_file(path)
    assert len(hashed) == 2
    path.write_bytes(b"abd" * 1000)  # same size, new content, new mtime: caught
    os.utime(path, ns=(0, path.stat().st_mtime_ns + 2 * 10**9))
    with pytest.raises(D.DataError, match="checksum mismatch"):
        D.verify_file(path)


def test_corrupt_decoded_cache_is_rebuilt_not_trusted(tmp_path, monkeypatch, capsys):
    """A half-written cache of decoded CIFAR-10 is decoded again, from a small fake JPEG file."""
    from PIL import Image

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(4, 32, 32, 3), dtype=np.uint8)
    blobs = []
    for image in images:
        out = io.BytesIO()
        Image.fromarray(image).save(out, format="JPEG")
        blobs.append(np.frombuffer(out.getvalue(), np.uint8))
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in blobs])]).astype(np.int64)
    packed = dict(
        jpeg_train=np.concatenate(blobs),
        offsets_train=offsets,
        y_train=np.array([0, 0, 1, 1], np.uint8),
        jpeg_test=np.concatenate(blobs[:2]),
        offsets_test=offsets[:3],
        y_test=np.array([0, 1], np.uint8),
        class_names=np.array(["a", "b"]),
    )
    path = tmp_path / D.CIFAR10_JPEG_FILE
    np.savez(path, **packed)
    sha = _sha256(path)
    _fake_manifest(monkeypatch, **{D.CIFAR10_JPEG_FILE: {"sha256": sha}})
    decoded = D._decode_jpegs(packed["jpeg_train"], offsets)  # [4, 3, 32, 32]
    for i, blob in enumerate(blobs):  # each slice decodes to its own image, channels first
        own = np.asarray(Image.open(io.BytesIO(blob.tobytes())))  # [32, 32, 3]
        assert np.array_equal(decoded[i], own.transpose(2, 0, 1))
    cached = D.cache_dir() / f"cifar10_jpeg_full_decoded_{sha[:12]}.npz"
    cached.write_bytes(b"half a file")  # e.g. a run killed while writing
    data = D.load_dataset("cifar10", data_dir=tmp_path)
    assert "decoding again" in capsys.readouterr().out
    order = torch.from_numpy(D.course_order(packed["y_train"]))  # [4]: the course order
    assert torch.equal(data.x_train, torch.from_numpy(decoded)[order])
    assert sorted(data.y_test.tolist()) == [0, 1] and data.class_names == ["a", "b"]


# ---- the torchvision layouts, with small files in the official formats -----------------------


def test_cifar_batch_folder_is_read_by_torchvision_in_the_course_order(tmp_path, monkeypatch):
    from torchvision.datasets import CIFAR10

    folder = tmp_path / D.CIFAR10_BATCH_FOLDER
    folder.mkdir()
    rng = np.random.default_rng(0)
    written = {}
    for name in D.CIFAR10_BATCH_FILES:
        if name == "batches.meta":
            entry = {"label_names": D.CIFAR10_CLASSES}
        else:
            labels = [3, 1, 3, 0]  # interleaved, as in the official files
            written[name] = (rng.integers(0, 256, (4, 3072), dtype=np.uint8), labels)
            entry = {"data": written[name][0], "labels": labels}
        (folder / name).write_bytes(pickle.dumps(entry))
    md5 = {n: hashlib.md5((folder / n).read_bytes()).hexdigest() for n in D.CIFAR10_BATCH_FILES}
    _fake_manifest(
        monkeypatch, **{f"{D.CIFAR10_BATCH_FOLDER}/{n}": {"md5": m} for n, m in md5.items()}
    )
    monkeypatch.setattr(
        CIFAR10, "train_list", [[f"data_batch_{i}", md5[f"data_batch_{i}"]] for i in range(1, 6)]
    )
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5["test_batch"]]])
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": md5["batches.meta"]})

    data = D.load_dataset("cifar10", data_dir=tmp_path, download=False)
    assert data.x_train.shape == (20, 3, 32, 32) and data.x_test.shape == (4, 3, 32, 32)
    # by class, official order within a class (as the JPEG file is), then the course order
    by_class = torch.tensor([0] * 5 + [1] * 5 + [3] * 10)  # [20]
    order = torch.from_numpy(D.course_order(by_class))  # [20]
    assert torch.equal(data.y_train, by_class[order])
    first_batch = written["data_batch_1"][0].reshape(4, 3, 32, 32)  # rows are CHW planes
    sorted_rows = {0: first_batch[3], 10: first_batch[0], 11: first_batch[2]}  # class 0, then 3s
    for row, image in sorted_rows.items():
        at = int((order == row).nonzero())
        assert torch.equal(data.x_train[at], torch.from_numpy(image))
    assert data.class_names == D.CIFAR10_CLASSES and "torchvision" in data.source


def _idx_file(array: np.ndarray) -> bytes:
    """The IDX format of the official MNIST files (big-endian header, then uint8 data)."""
    header = struct.pack(">I", 0x0800 + array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def test_mnist_raw_folder_is_read_by_torchvision(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    x_train, x_test = rng.integers(0, 256, (30, 28, 28)), rng.integers(0, 256, (10, 28, 28))
    (raw / "train-images-idx3-ubyte").write_bytes(_idx_file(x_train))
    (raw / "train-labels-idx1-ubyte").write_bytes(_idx_file(np.arange(30) % 10))
    (raw / "t10k-images-idx3-ubyte").write_bytes(_idx_file(x_test))
    (raw / "t10k-labels-idx1-ubyte").write_bytes(_idx_file(np.arange(10)))
    data = D.load_dataset("mnist", data_dir=tmp_path, download=False)
    assert data.x_train.shape == (30, 1, 28, 28)
    assert torch.equal(data.x_train[:, 0], torch.from_numpy(x_train.astype(np.uint8)))
    assert data.y_test.tolist() == list(range(10))
    (raw / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(D.DataError, match="torchvision could not read mnist") as caught:
        D.load_dataset("mnist", data_dir=tmp_path, download=False)
    assert str(raw) in str(caught.value)


# ---- splits and conversion ------------------------------------------------------------------


def test_few_label_indices_balanced_sorted_seeded_nested():
    labels = torch.arange(1000) % 7  # [1000], 7 classes
    picked = D.few_label_indices(labels, per_class=10, seed=3)
    assert picked.dtype == torch.int64 and picked.shape == (70,)
    assert torch.bincount(labels[picked]).tolist() == [10] * 7
    assert torch.equal(picked, torch.sort(picked).values) and len(set(picked.tolist())) == 70
    assert torch.equal(picked, D.few_label_indices(labels.numpy(), 10, seed=3))  # numpy too
    assert not torch.equal(picked, D.few_label_indices(labels, 10, seed=4))
    bigger = D.few_label_indices(labels, 20, seed=3)
    assert set(picked.tolist()) <= set(bigger.tolist())  # nested for a few-label curve
    with pytest.raises(ValueError, match="only 142 exist"):
        D.few_label_indices(labels, 143, seed=0)
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError, match="positive integer"):
            D.few_label_indices(labels, bad)


def test_draws_use_the_published_splitmix64_stream():
    """The keys are SplitMix64's reference outputs, so a draw cannot move with a library version."""
    assert [hex(int(v)) for v in D._splitmix64(0, 2)] == [
        "0xe220a8397b1dcdaf",
        "0x6e789e6aa1b965f4",
    ]
    assert int(D._splitmix64(1234567, 1)[0]) == 6457827717110365317
    labels = torch.tensor([0, 1, 0, 1, 0, 1, 1])
    keys = D._splitmix64(0, 7).tolist()  # smallest two keys per class, by hand
    by_hand = sorted(
        i
        for c in (0, 1)
        for i in sorted((i for i in range(7) if labels[i] == c), key=keys.__getitem__)[:2]
    )
    assert D.few_label_indices(labels, 2, seed=0).tolist() == by_hand


def test_split_unlabelled_is_disjoint_and_complete():
    labels = torch.tensor([0, 1, 2] * 50)  # [150]
    labelled, unlabelled = D.split_unlabelled(labels, labelled_per_class=4, seed=0)
    assert torch.bincount(labels[labelled]).tolist() == [4, 4, 4]
    assert len(unlabelled) == 150 - 12
    assert not set(labelled.tolist()) & set(unlabelled.tolist())
    assert sorted(labelled.tolist() + unlabelled.tolist()) == list(range(150))
    assert torch.equal(unlabelled, torch.sort(unlabelled).values)


def test_to_float_and_image_data_checks():
    x = torch.tensor([0, 128, 255], dtype=torch.uint8).view(1, 1, 1, 3)  # [1, 1, 1, 3]
    y = D.to_float(x)
    assert y.dtype == torch.float32 and y.shape == x.shape
    assert torch.allclose(y.flatten(), torch.tensor([0.0, 128 / 255, 1.0]))
    assert D.to_float(x.numpy()).dtype == torch.float32
    with pytest.raises(TypeError, match="uint8"):
        D.to_float(y)
    with pytest.raises(ValueError, match="x_train must be uint8"):
        D.ImageData(
            y,
            torch.zeros(1, dtype=torch.long),
            x,
            torch.zeros(1, dtype=torch.long),
            ["a"],
            "t",
            "s",
        )
    with pytest.raises(ValueError, match="labels outside"):
        D.ImageData(x, torch.tensor([1]), x, torch.tensor([0]), ["a"], "t", "s")
    data = D.ImageData(x, torch.tensor([0]), x, torch.tensor([0]), ["a"], "t", "made here")
    assert (
        repr(data) == "ImageData(t: 1 train / 1 test images, 1x1x3, 1 classes; source: made here)"
    )


def test_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(D.CACHE_ENV, str(tmp_path / "elsewhere"))
    assert D.cache_dir() == tmp_path / "elsewhere" and D.cache_dir().is_dir()
    monkeypatch.delenv(D.CACHE_ENV)
    assert D.cache_dir() == REPO_ROOT / "data" / "cache"  # running from a checkout


def test_manifest_covers_every_file_the_loaders_name():
    manifest = D._manifest()
    files = manifest["files"]
    for name in (
        D.CIFAR10_JPEG_FILE,
        D.CIFAR10_SUBSET_FILE,
        D.MNIST_NPZ_FILE,
        "cifar-10-python.tar.gz",
    ):
        assert name in files
    for name in D.CIFAR10_BATCH_FILES:
        assert len(files[f"{D.CIFAR10_BATCH_FOLDER}/{name}"]["md5"]) == 32
    for name in D.MNIST_RAW_FILES:
        assert len(files[f"MNIST/raw/{name}"]["md5"]) == 32
    for entry in files.values():
        assert entry.get("dataset") in manifest["datasets"]
        assert "sha256" in entry or "md5" in entry
    for dataset in manifest["datasets"].values():
        assert dataset["licence"] and dataset["citation"]


def test_manifest_md5s_agree_with_installed_torchvision():
    from torchvision.datasets import CIFAR10, MNIST

    files = D._manifest()["files"]
    for name, md5 in CIFAR10.train_list + CIFAR10.test_list:
        assert files[f"{D.CIFAR10_BATCH_FOLDER}/{name}"]["md5"] == md5
    assert files["cifar-10-python.tar.gz"]["md5"] == CIFAR10.tgz_md5
    for name, md5 in MNIST.resources:
        assert files[f"MNIST/raw/{name}"]["md5"] == md5


def test_command_line(capsys, tmp_path):
    assert D.main(["info"]) == 0
    assert "cache dir" in capsys.readouterr().out
    assert D.main(["fetch", "mnist-embedded", "cifar10-5k"]) == 0
    out = capsys.readouterr().out
    assert "mnist-embedded: 10,000 train" in out and "cifar10-5k: 5,000 train" in out
    (tmp_path / D.MNIST_NPZ_FILE).write_bytes(b"bad")
    assert D.main(["verify", "--data-dir", str(tmp_path)]) == 1
    assert "FAILED" in capsys.readouterr().out


# ---- the real files of the shared data folder -----------------------------------------------


def test_shared_folder_verifies(shared_dir):
    for name in (D.CIFAR10_JPEG_FILE, D.CIFAR10_SUBSET_FILE, D.MNIST_NPZ_FILE):
        D.verify_file(_need(shared_dir, name))


def test_shared_cifar10_5k_is_the_shipped_working_set_bit_for_bit(shared_dir):
    _need(shared_dir, D.CIFAR10_SUBSET_FILE)
    data = D.load_dataset("cifar10-5k", data_dir=shared_dir)
    assert D.CIFAR10_SUBSET_FILE in data.source
    shipped = D.load_dataset("cifar10-5k")  # the package's copy (no folder)
    assert "shipped with replearn" in shipped.source
    for split in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(data, split), getattr(shipped, split)), split


def test_shared_mnist_draws_equal_the_shipped_digits(shared_dir):
    _need(shared_dir, D.MNIST_NPZ_FILE)
    mnist = D.load_dataset("mnist", data_dir=shared_dir)
    assert mnist.x_train.shape == (60000, 1, 28, 28) and mnist.x_test.shape == (10000, 1, 28, 28)
    assert mnist.y_train[:5].tolist() == [5, 0, 4, 1, 9]  # the official first labels
    x = D.to_float(mnist.x_train)
    assert (
        abs(x.mean().item() - D.MNIST_MEAN[0]) < 1e-3
        and abs(x.std().item() - D.MNIST_STD[0]) < 1e-3
    )
    for train_pc, test_pc in ((5, 5), (100, 50), (1000, 100)):  # smoke, 01, 02 of cpu-quick
        real = D.load_dataset(
            "mnist", data_dir=shared_dir, train_per_class=train_pc, test_per_class=test_pc
        )
        shipped = D.load_dataset("mnist", train_per_class=train_pc, test_per_class=test_pc)
        assert "shipped with replearn" in shipped.source
        for split in ("x_train", "y_train", "x_test", "y_test"):
            assert torch.equal(getattr(real, split), getattr(shipped, split)), (train_pc, split)


@pytest.mark.slow
def test_shipped_files_rebuild_bit_for_bit_from_the_folder(shared_dir):
    """``data/make_embedded.py --check``: the shipped bytes are what the script makes."""
    import subprocess
    import sys

    for name in (D.CIFAR10_JPEG_FILE, D.CIFAR10_SUBSET_FILE, D.MNIST_NPZ_FILE):
        _need(shared_dir, name)
    done = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "data" / "make_embedded.py"),
            "--data-dir",
            str(shared_dir),
            "--check",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("same") == 2


def test_shared_jpeg_decode_matches_the_5k_subset(shared_dir):
    """Decode just the JPEGs whose (class, file_id) the 5k subset holds, and compare pixels."""
    full_path = _need(shared_dir, D.CIFAR10_JPEG_FILE)
    subset_path = _need(shared_dir, D.CIFAR10_SUBSET_FILE)
    full, subset = np.load(full_path), np.load(subset_path)
    for split in ("train", "test"):
        where = {
            (int(c), int(f)): i
            for i, (c, f) in enumerate(zip(full[f"y_{split}"], full[f"file_id_{split}"]))
        }
        rows = [
            where[(int(c), int(f))]
            for c, f in zip(subset[f"y_{split}"], subset[f"file_id_{split}"])
        ]
        blob, offsets = full[f"jpeg_{split}"], full[f"offsets_{split}"]
        pieces = [blob[offsets[r] : offsets[r + 1]] for r in rows]
        lengths = np.cumsum([0] + [len(p) for p in pieces])
        decoded = D._decode_jpegs(np.concatenate(pieces), lengths)  # [N, 3, 32, 32]
        expected = subset[f"x_{split}"].transpose(0, 3, 1, 2)  # HWC -> [N, 3, 32, 32]
        assert np.array_equal(decoded, expected), split


@pytest.mark.slow
def test_shared_cifar10_full_decodes_caches_and_comes_in_the_course_order(
    shared_dir, tmp_path, monkeypatch
):
    """Cold decode of all 60,000 JPEGs (about 15-30 s on 2 cores), then the cached load."""
    _need(shared_dir, D.CIFAR10_JPEG_FILE)
    monkeypatch.setenv(D.CACHE_ENV, str(tmp_path / "cache"))
    cold = D.load_dataset("cifar10", data_dir=shared_dir)
    assert cold.x_train.shape == (50000, 3, 32, 32) and cold.x_test.shape == (10000, 3, 32, 32)
    assert torch.bincount(cold.y_train).tolist() == [5000] * 10
    assert "decoded with Pillow" in cold.source
    warm = D.load_dataset("cifar10", data_dir=shared_dir)
    assert "cached decode" in warm.source
    assert torch.equal(cold.x_train, warm.x_train) and torch.equal(cold.y_test, warm.y_test)
    for labels in (warm.y_train, warm.y_test):  # the first 2,000 hold 200 of each class
        assert torch.bincount(labels[:2000]).tolist() == [200] * 10
