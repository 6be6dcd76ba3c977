"""Quality benchmark of Assignment 5 (masked autoencoders) on real CIFAR-10.

Measures every number that ``assignments/05_masked_autoencoders.ipynb`` promises, with the
reference ``solutions/masked_autoencoders.py`` and the notebook's wall-clock budgets
(``MAEConfig.from_preset``), under one protocol:

* MAE (He et al. 2022) pretrained with mask ratio 0.75 and norm-pix loss for ``pretrain_s``
  seconds; its encoder probed frozen (kNN, cosine, k = 20, temperature 0.1; linear probe,
  L-BFGS logistic regression on standardised features), both through ``evaluate_encoder``;
* the same ViT with random weights, probed the same way (what the architecture gives for free);
* the MAE encoder fine-tuned end to end on the labelled images for ``finetune_s`` seconds, next to
  the same ViT trained from scratch with the same recipe (no layer decay) for the same
  labelled-training time (``finetune_s``, the notebook's comparison) and for the same TOTAL time
  (``scratch_s = pretrain_s + finetune_s``: is pretraining worth what it costs);
* raw pixels under the same probes (the floor any representation should clear);
* the mask-ratio ablation of the notebook: one short pretraining run per ratio of
  ``cfg.ablation_ratios`` (``ablation_s`` seconds each), probed like the main run on the notebook's
  subset (the first 2,000 training and 500 test images, a shuffled sample).

Budgets are wall-clock, so a busy machine lowers every number: each row records the load average
before its run. Run: ``python -m benchmarks.mae_quality --preset cpu-quick`` (data from
``$REPLEARN_DATA_DIR``). Writes ``build/bench/mae_quality.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict
from pathlib import Path

import torch

from benchmarks.common import load_average, machine_info
from replearn import data, impl
from replearn.presets import get_preset
from replearn.recipes import masked_autoencoders as recipe

OUT_DIR = Path("build/bench")
ABLATION_PROBE = (2000, 500)  # train / test images probed per ablation run (the notebook's subset)


class RawPixels(torch.nn.Module):
    """Raw pixels as an "encoder" with the ViT's interface: ``[N, C, H, W] -> [N, C*H*W]``."""

    def __init__(self, channels: int = 3, size: int = 32):
        super().__init__()
        self.feature_dim = channels * size * size

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        return images.flatten(1)  # [N, C*H*W]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_features(images)  # [N, C*H*W]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu-quick")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--skip", nargs="*", default=[], help="parts to leave out: ablation scratch pixels"
    )
    parser.add_argument("--out", default=str(OUT_DIR / "mae_quality.json"))
    args = parser.parse_args(argv)
    preset = get_preset(args.preset)
    mae = impl.load("masked_autoencoders", "solution")
    cfg = recipe.MAEConfig.from_preset(preset)
    machine = machine_info()  # the load average before anything runs
    cifar = data.load_dataset(
        preset.dataset,
        train_per_class=preset.train_per_class,
        test_per_class=preset.test_per_class,
        seed=args.seed,
    )
    print(cifar.summary(), flush=True)
    x_train, y_train, x_test, y_test = cifar.x_train, cifar.y_train, cifar.x_test, cifar.y_test
    started = time.perf_counter()
    rows: dict[str, dict] = {}

    def probe(name: str, encoder, info: dict) -> dict:
        t0 = time.perf_counter()
        scores = recipe.evaluate_encoder(mae, encoder, x_train, y_train, x_test, y_test, cfg)
        rows[name] = {
            **{k: float(v) for k, v in scores.items()},
            **info,
            "eval_s": round(time.perf_counter() - t0, 1),
        }
        print(f"{name}: kNN {scores['knn']:.3f}, linear {scores['linear']:.3f} {info}", flush=True)
        return rows[name]

    def run_pretraining(budget: float, mask_ratio: float) -> tuple:
        load_before, t0 = load_average(), time.perf_counter()
        result = recipe.pretrain(
            mae, x_train, cfg, budget_s=budget, mask_ratio=mask_ratio, seed=args.seed
        )
        h = result.history
        info = {
            "budget_s": budget,
            "train_s": round(time.perf_counter() - t0, 1),
            "steps": h.steps_done,
            "epochs": round(h.epochs_done, 2),
            "images_per_s": round(h.images_per_s, 1),
            "final_loss": round(h.metric("loss")[-1], 4),
            "mask_ratio": mask_ratio,
            "load_before": load_before,
        }
        return result, info

    def supervised(name: str, fn, budget: float) -> dict:
        load_before, t0 = load_average(), time.perf_counter()
        accuracy = float(fn(budget))
        rows[name] = {
            "accuracy": accuracy,
            "budget_s": budget,
            "load_before": load_before,
            "train_s": round(time.perf_counter() - t0, 1),
        }
        print(f"{name}: test accuracy {accuracy:.3f} ({rows[name]['train_s']:.0f} s)", flush=True)
        return rows[name]

    torch.manual_seed(args.seed)
    random_vit = recipe.build_encoder(mae, cfg)
    probe("random ViT", random_vit, {"train_s": 0.0})
    main_run, info = run_pretraining(cfg.pretrain_s, 0.75)
    probe("MAE (mask 0.75)", main_run.encoder, info)
    supervised(
        f"MAE + fine-tuning ({cfg.finetune_s:.0f} s)",
        lambda b: recipe.finetune(
            mae, main_run.encoder, x_train, y_train, x_test, y_test, cfg, budget_s=b, seed=args.seed
        ),
        cfg.finetune_s,
    )
    if "scratch" not in args.skip:

        def scratch(b: float) -> float:
            return recipe.from_scratch(
                mae, x_train, y_train, x_test, y_test, cfg, budget_s=b, seed=args.seed
            )

        supervised(
            f"ViT from scratch ({cfg.finetune_s:.0f} s, same labelled training)",
            scratch,
            cfg.finetune_s,
        )
        supervised(
            f"ViT from scratch ({cfg.scratch_s:.0f} s = pretraining + fine-tuning)",
            scratch,
            cfg.scratch_s,
        )

    ablation: dict[str, dict] = {}
    if "ablation" not in args.skip:
        for ratio in cfg.ablation_ratios:
            result, info = run_pretraining(cfg.ablation_s, ratio)
            t0 = time.perf_counter()
            n_train, n_test = ABLATION_PROBE
            scores = recipe.evaluate_encoder(
                mae,
                result.encoder,
                x_train[:n_train],
                y_train[:n_train],
                x_test[:n_test],
                y_test[:n_test],
                cfg,
            )
            ablation[f"{ratio:.2f}"] = {
                **{k: float(v) for k, v in scores.items()},
                **info,
                "eval_s": round(time.perf_counter() - t0, 1),
            }
            print(f"ablation mask {ratio:.2f}: {ablation[f'{ratio:.2f}']}", flush=True)

    if "pixels" not in args.skip:
        probe("raw pixels", RawPixels(), {"train_s": 0.0})

    mae_row, rand_row = rows["MAE (mask 0.75)"], rows["random ViT"]
    finetuned = next(row for name, row in rows.items() if name.startswith("MAE + fine"))
    checks = {
        "MAE linear - random ViT linear": mae_row["linear"] - rand_row["linear"],
        "MAE kNN - random ViT kNN": mae_row["knn"] - rand_row["knn"],
        "MAE fine-tuned - MAE linear probe": finetuned["accuracy"] - mae_row["linear"],
    }
    scratch = [row for name, row in rows.items() if name.startswith("ViT from scratch")]
    if scratch:
        same_labelled, same_total = scratch
        checks["MAE fine-tuned - from scratch (same labelled-training time)"] = (
            finetuned["accuracy"] - same_labelled["accuracy"]
        )
        checks["MAE fine-tuned - from scratch (same total time)"] = (
            finetuned["accuracy"] - same_total["accuracy"]
        )
    result = {
        "preset": preset.name,
        "dataset": cifar.name,
        "source": cifar.source,
        "train_images": len(y_train),
        "test_images": len(y_test),
        "machine": {
            **machine,
            "load_average_1min_end": load_average(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        },
        "config": asdict(cfg),
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

    def num(value, fmt: str = "{:.0f}") -> str:
        return "-" if value is None else fmt.format(value)

    m = result["machine"]
    lines = [
        f"Masked autoencoders on {result['dataset']} ({result['train_images']} train / "
        f"{result['test_images']} test), preset {result['preset']}; {m['cpu_count']} CPUs "
        f"(shared), torch {m['torch']} with {m['torch_threads']} threads, load average "
        f"{num(m['load_average_1min'], '{:.1f}')} at the start and "
        f"{num(m['load_average_1min_end'], '{:.1f}')} at the end, total {result['seconds']:.0f} s",
        "",
        "| encoder | budget s | wall s | steps | epochs | load | kNN | linear | fine-tuned |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in result["rows"].items():
        lines.append(
            f"| {name} | {num(row.get('budget_s'), '{:g}')} | {num(row.get('train_s'))} | "
            f"{row.get('steps', '-')} | {row.get('epochs', '-')} | "
            f"{num(row.get('load_before'), '{:.1f}')} | {pct(row.get('knn'))} | "
            f"{pct(row.get('linear'))} | {pct(row.get('accuracy'))} |"
        )
    if result["ablation"]:
        lines += [
            "",
            "| mask ratio (ablation) | budget s | steps | epochs | load | final loss | "
            "kNN | linear |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for ratio, row in result["ablation"].items():
            lines.append(
                f"| {ratio} | {row['budget_s']:g} | {row['steps']} | {row['epochs']} | "
                f"{num(row['load_before'], '{:.1f}')} | {row['final_loss']:.3f} | "
                f"{pct(row['knn'])} | {pct(row['linear'])} |"
            )
    lines += ["", *(f"- {k}: {100 * v:+.1f} points" for k, v in result["checks"].items())]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
