"""Quality benchmark of Assignment 2 (autoencoders) on real CIFAR-10 and MNIST.

Trains the notebook's models with the reference solution and scores their codes with the
course's two probes (kNN, k=20 cosine; linear probe, L-BFGS logistic regression with the L2
strength chosen on a validation split), beside the baselines under the same protocol:

* CIFAR-10 (``cifar10-5k``: 5,000 / 1,000 JPEG images in ``cpu-quick``; all of CIFAR-10 in
  ``colab``/``full``): raw pixels; the ConvAutoencoder's encoder at its random initialisation;
  a plain autoencoder, a denoising autoencoder (masking noise) and an L1 sparse autoencoder,
  each trained for the preset's CIFAR budget;
* MNIST: raw pixels, random encoder, autoencoder, denoising autoencoder, the CD-1 RBM, and the
  notebook's stacked autoencoder three ways: untrained, greedy layer-wise + fine-tuned, and end
  to end from a random start for as many passes (Part 4's comparison).

Run: ``python -m benchmarks.autoencoders_quality --preset cpu-quick`` (data from
``$REPLEARN_DATA_DIR``). Writes ``build/bench/autoencoders_quality.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from replearn import data, impl
from replearn.presets import get_preset
from replearn.recipes import autoencoders as recipe
from replearn.train import pick_device

OUT_DIR = Path("build/bench")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu-quick")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--skip", nargs="*", default=[], help="models to leave out: ae dae sparse mnist rbm stack"
    )
    args = parser.parse_args(argv)
    preset = get_preset(args.preset)
    aec = impl.load("autoencoders", "solution")
    cfg = recipe.AutoencoderConfig.from_preset(preset)
    device = pick_device(preset.device)
    rows: list[dict] = []

    def score(dataset, name, model, x_train, y_train, x_test, y_test, train_s=0.0, **kw):
        t0 = time.perf_counter()
        if model is None:  # raw pixels
            train_codes, test_codes = recipe.flat_images(x_train), recipe.flat_images(x_test)
        else:
            train_codes = recipe.encode_images(aec, model, x_train, **kw)
            test_codes = recipe.encode_images(aec, model, x_test, **kw)
        probe = recipe.evaluate_codes(train_codes, y_train, test_codes, y_test)
        row = {
            "dataset": dataset,
            "model": name,
            **probe,
            "code_dim": train_codes.shape[1],
            "train_s": round(train_s, 1),
            "eval_s": round(time.perf_counter() - t0, 1),
        }
        if model is not None and not isinstance(model, aec.RBM):
            row["test_R"] = recipe.reconstruction_error(aec, model, x_test)
        rows.append(row)
        print(
            f"{dataset:>8} | {name:<34} kNN {probe['knn']:.3f}  linear {probe['linear']:.3f}  "
            f"(train {train_s:.0f} s, eval {row['eval_s']:.0f} s)",
            flush=True,
        )

    def trained(kind, in_channels, size, widths, code, images, budget, **kw):
        torch.manual_seed(args.seed)
        act = "relu" if kind == "sparse" else "none"
        model = aec.ConvAutoencoder(in_channels, size, widths, code, code_activation=act)
        history = recipe.train_autoencoder(
            aec,
            model,
            images,
            kind=kind,
            budget_s=budget,
            lr=cfg.lr,
            batch_size=cfg.batch_size,
            seed=args.seed,
            device=device,
            mask_fraction=cfg.mask_fraction,
            **kw,
        )
        return model, history

    cifar = data.load_dataset(
        preset.dataset, train_per_class=preset.train_per_class, test_per_class=preset.test_per_class
    )
    print(f"{cifar.name}: {len(cifar.y_train)} train / {len(cifar.y_test)} test ({cifar.source})")
    split = (cifar.x_train, cifar.y_train, cifar.x_test, cifar.y_test)
    score("CIFAR-10", "raw pixels", None, *split)
    torch.manual_seed(args.seed)
    score(
        "CIFAR-10",
        "random-init encoder",
        aec.ConvAutoencoder(3, 32, cfg.cifar_widths, cfg.cifar_code).to(device),
        *split,
    )
    for kind, label, extra in (
        ("dae", f"denoising AE (mask {cfg.mask_fraction})", {}),
        ("ae", "autoencoder", {}),
        ("sparse", "sparse AE (L1, lambda 0.1, ReLU code)", {"lam": 0.1}),
    ):
        if kind in args.skip:
            continue
        model, history = trained(
            kind,
            3,
            32,
            cfg.cifar_widths,
            cfg.cifar_code,
            cifar.x_train,
            cfg.cifar_budget_s,
            **extra,
        )
        score(
            "CIFAR-10",
            f"{label}, {history.epochs_done:.0f} ep",
            model,
            *split,
            train_s=history.wall_time_s,
        )

    if "mnist" not in args.skip:
        try:
            mnist = data.load_dataset(
                "mnist",
                train_per_class=cfg.mnist_train_per_class,
                test_per_class=cfg.mnist_test_per_class,
            )
        except data.DataError:
            mnist = data.load_dataset("mnist-embedded")
        print(f"{mnist.name}: {len(mnist.y_train)} train / {len(mnist.y_test)} test")
        split = (mnist.x_train, mnist.y_train, mnist.x_test, mnist.y_test)
        score("MNIST", "raw pixels", None, *split)
        torch.manual_seed(args.seed)
        score(
            "MNIST",
            "random-init encoder",
            aec.ConvAutoencoder(1, 28, cfg.mnist_widths, cfg.mnist_code).to(device),
            *split,
        )
        for kind in ("ae", "dae"):
            if kind in args.skip:
                continue
            model, history = trained(
                kind, 1, 28, cfg.mnist_widths, cfg.mnist_code, mnist.x_train, cfg.mnist_budget_s
            )
            score(
                "MNIST",
                f"{kind}, code {cfg.mnist_code}, {history.epochs_done:.0f} ep",
                model,
                *split,
                train_s=history.wall_time_s,
            )
        if "rbm" not in args.skip:
            gen = torch.Generator().manual_seed(args.seed)
            rbm = aec.RBM(784, cfg.rbm_hidden, generator=gen)
            t0 = time.perf_counter()
            errors = recipe.train_rbm(
                aec,
                rbm,
                recipe.binarize(mnist.x_train),
                epochs=cfg.rbm_epochs,
                budget_s=cfg.rbm_budget_s,
                generator=gen,
            )
            score(
                "MNIST",
                f"RBM CD-1, {cfg.rbm_hidden} hidden, {len(errors)} ep",
                rbm,
                *split,
                train_s=time.perf_counter() - t0,
                flatten=True,
                binary=True,
            )

        if "stack" not in args.skip:  # epochs as in the notebook, so the rows repeat exactly
            x_flat = recipe.flat_images(mnist.x_train).to(device)  # [N, 784]
            passes = cfg.stack_epochs * len(cfg.stack_dims)  # greedy: one per layer + fine-tuning
            for name in ("untrained", "greedy + fine-tuned", "end to end"):
                torch.manual_seed(args.seed)
                stack = aec.StackedAutoencoder(cfg.stack_dims).to(device)
                run = {"batch_size": 64, "generator": torch.Generator().manual_seed(args.seed)}
                t0 = time.perf_counter()
                if name == "greedy + fine-tuned":
                    aec.greedy_pretrain(stack, x_flat, epochs=cfg.stack_epochs, **run)
                    run["generator"] = torch.Generator().manual_seed(args.seed)
                    aec.finetune_stack(stack, x_flat, epochs=cfg.stack_epochs, **run)
                elif name == "end to end":
                    aec.finetune_stack(stack, x_flat, epochs=passes, **run)
                score(
                    "MNIST",
                    f"stack {cfg.stack_dims}, {name}",
                    stack,
                    *split,
                    train_s=time.perf_counter() - t0,
                    flatten=True,
                )

    report = {
        "preset": preset.name,
        "machine": f"{platform.node()} ({os.cpu_count()} cores), torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, device {device}",
        "config": {k: v for k, v in cfg.__dict__.items()},
        "rows": rows,
    }
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "autoencoders_quality.json").write_text(json.dumps(report, indent=2, default=str))
    lines = [
        f"# Autoencoder codes, preset {preset.name}",
        "",
        report["machine"],
        "",
        "| data | codes of | dim | kNN | linear probe | test R | train s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        recon = f"{r['test_R']:.1f}" if "test_R" in r else "-"
        lines.append(
            f"| {r['dataset']} | {r['model']} | {r['code_dim']} | {r['knn']:.1%} | "
            f"{r['linear']:.1%} | {recon} | {r['train_s']:.0f} |"
        )
    (OUT_DIR / "autoencoders_quality.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return report


if __name__ == "__main__":
    main()
