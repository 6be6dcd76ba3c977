"""Build the two working sets that ship inside the package (``replearn/embedded/``).

    python data/make_embedded.py --data-dir DIR [--check]

``DIR`` holds ``cifar10_jpeg_full_bytes.npz``, ``cifar10_jpeg_subset5k1k_seed0_uint8.npz`` and
``mnist_full_uint8.npz`` (the formats are described in ``data/README.md``). The script writes

* ``cifar10_5k_jpeg.npz``: the 6,000 images of the course's CIFAR-10 working set (``cifar10-5k``),
  as the original JPEG file bytes of the full mirror, in the subset file's order, so that decoding
  them gives the subset's uint8 arrays bit for bit (checked here);
* ``mnist_working_set.npz``: the 11,000 MNIST digits that ``load_dataset("mnist", ...)`` draws with
  seed 0 at up to 1,000 training and 100 test images per class, with their indices in the
  official files, so that any such draw can be made without the full files (checked here).

The archives are written with fixed zip timestamps, so the same inputs give the same bytes and
the sha256 recorded in ``replearn/data_manifest.json`` can be rebuilt by anyone with the inputs.
``--check`` rebuilds in memory and compares with the committed files instead of writing.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
OUT_DIR = REPO / "replearn" / "embedded"
CIFAR_FILE = "cifar10_5k_jpeg.npz"
MNIST_FILE = "mnist_working_set.npz"
MNIST_TRAIN_PER_CLASS = 1000  # the most any preset's MNIST part draws (Assignment 2, cpu-quick)
MNIST_TEST_PER_CLASS = 100


def deterministic_npz(arrays: dict[str, np.ndarray], *, compress: bool) -> bytes:
    """An ``.npz`` (readable by ``np.load``, no pickle) whose bytes depend on the arrays only."""
    buffer = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(buffer, "w", compression=method) as archive:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = method
            info.external_attr = 0o644 << 16
            member = io.BytesIO()
            np.lib.format.write_array(
                member, np.ascontiguousarray(arrays[name]), allow_pickle=False
            )
            archive.writestr(info, member.getvalue(), compresslevel=9 if compress else None)
    return buffer.getvalue()


def cifar_working_set(data_dir: Path) -> dict[str, np.ndarray]:
    """The JPEG bytes of the 5k/1k subset's images, in the subset's order, checked by decoding."""
    from PIL import Image

    with np.load(data_dir / "cifar10_jpeg_full_bytes.npz", allow_pickle=False) as archive:
        full = dict(archive)  # read every array once (an NpzFile re-reads on each access)
    with np.load(
        data_dir / "cifar10_jpeg_subset5k1k_seed0_uint8.npz", allow_pickle=False
    ) as archive:
        subset = dict(archive)
    arrays: dict[str, np.ndarray] = {"class_names": subset["class_names"]}
    for split in ("train", "test"):
        position = {
            (int(y), int(i)): k
            for k, (y, i) in enumerate(zip(full[f"y_{split}"], full[f"file_id_{split}"]))
        }
        blob, offsets = full[f"jpeg_{split}"].tobytes(), full[f"offsets_{split}"]
        chosen = [
            position[(int(y), int(i))]
            for y, i in zip(subset[f"y_{split}"], subset[f"file_id_{split}"])
        ]
        files = [blob[offsets[k] : offsets[k + 1]] for k in chosen]
        for j, payload in enumerate(files):
            with Image.open(io.BytesIO(payload)) as image:
                decoded = np.asarray(image.convert("RGB"))  # [32, 32, 3]
            if not np.array_equal(decoded, subset[f"x_{split}"][j]):
                raise SystemExit(f"{split} image {j} does not decode to the subset's pixels")
        arrays[f"jpeg_{split}"] = np.frombuffer(b"".join(files), dtype=np.uint8)
        arrays[f"offsets_{split}"] = np.cumsum([0] + [len(f) for f in files]).astype(np.int64)
        arrays[f"y_{split}"] = subset[f"y_{split}"].astype(np.uint8)
        arrays[f"file_id_{split}"] = subset[f"file_id_{split}"].astype(np.int16)
    return arrays


def mnist_working_set(data_dir: Path) -> dict[str, np.ndarray]:
    """The seed-0 draw of up to 1,000 / 100 digits per class, with the official indices."""
    sys.path.insert(0, str(REPO))
    from replearn.data import few_label_indices

    with np.load(data_dir / "mnist_full_uint8.npz", allow_pickle=False) as archive:
        full = dict(archive)
    arrays: dict[str, np.ndarray] = {}
    for split, per_class in (("train", MNIST_TRAIN_PER_CLASS), ("test", MNIST_TEST_PER_CLASS)):
        labels = full[f"y_{split}"]
        index = few_label_indices(labels, per_class, seed=0).numpy()  # ascending official order
        arrays[f"x_{split}"] = full[f"x_{split}"][index]  # [N, 28, 28] uint8
        arrays[f"y_{split}"] = labels[index].astype(np.uint8)
        arrays[f"index_{split}"] = index.astype(np.int32)
        arrays[f"size_{split}"] = np.array(len(labels), dtype=np.int64)
    return arrays


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", required=True, type=Path)
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    built = {
        CIFAR_FILE: deterministic_npz(cifar_working_set(args.data_dir), compress=False),
        MNIST_FILE: deterministic_npz(mnist_working_set(args.data_dir), compress=True),
    }
    status = 0
    for name, payload in built.items():
        path = OUT_DIR / name
        digest = hashlib.sha256(payload).hexdigest()
        if args.check:
            same = path.is_file() and path.read_bytes() == payload
            status |= 0 if same else 1
            print(
                f"{'same' if same else 'DIFFERENT'}  {path} ({len(payload):,} bytes, sha256 {digest})"
            )
        else:
            OUT_DIR.mkdir(parents=True, exist_ok=True)
            path.write_bytes(payload)
            print(f"wrote {path} ({len(payload):,} bytes, sha256 {digest})")
    return status


if __name__ == "__main__":
    sys.exit(main())
