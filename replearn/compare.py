"""Which SSL method is best? Every method of the six assignments under one protocol.

The comparison behind ``python -m benchmarks.quality`` and ``assignments/07_which_method_is_best.ipynb``
(it lives in the library so that the notebook also runs where only the package is installed).

The lecture's warning: comparisons between self-supervised methods are hard because papers change
the backbone, the data, the budget and the evaluation all at once. Here only the objective
changes. Every method:

* starts from a fresh encoder of the SmallCNN family (``replearn.backbones.SmallCNN``, widths
  32-64-128-256; two exceptions, named in each row: the autoencoders keep their own
  convolutional encoder with a 256-d code, and MAE needs a ViT, because masking patches is its
  point);
* sees the same unlabelled images (``cifar10-5k``: 5,000 training images; labels only for the
  rows marked "labels": supervised, and the CLIP-style model whose captions are made from them);
* trains for the same wall-clock budget (``--budget-s``, 30 s per run in ``cpu-quick``) with its
  own assignment's recipe (optimiser, batch, augmentation: ``<Assignment>Config.from_preset``),
  with the same seeds. The budget is turned into steps once: a calibration run of each method
  on the wall clock counts the optimizer steps it takes in the budget, and every seed then
  trains for exactly that many (``replearn.train.step_budget``), with the learning-rate
  schedule over those steps. So the comparison stays fair in compute, and a rerun with the
  same steps (``--steps-from`` an earlier report) repeats every number instead of depending on
  the machine's load (``--clock wall`` keeps the wall clock for every run);
* is evaluated frozen with the same probes on the same 1,000 test images: kNN (cosine, k = 20,
  temperature 0.1), a linear probe (L-BFGS logistic regression on standardised features, L2
  2e-4 as in Assignments 3-6), and the few-label curve (linear probe on 1, 10 and 100 labelled
  images per class), on the last block's pooled features, and kNN + linear on block 3 too (the
  layer probed is one of the protocol choices the notebook discusses).

Each method runs with each seed of ``--seeds`` (three by default); the table reports the mean and
the sample standard deviation over seeds. Every run records its steps and the load average
before it. Seeds run apart (one per night, or on two machines) merge into one report with
``--merge`` when they trained the same steps (run the later seeds with ``--steps-from`` the
first report), and a rerun of the same seeds is checked against the spread over seeds with
``--agreement``.

Run: ``python -m benchmarks.quality --preset cpu-quick`` (data from ``$REPLEARN_DATA_DIR``;
about 14 minutes per seed on 2 idle cores). Writes ``build/bench/quality/quality.json``,
``quality.md`` and three plots (``quality.png``, ``few_label.png``, ``blocks.png``);
``assignments/07_which_method_is_best.ipynb`` reads the JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.metadata
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from replearn import data, impl, recipes
from replearn.backbones import ConvBackbone, SmallCNN
from replearn.evaluate import (
    PROBE_WEIGHT_DECAY,
    extract_features,
    few_label_curve,
    knn_accuracy,
    linear_probe,
)
from replearn.presets import Preset, get_preset
from replearn.train import pick_device, step_budget

OUT_DIR = Path("build/bench/quality")
RESULTS = OUT_DIR / "quality.json"
WIDTHS = (32, 64, 128, 256)  # the SmallCNN every conv method starts from
KNN_K, KNN_TEMPERATURE = 20, 0.1
FEW_LABELS = (1, 10, 100)  # labelled images per class of the few-label curve
PROBE_BLOCK = 3  # the inner block probed besides the last one
BUDGET_S = {"smoke": 1.0, "cpu-quick": 30.0}  # per run; other presets: preset.scaled(30)


class BlockFeatures(nn.Module):
    """A conv backbone's pooled block ``upto`` (``None``: the last) as ``images -> [N, D]``."""

    def __init__(self, encoder: ConvBackbone, upto: int | None = None):
        super().__init__()
        self.encoder, self.upto = encoder, upto

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder.forward_features(x, upto=self.upto, pool=True)  # [N, D_b]


class MethodFeatures(nn.Module):
    """``images -> [N, D]`` through a callable of a trained model (codes, ViT features)."""

    def __init__(self, model: nn.Module, fn: Callable[[nn.Module, torch.Tensor], torch.Tensor]):
        super().__init__()
        self.model, self.fn = model, fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self.model, x)  # [N, D]


@dataclass
class Trained:
    """What a method's run leaves for the probes: the last layer's features, and block 3's when
    the encoder has blocks; the steps it did."""

    features: nn.Module
    block_features: nn.Module | None
    steps: int | None


@dataclass(frozen=True)
class Method:
    name: str
    assignment: str  # where the method is taught
    backbone: str
    uses_labels: bool
    run: Callable[[Context, int], Trained]


def method_module(name: str):
    """The assignment module whose methods are compared: the reference where the course folder
    has it; in a student's hand-out, which has no reference, the student's own module, found as
    the notebooks' set-up cell finds it."""
    try:
        return impl.load(name, "solution")
    except impl.ImplError:
        pass
    from replearn import notebook

    folder = notebook.find_student_dir(name, ask=lambda prompt: "")
    try:
        return impl.load(name, "starter", student_dir=folder)
    except impl.ImplError as err:
        raise notebook.StudentModuleNotFound(notebook.not_found_message(name, err)) from None


