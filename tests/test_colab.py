"""The Colab road: the preset chosen by itself, a set-up cell that fails with what to do,
checkpoints that outlive the runtime and are continued, and (slow) a rehearsal of every notebook
in a fresh runtime that stands in for Colab's."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
import types
import zipfile
from pathlib import Path

import nbformat
import pytest
import torch

from replearn import notebook, presets, recipes, train
from replearn.notebook import StudentModuleError, StudentModuleNotFound

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def colab(monkeypatch, tmp_path):
    """This process as a Colab runtime: ``google.colab`` imported, ``/content`` in tmp_path."""
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    content = tmp_path / "content"
    content.mkdir()
    monkeypatch.setenv(presets.CONTENT_ENV, str(content))
    for name in (
        presets.PRESET_ENV,
        train.CHECKPOINT_DIR_ENV,
        "REPLEARN_STUDENT_DIR",
        "REPLEARN_ROOT",
    ):
        monkeypatch.delenv(name, raising=False)
    return content


@pytest.fixture
def course(tmp_path) -> Path:
    """A course folder with one student module."""
    root = tmp_path / "course"
    (root / "starter_code").mkdir(parents=True)
    (root / "starter_code" / "colab_road_mod.py").write_text("def hello():\n    return 'hi'\n")
    return root


# --------------------------------------------------------------------------------------------
# The right preset by itself
# --------------------------------------------------------------------------------------------


def test_preset_is_colab_on_a_colab_gpu_and_cpu_quick_elsewhere(colab, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert presets.default_preset_name() == "colab" and presets.get_preset().name == "colab"
    monkeypatch.setenv(presets.PRESET_ENV, "smoke")
    assert presets.get_preset().name == "smoke", "REPLEARN_PRESET always wins"
    monkeypatch.delenv(presets.PRESET_ENV)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert presets.get_preset().name == "cpu-quick", "Colab without a GPU"
    monkeypatch.delitem(sys.modules, "google.colab")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert presets.get_preset().name == "cpu-quick", "a GPU elsewhere: the default stays"


def test_setup_on_colab_says_the_preset_and_how_to_get_a_gpu(colab, course, capsys):
    session = notebook.setup("colab_road_mod", root=course)
    said = capsys.readouterr().out
    assert session.preset.name == "cpu-quick" and session.device.type == "cpu"
    assert "| preset cpu-quick | device cpu |" in said
    assert "no GPU" in said and "Runtime > Change runtime type > T4 GPU" in said


def test_setup_on_a_colab_gpu_prints_colab_first(colab, course, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: None)
    session = notebook.setup("colab_road_mod", root=course)
    line = capsys.readouterr().out.strip().splitlines()[0]
    assert session.preset.name == "colab"
    assert line.startswith("replearn ") and "| preset colab | device cuda |" in line


# --------------------------------------------------------------------------------------------
# A set-up cell that fails with what to do (finding 10)
# --------------------------------------------------------------------------------------------


def test_setup_fails_clearly_when_the_module_is_nowhere(colab, tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    asked = []
    with pytest.raises(StudentModuleNotFound) as failed:
        notebook.setup("colab_road_missing_mod", ask=lambda prompt: asked.append(prompt) or "")
    message = str(failed.value)
    assert asked, "it asks once first"
    assert "colab_road_missing_mod.py was not found" in message and str(colab) in message
    assert "%env REPLEARN_STUDENT_DIR=" in message and "upload" in message
    assert "REPLEARN_STUDENT_DIR" not in os.environ, "an empty answer is not remembered"


def test_setup_fails_clearly_when_the_module_does_not_import(colab, course):
    (course / "starter_code" / "colab_road_mod.py").write_text("def hello(:\n    pass\n")
    with pytest.raises(
        StudentModuleError, match=r"colab_road_mod\.py could not be imported: SyntaxError"
    ):
        notebook.setup("colab_road_mod", root=course)


# --------------------------------------------------------------------------------------------
# Checkpoints where the student chooses, and a notebook run again continues (finding 11)
# --------------------------------------------------------------------------------------------


def test_checkpoints_go_to_the_chosen_folder_drive_or_the_course(colab, course, monkeypatch):
    assert train.checkpoint_dir(course) == course / "checkpoints"
    assert not train.checkpoint_dir_chosen()
    drive = colab / "drive" / "MyDrive"
    drive.mkdir(parents=True)  # what drive.mount("/content/drive") makes
    assert train.checkpoint_dir(course) == drive / "replearn-checkpoints"
    assert train.checkpoint_dir_chosen()
    monkeypatch.setenv(train.CHECKPOINT_DIR_ENV, str(colab / "mine"))
    assert train.checkpoint_dir(course) == colab / "mine", "the variable wins"
    monkeypatch.delitem(sys.modules, "google.colab")
    monkeypatch.delenv(train.CHECKPOINT_DIR_ENV)
    assert train.checkpoint_dir(course) == course / "checkpoints", "Drive only counts on Colab"


def test_session_checkpoint_is_named_per_run_preset_and_seed(colab, course, capsys, monkeypatch):
    session = notebook.setup("colab_road_mod", preset="smoke", root=course)
    assert session.checkpoint("contrastive-simclr", enabled=False) is None, "smoke keeps none"
    path = session.checkpoint("contrastive-simclr", enabled=True)
    assert path == str(course / "checkpoints" / "contrastive-simclr-smoke-seed0.pt")
    assert "no checkpoint at" in capsys.readouterr().out
    monkeypatch.setenv(train.CHECKPOINT_DIR_ENV, str(colab / "ckpt"))
    chosen = session.checkpoint("contrastive-simclr", enabled=False)
    assert chosen == str(colab / "ckpt" / "contrastive-simclr-smoke-seed0.pt"), (
        "a chosen folder turns them on"
    )


def test_a_notebook_run_again_loads_finished_runs_and_continues_interrupted_ones(
    colab, course, capsys, monkeypatch
):
    """A module's pretraining through the notebook's checkpoint: killed after its third step's
    checkpoint, run again it continues from there; run once more, it loads the finished run."""
    monkeypatch.setenv("REPLEARN_ROOT", str(REPO))
    session = notebook.setup("contrastive_learning", preset="smoke", impl="solution", root=REPO)
    cl = session.impl
    smoke = recipes.contrastive_learning.ContrastiveConfig.from_preset(session.preset)
    cfg = dataclasses.replace(smoke, byol_steps=5)  # counted in steps: the same run on any machine
    images = torch.randint(0, 256, (256, 3, 32, 32), dtype=torch.uint8)  # [N, C, H, W]: 8 batches
    monkeypatch.setenv(train.CHECKPOINT_DIR_ENV, str(colab / "drive"))
    path = session.checkpoint("contrastive-byol", enabled=cfg.checkpoints)

    def run():
        return recipes.contrastive_learning.pretrain(
            cl, "byol", images, None, cfg, seed=0, device="cpu", checkpoint_path=path
        )

    post_init, saves = train.TrainConfig.__post_init__, []

    def every_step(config):  # a checkpoint after every step instead of every 5 minutes
        post_init(config)
        config.checkpoint_every_steps = 1

    def save_then_die(*args, **kwargs):
        saved = real_save(*args, **kwargs)
        saves.append(kwargs["history"]["steps_done"])
        if len(saves) == 3:
            raise KeyboardInterrupt("the runtime died")
        return saved

    real_save = train.save_checkpoint
    monkeypatch.setattr(train.TrainConfig, "__post_init__", every_step)
    monkeypatch.setattr(train, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run()
    monkeypatch.setattr(train, "save_checkpoint", real_save)
    assert saves == [1, 2, 3]
    assert "continuing the interrupted run" in train.describe_checkpoint(path)

    continued = run()
    assert continued.history.steps_done == 5 and continued.history.resumed_at_step == [3]
    assert "loading the finished run" in train.describe_checkpoint(path)
    capsys.readouterr()
    session.checkpoint("contrastive-byol", enabled=cfg.checkpoints)
    assert "[checkpoint] loading the finished run" in capsys.readouterr().out
    started = time.perf_counter()
    loaded = run()
    assert loaded.history.steps_done == 5 and loaded.history.resumed_at_step == [3], "no new step"
    assert time.perf_counter() - started < 30
    for name, tensor in continued.encoder.state_dict().items():
        assert torch.equal(tensor, loaded.encoder.state_dict()[name]), name


# --------------------------------------------------------------------------------------------
# A Colab rehearsal (slow): a fresh runtime, the hand-out uploaded, every notebook run
# --------------------------------------------------------------------------------------------

KERNEL_LAUNCHER = '''"""Stands in for Colab's kernel launcher: the kernel imports google.colab first, as Colab's."""
import google.colab  # noqa: F401
from ipykernel import kernelapp

kernelapp.launch_new_instance()
'''


def colab_runtime(root: Path) -> tuple[Path, str]:
    """A venv standing in for a Colab runtime (its usual packages preinstalled, ``google.colab``
    importable, kernels started by ``colab_kernel_launcher``) and its Jupyter kernel's name."""
    from handout_env import COLAB_PREINSTALLED, make_venv

    venv = root / "colab-runtime"
    make_venv(venv, COLAB_PREINSTALLED)
    python = venv / "bin" / "python"
    purelib = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    (purelib / "google" / "colab").mkdir(parents=True)
    (purelib / "google" / "colab" / "__init__.py").write_text(
        '"""A stand-in for Colab\'s google.colab package (the course\'s Colab rehearsal)."""\n'
    )
    (purelib / "colab_kernel_launcher.py").write_text(KERNEL_LAUNCHER)
    spec = root / "jupyter" / "kernels" / "colab-rehearsal"
    spec.mkdir(parents=True)
    # the kernel sees none of the test run's own paths, as on Colab
    strip = [a for var in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONSTARTUP") for a in ("-u", var)]
    argv = [
        "/usr/bin/env",
        *strip,
        str(python),
        "-m",
        "colab_kernel_launcher",
        "-f",
        "{connection_file}",
    ]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "Colab rehearsal", "language": "python"})
    )
    return venv, "colab-rehearsal"


