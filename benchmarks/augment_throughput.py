"""Throughput of SimCLR's two-view augmentation at 32x32 on real CIFAR-10: batched vs per-image.

Every contender turns shuffled batches of uint8 CIFAR-10 images into two float32 views
``[N, 3, 32, 32]`` each, with SimCLR's CIFAR-10 recipe (crop scale (0.08, 1), flip 0.5, colour
jitter (0.4, 0.4, 0.4, 0.1) with p = 0.8, grayscale 0.2, no blur):

* ``batched-cpu`` / ``batched-cuda``: ``replearn.augment.two_views`` with ``SimCLRAugment(size=32)``
  on the whole batch (uint8 -> float conversion included), on the CPU and, when present, CUDA;
* ``torchvision-v2-2w`` / ``-0w``: the per-image ``torchvision.transforms.v2`` pipeline
  (RandomResizedCrop(32), RandomHorizontalFlip, RandomApply(ColorJitter(0.4, 0.4, 0.4, 0.1),
  p=0.8), RandomGrayscale(0.2), ToDtype) in a ``DataLoader`` with 2 and with 0 workers;
* ``lightly-2w``: lightly's ``SimCLRTransform(input_size=32, cj_strength=0.5, gaussian_blur=0)``
  on PIL images (what a lightly user writes for CIFAR-10), ``DataLoader`` with 2 workers.

Contenders are timed in interleaved rounds (default 3), so that a neighbour's burst of load on
a shared machine hits all of them; each reports the median views/s over its rounds. The script
prints views/s, the ratios batched / per-image, the machine (platform, CPU count, torch threads,
load average before and after) and writes JSON.

    python -m benchmarks.augment_throughput                       # 6 s per contender
    python -m benchmarks.augment_throughput --seconds 2 --batch 512 --device cpu
    python -m benchmarks.augment_throughput --contenders batched,torchvision-2w
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from benchmarks.common import load_average, machine_info
from replearn.augment import SimCLRAugment, two_views

REPO = Path(__file__).resolve().parents[1]
SUBSET_FILE = "cifar10_jpeg_subset5k1k_seed0_uint8.npz"
CONTENDERS = ("batched", "torchvision-2w", "torchvision-0w", "lightly-2w")


# ---- data ---------------------------------------------------------------------------------------


def default_data_dir() -> Path | None:
    """``$REPLEARN_DATA_DIR`` when set (else ``cifar10-5k`` comes from the package)."""
    folder = os.environ.get("REPLEARN_DATA_DIR")
    return Path(folder) if folder else None


def load_cifar_train(data_dir: Path | None) -> tuple[np.ndarray, str]:
    """The 5,000 CIFAR-10 training images of ``cifar10-5k`` as uint8 ``[N, 32, 32, 3]`` (HWC).

    Goes through ``replearn.data.load_dataset`` (checksums included); if that module cannot
    load it, reads ``cifar10_jpeg_subset5k1k_seed0_uint8.npz`` from ``data_dir`` directly and
    says so in the returned source line.
    """
    try:
        from replearn.data import load_dataset

        data = load_dataset("cifar10-5k", data_dir=data_dir, download=False)
        images = data.x_train.permute(0, 2, 3, 1).contiguous().numpy()  # [N, 32, 32, 3]
        return images, f"replearn.data.load_dataset('cifar10-5k'): {data.source}"
    except (ImportError, RuntimeError, OSError, ValueError) as err:
        path = (data_dir or Path(".")) / SUBSET_FILE
        if not path.is_file():
            raise SystemExit(
                f"cannot load CIFAR-10 for the benchmark: replearn.data failed ({err}) and "
                f"{path} does not exist. Point --data-dir (or $REPLEARN_DATA_DIR) at a folder "
                f"holding {SUBSET_FILE}."
            ) from err
        with np.load(path, allow_pickle=False) as arrays:
            images = arrays["x_train"]  # [N, 32, 32, 3] uint8
        return images, f"{path} read directly (fallback: replearn.data failed: {err})"


class TwoViewDataset(Dataset):
    """Per-image pipeline: item ``i`` is two independent transforms of image ``i``."""

    def __init__(self, images_hwc: np.ndarray, transform, as_pil: bool = False):
        self.images = images_hwc  # [N, H, W, 3] uint8
        self.transform = transform
        self.as_pil = as_pil

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        image = self.images[index]  # [H, W, 3] uint8
        if self.as_pil:
            from PIL import Image

            image = Image.fromarray(image)
            return tuple(self.transform(image))  # lightly's MultiViewTransform: two views
        return self.transform(image), self.transform(image)


def torchvision_simclr_transform():
    """SimCLR's CIFAR-10 view as a per-image ``torchvision.transforms.v2`` pipeline."""
    import torchvision.transforms.v2 as T

    return T.Compose(
        [
            T.ToImage(),  # numpy HWC uint8 -> Image [3, H, W] uint8
            T.RandomResizedCrop(32, scale=(0.08, 1.0), antialias=True),
            T.RandomHorizontalFlip(),
            T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
            T.RandomGrayscale(p=0.2),
            T.ToDtype(torch.float32, scale=True),
        ]
    )


