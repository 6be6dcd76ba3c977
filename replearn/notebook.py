"""The notebooks' set-up cell, their closing table, and the runner that executes them.

Every assignment notebook starts with::

    from replearn import notebook
    S = notebook.setup("transfer_learning")     # preset, device, seed, which implementation

and ends with ``S.finish()``, which prints the numbers this run measured beside the numbers the
notebook's header promises. ``run_notebook`` executes a notebook for real (nbclient) with a chosen
preset and implementation; the tests run every notebook in ``smoke`` and ``make demo`` in
``cpu-quick``.

The same set-up cell works unchanged on Colab, in a local Jupyter and in VS Code. The student's
module is found in the course folder's ``starter_code/`` (a clone), else in a folder named by
``$REPLEARN_STUDENT_DIR``, else by a short search of the working folder and Colab's ``/content``
(an upload, or a clone one level down), else the cell asks for the folder once (then remembers it
for the session). Its one line of output says what it found: preset, device, data, and which
implementation was imported from where; it warns when that is not the student's file (a newer copy
elsewhere, a package of the same name on ``sys.path``).

Round trip: ``S.check("rotation")`` runs the public tests of one part (or ``S.check()`` all of
them) through ``python -m autograder check``, with the grader's messages, and raises when one
fails; ``S.package()`` builds the submission zip (see ``replearn.submit``). To let the packager
prove that a notebook's outputs come from the submitted code, ``setup()`` and ``S.finish()``
display a run record (mimetype ``application/vnd.replearn.run+json``: the imported file's sha256,
the preset, the time) that the executed notebook keeps among its outputs.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from replearn import __version__
from replearn.contract.notebooks import RUN_MIMETYPE  # the records this module displays
from replearn.presets import CONTENT_ENV, PRESET_ENV, Preset, get_preset, on_colab

RESULTS_ENV = "REPLEARN_RESULTS_PATH"  # where S.finish() writes its JSON summary (set by runners)
# "1": the long pretraining runs go through replearn.pretrain in any preset (the full preset's
# path, for the tests and for anyone who wants the entry point's checkpoints in a shorter preset)
ENTRY_POINT_ENV = "REPLEARN_PRETRAIN_ENTRY"

# Folders searched for an uploaded or cloned student module besides the working folder: Colab's,
# or the folders in $REPLEARN_CONTENT_DIR (tests point it at a stand-in for /content).
SEARCH_ROOTS = ("/content",)
_SKIP_SEARCH = {"solutions", "sample_data", "site-packages", "node_modules", "__pycache__", "drive"}


def _search_roots() -> list[Path]:
    roots = os.environ.get(CONTENT_ENV)
    chosen = roots.split(os.pathsep) if roots else SEARCH_ROOTS
    return [Path(p) for p in chosen if p and Path(p).is_dir()]


def setup_cell_source(
    module_name: str | None, *, handout_url: str = "", handout_ref: str = ""
) -> str:
    """The first code cell of every notebook (one source: a test checks each notebook uses it).

    On Colab it runs the hand-out's ``install.py --colab`` (see the hand-out's README): the course
    package is installed from the hand-out's wheel, adding only what Colab does not have: torch,
    torchvision, numpy and the packages the kernel has imported keep their versions, so nothing
    needs a restart, and nothing needs a Google Drive mount.
    It finds the hand-out unzipped or cloned in ``/content`` (``$REPLEARN_CONTENT_DIR`` when set),
    and unzips the hand-out's zip when only that was uploaded.
    ``make release`` stamps the hand-out's public repository into the released notebooks
    (``handout_url``, ``handout_ref``): the cell then clones it when no hand-out is there yet.
    On the student's own computer the hand-out's ``python install.py`` has installed everything.
    """
    lines = [
        "# Set-up. On Colab this installs the course package from the hand-out in /content, keeping",
        "# Colab's own torch, torchvision and numpy (no restart, no Drive); on your own computer the",
        "# hand-out's `python install.py` did it. Then: preset, device, seed, which implementation runs.",
        "import sys",
        "",
        'if "google.colab" in sys.modules:',
        "    import glob",
        "    import os",
        "",
        f'    content = os.environ.get("{CONTENT_ENV}", "/content")',
        '    installer = f"{content}/*/install.py"  # in the unzipped or cloned hand-out',
        '    uploaded = glob.glob(f"{content}/*-student-*.zip")  # the hand-out\'s zip, uploaded',
        "    if uploaded and not glob.glob(installer):  # unzip keeps the files' dates: uploads stay newer",
        '        !unzip -q -n "{max(uploaded, key=os.path.getmtime)}" -d "{content}"',
    ]
    if handout_url:
        folder = handout_url.rstrip("/").removesuffix(".git").rsplit("/", 1)[-1]
        lines += [
            "    if not glob.glob(installer):  # fetch the course's hand-out",
            f'        !git clone -q --depth 1 --branch {handout_ref} {handout_url} "{{content}}/{folder}"',
            f'        for path in glob.glob(f"{{content}}/{folder}/**", recursive=True):',
            "            os.utime(path, (315532800, 315532800))  # dated as in the zip: uploads stay newer",
        ]
    lines += [
        "    if not glob.glob(installer):",
        "        raise FileNotFoundError(",
        '            f"no hand-out in {content}: upload the hand-out\'s .zip there (Files panel), "',
        '            "then run this cell again"',
        "        )",
        '    !"{sys.executable}" "{max(glob.glob(installer), key=os.path.getmtime)}" --colab',
        "",
        "from replearn import notebook",
        "",
        f'S = notebook.setup("{module_name}")' if module_name else "S = notebook.setup()",
    ]
    return "\n".join(lines)


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
    run_id: str = ""  # ties the finish record to this set-up's record in the notebook's outputs
    course_root: str = ""  # the course folder, when one was found

    @property
    def impl_info(self) -> dict:
        """``{"impl", "path", "sha256"}`` of the imported module ({} when none was imported)."""
        info = getattr(self.impl, "__replearn_impl__", None)
        return dict(info) if isinstance(info, dict) else {}

    def _run_record(self, event: str, **extra) -> dict:
        info = self.impl_info
        return {
            "event": event,
            "run_id": self.run_id,
            "module": self.module_name,
            "impl": info.get("impl", ""),
            "module_path": info.get("path", ""),
            "module_sha256": info.get("sha256", ""),
            "preset": self.preset.name,
            "device": str(self.device),
            "replearn": __version__,
            "torch": torch.__version__,
            "time": _utc_now(),
            **extra,
        }

    # ---- round trip: self-check and packaging ----------------------------------------------
    def check(self, part: str | None = None, *, timeout: float = 900) -> dict:
        """Run the public tests of ``part`` (a function name or prefix, e.g. ``"rotation"``) or
        of the whole assignment on the imported module, exactly as ``python -m autograder check``
        does; print the grader's report and raise :class:`CheckFailed` when a test fails."""
        path = self.impl_info.get("path")
        if not path:
            raise CheckFailed(f"nothing to check: {self.impl_note}")
        return check(self.module_name, Path(path).parent, part=part, timeout=timeout)

    def package(
        self,
        out: str | os.PathLike | None = None,
        *,
        notebooks: list[str | os.PathLike] | None = None,
        artefacts: list[str | os.PathLike] | None = None,
    ) -> Path:
        """Build the submission zip of this assignment (see ``replearn.submit``).

        Run it after ``S.finish()`` and after saving the notebook: it refuses a notebook file
        that does not yet hold this run's outputs. Returns the zip's path.
        """
        from replearn import submit

        info = self.impl_info
        if info.get("impl") != "starter":
            raise submit.SubmissionError(
                f"this session ran {self.impl_note}; a submission is your own code: unset "
                "REPLEARN_IMPL, restart the kernel and run the notebook again"
            )
        books = notebooks or _current_notebook(self.module_name, self.course_root)
        sub = submit.package(
            self.module_name,
            out=out,
            root=self.course_root or None,
            student_dir=Path(info["path"]).parent,
            notebooks=books,
            artefacts=artefacts,
            expect_run_id=self.run_id,
        )
        print(sub.describe())
        return sub.path

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
            self._keep_data_note(note)
            self._data_cache[key] = loaded
        return self._data_cache[key]

    # ---- long pretraining runs -------------------------------------------------------------
    @property
    def uses_entry_point(self) -> bool:
        """Whether the notebook's long pretraining runs go through ``python -m replearn.pretrain``'s
        code (:meth:`pretrain`): in the ``full`` preset, or with ``$REPLEARN_PRETRAIN_ENTRY=1``."""
        return self.preset.name == "full" or os.environ.get(ENTRY_POINT_ENV, "") == "1"

    def pretrain(self, method: str, **changes):
        """The entry point's run of ``method`` with this notebook's preset, seed, device and module:
        loaded when it finished (for example after ``torchrun --nproc_per_node 4 -m
        replearn.pretrain --method simclr --preset full`` in the course folder), else trained here
        in one process, resumable. See ``replearn.pretrain.load_or_pretrain``."""
        from replearn.pretrain import load_or_pretrain

        return load_or_pretrain(
            method,
            self.preset,
            module=self.impl,
            seed=self.seed,
            device=str(self.device),
            root=self.course_root or None,
            **changes,
        )

    def checkpoint(self, name: str, *, enabled: bool = True) -> str | None:
        """The checkpoint file of this notebook's run ``name``, for its ``checkpoint_path=``.

        ``enabled`` says whether the preset keeps checkpoints (the assignment's config; the
        ``colab`` and ``full`` runs do, the minutes-long ``cpu-quick`` ones not); a folder the
        student chose (``$REPLEARN_CHECKPOINT_DIR``, or Google Drive mounted on Colab) turns them
        on in any preset. None when off. The file is named after the run, the preset and the seed,
        in :func:`replearn.train.checkpoint_dir`, and the cell says what the run will do with it:
        a finished run is loaded, an interrupted one continues from its last checkpoint (they are
        written every 5 minutes and at the end), a new one trains.
        """
        from replearn.train import checkpoint_dir, checkpoint_dir_chosen, describe_checkpoint

        if not (enabled or checkpoint_dir_chosen()):
            return None
        folder = checkpoint_dir(self.course_root or None)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}-{self.preset.name}-seed{self.seed}.pt"
        print(f"[checkpoint] {describe_checkpoint(path)}")
        return str(path)

    def course_encoder(self, method: str):
        """The course's checkpoint of ``method`` on this session's device: ``(encoder, info)``.

        The reference trained for the budget ``info.label`` states, verified against its
        sha256 (``replearn.checkpoints.load_course_encoder``); the notebook's data notes say
        where it came from, so a comparison row can name its source: the course's, never the
        student's run.
        """
        from replearn.checkpoints import load_course_encoder

        encoder, info = load_course_encoder(method, device=self.device)
        self.note_data(f"course checkpoint: {info.describe()}")
        return encoder, info

    def course_rows(self, methods, evaluate: Callable[[Any], dict]) -> dict[str, dict]:
        """The course checkpoint of each of ``methods``, evaluated by ``evaluate(encoder) ->
        {metric: value}``, the notebook's own probe on this session's data: ``{method: {"source":
        the checkpoint's label, "scores": ..., "encoder": ..., "info": ...}}``. Each row names
        its source, so a table never passes the course's weights off as the student's run."""
        rows = {}
        for method in methods:
            encoder, info = self.course_encoder(method)
            rows[method] = {
                "source": info.label,
                "scores": evaluate(encoder),
                "encoder": encoder,
                "info": info,
            }
        return rows

    # ---- results ----------------------------------------------------------------------------
    def note_data(self, note: str) -> None:
        """Say which data a result came from when it was not loaded with :meth:`load_data` (a
        saved benchmark, a run inside the course library)."""
        print(note)
        self._keep_data_note(note)

    def _keep_data_note(self, note: str) -> None:
        """The summary lists each source once, however many cells used it."""
        if note not in self.data_notes:
            self.data_notes.append(note)

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
        """What this run was (preset, implementation, data, machine, time) and its numbers;
        ``make demo`` keeps it beside the executed notebook and the course book shows it."""
        from replearn.compare import machine_info

        return {
            "module": self.module_name,
            "preset": self.preset.name,
            "device": str(self.device),
            "torch": torch.__version__,
            "replearn": __version__,
            "impl": self.impl_note,
            "data": self.data_notes,
            "seconds": round(self.elapsed(), 1),
            "finished": _utc_now(),
            "machine": machine_info(self.device),
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
        closing = (
            f"total time {summary['seconds']:.0f} s on {platform.node() or 'this machine'} "
            f"({os.cpu_count()} cores, device {self.device}), torch {torch.__version__}"
        )
        print()
        if self.run_id:
            _emit(closing, self._run_record("finish", seconds=summary["seconds"]))
        else:
            print(closing)
        out = os.environ.get(RESULTS_ENV)
        if out:
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(out).with_suffix(".tmp")
            tmp.write_text(json.dumps(summary, indent=2, default=str))
            os.replace(tmp, out)
        return summary


class CheckFailed(AssertionError):
    """A public test failed in ``S.check()``; the message is the grader's."""


class CheckResults(dict):
    """The grader's results dict, shown in a notebook as its one-line total."""

    def __repr__(self) -> str:
        return f"public tests: {self.get('score', 0):g} / {self.get('max_score', 0):g} points"


def comparison_table(rows: Mapping[str, Mapping[str, Any]], metrics: Sequence[str]) -> str:
    """A comparison as text, one row per encoder with its **source** (the student's run, the
    course checkpoint, an untrained network) beside its scores: ``rows`` maps a name to
    ``{"source": str, "scores": {metric: accuracy in [0, 1]}}``; ``metrics`` picks the columns."""
    width = max([len("encoder"), *map(len, rows)])
    source_width = max([len("source"), *(len(str(r["source"])) for r in rows.values())])
    lines = [
        f"{'encoder':<{width}}  {'source':<{source_width}}" + "".join(f" {m:>8}" for m in metrics)
    ]
    for name, row in rows.items():
        cells = "".join(
            f" {row['scores'][m]:>8.1%}" if m in row["scores"] else f" {'-':>8}" for m in metrics
        )
        lines.append(f"{name:<{width}}  {str(row['source']):<{source_width}}{cells}")
    return "\n".join(lines)


def _utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _kernel_shell():
    """The IPython shell when running inside a Jupyter/Colab/VS Code kernel, else None."""
    shell = sys.modules.get("IPython") and sys.modules["IPython"].get_ipython()
    return shell if shell is not None and hasattr(shell, "kernel") else None


def _emit(line: str, record: dict) -> None:
    """Show ``line``; inside a kernel, attach ``record`` (kept in the notebook's outputs)."""
    if _kernel_shell() is None:
        print(line)
        return
    from IPython.display import display

    sys.stdout.flush()
    # In the data bundle (front ends show the text/plain line) and, in case a front end drops
    # unknown mimetypes on saving, in the output's metadata too.
    display({"text/plain": line, RUN_MIMETYPE: record}, raw=True, metadata={RUN_MIMETYPE: record})


# ---- finding the student's module -----------------------------------------------------------
def _module_copies(module_name: str) -> list[Path]:
    """``<module>.py`` files in the working folder and Colab's ``/content``, one level down,
    and in ``starter_code/`` at either level (never in ``solutions/``)."""
    bases = [Path.cwd(), *_search_roots()]
    folders: list[Path] = []
    for base in bases:
        folders += [base, base / "starter_code"]
        try:
            children = sorted(p for p in base.iterdir() if p.is_dir())[:200]
        except OSError:
            children = []
        for child in children:
            if child.name.startswith(".") or child.name in _SKIP_SEARCH:
                continue
            folders += [child, child / "starter_code"]
    found: dict[Path, None] = {}
    for folder in folders:
        path = folder / f"{module_name}.py"
        if path.is_file() and folder.name not in _SKIP_SEARCH:
            found[path.resolve()] = None
    return list(found)


def _ask_for_folder(module_name: str, ask: Callable[[str], str]) -> Path | None:
    prompt = f"Folder holding your {module_name}.py (Enter to skip): "
    for _ in range(3):
        try:
            answer = ask(prompt).strip().strip("'\"")
        except Exception:  # no stdin: a notebook run by nbclient, a script
            return None
        if not answer:
            return None
        folder = Path(answer).expanduser()
        if folder.is_file() and folder.name == f"{module_name}.py":
            folder = folder.parent
        if (folder / f"{module_name}.py").is_file():
            return folder.resolve()
        print(f"{folder} has no {module_name}.py; try again")
    return None


def find_student_dir(
    module_name: str,
    *,
    root: str | os.PathLike | None = None,
    ask: Callable[[str], str] | None = None,
) -> Path | None:
    """Where the student's ``<module>.py`` is, when it is not in the course's ``starter_code/``.

    Returns None when ``replearn.impl.load`` finds it by itself (``$REPLEARN_STUDENT_DIR``, or
    ``starter_code/`` of the course folder). Otherwise searches the working folder and Colab's
    ``/content`` (and one level below them, with or without ``starter_code/``); several copies:
    the newest, with a warning naming the others. Nothing found: asks with ``ask`` (default:
    ``input`` inside a notebook kernel, nobody elsewhere) and remembers the answer in
    ``$REPLEARN_STUDENT_DIR`` for the rest of the session, so it asks once.
    """
    from replearn import impl as impl_mod

    if os.environ.get(impl_mod.STUDENT_DIR_ENV):
        return None
    try:
        if (impl_mod.find_root(root) / "starter_code" / f"{module_name}.py").is_file():
            return None
    except impl_mod.ImplError:
        pass
    copies = sorted(_module_copies(module_name), key=lambda p: p.stat().st_mtime, reverse=True)
    if copies:
        if len(copies) > 1:
            warnings.warn(
                f"found {len(copies)} copies of {module_name}.py; using the newest, {copies[0]} "
                f"(others: {', '.join(map(str, copies[1:]))}). Set {impl_mod.STUDENT_DIR_ENV} "
                "to choose another.",
                stacklevel=3,
            )
        return copies[0].parent
    if ask is None and _kernel_shell() is not None:
        ask = input
    folder = _ask_for_folder(module_name, ask) if ask is not None else None
    if folder is not None:
        os.environ[impl_mod.STUDENT_DIR_ENV] = str(folder)  # asked once per session
    return folder


def _newer_copies(module_name: str, loaded: Path, root) -> list[Path]:
    """Other copies of the student module, newer than the imported file and different from it."""
    from replearn import impl as impl_mod

    candidates = set(_module_copies(module_name))
    try:
        candidates.add((impl_mod.find_root(root) / "starter_code" / f"{module_name}.py").resolve())
    except impl_mod.ImplError:
        pass
    loaded = loaded.resolve()
    data, mtime = loaded.read_bytes(), loaded.stat().st_mtime
    return sorted(
        p
        for p in candidates
        if p != loaded and p.is_file() and p.stat().st_mtime > mtime and p.read_bytes() != data
    )


def _data_note(preset: Preset) -> str:
    from replearn.data import DATA_DIR_ENV, EMBEDDED_DATASET

    folder = os.environ.get(DATA_DIR_ENV)
    if preset.dataset == EMBEDDED_DATASET:
        where = "shipped with replearn" + (f"; ${DATA_DIR_ENV}={folder}" if folder else "")
    else:
        where = f"${DATA_DIR_ENV}={folder}" if folder else "download"
        where += f", else the shipped {EMBEDDED_DATASET}"
    return f"data {preset.dataset} ({where})"


class _NoModule(Exception):
    """Internal: ``setup()`` was called without a module name."""


def setup(
    module_name: str | None = None,
    *,
    preset: str | None = None,
    impl: str | None = None,
    seed: int = 0,
    device: str | None = None,
    root: str | os.PathLike | None = None,
    student_dir: str | os.PathLike | None = None,
    ask: Callable[[str], str] | None = None,
) -> Session:
    """The first cell of a notebook: choose preset, device and implementation; seed everything.

    Prints one line saying what it found, for example ``replearn 0.1.0 | preset cpu-quick |
    device cpu | torch 2.14.1 | data cifar10-5k (shipped with replearn) | x: your
    implementation (starter) from /course/starter_code/x.py``, and warns when the imported file
    is not the student's (a newer different copy elsewhere, a shadowing package). ``root``,
    ``student_dir`` and ``ask`` are for special set-ups and tests (see :func:`find_student_dir`).
    """
    from replearn import impl as impl_mod
    from replearn.train import pick_device, seed_everything

    chosen = get_preset(preset)
    dev = pick_device(device or chosen.device)
    generator = seed_everything(seed)
    wanted = str(impl or os.environ.get(impl_mod.IMPL_ENV) or impl_mod.DEFAULT_IMPL).strip().lower()
    if module_name is None:  # a notebook that reads results (Assignment 7) has no student module
        wanted = "none"
    try:
        if module_name is None:
            raise _NoModule
        if wanted == "starter" and student_dir is None:
            student_dir = find_student_dir(module_name, root=root, ask=ask)
        try:
            module = impl_mod.load(module_name, impl, root=root, student_dir=student_dir)
        except impl_mod.ImplError as err:
            if wanted != "starter":
                raise
            raise StudentModuleNotFound(not_found_message(module_name, err)) from None
        except Exception as err:  # the student's module raised while it was imported
            raise StudentModuleError(
                f"your {module_name}.py could not be imported: {type(err).__name__}: {err}. "
                "Fix it (the traceback above points at the line) and run this cell again."
            ) from err
        impl_note = impl_mod.describe(module)
        impl_mod.warn_if_shadowed(module_name, root=root, student_dir=student_dir)
        info = module.__replearn_impl__
        if info["impl"] == "starter":
            for newer in _newer_copies(module_name, Path(info["path"]), root):
                warnings.warn(
                    f"{newer} is newer than the imported {info['path']} and differs from it: "
                    f"if that is the file you edit, set {impl_mod.STUDENT_DIR_ENV}="
                    f"{newer.parent} (or delete the stale copy) and run this cell again",
                    stacklevel=2,
                )
    except _NoModule:
        module, impl_note = None, "no student module in this notebook"
    try:
        course_root = str(impl_mod.find_root(root))
    except impl_mod.ImplError:
        course_root = ""
    session = Session(
        module_name or "", chosen, dev, seed, module, impl_note, generator, course_root=course_root
    )
    session.run_id = uuid.uuid4().hex
    line = (
        f"replearn {__version__} | preset {chosen.name} | device {dev} | torch {torch.__version__}"
        f" | {_data_note(chosen)} | {impl_note}"
    )
    _emit(line, session._run_record("setup"))
    if on_colab() and dev.type == "cpu" and not torch.cuda.is_available():
        print(
            "This Colab runtime has no GPU, so the notebook runs the CPU preset "
            f"{chosen.name!r}. For the colab preset: Runtime > Change runtime type > T4 GPU, "
            "then run the notebook again from this cell."
        )
    return session


class StudentModuleNotFound(FileNotFoundError):
    """The set-up cell found no ``<module>.py`` of the student's (the message says what to do)."""


class StudentModuleError(ImportError):
    """The student's module raised while it was imported (the cause is chained)."""


def not_found_message(module_name: str, err: Exception) -> str:
    """What to do when the student's ``<module>.py`` is nowhere to be found (``err`` says why)."""
    from replearn import impl as impl_mod

    roots = ", ".join(str(p) for p in [Path.cwd(), *_search_roots()])
    return (
        f"Your {module_name}.py was not found ({err}). Searched: starter_code/ of the course "
        f"folder, and {roots} with one folder below them. Do one of these, then run this cell "
        f"again:\n"
        f"  * on Colab: upload the hand-out's .zip into /content (Files panel; this cell unzips "
        f"it), or upload your {module_name}.py into /content;\n"
        f"  * anywhere: set {impl_mod.STUDENT_DIR_ENV} to the folder holding it, in a cell above "
        f"this one: %env {impl_mod.STUDENT_DIR_ENV}=/path/to/folder;\n"
        f"  * to read the notebook with the reference solution (the course repository only): "
        f"%env {impl_mod.IMPL_ENV}=solution."
    )


def check(
    module_name: str,
    submission: str | os.PathLike,
    *,
    part: str | None = None,
    timeout: float = 900,
) -> dict:
    """``python -m autograder check <module> --submission <folder> [--part <part>]``, in a child
    process (the course folder's own grader when there is one); prints its report, returns the
    results and raises :class:`CheckFailed` with the failing tests' messages."""
    from replearn import impl as impl_mod

    cwd = None
    try:
        course = impl_mod.find_root()
        if (course / "autograder" / "__main__.py").is_file():
            cwd = course  # `python -m autograder` then imports the course folder's grader
    except impl_mod.ImplError:
        pass
    with tempfile.TemporaryDirectory(prefix="replearn-check-") as scratch:
        results_path = Path(scratch) / "results.json"
        command = [sys.executable, "-m", "autograder", "check", module_name]
        command += ["--submission", str(Path(submission).resolve()), "--results", str(results_path)]
        command += ["--part", part] if part else []
        proc = subprocess.run(
            command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
        )
        if proc.returncode == 2:  # a usage error: unknown assignment or part (it lists them)
            raise ValueError((proc.stderr or proc.stdout).strip()[-3000:])
        if proc.returncode != 0 or not results_path.is_file():
            raise CheckFailed((proc.stderr or proc.stdout).strip()[-3000:] or "the check failed")
        results = json.loads(results_path.read_text())
    print(proc.stdout.rstrip())
    failed = [t for t in results.get("tests", []) if t.get("status") != "passed"]
    if failed:
        messages = "\n".join(f"{t['name']}:\n    {t.get('output', '')[:1500]}" for t in failed)
        raise CheckFailed(f"{len(failed)} public test(s) failed:\n{messages}")
    return CheckResults(results)


def _current_notebook(module_name: str, course_root: str) -> list[Path] | None:
    """The notebook this kernel runs, where the front end says so (VS Code, Jupyter, Colab).

    None when unknown: the packager then searches the course's ``assignments/``.
    """
    shell = _kernel_shell()
    if shell is None:
        return None
    vscode = shell.user_ns.get("__vsc_ipynb_file__")
    if vscode and Path(vscode).is_file():
        return [Path(vscode)]
    session = os.environ.get("JPY_SESSION_NAME")  # set by jupyter_server >= 2
    if session and session.endswith(".ipynb") and Path(session).is_file():
        return [Path(session)]
    if "google.colab" in sys.modules:  # the notebook lives in Drive: fetch what Colab holds
        from google.colab import _message  # type: ignore[import-not-found]

        nb = _message.blocking_request("get_ipynb", timeout_sec=60)["ipynb"]
        names = sorted(Path(course_root, "assignments").glob("*.ipynb")) if course_root else []
        name = next((p.name for p in names if f'setup("{module_name}")' in p.read_text()), None)
        path = Path(tempfile.mkdtemp(prefix="replearn-colab-")) / (name or f"{module_name}.ipynb")
        path.write_text(json.dumps(nb))
        return [path]
    return None


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
        # the backend of Jupyter and Colab, so that pyplot figures are kept in the outputs too
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
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
