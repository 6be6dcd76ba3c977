"""Registry of gradable assignments: names, aliases, the module under test, time limits.

The tests of assignment ``x`` live in ``<tests root>/<module>/`` (``test_public_*.py`` ship to
students, ``test_hidden_*.py`` and anything under ``hidden/`` stay in the grader), beside an
optional ``submission.json`` (:mod:`replearn.contract.artefacts`); its reference is
``<solutions root>/<module>.py``. The tests root is the grader's ``autograder/tests`` beside this
package (in the repository, the installed wheel and the Gradescope image alike); both roots can
be moved with ``AUTOGRADER_TESTS_ROOT`` and ``AUTOGRADER_SOLUTIONS_ROOT`` (the grader's own
tests point them at a fixture assignment so that it never appears in the real course). Only
paths are named here: the course package never imports the grader.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]  # holds replearn/, autograder/, solutions/


@dataclass(frozen=True)
class Assignment:
    """One gradable assignment."""

    name: str  # canonical name, equal to the module name
    module: str  # student module file stem: <module>.py
    number: int  # position in the course (0 for fixtures)
    aliases: tuple[str, ...] = ()
    call_timeout_s: float = 30.0  # default wall-clock limit of one call into student code
    budget_s: float = 240.0  # stop launching this assignment's tests after this long

    @property
    def tests_dir(self) -> Path:
        return tests_root() / self.module

    @property
    def reference_path(self) -> Path:
        return solutions_root() / f"{self.module}.py"


COURSE = (
    Assignment("transfer_learning", "transfer_learning", 1, ("01", "1", "a1")),
    Assignment("autoencoders", "autoencoders", 2, ("02", "2", "a2")),
    Assignment("pretext_tasks", "pretext_tasks", 3, ("03", "3", "a3")),
    Assignment("generative_pretext", "generative_pretext", 3, ("03b", "a3b")),
    Assignment("contrastive_learning", "contrastive_learning", 4, ("04", "4", "a4")),
    Assignment("masked_autoencoders", "masked_autoencoders", 5, ("05", "5", "a5", "mae")),
    Assignment("clip_zero_shot", "clip_zero_shot", 6, ("06", "6", "a6", "clip")),
)


def tests_root() -> Path:
    return Path(
        os.environ.get("AUTOGRADER_TESTS_ROOT") or REPO_ROOT / "autograder" / "tests"
    ).resolve()


def solutions_root() -> Path:
    return Path(os.environ.get("AUTOGRADER_SOLUTIONS_ROOT") or REPO_ROOT / "solutions").resolve()


def starter_root() -> Path:
    """Where the generated stubs are (``AUTOGRADER_STARTER_ROOT``, else ``starter_code/``
    beside the solutions): the instructor's batch tells an unchanged starter from work."""
    default = solutions_root().parent / "starter_code"
    return Path(os.environ.get("AUTOGRADER_STARTER_ROOT") or default).resolve()


def available() -> list[Assignment]:
    """Course assignments whose tests exist, then any other test folder (fixtures)."""
    root = tests_root()
    found = [a for a in COURSE if a.tests_dir.is_dir()]
    known = {a.module for a in COURSE}
    if root.is_dir():
        for folder in sorted(root.iterdir()):
            if folder.is_dir() and folder.name not in known and any(folder.glob("test_*.py")):
                found.append(Assignment(folder.name, folder.name, 0, call_timeout_s=10.0))
    return found


def resolve(name: str) -> list[Assignment]:
    """``all`` or one name/alias -> assignments; a clear error lists what exists."""
    options = available()
    if name == "all":
        if not options:
            raise KeyError(f"no assignment has tests under {tests_root()}")
        return options
    for a in options:
        if name in (a.name, a.module, *a.aliases):
            return [a]
    names = ", ".join(f"{a.name} ({'/'.join(a.aliases)})" if a.aliases else a.name for a in options)
    raise KeyError(f"unknown assignment {name!r}; available: {names or 'none'} or 'all'")