def lightly_simclr_transform():
    """lightly's SimCLR transform configured for CIFAR-10 (its docs: cj_strength 0.5, no blur)."""
    from lightly.transforms import SimCLRTransform

    return SimCLRTransform(input_size=32, cj_strength=0.5, gaussian_blur=0.0, normalize=None)


# ---- timing -------------------------------------------------------------------------------------


def time_batched(images_hwc: np.ndarray, device: torch.device, batch: int, seconds: float) -> dict:
    """Views/s of ``two_views(SimCLRAugment)`` on shuffled batches already on ``device``."""
    images = torch.from_numpy(images_hwc).permute(0, 3, 1, 2).contiguous().to(device)  # uint8
    generator = torch.Generator(device=device).manual_seed(0)
    aug = SimCLRAugment(size=32)
    n = len(images)

    def one_batch(indices: torch.Tensor) -> None:
        x = images[indices].float().div_(255.0)  # [N, 3, 32, 32] float32 in [0, 1]
        two_views(x, aug, generator)  # two [N, 3, 32, 32] views
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    order = torch.randperm(n, generator=generator, device=device)
    for start in range(0, 2 * batch, batch):  # warm-up: two batches, not timed
        one_batch(order[start : start + batch])
    batches, position = 0, 0
    tic = time.perf_counter()
    while time.perf_counter() - tic < seconds or batches < 2:
        if position + batch > n:  # new epoch, reshuffled
            order = torch.randperm(n, generator=generator, device=device)
            position = 0
        one_batch(order[position : position + batch])
        position += batch
        batches += 1
    elapsed = time.perf_counter() - tic
    return {"views": 2 * batch * batches, "seconds": elapsed, "batches": batches}


def time_loader(dataset: Dataset, workers: int, batch: int, seconds: float) -> dict:
    """Views/s of a shuffled ``DataLoader``; the first batch (worker start-up) is not timed."""
    loader = DataLoader(
        dataset,
        batch_size=batch,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(0),
    )
    batches, tic = 0, None
    while tic is None or time.perf_counter() - tic < seconds or batches < 2:
        for _views in loader:  # (view_1, view_2), each [N, 3, 32, 32]
            if tic is None:  # first batch: start-up, not counted
                tic = time.perf_counter()
                continue
            batches += 1
            if time.perf_counter() - tic >= seconds and batches >= 2:
                break
    elapsed = time.perf_counter() - tic
    del loader  # stops persistent workers
    return {"views": 2 * batch * batches, "seconds": elapsed, "batches": batches}


