"""Do the course checkpoints keep the notebooks' promises on data nobody tuned on?

The notebooks compare each method's course checkpoint with an untrained encoder and with each
other, and their headers promise the lecture's direction (03: rotation above the random encoder,
supervised above rotation; 04: every contrastive method above the random encoder, crop + colour
above either alone; 05: MAE above the random ViT; 07: every self-supervised SmallCNN checkpoint
above the random SmallCNN, supervised above all). This benchmark checks each promise under the course
protocol (``replearn.checkpoints.COURSE_PROTOCOL``: kNN and linear probe of the frozen pooled
features) on two subsets of CIFAR-10:

* ``cifar10-5k``: the course's working set (the checkpoints trained on its 5,000 training
  images, unlabelled but for ``supervised``);
* ``disjoint``: 500 training and 100 test images per class drawn from the full CIFAR-10 file
  (``cifar10_jpeg_full_bytes.npz``) among the images that are NOT in ``cifar10-5k``, with the
  seed: data the checkpoints never saw and the budgets were never tuned on.

and for each seed of ``--seeds``: the seed draws the untrained encoders (SmallCNN and MAE's ViT)
and the disjoint subset. With one bundle the checkpoints' weights are the same for every seed
(one training seed); ``--bundles`` with a bundle per training seed (``--seed`` of
``instructor.course_checkpoints``) pairs seed i with bundle i, so the check then covers training
seeds too. Each promise is reported as its margin in points per (subset, seed) and its minimum.

    python -m benchmarks.checkpoint_promises                        # the package's bundle
    python -m benchmarks.checkpoint_promises --bundles build/cc-s0 build/cc-s1 build/cc-s2

Writes ``build/bench/checkpoint_promises/promises.json`` and ``promises.md``.
"""

from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import load_average, machine_info
from replearn import checkpoints
from replearn.backbones import SmallCNN
from replearn.data import CIFAR10_JPEG_FILE, CIFAR10_SUBSET_FILE, ImageData, load_dataset

OUT_DIR = Path("build/bench/checkpoint_promises")
CONTRASTIVE = ("simclr", "moco", "byol", "simsiam")
# the SmallCNN ones, against the untrained SmallCNN (MAE, a ViT, against the untrained ViT: 05)
SELF_SUPERVISED = ("rotation", *CONTRASTIVE)


def promises(scores: dict[str, dict[str, float]]) -> dict[str, float]:
    """Each promise as a margin in [0, 1] units (> 0: kept), from ``{encoder: {knn, linear}}``.
    Promises about methods the bundle lacks are left out."""
    have = lambda *names: all(n in scores for n in names)  # noqa: E731
    out: dict[str, float] = {}
    for metric in ("knn", "linear"):
        if have("rotation", "random init"):
            out[f"03 rotation - random init ({metric})"] = (
                scores["rotation"][metric] - scores["random init"][metric]
            )
        if have("supervised", "rotation"):
            out[f"03 supervised - rotation ({metric})"] = (
                scores["supervised"][metric] - scores["rotation"][metric]
            )
        for name in CONTRASTIVE:
            if have(name, "random init"):
                out[f"04 {name} - random init ({metric})"] = (
                    scores[name][metric] - scores["random init"][metric]
                )
        for arm in ("simclr-crop", "simclr-color"):
            if have("simclr", arm):
                out[f"04 crop+color - {arm.split('-')[1]} alone ({metric})"] = (
                    scores["simclr"][metric] - scores[arm][metric]
                )
        if have("mae", "random ViT"):
            out[f"05 mae - random ViT ({metric})"] = (
                scores["mae"][metric] - scores["random ViT"][metric]
            )
    ssl = [n for n in SELF_SUPERVISED if n in scores]
    if ssl and have("random init"):
        worst = min(ssl, key=lambda n: scores[n]["linear"])
        out[f"07 every self-supervised - random init (linear; worst: {worst})"] = (
            scores[worst]["linear"] - scores["random init"]["linear"]
        )
    if ssl and have("supervised"):
        best = max(ssl, key=lambda n: scores[n]["linear"])
        out[f"07 supervised - best self-supervised (linear; best: {best})"] = (
            scores["supervised"]["linear"] - scores[best]["linear"]
        )
    return out


def disjoint_subset(
    data_dir: Path, seed: int, train_per_class: int = 500, test_per_class: int = 100
) -> ImageData:
    """``train_per_class`` / ``test_per_class`` images of every class from the full CIFAR-10 file,
    none of them in ``cifar10-5k`` (matched by split, class and ``file_id``), drawn with ``seed``."""
    from PIL import Image

    full = np.load(data_dir / CIFAR10_JPEG_FILE)
    used = np.load(data_dir / CIFAR10_SUBSET_FILE)
    rng = np.random.default_rng(seed)
    parts = {}
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        labels, ids = full[f"y_{split}"].astype(np.int64), full[f"file_id_{split}"].astype(np.int64)
        taken = set(
            zip(
                used[f"y_{split}"].astype(np.int64).tolist(),
                used[f"file_id_{split}"].astype(np.int64).tolist(),
            )
        )
        free = np.array([(int(c), int(i)) not in taken for c, i in zip(labels, ids)])
        picks = np.concatenate(
            [
                rng.choice(np.flatnonzero(free & (labels == c)), per_class, replace=False)
                for c in range(10)
            ]
        )
        picks.sort()
        blob, offsets = full[f"jpeg_{split}"].tobytes(), full[f"offsets_{split}"]
        images = np.stack(
            [
                np.asarray(Image.open(io.BytesIO(blob[offsets[i] : offsets[i + 1]])).convert("RGB"))
                for i in picks
            ]
        )  # [N, H, W, C]
        parts[split] = (
            torch.from_numpy(images.transpose(0, 3, 1, 2).copy()),
            torch.from_numpy(labels[picks]),
        )
    names = tuple(str(n) for n in full["class_names"])
    return ImageData(
        parts["train"][0],
        parts["train"][1],
        parts["test"][0],
        parts["test"][1],
        names,
        "cifar10-disjoint",
        f"{CIFAR10_JPEG_FILE} minus cifar10-5k, {train_per_class}/{test_per_class} per class, seed {seed}",
    )


