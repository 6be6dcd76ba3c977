"""Speed of one SimCLR training step on CIFAR-10 at 32x32: our module vs lightly, side by side.

Every contender trains the same encoder (``replearn.backbones.SmallCNN``, 256-d features) with
a 256-512-128 projection head, NT-Xent at temperature 0.2 and AdamW (lr 2e-3) on shuffled
batches of the 5,000 CIFAR-10 images of ``cifar10-5k``, with SimCLR's CIFAR-10 augmentation
(crop scale (0.08, 1) + flip, colour jitter strength 0.5 with p = 0.8, grayscale 0.2, no blur):

* ``ours``: the reference ``solutions/contrastive_learning.py`` as the notebook runs it:
  ``SimCLR`` + ``simclr_step`` (one forward pass over both views, ``nt_xent_loss``) with the
  batched ``replearn.augment.SimCLRAugment`` applied in the step, batches from a
  ``replearn.train.TensorLoader`` of uint8 images (no worker processes);
* ``lightly-2w``: what a lightly user writes (lightly's SimCLR example): ``SimCLRTransform``
  (``input_size=32, cj_strength=0.5, gaussian_blur=0``) on PIL images in a torch
  ``DataLoader`` with 2 workers, ``lightly.models.modules.SimCLRProjectionHead`` and
  ``lightly.loss.NTXentLoss``, the two views through the model one after the other;
* ``lightly-batched-aug``: lightly's head and loss fed by our batched augmentation (no
  workers), which separates the cost of the augmentation from that of the model and loss.

A timed epoch is one pass over the 5,000 images (19 steps of 256), data loading included: a
fresh ``DataLoader`` iterator per epoch with the default non-persistent workers, as a lightly
user's training loop gets it. Contenders run in interleaved rounds (one epoch each per round,
after an untimed warm-up epoch), so that a neighbour's burst of load on a shared machine hits
all of them; each reports the median over rounds. The ratios are ours / peer in images per
second (an image is two views).

    python -m benchmarks.contrastive_speed                  # 3 rounds, about 2 min on 2 cores
    python -m benchmarks.contrastive_speed --rounds 1 --steps 5 --contenders ours,lightly-2w

Writes ``build/bench/contrastive_speed.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from benchmarks.augment_throughput import (
    TwoViewDataset,
    default_data_dir,
    lightly_simclr_transform,
    load_cifar_train,
)
from benchmarks.common import load_average, machine_info
from replearn import impl
from replearn.augment import SimCLRAugment
from replearn.backbones import SmallCNN
from replearn.train import TensorLoader

CONTENDERS = ("ours", "lightly-2w", "lightly-batched-aug")
TEMPERATURE = 0.2
LR = 2e-3


class LightlySimCLR(nn.Module):
    """lightly's SimCLR model pattern: backbone, then ``SimCLRProjectionHead``."""

    def __init__(self, backbone: nn.Module, feature_dim: int, hidden_dim: int, out_dim: int):
        super().__init__()
        from lightly.models.modules import SimCLRProjectionHead

        self.backbone = backbone
        self.projection_head = SimCLRProjectionHead(feature_dim, hidden_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection_head(self.backbone(x))  # [N, C, H, W] -> [N, D] -> [N, 128]


class Contender:
    """One training setup; ``epoch(max_steps)`` runs and times one pass over the data."""

    def __init__(self, name: str, images_hwc: np.ndarray, batch: int, seed: int):
        self.name, self.batch = name, batch
        torch.manual_seed(seed)
        self.generator = torch.Generator().manual_seed(seed)
        encoder = SmallCNN()  # [N, 3, 32, 32] -> [N, 256]
        if name == "ours":
            cl = impl.load("contrastive_learning", "solution")
            self.model = cl.SimCLR(encoder, encoder.feature_dim, 128, 512)
            images = torch.from_numpy(images_hwc).permute(0, 3, 1, 2).contiguous()  # uint8
            self.loader = TensorLoader(images, batch_size=batch, seed=seed)
            self.augment = SimCLRAugment(size=32)
            self.step_loss = lambda x: cl.simclr_step(
                self.model, x, self.augment, TEMPERATURE, self.generator
            )["loss"]
        else:
            from lightly.loss import NTXentLoss

            self.model = LightlySimCLR(encoder, encoder.feature_dim, 512, 128)
            criterion = NTXentLoss(temperature=TEMPERATURE)
            if name == "lightly-2w":
                dataset = TwoViewDataset(images_hwc, lightly_simclr_transform(), as_pil=True)
                self.loader = DataLoader(
                    dataset, batch_size=batch, shuffle=True, drop_last=True, num_workers=2
                )

                def step_loss(views):
                    x0, x1 = views  # [N, 3, 32, 32] each, float in [0, 1]
                    return criterion(self.model(x0), self.model(x1))

            else:
                images = torch.from_numpy(images_hwc).permute(0, 3, 1, 2).contiguous()  # uint8
                self.loader = TensorLoader(images, batch_size=batch, seed=seed)
                aug = SimCLRAugment(size=32)

                def step_loss(x):
                    x = x.float().div_(255.0)  # [N, 3, 32, 32]
                    x0, x1 = aug(x, self.generator), aug(x, self.generator)  # two views
                    return criterion(self.model(x0), self.model(x1))

            self.step_loss = step_loss
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=LR)
        self.model.train()

    def epoch(self, max_steps: int | None) -> dict:
        steps, tic = 0, time.perf_counter()
        for batch in self.loader:
            loss = self.step_loss(batch)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            steps += 1
            if max_steps is not None and steps >= max_steps:
                break
        seconds = time.perf_counter() - tic
        if not torch.isfinite(loss):
            raise RuntimeError(f"{self.name}: the loss is {loss.item()}")
        return {
            "steps": steps,
            "seconds": seconds,
            "images_per_s": steps * self.batch / seconds,
            "loss": loss.item(),
        }


