"""The notebooks' set-up cell, their closing table, and the runner that executes them.

Every assignment notebook starts with::

    from replearn import notebook
    S = notebook.setup("transfer_learning")     # preset, device, seed, which implementation

and ends with ``S.finish()``, which prints the numbers this run measured beside the numbers the
notebook's header promises. ``run_notebook`` executes a notebook for real (nbclient) with a chosen
preset and implementation; the tests run every notebook in ``smoke`` and ``make demo`` in
``cpu-quick``.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from replearn import __version__
from replearn.presets import PRESET_ENV, Preset, get_preset

RESULTS_ENV = "REPLEARN_RESULTS_PATH"  # where S.finish() writes its JSON summary (set by runners)

# Where Colab installs the course package from: the release tag of this version.
REPO_URL = "https://github.com/replearn-course/replearn"
RELEASE_TAG = f"v{__version__}"


def setup_cell_source(module_name: str) -> str:
    """The first code cell of every notebook (one source: a test checks each notebook uses it).

    On Colab it pip-installs the package at the release tag; the package declares torch as a
    range, so Colab's preinstalled torch and torchvision stay (no download, no restart) and no
    Google Drive mount is needed. Locally `make` has installed everything already.
    """
    return (
        "# Set-up: on Colab this installs the course package (keeping Colab's own torch);\n"
        "# locally `make` has done it. Then: preset, device, seed and which implementation runs.\n"
        "import sys\n"
        "\n"
        'if "google.colab" in sys.modules:\n'
        f'    %pip install -q "replearn[notebooks] @ git+{REPO_URL}@{RELEASE_TAG}"\n'
        "\n"
        "from replearn import notebook\n"
        "\n"
        f'S = notebook.setup("{module_name}")'
    )


@dataclass
class Record:
    """One headline number of a run, with what the notebook header promises for it."""

    name: str
    value: float | str
    promised: str = ""  # e.g. ">= 75%" in cpu-quick; empty when nothing is promised
    ok: bool | None = None  # whether the promise held (None: nothing to check)


@dataclass
class Session:
    """What the set-up cell found; passed explicitly to every later cell."""

    module_name: str
    preset: Preset
    device: torch.device
    seed: int
    impl: ModuleType | None
    impl_note: str
    generator: torch.Generator
    started: float = field(default_factory=time.perf_counter)
    records: list[Record] = field(default_factory=list)
    data_notes: list[str] = field(default_factory=list)
    _data_cache: dict = field(default_factory=dict, repr=False)

    # ---- data -------------------------------------------------------------------------------
    def load_data(self, name: str | None = None, **kwargs):
        """Load a dataset (the preset's by default) once per session and say which one it is."""
        from replearn import data

        key = (name, tuple(sorted(kwargs.items())))
        if key not in self._data_cache:
            if name is None:
                loaded = data.default_dataset(self.preset, **kwargs)
            else:
                loaded = data.load_dataset(name, **kwargs)
            note = f"data: {loaded.name} ({len(loaded.y_train)} train / {len(loaded.y_test)} test) from {loaded.source}"
            print(note)
            self.data_notes.append(note)
            self._data_cache[key] = loaded
        return self._data_cache[key]

    # ---- results ----------------------------------------------------------------------------
    def record(self, name: str, value, promised: str = "", *, at_least: float | None = None):
        """Note a headline number; ``at_least`` checks a promise such as "linear probe >= 0.75"."""
        ok = None if at_least is None else bool(float(value) >= at_least)
        self.records.append(Record(name, value, promised, ok))
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        mark = "" if ok is None else ("  (as promised)" if ok else "  (BELOW the promise)")
        print(f"{name}: {shown}{'  promised ' + promised if promised else ''}{mark}")

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def summary(self) -> dict[str, Any]:
        return {
            "module": self.module_name,
            "preset": self.preset.name,
            "device": str(self.device),
            "torch": torch.__version__,
            "replearn": __version__,
            "impl": self.impl_note,
            "data": self.data_notes,
            "seconds": round(self.elapsed(), 1),
            "records": [r.__dict__ for r in self.records],
        }

    def finish(self) -> dict[str, Any]:
        """Print the closing table (measured beside promised) and save the summary as JSON."""
        summary = self.summary()
        width = max([len(r.name) for r in self.records] + [10])
        print(f"\n{'quantity':<{width}}  {'this run':>10}  promised ({self.preset.name})")
        for r in self.records:
            shown = f"{r.value:.4f}" if isinstance(r.value, float) else str(r.value)
            flag = {None: "", True: "  ok", False: "  BELOW"}[r.ok]
            print(f"{r.name:<{width}}  {shown:>10}  {r.promised or '-'}{flag}")
        print(
            f"\ntotal time {summary['seconds']:.0f} s on {platform.node() or 'this machine'} "
            f"({os.cpu_count()} cores, device {self.device}), torch {torch.__version__}"
        )
        out = os.environ.get(RESULTS_ENV)
        if out:
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(out).with_suffix(".tmp")
            tmp.write_text(json.dumps(summary, indent=2, default=str))
            os.replace(tmp, out)
        return summary


def setup(
    module_name: str,
    *,
    preset: str | None = None,
    impl: str | None = None,
    seed: int = 0,
    device: str | None = None,
) -> Session:
    """The first cell of a notebook: choose preset, device and implementation; seed everything.

    Prints one line saying what it found, for example
    ``replearn 0.1.0 | preset cpu-quick | device cpu | torch 2.14.1 | student code: starter_code/x.py``.
    """
    from replearn import impl as impl_mod
    from replearn.train import pick_device, seed_everything

    chosen = get_preset(preset)
    dev = pick_device(device or chosen.device)
    generator = seed_everything(seed)
    try:
        module = impl_mod.load(module_name, impl)
        impl_note = impl_mod.describe(module)
        impl_mod.warn_if_shadowed(module_name)  # a stale copy or a package of the same name
    except Exception as err:  # the notebook still opens; the first call to the module says why
        module, impl_note = None, f"could not import {module_name}: {err}"
    print(
        f"replearn {__version__} | preset {chosen.name} | device {dev} | torch {torch.__version__}"
        f" | {impl_note}"
    )
    return Session(module_name, chosen, dev, seed, module, impl_note, generator)


# ---- executing notebooks ------------------------------------------------------------------------
@dataclass
class NotebookRun:
    path: Path
    output: Path
    seconds: float
    ok: bool
    error: str = ""
    summary: dict = field(default_factory=dict)


def run_notebook(
    path: str | Path,
    output: str | Path,
    *,
    preset: str = "smoke",
    impl: str = "solution",
    timeout: int = 900,
    kernel: str = "python3",
    extra_env: dict[str, str] | None = None,
) -> NotebookRun:
    """Execute ``path`` for real with nbclient and save the executed copy to ``output``.

    The preset and implementation reach the kernel through environment variables, so the
    notebook itself is never edited. Never raises for a failing cell: the error is returned.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    path, output = Path(path), Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    results_path = output.with_suffix(".results.json")
    results_path.unlink(missing_ok=True)
    env_changes = {
        PRESET_ENV: preset,
        "REPLEARN_IMPL": impl,
        RESULTS_ENV: str(results_path.resolve()),
        "MPLBACKEND": "Agg",
        **(extra_env or {}),
    }
    saved = {k: os.environ.get(k) for k in env_changes}
    os.environ.update(env_changes)  # the kernel inherits the parent's environment
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name=kernel,
        resources={"metadata": {"path": str(path.parent.resolve())}},
    )
    start = time.perf_counter()
    ok, error = True, ""
    try:
        client.execute()
    except CellExecutionError as err:
        ok, error = False, str(err)[-4000:]
    except Exception as err:  # kernel died, timeout, ...
        ok, error = False, f"{type(err).__name__}: {err}"[-4000:]
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    seconds = time.perf_counter() - start
    nbformat.write(nb, output)
    summary = json.loads(results_path.read_text()) if results_path.exists() else {}
    return NotebookRun(path, output, seconds, ok, error, summary)