def untrained(bundle: checkpoints.Bundle, seed: int) -> dict[str, torch.nn.Module]:
    """The untrained SmallCNN (and MAE's ViT, where the bundle has MAE) drawn with ``seed``."""
    torch.manual_seed(seed)
    out = {"random init": SmallCNN(3, (32, 64, 128, 256)).eval()}
    if "mae" in bundle.methods:
        torch.manual_seed(seed)
        out["random ViT"] = checkpoints.build_encoder(bundle.entry("mae")["architecture"]).eval()
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--bundles", nargs="+", help="bundle folders or zips (default: the package's)"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--subsets",
        nargs="+",
        default=["cifar10-5k", "disjoint"],
        choices=["cifar10-5k", "disjoint"],
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help="the folder with the CIFAR-10 files (default $REPLEARN_DATA_DIR)",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--out", default=str(OUT_DIR))
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    import os

    data_dir = Path(args.data_dir or os.environ.get("REPLEARN_DATA_DIR") or "../shared/data")
    bundles = (
        [checkpoints.open_bundle(b) for b in args.bundles]
        if args.bundles
        else [checkpoints.find_bundle()]
    )
    started = time.perf_counter()
    cache: dict[tuple, dict] = {}
    runs = []
    for i, seed in enumerate(args.seeds):
        bundle = bundles[i % len(bundles)]
        for subset in args.subsets:
            data = (
                load_dataset("cifar10-5k")
                if subset == "cifar10-5k"
                else disjoint_subset(data_dir, seed)
            )
            scores, t0, load = {}, time.perf_counter(), load_average()
            for name in bundle.methods:
                key = (str(bundle.location), name, subset, None if subset == "cifar10-5k" else seed)
                if key not in cache:
                    cache[key] = checkpoints.evaluate_course_protocol(
                        bundle.encoder(name, args.device), data, device=args.device
                    )
                scores[name] = cache[key]
            for name, encoder in untrained(bundle, seed).items():
                scores[name] = checkpoints.evaluate_course_protocol(
                    encoder.to(args.device), data, device=args.device
                )
            run = {
                "seed": seed,
                "subset": subset,
                "source": data.source,
                "bundle": bundle.version,
                "bundle_seed": bundle.entry(bundle.methods[0]).get("seed"),
                "load_average": load,
                "seconds": round(time.perf_counter() - t0, 1),
                "scores": scores,
                "promises": promises(scores),
            }
            runs.append(run)
            kept = sum(v > 0 for v in run["promises"].values())
            print(
                f"seed {seed}, {subset}: {kept}/{len(run['promises'])} promises kept ({run['seconds']:.0f} s)",
                flush=True,
            )
            result = _write(
                args, bundles, runs, started
            )  # after every run: a stopped check keeps what it measured
    print(markdown(result))
    return result


def _write(args, bundles, runs: list, started: float) -> dict:
    result = {
        "machine": machine_info(torch.device(args.device)),
        "seconds": round(time.perf_counter() - started, 1),
        "bundles": [b.version for b in bundles],
        "protocol": checkpoints.COURSE_PROTOCOL,
        "planned": {"seeds": args.seeds, "subsets": args.subsets},
        "runs": runs,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "promises.json").write_text(json.dumps(result, indent=1))
    (out / "promises.md").write_text(markdown(result))
    return result


def markdown(result: dict) -> str:
    """The promises as a table: margin in points per (subset, seed), and the smallest."""
    runs = result["runs"]
    names = list(dict.fromkeys(k for r in runs for k in r["promises"]))
    head = [f"{r['subset']} s{r['seed']}" for r in runs]
    lines = ["| promise | " + " | ".join(head) + " | min |", "|---" * (len(head) + 2) + "|"]
    for name in names:
        values = [r["promises"].get(name) for r in runs]
        cells = [f"{100 * v:+.1f}" if v is not None else "-" for v in values]
        low = min(v for v in values if v is not None)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | **{100 * low:+.1f}** |")
    encoders = list(dict.fromkeys(k for r in runs for k in r["scores"]))
    lines += [
        "",
        "| encoder (kNN / linear, %) | " + " | ".join(head) + " |",
        "|---" * (len(head) + 1) + "|",
    ]
    for name in encoders:
        cells = [
            f"{100 * r['scores'][name]['knn']:.1f} / {100 * r['scores'][name]['linear']:.1f}"
            if name in r["scores"]
            else "-"
            for r in runs
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
