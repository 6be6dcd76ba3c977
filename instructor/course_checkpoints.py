"""Train the course checkpoints: every method the notebooks compare, one verified bundle.

On two CPU cores a notebook can train each method for a minute or two, too little for several
lessons to show. This command trains each method with the reference implementation for a stated
budget **in epochs** (so any machine takes the same steps over the same images in the same
order), evaluates each encoder under the course protocol (``replearn.checkpoints``: kNN and
linear probe on ``cifar10-5k``) and under its own notebook's, and writes the bundle the
notebooks load (``replearn.checkpoints.load_course_encoder``), atomically::

    python -m instructor.course_checkpoints --out build/course_checkpoints          # every method
    python -m instructor.course_checkpoints --methods simclr mae --epochs simclr=300 --device cuda
    python -m instructor.course_checkpoints --epochs 1 --out /tmp/cc                 # a smoke run
    python -m instructor.course_checkpoints ... --install   # into the package, pinned
    python -m instructor.course_checkpoints --merge build/cc-a build/cc-b --out build/cc --install

``--merge`` joins bundles trained apart (two processes on two cores, or two machines) into one,
without training or evaluating again: each method keeps its weights, its evaluation and the
command that trains it alone; the bundle records every part's command.

Training goes through ``replearn.pretrain`` (one loop for every method, resumable: an
interrupted run continues from ``--work``), with the preset's recipe (``--preset``, default
``cpu-quick``: the batch sizes, widths and learning rates the notebooks run) and its budget in
seconds replaced by the epochs of :data:`COURSE_METHODS`. Weights are stored in float16 where
the float16-rounded encoder scores within ``replearn.checkpoints.FP16_TOLERANCE`` of the
float32 one on both probes, else in float32; the bundle records both scores and the decision.

Adding a method is one :class:`CourseMethod` entry: a ``replearn.pretrain`` method (registered
with ``register_method``), the config fields it changes (``--set`` overrides, as the
augmentation-ablation arms do), its default epochs, and the notebooks that compare it. An
encoder of a kind ``replearn.checkpoints`` cannot yet build also needs one
``register_architecture`` there.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from replearn import checkpoints, impl
from replearn.data import load_dataset

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = "build/course_checkpoints"


@dataclass(frozen=True)
class CourseMethod:
    """One method of the bundle.

    Attributes:
        name: the name a notebook asks ``load_course_encoder`` for.
        pretrain: the ``replearn.pretrain`` method that trains it (``METHODS``).
        epochs: the default budget, in epochs of the training set.
        overrides: config fields changed from the preset, as ``--set FIELD=VALUE`` strings.
        notebooks: which notebooks compare it (documentation).
    """

    name: str
    pretrain: str
    epochs: int
    overrides: Mapping[str, str] = field(default_factory=dict)
    notebooks: str = ""


# The budgets, in one table. Long enough for each lesson's direction to show on cifar10-5k,
# short enough for one GPU run of every method in well under an hour (about 2 s per SmallCNN
# epoch of 5,000 images even at a GPU's slowest, from the T4 model in benchmarks/README.md); the
# training campaign that measures them may lengthen them. supervised and clip read labels and
# need fewer epochs to converge.
COURSE_METHODS: dict[str, CourseMethod] = {
    m.name: m
    for m in (
        CourseMethod("rotation", "rotation", 100, notebooks="03, 07"),
        CourseMethod("simclr", "simclr", 200, notebooks="04, 07"),
        CourseMethod(
            "simclr-crop", "simclr", 200, {"augmentation": "crop"}, "04 (augmentation ablation)"
        ),
        CourseMethod(
            "simclr-color", "simclr", 200, {"augmentation": "color"}, "04 (augmentation ablation)"
        ),
        CourseMethod("moco", "moco", 200, notebooks="04, 07"),
        # BYOL and SimSiam at batch 64, as notebook 04 trains SimSiam: four times the momentum
        # updates and steps per epoch, which short budgets need before these two leave random
        CourseMethod("byol", "byol", 200, {"batch_size": "64"}, "04, 07"),
        CourseMethod("simsiam", "simsiam", 200, {"batch_size": "64"}, "04, 07"),
        CourseMethod("supervised", "supervised", 50, notebooks="03, 04, 07"),
        CourseMethod("mae", "mae", 200, notebooks="05, 07"),
        CourseMethod("clip", "clip", 100, notebooks="06 (zero-shot on held-out classes)"),
        CourseMethod("clip-all-classes", "clip", 100, {"cifar_heldout": ""}, "07"),
    )
}


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=30
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def reference_identity() -> dict[str, Any]:
    """The git commit the reference was trained from, and whether the library or the reference
    solutions had uncommitted changes (then the commit alone does not reproduce the weights)."""
    commit = _git("rev-parse", "HEAD")
    dirty = _git("status", "--porcelain", "--untracked-files=no", "--", "replearn", "solutions")
    return {"git_commit": commit or "unknown", "git_dirty": bool(dirty), "torch": torch.__version__}


def _jsonable(value: Any) -> Any:
    """A config as plain JSON: dataclasses as dicts, tuples as lists."""
    return json.loads(
        json.dumps(
            dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value, default=str
        )
    )


def _reproduce(method: CourseMethod, epochs: int, args: argparse.Namespace) -> str:
    """The command that trains ``method`` alone with this run's settings."""
    parts = [
        *checkpoints.TRAIN_COMMAND.split(),
        "--methods",
        method.name,
        "--epochs",
        f"{method.name}={epochs}",
        "--seed",
        str(args.seed),
        "--data",
        args.data,
        "--preset",
        args.preset,
    ]
    if args.train_per_class:
        parts += ["--train-per-class", str(args.train_per_class)]
    # on a CPU the float sums, so the weights' last bits, depend on the thread count
    parts += ["--threads", str(torch.get_num_threads())]
    if args.amp:
        parts.append("--amp")
    return shlex.join(parts)


