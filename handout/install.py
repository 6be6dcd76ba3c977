#!/usr/bin/env python3
"""Install the course package of this hand-out, in one command.

    python3 install.py          a virtual environment .venv in this folder: the course package
                                (library and self-check), Jupyter, and the versions of
                                constraints.txt that the course was tested with
    python3 install.py --cpu    the same, with PyTorch's CPU-only build (no CUDA packages:
                                about a tenth of the download)
    python install.py --colab   into the running Python, as the notebooks' first cell does on
                                Colab: only what is missing is added; the runtime's torch,
                                torchvision and numpy, and the packages its kernel has imported,
                                stay at their versions

It uses the standard library only, so it runs before anything is installed. ``--dry-run``
prints the commands without running them.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGE = "replearn"
# Extras of the course package: what every notebook imports (open_clip, the MiniLM encoder,
# scikit-image, ...) and Jupyter; on Colab the same without Jupyter, whose kernel must stay.
LOCAL_EXTRAS = "notebooks"
COLAB_EXTRAS = "assignments"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"  # PyTorch's CPU-only builds
# Never changed by --colab: the runtime's PyTorch and array stack (a pip that cannot keep them
# stops). Kept too when pip can: what a Colab kernel has imported by the time the first cell
# runs (the kernel, plots, tables), which would need a restart if they changed.
KEEP = ("torch", "torchvision", "torchaudio", "numpy")
KEEP_IF_POSSIBLE = (
    "ipykernel",
    "ipython",
    "jupyter-client",
    "jupyter-core",
    "tornado",
    "traitlets",
    "pyzmq",
    "matplotlib",
    "pandas",
    "scipy",
    "pillow",
    "requests",
    "urllib3",
    "packaging",
)
_VERSION = re.compile(r"^\d+(\.\d+)*((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?(\+[A-Za-z0-9.]+)?$")


class InstallError(RuntimeError):
    """The installation cannot go on; the message says why and what to do."""


def wheel() -> Path:
    """The course package's wheel in ``wheels/`` (exactly one)."""
    found = sorted((HERE / "wheels").glob(f"{PACKAGE}-*.whl"))
    if len(found) != 1:
        raise InstallError(
            f"expected one {PACKAGE}-*.whl in {HERE / 'wheels'}, found {len(found)}: "
            "unpack the whole hand-out again"
        )
    return found[0]


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_versions() -> dict[str, str]:
    """``{normalised name: version}`` of every distribution the running Python can import."""
    versions: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name and normalise(name) not in versions:  # the first on sys.path wins, as in import
            versions[normalise(name)] = dist.version
    return versions


def runtime_pins(names: set[str] | None = None) -> str:
    """Constraint lines ``name==version`` for what is installed (only ``names`` if given).

    The course package itself is left out (a newer hand-out replaces an older one), and so is
    anything whose version pip would not parse.
    """
    lines = [
        f"{name}=={version}"
        for name, version in sorted(installed_versions().items())
        if name != PACKAGE and _VERSION.match(version) and (names is None or name in names)
    ]
    return "\n".join(lines) + "\n"


def run(command: list[str], dry_run: bool) -> int:
    print("$ " + " ".join(shlex.quote(str(part)) for part in command), flush=True)
    return 0 if dry_run else subprocess.call(command)


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def install_local(venv: Path, cpu: bool, dry_run: bool) -> None:
    """A virtual environment with the course package and the tested versions of everything."""
    python = venv_python(venv)
    if not python.exists():
        if run([sys.executable, "-m", "venv", str(venv)], dry_run):
            raise InstallError(
                "could not create the virtual environment; on Debian or Ubuntu install "
                "python3-venv first (sudo apt install python3-venv), then run this again"
            )
    pip = [str(python), "-m", "pip", "install", "--constraint", str(HERE / "constraints.txt")]
    if cpu and run([*pip, "--index-url", CPU_INDEX, "torch", "torchvision"], dry_run):
        raise InstallError(f"could not install PyTorch's CPU build from {CPU_INDEX}")
    if run([*pip, f"{wheel()}[{LOCAL_EXTRAS}]"], dry_run):
        raise InstallError("pip could not install the course package: its message is above")
    scripts = venv / ("Scripts" if os.name == "nt" else "bin")
    activate = str(scripts / "activate") if os.name == "nt" else f"source {scripts / 'activate'}"
    print(
        "\nDone. Start Jupyter in this folder with the environment's own programs:\n"
        f"  {scripts / 'jupyter'} lab assignments\n"
        f"  {python} -m autograder check pretext_tasks\n"
        f"or activate the environment first ({activate}) and type `jupyter lab`,\n"
        "`python -m autograder check ...`. In VS Code, pick .venv as the notebooks' kernel."
    )


def install_here(dry_run: bool) -> None:
    """Into the running Python (Colab): only what is missing is added. pip may not change the
    runtime's torch, torchvision, torchaudio or numpy, nor, where it can avoid it, the packages a
    Colab kernel has already imported; everything else it leaves as it is unless a new package
    needs a newer version."""
    before = installed_versions()
    target = f"{wheel()}[{COLAB_EXTRAS}]"
    with tempfile.TemporaryDirectory(prefix="replearn-install-") as scratch:
        pins = Path(scratch) / "runtime-pins.txt"
        pins.write_text(runtime_pins({normalise(n) for n in KEEP + KEEP_IF_POSSIBLE}))
        command = [sys.executable, "-m", "pip", "install", "-q", "--constraint", str(pins), target]
        if run(command, dry_run):
            print(
                "pip could not add the course package while keeping the kernel's packages; "
                "trying again keeping only torch, torchvision, torchaudio and numpy",
                flush=True,
            )
            pins.write_text(runtime_pins({normalise(n) for n in KEEP}))
            if run(command, dry_run):
                raise InstallError(
                    "pip could not install the course package without replacing this runtime's "
                    "torch, torchvision or numpy: its message is above"
                )
    if dry_run:
        return
    after = installed_versions()
    changed = sorted(n for n in before if n != PACKAGE and after.get(n) != before[n])
    added = sorted(set(after) - set(before))
    kept = ", ".join(f"{n} {before[n]}" for n in ("torch", "torchvision", "numpy") if n in before)
    print(
        f"{PACKAGE} {after.get(PACKAGE, '?')} installed; kept {kept or 'nothing (none installed)'}"
        + (f"; added {len(added)} packages" if added else "")
    )
    if changed:
        print(
            "changed: " + ", ".join(f"{n} {before[n]} -> {after.get(n)}" for n in changed) + ". "
            "If the notebook then fails to import one of them, restart the session "
            "(Runtime > Restart session) and run the cell again."
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="install.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--cpu", action="store_true", help="PyTorch's CPU-only build (local)")
    where.add_argument("--colab", action="store_true", help="into the running Python (Colab)")
    parser.add_argument("--venv", type=Path, default=HERE / ".venv", help="default: ./.venv")
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = parser.parse_args(argv)
    if sys.version_info < (3, 10):  # noqa: UP036 (the student may start it with any python3)
        print(f"Python 3.10 or newer is needed; this is {sys.version.split()[0]}", file=sys.stderr)
        return 1
    try:
        if args.colab:
            install_here(args.dry_run)
        else:
            install_local(args.venv.resolve(), args.cpu, args.dry_run)
    except InstallError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
