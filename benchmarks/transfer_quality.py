"""Quality benchmark of Assignment 1 (transfer learning) on real CIFAR-10.

Trains every method of the notebook with the reference solution, on the 5,000 / 1,000 CIFAR-10
JPEG subset (500 / 100 per class, ``cifar10-5k``), at the preset's resolution, and reports each
number the notebook promises beside its baselines under the same protocol:

* linear probe (hand-written softmax regression) on frozen ImageNet EfficientNet-Lite0 features;
* fine-tuning (two-stage recipe) of the top layers, from cached frozen-trunk activations of the
  images and of their mirror images (flip augmentation), and once without the flips;
* baselines: raw pixels; the same Lite0 with random weights (frozen, linear probe); the same Lite0
  trained from scratch, every layer, on the same images for the same wall-clock budget as the
  fine-tuning (supervised baseline);
* architecture: Lite1 and Lite2 (higher ImageNet top-1), same protocol.

Run: ``python -m benchmarks.transfer_quality --preset cpu-quick`` (data from
``$REPLEARN_DATA_DIR``). Writes ``build/bench/transfer_quality.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from replearn import data, impl
from replearn.backbones import load_pretrained, prepare
from replearn.presets import get_preset
from replearn.recipes import transfer_learning as recipe

OUT_DIR = Path("build/bench")


def _features(tl, model, images, size, net, stages=None, keep_spatial=()):
    extractor = tl.make_feature_extractor(model, "fc")
    return tl.extract_features(
        extractor,
        images,
        transform=lambda x: prepare(x, net, size=size),
        stages=stages,
        keep_spatial=keep_spatial,
    )


def _from_scratch(tl, net, cifar, size, budget_s, batch_size, seed) -> tuple[float, dict]:
    """Lite0 with random weights, every layer trained with SGD on the images for ``budget_s``."""
    torch.manual_seed(seed)
    model = recipe.as_stages(net)
    for module in model.modules():  # back to a random initialisation
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    tl.replace_head(model, 10, "fc", generator=torch.Generator().manual_seed(seed))
    for p in model.parameters():
        p.requires_grad_(True)
    # The TensorFlow port keeps BatchNorm momentum 0.01: after a hundred steps its running
    # statistics still lag the moving weights, and the eval-mode network scored at chance (10.2%
    # after 128 steps; 9.8% vs 19.8% with batch statistics after 40). PyTorch's 0.1 keeps up
    # (30.8% after 129 steps).
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = 0.1
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    gen = torch.Generator().manual_seed(seed)
    start, steps, epochs = time.perf_counter(), 0, 0
    while time.perf_counter() - start < budget_s:
        model.train()
        order = torch.randperm(len(cifar.y_train), generator=gen)
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            x = prepare(data.to_float(cifar.x_train[idx]), net, size=size)  # [n, 3, S, S]
            x = torch.where(torch.rand(len(idx), 1, 1, 1, generator=gen) < 0.5, x, x.flip(3))
            loss = F.cross_entropy(model(x), cifar.y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
            if time.perf_counter() - start > budget_s:
                break
        epochs += 1
    preds = recipe.predict_model(nn.Sequential(_Prepare(net, size), model), cifar.x_test)
    return tl.accuracy(preds, cifar.y_test), {"steps": steps, "epochs_started": epochs}


class _Prepare(nn.Module):
    def __init__(self, net, size):
        super().__init__()
        self.net, self.size = net, size

    def forward(self, x):
        return prepare(x, self.net, size=self.size)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu-quick")
    parser.add_argument(
        "--skip",
        nargs="*",
        default=[],
        help="methods to leave out: scratch untrained lite1 lite2 finetune",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    preset = get_preset(args.preset)
    tl = impl.load("transfer_learning", "solution")
    cfg = recipe.TransferConfig.from_preset(preset)
    size = cfg.size
    torch.manual_seed(args.seed)
    cifar = data.load_dataset(
        preset.dataset, train_per_class=preset.train_per_class, test_per_class=preset.test_per_class
    )
    print(cifar.summary() if hasattr(cifar, "summary") else cifar.name, flush=True)
    results, seconds = {}, {}

    def timed(name, fn):
        t0 = time.perf_counter()
        value = fn()
        seconds[name] = round(time.perf_counter() - t0, 1)
        results[name] = value
        print(
            f"{name}: {value if not isinstance(value, float) else f'{value:.4f}'} "
            f"({seconds[name]:.0f} s)",
            flush=True,
        )
        return value

    net = load_pretrained("efficientnet_lite0")
    model = recipe.as_stages(net)
    stages = recipe.finetune_stages(cfg)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    t0 = time.perf_counter()
    train = _features(tl, model, cifar.x_train, size, net, stages, stages)
    test = _features(tl, model, cifar.x_test, size, net, stages, stages)
    seconds["lite0 feature extraction"] = round(time.perf_counter() - t0, 1)
    print(f"lite0 features: {seconds['lite0 feature extraction']:.0f} s", flush=True)
    flipped = None
    if "finetune" not in args.skip:  # the trunk once more, on mirrored images: flip augmentation
        t0 = time.perf_counter()
        flipped = tl.extract_features(
            tl.make_feature_extractor(model, "fc"),
            cifar.x_train,
            transform=lambda x: prepare(x.flip(3), net, size=size),
            stages=stages,
            keep_spatial=stages,
        )
        seconds["lite0 flipped trunk (fine-tuning)"] = round(time.perf_counter() - t0, 1)
    timed(
        "linear probe, lite0 (ImageNet)",
        lambda: tl.linear_probe_accuracy(
            train["output"], cifar.y_train, test["output"], cifar.y_test
        ),
    )
    timed(
        "linear probe, raw pixels",
        lambda: tl.linear_probe_accuracy(
            data.to_float(cifar.x_train).flatten(1),
            cifar.y_train,
            data.to_float(cifar.x_test).flatten(1),
            cifar.y_test,
        ),
    )
    ft_seconds = 0.0
    if "finetune" not in args.skip:
        runs = [("few", cfg.few_stage, True), ("few", cfg.few_stage, False)]  # + without flips
        if cfg.many_stage is not None:
            runs.insert(1, ("many", cfg.many_stage, True))
        for label, stage, flip in runs:
            name = f"fine-tune {label} (after {stage}), lite0" + ("" if flip else ", no flips")
            timed(
                name,
                lambda stage=stage, flip=flip: recipe.finetune_from_cache(
                    tl,
                    model,
                    stage,
                    train[stage],
                    cifar.y_train,
                    test[stage],
                    cifar.y_test,
                    num_classes=10,
                    epochs=cfg.epochs[1],
                    lr=cfg.lr,
                    batch_size=cfg.batch_size,
                    seed=args.seed,
                    flipped_inputs=flipped[stage] if flip else None,
                ),
            )
            ft_seconds = max(ft_seconds, seconds[name])
    if "untrained" not in args.skip:
        untrained = copy.deepcopy(model)
        for module in untrained.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
        timed(
            "linear probe, lite0 random weights",
            lambda: tl.linear_probe_accuracy(
                _features(tl, untrained, cifar.x_train, size, net),
                cifar.y_train,
                _features(tl, untrained, cifar.x_test, size, net),
                cifar.y_test,
            ),
        )
    if "scratch" not in args.skip:
        # same images, every layer trained, for the fine-tuning's time plus the feature extraction
        budget = ft_seconds + seconds["lite0 feature extraction"]
        budget += seconds.get("lite0 flipped trunk (fine-tuning)", 0.0)
        acc, info = _from_scratch(tl, net, cifar, size, budget, cfg.batch_size, args.seed)
        results["lite0 from scratch, same time"] = acc
        seconds["lite0 from scratch, same time"] = round(budget, 1)
        results["lite0 from scratch: steps"] = info
        print(f"from scratch: {acc:.4f} ({info})", flush=True)
    for name in ("efficientnet_lite1", "efficientnet_lite2"):
        if name.split("_")[1] in args.skip:
            continue
        other = load_pretrained(name)
        m = recipe.as_stages(other)
        timed(
            f"linear probe, {name.split('_')[1]} (ImageNet top-1 {other.imagenet_top1})",
            lambda m=m, other=other: tl.linear_probe_accuracy(
                _features(tl, m, cifar.x_train, size, other),
                cifar.y_train,
                _features(tl, m, cifar.x_test, size, other),
                cifar.y_test,
            ),
        )

    report = {
        "benchmark": "transfer_quality",
        "preset": preset.name,
        "data": f"{cifar.name}: {len(cifar.y_train)} train / {len(cifar.y_test)} test",
        "size_px": size,
        "results": results,
        "seconds": seconds,
        "wall_seconds_total": round(time.perf_counter() - wall0, 1),
        "cpu_seconds_total": round(time.process_time() - cpu0, 1),
        "machine": f"{platform.node()} {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads",
    }
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "transfer_quality.json").write_text(json.dumps(report, indent=2))
    lines = [
        f"# Transfer quality ({preset.name}, {report['data']}, {size} px)",
        "",
        "| method | test accuracy | seconds |",
        "|---|---|---|",
    ]
    for name, value in results.items():
        if isinstance(value, float):
            lines.append(f"| {name} | {value:.1%} | {seconds.get(name, '')} |")
    lines += [
        "",
        f"machine: {report['machine']}; total {report['wall_seconds_total']:.0f} s "
        f"wall, {report['cpu_seconds_total']:.0f} s CPU (all threads)",
    ]
    (OUT_DIR / "transfer_quality.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return report


if __name__ == "__main__":
    main()