@dataclass
class Context:
    """What every run shares: the data, the preset, the per-run budget, the modules and the
    device every method trains on (the probes run where the trained encoder is)."""

    preset: Preset
    budget_s: float
    x_train: torch.Tensor
    y_train: torch.Tensor
    modules: dict
    device: torch.device = torch.device("cpu")

    def module(self, name: str):
        if name not in self.modules:
            self.modules[name] = method_module(name)
        return self.modules[name]

    def config(self, cls: type, **changes):
        """``cls.from_preset`` of this run's preset, with the comparison's SmallCNN widths."""
        cfg = cls.from_preset(self.preset)
        fields = {f.name for f in dataclasses.fields(cfg)}
        if "widths" in fields and self.preset.name != "smoke":
            changes.setdefault("widths", WIDTHS)
        return dataclasses.replace(cfg, **changes)


def _conv(encoder: ConvBackbone, steps: int | None) -> Trained:
    encoder.eval()
    return Trained(BlockFeatures(encoder), BlockFeatures(encoder, PROBE_BLOCK), steps)


def _random_init(ctx: Context, seed: int) -> Trained:
    torch.manual_seed(seed)
    return _conv(SmallCNN(3, WIDTHS).to(ctx.device), None)


def _autoencoder(kind: str) -> Callable[[Context, int], Trained]:
    def run(ctx: Context, seed: int) -> Trained:
        aec = ctx.module("autoencoders")
        cfg = recipes.autoencoders.AutoencoderConfig.from_preset(ctx.preset)
        torch.manual_seed(seed)
        model = aec.ConvAutoencoder(3, 32, cfg.cifar_widths, cfg.cifar_code)
        history = recipes.autoencoders.train_autoencoder(
            aec,
            model,
            ctx.x_train,
            kind=kind,
            budget_s=ctx.budget_s,
            batch_size=cfg.batch_size,
            lr=cfg.lr,
            mask_fraction=cfg.mask_fraction,
            seed=seed,
            device=ctx.device,
        )
        model.eval()
        return Trained(MethodFeatures(model, lambda m, x: m.encode(x)), None, history.steps_done)

    return run


def _pretext(task: str) -> Callable[[Context, int], Trained]:
    def run(ctx: Context, seed: int) -> Trained:
        cfg = ctx.config(recipes.pretext_tasks.PretextConfig)
        result = recipes.pretext_tasks.pretrain(
            ctx.module("pretext_tasks"),
            task,
            ctx.x_train,
            cfg,
            budget_s=ctx.budget_s,
            seed=seed,
            device=ctx.device,
        )
        return _conv(result.encoder, result.history.steps_done)

    return run


def _generative(method: str) -> Callable[[Context, int], Trained]:
    def run(ctx: Context, seed: int) -> Trained:
        gen = ctx.module("generative_pretext")
        cfg = ctx.config(recipes.generative_pretext.GenerativeConfig)
        if method == "deep-cluster":
            result, _ = recipes.generative_pretext.deep_cluster(
                gen,
                ctx.x_train,
                ctx.y_train,
                cfg,
                budget_s=ctx.budget_s,
                seed=seed,
                device=ctx.device,
            )
        else:
            result = recipes.generative_pretext.pretrain(
                gen, method, ctx.x_train, cfg, budget_s=ctx.budget_s, seed=seed, device=ctx.device
            )
        features = result.encoder.eval()
        block = recipes.generative_pretext.LabFeatures(
            gen, list(zip(features.encoders, features.channels)), upto=PROBE_BLOCK
        )
        return Trained(features, block, result.history.steps_done)

    return run


def _contrastive(method: str) -> Callable[[Context, int], Trained]:
    def run(ctx: Context, seed: int) -> Trained:
        recipe = recipes.contrastive_learning
        cfg = ctx.config(recipe.ContrastiveConfig, knn_every=0)
        labels = ctx.y_train if method == "supervised" else None
        cl = ctx.module("contrastive_learning")
        result = recipe.pretrain(
            cl,
            method,
            ctx.x_train,
            labels,
            cfg,
            budget_s=ctx.budget_s,
            seed=seed,
            device=ctx.device,
        )
        return _conv(result.encoder, result.history.steps_done)

    return run


def _mae(ctx: Context, seed: int) -> Trained:
    mae = ctx.module("masked_autoencoders")
    recipe = recipes.masked_autoencoders
    cfg = recipe.MAEConfig.from_preset(ctx.preset)
    result = recipe.pretrain(
        mae, ctx.x_train, cfg, budget_s=ctx.budget_s, seed=seed, device=ctx.device
    )
    encoder = result.encoder.eval()
    return Trained(
        MethodFeatures(encoder, lambda m, x: m.forward_features(x)), None, result.history.steps_done
    )


def _clip(ctx: Context, seed: int) -> Trained:
    clip = ctx.module("clip_zero_shot")
    cfg = recipes.clip_zero_shot.CLIPConfig.from_preset(ctx.preset)
    cfg = dataclasses.replace(
        cfg,
        cifar_heldout=(),
        cifar_widths=cfg.cifar_widths if ctx.preset.name == "smoke" else WIDTHS,
    )
    result = recipes.clip_zero_shot.train_cifar_aligned(
        clip, ctx.x_train, ctx.y_train, cfg, budget_s=ctx.budget_s, seed=seed, device=ctx.device
    )
    return _conv(result.model.image_encoder.backbone, result.history.steps_done)


