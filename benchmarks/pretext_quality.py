"""Quality benchmark of Assignment 3, part I (discriminative pretext tasks) on real CIFAR-10.

Pretrains the shared ``SmallCNN`` on every pretext task of the notebook with the reference
solution, for the notebook's wall-clock budgets, and probes every encoder under one protocol on
whole 32x32 images: kNN (cosine, k = 20, temperature 0.1) and a linear probe (L-BFGS logistic
regression, L2 strength chosen on a validation split) on the pooled output of each block.

* encoders: rotation (4 rotations), rotation ablation (2 vs 4 rotations at a shorter equal
  budget), context prediction, jigsaw, Exemplar CNN;
* baselines under the same protocol: the same SmallCNN with random weights, the same SmallCNN
  trained with labels for ``supervised_s`` seconds, and raw pixels;
* patches vs whole images: for the patch-trained encoders (and rotation as a control), the
  probes on the mean feature of a 3x3 grid of patches next to the probes on whole images;
* with ``--nonlinear`` (on by default in the GPU presets): RotNet's non-linear probe (an MLP on
  the 4x4-pooled map of the best block), for rotation and random init;
* ``--widths 32,64,128,256,256`` trains and probes a five-block SmallCNN (Gidaris et al.'s Table 1
  varies the depth too), ``--amp --channels-last`` the CPU's bfloat16 fast path.

Run: ``python -m benchmarks.pretext_quality --preset cpu-quick`` (data from
``$REPLEARN_DATA_DIR``). Writes ``build/bench/pretext_quality.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch

from benchmarks.common import load_average, machine_info
from replearn import data, impl
from replearn.backbones import SmallCNN
from replearn.presets import get_preset
from replearn.recipes import pretext_tasks as recipe
from replearn.train import pick_device

OUT_DIR = Path("build/bench")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu-quick")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rotation-s", type=float, default=None, help="override the RotNet budget")
    parser.add_argument(
        "--skip",
        nargs="*",
        default=[],
        help="runs to leave out: supervised ablation context jigsaw exemplar pixels",
    )
    parser.add_argument("--nonlinear", action="store_true", help="also run the MLP probe")
    parser.add_argument(
        "--widths",
        default=None,
        help="SmallCNN block widths, e.g. 32,64,128,256,256 for a fifth block "
        "(probes blocks 2..last; more than 4 blocks needs --skip context jigsaw)",
    )
    parser.add_argument("--amp", action="store_true", help="bfloat16 autocast on a bf16 CPU")
    parser.add_argument("--channels-last", action="store_true", help="NHWC training")
    parser.add_argument("--out", default=str(OUT_DIR / "pretext_quality.json"))
    args = parser.parse_args(argv)
    preset = get_preset(args.preset)
    pt = impl.load("pretext_tasks", "solution")
    cfg = recipe.PretextConfig.from_preset(preset)
    cfg = replace(cfg, amp=True if args.amp else cfg.amp, channels_last=args.channels_last)
    if args.widths:
        widths = tuple(int(w) for w in args.widths.split(","))
        if len(widths) > 4 and not {"context", "jigsaw"} <= set(args.skip):
            parser.error(
                f"--widths {args.widths}: {len(widths)} blocks pool 8-px context and jigsaw "
                "patches below 1 px; add --skip context jigsaw"
            )
        cfg = replace(cfg, widths=widths, probe_blocks=tuple(range(2, len(widths) + 1)))
    device = pick_device(preset.device)
    cifar = data.load_dataset(
        preset.dataset,
        train_per_class=preset.train_per_class,
        test_per_class=preset.test_per_class,
        seed=args.seed,
    )
    print(cifar.summary(), flush=True)
    x_train, y_train, x_test, y_test = cifar.x_train, cifar.y_train, cifar.x_test, cifar.y_test
    blocks = cfg.probe_blocks
    machine = machine_info(device)  # the load average before the runs
    started = time.perf_counter()
    rows: dict[str, dict] = {}

    def probe(name: str, encoder, seconds: float, extra: dict | None = None) -> dict:
        t0 = time.perf_counter()
        scores = recipe.evaluate_encoder(encoder, x_train, y_train, x_test, y_test, blocks, cfg)
        rows[name] = {
            "blocks": scores,
            "train_s": round(seconds, 1),
            "eval_s": round(time.perf_counter() - t0, 1),
            **(extra or {}),
        }
        shown = ", ".join(
            f"b{b} knn {s['knn']:.3f} lin {s['linear']:.3f}" for b, s in scores.items()
        )
        print(
            f"{name}: {shown} (train {seconds:.0f} s, eval {rows[name]['eval_s']:.0f} s)",
            flush=True,
        )
        return scores

    def run(name: str, task: str, budget: float, **kwargs):
        t0 = time.perf_counter()
        result = recipe.pretrain(
            pt,
            task,
            x_train,
            cfg,
            budget_s=budget,
            labels=y_train,
            seed=args.seed,
            device=device,
            **kwargs,
        )
        seconds = time.perf_counter() - t0
        h = result.history
        info = {
            "pretext_acc": round(result.pretext_accuracy, 4),
            "steps": h.steps_done,
            "epochs": round(h.epochs_done, 2),
            "images_per_s": round(h.images_per_s, 1),
        }
        probe(name, result.encoder, seconds, info)
        return result

    torch.manual_seed(args.seed)
    random_encoder = SmallCNN(in_channels=x_train.shape[1], widths=cfg.widths).to(device)
    probe("random init", random_encoder, 0.0)
    rotation_s = args.rotation_s or cfg.rotation_s
    rot = run("rotation (4)", "rotation", rotation_s)
    if "supervised" not in args.skip:
        run("supervised", "supervised", cfg.supervised_s)
    if "ablation" not in args.skip:
        run(f"rotation (4), {cfg.ablation_s:.0f} s", "rotation", cfg.ablation_s)
        run(
            f"rotation (0/180), {cfg.ablation_s:.0f} s",
            "rotation",
            cfg.ablation_s,
            rotations=(0, 2),
        )
    # 8-px patches reach a fifth block at 0.5 px: the patch analysis needs the 4-block encoder
    patch_runs = (
        {"rotation (4)": (rot, cfg.jigsaw_tile, cfg.jigsaw_cell)} if len(cfg.widths) <= 4 else {}
    )
    for task, budget in (
        ("context", cfg.context_s),
        ("jigsaw", cfg.jigsaw_s),
        ("exemplar", cfg.exemplar_s),
    ):
        if task not in args.skip:
            result = run(task, task, budget)
            if task == "context":
                patch_runs[task] = (result, cfg.context_patch, cfg.context_patch + cfg.context_gap)
            if task == "jigsaw":
                patch_runs[task] = (result, cfg.jigsaw_tile, cfg.jigsaw_cell)

    # patches vs whole images: the same last-block probes on the mean feature of a patch grid
    patches = {}
    for name, (result, size, stride) in patch_runs.items():
        train_f = recipe.patch_grid_features(result.encoder, x_train, size, stride)
        test_f = recipe.patch_grid_features(result.encoder, x_test, size, stride)
        patches[name] = {
            "patch_grid": recipe.probe_features(train_f, y_train, test_f, y_test, cfg),
            "whole_image": rows[name]["blocks"][max(blocks)],
            "patch": size,
        }
        print(f"{name} patch grid ({size} px): {patches[name]['patch_grid']}", flush=True)

    if "pixels" not in args.skip:
        t0 = time.perf_counter()
        px_train, px_test = (data.to_float(x).flatten(1) for x in (x_train, x_test))  # [N, C*H*W]
        rows["raw pixels"] = {
            "blocks": {0: recipe.probe_features(px_train, y_train, px_test, y_test, cfg)},
            "train_s": 0.0,
            "eval_s": round(time.perf_counter() - t0, 1),
        }
        print(f"raw pixels: {rows['raw pixels']['blocks'][0]}", flush=True)

    nonlinear = {}
    if args.nonlinear or cfg.nonlinear_probe:
        best = recipe.best_block(rows["rotation (4)"]["blocks"])
        for name, encoder in (("rotation (4)", rot.encoder), ("random init", random_encoder)):
            t0 = time.perf_counter()
            train_f = recipe.block_features(encoder, x_train, (best,), pool=False, grid=4)[best]
            test_f = recipe.block_features(encoder, x_test, (best,), pool=False, grid=4)[best]
            nonlinear[name] = {
                "block": best,
                "accuracy": recipe.nonlinear_probe(
                    train_f,
                    y_train,
                    test_f,
                    y_test,
                    device=device,
                    epochs=30 if device.type == "cuda" else 8,
                ),
                "seconds": round(time.perf_counter() - t0, 1),
            }
            print(f"non-linear probe, {name}, block {best}: {nonlinear[name]}", flush=True)

    rot_scores, rand_scores = rows["rotation (4)"]["blocks"], rows["random init"]["blocks"]
    last = max(blocks)
    checks = {
        "rotation kNN (best block) - random init kNN (best block)": max(
            s["knn"] for s in rot_scores.values()
        )
        - max(s["knn"] for s in rand_scores.values()),
        "rotation linear (best block) - random init linear (best block)": max(
            s["linear"] for s in rot_scores.values()
        )
        - max(s["linear"] for s in rand_scores.values()),
        "rotation linear: best intermediate block - last block": max(
            rot_scores[b]["linear"] for b in blocks if b != last
        )
        - rot_scores[last]["linear"],
    }
    result = {
        "preset": preset.name,
        "dataset": cifar.name,
        "source": cifar.source,
        "train_images": len(y_train),
        "test_images": len(y_test),
        "device": str(device),
        "machine": {**machine, "load_average_1min_end": load_average()},
        "config": {k: v for k, v in cfg.__dict__.items()},
        "rotation_s": rotation_s,
        "rows": rows,
        "patches_vs_whole": patches,
        "nonlinear": nonlinear,
        "checks": checks,
        "seconds": round(time.perf_counter() - started, 1),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    out.with_suffix(".md").write_text(markdown(result, blocks))
    print(markdown(result, blocks))
    return result


def markdown(result: dict, blocks) -> str:
    head = (
        "| encoder | train s | pretext acc | "
        + " | ".join(f"kNN b{b} | lin b{b}" for b in blocks)
        + " |"
    )
    lines = [
        f"Pretext tasks on {result['dataset']} ({result['train_images']} train / "
        f"{result['test_images']} test), preset {result['preset']}, {result['device']}, "
        f"load average {result['machine']['load_average_1min']} at the start and "
        f"{result['machine']['load_average_1min_end']} at the end",
        "",
        head,
        "|" + "---|" * (3 + 2 * len(blocks)),
    ]
    for name, row in result["rows"].items():
        cells = []
        for b in blocks:
            s = row["blocks"].get(b) or (row["blocks"].get(0) if b == max(blocks) else None)
            cells += [f"{100 * s['knn']:.1f}", f"{100 * s['linear']:.1f}"] if s else ["-", "-"]
        acc = row.get("pretext_acc")
        lines.append(
            f"| {name} | {row['train_s']:.0f} | {'-' if acc is None else f'{100 * acc:.1f}'} | "
            + " | ".join(cells)
            + " |"
        )
    if result["patches_vs_whole"]:
        lines += ["", "| encoder | probe input | kNN | linear |", "|---|---|---|---|"]
        for name, p in result["patches_vs_whole"].items():
            for kind in ("whole_image", "patch_grid"):
                label = (
                    "whole 32x32 image"
                    if kind == "whole_image"
                    else f"mean of 3x3 {p['patch']}-px patches"
                )
                lines.append(
                    f"| {name} | {label} | {100 * p[kind]['knn']:.1f} | {100 * p[kind]['linear']:.1f} |"
                )
    for name, n in result["nonlinear"].items():
        lines.append(f"\nnon-linear probe, {name}, block {n['block']}: {100 * n['accuracy']:.1f}%")
    lines += [
        "",
        *(f"- {k}: {100 * v:+.1f} points" for k, v in result["checks"].items()),
        f"\ntotal {result['seconds']:.0f} s",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