def to_markdown(report: dict) -> str:
    info = report["machine"]
    lines = [
        f"SimCLR training step, SmallCNN + 256-512-128 head, batch {report['batch']}, "
        f"{report['steps_per_epoch']} steps per timed epoch, median of {report['rounds']} "
        f"interleaved rounds; {info['cpu_count']} CPUs, torch {info['torch']} "
        f"({info['torch_threads']} threads), lightly {info['lightly']}, load average "
        f"{info['load_average_1min']:.1f} before / {info['load_average_1min_after']:.1f} "
        "after",
        "",
        "| contender | images/s (median) | per round | s/step |",
        "|---|---|---|---|",
    ]
    for row in report["results"]:
        rounds = ", ".join(f"{v:,.0f}" for v in row["images_per_s_rounds"])
        lines.append(
            f"| {row['name']} | {row['images_per_s']:,.0f} | {rounds} | "
            f"{report['batch'] / row['images_per_s']:.2f} |"
        )
    lines.append("")
    lines += [f"- {label}: {ratio:.2f}x" for label, ratio in report["ratios"].items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timed epochs")
    parser.add_argument("--batch", type=int, default=256, help="images per step")
    parser.add_argument("--steps", type=int, default=None, help="cap on steps per timed epoch")
    parser.add_argument(
        "--contenders",
        default=",".join(CONTENDERS),
        help=f"comma-separated subset of {','.join(CONTENDERS)}",
    )
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("build/bench/contrastive_speed.json"))
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.contenders.split(",") if name.strip()]
    unknown = sorted(set(names) - set(CONTENDERS))
    if unknown:
        parser.error(f"unknown contenders {unknown}; choose from {', '.join(CONTENDERS)}")
    if args.threads:
        torch.set_num_threads(args.threads)

    images, source = load_cifar_train(args.data_dir or default_data_dir())
    info = machine_info(packages=("torchvision", "lightly"))
    print(f"data: {len(images)} images from {source}\nmachine: {info}", flush=True)
    contenders = [Contender(name, images, args.batch, args.seed) for name in names]
    for contender in contenders:  # warm-up: one untimed (short) epoch each
        contender.epoch(3)
    per_round: dict[str, list[dict]] = {c.name: [] for c in contenders}
    for round_index in range(args.rounds):
        for contender in contenders:
            row = contender.epoch(args.steps)
            per_round[contender.name].append(row)
            print(
                f"  round {round_index + 1}  {contender.name:20s} "
                f"{row['images_per_s']:7,.0f} images/s ({row['steps']} steps, "
                f"{row['seconds']:.1f} s, load {load_average()})",
                flush=True,
            )
    info["load_average_1min_after"] = load_average()
    results = [
        {
            "name": name,
            "images_per_s": statistics.median(r["images_per_s"] for r in rows),
            "images_per_s_rounds": [r["images_per_s"] for r in rows],
            "steps": sum(r["steps"] for r in rows),
            "seconds": sum(r["seconds"] for r in rows),
        }
        for name, rows in per_round.items()
    ]
    speed = {row["name"]: row["images_per_s"] for row in results}
    ratios = {f"ours / {peer}": speed["ours"] / speed[peer] for peer in speed if peer != "ours"}
    if "ours" not in speed:
        ratios = {}
    report = {
        "benchmark": "contrastive_speed",
        "setup": f"SimCLR step: SmallCNN + 256-512-128 projection head, NT-Xent tau "
        f"{TEMPERATURE}, AdamW lr {LR}, SimCLR CIFAR-10 augmentation at 32x32",
        "batch": args.batch,
        "rounds": args.rounds,
        "steps_per_epoch": args.steps or len(images) // args.batch,
        "data": {"images": int(len(images)), "source": source},
        "machine": info,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "results": results,
        "ratios": ratios,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    markdown = to_markdown(report)
    args.out.with_suffix(".md").write_text(markdown)
    print(markdown)
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    return report


if __name__ == "__main__":
    main()