SMALLCNN = "SmallCNN"
COMPARED: tuple[Method, ...] = (
    Method("random init", "-", SMALLCNN, False, _random_init),
    Method("supervised", "A4 (baseline)", SMALLCNN, True, _contrastive("supervised")),
    Method("autoencoder", "A2", "conv autoencoder, 256-d code", False, _autoencoder("ae")),
    Method(
        "denoising autoencoder", "A2", "conv autoencoder, 256-d code", False, _autoencoder("dae")
    ),
    Method("rotation", "A3", SMALLCNN, False, _pretext("rotation")),
    Method("context (relative patch)", "A3", SMALLCNN, False, _pretext("context")),
    Method("jigsaw", "A3", SMALLCNN, False, _pretext("jigsaw")),
    Method("exemplar", "A3", SMALLCNN, False, _pretext("exemplar")),
    Method("inpainting", "A3 II", SMALLCNN, False, _generative("inpainting")),
    Method("colorization", "A3 II", SMALLCNN + " on L", False, _generative("color-class")),
    Method("split-brain", "A3 II", "two half-width SmallCNNs", False, _generative("split-brain")),
    Method("deep clustering", "A3 II", SMALLCNN, False, _generative("deep-cluster")),
    Method("SimCLR", "A4", SMALLCNN, False, _contrastive("simclr")),
    Method("MoCo", "A4", SMALLCNN, False, _contrastive("moco")),
    Method("BYOL", "A4", SMALLCNN, False, _contrastive("byol")),
    Method("SimSiam", "A4", SMALLCNN, False, _contrastive("simsiam")),
    Method("MAE", "A5", "ViT (patch 4, width 128, 4 blocks)", False, _mae),
    Method("CLIP-style (captions from labels)", "A6", SMALLCNN, True, _clip),
)


def method_names() -> list[str]:
    return [m.name for m in COMPARED]


