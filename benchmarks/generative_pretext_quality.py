"""Quality benchmark of Assignment 3, part II (generative pretexts, deep clustering) on CIFAR-10.

Pretrains the shared ``SmallCNN`` with the reference solution on every method of the notebook,
for the notebook's wall-clock budgets, and probes every encoder under Part I's protocol on whole
32x32 images: kNN (cosine, k = 20, temperature 0.1) and a linear probe (L-BFGS logistic
regression, fixed L2 strength) on the pooled output of blocks 3 and 4.

* encoders: inpainting (L2), inpainting (L2 + adversarial), colorization (classification,
  rebalanced), colorization (regression), split-brain, deep clustering;
* baselines under the same protocol: random init on what each encoder sees (RGB; L alone for
  colorization; the random split-brain pair for split-brain; the Sobel gradients for deep
  clustering) and raw pixels;
* deep clustering: NMI with the labels and with the previous round, per round; the same run
  without uniform sampling (the trivial-solution ablation) with ``--ablation``;
* Part I's rows (rotation, context, jigsaw, exemplar, supervised) are read from
  ``build/bench/pretext_quality.json`` when that file exists, so that one table holds every
  method of the assignment (they are Part I's measurements, marked as such, not rerun here).

Run: ``python -m benchmarks.generative_pretext_quality --preset cpu-quick`` (data from
``$REPLEARN_DATA_DIR``). Writes ``build/bench/generative_pretext_quality.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from dataclasses import asdict
from pathlib import Path

import torch

from benchmarks.common import load_average, machine_info
from replearn import data, impl
from replearn.evaluate import knn_and_linear
from replearn.presets import get_preset
from replearn.recipes import generative_pretext as recipe
from replearn.train import pick_device

OUT_DIR = Path("build/bench")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu-quick")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--ablation", action="store_true", help="deep clustering without uniform sampling"
    )
    parser.add_argument("--out", default=str(OUT_DIR / "generative_pretext_quality.json"))
    args = parser.parse_args(argv)
    preset = get_preset(args.preset)
    gp = impl.load("generative_pretext", "solution")
    cfg = recipe.GenerativeConfig.from_preset(preset)
    device = pick_device(preset.device)
    cifar = data.load_dataset(
        preset.dataset,
        train_per_class=preset.train_per_class,
        test_per_class=preset.test_per_class,
        seed=args.seed,
    )
    print(cifar.summary(), flush=True)
    x_train, y_train, x_test, y_test = cifar.x_train, cifar.y_train, cifar.x_test, cifar.y_test
    machine = machine_info(device)  # the load average before the runs
    started, cpu_started = time.perf_counter(), cpu_seconds()
    rows: dict[str, dict] = {}

    def probe(name, features, **info):
        t0 = time.perf_counter()
        scores = recipe.evaluate_features(features, x_train, y_train, x_test, y_test, cfg)
        rows[name] = {"blocks": scores, "eval_s": round(time.perf_counter() - t0, 1), **info}
        print(f"{name}: {scores} {info}", flush=True)

    torch.manual_seed(args.seed)
    for name, features in recipe.random_baselines(gp, cfg).items():
        probe(name, features, train_s=0)
    budgets = {
        "inpainting": cfg.inpaint_s,
        "inpainting+adv": cfg.inpaint_adv_s,
        "color-class": cfg.color_class_s,
        "color-reg": cfg.color_reg_s,
        "split-brain": cfg.split_brain_s,
    }
    for method, budget in budgets.items():
        run = recipe.pretrain(
            gp, method, x_train, cfg, budget_s=budget, seed=args.seed, device=device
        )
        h = run.history
        probe(
            method,
            run.encoder,
            train_s=round(h.wall_time_s, 1),
            steps=h.steps_done,
            final_loss=round(h.recent_mean("loss"), 4),
        )
    clustered, rounds = recipe.deep_cluster(
        gp, x_train, y_train, cfg, budget_s=cfg.cluster_s, seed=args.seed, device=device
    )
    probe(
        "deep clustering",
        clustered.encoder,
        train_s=round(clustered.history.wall_time_s, 1),
        steps=clustered.history.steps_done,
        rounds=[asdict(r) for r in rounds],
    )
    if args.ablation:
        _, flat = recipe.deep_cluster(
            gp,
            x_train,
            y_train,
            cfg,
            budget_s=cfg.cluster_s,
            seed=args.seed,
            device=device,
            uniform_sampling=False,
        )
        rows["deep clustering, no uniform sampling"] = {"rounds": [asdict(r) for r in flat]}
    px_train = x_train.float().flatten(1) / 255  # [N, 3072]
    px_test = x_test.float().flatten(1) / 255
    raw = knn_and_linear(px_train, y_train, px_test, y_test, k=cfg.knn_k, max_iter=cfg.probe_iters)
    rows["raw pixels"] = {"blocks": {0: raw}}

    best = lambda name, m: max(s[m] for s in rows[name]["blocks"].values())  # noqa: E731
    checks = {}
    for name in (*budgets, "deep clustering"):  # each encoder against a random one of its input
        base = recipe.RANDOM_BASELINE.get(name, "random init")
        for metric in ("knn", "linear"):
            margin = best(name, metric) - best(base, metric)
            checks[f"{name} {metric} - {base} {metric} (best blocks)"] = margin
    nmis = [r.nmi_labels for r in rounds]
    checks["deep clustering NMI: round 3 - round 1"] = nmis[min(2, len(nmis) - 1)] - nmis[0]
    part1 = Path("build/bench/pretext_quality.json")
    part1_data = json.loads(part1.read_text()) if part1.exists() else {}
    same_preset = part1_data.get("preset") == preset.name
    part1_rows = part1_data.get("rows", {}) if same_preset else {}
    result = {
        "preset": preset.name,
        "dataset": cifar.name,
        "train_images": len(y_train),
        "test_images": len(y_test),
        "device": str(device),
        "machine": {**machine, "load_average_1min_end": load_average()},
        "config": asdict(cfg),
        "rows": rows,
        "checks": checks,
        "part1_rows": {k: v for k, v in part1_rows.items() if k != "raw pixels"},
        "seconds": round(time.perf_counter() - started, 1),
        "cpu_seconds": round(cpu_seconds() - cpu_started, 1),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    markdown = to_markdown(result)
    out.with_suffix(".md").write_text(markdown)
    print(markdown)
    return result


def to_markdown(result: dict) -> str:
    pct = lambda v: f"{100 * v:.1f}"  # noqa: E731
    lines = [
        f"Generative pretexts on {result['dataset']} ({result['train_images']} train / "
        f"{result['test_images']} test), preset {result['preset']}, {result['device']}, "
        f"{result['machine']['cpu_count']} CPUs, load average {result['machine']['load_average_1min']} "
        f"at the start and {result['machine']['load_average_1min_end']} at the end",
        "",
        "| encoder | train s | kNN b3 | lin b3 | kNN b4 | lin b4 |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in result["rows"].items():
        if "blocks" not in row:
            continue
        b = row["blocks"]
        if 0 in b or "0" in b:
            s = b.get(0, b.get("0"))
            lines.append(f"| {name} | 0 | - | - | {pct(s['knn'])} | {pct(s['linear'])} |")
            continue
        cells = [pct(b[k][m]) if k in b else "-" for k in (3, 4) for m in ("knn", "linear")]
        lines.append(f"| {name} | {row.get('train_s', 0):.0f} | " + " | ".join(cells) + " |")
    for name, row in result["part1_rows"].items():
        b = {int(k): v for k, v in row["blocks"].items()}
        cells = [pct(b[k][m]) if k in b else "-" for k in (3, 4) for m in ("knn", "linear")]
        lines.append(
            f"| {name} (Part I run) | {row.get('train_s', 0):.0f} | " + " | ".join(cells) + " |"
        )
    lines += [
        "",
        "| round | NMI(clusters, labels) | NMI(round, previous) | largest cluster | empty |",
        "|---|---|---|---|---|",
    ]
    for r in result["rows"]["deep clustering"]["rounds"]:
        prev = "-" if r["nmi_previous"] is None else f"{r['nmi_previous']:.3f}"
        lines.append(
            f"| {r['round']} | {r['nmi_labels']:.3f} | {prev} | {pct(r['largest_cluster'])}% | {r['empty_clusters']} |"
        )
    flat = result["rows"].get("deep clustering, no uniform sampling")
    if flat:
        lines += [
            "",
            "Without uniform sampling over clusters (largest cluster per round): "
            + ", ".join(f"{pct(r['largest_cluster'])}%" for r in flat["rounds"]),
        ]
    lines += [""] + [
        f"- {k}: {100 * v:+.1f} points" if "NMI" not in k else f"- {k}: {v:+.3f}"
        for k, v in result["checks"].items()
    ]
    lines += ["", f"total {result['seconds']:.0f} s wall, {result['cpu_seconds']:.0f} s CPU"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
