"""Quality benchmark of Assignment 4 (contrastive and Siamese learning) on real CIFAR-10.

Pretrains the shared ``SmallCNN`` with every method of the notebook (``METHOD_NAMES`` of
``replearn.recipes.contrastive_learning``: SimCLR, MoCo, BYOL, SimSiam with and without the
stop-gradient, and the supervised baseline) for the notebook's budgets
(``ContrastiveConfig.from_preset``), the same way the notebook does (SimCLR and MoCo with the kNN
monitor), and probes every encoder under one protocol on the frozen 256-d features:

* kNN (cosine, ``cfg.knn_k`` neighbours, temperature-weighted votes, t = 0.1) and a linear probe
  (L-BFGS logistic regression on standardised features, fixed L2 strength
  ``PROBE_WEIGHT_DECAY``), both with all training labels: ``evaluate_encoder``;
* a few-label curve: the same linear probe on 1, 10 and 100 labels per class;
* baselines under the same protocol: the SmallCNN with random weights and raw pixels;
* the augmentation ablation of the notebook (SimCLR with crop, colour, crop+colour,
  crop+colour+blur for ``preset.scaled(8)`` seconds each at batch 64, kNN);
* SimSiam's collapse monitor (std of the normalised outputs x sqrt(d): 1 is healthy, 0 collapsed)
  with and without the stop-gradient (both at batch 64, as in the notebook);
* with ``--equal-budget`` (default on): MoCo again for SimCLR's budget, the issue's "MoCo at least
  as good as SimCLR on the same budget".

Budgets are wall-clock, so a busy machine lowers every number: the JSON records the load average
before and after each run. ``--budget-s 300 --methods simclr moco`` gives both methods the issue's
5 minutes; ``--amp --channels-last`` trains in bfloat16 (on a CPU with AVX512-BF16 or AMX) and
NHWC layout, about twice the steps on such a CPU; ``--knn-every 0`` leaves out the kNN monitor,
whose evaluations otherwise count in the budget; ``--batch-size`` and ``--temperature`` replace
the preset's batch size (256 in cpu-quick) and tau (0.2); run SimCLR and MoCo apart to give each
its own.
Run: ``python -m benchmarks.contrastive_quality --preset cpu-quick`` (data from
``$REPLEARN_DATA_DIR``). Writes ``build/bench/contrastive_quality.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from benchmarks.common import load_average, machine_info
from replearn import augment, data, impl
from replearn.backbones import SmallCNN
from replearn.evaluate import PROBE_WEIGHT_DECAY, extract_features, few_label_curve, knn_accuracy
from replearn.presets import get_preset
from replearn.recipes import contrastive_learning as recipe
from replearn.train import pick_device

OUT_DIR = Path("build/bench")
PIPELINES = ("crop", "color", "crop+color", "crop+color+blur")  # the notebook's ablation
ABLATION_CPU_QUICK_S = 8.0  # seconds per ablation run in cpu-quick (the notebook's scaled(8))
ABLATION_BATCH = 64  # the notebook's ablation batch size (more steps in its few seconds)
SIMSIAM_BATCH = 64  # the notebook's SimSiam batch size (collapse takes steps, not images)
FEW_LABELS = (1, 10, 100)  # labels per class of the few-label curve (the notebook's)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu-quick")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--few-seeds", type=int, default=1, help="seeds of the few-label curve")
    parser.add_argument(
        "--no-equal-budget", action="store_true", help="skip the MoCo run at SimCLR's budget"
    )
    parser.add_argument(
        "--methods",
        nargs="*",
        default=None,
        help="pretrain only these (default: every method of the notebook)",
    )
    parser.add_argument(
        "--budget-s",
        type=float,
        default=None,
        help="one wall-clock budget for every method instead of the notebook's "
        "(the issue's '5 minutes': --budget-s 300 --methods simclr moco)",
    )
    parser.add_argument(
        "--amp",
        action="store_true",
        help="bfloat16 autocast, on a CPU too when it has AVX512-BF16 or AMX",
    )
    parser.add_argument(
        "--knn-every",
        type=int,
        default=None,
        help="epochs between kNN monitor readings (0: none; default: the notebook's)",
    )
    parser.add_argument(
        "--channels-last",
        action="store_true",
        help="train in NHWC layout (oneDNN's faster CPU convolutions)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="images per step instead of the preset's (MoCo's queue keeps its K)",
    )
    parser.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="tau of NT-Xent and MoCo instead of 0.2 (MoCo's CIFAR demo: 0.1)",
    )
    parser.add_argument(
        "--skip", nargs="*", default=[], help="parts to leave out: ablation pixels few-label"
    )
    parser.add_argument("--out", default=str(OUT_DIR / "contrastive_quality.json"))
    args = parser.parse_args(argv)
    preset = get_preset(args.preset)
    cl = impl.load("contrastive_learning", "solution")
    cfg = recipe.ContrastiveConfig.from_preset(preset)
    if args.amp or args.channels_last:
        cfg = replace(cfg, amp=True if args.amp else cfg.amp, channels_last=args.channels_last)
    if args.knn_every is not None:  # the monitor's evaluations count in the wall-clock budget
        cfg = replace(cfg, knn_every=args.knn_every)
    if args.batch_size is not None:
        cfg = replace(cfg, batch_size=args.batch_size)
    if args.temperature is not None:
        cfg = replace(cfg, temperature=args.temperature)
    device = pick_device(preset.device)
    cifar = data.load_dataset(
        preset.dataset,
        train_per_class=preset.train_per_class,
        test_per_class=preset.test_per_class,
        seed=args.seed,
    )
    print(cifar.summary(), flush=True)
    x_train, y_train, x_test, y_test = cifar.x_train, cifar.y_train, cifar.x_test, cifar.y_test
    monitor = (x_train, y_train, x_test, y_test)
    smallest_class = int(torch.bincount(y_train).min())
    per_class = [n for n in FEW_LABELS if n <= smallest_class]
    probe_kwargs = {"weight_decay": PROBE_WEIGHT_DECAY, "max_iter": cfg.probe_iters}
    started = time.perf_counter()
    rows: dict[str, dict] = {}

    def probe(name: str, encoder, info: dict) -> dict:
        t0 = time.perf_counter()
        scores = recipe.evaluate_encoder(encoder, x_train, y_train, x_test, y_test, cfg)
        row = {**scores, **info, "eval_s": round(time.perf_counter() - t0, 1)}
        if "few-label" not in args.skip:
            f_train, f_test = extract_features(encoder, x_train), extract_features(encoder, x_test)
            curve = few_label_curve(
                f_train,
                y_train,
                f_test,
                y_test,
                per_class=per_class,
                seeds=tuple(range(args.few_seeds)),
                probe_kwargs=probe_kwargs,
            )
            row["few_label"] = {n: m for n, m in zip(curve["per_class"], curve["mean"])}
        rows[name] = row
        print(
            f"{name}: kNN {scores['knn']:.3f}, linear {scores['linear']:.3f} "
            f"({', '.join(f'{k} {v}' for k, v in info.items())})",
            flush=True,
        )
        return row

    def run(method: str, budget: float | None = None, config=None, **kwargs):
        load_before = load_average()
        t0 = time.perf_counter()
        result = recipe.pretrain(
            cl,
            method,
            x_train,
            y_train if method == "supervised" else None,
            config or cfg,
            budget_s=budget,
            seed=args.seed,
            device=device,
            **kwargs,
        )
        h = result.history
        info = {
            "budget_s": round(budget if budget is not None else cfg.budget(method), 1),
            "train_s": round(time.perf_counter() - t0, 1),
            "steps": h.steps_done,
            "epochs": round(h.epochs_done, 2),
            "images_per_s": round(h.images_per_s, 1),
            "amp": h.amp,
            "final_loss": round(result.final_loss, 4),
            "load_before": load_before,
            "load_after": load_average(),
        }
        knn_curve = h.metric("knn", per="epoch")
        if knn_curve:
            info["knn_monitor"] = [round(v, 4) for v in knn_curve]
        stds = h.metric("std")
        if stds:  # SimSiam's collapse monitor, in units of 1/sqrt(d)
            info["final_std_x_sqrt_d"] = round(stds[-1] * math.sqrt(cfg.projection_dim), 4)
        return result, info

    torch.manual_seed(args.seed)
    random_encoder = SmallCNN(in_channels=x_train.shape[1], widths=cfg.widths).to(device)
    probe("random init", random_encoder, {"train_s": 0.0})
    simsiam_cfg = replace(cfg, batch_size=min(cfg.batch_size, SIMSIAM_BATCH))
    methods = recipe.METHOD_NAMES if args.methods is None else tuple(args.methods)
    for method in methods:
        config = simsiam_cfg if method.startswith("simsiam") else cfg
        result, info = run(
            method,
            args.budget_s,
            config=config,
            monitor=monitor if method in ("simclr", "moco") else None,
        )
        probe(method, result.encoder, info)
    equal_budget = args.budget_s is None and {"simclr", "moco"} <= set(methods)
    if equal_budget and not args.no_equal_budget and cfg.moco_s != cfg.simclr_s:
        result, info = run("moco", cfg.simclr_s, monitor=monitor)
        probe(f"moco ({cfg.simclr_s:.0f} s, SimCLR's budget)", result.encoder, info)

    ablation = {}
    if "ablation" not in args.skip:
        ablation_s = preset.scaled(ABLATION_CPU_QUICK_S)
        ablation_cfg = replace(cfg, batch_size=min(cfg.batch_size, ABLATION_BATCH))
        for name in PIPELINES:
            result, info = run(
                "simclr", ablation_s, augment=augment.get_pipeline(name), config=ablation_cfg
            )
            bank, queries = (
                extract_features(result.encoder, x_train),
                extract_features(result.encoder, x_test),
            )
            knn = knn_accuracy(bank, y_train, queries, y_test, k=cfg.knn_k)
            ablation[name] = {"knn": knn, **info}
            print(f"ablation {name}: kNN {knn:.3f} ({info['steps']} steps)", flush=True)

    if "pixels" not in args.skip:
        t0 = time.perf_counter()
        flat = torch.nn.Flatten()  # raw pixels as the "encoder": [N, C, H, W] -> [N, C*H*W]
        probe("raw pixels", flat, {"train_s": 0.0})
        rows["raw pixels"]["eval_s"] = round(time.perf_counter() - t0, 1)

    knn = {name: row["knn"] for name, row in rows.items()}
    budgets = "equal budgets" if args.budget_s is not None else "notebook budgets"
    wanted = {
        "simclr kNN - random init kNN": ("simclr", "random init"),
        f"moco kNN - simclr kNN ({budgets})": ("moco", "simclr"),
        "supervised kNN - simclr kNN": ("supervised", "simclr"),
    }
    checks = {k: knn[a] - knn[b] for k, (a, b) in wanted.items() if a in knn and b in knn}
    equal = [name for name in rows if name.startswith("moco (")]
    if equal:
        checks["moco kNN - simclr kNN (equal budgets)"] = knn[equal[0]] - knn["simclr"]
    if ablation:
        checks["ablation: crop+color kNN - best single augmentation kNN"] = ablation["crop+color"][
            "knn"
        ] - max(ablation["crop"]["knn"], ablation["color"]["knn"])
    result = {
        "preset": preset.name,
        "dataset": cifar.name,
        "source": cifar.source,
        "train_images": len(y_train),
        "test_images": len(y_test),
        "device": str(device),
        "machine": {**machine_info(device), "load_average_1min_end": load_average()},
        "config": asdict(cfg),
        "budget_s_override": args.budget_s,
        "rows": rows,
        "ablation": ablation,
        "checks": checks,
        "seconds": round(time.perf_counter() - started, 1),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    return result


def markdown(result: dict) -> str:
    def pct(value) -> str:
        return "-" if value is None else f"{100 * value:.1f}"

    few = sorted({int(n) for row in result["rows"].values() for n in row.get("few_label", {})})
    lines = [
        f"Contrastive learning on {result['dataset']} ({result['train_images']} train / "
        f"{result['test_images']} test), preset {result['preset']}, {result['device']}, "
        f"{result['machine']['cpu_count']} CPUs (shared), total {result['seconds']:.0f} s",
        "",
        "| encoder | budget s | steps | epochs | load | kNN | linear | "
        + " | ".join(f"lin {n}/class" for n in few)
        + " | notes |",
        "|" + "---|" * (8 + len(few)),
    ]
    for name, row in result["rows"].items():
        load = row.get("load_before")
        notes = []
        if "final_std_x_sqrt_d" in row:
            notes.append(f"std x sqrt(d) {row['final_std_x_sqrt_d']:.2f}")
        if row.get("knn_monitor"):
            notes.append("kNN monitor " + ", ".join(pct(v) for v in row["knn_monitor"]))
        few_row = row.get("few_label", {})
        lines.append(
            f"| {name} | {row.get('budget_s', 0):.0f} | {row.get('steps', '-')} | "
            f"{row.get('epochs', '-')} | {'-' if load is None else f'{load:.1f}'} | "
            f"{pct(row['knn'])} | {pct(row['linear'])} | "
            + " | ".join(pct(few_row.get(n, few_row.get(str(n)))) for n in few)
            + f" | {'; '.join(notes)} |"
        )
    if result["ablation"]:
        lines += [
            "",
            "| SimCLR augmentation (ablation) | budget s | steps | load | kNN |",
            "|---|---|---|---|---|",
        ]
        for name, row in result["ablation"].items():
            lines.append(
                f"| {name} | {row['budget_s']:.0f} | {row['steps']} | "
                f"{row['load_before']:.1f} | {pct(row['knn'])} |"
            )
    lines += ["", *(f"- {k}: {100 * v:+.1f} points" for k, v in result["checks"].items())]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