def cell_text(cell) -> str:
    return "".join(
        o.get("text", "") or o.get("data", {}).get("text/plain", "") for o in cell.outputs
    )


@pytest.mark.slow
def test_colab_rehearsal_installs_from_the_handout_and_runs_every_notebook(
    built_handout, tmp_path, monkeypatch
):
    """The student's Colab road, without a GPU: the hand-out's zip and their finished modules
    uploaded into /content (a stand-in folder), each released notebook run from its first cell,
    the `%pip`-like install of the set-up cell included, then in `smoke` with no data folder (the
    working sets ship in the course package); Drive "mounted", so the
    long runs keep checkpoints there and a notebook run again loads them. Colab's torch,
    torchvision and numpy must come out untouched."""
    from handout_env import frozen

    started = time.perf_counter()
    content = tmp_path / "content"
    content.mkdir()
    shutil.copyfile(built_handout, content / built_handout.name)  # uploaded in the Files panel
    for module in sorted((REPO / "solutions").glob("[a-z]*.py")):
        shutil.copyfile(module, content / module.name)  # the student's finished modules
    (content / "drive" / "MyDrive").mkdir(parents=True)  # drive.mount("/content/drive")
    venv, kernel = colab_runtime(tmp_path)
    python = venv / "bin" / "python"
    before = frozen(python)
    assert set(before) == {"torch", "torchvision", "numpy"}
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv(presets.CONTENT_ENV, str(content))
    for name in (
        "REPLEARN_ROOT",
        "REPLEARN_STUDENT_DIR",
        "REPLEARN_DATA_DIR",
        train.CHECKPOINT_DIR_ENV,
    ):
        monkeypatch.delenv(
            name, raising=False
        )  # no data folder: the working sets ship in the wheel
    monkeypatch.setenv("REPLEARN_CACHE", str(tmp_path / "empty-cache"))
    # Colab opens a notebook with /content as the working folder: the uploaded notebook sits there
    with zipfile.ZipFile(built_handout) as archive:
        books = sorted(n for n in archive.namelist() if n.endswith(".ipynb"))
        for name in books:
            (content / Path(name).name).write_bytes(archive.read(name))
    assert len(books) == len(list((REPO / "assignments").glob("*.ipynb")))

    times, summaries = {}, {}
    order = [Path(n).name for n in books]
    order.append(next(n for n in order if n.startswith("04_")))  # run again: loads checkpoints
    for round_, name in enumerate(order):
        out = tmp_path / "executed" / f"{round_:02d}-{name}"
        run = notebook.run_notebook(
            content / name, out, preset="smoke", impl="starter", timeout=900, kernel=kernel
        )
        assert run.ok, f"{name} failed after {run.seconds:.0f} s:\n{run.error}"
        times[f"{round_:02d}-{name}"] = round(run.seconds)
        executed = nbformat.read(out, as_version=4)
        said = cell_text(next(c for c in executed.cells if c.cell_type == "code"))
        assert "replearn 0.1.0 installed; kept torch" in said, said[-2000:]
        assert "| preset smoke | device cpu |" in said and "has no GPU" in said
        assert "(shipped with replearn)" in said, "the data must come from the installed package"
        module = run.summary.get("impl", "")
        if not name.startswith("07_"):
            assert f"your implementation (starter) from {content}/" in module, module
        summaries.setdefault(name, []).append(run.summary["records"])
        if round_ == 0:
            assert list(content.glob("*-student-*/install.py")), (
                "the set-up cell unzipped the hand-out"
            )
    rerun = (tmp_path / "executed" / f"{len(order) - 1:02d}-{order[-1]}").read_text()
    assert rerun.count("[checkpoint] loading the finished run") >= 5, (
        "run again: loaded, not trained"
    )
    assert "training from scratch" not in rerun
    first, again = summaries[order[-1]]
    assert first == again, "a loaded run measures what the trained run measured"
    assert list((content / "drive" / "MyDrive" / "replearn-checkpoints").glob("*-smoke-seed0.pt"))

    assert frozen(python) == before, "Colab's torch, torchvision or numpy changed"
    where = subprocess.run(
        [str(python), "-c", "import torch; print(torch.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert str(venv / "seeded") in where.stdout, "torch is no longer Colab's own"
    print(f"Colab rehearsal: {time.perf_counter() - started:.0f} s; notebooks (s): {times}")


def test_the_comparison_trains_the_students_modules_in_a_handout(colab, tmp_path, monkeypatch):
    """Notebook 07's comparison uses the reference where the course folder has it; a hand-out
    has none, so there it trains the student's own modules, found as the set-up cell finds them."""
    from replearn import compare

    assert compare.method_module("pretext_tasks").__replearn_impl__["impl"] == "solution"
    handout = tmp_path / "replearn-student-0.1.0"
    (handout / "starter_code").mkdir(parents=True)
    shutil.copyfile(
        REPO / "solutions" / "pretext_tasks.py", handout / "starter_code" / "pretext_tasks.py"
    )
    monkeypatch.setenv("REPLEARN_ROOT", str(handout))
    monkeypatch.chdir(colab)  # Colab's working folder: no other copy of the modules around
    module = compare.method_module("pretext_tasks")
    assert module.__replearn_impl__["impl"] == "starter"
    assert module.__replearn_impl__["path"] == str(handout / "starter_code" / "pretext_tasks.py")
    with pytest.raises(StudentModuleNotFound, match="masked_autoencoders.py was not found"):
        compare.method_module("masked_autoencoders")
