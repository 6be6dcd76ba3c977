"""Training-step speed of SimCLR, MoCo, BYOL, SimSiam and MAE: ours vs lightly, and the losses.

For each method, two contenders train the same architecture on the same batches with the same
augmentation and optimiser, side by side in one run:

* ``ours``: the reference module of the assignment, as ``pretrain`` runs it
  (``solutions/contrastive_learning.py``: ``simclr_step``, ``MoCo.step``, ``BYOL.step``,
  ``simsiam_step``; ``solutions/masked_autoencoders.py``: ``build_mae`` and its forward);
* ``lightly``: what lightly's examples (lightly 1.6) write for the same method: its projection
  and prediction heads, ``NTXentLoss`` (with a 4,096-key memory bank for MoCo),
  ``NegativeCosineSimilarity``, ``update_momentum`` and ``deactivate_requires_grad``; for MAE
  ``MaskedVisionTransformerTIMM`` around a timm ViT of our encoder's size (patch 4, width 128,
  4 blocks, 4 heads) and ``MAEDecoderTIMM`` of our decoder's size, ``random_token_mask``,
  ``patchify`` and an MSE loss. The conv methods share ``replearn.backbones.SmallCNN``.

Both get uint8 CIFAR-10 batches from a ``TensorLoader`` and the batched
``replearn.augment.SimCLRAugment`` (MAE: no augmentation), so the ratio measures the model,
loss and update code; the augmentation is measured on its own in ``augment_throughput.py`` and,
with lightly's per-image transforms in a ``DataLoader``, in ``contrastive_speed.py``. Batches:
256 images (two views each) for the contrastive methods, 64 for MAE (the ``cpu-quick`` recipes).
Contenders alternate in rounds of ``--steps`` steps after a warm-up; each reports the median over
rounds. Ratios are ours / lightly in images per second.

The losses alone: NT-Xent (``nt_xent_loss``, Assignment 4) against lightly's ``NTXentLoss``, and
the CLIP loss (``clip_loss``, Assignment 6) against open_clip's ``ClipLoss``, on the same random
embeddings: the largest difference of the losses and of their gradients, and the time of a
forward and backward pass (median of ``--loss-repeats``).

    python -m benchmarks.method_speed                    # about 3 minutes on 2 cores
    python -m benchmarks.method_speed --methods moco --rounds 1 --steps 3

Writes ``build/bench/method_speed.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import os
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn as nn

from benchmarks.augment_throughput import default_data_dir, load_cifar_train
from benchmarks.common import load_average, machine_info
from replearn import impl, recipes
from replearn.augment import SimCLRAugment
from replearn.backbones import SmallCNN
from replearn.data import as_float_images
from replearn.presets import get_preset
from replearn.train import TensorLoader

TIMED_METHODS = ("simclr", "moco", "byol", "simsiam", "mae")
CONTENDERS = ("ours", "lightly")
# A diagnostic, not a contender: our module's model and loss with the two views in two forward
# passes of N, as lightly's examples do, instead of the one pass of 2N our steps make (SimCLR's
# BatchNorm over all 2N views, which the assignment asks for). It prices that one difference.
SPLIT = "ours, views split"
JOINT_FORWARD = ("simclr", "byol", "simsiam")


class Contender:
    """One method in one implementation: ``round(steps)`` trains and times ``steps`` steps."""

    def __init__(self, method: str, who: str, images: torch.Tensor, seed: int):
        self.method, self.who = method, who
        torch.manual_seed(seed)
        self.generator = torch.Generator().manual_seed(seed)
        if method == "mae":
            self.cfg = recipes.masked_autoencoders.MAEConfig.from_preset(get_preset("cpu-quick"))
            self.batch = self.cfg.batch_size
            self.model, self.loss = self._ours_mae() if who == "ours" else self._lightly_mae()
        else:
            cl = impl.load("contrastive_learning", "solution")
            self.cfg = recipes.contrastive_learning.ContrastiveConfig.from_preset(
                get_preset("cpu-quick")
            )
            self.batch = self.cfg.batch_size
            self.augment = SimCLRAugment(size=32)
            build = {"ours": self._ours, "lightly": self._lightly, SPLIT: self._ours_split}[who]
            self.model, self.loss = build(cl, method)
        self.loader = TensorLoader(images, batch_size=self.batch, seed=seed)
        self.batches = iter(())
        lr = self.cfg.lr
        trained = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(trained, lr=lr, weight_decay=self.cfg.weight_decay)
        self.model.train()

    def view(self, x: torch.Tensor) -> torch.Tensor:
        return self.augment(x, self.generator)  # [N, C, H, W]

    # ---- ours -----------------------------------------------------------------------------
    def _ours(self, cl, method: str) -> tuple[nn.Module, Callable[[torch.Tensor], torch.Tensor]]:
        cfg, encoder = self.cfg, SmallCNN()
        dim = encoder.feature_dim
        aug = lambda x, g: self.augment(x, g)  # noqa: E731
        if method == "simclr":
            model = cl.SimCLR(encoder, dim, cfg.projection_dim, cfg.hidden_dim)
            return model, lambda x: cl.simclr_step(model, x, aug, cfg.temperature, self.generator)[
                "loss"
            ]
        if method == "moco":
            model = cl.MoCo(
                encoder,
                dim,
                cfg.projection_dim,
                cfg.queue_size,
                cfg.moco_momentum,
                cfg.temperature,
                cfg.hidden_dim,
            )
            return model, lambda x: model.step(x, aug, self.generator)["loss"]
        if method == "byol":
            model = cl.BYOL(encoder, dim, cfg.projection_dim, cfg.hidden_dim, cfg.byol_momentum)
            return model, lambda x: model.step(x, aug, self.generator)["loss"]
        model = cl.SimSiam(encoder, dim, cfg.projection_dim, cfg.simsiam_hidden_dim)
        return model, lambda x: cl.simsiam_step(model, x, aug, self.generator)["loss"]

    def _ours_split(
        self, cl, method: str
    ) -> tuple[nn.Module, Callable[[torch.Tensor], torch.Tensor]]:
        """``_ours`` with each view through the network on its own (the diagnostic row)."""
        cfg, encoder = self.cfg, SmallCNN()
        dim = encoder.feature_dim

        def views(x):
            x = cl.as_float_images(x)  # [N, C, H, W]
            return self.augment(x, self.generator), self.augment(x, self.generator)

        if method == "simclr":
            model = cl.SimCLR(encoder, dim, cfg.projection_dim, cfg.hidden_dim)

            def loss(x):
                v1, v2 = views(x)
                return cl.nt_xent_loss(model(v1), model(v2), cfg.temperature)  # [N, D] each

            return model, loss
        if method == "byol":
            model = cl.BYOL(encoder, dim, cfg.projection_dim, cfg.hidden_dim, cfg.byol_momentum)

            def loss(x):
                cl.momentum_update(model.encoder, model.target_encoder, model.momentum)
                cl.momentum_update(model.projector, model.target_projector, model.momentum)
                v1, v2 = views(x)
                p1, p2 = model(v1), model(v2)  # [N, D] each
                z1, z2 = model.targets(v1), model.targets(v2)  # [N, D] each
                return (cl.byol_loss(p1, z2) + cl.byol_loss(p2, z1)) / 2

            return model, loss
        model = cl.SimSiam(encoder, dim, cfg.projection_dim, cfg.simsiam_hidden_dim)

        def loss(x):
            v1, v2 = views(x)
            (p1, z1), (p2, z2) = model(v1), model(v2)  # [N, D] each
            return cl.simsiam_loss(p1, p2, z1, z2, True)

        return model, loss

    def _ours_mae(self):
        mae = impl.load("masked_autoencoders", "solution")
        model = recipes.masked_autoencoders.build_mae(mae, self.cfg)
        return model, lambda x: model(as_float_images(x), self.cfg.mask_ratio, self.generator)[
            "loss"
        ]

    # ---- lightly --------------------------------------------------------------------------
    def _lightly(self, cl, method: str):
        from lightly.loss import NegativeCosineSimilarity, NTXentLoss
        from lightly.models import modules as heads
        from lightly.models.utils import deactivate_requires_grad, update_momentum

        cfg, encoder = self.cfg, SmallCNN()
        dim, proj, hidden = encoder.feature_dim, cfg.projection_dim, cfg.hidden_dim
        model = nn.Module()
        model.backbone = encoder
        floats = as_float_images
        if method == "simclr":
            model.head = heads.SimCLRProjectionHead(dim, hidden, proj)
            ntxent = NTXentLoss(temperature=cfg.temperature)

            def loss(x):
                x = floats(x)
                z0 = model.head(model.backbone(self.view(x)))  # [N, 128]
                z1 = model.head(model.backbone(self.view(x)))  # [N, 128]
                return ntxent(z0, z1)

            return model, loss
        if method in ("moco", "byol"):
            if method == "moco":
                model.head = heads.MoCoProjectionHead(dim, hidden, proj)
            else:
                model.head = heads.BYOLProjectionHead(dim, hidden, proj)
                model.predictor = heads.BYOLPredictionHead(proj, hidden, proj)
            model.backbone_momentum = copy.deepcopy(model.backbone)
            model.head_momentum = copy.deepcopy(model.head)
            deactivate_requires_grad(model.backbone_momentum)
            deactivate_requires_grad(model.head_momentum)
            m = cfg.moco_momentum if method == "moco" else cfg.byol_momentum

            def momentum_forward(x):
                with torch.no_grad():
                    return model.head_momentum(model.backbone_momentum(x)).detach()

            if method == "moco":
                ntxent = NTXentLoss(
                    temperature=cfg.temperature, memory_bank_size=(cfg.queue_size, proj)
                )

                def loss(x):
                    update_momentum(model.backbone, model.backbone_momentum, m=m)
                    update_momentum(model.head, model.head_momentum, m=m)
                    x = floats(x)
                    query = model.head(model.backbone(self.view(x)))  # [N, 128]
                    key = momentum_forward(self.view(x))  # [N, 128]
                    return ntxent(query, key)

                return model, loss
            cosine = NegativeCosineSimilarity()

            def loss(x):
                update_momentum(model.backbone, model.backbone_momentum, m=m)
                update_momentum(model.head, model.head_momentum, m=m)
                x = floats(x)
                x0, x1 = self.view(x), self.view(x)
                p0 = model.predictor(model.head(model.backbone(x0)))  # [N, 128]
                p1 = model.predictor(model.head(model.backbone(x1)))  # [N, 128]
                z0, z1 = momentum_forward(x0), momentum_forward(x1)  # [N, 128]
                return 0.5 * (cosine(p0, z1) + cosine(p1, z0))

            return model, loss
        # SimSiam: lightly's 3-layer projection head at our width, our predictor bottleneck
        model.head = heads.SimSiamProjectionHead(dim, proj, proj)
        model.predictor = heads.SimSiamPredictionHead(proj, cfg.simsiam_hidden_dim, proj)
        cosine = NegativeCosineSimilarity()

        def loss(x):
            x = floats(x)
            z0 = model.head(model.backbone(self.view(x)))  # [N, 128]
            z1 = model.head(model.backbone(self.view(x)))  # [N, 128]
            p0, p1 = model.predictor(z0), model.predictor(z1)  # [N, 128]
            return 0.5 * (cosine(p0, z1.detach()) + cosine(p1, z0.detach()))

        return model, loss

    def _lightly_mae(self):
        from lightly.models import utils
        from lightly.models.modules import MAEDecoderTIMM, MaskedVisionTransformerTIMM
        from timm.models.vision_transformer import VisionTransformer

        cfg = self.cfg
        vit = VisionTransformer(
            img_size=32,
            patch_size=cfg.patch_size,
            embed_dim=cfg.dim,
            depth=cfg.depth,
            num_heads=cfg.heads,
            mlp_ratio=4.0,
            num_classes=0,
        )
        model = nn.Module()
        model.backbone = MaskedVisionTransformerTIMM(vit=vit)
        with warnings.catch_warnings():  # deprecated in lightly 1.6, still its MAE example's
            warnings.simplefilter("ignore", FutureWarning)
            model.decoder = MAEDecoderTIMM(
                num_patches=vit.patch_embed.num_patches,
                patch_size=cfg.patch_size,
                embed_dim=cfg.dim,
                decoder_embed_dim=cfg.decoder_dim,
                decoder_depth=cfg.decoder_depth,
                decoder_num_heads=cfg.decoder_heads,
                mlp_ratio=4.0,
                proj_drop_rate=0.0,
                attn_drop_rate=0.0,
            )
        length = model.backbone.sequence_length
        mse = nn.MSELoss()

        def loss(x):  # lightly's examples/pytorch/mae.py, step by step
            images = as_float_images(x)  # [N, 3, 32, 32]
            idx_keep, idx_mask = utils.random_token_mask(
                size=(len(images), length), mask_ratio=cfg.mask_ratio
            )
            encoded = model.backbone.encode(images=images, idx_keep=idx_keep)  # [N, 1+L_keep, D]
            decode = model.decoder.embed(encoded)
            tokens = utils.repeat_token(model.decoder.mask_token, (len(images), length))
            tokens = utils.set_at_index(tokens, idx_keep, decode.type_as(tokens))
            decoded = model.decoder.decode(tokens)  # [N, 1+L, D_dec]
            pred = model.decoder.predict(
                utils.get_at_index(decoded, idx_mask)
            )  # [N, L_mask, p*p*C]
            patches = utils.patchify(images, cfg.patch_size)  # [N, L, p*p*C]
            return mse(pred, utils.get_at_index(patches, idx_mask - 1))

        return model, loss

    def round(self, steps: int) -> dict:
        done, tic = 0, time.perf_counter()
        while done < steps:
            batch = next(self.batches, None)
            if batch is None:
                self.batches = iter(self.loader)
                continue
            loss = self.loss(batch)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            done += 1
        seconds = time.perf_counter() - tic
        if not torch.isfinite(loss):
            raise RuntimeError(f"{self.method}/{self.who}: the loss is {loss.item()}")
        return {"steps": done, "seconds": seconds, "images_per_s": done * self.batch / seconds}


def _timed(fn: Callable[[], torch.Tensor], repeats: int) -> float:
    """Median seconds of ``fn()`` + backward over ``repeats`` runs (after one warm-up)."""
    fn().backward()
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        fn().backward()
        times.append(time.perf_counter() - tic)
    return statistics.median(times)


def loss_parity(n: int, dim: int, repeats: int, seed: int) -> dict:
    """Our NT-Xent and CLIP loss against lightly's and open_clip's: values, gradients, time."""
    from lightly.loss import NTXentLoss
    from open_clip.loss import ClipLoss

    cl = impl.load("contrastive_learning", "solution")
    clip = impl.load("clip_zero_shot", "solution")
    g = torch.Generator().manual_seed(seed)
    out = {}
    pairs = {
        "NT-Xent (A4 nt_xent_loss) vs lightly NTXentLoss": (
            lambda a, b: cl.nt_xent_loss(a, b, 0.2),
            lambda a, b: NTXentLoss(temperature=0.2)(a, b),
        ),
        "CLIP loss (A6 clip_loss) vs open_clip ClipLoss": (
            lambda a, b: clip.clip_loss(a, b, torch.tensor(1 / 0.07)),
            lambda a, b: ClipLoss()(
                torch.nn.functional.normalize(a, dim=-1),
                torch.nn.functional.normalize(b, dim=-1),
                torch.tensor(1 / 0.07),
            ),
        ),
    }
    for name, (ours, peer) in pairs.items():
        a0, b0 = torch.randn(n, dim, generator=g), torch.randn(n, dim, generator=g)
        results = []
        for fn in (ours, peer):
            a, b = a0.clone().requires_grad_(), b0.clone().requires_grad_()
            value = fn(a, b)
            value.backward()
            results.append((value.detach(), a.grad, b.grad))
        (v0, ga0, gb0), (v1, ga1, gb1) = results

        def fresh(fn=ours, a0=a0, b0=b0):
            return fn(a0.clone().requires_grad_(), b0.clone().requires_grad_())

        t_ours, t_peer = _timed(fresh, repeats), _timed(functools.partial(fresh, peer), repeats)
        out[name] = {
            "n": n,
            "dim": dim,
            "loss_ours": float(v0),
            "loss_peer": float(v1),
            "max_abs_loss_diff": float((v0 - v1).abs()),
            "max_abs_grad_diff": float(max((ga0 - ga1).abs().max(), (gb0 - gb1).abs().max())),
            "ms_ours": 1000 * t_ours,
            "ms_peer": 1000 * t_peer,
            "ratio": t_peer / t_ours,
        }
        print(f"{name}: {out[name]}", flush=True)
    return out


def to_markdown(report: dict) -> str:
    info = report["machine"]
    lines = [
        f"Training-step speed, ours vs lightly {info.get('lightly')}, same architecture, batch, "
        f"batched augmentation and AdamW; median of {report['rounds']} interleaved rounds of "
        f"{report['steps']} steps; {info['cpu_count']} CPUs, torch {info['torch']} "
        f"({info['torch_threads']} threads), load average {info['load_average_1min']:.1f} "
        f"before / {info['load_average_1min_after']:.1f} after",
        "",
        "| method | batch | ours images/s | lightly images/s | ours / lightly | diagnostic: ours "
        "with the views split / lightly |",
        "|---|---|---|---|---|---|",
    ]
    for method, row in report["methods"].items():
        ratio, split = row.get("ratio"), row.get("split_ratio")
        lines.append(
            f"| {method} | {row['batch']} | {row.get('ours', float('nan')):,.0f} | "
            f"{row.get('lightly', float('nan')):,.0f} | "
            f"{'-' if ratio is None else f'{ratio:.2f}x'} | "
            f"{'-' if split is None else f'{split:.2f}x'} |"
        )
    if any("split_ratio" in row for row in report["methods"].values()):
        lines += [
            "",
            f"The diagnostic row ({SPLIT}) runs our model and loss with each view in its "
            "own forward pass of N images, as lightly's examples do; our steps make one pass "
            "of 2N so that BatchNorm normalises over both views (SimCLR's global BN, and "
            "the assignment's specification). Its ratio prices that one difference.",
        ]
    if report["losses"]:
        lines += [
            "",
            "| loss | N x D | max loss diff | max grad diff | ours ms | peer ms | "
            "peer / ours time |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, row in report["losses"].items():
            lines.append(
                f"| {name} | {row['n']} x {row['dim']} | {row['max_abs_loss_diff']:.1e} | "
                f"{row['max_abs_grad_diff']:.1e} | {row['ms_ours']:.2f} | "
                f"{row['ms_peer']:.2f} | {row['ratio']:.2f}x |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", nargs="+", default=list(TIMED_METHODS), choices=TIMED_METHODS)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timed rounds")
    parser.add_argument("--steps", type=int, default=8, help="steps per contender per round")
    parser.add_argument("--loss-n", type=int, default=512, help="embeddings per loss call")
    parser.add_argument("--loss-repeats", type=int, default=20)
    parser.add_argument("--no-losses", action="store_true")
    parser.add_argument(
        "--no-split", action="store_true", help=f"leave out the diagnostic row ({SPLIT!r})"
    )
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("build/bench/method_speed.json"))
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    images_hwc, source = load_cifar_train(args.data_dir or default_data_dir())
    images = torch.from_numpy(images_hwc).permute(0, 3, 1, 2).contiguous()  # uint8 [N, 3, H, W]
    info = machine_info(packages=("torchvision", "lightly", "timm", "open_clip_torch"))
    print(f"data: {len(images)} images from {source}\nmachine: {info}", flush=True)
    methods = {}
    for method in args.methods:
        who_runs = CONTENDERS + ((SPLIT,) if method in JOINT_FORWARD and not args.no_split else ())
        contenders = [Contender(method, who, images, args.seed) for who in who_runs]
        for c in contenders:
            c.round(2)  # warm-up
        rounds: dict[str, list[float]] = {c.who: [] for c in contenders}
        for index in range(args.rounds):
            for c in contenders:
                row = c.round(args.steps)
                rounds[c.who].append(row["images_per_s"])
                print(
                    f"  {method:8s} round {index + 1} {c.who:8s} {row['images_per_s']:7,.0f} "
                    f"images/s (load {load_average()})",
                    flush=True,
                )
        speed = {who: statistics.median(v) for who, v in rounds.items()}
        methods[method] = {
            "batch": contenders[0].batch,
            **speed,
            "rounds": rounds,
            "ratio": speed["ours"] / speed["lightly"],
        }
        if SPLIT in speed:
            methods[method]["split_ratio"] = speed[SPLIT] / speed["lightly"]
    info["load_average_1min_after"] = load_average()
    losses = {} if args.no_losses else loss_parity(args.loss_n, 128, args.loss_repeats, args.seed)
    report = {
        "benchmark": "method_speed",
        "rounds": args.rounds,
        "steps": args.steps,
        "data": {"images": int(len(images)), "source": source},
        "machine": info,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "methods": methods,
        "losses": losses,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    markdown = to_markdown(report)
    args.out.with_suffix(".md").write_text(markdown)
    print(markdown)
    return report


if __name__ == "__main__":
    main()
