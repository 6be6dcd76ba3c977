"""Named run configurations shared by every notebook, benchmark and test.

Four presets (see DESIGN.md):

* ``smoke``     every budget shrunk to seconds: proves a notebook runs end to end, nothing more;
* ``cpu-quick`` at most 5 minutes per notebook on 2 CPU cores, and the numbers a header promises hold;
* ``colab``     a Colab T4 GPU, within the budget each notebook header declares;
* ``full``      the lecture's numbers, for those with time and a GPU.

Choose one with ``get_preset("cpu-quick")`` or the ``REPLEARN_PRESET`` environment variable;
without either, a Colab runtime with a GPU gets ``colab`` and everything else ``cpu-quick``.
Assignment-specific knobs are derived from the generic fields below (``preset.budget_s`` for a
pretraining run, ``preset.scaled(60)`` for a run that takes 60 s in ``cpu-quick``), so a preset
stays one small table that a reader can take in at a glance.

>>> get_preset("smoke").name
'smoke'
>>> get_preset("cpu-quick").scaled(60)
60.0
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, replace

PRESET_ENV = "REPLEARN_PRESET"
DEFAULT_PRESET = "cpu-quick"


@dataclass(frozen=True)
class Preset:
    """One named configuration. Budgets are per training run unless stated."""

    name: str
    dataset: str  # image dataset; "cifar10" falls back to the shipped "cifar10-5k" offline
    train_per_class: int | None  # images per class used for (pre)training; None = all
    test_per_class: int | None  # images per class used for evaluation; None = all
    batch_size: int
    budget_s: float  # wall-clock budget of one pretraining run (seconds)
    max_epochs: int  # hard cap on epochs, whichever comes first with budget_s
    time_scale: float  # multiplier applied to a run's cpu-quick budget by `scaled`
    pretrained_size: int  # input resolution fed to ImageNet-pretrained networks
    device: str  # "cpu", "cuda" or "auto"
    num_seeds: int  # seeds averaged where a notebook reports a spread
    amp: bool  # automatic mixed precision on CUDA

    def scaled(self, cpu_quick_seconds: float) -> float:
        """The budget of a run that takes ``cpu_quick_seconds`` in ``cpu-quick``."""
        return float(cpu_quick_seconds) * self.time_scale

    def with_(self, **changes) -> Preset:
        """A copy with some fields changed (for ablations), keeping the name honest."""
        return replace(self, **changes)


PRESETS: dict[str, Preset] = {
    "smoke": Preset(
        name="smoke",
        dataset="cifar10-5k",
        train_per_class=20,
        test_per_class=10,
        batch_size=32,
        budget_s=2.0,
        max_epochs=1,
        time_scale=0.02,
        pretrained_size=64,
        device="cpu",
        num_seeds=1,
        amp=False,
    ),
    "cpu-quick": Preset(
        name="cpu-quick",
        dataset="cifar10-5k",
        train_per_class=500,
        test_per_class=100,
        batch_size=256,
        budget_s=180.0,
        max_epochs=200,
        time_scale=1.0,
        pretrained_size=128,
        device="cpu",
        num_seeds=1,
        amp=False,
    ),
    "colab": Preset(
        name="colab",
        dataset="cifar10",
        train_per_class=None,
        test_per_class=None,
        batch_size=512,
        budget_s=900.0,
        max_epochs=200,
        time_scale=3.0,
        pretrained_size=224,
        device="auto",
        num_seeds=1,
        amp=True,
    ),
    "full": Preset(
        name="full",
        dataset="cifar10",
        train_per_class=None,
        test_per_class=None,
        batch_size=512,
        budget_s=6 * 3600.0,
        max_epochs=800,
        time_scale=20.0,
        pretrained_size=224,
        device="auto",
        num_seeds=3,
        amp=True,
    ),
}


CONTENT_ENV = "REPLEARN_CONTENT_DIR"  # stands in for Colab's /content (tests, unusual set-ups)


def on_colab() -> bool:
    """Whether this is a Colab runtime (its kernel imports ``google.colab`` at start)."""
    return "google.colab" in sys.modules


def colab_content_dir() -> str:
    """Colab's working folder, ``/content``, or ``$REPLEARN_CONTENT_DIR`` when set."""
    return os.environ.get(CONTENT_ENV) or "/content"


def default_preset_name() -> str:
    """``$REPLEARN_PRESET`` when set; else ``colab`` on Colab with a GPU; else ``cpu-quick``."""
    chosen = os.environ.get(PRESET_ENV)
    if chosen:
        return chosen
    if on_colab():
        import torch

        if torch.cuda.is_available():
            return "colab"
    return DEFAULT_PRESET


def get_preset(name: str | Preset | None = None) -> Preset:
    """Return the preset called ``name``, else the one :func:`default_preset_name` picks
    (``$REPLEARN_PRESET``, else ``colab`` on a Colab GPU, else ``cpu-quick``)."""
    if isinstance(name, Preset):
        return name
    chosen = name or default_preset_name()
    try:
        return PRESETS[chosen]
    except KeyError:
        raise ValueError(
            f"unknown preset {chosen!r}; choose one of {sorted(PRESETS)} "
            f"(argument or the {PRESET_ENV} environment variable)"
        ) from None
