"""Training throughput of every notebook's main runs with the ``colab`` preset's settings.

The notebooks' ``colab`` budgets are wall-clock seconds per run, so what a GPU's speed decides
is how many steps (epochs) a run gets in its budget, and how long the runs without a budget take
(feature extraction, epoch-counted loops). This benchmark runs each assignment's main training
calls as its notebook makes them (the module's functions with
``<Assignment>Config.from_preset(get_preset("colab"))``: batch sizes, widths, image sizes) for a
short budget each, on the chosen device, and reports per run: optimizer steps, steps/s, images/s,
the batch size and the seconds one epoch of the preset's training set takes at that speed. The
reference implementation runs (``impl.load(..., "solution")``); a run that fails is recorded with
its error and the others go on.

    python -m benchmarks.colab_throughput --device cuda --budget-s 10     # on a GPU
    python -m benchmarks.colab_throughput --device cpu --budget-s 1 --assignments 04  # a dry run

Writes ``build/bench/colab_throughput.json`` (``--out``) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

from benchmarks.common import load_average, machine_info
from replearn import data, impl, recipes
from replearn.presets import Preset, get_preset
from replearn.train import pick_device

OUT = Path("build/bench/colab_throughput.json")


@dataclasses.dataclass
class Bench:
    """What every run shares: preset, device, budget per run, seed, the loaded data."""

    preset: Preset
    device: torch.device
    budget_s: float
    seed: int = 0
    _cache: dict = dataclasses.field(default_factory=dict)

    def cifar(self) -> data.ImageData:
        if "cifar" not in self._cache:
            self._cache["cifar"] = data.default_dataset(self.preset)
        return self._cache["cifar"]

    def mnist(self) -> data.ImageData:
        if "mnist" not in self._cache:
            try:
                self._cache["mnist"] = data.load_dataset("mnist")
            except data.DataError:
                self._cache["mnist"] = data.load_dataset("mnist-embedded")
        return self._cache["mnist"]

    def module(self, name: str):
        return impl.load(name, "solution")


def _history(h, batch_size: int | None = None) -> dict:
    """The numbers of a ``replearn.train.History``. ``steps_per_s`` leaves the first logged step
    out where there are later ones (it pays for warm-up: memory, cuDNN's algorithm search);
    ``images_per_s`` is over the whole run, as the notebooks print it."""
    seconds = float(h.wall_time_s or 0.0)
    timed = [(r["step"], r["time_s"]) for r in h.steps if "time_s" in r and "step" in r]
    steady = None
    if len(timed) >= 3 and timed[-1][1] > timed[0][1]:
        steady = (timed[-1][0] - timed[0][0]) / (timed[-1][1] - timed[0][1])
    elif seconds:
        steady = h.steps_done / seconds
    return {
        "steps": int(h.steps_done),
        "seconds": round(seconds, 2),
        "steps_per_s": round(steady, 3) if steady else None,
        "images_per_s": round(float(h.images_per_s), 1) if h.images_per_s else None,
        "epochs": round(float(h.epochs_done), 3),
        "batch_size": batch_size,
    }


# ---- the runs of each notebook ------------------------------------------------------------------
def _transfer_extract(b: Bench) -> dict:
    """01: features of CIFAR-10 images through EfficientNet-Lite0 at the preset's resolution
    (the notebook extracts train, test and mirrored train images once, without a budget)."""
    from replearn.backbones import load_pretrained, prepare

    tl = b.module("transfer_learning")
    cfg = recipes.transfer_learning.TransferConfig.from_preset(b.preset)
    net = load_pretrained("efficientnet_lite0").to(b.device)
    extractor = tl.make_feature_extractor(recipes.transfer_learning.as_stages(net), "fc")
    images = b.cifar().x_train
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < b.budget_s and done < len(images):
        chunk = images[done : done + 512]
        tl.extract_features(extractor, chunk, transform=lambda x: prepare(x, net, size=cfg.size))
        done += len(chunk)
    seconds = time.perf_counter() - start
    return {
        "steps": None,
        "seconds": round(seconds, 2),
        "images_per_s": round(done / seconds, 1),
        "batch_size": 256,
        "size_px": cfg.size,
    }


def _transfer_finetune_all(b: Bench) -> dict:
    """01 (GPU presets): every layer of Lite0 fine-tuned, one epoch of a subset (stage 1, the
    frozen-feature probe, included as in the notebook)."""
    from replearn.backbones import load_pretrained, prepare

    tl = b.module("transfer_learning")
    cfg = recipes.transfer_learning.TransferConfig.from_preset(b.preset)
    net = load_pretrained("efficientnet_lite0").to(b.device)
    full = recipes.transfer_learning.as_stages(net)
    tl.replace_head(full, 10, "fc", generator=torch.Generator().manual_seed(b.seed))
    for p in full.parameters():
        p.requires_grad_(True)
    cifar = b.cifar()
    n = cfg.batch_size * 10
    start = time.perf_counter()
    losses = tl.two_stage_finetune(
        full,
        cifar.x_train[:n],
        cifar.y_train[:n],
        transform=lambda x: prepare(x, net, size=cfg.size),
        lr=cfg.lr,
        epochs=1,
        batch_size=cfg.batch_size,
        generator=torch.Generator().manual_seed(b.seed),
    )
    seconds = time.perf_counter() - start
    return {
        "steps": len(losses),
        "seconds": round(seconds, 2),
        "steps_per_s": round(len(losses) / seconds, 3),
        "images_per_s": round(n / seconds, 1),
        "batch_size": cfg.batch_size,
        "size_px": cfg.size,
        "note": "stage 1 included",
    }


def _autoencoder(kind: str, dataset: str) -> Callable[[Bench], dict]:
    def run(b: Bench) -> dict:
        aec = b.module("autoencoders")
        cfg = recipes.autoencoders.AutoencoderConfig.from_preset(b.preset)
        torch.manual_seed(b.seed)
        if dataset == "mnist":
            images = b.mnist().x_train
            model = aec.ConvAutoencoder(1, 28, cfg.mnist_widths, cfg.mnist_code)
        else:
            images = b.cifar().x_train
            model = aec.ConvAutoencoder(3, 32, cfg.cifar_widths, cfg.cifar_code)
        h = recipes.autoencoders.train_autoencoder(
            aec,
            model,
            images,
            kind=kind,
            budget_s=b.budget_s,
            batch_size=cfg.batch_size,
            lr=cfg.lr,
            mask_fraction=cfg.mask_fraction,
            seed=b.seed,
            device=b.device,
        )
        return _history(h, cfg.batch_size)

    run.__doc__ = f"02: the {kind} on {dataset} (``train_autoencoder``)"
    return run


def _pretext(task: str) -> Callable[[Bench], dict]:
    def run(b: Bench) -> dict:
        pt = b.module("pretext_tasks")
        cifar = b.cifar()
        cfg = recipes.pretext_tasks.fit_geometry(
            recipes.pretext_tasks.PretextConfig.from_preset(b.preset), cifar.x_train.shape[-1]
        )
        labels = cifar.y_train if task == "supervised" else None
        result = recipes.pretext_tasks.pretrain(
            pt,
            task,
            cifar.x_train,
            cfg,
            budget_s=b.budget_s,
            labels=labels,
            seed=b.seed,
            device=b.device,
        )
        return _history(result.history, cfg.batch_size)

    run.__doc__ = f"03: ``pretrain({task!r})``"
    return run


def _generative(method: str) -> Callable[[Bench], dict]:
    def run(b: Bench) -> dict:
        gp = b.module("generative_pretext")
        cfg = recipes.generative_pretext.GenerativeConfig.from_preset(b.preset)
        cifar = b.cifar()
        if method == "deep-cluster":
            result, _ = recipes.generative_pretext.deep_cluster(
                gp,
                cifar.x_train,
                cifar.y_train,
                cfg,
                budget_s=b.budget_s,
                seed=b.seed,
                device=b.device,
            )
        else:
            result = recipes.generative_pretext.pretrain(
                gp, method, cifar.x_train, cfg, budget_s=b.budget_s, seed=b.seed, device=b.device
            )
        return _history(result.history, cfg.batch_size)

    run.__doc__ = (
        f"03b: ``{'deep_cluster' if method == 'deep-cluster' else f'pretrain({method!r})'}``"
    )
    return run


def _contrastive(method: str) -> Callable[[Bench], dict]:
    def run(b: Bench) -> dict:
        cl = b.module("contrastive_learning")
        cfg = dataclasses.replace(
            recipes.contrastive_learning.ContrastiveConfig.from_preset(b.preset), knn_every=0
        )
        cifar = b.cifar()
        labels = cifar.y_train if method == "supervised" else None
        result = recipes.contrastive_learning.pretrain(
            cl,
            method,
            cifar.x_train,
            labels,
            cfg,
            budget_s=b.budget_s,
            seed=b.seed,
            device=b.device,
        )
        return _history(result.history, cfg.batch_size)

    run.__doc__ = f"04: ``pretrain({method!r})`` (kNN monitor off)"
    return run


def _mae(b: Bench) -> dict:
    """05: MAE pretraining (``pretrain``, mask 0.75)."""
    mae = b.module("masked_autoencoders")
    cfg = recipes.masked_autoencoders.MAEConfig.from_preset(b.preset)
    result = recipes.masked_autoencoders.pretrain(
        mae, b.cifar().x_train, cfg, budget_s=b.budget_s, seed=b.seed, device=b.device
    )
    return _history(result.history, cfg.batch_size)


def _clip_shapes(b: Bench) -> dict:
    """06: CLIP on the captioned shapes (``train_shapes``)."""
    from replearn import captions

    clip = b.module("clip_zero_shot")
    cfg = recipes.clip_zero_shot.CLIPConfig.from_preset(b.preset)
    shapes = captions.shapes_dataset(
        cfg.n_train_shapes, cfg.n_test_shapes, seed=b.seed, holdout_fraction=cfg.holdout_fraction
    )
    result = recipes.clip_zero_shot.train_shapes(
        clip, shapes, cfg, budget_s=b.budget_s, seed=b.seed, device=b.device
    )
    return _history(result.history, cfg.batch_size)


def _clip_cifar(b: Bench) -> dict:
    """06: the image tower aligned to frozen MiniLM captions (``train_cifar_aligned``)."""
    clip = b.module("clip_zero_shot")
    cfg = recipes.clip_zero_shot.CLIPConfig.from_preset(b.preset)
    cifar = b.cifar()
    result = recipes.clip_zero_shot.train_cifar_aligned(
        clip, cifar.x_train, cifar.y_train, cfg, budget_s=b.budget_s, seed=b.seed, device=b.device
    )
    return _history(result.history, cfg.cifar_batch_size)


# Assignment 7 trains the methods above (with the comparison's widths), so it has no row here.
RUNS: dict[str, dict[str, Callable[[Bench], dict]]] = {
    "01_transfer_learning": {
        "feature extraction (Lite0)": _transfer_extract,
        "fine-tune all layers (Lite0)": _transfer_finetune_all,
    },
    "02_autoencoders": {
        "autoencoder (MNIST)": _autoencoder("ae", "mnist"),
        "denoising autoencoder (CIFAR-10)": _autoencoder("dae", "cifar"),
    },
    "03_pretext_tasks": {
        task: _pretext(task) for task in ("rotation", "context", "jigsaw", "exemplar", "supervised")
    },
    "03b_generative_pretext": {
        method: _generative(method)
        for method in ("inpainting", "inpainting+adv", "color-class", "split-brain", "deep-cluster")
    },
    "04_contrastive_learning": {
        method: _contrastive(method)
        for method in ("simclr", "moco", "byol", "simsiam", "supervised")
    },
    "05_masked_autoencoders": {"MAE pretraining": _mae},
    "06_clip_zero_shot": {"shapes CLIP": _clip_shapes, "CIFAR-10 aligned tower": _clip_cifar},
}


def run_all(
    bench: Bench,
    assignments: list[str] | None = None,
    say: Callable = print,
    after_each: Callable[[dict], None] | None = None,
) -> dict:
    """Every run of the chosen assignments (prefixes such as ``04``); failures are recorded.
    ``after_each(rows)`` is called after every run (the script saves what it has, so a run that
    hangs until the GPU check's timeout loses only itself)."""
    chosen = [a for a in RUNS if not assignments or any(a.startswith(p) for p in assignments)]
    rows: dict[str, dict[str, dict]] = {}
    for assignment in chosen:
        rows[assignment] = {}
        for name, fn in RUNS[assignment].items():
            load, t0 = load_average(), time.perf_counter()
            try:
                row = fn(bench)
            except Exception as err:  # one broken run must not hide the others
                row = {
                    "error": f"{type(err).__name__}: {err}",
                    "traceback": traceback.format_exc()[-3000:],
                }
            row.update(load_before=load, wall_s=round(time.perf_counter() - t0, 1))
            train_images = (
                len(bench.cifar().y_train) if "MNIST" not in name else len(bench.mnist().y_train)
            )
            if row.get("images_per_s"):
                row["epoch_s"] = round(train_images / row["images_per_s"], 1)
            rows[assignment][name] = row
            shown = row.get("error") or (
                f"{row.get('steps')} steps, {row.get('steps_per_s')} steps/s, "
                f"{row.get('images_per_s')} images/s, batch {row.get('batch_size')}"
            )
            say(f"{assignment} / {name}: {shown}", flush=True)
            if after_each is not None:
                after_each(rows)
    return rows


def markdown(result: dict) -> str:
    lines = [
        f"preset {result['preset']}, device {result['device']} ({result['machine'].get('gpu', 'no GPU')}), "
        f"{result['budget_s']:g} s per run, data {result['data']}",
        "",
        "| notebook | run | batch | steps/s | images/s | s per epoch of the preset's data |",
        "|---|---|---|---|---|---|",
    ]
    for assignment, runs in result["rows"].items():
        for name, r in runs.items():
            if "error" in r:
                lines.append(f"| {assignment} | {name} | | FAILED: {r['error'][:80]} | | |")
                continue
            lines.append(
                f"| {assignment} | {name} | {r.get('batch_size') or ''} | "
                f"{r.get('steps_per_s') or ''} | {r.get('images_per_s') or ''} | "
                f"{r.get('epoch_s') or ''} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="colab")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda")
    parser.add_argument("--budget-s", type=float, default=10.0, help="seconds per run")
    parser.add_argument(
        "--assignments",
        nargs="*",
        default=None,
        metavar="PREFIX",
        help=f"a subset, e.g. 04 05 (default: all of {list(RUNS)})",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    preset = get_preset(args.preset)
    device = pick_device(args.device)
    bench = Bench(preset, device, args.budget_s, args.seed)
    started = time.perf_counter()
    machine = machine_info(device)
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def save(rows: dict) -> dict:
        cifar = bench.cifar()
        result = {
            "preset": preset.name,
            "device": str(device),
            "budget_s": args.budget_s,
            "data": f"{cifar.name} ({len(cifar.y_train)} train) from {cifar.source}",
            "machine": machine,
            "rows": rows,
            "seconds": round(time.perf_counter() - started, 1),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        }
        tmp = args.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=1, default=str))
        os.replace(tmp, args.out)
        return result

    result = save(run_all(bench, args.assignments, after_each=save))
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