# ---- main ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="timed seconds per contender")
    parser.add_argument(
        "--rounds", type=int, default=3, help="interleaved rounds (seconds split between them)"
    )
    parser.add_argument("--batch", type=int, default=256, help="images per batch")
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="where the batched pipeline runs; auto = cpu, plus cuda when present",
    )
    parser.add_argument(
        "--contenders",
        default=",".join(CONTENDERS),
        help=f"comma-separated subset of {','.join(CONTENDERS)}",
    )
    parser.add_argument("--data-dir", type=Path, default=None, help="folder with " + SUBSET_FILE)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (main process)"
    )
    parser.add_argument("--out", type=Path, default=Path("build/bench/augment.json"))
    args = parser.parse_args(argv)
    contenders = [name.strip() for name in args.contenders.split(",") if name.strip()]
    unknown = sorted(set(contenders) - set(CONTENDERS))
    if unknown:
        parser.error(f"unknown contenders {unknown}; choose from {', '.join(CONTENDERS)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible to torch")
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = {"auto": ["cpu"] + (["cuda"] if torch.cuda.is_available() else []), "cpu": ["cpu"]}
    devices["cuda"] = ["cuda"]

    images, source = load_cifar_train(args.data_dir or default_data_dir())
    info = machine_info(packages=("torchvision", "lightly"))
    print(f"data: {len(images)} images {images.shape[1:]} from {source}")
    print(f"machine: {info}")
    load, cores = info["load_average_1min"], info["cpu_count"] or 1
    if load is not None and load > cores:
        print(
            f"warning: the machine is busy (load {load:.1f} on {cores} cores); every number is "
            "depressed, and torch's OpenMP threads spin-wait when cores are oversubscribed. "
            "Rerun when idle, or with --threads 1 or OMP_WAIT_POLICY=PASSIVE, and say which."
        )

    # One timer per contender; rounds interleave them, so a neighbour's burst of load hits all.
    timers: dict[str, tuple[dict, object]] = {}
    if "batched" in contenders:
        for device in devices[args.device]:
            timers[f"batched-{device}"] = (
                {"device": device, "workers": 0},
                lambda s, d=device: time_batched(images, torch.device(d), args.batch, s),
            )
    for workers in (2, 0):
        if f"torchvision-{workers}w" in contenders:
            dataset = TwoViewDataset(images, torchvision_simclr_transform())
            timers[f"torchvision-v2-{workers}w"] = (
                {"device": "cpu", "workers": workers},
                lambda s, ds=dataset, w=workers: time_loader(ds, w, args.batch, s),
            )
    if "lightly-2w" in contenders:
        try:
            dataset = TwoViewDataset(images, lightly_simclr_transform(), as_pil=True)
        except ImportError as err:
            print(f"  lightly-2w skipped: {err}")
        else:
            timers["lightly-2w"] = (
                {"device": "cpu", "workers": 2},
                lambda s, ds=dataset: time_loader(ds, 2, args.batch, s),
            )

    rounds: dict[str, list[dict]] = {name: [] for name in timers}
    for round_index in range(args.rounds):
        for name, (_, timer) in timers.items():
            row = timer(args.seconds / args.rounds)
            row["views_per_s"] = row["views"] / row["seconds"]
            rounds[name].append(row)
            print(f"  round {round_index + 1}  {name:20s} {row['views_per_s']:10,.0f} views/s")
    results = []
    for name, (extra, _) in timers.items():
        per_round = sorted(row["views_per_s"] for row in rounds[name])
        results.append(
            {
                "name": name,
                **extra,
                "views_per_s": statistics.median(per_round),  # median over rounds
                "views_per_s_rounds": [row["views_per_s"] for row in rounds[name]],
                "views": sum(row["views"] for row in rounds[name]),
                "seconds": sum(row["seconds"] for row in rounds[name]),
            }
        )
        print(f"  {name:22s} {results[-1]['views_per_s']:10,.0f} views/s (median of rounds)")

    info["load_average_1min_after"] = load_average()
    speed = {row["name"]: row["views_per_s"] for row in results}
    ratios = {
        f"{ours} / {peer}": speed[ours] / speed[peer]
        for ours in speed
        if ours.startswith("batched")
        for peer in speed
        if not peer.startswith("batched")
    }
    for label, ratio in ratios.items():
        print(f"  {label:45s} {ratio:6.1f}x")
    report = {
        "benchmark": "augment_throughput",
        "pipeline": "SimCLR CIFAR-10 view x2: crop (0.08, 1) + flip 0.5 + jitter (0.4, 0.4, "
        "0.4, 0.1) p=0.8 + grayscale 0.2, 32x32, uint8 in, float32 out",
        "batch": args.batch,
        "seconds_per_contender": args.seconds,
        "rounds": args.rounds,
        "data": {"images": int(len(images)), "source": source},
        "machine": info,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "results": results,
        "ratios": ratios,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
