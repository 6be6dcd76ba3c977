"""Training throughput of the course backbones: forward + backward + SGD step, images/s.

Measures SmallCNN, cifar_resnet18 and the ViT (d128 x 4, patch 4) at 32x32, batch 256, on the
CPU (and on CUDA when present), next to lightly's CIFAR ResNet-18 (``ResNetGenerator``), the
backbone a user of lightly would pick instead, and reports our/lightly ratios. Writes
``build/bench/backbones.json`` and prints the machine, the torch threads and the load average,
because on a shared 2-core machine a busy neighbour halves the numbers.

    python -m benchmarks.backbone_speed                 # CPU (+ CUDA if present)
    python -m benchmarks.backbone_speed --seconds 5     # shorter
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from benchmarks.common import load_average, machine_info
from replearn.backbones import SmallCNN, VisionTransformer, cifar_resnet18


def lightly_resnet18() -> nn.Module | None:
    """lightly's CIFAR ResNet-18 without its head (``None`` when lightly is not installed)."""
    try:
        from lightly.models import ResNetGenerator
    except ImportError:
        return None
    net = ResNetGenerator("resnet-18")
    # lightly's benchmarks use the trunk: everything but the final linear layer, then GAP.
    return nn.Sequential(*list(net.children())[:-1], nn.AdaptiveAvgPool2d(1), nn.Flatten())


def candidates() -> dict[str, Callable[[], nn.Module]]:
    nets = {
        "SmallCNN": SmallCNN,
        "cifar_resnet18": cifar_resnet18,
        "ViT d128x4 p4": VisionTransformer,
    }
    if importlib.util.find_spec("lightly") is not None:
        nets["lightly ResNetGenerator('resnet-18')"] = lightly_resnet18
    return nets


def time_training_steps(
    make, device: torch.device, batch_size: int, seconds: float, max_steps: int
) -> dict:
    """Images/s of full SGD steps on random 32x32 images (2 warm-up steps not counted)."""
    torch.manual_seed(0)
    net = make().to(device).train()
    features = net(torch.rand(2, 3, 32, 32, device=device)).shape[1]
    head = nn.Linear(features, 10).to(device)
    params = list(net.parameters()) + list(head.parameters())
    optimizer = torch.optim.SGD(params, lr=0.01, momentum=0.9)
    images = torch.rand(batch_size, 3, 32, 32, device=device)  # [N, 3, 32, 32]
    labels = torch.randint(0, 10, (batch_size,), device=device)  # [N]

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(head(net(images)), labels)
        loss.backward()
        optimizer.step()

    for _ in range(2):
        step()
    durations: list[float] = []
    start = time.perf_counter()
    while len(durations) < max_steps and (
        time.perf_counter() - start < seconds or len(durations) < 3
    ):
        if device.type == "cuda":
            torch.cuda.synchronize()
        tic = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        durations.append(time.perf_counter() - tic)
    return {
        "steps": len(durations),
        "images_per_s_best": batch_size / min(durations),
        "images_per_s_median": batch_size / statistics.median(durations),
        "parameters": sum(p.numel() for p in net.parameters()),
        "feature_dim": features,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=10.0, help="timing budget per network")
    parser.add_argument("--max-steps", type=int, default=50)
    parser.add_argument("--devices", nargs="+", default=None, help="default: cpu (+ cuda)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=Path("build/bench/backbones.json"))
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])

    report = {"batch_size": args.batch_size, "image_size": 32, "results": {}}
    for name in devices:
        device = torch.device(name)
        info = machine_info(device)
        print(f"[{name}] {info}")
        rows = {}
        for label, make in candidates().items():
            rows[label] = time_training_steps(
                make, device, args.batch_size, args.seconds, args.max_steps
            )
            row = rows[label]
            print(
                f"  {label:40s} {row['images_per_s_best']:8.0f} img/s best "
                f"{row['images_per_s_median']:8.0f} median  ({row['steps']} steps, "
                f"{row['parameters'] / 1e6:.2f}M params, D={row['feature_dim']})"
            )
        peer = rows.get("lightly ResNetGenerator('resnet-18')")
        if peer:
            ratio = rows["cifar_resnet18"]["images_per_s_median"] / peer["images_per_s_median"]
            print(f"  cifar_resnet18 / lightly resnet-18 (median): {ratio:.2f}x")
            rows["ratio_cifar_resnet18_over_lightly"] = ratio
        info["load_average_1min_after"] = load_average()
        report["results"][name] = {"machine": info, "networks": rows}

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