def _rounded(encoder: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """A float32 copy of ``encoder`` whose weights went through ``dtype`` and back."""
    copy = checkpoints.build_encoder(checkpoints.describe_encoder(encoder))
    copy.load_state_dict(checkpoints.encoder_tensors(encoder, dtype))
    return copy


def choose_precision(
    encoder: torch.nn.Module, data, tolerance: float = checkpoints.FP16_TOLERANCE
) -> dict[str, Any]:
    """Evaluate the float32 encoder and its float16-rounded copy under the course protocol;
    float16 when every weight is finite in float16 and neither probe moved by more than
    ``tolerance``. Returns the decision with both scores and the largest change."""
    fp32 = checkpoints.evaluate_course_protocol(encoder, data)
    finite = all(
        torch.isfinite(t).all()
        for t in checkpoints.encoder_tensors(encoder, torch.float16).values()
        if t.is_floating_point()
    )
    fp16 = (
        checkpoints.evaluate_course_protocol(_rounded(encoder, torch.float16), data)
        if finite
        else {}
    )
    change = (
        max((abs(fp16[k] - fp32[k]) for k in fp32), default=float("inf")) if fp16 else float("inf")
    )
    keep = "float16" if change <= tolerance + 1e-6 else "float32"  # 1e-6: float32 accuracies
    return {
        "stored": keep,
        "float32": fp32,
        "float16": fp16,
        "max_change": change,
        "tolerance": tolerance,
        "float16_finite": finite,
    }


def train_one(
    method: CourseMethod, epochs: int, args: argparse.Namespace, eval_data, say
) -> tuple[dict, dict]:
    """Train, evaluate and describe one method: ``(tensors to store, bundle.json entry)``."""
    from replearn.pretrain import PretrainSettings, get_method, run_pretraining

    spec = get_method(method.pretrain)
    checkpoint = None
    if args.work:
        tag = f"{method.name}-{args.preset}-{args.data}-seed{args.seed}-e{epochs}"
        checkpoint = str(Path(args.work) / f"{tag}.pt")
    settings = PretrainSettings(
        method.pretrain,
        data=args.data,
        preset=args.preset,
        impl="solution",
        seed=args.seed,
        device=args.device,
        budget_s=0,
        epochs=epochs,
        train_per_class=args.train_per_class,
        amp=args.amp,
        checkpoint=checkpoint,
        out_dir=None,
        overrides=dict(method.overrides),
        evaluate=False,
        log_every=args.log_every,
        verbose=not args.quiet,
    )
    started = time.perf_counter()
    outcome = run_pretraining(settings)
    history = outcome.history
    encoder = checkpoints.build_encoder(checkpoints.describe_encoder(outcome.encoder))
    encoder.load_state_dict(checkpoints.encoder_tensors(outcome.encoder))  # float32 on the CPU
    say(
        f"{method.name}: {history.steps_done} steps ({epochs} epochs) in {history.wall_time_s:.0f} s; evaluating"
    )

    precision = choose_precision(encoder, eval_data)
    dtype = getattr(torch, precision["stored"])
    tensors = checkpoints.encoder_tensors(encoder, dtype)
    stored = _rounded(encoder, dtype)  # what the bundle will hold, evaluated as it will load
    course = precision["float16" if dtype == torch.float16 else "float32"]
    module = impl.load(spec.module, impl="solution")
    notebook = {}
    if spec.evaluate is not None:
        notebook = {
            k: float(v) for k, v in spec.evaluate(module, stored, eval_data, outcome.cfg).items()
        }
    epoch_times = [record["time_s"] for record in history.epochs if "time_s" in record]
    data = load_dataset(args.data, train_per_class=args.train_per_class or None, seed=args.seed)
    entry = {
        "architecture": checkpoints.describe_encoder(encoder),
        "command": _reproduce(method, epochs, args),
        "pretrain_method": method.pretrain,
        "overrides": dict(method.overrides),
        "notebooks": method.notebooks,
        "config_class": f"{spec.module}.{type(outcome.cfg).__name__}",
        "config": _jsonable(outcome.cfg),
        "preset": args.preset,
        "budget": {
            "epochs": epochs,
            "steps": history.steps_done,
            "steps_per_epoch": history.steps_done // max(epochs, 1),
            "batch_size": settings.batch_size or spec.batch_size(outcome.cfg),
        },
        "seed": args.seed,
        "data": {
            "name": data.name,
            "source": data.source,
            "train_images": len(data.y_train),
            "used_images": int(len(spec.tensors(data, outcome.cfg)[0])),
        },
        "training": {
            "seconds": round(history.wall_time_s, 2),
            "seconds_per_epoch": round(sum(epoch_times) / len(epoch_times), 3)
            if epoch_times
            else None,
            "device": history.device,
            "amp": history.amp,
            "final_loss": history.steps[-1]["loss"] if history.steps else None,
            "mean_loss_last_epoch": history.epochs[-1].get("loss") if history.epochs else None,
            "stopped_by": history.stopped_by,
            "replicas_sha256": outcome.digest,
            "reference_module_sha256": module.__replearn_impl__.get("sha256"),
            "wall_seconds_with_evaluation": None,
        },
        "evaluation": {"course": course, "notebook": notebook},
        "precision": precision,
    }
    entry["training"]["wall_seconds_with_evaluation"] = round(time.perf_counter() - started, 1)
    return tensors, entry


def _parse_epochs(items: Sequence[str], methods: Sequence[str]) -> dict[str, int]:
    """``--epochs 5`` (every method) and/or ``--epochs simclr=300 mae=100``."""
    epochs = {name: COURSE_METHODS[name].epochs for name in methods}
    for item in items:
        name, sep, value = item.rpartition("=")
        try:
            count = int(value)
        except ValueError:
            raise SystemExit(f"--epochs expects N or METHOD=N, got {item!r}") from None
        if count < 1:
            raise SystemExit(f"--epochs {item}: the budget must be at least one epoch")
        if not sep:
            epochs = dict.fromkeys(epochs, count)
        elif name not in epochs:
            raise SystemExit(
                f"--epochs {item}: {name!r} is not among --methods ({', '.join(methods)})"
            )
        else:
            epochs[name] = count
    return epochs


def install(folder: Path, zip_path: Path | None, *, copy: bool, url: str | None = None) -> dict:
    """Pin the bundle in ``replearn/checkpoint_manifest.json`` as the current one, and with
    ``copy`` put it in the package (``replearn/embedded/course_checkpoints/``), atomically."""
    record = json.loads((folder / checkpoints.BUNDLE_FILE).read_text())
    version = record["bundle_version"]
    if url is None:
        url = ""
        try:
            from instructor.release import course_identity

            identity = course_identity(REPO_ROOT)
            if identity.handout_url and zip_path is not None:  # a release asset of the hand-out
                url = f"{identity.handout_url}/releases/download/{identity.handout_ref}/{zip_path.name}"
        except Exception:  # noqa: BLE001 - no identity configured: no address
            url = ""
    pin = checkpoints.pin_entry(folder, zip_path, url)
    manifest_path = checkpoints.MANIFEST_PATH
    manifest = (
        json.loads(manifest_path.read_text())
        if manifest_path.is_file()
        else {"format": checkpoints.FORMAT}
    )
    manifest.setdefault("bundles", {})[version] = pin
    manifest["current"] = version
    checkpoints._atomic_write(manifest_path, (json.dumps(manifest, indent=2) + "\n").encode())
    if copy:
        target = checkpoints.PACKAGED_DIR
        staging = target.with_name(f".{target.name}.partial")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(folder, staging)
        old = target.with_name(f".{target.name}.old")
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
        os.replace(staging, target)
        shutil.rmtree(old, ignore_errors=True)
    return pin


def merge_bundles(parts: Sequence[str | os.PathLike]) -> tuple[dict, dict]:
    """The methods of several bundles, verified, as ``write_bundle``'s input, and what the merged
    bundle records about its parts (``about``: the parts' commands, machines and seconds).
    A method in two parts is an error: which one to keep is the instructor's choice."""
    results: dict[str, tuple[dict, dict]] = {}
    about: dict[str, Any] = {"parts": []}
    for part in parts:
        bundle = checkpoints.open_bundle(part)
        for name in bundle.methods:
            if name in results:
                raise SystemExit(
                    f"--merge: {name!r} is in two of the bundles ({part} and an earlier one); keep one"
                )
            entry = {
                k: v
                for k, v in bundle.entry(name).items()
                if k not in ("file", "sha256", "bytes", "dtype", "parameters")
            }
            results[name] = (bundle.weights(name), entry)  # verified: size, then sha256
        record = bundle.record
        about["parts"].append(
            {
                key: record.get(key)
                for key in (
                    "bundle_version",
                    "created",
                    "command",
                    "machine",
                    "seconds",
                    "reference",
                )
            }
            | {"methods": bundle.methods}
        )
        for key in ("reference", "protocol"):
            about.setdefault(key, record.get(key))
    about["command"] = " && ".join(str(p["command"]) for p in about["parts"])
    about["seconds"] = round(sum(float(p.get("seconds") or 0) for p in about["parts"]), 1)
    about["machine"] = about["parts"][0].get("machine")
    return results, about


def _parser() -> argparse.ArgumentParser:
    table = "\n".join(
        f"  {m.name:<14} {m.pretrain:<11} {m.epochs:>6}  {', '.join(f'{k}={v}' for k, v in m.overrides.items()) or '-':<20} {m.notebooks}"
        for m in COURSE_METHODS.values()
    )
    parser = argparse.ArgumentParser(
        prog=checkpoints.TRAIN_COMMAND,
        description="Train every method the notebooks compare with the reference at a budget in "
        "epochs, evaluate each, and write the course-checkpoint bundle atomically.",
        epilog=f"methods and default budgets:\n  {'name':<14} {'pretrain':<11} {'epochs':>6}  "
        f"{'config changes':<20} notebooks\n{table}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add(
        "--methods",
        nargs="+",
        default=list(COURSE_METHODS),
        choices=list(COURSE_METHODS),
        metavar="METHOD",
    )
    add(
        "--epochs",
        nargs="+",
        default=[],
        metavar="N|METHOD=N",
        help="every method's budget, or one method's",
    )
    add("--device", default="auto", help="auto, cpu, cuda")
    add("--out", default=DEFAULT_OUT, help="the bundle folder (replaced atomically)")
    add("--seed", type=int, default=0)
    add("--data", default="cifar10-5k", help="the training data (a replearn.data name)")
    add("--preset", default="cpu-quick", help="whose recipe (batch, widths, learning rates)")
    add("--train-per-class", type=int, default=0, help="training images per class (0: all)")
    add(
        "--eval-train-per-class",
        type=int,
        default=0,
        help="labelled bank per class of the evaluation (0: all of cifar10-5k)",
    )
    add(
        "--eval-test-per-class",
        type=int,
        default=0,
        help="test images per class of the evaluation (0: all)",
    )
    add(
        "--amp",
        action="store_true",
        help="autocast on CUDA (faster; weights then depend on the GPU)",
    )
    add("--threads", type=int, help="torch CPU threads (the weights depend on it)")
    add("--bundle-version", help="default: the date and the git commit")
    add("--work", help="resumable training checkpoints; default OUT.work, removed after success")
    add("--no-zip", action="store_true", help="write the folder only, not OUT's zip beside it")
    add("--pin", action="store_true", help="pin the bundle in replearn/checkpoint_manifest.json")
    add(
        "--install",
        action="store_true",
        help="--pin, and copy it into replearn/embedded/course_checkpoints/",
    )
    add(
        "--merge",
        nargs="+",
        metavar="BUNDLE",
        help="join these bundles into OUT instead of training",
    )
    add("--log-every", type=int, default=50)
    add("--quiet", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from replearn.compare import machine_info

    args = _parser().parse_args(argv)
    argv = list(sys.argv[1:] if argv is None else argv)
    methods = list(dict.fromkeys(args.methods))
    epochs = _parse_epochs(args.epochs, methods)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    keep_work = args.work is not None
    args.work = args.work or str(out.with_name(out.name + ".work"))
    say = (
        (lambda message: None)
        if args.quiet
        else (lambda message: print(f"[course_checkpoints] {message}", flush=True))
    )
    reference = reference_identity()
    if reference["git_dirty"]:
        say(
            "warning: replearn/ or solutions/ have uncommitted changes: the git commit alone will not reproduce these weights"
        )
    per = lambda n: n or None  # noqa: E731 - 0: all
    eval_data = load_dataset(
        checkpoints.COURSE_PROTOCOL["data"],
        train_per_class=per(args.eval_train_per_class),
        test_per_class=per(args.eval_test_per_class),
        seed=0,
    )
    device = torch.device(
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else ("cpu" if args.device == "auto" else args.device)
    )
    started = time.perf_counter()
    version = args.bundle_version or (
        f"{datetime.date.today():%Y.%m.%d}-{reference['git_commit'][:8]}"
    )
    if args.merge:
        results, about = merge_bundles(args.merge)
        return _finish(args, out, results, about, version, keep_work=True, say=say)
    results = {}
    for name in methods:
        results[name] = train_one(COURSE_METHODS[name], epochs[name], args, eval_data, say)
    about = {
        "reference": reference,
        "machine": machine_info(device),
        "command": shlex.join([*checkpoints.TRAIN_COMMAND.split(), *argv]),
        "protocol": {
            **checkpoints.COURSE_PROTOCOL,
            "source": eval_data.source,
            "train_images": len(eval_data.y_train),
            "test_images": len(eval_data.y_test),
        },
        "seconds": round(time.perf_counter() - started, 1),
    }
    return _finish(args, out, results, about, version, keep_work=keep_work, say=say)


def _finish(
    args, out: Path, results: dict, about: dict, version: str, *, keep_work: bool, say
) -> int:
    """Write the bundle, check that it loads back as written, zip, pin or install it."""
    folder = checkpoints.write_bundle(out, results, bundle_version=version, about=about)
    bundle = checkpoints.open_bundle(folder)
    for name in results:  # the round trip: what a notebook will load is what was evaluated
        loaded = bundle.encoder(name)
        tensors = results[name][0]
        if any(not torch.equal(loaded.state_dict()[k].to(t.dtype), t) for k, t in tensors.items()):
            raise RuntimeError(f"{name}: the bundle's weights do not load back as written")
    zip_path = (
        None
        if args.no_zip
        else checkpoints.write_zip(folder, out.with_name(f"{checkpoints.FORMAT}-{version}.zip"))
    )
    if args.pin or args.install:
        install(folder, zip_path, copy=args.install)
        say(
            f"pinned {version} in {checkpoints.MANIFEST_PATH}"
            + (f"; copied into {checkpoints.PACKAGED_DIR}" if args.install else "")
        )
    if not keep_work:
        shutil.rmtree(args.work, ignore_errors=True)
    if not args.quiet:
        print(checkpoints._table(bundle))
        size = sum(p.stat().st_size for p in folder.iterdir())
        print(
            f"bundle {version}: {folder} ({size / 2**20:.2f} MiB)"
            + (f", {zip_path} ({zip_path.stat().st_size / 2**20:.2f} MiB)" if zip_path else "")
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