def machine_info(
    device: torch.device | str | None = None, packages: tuple[str, ...] = ("torchvision",)
) -> dict:
    """What a measured number needs beside it: platform, processor, Python, CPU count, torch
    version and threads, the 1-minute load average (read before timing starts: on a shared
    machine it says how much of the CPU the measurement had), package versions, GPU. The
    comparison and every benchmark under ``benchmarks/`` report it."""
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "load_average_1min": load_average(),
    }
    for package in packages:
        try:
            info[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            info[package] = None
    device = torch.device(device) if device is not None else None
    if device is not None and device.type == "cuda" or device is None and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def load_average() -> float | None:
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def evaluate(
    trained: Trained,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    seed: int,
    probe_iters: int,
    device: str | torch.device | None = None,
) -> dict:
    """The one protocol: kNN, linear probe and few-label curve on the last layer; kNN and
    linear on block 3. Features are extracted where the trained model is; the probes run on
    ``device`` (default: the CPU, where ``extract_features`` returns them)."""
    scores: dict = {}
    layers = {"": trained.features, f"block{PROBE_BLOCK}_": trained.block_features}
    for prefix, module in layers.items():
        if module is None:
            continue
        f_train = extract_features(module, x_train, batch_size=500).to(device)  # [N, D]
        f_test = extract_features(module, x_test, batch_size=500).to(device)  # [M, D]
        scores[prefix + "knn"] = knn_accuracy(
            f_train, y_train, f_test, y_test, k=KNN_K, temperature=KNN_TEMPERATURE
        )
        scores[prefix + "linear"] = linear_probe(
            f_train, y_train, f_test, y_test, weight_decay=PROBE_WEIGHT_DECAY, max_iter=probe_iters
        ).test_accuracy
        if not prefix:
            smallest = int(torch.bincount(y_train).min())
            per_class = [n for n in FEW_LABELS if n <= smallest]
            curve = few_label_curve(
                f_train,
                y_train,
                f_test,
                y_test,
                per_class=per_class,
                seeds=(seed,),
                probe_kwargs={"weight_decay": PROBE_WEIGHT_DECAY, "max_iter": probe_iters},
            )
            for n, acc in zip(curve["per_class"], curve["mean"]):
                scores[f"few_{n}"] = float(acc)
    return {k: float(v) for k, v in scores.items()}


# The methods whose course checkpoints (``replearn.checkpoints``) notebook 07 ranks: one per
# family of the lecture, each trained for the epochs its bundle entry records.
COURSE_CHECKPOINT_METHODS = ("rotation", "simclr", "moco", "byol", "simsiam", "mae", "supervised")


def course_checkpoint_rows(
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    *,
    methods: Sequence[str] = COURSE_CHECKPOINT_METHODS,
    seed: int = 0,
    probe_iters: int = 100,
    device: str | torch.device | None = None,
    load: Callable | None = None,
) -> dict[str, dict]:
    """The course checkpoints of ``methods`` and an untrained SmallCNN, under this module's one
    protocol (:func:`evaluate`) on the given images: ``{name: {"source", "scores", "steps"}}``.

    ``source`` names where each row's weights come from: ``untrained (seed S)`` or the
    checkpoint's label ("course checkpoint (reference, E epochs)"), so that a table that mixes
    these rows with a run's never passes the course's weights off as anyone's run. ``load``:
    ``method -> (encoder, info)``, default ``replearn.checkpoints.load_course_encoder`` (a
    notebook passes ``Session.course_encoder``, which also notes the source)."""
    from replearn.checkpoints import load_course_encoder, probe_view

    load = load or (lambda method: load_course_encoder(method, device=device))
    torch.manual_seed(seed)
    untrained = SmallCNN(3, WIDTHS).to(device or "cpu").eval()
    rows = {
        "random init": {"source": f"untrained (seed {seed})", "trained": _conv(untrained, None)}
    }
    for method in methods:
        encoder, info = load(method)
        blocks = BlockFeatures(encoder, PROBE_BLOCK) if isinstance(encoder, ConvBackbone) else None
        rows[method] = {
            "source": info.label,
            "trained": Trained(probe_view(encoder), blocks, info.steps),
        }
    for row in rows.values():
        trained = row.pop("trained")
        row["steps"] = trained.steps
        row["scores"] = evaluate(
            trained, x_train, y_train, x_test, y_test, seed, probe_iters, device
        )
    return rows


def summarise(runs: Sequence[dict]) -> dict:
    """Mean and sample standard deviation over seeds of every number the runs share."""
    keys = [k for k in runs[0] if isinstance(runs[0][k], (int, float)) and k != "seed"]
    out = {}
    for key in keys:
        values = [float(r[key]) for r in runs if r.get(key) is not None]
        if values:
            out[key] = {
                "mean": statistics.fmean(values),
                "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            }
    return out


CLOCKS = ("steps", "wall")


def calibrate(
    ctx: Context, methods: Sequence[Method], seed: int, say: Callable = print
) -> dict[str, int]:
    """The optimizer steps each method takes in ``ctx.budget_s`` seconds on this machine now:
    one run per method on the wall clock (the models are thrown away)."""
    steps = {}
    for method in methods:
        if method.name == "random init":
            continue
        t0 = time.perf_counter()
        steps[method.name] = max(int(method.run(ctx, seed).steps or 0), 1)
        say(
            f"calibration: {method.name} takes {steps[method.name]} steps in {ctx.budget_s:g} s "
            f"(ran {time.perf_counter() - t0:.0f} s, load {load_average()})",
            flush=True,
        )
    return steps


def steps_from(result: dict) -> dict[str, int]:
    """The steps per method of an earlier comparison: those it trained every seed for, or, for
    a wall-clock comparison, the median of its runs' steps."""
    if result.get("budget_steps"):
        return {name: int(n) for name, n in result["budget_steps"].items()}
    out = {}
    for name, row in result["rows"].items():
        counts = [r["steps"] for r in row["runs"] if r.get("steps")]
        if counts:
            out[name] = int(statistics.median_low(counts))
    return out


def run(
    preset: Preset | str = "cpu-quick",
    seeds: Sequence[int] = (0, 1, 2),
    *,
    budget_s: float | None = None,
    methods: Sequence[str] | None = None,
    out: str | Path | None = RESULTS,
    plots: bool = True,
    verbose: bool = True,
    clock: str = "steps",
    steps: dict[str, int] | None = None,
    device: str | torch.device | None = None,
) -> dict:
    """Train and probe ``methods`` (default: all) with every seed; the result as plain data.

    ``budget_s``: seconds of pretraining per method and seed (default 30 in ``cpu-quick``, 1 in
    ``smoke``, ``preset.scaled(30)`` otherwise). ``clock="steps"`` (the default) trains every
    seed of a method for the same number of steps: ``steps[name]`` where given (from
    ``steps_from`` an earlier report), otherwise what a calibration run takes in ``budget_s``
    (``calibrate``). ``clock="wall"`` stops each run on the wall clock instead (its steps
    depend on the machine's load). ``out``: where the JSON goes (with the markdown table and,
    with ``plots``, the figures beside it); ``None`` writes nothing. ``device``: where every
    method trains and is probed (default: the preset's, ``$REPLEARN_DEVICE`` when set).
    """
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {CLOCKS}, got {clock!r}")
    if steps is not None and clock != "steps":
        raise ValueError("steps are given for clock='steps'; drop them or the wall clock")
    preset = get_preset(preset)
    budget = (
        float(budget_s) if budget_s is not None else BUDGET_S.get(preset.name, preset.scaled(30))
    )
    chosen = COMPARED
    if methods is not None:
        unknown = sorted(set(methods) - set(method_names()))
        if unknown:
            raise ValueError(f"unknown methods {unknown}; choose from {method_names()}")
        chosen = tuple(m for m in COMPARED if m.name in methods)
    if not seeds:
        raise ValueError("give at least one seed")
    device = pick_device(device if device is not None else preset.device)
    machine = machine_info(device)
    cifar = data.load_dataset(
        preset.dataset,
        train_per_class=preset.train_per_class,
        test_per_class=preset.test_per_class,
        seed=0,
    )
    say = print if verbose else (lambda *a, **k: None)
    say(cifar.summary(), flush=True)
    ctx = Context(preset, budget, cifar.x_train, cifar.y_train, {}, device)
    probe_iters = 10 if preset.name == "smoke" else 100
    started = time.perf_counter()
    budget_steps: dict[str, int] = {}
    calibration: dict = {}
    if clock == "steps":
        trained_methods = [m for m in chosen if m.name != "random init"]
        given = {m.name: steps[m.name] for m in trained_methods if steps and m.name in steps}
        missing = [m for m in trained_methods if m.name not in given]
        budget_steps = {**given, **calibrate(ctx, missing, seeds[0], say)}
        budget_steps = {m.name: budget_steps[m.name] for m in trained_methods}  # method order
        calibration = {
            "given": sorted(given),
            "calibrated": [m.name for m in missing],
            "seed": seeds[0],
            "machine": machine_info(device) if missing else None,
            "seconds": round(time.perf_counter() - started, 1),
        }
    rows: dict[str, dict] = {}
    for method in chosen:
        runs = []
        for seed in seeds:
            load_before, t0 = load_average(), time.perf_counter()
            torch.manual_seed(seed)
            with (
                step_budget(budget_steps[method.name])
                if method.name in budget_steps
                else contextlib.nullcontext()
            ):
                trained = method.run(ctx, seed)
            train_s = time.perf_counter() - t0
            t1 = time.perf_counter()
            scores = evaluate(
                trained,
                cifar.x_train,
                cifar.y_train,
                cifar.x_test,
                cifar.y_test,
                seed,
                probe_iters,
                device,
            )
            record = {
                "seed": seed,
                **scores,
                "steps": trained.steps,
                "train_s": round(train_s, 1),
                "eval_s": round(time.perf_counter() - t1, 1),
                "load_before": load_before,
            }
            runs.append(record)
            spent = f"{trained.steps} steps in {train_s:.0f} s" if trained.steps else "untrained"
            say(
                f"{method.name} (seed {seed}): kNN {scores['knn']:.3f}, linear "
                f"{scores['linear']:.3f}, {spent}",
                flush=True,
            )
        rows[method.name] = {
            "assignment": method.assignment,
            "backbone": method.backbone,
            "uses_labels": method.uses_labels,
            "budget_s": 0.0 if method.name == "random init" else budget,
            "runs": runs,
            "summary": summarise(runs),
        }
    result = {
        "preset": preset.name,
        "dataset": cifar.name,
        "source": cifar.source,
        "train_images": len(cifar.y_train),
        "test_images": len(cifar.y_test),
        "budget_s": budget,
        "clock": clock,
        "device": str(device),
        "budget_steps": budget_steps or None,
        "calibration": calibration or None,
        "seeds": list(seeds),
        "few_labels": list(FEW_LABELS),
        "probe_block": PROBE_BLOCK,
        "protocol": {
            "knn_k": KNN_K,
            "knn_temperature": KNN_TEMPERATURE,
            "linear_weight_decay": PROBE_WEIGHT_DECAY,
            "probe_iters": probe_iters,
        },
        "machine": {
            **machine,
            "load_average_1min_end": load_average(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        },
        "rows": rows,
        "seconds": round(time.perf_counter() - started, 1),
    }
    if out is not None:
        _write(result, out, plots)
    return result


def _write(result: dict, out: str | Path, plots: bool) -> None:
    """The JSON (written atomically), the markdown table beside it and, with ``plots``, the
    figures."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(result, indent=2, default=str))
    os.replace(temporary, out)
    out.with_suffix(".md").write_text(markdown(result))
    if plots:
        plot(result, out.parent)


# What must be equal for two comparisons to be one experiment with more seeds.
SAME_PROTOCOL = (
    "preset",
    "dataset",
    "train_images",
    "test_images",
    "budget_s",
    "clock",
    "budget_steps",
    "few_labels",
    "probe_block",
    "protocol",
)


def merge(results: Sequence[dict]) -> dict:
    """One comparison from runs of the same protocol with different seeds (for example one seed
    per night, or seeds run on two machines). Each part keeps its seeds, machine and time under
    ``"parts"``; the summaries are recomputed over all seeds."""
    if len(results) < 2:
        raise ValueError("give at least two comparisons to merge")
    first = results[0]
    for other in results[1:]:
        for key in SAME_PROTOCOL:
            if other.get(key) != first.get(key):
                hint = (
                    " (run the later seeds with --steps-from the first report)"
                    if key == "budget_steps"
                    else ""
                )
                raise ValueError(
                    f"cannot merge: {key} differs ({first.get(key)!r} vs "
                    f"{other.get(key)!r}); only runs of one protocol merge{hint}"
                )
        if other["rows"].keys() != first["rows"].keys():
            missing = sorted(set(first["rows"]) ^ set(other["rows"]))
            raise ValueError(
                f"cannot merge: the methods differ ({missing}); run the same "
                "--methods with every seed"
            )
    seeds = [s for r in results for s in r["seeds"]]
    if len(set(seeds)) != len(seeds):
        raise ValueError(
            f"cannot merge: a seed appears twice ({seeds}); a rerun of a seed is "
            "compared with `--agreement`, not merged"
        )
    parts = [p for r in results for p in r.get("parts", [_part(r)])]
    rows = {}
    for name, row in first["rows"].items():
        runs = sorted(
            (run for r in results for run in r["rows"][name]["runs"]), key=lambda run: run["seed"]
        )
        rows[name] = {**row, "runs": runs, "summary": summarise(runs)}
    return {
        **{k: first[k] for k in first if k not in ("rows", "seeds", "parts")},
        "seeds": sorted(seeds),
        "rows": rows,
        "parts": parts,
        "machine": first["machine"],
        "seconds": round(sum(p["seconds"] for p in parts), 1),
    }


def _part(result: dict) -> dict:
    return {"seeds": result["seeds"], "machine": result["machine"], "seconds": result["seconds"]}


def rerun_agreement(result: dict, rerun: dict, keys: Sequence[str] = ("knn", "linear")) -> dict:
    """How far a rerun of the same seeds lands from the first run, beside the noise between seeds.

    For every method and key: the largest absolute difference between the two runs of a seed
    (``"rerun"``) and the sample standard deviation over the seeds of ``result`` (``"seed_std"``,
    the noise the report states). A rerun that trains the same steps (``--steps-from`` the first
    report) on the same machine repeats the numbers; a wall-clock rerun does not, because its
    steps depend on the machine's load, and it agrees when its difference is of the order of the
    seed-to-seed spread."""
    shared = sorted(set(result["seeds"]) & set(rerun["seeds"]))
    if not shared:
        raise ValueError(f"no seed in common: {result['seeds']} vs {rerun['seeds']}")
    out = {}
    for name in [n for n in result["rows"] if n in rerun["rows"]]:
        first = {r["seed"]: r for r in result["rows"][name]["runs"]}
        second = {r["seed"]: r for r in rerun["rows"][name]["runs"]}
        out[name] = {}
        for key in keys:
            diffs = [
                abs(first[s][key] - second[s][key])
                for s in shared
                if key in first[s] and key in second[s]
            ]
            if diffs:
                std = result["rows"][name]["summary"].get(key, {}).get("std", float("nan"))
                out[name][key] = {
                    "rerun": max(diffs),
                    "seed_std": std,
                    "steps": (first[shared[0]]["steps"], second[shared[0]]["steps"]),
                }
    return {"seeds": shared, "methods": out}


def agreement_markdown(agreement: dict) -> str:
    lines = [
        f"Rerun of seeds {agreement['seeds']}: largest |first - rerun| beside the sample std "
        "over seeds of the first comparison, in points.",
        "",
        "| method | steps (first, rerun) | kNN rerun | kNN seed std | linear rerun | "
        "linear seed std |",
        "|---|---|---|---|---|---|",
    ]
    for name, keys in agreement["methods"].items():
        cells = []
        for key in ("knn", "linear"):
            k = keys.get(key)
            cells += (
                ["-", "-"]
                if k is None
                else [f"{100 * k['rerun']:.1f}", f"{100 * k['seed_std']:.1f}"]
            )
        steps = next(iter(keys.values()))["steps"] if keys else ("-", "-")
        lines.append(f"| {name} | {steps[0]}, {steps[1]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def load_results(path: str | Path = RESULTS) -> dict:
    """A saved comparison (``run``'s JSON), with a clear error when it is missing or broken."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: run `python -m benchmarks.quality "
            "--preset cpu-quick` (about 14 minutes per seed) or `make bench`"
        )
    try:
        result = json.loads(path.read_text())
        result["rows"], result["preset"]  # noqa: B018
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(
            f"{path} is not a comparison written by replearn.compare ({err}); "
            "delete it and run the benchmark again"
        ) from err
    return result


# What the notebook trains itself when no saved comparison is there: a few methods that span
# the lecture (labels, a pretext task, a contrastive and a Siamese method, masking), one seed.
NOTEBOOK_METHODS = ("random init", "supervised", "rotation", "SimCLR", "SimSiam", "MAE")
NOTEBOOK_BUDGET_S = {"smoke": 1.0, "cpu-quick": 20.0}
# ... counted in optimizer steps where the preset runs on a CPU, so that a rerun repeats its
# numbers whatever the load: cpu-quick's are what an idle 2-core machine does in 20 s
# (benchmarks/README.md, "Budgets in steps"); colab and full keep the wall clock.
NOTEBOOK_STEPS = {
    "smoke": {"supervised": 2, "rotation": 2, "SimCLR": 2, "SimSiam": 2, "MAE": 2},
    "cpu-quick": {"supervised": 90, "rotation": 100, "SimCLR": 38, "SimSiam": 36, "MAE": 270},
}


def default_results_path() -> Path:
    """Where ``python -m benchmarks.quality`` writes by default, in the course folder when there
    is one (a notebook's working directory is ``assignments/``)."""
    try:
        return impl.find_root() / RESULTS
    except impl.ImplError:
        return RESULTS


def load_or_run(
    preset: Preset | str,
    path: str | Path = RESULTS,
    seed: int = 0,
    device: str | torch.device | None = None,
) -> dict:
    """The saved comparison at ``path`` when it was made with ``preset``; otherwise a smaller one
    run now on ``device`` (``NOTEBOOK_METHODS``, one seed, ``NOTEBOOK_BUDGET_S`` per method,
    spent in ``NOTEBOOK_STEPS`` optimizer steps where the preset has them) and not saved."""
    preset = get_preset(preset)
    path = Path(path)
    if path.is_file():
        result = load_results(path)
        if result["preset"] == preset.name:
            print(
                f"read {path}: {len(result['rows'])} methods, seeds {result['seeds']}, "
                f"{result['budget_s']:g} s each, measured in {result['seconds']:.0f} s"
            )
            return result
        print(
            f"{path} was measured with preset {result['preset']}, not {preset.name}: running "
            "a smaller comparison now"
        )
    budget = NOTEBOOK_BUDGET_S.get(preset.name, preset.scaled(60))
    steps = NOTEBOOK_STEPS.get(preset.name)
    return run(
        preset,
        (seed,),
        budget_s=budget,
        methods=NOTEBOOK_METHODS,
        out=None,
        clock="wall" if steps is None else "steps",
        steps=steps,
        device=device,
    )


def mean(result: dict, method: str, key: str) -> float:
    """The mean over seeds of ``key`` ("knn", "linear", "few_1", "block3_linear", ...)."""
    summary = result["rows"][method]["summary"]
    return summary[key]["mean"] if key in summary else float("nan")


def ranking(result: dict, key: str = "linear") -> list[str]:
    """Method names, best first, by the mean of ``key`` (methods without it are left out)."""
    names = [n for n in result["rows"] if key in result["rows"][n]["summary"]]
    return sorted(names, key=lambda n: -mean(result, n, key))


def rank_correlation(result: dict, key_a: str, key_b: str) -> float:
    """Spearman's rank correlation of the methods' scores under two probes (1: same order)."""
    names = [n for n in result["rows"] if {key_a, key_b} <= result["rows"][n]["summary"].keys()]
    if len(names) < 3:
        return float("nan")
    ranks = []
    for key in (key_a, key_b):
        order = torch.tensor([mean(result, n, key) for n in names]).argsort()
        rank = torch.empty(len(names))
        rank[order] = torch.arange(len(names), dtype=torch.float32)
        ranks.append(rank - rank.mean())
    return float((ranks[0] @ ranks[1]) / (ranks[0].norm() * ranks[1].norm()))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu-quick")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--budget-s",
        type=float,
        default=None,
        help="seconds of pretraining per method and seed (default: 30 in "
        "cpu-quick, 1 in smoke, preset.scaled(30) otherwise)",
    )
    parser.add_argument(
        "--methods",
        nargs="*",
        default=None,
        metavar="NAME",
        help=f"a subset, by name: {method_names()}",
    )
    parser.add_argument(
        "--clock",
        choices=CLOCKS,
        default="steps",
        help="steps (default): every seed trains the steps a calibration run "
        "takes in the budget; wall: every run stops on the wall clock",
    )
    parser.add_argument(
        "--steps-from",
        metavar="JSON",
        default=None,
        help="train each method for the steps of this earlier report instead of "
        "calibrating (a rerun that repeats its numbers)",
    )
    parser.add_argument(
        "--device",
        default=None,
        help="auto, cpu, cuda (default: the preset's, or $REPLEARN_DEVICE)",
    )
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument(
        "--merge",
        nargs="+",
        metavar="JSON",
        help="train nothing: merge comparisons run with different seeds into --out",
    )
    parser.add_argument(
        "--agreement",
        nargs=2,
        metavar=("FIRST", "RERUN"),
        help="train nothing: compare a rerun of the same seeds with the first "
        "run, beside the spread over seeds",
    )
    args = parser.parse_args(argv)
    if args.merge:
        try:
            result = merge([load_results(path) for path in args.merge])
        except (FileNotFoundError, ValueError) as err:
            parser.error(str(err))
        _write(result, args.out, not args.no_plots)
        print(markdown(result))
        return result
    if args.agreement:
        try:
            agreement = rerun_agreement(*(load_results(path) for path in args.agreement))
        except (FileNotFoundError, ValueError) as err:
            parser.error(str(err))
        print(agreement_markdown(agreement))
        return agreement
    if args.methods:
        unknown = sorted(set(args.methods) - set(method_names()))
        if unknown:
            parser.error(f"unknown methods {unknown}; choose from {method_names()}")
    steps = None
    if args.steps_from:
        if args.clock != "steps":
            parser.error("--steps-from goes with --clock steps")
        try:
            earlier = load_results(args.steps_from)
        except (FileNotFoundError, ValueError) as err:
            parser.error(str(err))
        earlier_budget = args.budget_s if args.budget_s is not None else earlier["budget_s"]
        if earlier["budget_s"] != earlier_budget or earlier["preset"] != args.preset:
            parser.error(
                f"{args.steps_from} was measured with preset {earlier['preset']} and "
                f"{earlier['budget_s']:g} s per run; use the same --preset and --budget-s"
            )
        steps, args.budget_s = steps_from(earlier), earlier["budget_s"]
    result = run(
        args.preset,
        args.seeds,
        budget_s=args.budget_s,
        methods=args.methods or None,
        out=args.out,
        plots=not args.no_plots,
        clock=args.clock,
        steps=steps,
        device=args.device,
    )
    print(markdown(result))
    return result


def _cell(summary: dict, key: str, pct: bool = True) -> str:
    if key not in summary:
        return "-"
    mean, std = summary[key]["mean"], summary[key]["std"]
    scale = 100 if pct else 1
    if math.isnan(mean):
        return "-"
    text = f"{scale * mean:.1f}" if pct else f"{mean:.0f}"
    return text + (f" ± {scale * std:.1f}" if std and pct else "")


def _machine_text(m: dict, seconds: float, seeds: list[int] | None) -> str:
    def load(key: str) -> str:
        value = m.get(key)
        return "?" if value is None else f"{value:.1f}"

    text = (
        f"{m['cpu_count']} CPUs, torch {m['torch']} with {m['torch_threads']} threads, load "
        f"average {load('load_average_1min')} at the start and "
        f"{load('load_average_1min_end')} at the end, {seconds:.0f} s"
    )
    return f"seeds {seeds} on {text}" if seeds is not None else f"{text} in all"


def markdown(result: dict) -> str:
    seeds = result["seeds"]
    parts = result.get("parts", [_part(result)])
    where = "; ".join(
        _machine_text(p["machine"], p["seconds"], p["seeds"] if len(parts) > 1 else None)
        for p in parts
    )
    budget = f"{result['budget_s']:g} s per run"
    if result.get("clock") == "steps":
        budget = (
            f"the optimizer steps it takes in {result['budget_s']:g} s on this machine "
            "(calibrated once, the same for every seed)"
        )
    lines = [
        f"Every method for {budget} on {result['dataset']} "
        f"({result['train_images']} train / {result['test_images']} test), preset "
        f"{result['preset']}, seeds {seeds} (mean ± sample std); {where}. Accuracies in %; kNN "
        f"and linear on the last layer; block {result['probe_block']} probed the same way.",
        "",
        "| method | taught in | backbone | labels | steps | kNN | linear | "
        + " | ".join(f"linear {n}/class" for n in result["few_labels"])
        + f" | kNN block {result['probe_block']} | linear block {result['probe_block']} |",
        "|---|---|---|---|---|---|---|" + "---|" * len(result["few_labels"]) + "---|---|",
    ]
    block = f"block{result['probe_block']}_"
    for name, row in result["rows"].items():
        s = row["summary"]
        few = " | ".join(_cell(s, f"few_{n}") for n in result["few_labels"])
        lines.append(
            f"| {name} | {row['assignment']} | {row['backbone']} | "
            f"{'yes' if row['uses_labels'] else 'no'} | {_cell(s, 'steps', pct=False)} | "
            f"{_cell(s, 'knn')} | {_cell(s, 'linear')} | {few} | "
            f"{_cell(s, block + 'knn')} | {_cell(s, block + 'linear')} |"
        )
    return "\n".join(lines) + "\n"


def _sorted_rows(result: dict, key: str = "linear") -> list[tuple[str, dict]]:
    return sorted(result["rows"].items(), key=lambda kv: kv[1]["summary"][key]["mean"])


def figure_scores(result: dict):
    """kNN and linear probe per method (mean ± std over seeds), sorted by the linear probe."""
    from replearn.viz import _new_figure

    rows = _sorted_rows(result)
    fig = _new_figure(8, 0.35 * len(rows) + 1.5)
    ax = fig.add_subplot()
    y = torch.arange(len(rows)).float()
    for offset, key, colour in ((-0.2, "knn", "tab:blue"), (0.2, "linear", "tab:orange")):
        means = [100 * r["summary"][key]["mean"] for _, r in rows]
        stds = [100 * r["summary"][key]["std"] for _, r in rows]
        ax.barh(y + offset, means, height=0.4, xerr=stds, color=colour, label=key)
    ax.set(
        yticks=y.tolist(),
        yticklabels=[name for name, _ in rows],
        xlabel="test accuracy (%)",
        title=f"{result['dataset']}, {result['budget_s']:g} s per method, "
        f"{len(result['seeds'])} seed(s)",
    )
    ax.legend(loc="lower right")
    return fig


def figure_few_label(result: dict):
    """Linear-probe accuracy against labelled images per class, one line per method."""
    from replearn.viz import _new_figure

    fig = _new_figure(6.5, 4.2)
    ax = fig.add_subplot()
    for name, row in _sorted_rows(result)[::-1]:
        points = [
            (n, row["summary"][f"few_{n}"]["mean"])
            for n in result["few_labels"]
            if f"few_{n}" in row["summary"]
        ]
        if points:
            ax.plot([n for n, _ in points], [100 * a for _, a in points], marker="o", label=name)
    ax.set(
        xscale="log",
        xlabel="labelled images per class",
        ylabel="linear probe accuracy (%)",
        title="few-label curve (same frozen features)",
    )
    ax.legend(fontsize=7, ncol=2)
    return fig


def figure_blocks(result: dict):
    """Linear probe on block 3 against the last block, for the encoders that have blocks."""
    from replearn.viz import _new_figure

    block = f"block{result['probe_block']}_linear"
    names = [n for n, r in result["rows"].items() if block in r["summary"]]
    fig = _new_figure(5.5, 5)
    ax = fig.add_subplot()
    last = [100 * mean(result, n, "linear") for n in names]
    inner = [100 * mean(result, n, block) for n in names]
    ax.scatter(last, inner)
    for name, x, y in zip(names, last, inner):
        ax.annotate(name, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    low, high = min(last + inner) - 2, max(last + inner) + 2
    ax.plot([low, high], [low, high], color="grey", linewidth=0.8)
    ax.set(
        xlabel="linear probe, last block (%)",
        ylabel=f"linear probe, block {result['probe_block']} (%)",
        title="which layer is probed (above the line: the inner block is better)",
    )
    return fig


def plot(result: dict, folder: Path) -> list[Path]:
    """``quality.png``, ``few_label.png`` and ``blocks.png`` in ``folder``."""
    from replearn.viz import save_figure

    figures = {
        "quality.png": figure_scores,
        "few_label.png": figure_few_label,
        "blocks.png": figure_blocks,
    }
    return [
        save_figure(make(result), Path(folder) / name, dpi=120) for name, make in figures.items()
    ]


if __name__ == "__main__":
    main()
